// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {IPaymaster} from "@account-abstraction/contracts/interfaces/IPaymaster.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {UserOps} from "../../script/UserOps.sol";
import {TestPaymaster} from "../mocks/TestPaymaster.sol";
import {AccountTestBase} from "../utils/AccountTestBase.sol";

/// @notice A paymaster whose postOp burns every gas unit it is given and then reverts: the most a postOp can
/// make the EntryPoint charge its sponsor.
contract BurningPostOpPaymaster is IPaymaster {
    /// @notice The EntryPoint this paymaster deposits in.
    IEntryPoint public immutable entryPoint;

    error PostOpBurnt();

    constructor(IEntryPoint entryPoint_) {
        entryPoint = entryPoint_;
    }

    /// @notice Adds to this paymaster's EntryPoint deposit.
    function deposit() external payable {
        entryPoint.depositTo{value: msg.value}(address(this));
    }

    /// @inheritdoc IPaymaster
    function validatePaymasterUserOp(PackedUserOperation calldata, bytes32, uint256)
        external
        pure
        returns (bytes memory context, uint256 validationData)
    {
        return (hex"01", 0);
    }

    /// @inheritdoc IPaymaster
    function postOp(PostOpMode, bytes calldata, uint256, uint256) external view {
        while (gasleft() > 2_000) {}
        revert PostOpBurnt();
    }
}

