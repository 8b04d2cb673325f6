// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IPerpVenue
/// @notice The interface of a Keyscope perpetual-futures venue as session-key scopes read it: orders, margin,
/// and the risk figures an account checks after a session op.
/// @dev Units, fixed here so that scopes can be checked before any venue exists:
///  - `sizeDelta`: signed base-asset quantity with 18 decimals (1e18 = one unit of the base asset);
///    positive buys (opens or adds to a long), negative sells.
///  - `limitPrice` and fill prices: quote price with 18 decimals (1e18 = 1 USD per base unit). A buy fills
///    only at or below its limit, a sell only at or above it.
///  - order notional, as scopes bound it: `|sizeDelta| * price / 1e18`, in 18-decimal USD, at the limit for
///    a buy (the fill is at or below it) and at the fill price a venue returns for a sell.
///  - money (`accountRisk`): quote units, the collateral token's own decimals.
interface IPerpVenue {
    /// @notice Places a market-or-better order that fills at the oracle price if that is within `limitPrice`.
    /// @param marketId The market to trade.
    /// @param sizeDelta Signed quantity (18 decimals): positive buys, negative sells.
    /// @param limitPrice Worst acceptable price (18 decimals): a ceiling for buys, a floor for sells.
    /// @param reduceOnly If true, the order may only shrink the caller's existing position.
    /// @return orderId The venue's identifier for the order.
    /// @return fillPrice The price the order filled at (18 decimals): session accounts check a sell's notional
    /// against it.
    function placeOrder(uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly)
        external
        returns (uint256 orderId, uint256 fillPrice);

    /// @notice Cancels an order of the caller that has not been filled.
    /// @param marketId The market of the order.
    /// @param orderId The identifier returned by `placeOrder`.
    function cancelOrder(uint32 marketId, uint256 orderId) external;

    /// @notice Moves `amount` of collateral from the caller into its margin account (needs an allowance).
    /// @param amount Collateral amount in the collateral token's own decimals.
    function depositMargin(uint256 amount) external;

    /// @notice Moves `amount` of collateral from the caller's margin account back to the caller.
    /// @dev Session keys can never call this: accounts refuse to grant it.
    /// @param amount Collateral amount in the collateral token's own decimals.
    function withdrawMargin(uint256 amount) external;

    /// @notice Adds the caller's collateral to the venue's liquidity pool. Never grantable to a session key.
    /// @param amount Collateral amount.
    function fundPool(uint256 amount) external;

    /// @notice Adds the caller's collateral to the insurance fund. Never grantable to a session key.
    /// @param amount Collateral amount.
    function fundInsurance(uint256 amount) external;

    /// @notice The token margin is deposited in: an account's drawdown breaker counts the account's wallet
    /// balance of it with the venue value (a session key may deposit that balance into margin).
    /// @return The collateral token (its decimals are the venue's quote units).
    function collateralToken() external view returns (IERC20);

    /// @notice The figures an account's post-execution limits read, at the last oracle prices.
    /// @param account The account.
    /// @return accountValue Collateral plus unrealised PnL less funding owed (quote units).
    /// @return maintenanceMargin The maintenance requirement (quote units).
    /// @return grossNotional The sum of every position's |size| x price (quote units).
    /// @return largestPositionNotional The largest single position's notional (quote units).
    function accountRisk(address account)
        external
        view
        returns (int256 accountValue, uint256 maintenanceMargin, uint256 grossNotional, uint256 largestPositionNotional);
}
