// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {Vm} from "forge-std/Vm.sol";

import {TradingAccount} from "../../../contracts/account/TradingAccount.sol";
import {ISessionManager} from "../../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../../contracts/venue/IPerpVenue.sol";
import {PerpVenue} from "../../../contracts/venue/PerpVenue.sol";
import {SignedPriceOracle} from "../../../contracts/venue/SignedPriceOracle.sol";
import {UserOps} from "../../../script/UserOps.sol";
import {VenueSessionBase} from "../../utils/VenueSessionBase.sol";

/// @notice Invariant handler on the real venue: a stolen key with post-execution limits trades any size, side,
/// limit and reduce-only flag it likes, and deposits any part of the wallet into margin, while the market moves;
/// after every op that went through and raised risk, the limits are checked against what the venue reports at
/// that moment (the breaker's against the equity: wallet collateral + venue value).
contract ExposureHandler is CommonBase, StdCheats, StdUtils {
    uint256 internal constant KEY_PK = 0x5E55;
    uint256 internal constant ORACLE_PK = 0x0AC1E;
    uint16 public constant MAX_LEVERAGE = 300;
    uint64 public constant MAX_POSITION = 20_000e6;
    uint16 public constant HEADROOM_BPS = 5_000;
    uint16 public constant DRAWDOWN_BPS = 500;

    IEntryPoint internal immutable entryPoint;
    TradingAccount internal immutable account;
    PerpVenue internal immutable venue;
    SignedPriceOracle internal immutable oracle;
    address internal immutable key;

    /// Ghosts: violations must stay zero; the rest shows the handler is not vacuous.
    uint256 public breaches;
    uint256 public riskRaisingOpsIn;
    uint256 public opsUndone;
    uint256 public trips;
    uint256 public btcPrice = 60_000e18;

    constructor(IEntryPoint entryPoint_, TradingAccount account_, PerpVenue venue_, SignedPriceOracle oracle_) {
        entryPoint = entryPoint_;
        account = account_;
        venue = venue_;
        oracle = oracle_;
        key = vm.addr(KEY_PK);
    }

    /// The market moves up to 4 % either way.
    function movePrice(uint256 seed) external {
        int256 bps = int256(bound(seed, 0, 800)) - 400;
        uint256 next = btcPrice * uint256(10_000 + bps) / 10_000;
        btcPrice = bound(next, 30_000e18, 90_000e18);
        vm.warp(block.timestamp + 1);
        SignedPriceOracle.PriceUpdate memory u = SignedPriceOracle.PriceUpdate(0, btcPrice, uint64(block.timestamp));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ORACLE_PK, oracle.updateDigest(u));
        oracle.submit(u, abi.encodePacked(r, s, v));
    }

    /// An order of any size and side within the key's order scope, any limit inside the band, any flag.
    function trade(uint256 size, bool sell, uint256 limitBps, bool reduceOnly) external {
        int256 delta = int256(bound(size, 0.001e18, 1e18));
        if (sell) delta = -delta;
        uint256 limit = btcPrice * (sell ? 10_000 - bound(limitBps, 0, 900) : 10_000 + bound(limitBps, 0, 900)) / 10_000;
        bytes memory call = abi.encodeCall(IPerpVenue.placeOrder, (0, delta, limit, reduceOnly));
        _send(abi.encodeCall(BaseAccount.execute, (address(venue), 0, call)), !reduceOnly);
    }

    /// A deposit of any part of the wallet's collateral into margin (never risk-raising).
    function deposit(uint256 amount) external {
        uint256 balance = venue.collateralToken().balanceOf(address(account));
        if (balance == 0) return;
        bytes memory call = abi.encodeCall(IPerpVenue.depositMargin, (bound(amount, 1, balance)));
        _send(abi.encodeCall(BaseAccount.execute, (address(venue), 0, call)), false);
    }

    function _send(bytes memory calls, bool raisesRisk) internal {
        PackedUserOperation memory op = UserOps.build(
            address(account),
            entryPoint.getNonce(address(account), account.sessionNonceKey(key, 0)),
            UserOps.forSession(key, calls),
            1_000_000,
            1_000_000
        );
        uint40 until = uint40(block.timestamp + 30);
        uint32 grantId = ISessionManager(address(account)).getSession(key).grantId;
        bytes32 digest = UserOps.sessionDigest(entryPoint.getUserOpHash(op), until, UserOps.grantBinding(grantId));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(KEY_PK, digest);
        op.signature = UserOps.sessionSignature(until, v, r, s);
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        int256 sizeBefore = venue.position(address(account), 0).size;
        bool trippedBefore = ISessionManager(address(account)).getSession(key).tripped;
        vm.recordLogs();
        try entryPoint.handleOps(ops, payable(address(0xB0B))) {}
        catch {
            return; // refused in validation: nothing ran
        }
        bool reverted = _executionReverted();
        if (!trippedBefore && ISessionManager(address(account)).getSession(key).tripped) trips += 1;
        if (reverted || venue.position(address(account), 0).size == sizeBefore) {
            if (raisesRisk) opsUndone += 1;
            return;
        }
        if (!raisesRisk) return;
        riskRaisingOpsIn += 1;
        (int256 av, uint256 mmr, uint256 gross, uint256 largest) = venue.accountRisk(address(account));
        uint256 value = av > 0 ? uint256(av) : 0;
        if (gross * 100 > uint256(MAX_LEVERAGE) * value) breaches += 1;
        if (largest > MAX_POSITION) breaches += 1;
        if (av < int256(mmr * (10_000 + HEADROOM_BPS) / 10_000)) breaches += 1;
        ITradingAccount.SessionInfo memory info = ISessionManager(address(account)).getSession(key);
        int256 equity = av + int256(venue.collateralToken().balanceOf(address(account)));
        if (equity < int256(uint256(info.highWaterMark) * (10_000 - DRAWDOWN_BPS) / 10_000)) breaches += 1;
    }

    function _executionReverted() internal returns (bool) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 topic = keccak256("UserOperationRevertReason(bytes32,address,uint256,bytes)");
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(entryPoint) && logs[i].topics[0] == topic) return true;
        }
        return false;
    }
}

