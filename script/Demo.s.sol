// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Script, console} from "forge-std/Script.sol";
import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {AccountFactory} from "../contracts/account/AccountFactory.sol";
import {TradingAccount} from "../contracts/account/TradingAccount.sol";
import {ITradingAccount} from "../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../contracts/venue/IPerpVenue.sol";
import {PerpVenue} from "../contracts/venue/PerpVenue.sol";
import {SignedPriceOracle} from "../contracts/venue/SignedPriceOracle.sol";
import {TestUSD} from "../contracts/venue/TestUSD.sol";
import {UserOps} from "./UserOps.sol";

/// @title Demo
/// @notice A trader's day on a local chain, sent as real transactions: two accounts deployed by their
/// first UserOps, a session key scoped to BTC trading, orders through `EntryPoint.handleOps` (this script
/// is the bundler), the key refused a withdraw and an out-of-scope market, then a price slide until a
/// margin call and a liquidation. Refused ops are simulated against the chain and never sent, as a
/// bundler would drop them. Reads deployments/<chainId>.json (script/Deploy.s.sol).
contract Demo is Script {
    string internal constant MNEMONIC = "test test test test test test test test test test test junk";
    uint32 internal constant BTC = 0;
    uint32 internal constant ETH = 1;

    IEntryPoint internal entryPoint;
    AccountFactory internal factory;
    TestUSD internal usd;
    SignedPriceOracle internal oracle;
    PerpVenue internal venue;

    uint256 internal deployerPk;
    uint256 internal bundlerPk;
    uint256 internal keeperPk;
    uint256 internal sessionPk;
    uint64 internal nextPublish;

    function run() external {
        string memory json = vm.readFile(string.concat("deployments/", vm.toString(block.chainid), ".json"));
        entryPoint = IEntryPoint(vm.parseJsonAddress(json, ".entryPoint"));
        factory = AccountFactory(vm.parseJsonAddress(json, ".accountFactory"));
        usd = TestUSD(vm.parseJsonAddress(json, ".collateral"));
        oracle = SignedPriceOracle(vm.parseJsonAddress(json, ".oracle"));
        venue = PerpVenue(vm.parseJsonAddress(json, ".venue"));
        deployerPk = vm.deriveKey(MNEMONIC, 0);
        bundlerPk = vm.deriveKey(MNEMONIC, 1);
        keeperPk = vm.deriveKey(MNEMONIC, 4);
        sessionPk = vm.deriveKey(MNEMONIC, 9);
        (, uint64 last) = oracle.lastPrice(BTC);
        nextPublish = uint64(block.timestamp) - 30 > last ? uint64(block.timestamp) - 30 : last + 1;

        console.log("== Keyscope demo on chain", block.chainid, "==");
        _publish(BTC, 60_000e18);
        _publish(ETH, 3_000e18);

        // Trader A: the first op deploys the account, deposits margin and grants the session key.
        uint256 alicePk = vm.deriveKey(MNEMONIC, 2);
        TradingAccount alice = _open(alicePk, 2_000e6, true);
        console.log("Trader A account", address(alice), "deployed by its first UserOp");
        console.log("  margin 2,000 tUSD; session key", vm.addr(sessionPk));
        console.log("  scope: BTC only, <= 0.5 BTC and <= $40,000 per order, 20 ops/min, 8 h, never withdraw");

        // Trader B takes the other view with the owner key.
        uint256 bobPk = vm.deriveKey(MNEMONIC, 3);
        TradingAccount bob = _open(bobPk, 20_000e6, false);
        _ownerOp(bob, bobPk, _order(BTC, -0.3e18, 59_500e18, false));
        console.log("Trader B account", address(bob), "shorts 0.3 BTC with its owner key");

        // The session key trades.
        _sessionOp(alice, _order(BTC, 0.2e18, 60_500e18, false));
        _sessionOp(alice, _order(BTC, 0.3e18, 60_500e18, false));
        console.log("Session key bought 0.2 + 0.3 BTC at 60,000 through handleOps");

        // And is refused what it may not do (simulated against the chain, never sent).
        _refused(alice, abi.encodeCall(BaseAccount.execute, (address(venue), 0, abi.encodeCall(IPerpVenue.withdrawMargin, (100e6)))), "withdraw 100 tUSD");
        _refused(alice, _order(ETH, 1e18, 3_100e18, false), "buy 1 ETH (market not in scope)");
        _refused(alice, _order(BTC, 1e18, 60_500e18, false), "buy 1 BTC (over 0.5 BTC)");

        // The price slides until a margin call, then a liquidation.
        uint256[6] memory path = [uint256(59_500e18), 59_000e18, 58_500e18, 58_000e18, 57_500e18, 57_000e18];
        for (uint256 i; i < path.length; ++i) {
            _publish(BTC, path[i]);
            vm.broadcast(keeperPk);
            PerpVenue.AccountState state = venue.poke(address(alice));
            (int256 av, uint256 imr, uint256 mmr,) = venue.health(address(alice));
            console.log(string.concat("BTC ", _usd(path[i] / 1e12), ": account value ", _usdSigned(av), ", IMR ", _usd(imr)), string.concat(", MMR ", _usd(mmr), " -> ", _stateName(state)));
            if (state == PerpVenue.AccountState.Liquidatable || state == PerpVenue.AccountState.Bankrupt) {
                vm.broadcast(keeperPk);
                venue.liquidate(address(alice), BTC);
                console.log(string.concat("Keeper liquidated trader A: reward ", _usd(uint256(venue.collateralOf(vm.addr(keeperPk))))));
                break;
            }
        }
        PerpVenue.Portfolio memory pa = venue.portfolio(address(alice));
        console.log(string.concat("Trader A after: collateral ", _usdSigned(pa.collateral), ", open positions ", vm.toString(pa.positions.length)));
        console.log(string.concat("Insurance fund ", _usd(venue.insuranceFund()), ", bad debt ", _usd(venue.badDebt())));
    }

    /*//////////////////////////////////////////////////////////////
                                 ACCOUNTS
    //////////////////////////////////////////////////////////////*/

    /// @dev Funds the counterfactual account, then its first op deploys it, approves the venue, deposits
    /// margin and (for A) grants the session key.
    function _open(uint256 ownerPk, uint256 margin, bool grant) internal returns (TradingAccount account) {
        address owner = vm.addr(ownerPk);
        address sender = factory.getAddress(owner, 0);
        vm.startBroadcast(deployerPk);
        payable(sender).transfer(1 ether);
        usd.mint(sender, margin);
        vm.stopBroadcast();

        BaseAccount.Call[] memory calls = new BaseAccount.Call[](grant ? 3 : 2);
        calls[0] = BaseAccount.Call(address(usd), 0, abi.encodeCall(usd.approve, (address(venue), type(uint256).max)));
        calls[1] = BaseAccount.Call(address(venue), 0, abi.encodeCall(IPerpVenue.depositMargin, (margin)));
        if (grant) {
            calls[2] = BaseAccount.Call(sender, 0, abi.encodeCall(ITradingAccount.grantSession, (vm.addr(sessionPk), _scope())));
        }
        PackedUserOperation memory op = _op(sender, 0, abi.encodeCall(BaseAccount.executeBatch, (calls)));
        op.initCode = abi.encodePacked(address(factory), abi.encodeCall(factory.createAccount, (owner, 0)));
        op.signature = _sign(ownerPk, entryPoint.getUserOpHash(op));
        _send(op);
        account = TradingAccount(payable(sender));
    }

    function _scope() internal view returns (ITradingAccount.SessionScope memory scope) {
        scope.validAfter = uint40(block.timestamp - 1);
        scope.validUntil = uint40(block.timestamp + 8 hours);
        scope.maxOpTtl = 120;
        scope.rateCount = 20;
        scope.ratePeriod = 60;
        scope.permissions = new ITradingAccount.CallPermission[](2);
        scope.permissions[0].target = address(venue);
        scope.permissions[0].selector = IPerpVenue.placeOrder.selector;
        scope.permissions[0].marketMask = uint64(1) << BTC;
        scope.permissions[0].maxOrderSize = 0.5e18;
        scope.permissions[0].maxOrderNotional = 40_000e18;
        scope.permissions[1].target = address(venue);
        scope.permissions[1].selector = IPerpVenue.depositMargin.selector;
    }

    /*//////////////////////////////////////////////////////////////
                                USER OPS
    //////////////////////////////////////////////////////////////*/

    function _op(address sender, uint256 nonce, bytes memory callData) internal pure returns (PackedUserOperation memory) {
        return UserOps.build(sender, nonce, callData, 400_000, 400_000);
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    function _ownerOp(TradingAccount account, uint256 ownerPk, bytes memory callData) internal {
        PackedUserOperation memory op = _op(address(account), entryPoint.getNonce(address(account), 0), callData);
        op.signature = _sign(ownerPk, entryPoint.getUserOpHash(op));
        _send(op);
    }

    function _signedSessionOp(TradingAccount account, bytes memory callData) internal view returns (PackedUserOperation memory op) {
        address key = vm.addr(sessionPk);
        op = _op(address(account), entryPoint.getNonce(address(account), account.sessionNonceKey(key, 0)), callData);
        uint48 until = uint48(block.timestamp + 60);
        bytes32 digest =
            UserOps.sessionDigest(entryPoint.getUserOpHash(op), until, UserOps.grantBinding(account.getSession(key).grantId));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(sessionPk, digest);
        op.signature = UserOps.sessionSignature(until, v, r, s);
    }

    function _sessionOp(TradingAccount account, bytes memory callData) internal {
        _send(_signedSessionOp(account, callData));
    }

    function _send(PackedUserOperation memory op) internal {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        vm.broadcast(bundlerPk);
        entryPoint.handleOps(ops, payable(vm.addr(bundlerPk)));
    }

    /// @dev Simulates the op against the chain (no broadcast) and prints why it is refused.
    function _refused(TradingAccount account, bytes memory callData, string memory what) internal {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = _signedSessionOp(account, callData);
        try entryPoint.handleOps(ops, payable(vm.addr(bundlerPk))) {
            revert(string.concat("demo: the session key was allowed to ", what));
        } catch (bytes memory err) {
            console.log(string.concat("Refused: session key tried to ", what, " -> ", _reason(err)));
        }
    }

    function _reason(bytes memory err) internal pure returns (string memory) {
        if (bytes4(err) != IEntryPoint.FailedOpWithRevert.selector) return vm.toString(err);
        bytes memory body = new bytes(err.length - 4);
        for (uint256 i; i < body.length; ++i) body[i] = err[i + 4];
        (,, bytes memory inner) = abi.decode(body, (uint256, string, bytes));
        bytes4 sel = bytes4(inner);
        if (sel == ITradingAccount.SessionCallNotPermitted.selector) return "SessionCallNotPermitted (withdrawMargin is never grantable)";
        if (sel == ITradingAccount.SessionMarketNotAllowed.selector) return "SessionMarketNotAllowed";
        if (sel == ITradingAccount.SessionOrderTooLarge.selector) return "SessionOrderTooLarge";
        return vm.toString(inner);
    }

    /*//////////////////////////////////////////////////////////////
                                 ORACLE
    //////////////////////////////////////////////////////////////*/

    function _publish(uint32 marketId, uint256 price) internal {
        SignedPriceOracle.PriceUpdate memory u = SignedPriceOracle.PriceUpdate(marketId, price, nextPublish++);
        bytes memory sig = _sign(deployerPk, oracle.updateDigest(u));
        vm.broadcast(keeperPk);
        oracle.submit(u, sig);
    }

    function _order(uint32 marketId, int256 size, uint256 limit, bool reduceOnly) internal view returns (bytes memory) {
        return abi.encodeCall(
            BaseAccount.execute, (address(venue), 0, abi.encodeCall(IPerpVenue.placeOrder, (marketId, size, limit, reduceOnly)))
        );
    }

    function _usd(uint256 quote) internal pure returns (string memory) {
        return string.concat("$", vm.toString(quote / 1e6));
    }

    function _usdSigned(int256 quote) internal pure returns (string memory) {
        return quote < 0 ? string.concat("-", _usd(uint256(-quote))) : _usd(uint256(quote));
    }

    function _stateName(PerpVenue.AccountState s) internal pure returns (string memory) {
        if (s == PerpVenue.AccountState.Healthy) return "Healthy";
        if (s == PerpVenue.AccountState.MarginCall) return "MARGIN CALL";
        if (s == PerpVenue.AccountState.Liquidatable) return "LIQUIDATABLE";
        return "BANKRUPT";
    }
}
