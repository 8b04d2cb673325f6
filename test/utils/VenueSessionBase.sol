// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {Test, Vm} from "forge-std/Test.sol";

import {AccountFactory} from "../../contracts/account/AccountFactory.sol";
import {TradingAccount} from "../../contracts/account/TradingAccount.sol";
import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedPriceOracle} from "../../contracts/venue/SignedPriceOracle.sol";
import {TestUSD} from "../../contracts/venue/TestUSD.sol";
import {CanonicalEntryPoint} from "../../script/CanonicalEntryPoint.sol";
import {UserOps} from "../../script/UserOps.sol";

/// @notice Shared set-up for end-to-end tests: a TradingAccount on the canonical EntryPoint with margin on the
/// real venue (BTC and ETH markets, a signed-price oracle, a funded pool), and helpers that sign and send real
/// owner and session ops.
abstract contract VenueSessionBase is Test {
    uint256 internal constant OWNER_PK = 0xA11CE;
    uint256 internal constant KEY_PK = 0x5E55;
    uint256 internal constant ORACLE_PK = 0x0AC1E;
    uint32 internal constant BTC = 0;
    uint32 internal constant ETH = 1;

    IEntryPoint internal entryPoint;
    TradingAccount internal account;
    ISessionManager internal sessions;
    TestUSD internal usd;
    SignedPriceOracle internal oracle;
    PerpVenue internal venue;
    address internal owner;
    address internal key;

    function setUp() public virtual {
        vm.warp(1_800_000_000);
        entryPoint = CanonicalEntryPoint.deploy();
        AccountFactory factory = new AccountFactory(entryPoint);
        usd = new TestUSD(address(this));
        oracle = new SignedPriceOracle(address(this), 60);
        oracle.setSigner(vm.addr(ORACLE_PK), true);
        venue = new PerpVenue(address(this), usd, oracle);
        PerpVenue.MarketParams memory p = _marketParams();
        venue.listMarket(BTC, p);
        venue.listMarket(ETH, p);
        _price(60_000e18, 3_000e18);
        usd.mint(address(this), 1_000_000e6);
        usd.approve(address(venue), type(uint256).max);
        venue.fundPool(1_000_000e6);

        owner = vm.addr(OWNER_PK);
        key = vm.addr(KEY_PK);
        account = factory.createAccount(owner, 0);
        sessions = ISessionManager(address(account));
        vm.deal(address(account), 10 ether);
        usd.mint(address(account), 20_000e6);
        // The owner approves the venue once and deposits margin (a batch of two calls in one owner op).
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](2);
        calls[0] = BaseAccount.Call(address(usd), 0, abi.encodeCall(usd.approve, (address(venue), type(uint256).max)));
        calls[1] = BaseAccount.Call(address(venue), 0, abi.encodeCall(IPerpVenue.depositMargin, (5_000e6)));
        _ownerOp(abi.encodeCall(BaseAccount.executeBatch, (calls)));
    }

    /*//////////////////////////////////////////////////////////////
                                 HELPERS
    //////////////////////////////////////////////////////////////*/

    /// @dev The markets' parameters: IMF 5 %, MMF 3 %, taker fee 5 bps, limit band 10 %.
    function _marketParams() internal pure returns (PerpVenue.MarketParams memory) {
        return PerpVenue.MarketParams({
            imf: 0.05e18,
            mmf: 0.03e18,
            takerFee: 0.0005e18,
            liquidationPenalty: 0.01e18,
            maxLimitDeviation: 0.1e18,
            maxPosition: 1_000e18,
            partialLiquidationNotional: 100_000e6
        });
    }

    function _price(uint256 btc, uint256 eth) internal {
        vm.warp(block.timestamp + 1);
        uint256[2] memory prices = [btc, eth];
        for (uint32 id; id < 2; ++id) {
            SignedPriceOracle.PriceUpdate memory u =
                SignedPriceOracle.PriceUpdate(id, prices[id], uint64(block.timestamp));
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(ORACLE_PK, oracle.updateDigest(u));
            oracle.submit(u, abi.encodePacked(r, s, v));
        }
    }

    function _scope(bool reduceOnly) internal view returns (ITradingAccount.SessionScope memory scope) {
        scope.validAfter = uint40(block.timestamp - 1);
        scope.validUntil = uint40(block.timestamp + 8 hours);
        scope.maxOpTtl = 60;
        scope.maxOpCost = 0.03 ether;
        scope.feeBudget = 1 ether;
        scope.permissions = new ITradingAccount.CallPermission[](2);
        scope.permissions[0].target = address(venue);
        scope.permissions[0].selector = IPerpVenue.placeOrder.selector;
        scope.permissions[0].marketMask = uint64(1) << BTC;
        scope.permissions[0].maxOrderSize = 0.5e18;
        scope.permissions[0].maxOrderNotional = 31_000e18;
        scope.permissions[0].reduceOnly = reduceOnly;
        scope.permissions[1].target = address(venue);
        scope.permissions[1].selector = IPerpVenue.depositMargin.selector;
    }

    function _op(uint256 nonce, bytes memory callData) internal view returns (PackedUserOperation memory) {
        return UserOps.build(address(account), nonce, callData, 1_000_000, 1_000_000);
    }

    function _send(PackedUserOperation memory op) internal {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        entryPoint.handleOps(ops, payable(address(0xBEEF)));
    }

    function _ownerOp(bytes memory callData) internal {
        PackedUserOperation memory op = _op(entryPoint.getNonce(address(account), 0), callData);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(OWNER_PK, entryPoint.getUserOpHash(op));
        op.signature = abi.encodePacked(r, s, v);
        _send(op);
    }

    function _sessionOp(bytes memory callData) internal view returns (PackedUserOperation memory op) {
        op = _op(
            entryPoint.getNonce(address(account), account.sessionNonceKey(key, 0)), UserOps.forSession(key, callData)
        );
        uint48 until = uint48(block.timestamp + 30);
        bytes32 digest = UserOps.sessionDigest(
            entryPoint.getUserOpHash(op), until, UserOps.grantBinding(sessions.getSession(key).grantId)
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(KEY_PK, digest);
        op.signature = UserOps.sessionSignature(until, v, r, s);
    }

    function _order(uint32 marketId, int256 size, uint256 limit, bool reduceOnly) internal view returns (bytes memory) {
        return abi.encodeCall(
            BaseAccount.execute,
            (address(venue), 0, abi.encodeCall(IPerpVenue.placeOrder, (marketId, size, limit, reduceOnly)))
        );
    }

    function _grant(bool reduceOnly) internal {
        _ownerOp(
            abi.encodeCall(
                BaseAccount.execute,
                (address(account), 0, abi.encodeCall(ISessionManager.grantSession, (key, _scope(reduceOnly))))
            )
        );
    }

    /// @dev `liquidator`, a second address, tries to liquidate the account's BTC position with the price at
    /// `insidePrice` (refused: `NotLiquidatable`), then at `pastPrice` (it goes through). Returns what the liquidator
    /// was paid.
    function _liquidateOnlyPast(address liquidator, uint256 insidePrice, uint256 pastPrice)
        internal
        returns (uint256 reward)
    {
        int256 before = venue.collateralOf(liquidator);
        _price(insidePrice, 3_000e18);
        vm.prank(liquidator);
        vm.expectPartialRevert(PerpVenue.NotLiquidatable.selector);
        venue.liquidate(address(account), BTC);
        _price(pastPrice, 3_000e18);
        vm.prank(liquidator);
        venue.liquidate(address(account), BTC);
        reward = uint256(venue.collateralOf(liquidator) - before);
    }

    function _expectRefused(bytes memory inner) internal {
        vm.expectRevert(abi.encodeWithSelector(IEntryPoint.FailedOpWithRevert.selector, 0, "AA23 reverted", inner));
    }

    function _sawRevertReason() internal returns (bool) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 topic = keccak256("UserOperationRevertReason(bytes32,address,uint256,bytes)");
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(entryPoint) && logs[i].topics[0] == topic) return true;
        }
        return false;
    }
}
