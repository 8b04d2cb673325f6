//! `keyscope signer` signs off-chain orders on anvil: a P-256 keystore key's order, signed over the socket,
//! settles against a taker's order on the venue; orders outside the key's scope (market, size, notional at
//! the limit, a stale epoch), of keys it does not hold, for another account, expired or malformed are
//! refused before anything is signed; its rate limit stops risk-raising orders but not reduce-only ones; and
//! every decision is in the audit trail.

mod common;

use alloy::{
    network::EthereumWallet, providers::ProviderBuilder, signers::local::PrivateKeySigner,
};
use alloy_primitives::{Address, I256};
use common::*;
use keyscope_core::{
    bindings::PerpVenue,
    key::Curve,
    order::{Fill, Order, OrderBuilder, key_order_grant, sign_order},
    units::parse_units,
};
use keyscope_signer::audit;

/// A BTC order of `key` on `account` (its current grant and epoch), expiring in an hour of the chain's time.
async fn order(
    setup: &Setup,
    account: Address,
    key: Address,
    is_buy: bool,
    size: &str,
    limit: &str,
    nonce: u64,
) -> Order {
    let now_ms = setup.client.chain_time().await.unwrap() * 1000;
    let (grant_id, epoch) = key_order_grant(&setup.provider, account, key)
        .await
        .unwrap();
    OrderBuilder::new(
        account,
        key,
        0,
        is_buy,
        parse_units(size, 18).unwrap(),
        parse_units(limit, 18).unwrap(),
    )
    .grant(grant_id, epoch)
    .expiry_ms(now_ms + 3_600_000)
    .nonce(nonce)
    .build(now_ms)
    .unwrap()
}

#[tokio::test]
async fn the_sidecar_signs_orders_in_scope_and_they_settle() {
    let dir = temp_dir("orders");
    let (maker_key, toml) = keystore_key(&dir, "mm-p256", Curve::P256, "2/1m");
    let setup = Setup::start(41_292, dir, &[maker_key]).await;
    let (config, auditor) = setup.write_config(&toml);
    let (task, signer) = start_sidecar(&config, None).await;
    let venue_address = setup.devnet.deployment.venue;
    let settler = ProviderBuilder::new()
        .wallet(EthereumWallet::from(setup.devnet.signer(0)))
        .connect_http(setup.devnet.endpoint_url());
    let venue = PerpVenue::new(venue_address, &settler);

    // The maker's ask, signed by the sidecar (the strategy never holds the key).
    let ask = order(&setup, setup.account, maker_key, false, "0.1", "60000", 1).await;
    let signed = signer.sign_order(venue_address, &ask).await.unwrap();
    assert_eq!(signed.signature.len(), 128);
    assert_eq!(
        signed.order_hash,
        venue.orderHash(ask.clone()).call().await.unwrap()
    );

    // A taker lifts it; the venue's owner settles the pair on chain.
    let taker_key = PrivateKeySigner::random();
    let taker = setup
        .devnet
        .open_btc_account(
            &setup.devnet.signer(3),
            parse_units("10000", 6).unwrap(),
            &[taker_key.address()],
        )
        .await
        .unwrap();
    let bid = order(&setup, taker, taker_key.address(), true, "0.1", "60000", 1).await;
    let bid_sig = sign_order(
        &taker_key,
        venue_address,
        setup.devnet.deployment.chain_id,
        &bid,
    )
    .await
    .unwrap();
    let fill = Fill {
        maker: ask.clone(),
        makerSignature: signed.signature.clone(),
        taker: bid,
        takerSignature: bid_sig,
        size: parse_units("0.1", 18).unwrap().to(),
    };
    let receipt = venue
        .settle(vec![fill])
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "{receipt:?}");
    assert_eq!(
        venue.position(setup.account, 0).call().await.unwrap().size,
        -I256::try_from(parse_units("0.1", 18).unwrap()).unwrap()
    );

    // Refused before signing, by the key's scope (BTC only, 0.5 an order, 40,000 notional at the limit).
    let scope_refusals = [
        (
            Order {
                marketId: 1,
                ..order(&setup, setup.account, maker_key, false, "0.1", "3000", 2).await
            },
            "market 1",
        ),
        (
            order(&setup, setup.account, maker_key, false, "0.6", "60000", 3).await,
            "order size",
        ),
        (
            order(&setup, setup.account, maker_key, true, "0.5", "90000", 4).await,
            "notional",
        ),
        (
            Order {
                epoch: 1,
                ..order(&setup, setup.account, maker_key, false, "0.1", "60000", 5).await
            },
            "epoch",
        ),
    ];
    for (bad, why) in &scope_refusals {
        let refused = signer.sign_order(venue_address, bad).await.unwrap_err();
        assert_eq!(refused.code, 4001, "{refused}");
        assert!(refused.message.contains(why), "{why}: {refused}");
    }
    // Only at a venue the key may trade on.
    let elsewhere = signer
        .sign_order(Address::repeat_byte(9), &ask)
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code, 4001, "{elsewhere}");
    // A key it does not hold, an order of another account.
    let stranger = order(
        &setup,
        setup.account,
        Address::repeat_byte(0x42),
        true,
        "0.1",
        "60000",
        6,
    )
    .await;
    assert_eq!(
        signer
            .sign_order(venue_address, &stranger)
            .await
            .unwrap_err()
            .code,
        4004
    );
    let other_account = Order {
        account: taker,
        ..ask.clone()
    };
    assert_eq!(
        signer
            .sign_order(venue_address, &other_account)
            .await
            .unwrap_err()
            .code,
        4004
    );
    // Expired, and an unknown time in force: not orders at all.
    for bad in [
        Order {
            expiry: 1,
            ..ask.clone()
        },
        Order {
            timeInForce: 5,
            ..ask.clone()
        },
    ] {
        let refused = signer.sign_order(venue_address, &bad).await.unwrap_err();
        assert_eq!(refused.code, -32602, "{refused}");
    }

    // The sidecar's rate (2 a minute, one used): one more risk-raising order, then only reduce-only ones.
    let next = order(&setup, setup.account, maker_key, false, "0.1", "60000", 7).await;
    signer.sign_order(venue_address, &next).await.unwrap();
    let limited = signer
        .sign_order(
            venue_address,
            &Order {
                nonce: 8,
                ..next.clone()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(limited.code, 4029, "{limited}");
    let reducing = Order {
        nonce: 9,
        isBuy: true,
        reduceOnly: true,
        ..next
    };
    signer.sign_order(venue_address, &reducing).await.unwrap();
    task.stop();

    // Every decision that reached the service is in the trail: 3 signed, 8 refused (the two malformed
    // orders never reached it).
    let log = setup.dir.join("audit.jsonl");
    let (entries, _) = audit::verify(&log, auditor).unwrap();
    assert_eq!(entries, 11);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"refused\"").count(), 8);
}
