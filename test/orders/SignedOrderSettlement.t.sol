// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {ISignedOrderVenue} from "../../contracts/venue/ISignedOrderVenue.sol";
import {PerpVenue} from "../../contracts/venue/PerpVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {OrderTestBase} from "./OrderTestBase.sol";

/// @notice Settlement of signed orders where the attacker is the settler: it picks the orders, the size, the
/// batch shape and the order of fills; the price is the maker's limit. Each attack beside its positive control.
contract SignedOrderSettlementTest is OrderTestBase {
    function setUp() public override {
        super.setUp();
        _grantMaker();
    }

    /// The maker sells 0.2 BTC at 60,050 to a taker who bids up to 60,100: both positions move at the maker's
    /// price, the filled size is recorded, the taker pays the taker fee and the maker none, and the accounts pay
    /// no gas (their ETH is untouched).
    function test_settle_fillsBothSidesAtMakersPrice() public {
        SignedOrder.Order memory maker = _makerOrder(false, 0.5e18, 60_050e18);
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_100e18);
        uint256 makerEth = address(account).balance;
        int256 makerCollateral = venue.collateralOf(address(account));
        int256 takerCollateral = venue.collateralOf(address(takerAccount));
        _settle(_fill(maker, taker, 0.2e18));
        assertEq(_makerBtc(), -0.2e18);
        assertEq(_takerBtc(), 0.2e18);
        assertEq(venue.position(address(account), BTC).entryPrice, 60_050e18);
        assertEq(venue.filledOf(_hash(maker)), 0.2e18);
        assertEq(venue.filledOf(_hash(taker)), 0.2e18);
        assertEq(venue.collateralOf(address(account)), makerCollateral, "the maker pays no fee");
        // 0.2 x 60,050 = 12,010 USD at 5 bps = 6.005 USD.
        assertEq(venue.collateralOf(address(takerAccount)), takerCollateral - 6.005e6);
        assertEq(address(account).balance, makerEth, "no gas from the account");
    }

    /// A P-256 key (an HSM's or a passkey's curve) signs orders through the same signature parsing.
    function test_settle_p256Key() public {
        uint256 pk = 0xC0FFEE;
        address id = _p256Id(pk);
        vm.prank(owner);
        sessions.grantSession(id, _scope(false));
        SignedOrder.Order memory maker = _order(account, id, BTC, false, 0.1e18, 60_000e18);
        SignedOrder.Order memory taker = _takerOrder(true, 0.1e18, 60_000e18);
        ISignedOrderVenue.Fill memory f =
            ISignedOrderVenue.Fill(maker, _signOrderP256(pk, maker), taker, _signOrder(TAKER_KEY_PK, taker), 0.1e18);
        // Attack: the secp256k1 key's signature of the P-256 key's order.
        f.makerSignature = _signOrder(KEY_PK, maker);
        _settleExpect(f, abi.encodeWithSelector(ITradingAccount.OrderSignatureInvalid.selector));
        f.makerSignature = _signOrderP256(0xBAD, maker);
        _settleExpect(f, abi.encodeWithSelector(ITradingAccount.OrderSignatureInvalid.selector));
        f.makerSignature = _signOrderP256(pk, maker);
        _settle(f);
        assertEq(_makerBtc(), -0.1e18);
    }

    /// Only a settler the venue owner allows settles; the owner is the first.
    function test_settle_onlySettlers() public {
        ISignedOrderVenue.Fill memory f =
            _fill(_makerOrder(false, 0.1e18, 60_000e18), _takerOrder(true, 0.1e18, 60_000e18), 0.1e18);
        ISignedOrderVenue.Fill[] memory fills = new ISignedOrderVenue.Fill[](1);
        fills[0] = f;
        address stranger = address(0x5717);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.NotSettler.selector, stranger));
        venue.settle(fills);
        vm.prank(stranger);
        vm.expectRevert();
        venue.setSettler(stranger, true);
        venue.setSettler(stranger, true);
        vm.prank(stranger);
        venue.settle(fills);
        assertEq(_makerBtc(), -0.1e18);
        venue.setSettler(stranger, false);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.NotSettler.selector, stranger));
        venue.settle(fills);
    }

    /// One fill beyond the order's size, and partial fills summing past it, are refused; fills up to the size pass.
    function test_overfill_refused() public {
        SignedOrder.Order memory maker = _makerOrder(false, 0.3e18, 60_000e18);
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_000e18);
        bytes32 h = _hash(maker);
        _settleExpect(
            _fill(maker, taker, 0.3e18 + 1),
            abi.encodeWithSelector(PerpVenue.OrderOverfilled.selector, h, 0.3e18 + 1, 0.3e18)
        );
        _settle(_fill(maker, taker, 0.1e18));
        _settle(_fill(maker, taker, 0.15e18));
        _settleExpect(
            _fill(maker, taker, 0.05e18 + 1),
            abi.encodeWithSelector(PerpVenue.OrderOverfilled.selector, h, 0.3e18 + 1, 0.3e18)
        );
        _settle(_fill(maker, taker, 0.05e18));
        assertEq(_makerBtc(), -0.3e18);
        // Filled in full: the nonce is spent (its partial-fill entry cleared), so no fill of any size follows.
        assertEq(venue.filledOf(h), 0);
        assertEq(venue.cancelledOrders(address(account), key, 0), 1 << maker.nonce);
        _settleExpect(_fill(maker, taker, 1), abi.encodeWithSelector(PerpVenue.OrderNonceSpent.selector, h));
        // The same fill twice in one batch: the second runs past the order.
        SignedOrder.Order memory m2 = _makerOrder(false, 0.2e18, 60_000e18);
        ISignedOrderVenue.Fill[] memory fills = new ISignedOrderVenue.Fill[](2);
        fills[0] = _fill(m2, taker, 0.15e18);
        fills[1] = fills[0];
        vm.expectRevert(abi.encodeWithSelector(PerpVenue.OrderOverfilled.selector, _hash(m2), 0.3e18, 0.2e18));
        venue.settle(fills);
        assertEq(venue.filledOf(_hash(m2)), 0, "all or none");
    }

    /// The fill is at the maker's limit, which must be within the taker's: a buyer's ceiling, a seller's floor.
    function test_price_worseThanTakersLimitRefused() public {
        // Taker buys up to 59,990; the maker sells at 60,000.
        SignedOrder.Order memory ask = _makerOrder(false, 0.5e18, 60_000e18);
        _settleExpect(
            _fill(ask, _takerOrder(true, 0.1e18, 59_990e18), 0.1e18),
            abi.encodeWithSelector(ITradingAccount.OrderPriceOutsideLimit.selector, 60_000e18, 59_990e18)
        );
        _settle(_fill(ask, _takerOrder(true, 0.1e18, 60_000e18), 0.1e18));
        // Taker sells down to 60,010; the maker bids 60,000.
        SignedOrder.Order memory bid = _makerOrder(true, 0.5e18, 60_000e18);
        _settleExpect(
            _fill(bid, _takerOrder(false, 0.1e18, 60_010e18), 0.1e18),
            abi.encodeWithSelector(ITradingAccount.OrderPriceOutsideLimit.selector, 60_000e18, 60_010e18)
        );
        _settle(_fill(bid, _takerOrder(false, 0.1e18, 59_000e18), 0.1e18));
        assertEq(_makerBtc(), 0);
    }

    /// The maker's price must be inside the market's band around the oracle (10 %): two colluding accounts cannot
    /// move value between them at an absurd price.
    function test_price_outsideBandRefused() public {
        SignedOrder.Order memory maker = _makerOrder(false, 0.1e18, 54_000e18 - 1);
        _settleExpect(
            _fill(maker, _takerOrder(true, 0.1e18, 60_000e18), 0.1e18),
            abi.encodeWithSelector(PerpVenue.LimitPriceOutsideBand.selector, 60_000e18, 54_000e18 - 1)
        );
        _settle(_fill(_makerOrder(false, 0.1e18, 54_000e18), _takerOrder(true, 0.1e18, 60_000e18), 0.1e18));
    }

    /// An order past its expiry (ms) is refused; at its last millisecond it settles.
    function test_expired_refused() public {
        SignedOrder.Order memory maker = _makerOrder(false, 0.2e18, 60_000e18);
        maker.expiry = uint64(block.timestamp * 1000 + 1999);
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_000e18);
        vm.warp(block.timestamp + 1);
        _settle(_fill(maker, taker, 0.1e18));
        vm.warp(block.timestamp + 1);
        _settleExpect(
            _fill(maker, taker, 0.1e18),
            abi.encodeWithSelector(PerpVenue.OrderExpired.selector, _hash(maker), maker.expiry, block.timestamp * 1000)
        );
    }

    /// The settler's batch shape: orders of another market, the same side, or one account on both sides.
    function test_mismatchedPairsRefused() public {
        SignedOrder.Order memory ask = _makerOrder(false, 0.2e18, 3_000e18);
        ask.marketId = ETH;
        _settleExpect(
            _fill(ask, _takerOrder(true, 0.1e18, 60_000e18), 0.1e18),
            abi.encodeWithSelector(PerpVenue.FillMismatch.selector, PerpVenue.FillFault.Market)
        );
        _settleExpect(
            _fill(_makerOrder(false, 0.2e18, 60_000e18), _takerOrder(false, 0.1e18, 60_000e18), 0.1e18),
            abi.encodeWithSelector(PerpVenue.FillMismatch.selector, PerpVenue.FillFault.Side)
        );
        SignedOrder.Order memory selfTaker = _makerOrder(true, 0.1e18, 60_000e18);
        ISignedOrderVenue.Fill memory f = _fill(_makerOrder(false, 0.2e18, 60_000e18), selfTaker, 0.1e18);
        f.takerSignature = _signOrder(KEY_PK, selfTaker);
        _settleExpect(f, abi.encodeWithSelector(PerpVenue.FillMismatch.selector, PerpVenue.FillFault.SelfTrade));
        _settleExpect(
            _fill(_makerOrder(false, 0.2e18, 60_000e18), _takerOrder(true, 0.1e18, 60_000e18), 0),
            abi.encodeWithSelector(PerpVenue.ZeroSize.selector)
        );
    }

    /// A batch is all or none: a refused fill after a good one reverts both; the good one alone settles.
    function test_batch_allOrNone() public {
        SignedOrder.Order memory good = _makerOrder(false, 0.1e18, 60_000e18);
        SignedOrder.Order memory taker = _takerOrder(true, 1e18, 60_000e18);
        SignedOrder.Order memory tooBig = _makerOrder(false, 0.6e18, 60_000e18);
        ISignedOrderVenue.Fill[] memory fills = new ISignedOrderVenue.Fill[](2);
        fills[0] = _fill(good, taker, 0.1e18);
        fills[1] = _fill(tooBig, taker, 0.6e18);
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.SessionOrderTooLarge.selector, 0.6e18, 0.5e18));
        venue.settle(fills);
        assertEq(venue.filledOf(_hash(good)), 0);
        assertEq(_makerBtc(), 0);
        _settle(fills[0]);
        assertEq(_makerBtc(), -0.1e18);
    }

    /// A key may only trade markets, sizes and notionals its order rule allows, on a venue it is granted.
    function test_scope_marketSizeNotionalAtSettlement() public {
        SignedOrder.Order memory taker = _takerOrder(false, 10e18, 3_000e18);
        taker.marketId = ETH;
        SignedOrder.Order memory ethBid = _order(account, key, ETH, true, 0.1e18, 3_000e18);
        _settleExpect(
            _fill(ethBid, taker, 0.1e18), abi.encodeWithSelector(ITradingAccount.SessionMarketNotAllowed.selector, ETH)
        );
        // A buy's notional at its limit: 0.5 x 62,001 = 31,000.5 > 31,000 even though the fill is smaller.
        SignedOrder.Order memory bid = _makerOrder(true, 0.5e18, 62_001e18);
        _settleExpect(
            _fill(bid, _takerOrder(false, 1e18, 60_000e18), 0.1e18),
            abi.encodeWithSelector(ITradingAccount.SessionNotionalTooHigh.selector, 31_000.5e18, 31_000e18)
        );
        _settle(_fill(_makerOrder(true, 0.5e18, 62_000e18), _takerOrder(false, 1e18, 60_000e18), 0.1e18));
        // A sell's notional at its fill: the taker (a sell of the maker key's) fills at the other maker's 62,001.
        SignedOrder.Order memory otherAsk = _takerOrder(true, 1e18, 62_001e18);
        SignedOrder.Order memory sell = _makerOrder(false, 0.5e18, 61_000e18);
        ISignedOrderVenue.Fill memory f = ISignedOrderVenue.Fill(
            otherAsk, _signOrder(TAKER_KEY_PK, otherAsk), sell, _signOrder(KEY_PK, sell), 0.1e18
        );
        _settleExpect(
            f, abi.encodeWithSelector(ITradingAccount.SessionNotionalTooHigh.selector, 31_000.5e18, 31_000e18)
        );
        // A venue the key has no permission on: a second venue with the same owner (and settler), where both
        // accounts have margin.
        PerpVenue other = new PerpVenue(address(this), usd, oracle);
        other.listMarket(BTC, _marketParams());
        vm.startPrank(owner);
        account.execute(address(usd), 0, abi.encodeCall(usd.approve, (address(other), type(uint256).max)));
        account.execute(address(other), 0, abi.encodeCall(IPerpVenue.depositMargin, (1_000e6)));
        vm.stopPrank();
        vm.startPrank(vm.addr(TAKER_OWNER_PK));
        takerAccount.execute(address(usd), 0, abi.encodeCall(usd.approve, (address(other), type(uint256).max)));
        takerAccount.execute(address(other), 0, abi.encodeCall(IPerpVenue.depositMargin, (1_000e6)));
        vm.stopPrank();
        SignedOrder.Order memory m = _makerOrder(false, 0.1e18, 60_000e18);
        SignedOrder.Order memory t = _takerOrder(true, 0.1e18, 60_000e18);
        ISignedOrderVenue.Fill[] memory fills = new ISignedOrderVenue.Fill[](1);
        fills[0] = ISignedOrderVenue.Fill(
            m, _signOrder(KEY_PK, m, address(other)), t, _signOrder(TAKER_KEY_PK, t, address(other)), 0.1e18
        );
        vm.expectRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector, address(other), IPerpVenue.placeOrder.selector
            )
        );
        other.settle(fills);
    }

    /// A third party calling the account's check directly (as if it were a venue) spends nothing: the digest
    /// binds the venue the key signed for, and the caller holds no order permission.
    function test_checkOrderFill_directCallRefused() public {
        SignedOrder.Order memory o = _makerOrder(false, 0.1e18, 60_000e18);
        bytes memory sig = _signOrder(KEY_PK, o);
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(ITradingAccount.OrderSignatureInvalid.selector));
        account.checkOrderFill(o, sig, 0.1e18, 60_000e18);
        // Signed for the attacker's "venue": the signature holds, the permission does not.
        bytes memory forBad = _signOrder(KEY_PK, o, address(0xBAD));
        vm.prank(address(0xBAD));
        vm.expectRevert(
            abi.encodeWithSelector(
                ITradingAccount.SessionCallNotPermitted.selector, address(0xBAD), IPerpVenue.placeOrder.selector
            )
        );
        account.checkOrderFill(o, forBad, 0.1e18, 60_000e18);
    }

    /// A settler that sends an order field with dirty upper bits (the nonce here) to give the same order a
    /// second id is refused; the clean encoding settles.
    function test_dirtyFieldRefused() public {
        ISignedOrderVenue.Fill[] memory fills = new ISignedOrderVenue.Fill[](1);
        fills[0] = _fill(_makerOrder(false, 0.1e18, 60_000e18), _takerOrder(true, 0.1e18, 60_000e18), 0.1e18);
        bytes memory data = abi.encodeCall(ISignedOrderVenue.settle, (fills));
        // selector, array offset, length, element offset, then the maker's 12 words: its nonce is word 11.
        uint256 nonceWord = 4 + 3 * 32 + 11 * 32;
        data[nonceWord] = 0x01;
        (bool ok, bytes memory ret) = address(venue).call(data);
        assertFalse(ok);
        assertEq(ret, abi.encodeWithSelector(SignedOrder.MalformedOrder.selector));
        venue.settle(fills);
        assertEq(_makerBtc(), -0.1e18);
    }
}
