//! Signed orders on a real chain (anvil with the deploy plan): core's order id and nested digest equal the
//! venue's and the account's own; two accounts' session keys (secp256k1 and P-256) sign a maker and a taker
//! order and the venue's owner settles them; an order changed after signing is refused by its account. A key
//! past its dead-man deadline cancels its orders by its own ops, which core's policy passes and the chain
//! mines, while its risk-raising op is refused.

use alloy::{
    network::EthereumWallet,
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
    sol_types::SolValue,
};
use alloy_primitives::{Address, I256};
use keyscope_core::{
    KeySigner, P256Key,
    bindings::{ISessionManager, PerpVenue, TradingAccount},
    client::ClientError,
    devnet::{Devnet, repo_root},
    ops,
    order::{
        Fill, Order, OrderBuilder, bump_order_epoch_call_data, cancel_orders_call_data,
        key_order_grant, nonce_slot, order_digest, order_hash, sign_order,
    },
    policy::check_session_op,
    units::parse_units,
};

/// A BTC order of `key` (its current grant and epoch, read from `account`), expiring in an hour of chain time.
async fn btc_order<P: Provider>(
    provider: &P,
    account: Address,
    key: Address,
    is_buy: bool,
    size: &str,
    limit: &str,
    nonce: u64,
) -> Order {
    let (grant_id, epoch) = key_order_grant(provider, account, key).await.unwrap();
    let now_ms = provider
        .get_block_by_number(alloy::rpc::types::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp
        * 1000;
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
async fn session_keys_sign_orders_the_venue_settles() {
    let devnet = Devnet::start(&repo_root(), 0, 41_290).await.unwrap();
    let d = devnet.deployment.clone();
    // The deployer owns the venue, so it is the first settler.
    let settler = ProviderBuilder::new()
        .wallet(EthereumWallet::from(devnet.signer(0)))
        .connect_http(devnet.endpoint_url());
    let chain_id = settler.get_chain_id().await.unwrap();
    let venue = PerpVenue::new(d.venue, &settler);

    let maker_key = PrivateKeySigner::random();
    let taker_key = P256Key::random();
    let collateral = parse_units("10000", 6).unwrap();
    let maker = devnet
        .open_btc_account(&devnet.signer(2), collateral, &[maker_key.address()])
        .await
        .unwrap();
    let taker = devnet
        .open_btc_account(&devnet.signer(3), collateral, &[taker_key.id()])
        .await
        .unwrap();

    // The ids and digests core computes are the chain's.
    let ask = btc_order(
        &settler,
        maker,
        maker_key.address(),
        false,
        "0.1",
        "60000",
        1,
    )
    .await;
    let bid = btc_order(&settler, taker, taker_key.id(), true, "0.1", "60500", 1).await;
    for (account, order) in [(maker, &ask), (taker, &bid)] {
        assert_eq!(
            order_hash(d.venue, chain_id, order),
            venue.orderHash(order.clone()).call().await.unwrap()
        );
        let on_chain = TradingAccount::new(account, &settler)
            .orderDigest(d.venue, SolValue::abi_decode(&order.abi_encode()).unwrap())
            .call()
            .await
            .unwrap();
        assert_eq!(order_digest(account, d.venue, chain_id, order), on_chain);
    }

    let position = |account| {
        let venue = venue.clone();
        async move { venue.position(account, 0).call().await.unwrap().size }
    };
    let ask_sig = sign_order(&maker_key, d.venue, chain_id, &ask)
        .await
        .unwrap();
    let bid_sig = sign_order(&taker_key, d.venue, chain_id, &bid)
        .await
        .unwrap();
    assert_eq!((ask_sig.len(), bid_sig.len()), (65, 128));
    let fill = |maker_order: &Order, size: &str| Fill {
        maker: maker_order.clone(),
        makerSignature: ask_sig.clone(),
        taker: bid.clone(),
        takerSignature: bid_sig.clone(),
        size: parse_units(size, 18).unwrap().to(),
    };

    // The maker's order with its size raised after signing: its account refuses the signature.
    let tampered = Order {
        size: parse_units("0.2", 18).unwrap().to(),
        ..ask.clone()
    };
    let err = venue
        .settle(vec![fill(&tampered, "0.1")])
        .call()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_decoded_interface_error::<TradingAccount::TradingAccountErrors>(),
            Some(TradingAccount::TradingAccountErrors::OrderSignatureInvalid(
                _
            ))
        ),
        "{err:?}"
    );
    assert_eq!(position(maker).await, I256::ZERO);

    // The orders as signed settle: the maker sold 0.1 BTC to the taker at the maker's price.
    let receipt = venue
        .settle(vec![fill(&ask, "0.1")])
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "{receipt:?}");
    let tenth = I256::try_from(parse_units("0.1", 18).unwrap()).unwrap();
    assert_eq!(position(maker).await, -tenth);
    assert_eq!(position(taker).await, tenth);
    assert_eq!(
        venue.position(taker, 0).call().await.unwrap().entryPrice,
        parse_units("60000", 18).unwrap()
    );
    // Filled in full, the orders are spent: the same fill again is refused.
    assert!(venue.settle(vec![fill(&ask, "0.1")]).call().await.is_err());
}

