// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {CommonBase} from "forge-std/Base.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

import {TradingAccount} from "../../../contracts/account/TradingAccount.sol";
import {ISessionManager} from "../../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../../contracts/account/interfaces/ITradingAccount.sol";
import {ISignedOrderVenue} from "../../../contracts/venue/ISignedOrderVenue.sol";
import {PerpVenue} from "../../../contracts/venue/PerpVenue.sol";
import {SignedOrder} from "../../../contracts/venue/libraries/SignedOrder.sol";
import {OrderTestBase} from "../OrderTestBase.sol";
import {Orders} from "../Orders.sol";

/// @notice A malicious settler: it signs nothing, but picks any of the key's signed orders (fresh, partly filled,
/// filled, cancelled or of an old epoch), any size, either role, and settles; the key cancels nonces and bumps
/// its epoch in between. Ghosts record what the rules allow, so the invariants can compare.
contract SettlerHandler is CommonBase, StdUtils {
    uint32 internal constant BTC = 0;
    uint256 internal constant KEY_PK = 0x5E55;
    uint256 internal constant TAKER_KEY_PK = 0x7A6E;

    PerpVenue internal immutable venue;
    TradingAccount internal immutable maker;
    TradingAccount internal immutable taker;
    address internal immutable key;
    address internal immutable takerKey;

    SignedOrder.Order[] internal orders;
    /// Ghosts: the filled total the rules allow per order, the fills that went through, and violations.
    mapping(uint256 index => uint256) public allowedFilled;
    uint256 public fills;
    uint256 public violations;
    uint64 internal nextNonce = 1_000;

    constructor(PerpVenue venue_, TradingAccount maker_, TradingAccount taker_) {
        venue = venue_;
        maker = maker_;
        taker = taker_;
        key = vm.addr(KEY_PK);
        takerKey = vm.addr(TAKER_KEY_PK);
    }

    function orderCount() external view returns (uint256) {
        return orders.length;
    }

    function order(uint256 i) external view returns (SignedOrder.Order memory) {
        return orders[i];
    }

    /// The key signs a new order: either side, up to 0.05 BTC, at the oracle's price.
    function sign(bool isBuy, uint256 size) external {
        SignedOrder.Order memory o =
            Orders.gtt(address(maker), key, BTC, isBuy, uint128(bound(size, 1, 0.05e18)), 60_000e18, nextNonce++);
        orders.push(o);
    }

    /// The settler fills `size` of order `i` (as maker or taker) against a fresh counter-order of the taker.
    function settle(uint256 i, uint256 size, bool asMaker) external {
        if (orders.length == 0) return;
        i = bound(i, 0, orders.length - 1);
        SignedOrder.Order memory o = orders[i];
        // Mostly within the order's size, one call in four up to twice it (attempts to overfill).
        uint128 amount = uint128(bound(size, 1, size % 4 == 0 ? 2 * uint256(o.size) : o.size));
        SignedOrder.Order memory c = Orders.gtt(address(taker), takerKey, BTC, !o.isBuy, amount, 60_000e18, nextNonce++);
        bytes memory oSig = _sign(KEY_PK, maker, o);
        bytes memory cSig = _sign(TAKER_KEY_PK, taker, c);
        ISignedOrderVenue.Fill[] memory batch = new ISignedOrderVenue.Fill[](1);
        batch[0] = asMaker
            ? ISignedOrderVenue.Fill(o, oSig, c, cSig, amount)
            : ISignedOrderVenue.Fill(c, cSig, o, oSig, amount);
        bool allowed = _spent(o) == false && allowedFilled[i] + amount <= o.size
            && o.epoch == ISessionManager(address(maker)).orderEpoch(key);
        try venue.settle(batch) {
            if (!allowed) ++violations;
            allowedFilled[i] += amount;
            ++fills;
        } catch {}
    }

    /// The key (from its own address) cancels the nonce of order `i`.
    function cancel(uint256 i) external {
        if (orders.length == 0) return;
        SignedOrder.Order memory o = orders[bound(i, 0, orders.length - 1)];
        vm.prank(key);
        venue.cancelOrders(address(maker), key, o.nonce >> 8, uint256(1) << (o.nonce & 255));
    }

    /// The owner bumps the key's order epoch (every order signed so far dies), one call in eight.
    function bumpEpoch(uint256 seed) external {
        if (seed % 8 != 0) return;
        vm.prank(vm.addr(0xA11CE));
        ISessionManager(address(maker)).bumpOrderEpoch(key);
    }

    function _spent(SignedOrder.Order memory o) internal view returns (bool) {
        return venue.cancelledOrders(o.account, o.key, o.nonce >> 8) & (uint256(1) << (o.nonce & 255)) != 0;
    }

    function _sign(uint256 pk, TradingAccount acct, SignedOrder.Order memory o) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, acct.orderDigest(address(venue), o));
        return abi.encodePacked(r, s, v);
    }
}

/// @notice Whatever the settler does, no order fills past its size or after its nonce is spent or its epoch
/// bumped, the two accounts' positions mirror each other, and the key's uses count exactly the fills.
contract SignedOrderInvariantTest is OrderTestBase {
    SettlerHandler internal handler;
    uint32 internal constant USES = 1_000_000;

    function setUp() public override {
        super.setUp();
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.maxUses = USES;
        _grantMaker(scope);
        handler = new SettlerHandler(venue, account, takerAccount);
        venue.setSettler(address(handler), true);
        targetContract(address(handler));
    }

    /// forge-config: default.invariant.runs = 32
    /// forge-config: default.invariant.depth = 40
    function invariant_settlerCannotBreakOrders() public view {
        assertEq(handler.violations(), 0, "a fill the rules refuse went through");
        for (uint256 i; i < handler.orderCount(); ++i) {
            SignedOrder.Order memory o = handler.order(i);
            assertLe(handler.allowedFilled(i), o.size);
            uint256 tracked = venue.filledOf(venue.orderHash(o));
            assertTrue(tracked == handler.allowedFilled(i) || tracked == 0, "the venue's filled total");
        }
        assertEq(_makerBtc(), -_takerBtc(), "positions mirror each other");
        assertEq(sessions.getSession(key).usesLeft, USES - handler.fills(), "one use a fill");
    }

    /// The handler is not vacuous: a fill within the order settles and counts, an overfill, a cancelled nonce and
    /// an old epoch are refused and do not.
    function test_handler_settlesAndRefuses() public {
        handler.sign(true, 0.01e18);
        handler.settle(0, 0.004e18, true);
        handler.settle(0, 0.007e18, false); // past the size
        assertEq(handler.fills(), 1);
        handler.cancel(0);
        handler.settle(0, 0.001e18, true);
        handler.sign(false, 0.01e18);
        handler.bumpEpoch(8);
        handler.settle(1, 0.001e18, true);
        assertEq(handler.fills(), 1);
        handler.sign(false, 0.01e18);
        handler.settle(2, 0.01e18, false);
        assertEq(handler.fills(), 2);
        assertEq(handler.violations(), 0);
    }
}
