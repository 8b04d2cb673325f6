// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PermissionRule} from "../types/PermissionRule.sol";
import {RiskState} from "../types/RiskState.sol";
import {SessionCounters} from "../types/SessionCounters.sol";
import {SessionState} from "../types/SessionState.sol";

/// @title AccountStorage
/// @notice The storage of a TradingAccount, shared by the account (validation and execution) and its
/// SessionManager module (administration, run by DELEGATECALL on the same storage), at one ERC-7201 slot.
library AccountStorage {
    /// @custom:storage-location erc7201:keyscope.storage.TradingAccount
    struct Layout {
        /// Owner, epoch (revokeAllSessions count), last grantId, and the grantId at or below which
        /// sessions were revoked by revokeAllSessions: one slot, read by every validation.
        address owner;
        uint32 epoch;
        uint32 grantCount;
        uint32 revokeFloor;
        /// The hot word of each session: validity, fee limits, flags.
        mapping(address key => SessionState) sessions;
        /// Bumped by every grant and revoke of a key: owner grant signatures bind it.
        mapping(address key => uint32) keyNonce;
        /// Call permissions and paymaster entries, by keccak256(key, grantId, target, selector).
        mapping(bytes32 ruleId => PermissionRule) rules;
        mapping(address key => bytes32[]) permissionIds;
        mapping(address key => bool) known;
        address[] keys;
        /// Rate, uses and value counters of sessions that have them.
        mapping(address key => SessionCounters) counters;
        /// Post-execution limits and high-water mark of sessions that have them.
        mapping(address key => RiskState) risk;
        /// The paymasters each session lists (for reads; validation uses `rules`).
        mapping(address key => address[]) paymasters;
        /// A two-step ownership transfer in progress.
        address pendingOwner;
        bool keepSessionsOnTransfer;
        /// The key each session key may hand its session to (owner-committed) with the grant it was committed
        /// under, `grantId << 160 | successor` (a commitment dies with its grant, at no cost to grants), and
        /// the dead-man switch's deadline of keys that armed one (read in validation only under
        /// `SessionStateLibrary.HEARTBEAT`).
        mapping(address key => uint256) successors;
        mapping(address key => uint40) heartbeats;
        /// Each key's order epoch: signed orders name it, and bumping it (by the key or the owner) cancels every
        /// order the key signed before.
        mapping(address key => uint32) orderEpochs;
    }

    /// @notice Longest dead-man switch interval a heartbeat may set (seconds).
    uint32 internal constant MAX_HEARTBEAT_INTERVAL = 7 days;

    /// @dev keccak256(abi.encode(uint256(keccak256("keyscope.storage.TradingAccount")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 internal constant SLOT = 0x95c5e859a11e6fc53db8fa34675f99ba10572bb8c9ea519a3c6c77255d435000;

    /// @notice The account's storage.
    function layout() internal pure returns (Layout storage $) {
        assembly ("memory-safe") {
            $.slot := SLOT
        }
    }

    /// @notice keccak256(abi.encodePacked(key, grantId, target, selector)), hashed in scratch memory.
    function ruleId(address key, uint32 grantId, address target, bytes4 selector) internal pure returns (bytes32 id) {
        assembly ("memory-safe") {
            // 20 + 4 + 20 + 4 = 48 bytes at 0x00..0x30 (scratch space and the free memory pointer's
            // first half), packed from the right: the pointer word is saved and restored.
            let m := mload(0x40)
            mstore(0x00, shl(96, key))
            mstore(0x14, shl(224, grantId))
            mstore(0x18, shl(96, target))
            mstore(0x2c, selector)
            id := keccak256(0x00, 0x30)
            mstore(0x40, m)
        }
    }

    /// @notice The successor committed for `key` under its current grant `grantId`, or zero.
    function successorOf(Layout storage $, address key, uint32 grantId) internal view returns (address) {
        uint256 entry = $.successors[key];
        return entry >> 160 == grantId ? address(uint160(entry)) : address(0);
    }

    /// @notice True while `s` can validate: granted, not expired-by-revocation, above the revoke floor.
    function isActive(Layout storage $, SessionState s) internal view returns (bool) {
        return s.validUntil() != 0 && s.grantId() > $.revokeFloor;
    }
}
