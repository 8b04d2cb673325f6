// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SignedOrder} from "../../venue/libraries/SignedOrder.sol";

/// @title IOrderAccount
/// @notice What a venue asks an account when it settles a fill of an order the account's session key signed
/// off-chain.
interface IOrderAccount {
    /// @notice Checks and spends the signing key's scope for one fill of `order`, after the venue has applied
    /// the fill: the signature, the key's live grant, window, order epoch and dead-man switch, the venue's order
    /// permission (market, size, notional, reduce-only), the fill price within the order's limit, and the key's
    /// uses and rate counters. Reverts with the refusing check's error. The key's post-execution limits wait for
    /// the end of the venue's batch: a call with `fillSize` zero (no fill: the other fields are not read), which
    /// the venue makes once per account after all of the batch's fills, applies the limits (leverage, largest
    /// position, headroom, drawdown breaker) of every key whose fills it checked, once each, reading the venue
    /// after all of them. Only that venue can close its batch; with nothing waiting, the call does nothing.
    /// @dev The caller is the venue: its order permission, its domain and its account figures are the ones used.
    /// @param order The signed order.
    /// @param signature The key's signature over the nested order digest (65 bytes secp256k1, 128 bytes P-256).
    /// @param fillSize The base size filled now (18 decimals).
    /// @param fillPrice The fill price (18 decimals).
    /// @return magic `IOrderAccount.checkOrderFill.selector` when the fill stands.
    function checkOrderFill(
        SignedOrder.Order calldata order,
        bytes calldata signature,
        uint256 fillSize,
        uint256 fillPrice
    ) external returns (bytes4 magic);

    /// @notice The digest `order`'s key signs for `venue`: `order` wrapped in the venue's domain, wrapped in this
    /// account's (ERC-7739 style).
    function orderDigest(address venue, SignedOrder.Order calldata order) external view returns (bytes32);
}