/// @notice Whatever a stolen key with post-execution limits trades while the market moves, no op that went
/// through and raised risk left leverage, position, headroom or drawdown beyond the key's limits.
contract ExposureInvariantTest is VenueSessionBase {
    ExposureHandler internal handler;

    function setUp() public override {
        super.setUp();
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.permissions[0].maxOrderSize = 1e18;
        scope.permissions[0].maxOrderNotional = 100_000e18;
        scope.feeBudget = 100 ether;
        scope.maxOpCost = 1 ether;
        scope.risk.maxLeverage = 300;
        scope.risk.maxPositionNotional = 20_000e6;
        scope.risk.minHeadroomBps = 5_000;
        scope.risk.maxDrawdownBps = 500; // of the equity: 15,000 in the wallet + 5,000 of margin
        _ownerOp(
            abi.encodeCall(
                BaseAccount.execute, (address(account), 0, abi.encodeCall(ISessionManager.grantSession, (key, scope)))
            )
        );
        vm.deal(address(account), 1_000 ether);
        handler = new ExposureHandler(entryPoint, account, venue, oracle);
        targetContract(address(handler));
    }

    function invariant_noRiskRaisingOpLeavesLimitsBreached() public view {
        assertEq(handler.breaches(), 0);
    }

    /// The handler is not vacuous: risk-raising orders go through, over-limit ones are undone, a deposit of the
    /// wallet moves money, and a fall trips the breaker.
    function test_handler_tradesAndIsStopped() public {
        handler.trade(0.2e18, false, 10, false);
        assertEq(handler.riskRaisingOpsIn(), 1);
        handler.trade(1e18, false, 10, false); // far over 3x
        assertEq(handler.opsUndone(), 1);
        handler.deposit(10_000e6);
        assertEq(venue.collateralToken().balanceOf(address(account)), 5_000e6);
        // -4 % five times: 0.2 BTC loses $2,215, more than 5 % of the equity (~$1,000).
        for (uint256 i; i < 5; ++i) {
            handler.movePrice(0);
        }
        handler.trade(0.01e18, true, 10, true); // a reducing order observes the fall
        assertEq(handler.trips(), 1);
        assertEq(handler.breaches(), 0);
    }
}
