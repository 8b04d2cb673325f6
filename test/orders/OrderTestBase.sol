// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccountFactory} from "../../contracts/account/AccountFactory.sol";
import {TradingAccount} from "../../contracts/account/TradingAccount.sol";
import {P256Key} from "../../contracts/account/libraries/P256Key.sol";
import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {ITradingAccount} from "../../contracts/account/interfaces/ITradingAccount.sol";
import {IPerpVenue} from "../../contracts/venue/IPerpVenue.sol";
import {ISignedOrderVenue} from "../../contracts/venue/ISignedOrderVenue.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {VenueSessionBase} from "../utils/VenueSessionBase.sol";
import {Orders} from "./Orders.sol";

/// @notice Signed orders on the real venue: the maker is `account` (owner OWNER_PK, session key KEY_PK, 5,000
/// tUSD of margin, from VenueSessionBase) and the taker a second account with its own owner and key. This test
/// contract owns the venue, so it is the venue's first settler. BTC is at 60,000 (IMF 5 %, band 10 %).
abstract contract OrderTestBase is VenueSessionBase {
    uint256 internal constant TAKER_OWNER_PK = 0xB0B;
    uint256 internal constant TAKER_KEY_PK = 0x7A6E;

    TradingAccount internal takerAccount;
    address internal takerKey;
    uint64 internal nextNonce;

    function setUp() public virtual override {
        super.setUp();
        takerKey = vm.addr(TAKER_KEY_PK);
        takerAccount = new AccountFactory(entryPoint).createAccount(vm.addr(TAKER_OWNER_PK), 0);
        usd.mint(address(takerAccount), 20_000e6);
        vm.startPrank(vm.addr(TAKER_OWNER_PK));
        takerAccount.execute(address(usd), 0, abi.encodeCall(usd.approve, (address(venue), type(uint256).max)));
        takerAccount.execute(address(venue), 0, abi.encodeCall(IPerpVenue.depositMargin, (10_000e6)));
        ISessionManager(address(takerAccount)).grantSession(takerKey, _takerScope());
        vm.stopPrank();
    }

    /// @dev The taker's key: BTC and ETH up to 10 units and $1M an order, no other limit.
    function _takerScope() internal view returns (ITradingAccount.SessionScope memory scope) {
        scope = _scope(false);
        scope.permissions[0].marketMask = 3;
        scope.permissions[0].maxOrderSize = 10e18;
        scope.permissions[0].maxOrderNotional = 1_000_000e18;
    }

    /// @dev Grants the maker's key `scope` (the owner, directly).
    function _grantMaker(ITradingAccount.SessionScope memory scope) internal returns (uint32 grantId) {
        vm.prank(owner);
        grantId = sessions.grantSession(key, scope);
    }

    /// @dev The maker's key with the base scope: BTC up to 0.5 BTC and $31,000 an order.
    function _grantMaker() internal returns (uint32) {
        return _grantMaker(_scope(false));
    }

    /// @dev A GTT order of `acct`'s key `k` (current grant and epoch), expiring in an hour, with a fresh nonce.
    function _order(TradingAccount acct, address k, uint32 marketId, bool isBuy, uint128 size, uint128 limitPrice)
        internal
        returns (SignedOrder.Order memory)
    {
        return Orders.gtt(address(acct), k, marketId, isBuy, size, limitPrice, nextNonce++);
    }

    /// @dev The maker key's BTC order.
    function _makerOrder(bool isBuy, uint128 size, uint128 limitPrice) internal returns (SignedOrder.Order memory) {
        return _order(account, key, BTC, isBuy, size, limitPrice);
    }

    /// @dev The taker key's BTC order.
    function _takerOrder(bool isBuy, uint128 size, uint128 limitPrice) internal returns (SignedOrder.Order memory) {
        return _order(takerAccount, takerKey, BTC, isBuy, size, limitPrice);
    }

    /// @dev Secp256k1 key `pk`'s signature of `o` for `venue_`, as `o.account` computes the digest.
    function _signOrder(uint256 pk, SignedOrder.Order memory o, address venue_) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, TradingAccount(payable(o.account)).orderDigest(venue_, o));
        return abi.encodePacked(r, s, v);
    }

    function _signOrder(uint256 pk, SignedOrder.Order memory o) internal view returns (bytes memory) {
        return _signOrder(pk, o, address(venue));
    }

    /// @dev secp256r1 group order.
    uint256 internal constant P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551;

    function _p256Id(uint256 pk) internal pure returns (address) {
        (uint256 x, uint256 y) = vm.publicKeyP256(pk);
        return P256Key.id(bytes32(x), bytes32(y));
    }

    /// @dev P-256 key `pk`'s signature `r ‖ s ‖ x ‖ y` of `o` at the venue, s in the lower half.
    function _signOrderP256(uint256 pk, SignedOrder.Order memory o) internal view returns (bytes memory) {
        (bytes32 r, bytes32 s) = vm.signP256(pk, TradingAccount(payable(o.account)).orderDigest(address(venue), o));
        if (uint256(s) > P256_N / 2) s = bytes32(P256_N - uint256(s));
        (uint256 x, uint256 y) = vm.publicKeyP256(pk);
        return abi.encodePacked(r, s, x, y);
    }

    function _fill(SignedOrder.Order memory maker, SignedOrder.Order memory taker, uint128 size)
        internal
        view
        returns (ISignedOrderVenue.Fill memory)
    {
        return ISignedOrderVenue.Fill(maker, _signOrder(KEY_PK, maker), taker, _signOrder(TAKER_KEY_PK, taker), size);
    }

    function _settle(ISignedOrderVenue.Fill memory f) internal {
        ISignedOrderVenue.Fill[] memory fills = new ISignedOrderVenue.Fill[](1);
        fills[0] = f;
        venue.settle(fills);
    }

    /// @dev Settles one fill of the maker's and taker's orders (signed by their keys) and expects `err`.
    function _settleExpect(ISignedOrderVenue.Fill memory f, bytes memory err) internal {
        ISignedOrderVenue.Fill[] memory fills = new ISignedOrderVenue.Fill[](1);
        fills[0] = f;
        vm.expectRevert(err);
        venue.settle(fills);
    }

    function _makerBtc() internal view returns (int256) {
        return venue.position(address(account), BTC).size;
    }

    function _takerBtc() internal view returns (int256) {
        return venue.position(address(takerAccount), BTC).size;
    }

    function _hash(SignedOrder.Order memory o) internal view returns (bytes32) {
        return venue.orderHash(o);
    }
}