#[tokio::test]
async fn a_key_past_its_dead_man_deadline_cancels_its_orders() {
    let devnet = Devnet::start(&repo_root(), 0, 41_291).await.unwrap();
    let d = devnet.deployment.clone();
    let (provider, client) = devnet.self_bundling(5);
    let key = P256Key::random();
    let account = devnet
        .open_btc_account(
            &devnet.signer(2),
            parse_units("10000", 6).unwrap(),
            &[key.id()],
        )
        .await
        .unwrap();
    let sessions = ISessionManager::new(account, &provider);

    // The key arms its dead-man switch for 5 s, then misses it by a minute.
    let beat = client
        .unsigned_key_op(key.id(), account, 0, ops::heartbeat_call_data(key.id(), 5))
        .await
        .unwrap();
    let beat = client.sign_key_op(&key, account, beat, 30).await.unwrap();
    assert!(client.send(&beat).await.unwrap().success);
    let _: serde_json::Value = provider
        .raw_request("evm_increaseTime".into(), (60,))
        .await
        .unwrap();
    let _: serde_json::Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    // Positive control: a risk-raising order op is refused now.
    let order = ops::place_order(
        d.venue,
        0,
        I256::try_from(parse_units("0.01", 18).unwrap()).unwrap(),
        parse_units("61000", 18).unwrap(),
        false,
    );
    let late = client
        .session_op(&key, account, 0, vec![order], 30)
        .await
        .unwrap();
    match client.simulate(&late).await {
        // The account caps a risk-raising op's validity at the deadline, which has passed.
        Err(ClientError::Refused(r)) => assert!(r.detail.contains("AA22"), "{r:?}"),
        other => panic!("past its deadline the key's order must be refused, got {other:?}"),
    }

    // Its cancels pass core's policy and are mined: a bitmap word at the venue, then the epoch.
    let (word, bit) = nonce_slot(260);
    for call_data in [
        cancel_orders_call_data(key.id(), d.venue, word, bit | (bit << 1)),
        bump_order_epoch_call_data(key.id()),
    ] {
        let op = client
            .unsigned_key_op(key.id(), account, 0, call_data)
            .await
            .unwrap();
        let op = client.sign_key_op(&key, account, op, 30).await.unwrap();
        let session = sessions.getSession(key.id()).call().await.unwrap();
        // The op's own expiry: the uint48 in signature bytes 1..7.
        let until = u64::from_be_bytes([
            0,
            0,
            op.signature[1],
            op.signature[2],
            op.signature[3],
            op.signature[4],
            op.signature[5],
            op.signature[6],
        ]);
        let now = client.chain_time().await.unwrap();
        check_session_op(&session, key.id(), &op, until, now).unwrap();
        let outcome = client.send(&op).await.unwrap();
        assert!(outcome.success, "{outcome:?}");
    }
    let venue = PerpVenue::new(d.venue, &provider);
    assert_eq!(
        venue
            .cancelledOrders(account, key.id(), word)
            .call()
            .await
            .unwrap(),
        bit | (bit << 1)
    );
    assert_eq!(sessions.orderEpoch(key.id()).call().await.unwrap(), 1);
}
