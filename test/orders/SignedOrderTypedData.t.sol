// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";
import {OrderTestBase} from "./OrderTestBase.sol";

/// @notice The order's typed data, as a wallet or the Rust signer encodes it (`eth_signTypedData_v4` JSON, hashed
/// by forge's own EIP-712 encoder): the venue's order id and the account's nested digest the key signs match it.
contract SignedOrderTypedDataTest is OrderTestBase {
    string internal constant DOMAIN_TYPE =
        '"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}]';
    string internal constant ORDER_TYPE =
        '"Order":[{"name":"account","type":"address"},{"name":"key","type":"address"},{"name":"grantId","type":"uint32"},{"name":"epoch","type":"uint32"},{"name":"marketId","type":"uint32"},{"name":"isBuy","type":"bool"},{"name":"size","type":"uint128"},{"name":"limitPrice","type":"uint128"},{"name":"reduceOnly","type":"bool"},{"name":"timeInForce","type":"uint8"},{"name":"expiry","type":"uint64"},{"name":"nonce","type":"uint64"}]';

    function _domain(string memory name, address verifying) internal view returns (string memory) {
        return string.concat(
            '{"name":"',
            name,
            '","version":"1","chainId":',
            vm.toString(block.chainid),
            ',"verifyingContract":"',
            vm.toString(verifying),
            '"}'
        );
    }

    /// @dev `"name":value`, the value quoted when `quoted` (addresses, and integers over 53 bits).
    function _kv(string memory name, string memory value, bool quoted) internal pure returns (string memory) {
        string memory q = quoted ? '"' : "";
        return string.concat('"', name, '":', q, value, q);
    }

    function _message(SignedOrder.Order memory o) internal pure returns (string memory) {
        string memory head = string.concat(
            _kv("account", vm.toString(o.account), true),
            ",",
            _kv("key", vm.toString(o.key), true),
            ",",
            _kv("grantId", vm.toString(o.grantId), false),
            ",",
            _kv("epoch", vm.toString(o.epoch), false),
            ",",
            _kv("marketId", vm.toString(o.marketId), false),
            ",",
            _kv("isBuy", vm.toString(o.isBuy), false)
        );
        string memory tail = string.concat(
            _kv("size", vm.toString(o.size), true),
            ",",
            _kv("limitPrice", vm.toString(o.limitPrice), true),
            ",",
            _kv("reduceOnly", vm.toString(o.reduceOnly), false),
            ",",
            _kv("timeInForce", vm.toString(o.timeInForce), false),
            ",",
            _kv("expiry", vm.toString(o.expiry), false),
            ",",
            _kv("nonce", vm.toString(o.nonce), false)
        );
        return string.concat("{", head, ",", tail, "}");
    }

    function test_typedData_matchesWalletEncoding() public {
        _grantMaker();
        SignedOrder.Order memory o = _makerOrder(true, 0.25e18, 60_123.5e18);
        o.reduceOnly = true;
        o.timeInForce = uint8(SignedOrder.TimeInForce.POST_ONLY);
        o.nonce = 0x1_0000_0005;

        string memory venueTyped = string.concat(
            '{"types":{',
            DOMAIN_TYPE,
            ",",
            ORDER_TYPE,
            '},"primaryType":"Order","domain":',
            _domain("Keyscope PerpVenue", address(venue)),
            ',"message":',
            _message(o),
            "}"
        );
        assertEq(venue.orderHash(o), vm.eip712HashTypedData(venueTyped), "the venue's order id");

        string memory nested = string.concat(
            '{"types":{',
            DOMAIN_TYPE,
            ',"VenueOrder":[{"name":"venueDomain","type":"bytes32"},{"name":"order","type":"Order"}],',
            ORDER_TYPE,
            '},"primaryType":"VenueOrder","domain":',
            _domain("Keyscope TradingAccount", address(account)),
            ',"message":{"venueDomain":"',
            vm.toString(venue.DOMAIN_SEPARATOR()),
            '","order":',
            _message(o),
            "}}"
        );
        assertEq(account.orderDigest(address(venue), o), vm.eip712HashTypedData(nested), "the digest the key signs");
    }
}
