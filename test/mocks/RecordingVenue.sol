// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";

/// @notice Stand-in for the perpetual venue (contracts/venue is built in its own issue): it implements
/// IPerpVenue faithfully enough for account tests — margin really moves with the collateral token —
/// and records every order so tests can assert what a session key actually did.
contract RecordingVenue is IPerpVenue {
    struct Order {
        address trader;
        uint32 marketId;
        int256 sizeDelta;
        uint256 limitPrice;
        bool reduceOnly;
    }

    IERC20 public immutable collateral;
    mapping(address => uint256) public margin;
    Order[] public orders;
    uint256 public cancels;

    error InsufficientMargin();

    constructor(IERC20 collateral_) {
        collateral = collateral_;
    }

    function placeOrder(uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly)
        external
        returns (uint256 orderId)
    {
        orders.push(Order(msg.sender, marketId, sizeDelta, limitPrice, reduceOnly));
        return orders.length - 1;
    }

    function cancelOrder(uint32, uint256) external {
        cancels += 1;
    }

    function depositMargin(uint256 amount) external {
        collateral.transferFrom(msg.sender, address(this), amount);
        margin[msg.sender] += amount;
    }

    function withdrawMargin(uint256 amount) external {
        if (margin[msg.sender] < amount) revert InsufficientMargin();
        margin[msg.sender] -= amount;
        collateral.transfer(msg.sender, amount);
    }

    function orderCount() external view returns (uint256) {
        return orders.length;
    }
}
