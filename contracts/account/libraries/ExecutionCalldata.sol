// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ExecutionCalldata
/// @notice Reads `executeSession(address,bytes)`, `execute(address,uint256,bytes)`,
/// `executeBatch((address,uint256,bytes)[])` and `placeOrder(uint32,int256,uint256,bool)` calldata, accepting
/// only the canonical ABI encoding (the one every ABI encoder emits).
/// @dev Why canonical only: validation checks the calls a session op will make, and execution decodes
/// the same bytes again with Solidity's ABI decoder. A permissive parser that followed offsets
/// differently from that decoder would let an op validate one call and execute another; requiring the
/// canonical layout (every offset exactly where an encoder puts it, addresses and bools clean) leaves
/// one reading of the bytes. Anything else reverts with `MalformedCalldata`.
library ExecutionCalldata {
    /// @notice The calldata is not the canonical encoding of the call it names.
    error MalformedCalldata();

    /// @dev Head of `execute`: selector, then target, value, data offset (0x60) and data length.
    uint256 internal constant EXECUTE_DATA_START = 4 + 4 * 32;
    /// @dev Head of `executeBatch`: selector, array offset (0x20), array length.
    uint256 internal constant BATCH_HEADS_START = 4 + 2 * 32;
    /// @dev `placeOrder` is fixed-size: selector and four words.
    uint256 internal constant PLACE_ORDER_LENGTH = 4 + 4 * 32;
    /// @dev Head of `executeSession`: selector, key, calls offset (0x40) and calls length.
    uint256 internal constant SESSION_CALLS_START = 4 + 3 * 32;

    /// @notice The key and the inner `execute`/`executeBatch` calldata of `executeSession(key, calls)`
    /// calldata `cd`. The offset must be the canonical 0x40, so Solidity's decoder in execution reads the same
    /// bytes as validation did.
    function decodeSession(bytes calldata cd) internal pure returns (address key, bytes calldata calls) {
        assembly ("memory-safe") {
            let o := cd.offset
            let l := cd.length
            // The head (selector, key, offset, length) must be there before any read.
            if lt(l, SESSION_CALLS_START) {
                mstore(0x00, 0x59170bf0) // `MalformedCalldata()`.
                revert(0x1c, 0x04)
            }
            let k := calldataload(add(o, 4))
            let len := calldataload(add(o, 68))
            // Clean address, calls offset exactly 0x40, calls inside `cd`.
            if or(or(shr(160, k), iszero(eq(calldataload(add(o, 36)), 0x40))), gt(len, sub(l, SESSION_CALLS_START))) {
                mstore(0x00, 0x59170bf0) // `MalformedCalldata()`.
                revert(0x1c, 0x04)
            }
            key := k
            calls.offset := add(o, SESSION_CALLS_START)
            calls.length := len
        }
    }

    /// @notice The target, value and data of `execute(target, value, data)` calldata `cd`.
    /// @dev On every session op's path, so it is written out in assembly (about 500 gas less per op than the
    /// Solidity version, same checks).
    function decodeExecute(bytes calldata cd)
        internal
        pure
        returns (address target, uint256 value, bytes calldata data)
    {
        assembly ("memory-safe") {
            let o := cd.offset
            let l := cd.length
            // The head (selector, target, value, data offset, data length) must be there before any read.
            if lt(l, EXECUTE_DATA_START) {
                mstore(0x00, 0x59170bf0) // `MalformedCalldata()`.
                revert(0x1c, 0x04)
            }
            let t := calldataload(add(o, 4))
            let len := calldataload(add(o, 100))
            // Clean address, data offset exactly 0x60, data inside `cd`.
            if or(or(shr(160, t), iszero(eq(calldataload(add(o, 68)), 0x60))), gt(len, sub(l, EXECUTE_DATA_START))) {
                mstore(0x00, 0x59170bf0) // `MalformedCalldata()`.
                revert(0x1c, 0x04)
            }
            target := t
            value := calldataload(add(o, 36))
            data.offset := add(o, EXECUTE_DATA_START)
            data.length := len
        }
    }

    /// @notice The number of calls in `executeBatch(calls)` calldata `cd`; each is read by `batchCall`.
    function batchLength(bytes calldata cd) internal pure returns (uint256 n) {
        if (cd.length < BATCH_HEADS_START || _word(cd, 4) != 0x20) revert MalformedCalldata();
        n = _word(cd, 36);
        // Every call needs at least its head word and four words of tuple: bounds n by the calldata.
        if (n > (cd.length - BATCH_HEADS_START) / (5 * 32)) revert MalformedCalldata();
    }

    /// @notice Reads call `i` of `n` from `executeBatch` calldata. `expected` is where call `i`'s tuple
    /// must start in the canonical layout (relative to the array's first head word); pass 32 * n for
    /// call 0 and the returned `next` for the call after.
    function batchCall(bytes calldata cd, uint256 i, uint256 expected)
        internal
        pure
        returns (address target, uint256 value, bytes calldata data, uint256 next)
    {
        if (_word(cd, BATCH_HEADS_START + 32 * i) != expected) revert MalformedCalldata();
        uint256 tuple = BATCH_HEADS_START + expected;
        if (cd.length < tuple + 4 * 32 || _word(cd, tuple + 64) != 0x60) revert MalformedCalldata();
        target = _address(cd, tuple);
        value = _word(cd, tuple + 32);
        data = _bytesAt(cd, tuple + 96);
        next = expected + 4 * 32 + _padded(data.length);
    }

    /// @notice The arguments of `placeOrder(marketId, sizeDelta, limitPrice, reduceOnly)` calldata `data`.
    function decodePlaceOrder(bytes calldata data)
        internal
        pure
        returns (uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly)
    {
        assembly ("memory-safe") {
            let o := data.offset
            let m := calldataload(add(o, 4))
            let f := calldataload(add(o, 100))
            // Exactly four words; a clean uint32 and a clean bool (the length check comes first in `or`,
            // but all reads stay inside the calldata, so evaluating them all is harmless).
            if or(iszero(eq(data.length, PLACE_ORDER_LENGTH)), or(gt(m, 0xffffffff), gt(f, 1))) {
                mstore(0x00, 0x59170bf0) // `MalformedCalldata()`.
                revert(0x1c, 0x04)
            }
            marketId := m
            sizeDelta := calldataload(add(o, 36))
            limitPrice := calldataload(add(o, 68))
            reduceOnly := f
        }
    }

    /// @dev The 32-byte word at `at`; the caller has checked `at + 32 <= cd.length`.
    function _word(bytes calldata cd, uint256 at) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := calldataload(add(cd.offset, at))
        }
    }

    /// @dev A word that must hold a clean address (upper 96 bits zero).
    function _address(bytes calldata cd, uint256 at) private pure returns (address a) {
        uint256 w = _word(cd, at);
        if (w > type(uint160).max) revert MalformedCalldata();
        a = address(uint160(w));
    }

    /// @dev The `bytes` whose length word sits at `at`, checked to lie inside `cd`.
    function _bytesAt(bytes calldata cd, uint256 at) private pure returns (bytes calldata data) {
        uint256 len = _word(cd, at);
        uint256 start = at + 32;
        if (len > cd.length - start) revert MalformedCalldata();
        data = cd[start:start + len];
    }

    function _padded(uint256 len) private pure returns (uint256) {
        return (len + 31) & ~uint256(31);
    }
}
