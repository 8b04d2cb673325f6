// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {AccountFactory} from "../../contracts/account/AccountFactory.sol";
import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {TradingAccount} from "../../contracts/account/TradingAccount.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {P256Key} from "../../contracts/account/libraries/P256Key.sol";
import {CanonicalEntryPoint} from "../../script/CanonicalEntryPoint.sol";
import {UserOps} from "../../script/UserOps.sol";
import {RecordingVenue} from "../mocks/RecordingVenue.sol";
import {TestUSD} from "../../contracts/venue/TestUSD.sol";

/// @notice Shared set-up for account tests: the canonical EntryPoint v0.8 from its published artifact,
/// the factory, a funded account, a venue, and helpers that build, sign and send real UserOps.
abstract contract AccountTestBase is Test {
    uint256 internal constant OWNER_PK = 0xA11CE;
    uint256 internal constant SESSION_PK = 0x5E55;
    uint256 internal constant T0 = 1_800_000_000;

    IEntryPoint internal entryPoint;
    AccountFactory internal factory;
    TradingAccount internal account;
    /// @dev The same account, through the interface its SessionManager module serves.
    ISessionManager internal sessions;
    TestUSD internal usd;
    RecordingVenue internal venue;
    address internal owner;
    address internal sessionKey;
    address payable internal beneficiary = payable(address(0xBEEF));

    function setUp() public virtual {
        vm.warp(T0);
        entryPoint = CanonicalEntryPoint.deploy();
        factory = new AccountFactory(entryPoint);
        usd = new TestUSD(address(this));
        venue = new RecordingVenue(usd);
        owner = vm.addr(OWNER_PK);
        sessionKey = vm.addr(SESSION_PK);
        account = factory.createAccount(owner, 0);
        sessions = ISessionManager(address(account));
        vm.deal(address(account), 100 ether);
        usd.mint(address(account), 1_000_000e6);
        // The owner lets the venue pull collateral once; session keys can never approve.
        vm.prank(owner);
        account.execute(address(usd), 0, abi.encodeCall(usd.approve, (address(venue), type(uint256).max)));
    }

    /*//////////////////////////////////////////////////////////////
                                 SCOPES
    //////////////////////////////////////////////////////////////*/

    /// @dev Most a test op can cost: UserOps.build's limits (1M + 1M gas + 60k preVerificationGas) at its
    /// 10 gwei maxFeePerGas.
    uint128 internal constant TEST_OP_COST = 2_060_000 * 10 gwei;

    /// @dev A trading scope on `venue`: markets 0 and 1, 10 units, $100k notional, orders and cancels; a fee
    /// budget of 100 test ops, each under the per-op cap.
    function _tradingScope() internal view returns (ITradingAccount.SessionScope memory scope) {
        scope.validAfter = uint40(T0 - 1 hours);
        scope.validUntil = uint40(T0 + 8 hours);
        scope.maxOpTtl = 60;
        scope.maxOpCost = TEST_OP_COST;
        scope.feeBudget = 100 * TEST_OP_COST;
        scope.permissions = new ITradingAccount.CallPermission[](3);
        scope.permissions[0] = _orderPermission(0x3, 10e18, 100_000e18, false);
        scope.permissions[1] = _callPermission(address(venue), IPerpVenue.cancelOrder.selector, 0);
        scope.permissions[2] = _callPermission(address(venue), IPerpVenue.depositMargin.selector, 0);
    }

    function _orderPermission(uint64 marketMask, uint88 maxSize, uint96 maxNotional, bool reduceOnly)
        internal
        view
        returns (ITradingAccount.CallPermission memory p)
    {
        p.target = address(venue);
        p.selector = IPerpVenue.placeOrder.selector;
        p.marketMask = marketMask;
        p.maxOrderSize = maxSize;
        p.maxOrderNotional = maxNotional;
        p.reduceOnly = reduceOnly;
    }

    function _callPermission(address target, bytes4 selector, uint96 valueLimit)
        internal
        pure
        returns (ITradingAccount.CallPermission memory p)
    {
        p.target = target;
        p.selector = selector;
        p.valueLimit = valueLimit;
    }

    function _grant(address key, ITradingAccount.SessionScope memory scope) internal returns (uint32 grantId) {
        vm.prank(owner);
        grantId = sessions.grantSession(key, scope);
    }

    /*//////////////////////////////////////////////////////////////
                                CALLDATA
    //////////////////////////////////////////////////////////////*/

    function _order(uint32 marketId, int256 size, uint256 limitPrice, bool reduceOnly)
        internal
        view
        returns (bytes memory)
    {
        return abi.encodeCall(
            BaseAccount.execute,
            (address(venue), 0, abi.encodeCall(IPerpVenue.placeOrder, (marketId, size, limitPrice, reduceOnly)))
        );
    }

    function _exec(address target, uint256 value, bytes memory data) internal pure returns (bytes memory) {
        return abi.encodeCall(BaseAccount.execute, (target, value, data));
    }

    function _batch(BaseAccount.Call[] memory calls) internal pure returns (bytes memory) {
        return abi.encodeCall(BaseAccount.executeBatch, (calls));
    }

    /*//////////////////////////////////////////////////////////////
                                USER OPS
    //////////////////////////////////////////////////////////////*/

    function _op(address sender, uint256 nonce, bytes memory callData)
        internal
        pure
        returns (PackedUserOperation memory)
    {
        return UserOps.build(sender, nonce, callData, 1_000_000, 1_000_000);
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev Nonce of `key`'s lane `lane` on `account`.
    function _sessionNonce(address key, uint32 lane) internal view returns (uint256) {
        return entryPoint.getNonce(address(account), account.sessionNonceKey(key, lane));
    }

    /// @dev An owner-signed op on the default lane.
    function _ownerOp(bytes memory callData) internal view returns (PackedUserOperation memory op) {
        op = _op(address(account), entryPoint.getNonce(address(account), 0), callData);
        op.signature = _sign(OWNER_PK, entryPoint.getUserOpHash(op));
    }

    /// @dev A session op by `pk` on lane 0 (its callData wrapped in `executeUserOp`), expiring at `opValidUntil`,
    /// signed for the key's current grant.
    function _sessionOp(uint256 pk, bytes memory callData, uint40 opValidUntil)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        address key = vm.addr(pk);
        op = _op(address(account), _sessionNonce(key, 0), UserOps.forSession(key, callData));
        _signSession(op, pk, opValidUntil, sessions.getSession(key).grantId);
    }

    /// @dev What a session key signs for `op` under grant `grantId`, expiring at `opValidUntil`.
    function _plainSessionDigest(PackedUserOperation memory op, uint40 opValidUntil, uint32 grantId)
        internal
        view
        returns (bytes32)
    {
        return UserOps.sessionDigest(entryPoint.getUserOpHash(op), opValidUntil, UserOps.grantBinding(grantId));
    }

    function _signSession(PackedUserOperation memory op, uint256 pk, uint40 opValidUntil, uint32 grantId)
        internal
        view
    {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, _plainSessionDigest(op, opValidUntil, grantId));
        op.signature = UserOps.sessionSignature(opValidUntil, v, r, s);
    }

    /// @dev An enable-mode op: the owner's grant signature rides in the key's first op.
    function _enableOp(
        uint256 ownerPk,
        uint256 keyPk,
        ITradingAccount.SessionScope memory scope,
        bytes memory callData,
        uint40 opValidUntil
    ) internal view returns (PackedUserOperation memory op) {
        address key = vm.addr(keyPk);
        bytes32 grantDigest = sessions.grantDigest(key, scope);
        op = _op(address(account), _sessionNonce(key, 0), UserOps.forSession(key, callData));
        _signEnable(op, keyPk, opValidUntil, scope, grantDigest, _sign(ownerPk, grantDigest));
    }

    function _signEnable(
        PackedUserOperation memory op,
        uint256 keyPk,
        uint40 opValidUntil,
        ITradingAccount.SessionScope memory scope,
        bytes32 grantDigest,
        bytes memory ownerSig
    ) internal view {
        bytes32 digest = UserOps.sessionDigest(entryPoint.getUserOpHash(op), opValidUntil, grantDigest);
        op.signature = UserOps.enableSignature(opValidUntil, _sign(keyPk, digest), abi.encode(scope, ownerSig));
    }

    /*//////////////////////////////////////////////////////////////
                               P-256 KEYS
    //////////////////////////////////////////////////////////////*/

    /// @dev secp256r1 group order.
    uint256 internal constant P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551;

    /// @dev The key id of P-256 private key `pk`.
    function _p256Id(uint256 pk) internal pure returns (address) {
        (uint256 x, uint256 y) = vm.publicKeyP256(pk);
        return P256Key.id(bytes32(x), bytes32(y));
    }

    /// @dev `r ‖ s ‖ x ‖ y` of P-256 key `pk` over `digest`, s in the lower half.
    function _signP256(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 s) = vm.signP256(pk, digest);
        if (uint256(s) > P256_N / 2) s = bytes32(P256_N - uint256(s));
        (uint256 x, uint256 y) = vm.publicKeyP256(pk);
        return abi.encodePacked(r, s, x, y);
    }

    /// @dev A P-256 owner's `userOp.signature` / ERC-1271 signature: 0x10 ‖ r ‖ s ‖ x ‖ y.
    function _signP256Owner(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        return abi.encodePacked(P256Key.OWNER_PREFIX, _signP256(pk, digest));
    }

    /// @dev A session op by P-256 key `pk` on lane 0, signed for the key's current grant.
    function _p256SessionOp(uint256 pk, bytes memory callData, uint40 opValidUntil)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        return _keyOp(pk, true, UserOps.forSession(_p256Id(pk), callData), opValidUntil);
    }

    function _signP256Session(PackedUserOperation memory op, uint256 pk, uint40 opValidUntil, uint32 grantId)
        internal
        view
    {
        op.signature = UserOps.p256SessionSignature(
            opValidUntil, _signP256(pk, _plainSessionDigest(op, opValidUntil, grantId))
        );
    }

    /// @dev An enable-mode op of P-256 key `keyPk`, the grant signed by `ownerSig(grantDigest)`.
    function _p256EnableOp(
        bytes memory ownerSig,
        uint256 keyPk,
        ITradingAccount.SessionScope memory scope,
        bytes memory callData,
        uint40 opValidUntil
    ) internal view returns (PackedUserOperation memory op) {
        address key = _p256Id(keyPk);
        bytes32 grantDigest = sessions.grantDigest(key, scope);
        op = _op(address(account), _sessionNonce(key, 0), UserOps.forSession(key, callData));
        bytes32 digest = UserOps.sessionDigest(entryPoint.getUserOpHash(op), opValidUntil, grantDigest);
        op.signature = UserOps.p256EnableSignature(opValidUntil, _signP256(keyPk, digest), abi.encode(scope, ownerSig));
    }

    /// @dev An op of the key of `pk` (either curve) whose callData is `callData` itself (a hand-over or
    /// heartbeat), on lane 0.
    function _keyOp(uint256 pk, bool p256, bytes memory callData, uint40 opValidUntil)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        address key = p256 ? _p256Id(pk) : vm.addr(pk);
        op = _op(address(account), _sessionNonce(key, 0), callData);
        uint32 grantId = sessions.getSession(key).grantId;
        if (p256) _signP256Session(op, pk, opValidUntil, grantId);
        else _signSession(op, pk, opValidUntil, grantId);
    }

    /// @dev Revert data the next `_handle` must end with (set by the `_expect*` helpers). Kept until
    /// `_handle` because building an op makes calls of its own, which `vm.expectRevert` would catch.
    bytes private _pendingRevert;
    bool private _hasPendingRevert;

    function _handle(PackedUserOperation memory op) internal {
        _handleFrom(op, address(this), beneficiary);
    }

    /// @dev `handleOps([op])` sent by `submitter` (as msg.sender and tx.origin), paying `payee`.
    function _handleFrom(PackedUserOperation memory op, address submitter, address payable payee) internal {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        if (_hasPendingRevert) {
            _hasPendingRevert = false;
            vm.expectRevert(_pendingRevert);
        }
        if (submitter != address(this)) vm.prank(submitter, submitter);
        entryPoint.handleOps(ops, payee);
    }

    /// @dev The next `_handle` must fail because validation reverted with `inner`.
    function _expectValidationRevert(bytes memory inner) internal {
        _expectHandleRevert(abi.encodeWithSelector(IEntryPoint.FailedOpWithRevert.selector, 0, "AA23 reverted", inner));
    }

    /// @dev The next `_handle` must fail with EntryPoint reason `reason` (e.g. "AA24 signature error").
    function _expectFailedOp(string memory reason) internal {
        _expectHandleRevert(abi.encodeWithSelector(IEntryPoint.FailedOp.selector, 0, reason));
    }

    function _expectHandleRevert(bytes memory data) internal {
        _pendingRevert = data;
        _hasPendingRevert = true;
    }
}
