// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

import {TradingAccount} from "../../contracts/account/TradingAccount.sol";
import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {ISignedOrderVenue} from "../../contracts/venue/ISignedOrderVenue.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {OrderTestBase} from "./OrderTestBase.sol";

/// @notice The key's scope at settlement, where the attacker holds a stolen key (signs whatever it likes) or
/// replays a signature elsewhere: the dead-man switch, post-execution limits and the breaker, rate and uses by
/// many small fills, and every replay across accounts, venues, chains, keys and ERC-1271. Each attack beside its
/// positive control.
contract SignedOrderScopeTest is OrderTestBase {
    /// @dev The maker key on BTC up to 1 BTC and $70,000 an order, with `risk`, `rateCount` per minute and
    /// `maxUses`.
    function _grantWith(ITradingAccount.RiskLimits memory risk, uint16 rateCount, uint32 maxUses) internal {
        ITradingAccount.SessionScope memory scope = _scope(false);
        scope.permissions[0].maxOrderSize = 1e18;
        scope.permissions[0].maxOrderNotional = 70_000e18;
        scope.risk = risk;
        scope.rateCount = rateCount;
        scope.ratePeriod = rateCount == 0 ? 0 : 60;
        scope.maxUses = maxUses;
        _grantMaker(scope);
    }

    function _noRisk() internal pure returns (ITradingAccount.RiskLimits memory r) {}

    /// @dev The maker key sells (or buys) `size` at the oracle's 60,000 to the taker.
    function _trade(bool makerBuys, uint128 size, bool reduceOnly) internal returns (ISignedOrderVenue.Fill memory f) {
        SignedOrder.Order memory m = _makerOrder(makerBuys, size, 60_000e18);
        m.reduceOnly = reduceOnly;
        f = _fill(m, _takerOrder(!makerBuys, size, 60_000e18), size);
    }

    /*//////////////////////////////////////////////////////////////
                             DEAD-MAN SWITCH
    //////////////////////////////////////////////////////////////*/

    /// Past the key's heartbeat deadline a risk-raising fill is refused and a reduce-only one passes.
    function test_deadMan_riskRaisingRefusedReduceOnlyPasses() public {
        _grantWith(_noRisk(), 0, 0);
        vm.prank(owner);
        sessions.heartbeat(key, 60);
        _settle(_trade(false, 0.2e18, false)); // before the deadline
        uint40 deadline = sessions.heartbeatDeadline(key);
        vm.warp(deadline + 1);
        _price(60_000e18, 3_000e18);
        _settleExpect(
            _trade(false, 0.1e18, false),
            abi.encodeWithSelector(ITradingAccount.SessionHeartbeatMissed.selector, key, deadline)
        );
        _settle(_trade(true, 0.1e18, true));
        assertEq(_makerBtc(), -0.1e18);
    }

    /*//////////////////////////////////////////////////////////////
                      POST-EXECUTION LIMITS AND BREAKER
    //////////////////////////////////////////////////////////////*/

    /// 0.5 BTC = $30,000 on $5,000 of value is 6x: refused. Positive control: 0.2 BTC, 2.4x.
    function test_leverage_capAtSettlement() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxLeverage = 300;
        _grantWith(risk, 0, 0);
        _settleExpect(
            _trade(false, 0.5e18, false),
            abi.encodeWithSelector(ITradingAccount.SessionLeverageTooHigh.selector, 600, 300)
        );
        _settle(_trade(false, 0.2e18, false));
        assertEq(_makerBtc(), -0.2e18);
    }

    /// A position cap: 0.5 BTC ($30,000) over a $20,000 cap refused; 0.3 BTC passes.
    function test_positionCap_atSettlement() public {
        ITradingAccount.RiskLimits memory risk;
        risk.maxPositionNotional = 20_000e6;
        _grantWith(risk, 0, 0);
        _settleExpect(
            _trade(true, 0.5e18, false),
            abi.encodeWithSelector(ITradingAccount.SessionPositionTooLarge.selector, 30_000e6, 20_000e6)
        );
        _settle(_trade(true, 0.3e18, false));
    }

    /// The breaker measures equity (wallet 15,000 + venue 5,000): after a loss below the floor a risk-raising
    /// fill is refused; a reduce-only fill stands and trips the breaker; then risk-raising fills are refused
    /// as protective-only.
    function test_drawdown_breakerAtSettlement() public {
        ITradingAccount.RiskLimits memory risk;
        risk.drawdownFloor = 19_500e6;
        _grantWith(risk, 0, 0);
        _settle(_trade(true, 0.2e18, false));
        _price(57_000e18, 3_000e18); // -600
        SignedOrder.Order memory more = _makerOrder(true, 0.1e18, 57_000e18);
        _settleExpect(
            _fill(more, _takerOrder(false, 0.1e18, 57_000e18), 0.1e18),
            abi.encodeWithSelector(ITradingAccount.SessionDrawdownBreached.selector, int256(19_400e6), 19_500e6)
        );
        SignedOrder.Order memory cut = _makerOrder(false, 0.1e18, 57_000e18);
        cut.reduceOnly = true;
        vm.expectEmit(true, false, false, false, address(account));
        emit ITradingAccount.SessionBreakerTripped(key, 0, 0, 0);
        _settle(_fill(cut, _takerOrder(true, 0.1e18, 57_000e18), 0.1e18));
        assertTrue(sessions.getSession(key).tripped);
        SignedOrder.Order memory again = _makerOrder(true, 0.05e18, 57_000e18);
        _settleExpect(
            _fill(again, _takerOrder(false, 0.05e18, 57_000e18), 0.05e18),
            abi.encodeWithSelector(ITradingAccount.SessionProtectiveOnly.selector, key)
        );
    }

    /*//////////////////////////////////////////////////////////////
                               RATE AND USES
    //////////////////////////////////////////////////////////////*/

    /// Two risk-raising fills a minute: many small fills of one order cannot pass the third; a reduce-only fill
    /// is never refused by the rate; the next window takes fills again.
    function test_rate_manySmallFills() public {
        _grantWith(_noRisk(), 2, 0);
        SignedOrder.Order memory m = _makerOrder(false, 0.5e18, 60_000e18);
        SignedOrder.Order memory t = _takerOrder(true, 1e18, 60_000e18);
        uint256 start = block.timestamp;
        _settle(_fill(m, t, 0.01e18));
        _settle(_fill(m, t, 0.01e18));
        _settleExpect(
            _fill(m, t, 0.01e18),
            abi.encodeWithSelector(ITradingAccount.SessionRateLimited.selector, key, uint40(start + 60))
        );
        _settle(_trade(true, 0.01e18, true));
        vm.warp(start + 60);
        _price(60_000e18, 3_000e18);
        _settle(_fill(m, t, 0.01e18));
        assertEq(venue.filledOf(_hash(m)), 0.03e18);
    }

    /// Three uses: every fill counts one, reduce-only included; the fourth is refused.
    function test_uses_manySmallFills() public {
        _grantWith(_noRisk(), 0, 3);
        SignedOrder.Order memory m = _makerOrder(false, 0.5e18, 60_000e18);
        SignedOrder.Order memory t = _takerOrder(true, 1e18, 60_000e18);
        _settle(_fill(m, t, 0.01e18));
        _settle(_fill(m, t, 0.01e18));
        _settle(_trade(true, 0.01e18, true));
        _settleExpect(_fill(m, t, 0.01e18), abi.encodeWithSelector(ITradingAccount.SessionExhausted.selector, key));
        assertEq(sessions.getSession(key).usesLeft, 0);
    }

    /*//////////////////////////////////////////////////////////////
                                 REPLAYS
    //////////////////////////////////////////////////////////////*/

    function _signWith(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev Settles `m` (signed `sig`) against a fresh taker order, expecting `err` (empty: success).
    function _tryMaker(SignedOrder.Order memory m, bytes memory sig, bytes memory err) internal {
        SignedOrder.Order memory t = _takerOrder(!m.isBuy, m.size, m.limitPrice);
        ISignedOrderVenue.Fill memory f = ISignedOrderVenue.Fill(m, sig, t, _signOrder(TAKER_KEY_PK, t), m.size);
        if (err.length == 0) _settle(f);
        else _settleExpect(f, err);
    }

    /// A signature of the order under another account's domain, another venue's, another chain's, or by
    /// another key is refused; the right one settles.
    function test_replay_otherAccountVenueChainKey() public {
        _grantWith(_noRisk(), 0, 0);
        vm.prank(vm.addr(TAKER_OWNER_PK));
        ISessionManager(address(takerAccount)).grantSession(key, _scope(false));
        vm.prank(owner);
        sessions.grantSession(takerKey, _scope(false)); // the taker's key is a key of this account too
        bytes memory invalid = abi.encodeWithSelector(ITradingAccount.OrderSignatureInvalid.selector);
        SignedOrder.Order memory m = _makerOrder(false, 0.1e18, 60_000e18);

        _tryMaker(m, _signWith(KEY_PK, takerAccount.orderDigest(address(venue), m)), invalid); // other account
        _tryMaker(m, _signOrder(KEY_PK, m, address(0xFE11)), invalid); // other venue
        uint256 chain = block.chainid;
        vm.chainId(chain + 1);
        bytes32 otherChain = account.orderDigest(address(venue), m);
        vm.chainId(chain);
        _tryMaker(m, _signWith(KEY_PK, otherChain), invalid); // other chain
        _tryMaker(m, _signOrder(TAKER_KEY_PK, m), invalid); // other key, named as this one
        _tryMaker(m, _signOrder(KEY_PK, m), ""); // positive control
        assertEq(_makerBtc(), -0.1e18);
    }

    /// An order signature is never an ERC-1271 signature and no ERC-1271 signature is an order: here the owner is
    /// also a session key, so the same key signs both kinds.
    function test_replay_orderVersusErc1271() public {
        vm.prank(owner);
        sessions.grantSession(owner, _scope(false));
        SignedOrder.Order memory m = _order(account, owner, BTC, false, 0.1e18, 60_000e18);
        bytes32 digest = account.orderDigest(address(venue), m);
        bytes memory orderSig = _signWith(OWNER_PK, digest);
        bytes memory messageSig = _signWith(OWNER_PK, account.replaySafeHash(digest));
        // The ERC-1271 signature of the order's digest is no order signature.
        _tryMaker(m, messageSig, abi.encodeWithSelector(ITradingAccount.OrderSignatureInvalid.selector));
        // The order signature is no ERC-1271 signature of the digest; the message signature is (control).
        assertEq(account.isValidSignature(digest, orderSig), bytes4(0xffffffff));
        assertEq(account.isValidSignature(digest, messageSig), IERC1271.isValidSignature.selector);
        // A session key's order signature is no ERC-1271 signature either (keys never sign for the account).
        SignedOrder.Order memory k = _makerOrder(false, 0.1e18, 60_000e18);
        bytes32 keyDigest = account.orderDigest(address(venue), k);
        assertEq(account.isValidSignature(keyDigest, _signOrder(KEY_PK, k)), bytes4(0xffffffff));
        _tryMaker(m, orderSig, ""); // positive control
    }

    /// The fields are all bound: a settler that changes any one of them (a bigger size, a better price for its
    /// other side, reduce-only dropped, a later expiry, another nonce) breaks the signature.
    function test_replay_alteredFieldsRefused() public {
        _grantWith(_noRisk(), 0, 0);
        bytes memory invalid = abi.encodeWithSelector(ITradingAccount.OrderSignatureInvalid.selector);
        SignedOrder.Order memory m = _makerOrder(false, 0.1e18, 60_000e18);
        bytes memory sig = _signOrder(KEY_PK, m);
        m.size = 0.2e18;
        _tryMaker(m, sig, invalid);
        m.size = 0.1e18;
        m.limitPrice = 59_000e18;
        _tryMaker(m, sig, invalid);
        m.limitPrice = 60_000e18;
        m.expiry += 1;
        _tryMaker(m, sig, invalid);
        m.expiry -= 1;
        m.nonce += 1000;
        _tryMaker(m, sig, invalid);
        m.nonce -= 1000;
        _tryMaker(m, sig, "");
    }
}