/// @notice A thief holding a session key against the per-key paymaster cap (#25), with everything it controls:
/// every gas field and fee price, the submitter and beneficiary (itself), the bundle's shape, the key's nonce
/// lanes, reverts in execution and in the paymaster (validation and postOp), rotation to a successor, replayed
/// enable-mode grants, the gwei rounding, the top of the 56-bit fields, and entries written before the cap
/// existed. Each attack sits beside a control showing the test tells a drain from a refusal. All of them hold:
/// a listed paymaster never pays more than the key's entry there was charged, and the entry never more than
/// the scope's budget.
contract PaymasterCapAttacksTest is AccountTestBase {
    address payable internal thief = payable(address(0x7E1F));
    uint40 internal opUntil;
    TestPaymaster internal pm;
    TestPaymaster internal pm2;

    /// 2,060,000 gas at 10 gwei.
    uint128 internal constant CAP = TEST_OP_COST;
    uint256 internal constant KEY2_PK = 0x5E56;
    uint256 internal constant SUCCESSOR_PK = 0x5E57;
    uint256 internal constant DEPOSIT = 50 ether;
    /// The largest gwei figure an entry holds.
    uint256 internal constant MAX_GWEI = type(uint56).max;

    function setUp() public override {
        super.setUp();
        opUntil = uint40(block.timestamp + 30);
        pm = new TestPaymaster(entryPoint);
        pm2 = new TestPaymaster(entryPoint);
        pm.deposit{value: DEPOSIT}();
        pm2.deposit{value: DEPOSIT}();
    }

    /*//////////////////////////////////////////////////////////////
                                HELPERS
    //////////////////////////////////////////////////////////////*/

    /// @dev The trading scope listing `paymaster` alone with `maxOpCost` per op and `budget` in all.
    function _scopeAt(address paymaster, uint128 maxOpCost, uint128 budget)
        internal
        view
        returns (ITradingAccount.SessionScope memory s)
    {
        s = _tradingScope();
        s.paymasters = new address[](1);
        s.paymasters[0] = paymaster;
        s.paymasterMaxOpCost = maxOpCost;
        s.paymasterBudget = budget;
    }

    /// @dev The key of `pk`'s op on `lane` with raw `callData`, gas fields [verification, call, preVerification,
    /// paymaster verification, paymaster postOp], one fee for both fee fields, sponsored by `paymaster` with
    /// `pmData` after its gas limits.
    function _keyOpAt(
        uint256 pk,
        uint32 lane,
        bytes memory callData,
        uint128[5] memory g,
        uint128 fee,
        address paymaster,
        bytes memory pmData
    ) internal view returns (PackedUserOperation memory op) {
        address key = vm.addr(pk);
        op = UserOps.build(address(account), _sessionNonce(key, lane), callData, g[0], g[1]);
        op.preVerificationGas = g[2];
        op.gasFees = bytes32((uint256(fee) << 128) | fee);
        op.paymasterAndData = abi.encodePacked(paymaster, g[3], g[4], pmData);
        _signSession(op, pk, opUntil, sessions.getSession(key).grantId);
    }

    /// @dev A sponsored order of the key of `pk`.
    function _orderOp(uint256 pk, uint32 lane, uint128[5] memory g, uint128 fee, address paymaster)
        internal
        view
        returns (PackedUserOperation memory)
    {
        return
            _keyOpAt(pk, lane, UserOps.forSession(vm.addr(pk), _order(0, 1e18, 3000e18, false)), g, fee, paymaster, "");
    }

    /// @dev 2,060,000 gas in all, 30,000 of it the paymaster's verification: CAP at 10 gwei.
    function _full() internal pure returns (uint128[5] memory) {
        return [uint128(1_000_000), 1_000_000, 30_000, 30_000, 0];
    }

    function _leftOf(address key, address paymaster) internal view returns (uint256 left) {
        (,, left) = sessions.paymasterAllowance(key, paymaster);
    }

    function _paid(address paymaster, uint256 deposited) internal view returns (uint256) {
        return deposited - entryPoint.balanceOf(paymaster);
    }

    function _send(PackedUserOperation memory a, PackedUserOperation memory b) internal {
        PackedUserOperation[] memory ops = new PackedUserOperation[](2);
        ops[0] = a;
        ops[1] = b;
        vm.prank(thief, thief);
        entryPoint.handleOps(ops, thief);
    }

    function _budgetExceeded(address paymaster, uint256 cost, uint256 left) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ITradingAccount.SessionPaymasterBudgetExceeded.selector, paymaster, cost, left);
    }

    /*//////////////////////////////////////////////////////////////
                         GAS FIELDS AND FEE PRICE
    //////////////////////////////////////////////////////////////*/

    /// Any gas field and fee price up to 2^40 gas and 2^80 wei a gas, each at a random magnitude (many far over
    /// the cap or over what the EntryPoint or the chain accepts): the op is refused and nothing moves, or it is charged its prefund
    /// rounded up to whole gwei, within the cap, and the paymaster pays the thief at most that.
    function testFuzz_attack_anyFieldsUpTo2pow40Gas(uint64[5] memory raw, uint128 rawFee) public {
        _grant(sessionKey, _scopeAt(address(pm), CAP, 10 * CAP));
        uint128[5] memory g;
        // Each figure at a random magnitude, so both refusals and ops that go are drawn.
        for (uint256 i; i < 5; ++i) {
            g[i] = uint128(bound(raw[i], 0, 1 << 40) >> (raw[i] % 41));
        }
        if (g[0] < 150_000) g[0] = 150_000;
        uint128 fee = uint128(bound(rawFee, 0, 1 << 80) >> (rawFee % 81));
        PackedUserOperation memory op = _orderOp(SESSION_PK, 0, g, fee, address(pm));
        uint256 cost = (uint256(g[0]) + g[1] + g[2] + g[3] + g[4]) * fee;
        uint256 deposited = entryPoint.balanceOf(address(pm));
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        vm.prank(thief, thief);
        try entryPoint.handleOps(ops, thief) {
            assertLe(cost, CAP, "only an op within the cap goes through");
            uint256 charged = 10 * CAP - _leftOf(sessionKey, address(pm));
            assertEq(charged, (cost + 1 gwei - 1) / 1 gwei * 1 gwei, "charged its prefund, rounded up");
            assertLe(_paid(address(pm), deposited), charged, "the paymaster paid at most the charge");
        } catch {
            assertEq(entryPoint.balanceOf(address(pm)), deposited, "a refused op costs the paymaster nothing");
            assertEq(_leftOf(sessionKey, address(pm)), 10 * CAP, "and charges nothing");
        }
    }

    /// Sub-gwei ops are never free: at 1 wei a gas an op's prefund is 2,060,000 wei, charged as 1 gwei, so a
    /// 2-gwei budget takes two such ops and refuses the third. Control: a 3-gwei budget takes the third.
    /// At 0 wei a gas the op is charged nothing, and the paymaster pays nothing either.
    function test_attack_subGweiOpsAreChargedAWholeGwei() public {
        _grant(sessionKey, _scopeAt(address(pm), 0, 2 gwei));
        uint256 deposited = entryPoint.balanceOf(address(pm));
        _handleFrom(_orderOp(SESSION_PK, 0, _full(), 1, address(pm)), thief, thief);
        _handleFrom(_orderOp(SESSION_PK, 0, _full(), 1, address(pm)), thief, thief);
        assertEq(_leftOf(sessionKey, address(pm)), 0, "each 2,060,000-wei op charged 1 gwei");
        uint256 paid = _paid(address(pm), deposited);
        assertGt(paid, 0, "the ops did cost the paymaster something");
        assertLe(paid, 2 * 2_060_000, "and no more than their prefunds");
        PackedUserOperation memory op = _orderOp(SESSION_PK, 0, _full(), 1, address(pm));
        _expectValidationRevert(_budgetExceeded(address(pm), 2_060_000, 0));
        _handleFrom(op, thief, thief);

        // Control: one gwei more of budget lets exactly one more through.
        _grant(sessionKey, _scopeAt(address(pm), 0, 3 gwei));
        for (uint256 i; i < 3; ++i) {
            _handleFrom(_orderOp(SESSION_PK, 0, _full(), 1, address(pm)), thief, thief);
        }
        assertEq(_leftOf(sessionKey, address(pm)), 0);
        assertEq(venue.orderCount(), 5);

        // Zero price: free for the entry and for the paymaster alike, however many.
        _grant(sessionKey, _scopeAt(address(pm), 0, 1 gwei));
        deposited = entryPoint.balanceOf(address(pm));
        uint256 earned = thief.balance;
        for (uint256 i; i < 4; ++i) {
            _handleFrom(_orderOp(SESSION_PK, 0, _full(), 0, address(pm)), thief, thief);
        }
        assertEq(_leftOf(sessionKey, address(pm)), 1 gwei, "a zero-price op is charged nothing");
        assertEq(_paid(address(pm), deposited), 0, "and costs the paymaster nothing");
        assertEq(thief.balance, earned, "nor pays the thief anything");
    }

    /// The top of the 56-bit gwei fields: a budget of 2^56 - 1 gwei (the most a grant may name). An op whose
    /// prefund is 2^56 + 1 gwei (1,324,321 gas at 54,410,972,897 gwei) would wrap to 1 gwei in 56 bits: it is
    /// refused over the budget, and over a per-op cap of 2^56 - 1 gwei. Control: an op of exactly 2^56 - 1 gwei
    /// (1,851,279 gas at 38,923,141,265 gwei) spends the budget to 0, and then a 1-wei-a-gas op is refused.
    function test_attack_packedFieldsDoNotWrapAtTwoTo56Gwei() public {
        uint128 top = uint128(MAX_GWEI) * 1 gwei;
        TestPaymaster rich = new TestPaymaster(entryPoint);
        vm.deal(address(this), uint256(top) + 1 ether);
        rich.deposit{value: uint256(top) + 1 ether}();
        uint256 deposited = entryPoint.balanceOf(address(rich));

        uint128[5] memory over = [uint128(1_000_000), 264_321, 30_000, 30_000, 0];
        uint128 overFee = 54_410_972_897 gwei;
        uint256 overCost = (MAX_GWEI + 2) * 1 gwei;
        assertEq(uint256(1_324_321) * overFee, overCost);

        _grant(sessionKey, _scopeAt(address(rich), 0, top));
        PackedUserOperation memory op = _orderOp(SESSION_PK, 0, over, overFee, address(rich));
        _expectValidationRevert(_budgetExceeded(address(rich), overCost, top));
        _handleFrom(op, thief, thief);

        _grant(sessionKey, _scopeAt(address(rich), top, top));
        op = _orderOp(SESSION_PK, 0, over, overFee, address(rich));
        _expectValidationRevert(
            abi.encodeWithSelector(ITradingAccount.SessionPaymasterOpCostTooHigh.selector, address(rich), overCost, top)
        );
        _handleFrom(op, thief, thief);
        assertEq(_leftOf(sessionKey, address(rich)), top, "nothing charged");
        assertEq(entryPoint.balanceOf(address(rich)), deposited, "nothing paid");

        // Control: exactly the top, spent to zero without wrapping.
        uint128[5] memory exact = [uint128(1_000_000), 791_279, 30_000, 30_000, 0];
        uint128 exactFee = 38_923_141_265 gwei;
        assertEq(uint256(1_851_279) * exactFee, top);
        _handleFrom(_orderOp(SESSION_PK, 0, exact, exactFee, address(rich)), thief, thief);
        assertEq(venue.orderCount(), 1);
        assertEq(_leftOf(sessionKey, address(rich)), 0, "the whole 56-bit budget charged");
        assertLe(_paid(address(rich), deposited), top, "the paymaster paid at most the budget");
        assertGt(thief.balance, 1_000_000 ether, "the thief was paid real money: the control can tell");
        op = _orderOp(SESSION_PK, 0, _full(), 1, address(rich));
        _expectValidationRevert(_budgetExceeded(address(rich), 2_060_000, 0));
        _handleFrom(op, thief, thief);
    }

    /*//////////////////////////////////////////////////////////////
                            REVERTS AND SHAPES
    //////////////////////////////////////////////////////////////*/

    /// Ops that revert in execution (a 10,000-gas call limit: out of gas in the call) keep their charge, so
    /// failing ops cannot spend the paymaster's money for free: two such ops take a budget of two, the third
    /// is refused in validation. Control: the same budget takes two ops that run.
    function test_attack_opsRevertingInExecutionStayCharged() public {
        uint128[5] memory starved = [uint128(1_000_000), 10_000, 1_020_000, 30_000, 0];
        _grant(sessionKey, _scopeAt(address(pm), CAP, 2 * CAP));
        uint256 deposited = entryPoint.balanceOf(address(pm));
        _handleFrom(_orderOp(SESSION_PK, 0, starved, 10 gwei, address(pm)), thief, thief);
        _handleFrom(_orderOp(SESSION_PK, 0, starved, 10 gwei, address(pm)), thief, thief);
        assertEq(venue.orderCount(), 0, "both ops reverted in execution");
        assertEq(_leftOf(sessionKey, address(pm)), 0, "and stayed charged");
        assertGt(_paid(address(pm), deposited), 0, "the paymaster paid for them");
        assertLe(_paid(address(pm), deposited), 2 * CAP);
        PackedUserOperation memory op = _orderOp(SESSION_PK, 0, starved, 10 gwei, address(pm));
        _expectValidationRevert(_budgetExceeded(address(pm), CAP, 0));
        _handleFrom(op, thief, thief);

        // Control: the same budget, ops that run.
        _grant(sessionKey, _scopeAt(address(pm), CAP, 2 * CAP));
        _handleFrom(_orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm)), thief, thief);
        _handleFrom(_orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm)), thief, thief);
        assertEq(venue.orderCount(), 2);
        assertEq(_leftOf(sessionKey, address(pm)), 0);
    }

    /// An op the paymaster refuses in its own validation, after the account charged the entry: the whole bundle
    /// is refused (AA33), so neither the refused op's charge nor the good op's stays, and nobody is paid.
    /// Control: the good op alone is charged.
    function test_attack_paymasterRefusalAfterAccountChargeUndoesTheCharge() public {
        _grant(sessionKey, _scopeAt(address(pm), CAP, 3 * CAP));
        uint256 deposited = entryPoint.balanceOf(address(pm));
        PackedUserOperation memory good = _orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm));
        PackedUserOperation memory refused = _keyOpAt(
            SESSION_PK,
            1,
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false)),
            _full(),
            10 gwei,
            address(pm),
            hex"01"
        );
        vm.expectRevert(
            abi.encodeWithSelector(
                IEntryPoint.FailedOpWithRevert.selector,
                1,
                "AA33 reverted",
                abi.encodeWithSelector(TestPaymaster.PaymasterRefuses.selector)
            )
        );
        _send(good, refused);
        assertEq(_leftOf(sessionKey, address(pm)), 3 * CAP, "no charge survives");
        assertEq(entryPoint.balanceOf(address(pm)), deposited, "nothing paid");

        // Control: the good op alone goes and is charged.
        _handleFrom(good, thief, thief);
        assertEq(_leftOf(sessionKey, address(pm)), 2 * CAP);
        assertEq(venue.orderCount(), 1);
    }

    /// A paymaster whose postOp burns all 400,000 gas it is given and reverts, the EntryPoint's 10 % unused-gas
    /// penalties on top: the paymaster still pays at most the prefund the entry was charged (2,460,000 gas at
    /// 10 gwei), and a budget of one such op refuses the second. Control: a budget of two takes both.
    function test_attack_revertingPostOpPaysAtMostTheCharge() public {
        BurningPostOpPaymaster burner = new BurningPostOpPaymaster(entryPoint);
        burner.deposit{value: DEPOSIT}();
        uint128[5] memory g = [uint128(1_000_000), 1_000_000, 30_000, 30_000, 400_000];
        uint128 charge = 2_460_000 * 10 gwei;
        _grant(sessionKey, _scopeAt(address(burner), charge, charge));
        _handleFrom(_orderOp(SESSION_PK, 0, g, 10 gwei, address(burner)), thief, thief);
        uint256 paid = _paid(address(burner), DEPOSIT);
        assertEq(_leftOf(sessionKey, address(burner)), 0, "charged the prefund, the postOp limit included");
        assertGt(paid, uint256(400_000) * 10 gwei, "the burnt postOp was paid for");
        assertLe(paid, charge, "but no more than the charge");
        assertEq(thief.balance, paid);
        PackedUserOperation memory op = _orderOp(SESSION_PK, 0, g, 10 gwei, address(burner));
        _expectValidationRevert(_budgetExceeded(address(burner), charge, 0));
        _handleFrom(op, thief, thief);

        // Control: room for two.
        _grant(sessionKey, _scopeAt(address(burner), charge, 2 * charge));
        _handleFrom(_orderOp(SESSION_PK, 0, g, 10 gwei, address(burner)), thief, thief);
        _handleFrom(_orderOp(SESSION_PK, 0, g, 10 gwei, address(burner)), thief, thief);
        assertEq(_leftOf(sessionKey, address(burner)), 0);
        assertLe(_paid(address(burner), DEPOSIT), 3 * uint256(charge));
    }

    /// Two keys of one account, both held by the thief, in one bundle: each key's op is charged to its own
    /// entry, never the other's, so the paymaster pays at most the sum of the owner's two grants and a key whose
    /// budget is gone is refused even beside a key with budget left. Control: the first bundle of both goes.
    function test_attack_severalKeysEachStopAtTheirOwnGrant() public {
        address key2 = vm.addr(KEY2_PK);
        _grant(sessionKey, _scopeAt(address(pm), CAP, CAP));
        _grant(key2, _scopeAt(address(pm), CAP, 2 * CAP));
        uint256 deposited = entryPoint.balanceOf(address(pm));
        _send(
            _orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm)), _orderOp(KEY2_PK, 0, _full(), 10 gwei, address(pm))
        );
        assertEq(venue.orderCount(), 2);
        assertEq(_leftOf(sessionKey, address(pm)), 0);
        assertEq(_leftOf(key2, address(pm)), CAP, "key2's op charged key2 alone");

        PackedUserOperation memory again = _orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm));
        PackedUserOperation memory other = _orderOp(KEY2_PK, 0, _full(), 10 gwei, address(pm));
        vm.expectRevert(
            abi.encodeWithSelector(
                IEntryPoint.FailedOpWithRevert.selector, 1, "AA23 reverted", _budgetExceeded(address(pm), CAP, 0)
            )
        );
        _send(other, again);
        assertEq(_leftOf(key2, address(pm)), CAP, "the refused bundle charged nothing");
        assertLe(_paid(address(pm), deposited), 2 * CAP, "paid at most what the grants allowed so far");
    }

    /// The thief's key hands itself over (its own sponsored `rotateToSuccessor`, to the successor the owner
    /// committed, whose key the thief also holds): the successor gets what is left, never a fresh budget, and
    /// the rotation op itself is charged. When the owner later rotates the successor back, the old key gets the
    /// successor's (spent) entry, not its own stale one. Across all of it the paymaster pays at most the budget.
    /// Control: a new grant by the owner is a new budget.
    function test_attack_rotationChainNeverRefills() public {
        address successor = vm.addr(SUCCESSOR_PK);
        _grant(sessionKey, _scopeAt(address(pm), CAP, 3 * CAP));
        vm.prank(owner);
        sessions.commitSuccessor(sessionKey, successor);
        uint256 deposited = entryPoint.balanceOf(address(pm));

        _handleFrom(_orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm)), thief, thief);
        bytes memory rotate = abi.encodeCall(ISessionManager.rotateToSuccessor, (sessionKey));
        _handleFrom(_keyOpAt(SESSION_PK, 0, rotate, _full(), 10 gwei, address(pm), ""), thief, thief);
        assertEq(_leftOf(successor, address(pm)), CAP, "the successor has what was left after both ops");
        assertFalse(sessions.getSession(sessionKey).active);

        _handleFrom(_orderOp(SUCCESSOR_PK, 0, _full(), 10 gwei, address(pm)), thief, thief);
        PackedUserOperation memory op = _orderOp(SUCCESSOR_PK, 0, _full(), 10 gwei, address(pm));
        _expectValidationRevert(_budgetExceeded(address(pm), CAP, 0));
        _handleFrom(op, thief, thief);

        // Back to the first key: it inherits the spent entry, not the CAP its own stale entry still holds.
        vm.prank(owner);
        sessions.rotateSession(successor, sessionKey);
        assertEq(_leftOf(sessionKey, address(pm)), 0);
        op = _orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm));
        _expectValidationRevert(_budgetExceeded(address(pm), CAP, 0));
        _handleFrom(op, thief, thief);
        assertLe(_paid(address(pm), deposited), 3 * CAP, "three ops paid, within the one budget");
        assertEq(venue.orderCount(), 2);

        // Control: the owner's new grant.
        _grant(sessionKey, _scopeAt(address(pm), CAP, CAP));
        _handleFrom(_orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm)), thief, thief);
        assertEq(venue.orderCount(), 3);
    }

    /// Enable mode: the owner-signed grant that rode in the key's first op cannot ride again to refill the
    /// entry once spent (the key's grant nonce moved, so the owner signature no longer matches: AA24). Control:
    /// its first use enables and charges.
    function test_attack_replayedEnableGrantDoesNotRefill() public {
        ITradingAccount.SessionScope memory scope = _scopeAt(address(pm), CAP, CAP);
        bytes32 digest = sessions.grantDigest(sessionKey, scope);
        bytes memory ownerSig = _sign(OWNER_PK, digest);
        _handleFrom(_enableSponsored(scope, digest, ownerSig), thief, thief);
        assertEq(_leftOf(sessionKey, address(pm)), 0, "the first op spent the grant's budget");
        uint32 grantId = sessions.getSession(sessionKey).grantId;

        PackedUserOperation memory replay = _enableSponsored(scope, digest, ownerSig);
        _expectFailedOp("AA24 signature error");
        _handleFrom(replay, thief, thief);
        assertEq(sessions.getSession(sessionKey).grantId, grantId, "no new grant stored");
        assertEq(_leftOf(sessionKey, address(pm)), 0, "no refill");
        assertEq(venue.orderCount(), 1);
    }

    function _enableSponsored(ITradingAccount.SessionScope memory scope, bytes32 digest, bytes memory ownerSig)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        uint128[5] memory g = _full();
        op = UserOps.build(
            address(account),
            _sessionNonce(sessionKey, 0),
            UserOps.forSession(sessionKey, _order(0, 1e18, 3000e18, false)),
            g[0],
            g[1]
        );
        op.preVerificationGas = g[2];
        op.gasFees = bytes32((uint256(10 gwei) << 128) | 10 gwei);
        op.paymasterAndData = abi.encodePacked(address(pm), g[3], g[4]);
        _signEnable(op, SESSION_PK, opUntil, scope, digest, ownerSig);
    }

    /*//////////////////////////////////////////////////////////////
                          LANES AND OLD ENTRIES
    //////////////////////////////////////////////////////////////*/

    /// The EIP-7702 lane (initCode marked 0x7702) is not open to this account (a contract, not a delegated
    /// EOA): the EntryPoint refuses the op before validation and nothing is charged or paid. Ops on many nonce
    /// lanes share the one entry. Control: the same op without the marker goes, and lanes 0..2 take three ops
    /// of a three-op budget, then lane 7 is refused.
    function test_attack_lanesShareTheEntry() public {
        _grant(sessionKey, _scopeAt(address(pm), CAP, 3 * CAP));
        uint256 deposited = entryPoint.balanceOf(address(pm));
        PackedUserOperation memory marked = _orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm));
        marked.initCode = abi.encodePacked(bytes2(0x7702), bytes18(0));
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = marked;
        vm.expectRevert();
        vm.prank(thief, thief);
        entryPoint.handleOps(ops, thief);
        assertEq(_leftOf(sessionKey, address(pm)), 3 * CAP);
        assertEq(entryPoint.balanceOf(address(pm)), deposited);

        for (uint32 lane; lane < 3; ++lane) {
            _handleFrom(_orderOp(SESSION_PK, lane, _full(), 10 gwei, address(pm)), thief, thief);
        }
        assertEq(venue.orderCount(), 3);
        PackedUserOperation memory op = _orderOp(SESSION_PK, 7, _full(), 10 gwei, address(pm));
        _expectValidationRevert(_budgetExceeded(address(pm), CAP, 0));
        _handleFrom(op, thief, thief);
        assertLe(_paid(address(pm), deposited), 3 * CAP);
    }

    /// A paymaster entry written before the cap existed is the bare PAYMASTER flag (8): no per-op cap and
    /// nothing left. It fails closed: any op with a price is refused; a zero-price op goes but costs the
    /// paymaster nothing. Control: the same op against the entry as granted today is charged and goes.
    function test_attack_entryWrittenBeforeTheUpgradeFailsClosed() public {
        _grant(sessionKey, _scopeAt(address(pm), CAP, 5 * CAP));
        // Find the entry's slot: the word paymasterAllowance reads that holds the packed entry.
        uint256 packed = 8 | (uint256(CAP / 1 gwei) << 8) | (uint256(5 * CAP / 1 gwei) << 64);
        vm.record();
        sessions.paymasterAllowance(sessionKey, address(pm));
        (bytes32[] memory reads,) = vm.accesses(address(account));
        bytes32 slot;
        for (uint256 i; i < reads.length; ++i) {
            if (uint256(vm.load(address(account), reads[i])) == packed) slot = reads[i];
        }
        assertTrue(slot != bytes32(0), "the entry's slot found");

        // Control: today's entry.
        _handleFrom(_orderOp(SESSION_PK, 0, _full(), 10 gwei, address(pm)), thief, thief);
        assertEq(_leftOf(sessionKey, address(pm)), 4 * CAP);

        vm.store(address(account), slot, bytes32(uint256(8)));
        uint256 deposited = entryPoint.balanceOf(address(pm));
        PackedUserOperation memory op = _orderOp(SESSION_PK, 0, _full(), 1, address(pm));
        _expectValidationRevert(_budgetExceeded(address(pm), 2_060_000, 0));
        _handleFrom(op, thief, thief);
        _handleFrom(_orderOp(SESSION_PK, 0, _full(), 0, address(pm)), thief, thief);
        assertEq(venue.orderCount(), 2, "only the zero-price op went");
        assertEq(_paid(address(pm), deposited), 0, "and it cost the paymaster nothing");
        assertEq(uint256(vm.load(address(account), slot)), 8, "the old entry is unchanged");
    }
}
