// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SignedOrder} from "./libraries/SignedOrder.sol";

/// @title ISignedOrderVenue
/// @notice Settlement of orders signed off-chain by session keys and matched off-chain, and their cancels.
interface ISignedOrderVenue {
    /// @notice One match: the maker's order against the taker's, `size` of base at the maker's limit price.
    struct Fill {
        SignedOrder.Order maker;
        bytes makerSignature;
        SignedOrder.Order taker;
        bytes takerSignature;
        uint128 size;
    }

    /// @notice One side of a settled fill.
    event SignedOrderFilled(
        bytes32 indexed orderHash,
        address indexed account,
        uint32 indexed marketId,
        int256 sizeDelta,
        uint256 price,
        uint256 fee,
        int256 realisedPnl,
        int256 newSize
    );
    /// @notice Orders of (`account`, `key`) with nonces `wordIndex << 8 | i`, for each bit `i` of `mask`, are
    /// cancelled.
    event OrdersCancelled(address indexed account, address indexed key, uint256 wordIndex, uint256 mask);
    /// @notice The venue owner let `settler` settle fills (or stopped it).
    event SettlerSet(address indexed settler, bool allowed);

    /// @notice Settles matched fills, in order, all or none.
    /// @param fills The matches.
    function settle(Fill[] calldata fills) external;

    /// @notice Cancels orders of (`account`, `key`): one storage write cancels up to 256 nonces. The account
    /// itself (an owner op, or its key's `cancelSignedOrders` op) or the key (its own orders) may call it.
    /// @param account The account the orders name.
    /// @param key The key that signed them.
    /// @param wordIndex The bitmap word: nonces `wordIndex << 8` to `wordIndex << 8 | 255`.
    /// @param mask The bits to set (cancelled orders stay cancelled).
    function cancelOrders(address account, address key, uint256 wordIndex, uint256 mask) external;
}
