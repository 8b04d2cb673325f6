// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

import {BaseAccount} from "@account-abstraction/contracts/core/BaseAccount.sol";
import {TradingAccount} from "../../contracts/account/TradingAccount.sol";
import {SessionManager} from "../../contracts/account/SessionManager.sol";
import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {CanonicalEntryPoint} from "../../script/CanonicalEntryPoint.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice The owner's side of the account: ops, direct calls, ERC-1271, deployment, administration.
contract TradingAccountTest is AccountTestBase {
    function test_entryPoint_isCanonicalV08() public view {
        assertEq(address(entryPoint), 0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108);
        assertEq(address(account.entryPoint()), address(entryPoint));
        // The real EntryPoint's immutables are set (they would be zero after vm.etch).
        assertTrue(address(entryPoint.senderCreator()) != address(0));
    }

    function test_ownerOp_executes() public {
        _handle(_ownerOp(_order(0, 1e18, 3000e18, false)));
        assertEq(venue.orderCount(), 1);
        (address trader,, int256 size,,) = venue.orders(0);
        assertEq(trader, address(account));
        assertEq(size, 1e18);
    }

    function test_ownerOp_wrongSignerRefused() public {
        PackedUserOperation memory op = _op(address(account), 0, _order(0, 1e18, 3000e18, false));
        op.signature = _sign(SESSION_PK, entryPoint.getUserOpHash(op));
        _expectFailedOp("AA24 signature error");
        _handle(op);
    }

    function test_ownerOp_mayUseAnyLane() public {
        uint192 lane = account.sessionNonceKey(sessionKey, 7);
        PackedUserOperation memory op =
            _op(address(account), entryPoint.getNonce(address(account), lane), _order(0, 1e18, 3000e18, false));
        op.signature = _sign(OWNER_PK, entryPoint.getUserOpHash(op));
        _handle(op);
        assertEq(entryPoint.getNonce(address(account), lane), (uint256(lane) << 64) | 1);
    }

    function test_ownerOp_movesEthOut() public {
        address to = address(0xCAFE);
        _handle(_ownerOp(_exec(to, 1 ether, "")));
        assertEq(to.balance, 1 ether);
    }

    function test_executeBatch_ownerOp() public {
        BaseAccount.Call[] memory calls = new BaseAccount.Call[](2);
        calls[0] = _call(address(venue), abi.encodeCall(IPerpVenue.placeOrder, (0, 1e18, 3000e18, false)));
        calls[1] = _call(address(venue), abi.encodeCall(IPerpVenue.depositMargin, (500e6)));
        _handle(_ownerOp(abi.encodeCall(BaseAccount.executeBatch, (calls))));
        assertEq(venue.orderCount(), 1);
        assertEq(venue.margin(address(account)), 500e6);
    }

    function test_execute_directByOwner() public {
        vm.prank(owner);
        account.execute(address(venue), 0, abi.encodeCall(IPerpVenue.placeOrder, (1, -2e18, 2900e18, true)));
        assertEq(venue.orderCount(), 1);
    }

    function test_execute_refusesStranger() public {
        vm.prank(sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotEntryPointOrOwner.selector, sessionKey));
        account.execute(address(venue), 0, "");
    }

    function test_validateUserOp_onlyFromEntryPoint() public {
        PackedUserOperation memory op = _ownerOp(_order(0, 1e18, 3000e18, false));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotFromEntryPoint.selector, address(this)));
        account.validateUserOp(op, bytes32(0), 0);
    }

    function test_receivesEthAndTokens() public {
        uint256 before = address(account).balance;
        (bool ok,) = address(account).call{value: 1 ether}("");
        assertTrue(ok);
        assertEq(address(account).balance, before + 1 ether);
        usd.mint(address(account), 5e6);
        assertEq(usd.balanceOf(address(account)), 1_000_005e6);
        assertEq(account.onERC721Received(address(0), address(0), 0, ""), account.onERC721Received.selector);
    }

    /*//////////////////////////////////////////////////////////////
                                ERC-1271
    //////////////////////////////////////////////////////////////*/

    function test_isValidSignature_owner() public view {
        bytes32 hash = keccak256("order book snapshot");
        bytes memory sig = _sign(OWNER_PK, account.replaySafeHash(hash));
        assertEq(account.isValidSignature(hash, sig), IERC1271.isValidSignature.selector);
    }

    function test_isValidSignature_refusesOtherSigner() public view {
        bytes32 hash = keccak256("order book snapshot");
        bytes memory sig = _sign(SESSION_PK, account.replaySafeHash(hash));
        assertEq(account.isValidSignature(hash, sig), bytes4(0xffffffff));
    }

    function test_isValidSignature_refusesRawHash() public view {
        bytes32 hash = keccak256("order book snapshot");
        assertEq(account.isValidSignature(hash, _sign(OWNER_PK, hash)), bytes4(0xffffffff));
    }

    /// Audit class: an owner's ERC-1271 signature replayed on a second account of the same owner.
    function test_isValidSignature_notReplayableOnSecondAccount() public {
        TradingAccount second = factory.createAccount(owner, 1);
        bytes32 hash = keccak256("permit");
        bytes memory sig = _sign(OWNER_PK, account.replaySafeHash(hash));
        assertEq(account.isValidSignature(hash, sig), IERC1271.isValidSignature.selector);
        assertEq(second.isValidSignature(hash, sig), bytes4(0xffffffff));
    }

    /// Audit class: the same signature replayed on another chain.
    function test_isValidSignature_notReplayableOnOtherChain() public {
        bytes32 hash = keccak256("permit");
        bytes memory sig = _sign(OWNER_PK, account.replaySafeHash(hash));
        vm.chainId(block.chainid + 1);
        assertEq(account.isValidSignature(hash, sig), bytes4(0xffffffff));
    }

    function test_isValidSignature_malformedReturnsInvalid() public view {
        bytes32 hash = keccak256("x");
        bytes memory sig = _sign(OWNER_PK, account.replaySafeHash(hash));
        assertEq(account.isValidSignature(hash, _slice(sig, 64)), bytes4(0xffffffff));
    }

    /*//////////////////////////////////////////////////////////////
                               DEPLOYMENT
    //////////////////////////////////////////////////////////////*/

    function test_factory_addressIsCounterfactual() public {
        address predicted = factory.getAddress(owner, 42);
        assertEq(predicted.code.length, 0);
        TradingAccount deployed = factory.createAccount(owner, 42);
        assertEq(address(deployed), predicted);
        assertEq(deployed.owner(), owner);
    }

    function test_factory_createIsIdempotent() public {
        TradingAccount a = factory.createAccount(owner, 7);
        vm.recordLogs();
        TradingAccount b = factory.createAccount(owner, 7);
        assertEq(address(a), address(b));
        assertEq(vm.getRecordedLogs().length, 0, "second create emits nothing");
        assertEq(b.owner(), owner);
    }

    function test_factory_refusesZeroOwner() public {
        vm.expectRevert(abi.encodeWithSignature("InvalidOwner()"));
        factory.createAccount(address(0), 0);
    }

    /// Audit class: a counterfactual address taken over by deploying it with another owner.
    function test_factory_counterfactualAddressBoundToOwner() public {
        address attacker = address(0xBAD);
        address predicted = factory.getAddress(owner, 99);
        TradingAccount other = factory.createAccount(attacker, 99);
        assertTrue(address(other) != predicted);
        assertEq(predicted.code.length, 0);
        assertEq(address(factory.createAccount(owner, 99)), predicted);
        assertEq(TradingAccount(payable(predicted)).owner(), owner);
    }

    function test_account_cannotBeReinitialized() public {
        vm.expectRevert(ITradingAccount.AlreadyInitialized.selector);
        account.initialize(address(0xBAD));
        TradingAccount impl = factory.accountImplementation();
        vm.expectRevert(ITradingAccount.AlreadyInitialized.selector);
        impl.initialize(address(0xBAD));
    }

    function test_firstOp_deploysAccount() public {
        uint256 ownerPk = 0xB0B;
        address newOwner = vm.addr(ownerPk);
        address sender = factory.getAddress(newOwner, 0);
        vm.deal(sender, 1 ether);
        PackedUserOperation memory op = _op(sender, 0, _order(0, 1e18, 3000e18, false));
        op.initCode = abi.encodePacked(address(factory), abi.encodeCall(factory.createAccount, (newOwner, 0)));
        op.signature = _sign(ownerPk, entryPoint.getUserOpHash(op));
        _handle(op);
        assertEq(TradingAccount(payable(sender)).owner(), newOwner);
        assertEq(venue.orderCount(), 1);
    }

    /*//////////////////////////////////////////////////////////////
                             ADMINISTRATION
    //////////////////////////////////////////////////////////////*/

    function test_transferOwnership_twoStepsAndEndsSessions() public {
        address newOwner = address(0xD00D);
        _grant(sessionKey, _tradingScope());
        _handle(
            _ownerOp(_exec(address(account), 0, abi.encodeCall(ISessionManager.transferOwnership, (newOwner, false))))
        );
        // Named, not yet owner: the old owner and its session keys still act.
        assertEq(account.owner(), owner);
        assertEq(sessions.pendingOwner(), newOwner);
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30)));

        vm.prank(newOwner);
        sessions.acceptOwnership();
        assertEq(account.owner(), newOwner);
        assertEq(sessions.pendingOwner(), address(0));
        assertEq(account.epoch(), 1, "every session ended");
        assertFalse(sessions.getSession(sessionKey).active);
        PackedUserOperation memory op =
            _sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30));
        _expectValidationRevert(abi.encodeWithSelector(ITradingAccount.SessionNotActive.selector, sessionKey));
        _handle(op);
    }

    function test_transferOwnership_mayKeepSessions() public {
        address newOwner = address(0xD00D);
        _grant(sessionKey, _tradingScope());
        vm.prank(owner);
        sessions.transferOwnership(newOwner, true);
        vm.prank(newOwner);
        sessions.acceptOwnership();
        assertEq(account.owner(), newOwner);
        assertEq(account.epoch(), 0);
        _handle(_sessionOp(SESSION_PK, _order(0, 1e18, 3000e18, false), uint40(block.timestamp + 30)));
        assertEq(venue.orderCount(), 1);
    }

    function test_transferOwnership_refusesStrangers() public {
        vm.prank(sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, sessionKey));
        sessions.transferOwnership(sessionKey, true);

        vm.prank(owner);
        sessions.transferOwnership(address(0xD00D), false);
        vm.prank(sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotPendingOwner.selector, sessionKey));
        sessions.acceptOwnership();
        assertEq(account.owner(), owner);
    }

    function test_transferOwnership_cancelledByZero() public {
        vm.startPrank(owner);
        sessions.transferOwnership(address(0xD00D), false);
        sessions.transferOwnership(address(0), false);
        vm.stopPrank();
        vm.prank(address(0xD00D));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotPendingOwner.selector, address(0xD00D)));
        sessions.acceptOwnership();
        // Nobody can accept a cancelled transfer, not even the zero address.
        vm.prank(address(0));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotPendingOwner.selector, address(0)));
        sessions.acceptOwnership();
    }

    function test_moduleEntry_enableFromOpNotForwarded() public {
        // Only the account's own validation may reach the module's enable path.
        vm.expectRevert(
            abi.encodeWithSelector(ITradingAccount.UnsupportedCall.selector, SessionManager.enableFromOp.selector)
        );
        SessionManager(address(account)).enableFromOp(sessionKey, "");
    }

    function test_upgrade_onlyOwner() public {
        TradingAccount next = new TradingAccount(entryPoint);
        vm.prank(sessionKey);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.NotOwnerOrSelf.selector, sessionKey));
        account.upgradeToAndCall(address(next), "");
        vm.prank(owner);
        account.upgradeToAndCall(address(next), "");
        bytes32 implSlot = 0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;
        assertEq(address(uint160(uint256(vm.load(address(account), implSlot)))), address(next));
        assertEq(account.owner(), owner, "storage survives the upgrade");
    }

    /// EIP-170: the implementation must stay deployable on real chains (forge's EVM would not stop it).
    function test_implementation_fitsCodeSizeLimit() public view {
        assertLe(address(factory.accountImplementation()).code.length, 24_576);
        assertLe(account.sessionManager().code.length, 24_576);
    }

    function test_canonicalEntryPoint_deployIsIdempotent() public {
        assertEq(address(CanonicalEntryPoint.deploy()), address(entryPoint));
    }

    function _call(address target, bytes memory data) internal pure returns (BaseAccount.Call memory c) {
        c.target = target;
        c.data = data;
    }

    function _slice(bytes memory b, uint256 len) internal pure returns (bytes memory out) {
        out = new bytes(len);
        for (uint256 i; i < len; ++i) {
            out[i] = b[i];
        }
    }
}
