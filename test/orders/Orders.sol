// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ISessionManager} from "../../contracts/account/interfaces/ISessionManager.sol";
import {SignedOrder} from "../../contracts/venue/libraries/SignedOrder.sol";

/// @notice Builds the signed orders the order tests settle.
library Orders {
    /// @notice A GTT order of `account`'s key `key` under its current grant and order epoch, expiring in an hour.
    function gtt(
        address account,
        address key,
        uint32 marketId,
        bool isBuy,
        uint128 size,
        uint128 limitPrice,
        uint64 nonce
    ) internal view returns (SignedOrder.Order memory o) {
        o.account = account;
        o.key = key;
        o.grantId = ISessionManager(account).getSession(key).grantId;
        o.epoch = ISessionManager(account).orderEpoch(key);
        o.marketId = marketId;
        o.isBuy = isBuy;
        o.size = size;
        o.limitPrice = limitPrice;
        o.timeInForce = uint8(SignedOrder.TimeInForce.GTT);
        o.expiry = uint64((block.timestamp + 1 hours) * 1000);
        o.nonce = nonce;
    }
}
