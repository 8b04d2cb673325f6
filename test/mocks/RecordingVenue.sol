// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";

/// @notice Stand-in for the perpetual venue in account unit tests: margin really moves with the collateral
/// token, every order is recorded so tests can assert what a session key actually did, and the fill price
/// and risk figures are set by the test (the real venue is used in test/e2e).
contract RecordingVenue is IPerpVenue {
    struct Order {
        address trader;
        uint32 marketId;
        int256 sizeDelta;
        uint256 limitPrice;
        bool reduceOnly;
    }

    IERC20 public immutable collateralToken;
    mapping(address => uint256) public margin;
    Order[] public orders;
    uint256 public cancels;
    uint256 public fillPrice;

    struct Risk {
        int256 accountValue;
        uint256 mmr;
        uint256 gross;
        uint256 largest;
    }

    Risk public risk;

    error InsufficientMargin();

    constructor(IERC20 collateral_) {
        collateralToken = collateral_;
    }

    /// @dev Fills at `fillPrice` when a test set one, else at the order's limit.
    function placeOrder(uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly)
        external
        returns (uint256 orderId, uint256 price)
    {
        orders.push(Order(msg.sender, marketId, sizeDelta, limitPrice, reduceOnly));
        return (orders.length - 1, fillPrice != 0 ? fillPrice : limitPrice);
    }

    /// @notice Makes every later order fill at `price` (0: at its limit).
    function setFillPrice(uint256 price) external {
        fillPrice = price;
    }

    /// @notice Sets what `accountRisk` reports for every account.
    function setRisk(int256 accountValue, uint256 mmr, uint256 gross, uint256 largest) external {
        risk = Risk(accountValue, mmr, gross, largest);
    }

    function accountRisk(address) external view returns (int256, uint256, uint256, uint256) {
        return (risk.accountValue, risk.mmr, risk.gross, risk.largest);
    }

    function fundPool(uint256 amount) external {
        collateralToken.transferFrom(msg.sender, address(this), amount);
    }

    function fundInsurance(uint256 amount) external {
        collateralToken.transferFrom(msg.sender, address(this), amount);
    }

    function cancelOrder(uint32, uint256) external {
        cancels += 1;
    }

    function depositMargin(uint256 amount) external {
        collateralToken.transferFrom(msg.sender, address(this), amount);
        margin[msg.sender] += amount;
    }

    function withdrawMargin(uint256 amount) external {
        if (margin[msg.sender] < amount) revert InsufficientMargin();
        margin[msg.sender] -= amount;
        collateralToken.transfer(msg.sender, amount);
    }

    function orderCount() external view returns (uint256) {
        return orders.length;
    }
}
