// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IOrderAccount} from "../../contracts/account/interfaces/IOrderAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {ISignedOrderVenue} from "../../contracts/venue/ISignedOrderVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";

/// @notice Test-only order account that accepts every fill and, while the venue asks it, does what `mode` says:
/// 0 nothing, 1 calls the venue's `settle` again (with no fills), 2 closes `target`'s batch itself (the zero-size
/// `checkOrderFill` only the settling venue may make).
contract ReenteringAccount {
    /// @notice What to do when asked about a fill.
    uint8 public mode;
    /// @notice The account whose batch mode 2 tries to close.
    address public target;

    /// @notice Sets the behaviour.
    function configure(uint8 mode_, address target_) external {
        mode = mode_;
        target = target_;
    }

    /// @notice Deposits `amount` of `token` as margin at `venue`.
    function deposit(IPerpVenue venue, IERC20 token, uint256 amount) external {
        token.approve(address(venue), amount);
        venue.depositMargin(amount);
    }

    /// @notice Accepts the fill after doing what `mode` says (its reverts pass on).
    function checkOrderFill(SignedOrder.Order calldata, bytes calldata, uint256 fillSize, uint256)
        external
        returns (bytes4)
    {
        if (fillSize != 0 && mode == 1) {
            ISignedOrderVenue(msg.sender).settle(new ISignedOrderVenue.Fill[](0));
        } else if (fillSize != 0 && mode == 2) {
            SignedOrder.Order memory o;
            o.account = target;
            IOrderAccount(target).checkOrderFill(o, "", 0, 0);
        }
        return IOrderAccount.checkOrderFill.selector;
    }
}
