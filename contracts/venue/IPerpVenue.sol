// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IPerpVenue
/// @notice The order interface of a Keyscope perpetual-futures venue, as session-key scopes read it.
/// @dev Units, fixed here so that scopes can be checked before any venue exists:
///  - `sizeDelta`: signed base-asset quantity with 18 decimals (1e18 = one unit of the base asset);
///    positive buys (opens or adds to a long), negative sells.
///  - `limitPrice`: quote price with 18 decimals (1e18 = 1 USD per base unit). A buy fills only at or
///    below it, a sell only at or above it.
///  - order notional, as scopes bound it: `|sizeDelta| * limitPrice / 1e18`, in 18-decimal USD.
///  For a sell, the limit is a floor, so `|sizeDelta| * limitPrice` bounds the filled notional only
///  if the venue refuses limit prices far from its index price. A venue used with notional-capped
///  session keys must enforce such a price band; `maxOrderSize` is exact on both sides regardless.
interface IPerpVenue {
    /// @notice Places a market-or-better order that fills at the oracle price if that is within `limitPrice`.
    /// @param marketId The market to trade.
    /// @param sizeDelta Signed quantity (18 decimals): positive buys, negative sells.
    /// @param limitPrice Worst acceptable price (18 decimals): a ceiling for buys, a floor for sells.
    /// @param reduceOnly If true, the order may only shrink the caller's existing position.
    /// @return orderId The venue's identifier for the order.
    function placeOrder(uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly)
        external
        returns (uint256 orderId);

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
}
