//! Signed orders through the relayer's matcher, on anvil: a maker quotes two-sided, a taker lifts the ask, the
//! fill settles on chain at the maker's price; orders outside the key's scope, unsigned or tampered, replayed,
//! or crossing as post-only are refused off-chain with nothing resting; cancels at every grain (one order, all,
//! scheduled, on disconnect, a revoke or epoch bump on chain); a restart keeps every acknowledged order.

mod common;

use std::time::{Duration, Instant};

use alloy::providers::Provider;
use alloy_primitives::{B256, I256};
use common::{orders::*, *};
use keyscope_core::{
    bindings::PerpVenue,
    ops,
    order::{OrderBuilder, OrderJson, TimeInForce, order_hash, sign_order},
    order_request::{Request, RequestAction},
    units::parse_units,
};
use keyscope_relayer::{Relayer, config::BundlingMode};
use serde_json::{Value, json};

#[tokio::test]
async fn a_maker_quotes_a_taker_lifts_the_ask_and_the_fill_settles_at_the_makers_price() {
    let s = setup("orders-fill", 42_210, BundlingMode::Auto, |_| {}).await;
    let maker = s.trader(2100, "100000").await;
    let taker = s.trader(2101, "100000").await;
    let (_ws, mut maker_events) = subscribe_orders(&s, &maker, false).await;

    // Two-sided, post-only.
    let ask = signed(&s, &maker, false, "0.2", "60100", TimeInForce::PostOnly, 1).await;
    let bid = signed(&s, &maker, true, "0.2", "59900", TimeInForce::PostOnly, 2).await;
    for o in [&ask, &bid] {
        let ack = place(&s, o).await.unwrap();
        assert_eq!(ack["status"], "resting");
        assert_eq!(ack["orderHash"], json!(o.hash));
    }
    let book = s.call("keyscope_getBook", json!([0])).await.unwrap();
    assert_eq!(book["asks"][0][0], json!(parse_units("60100", 18).unwrap()));
    assert_eq!(book["bids"][0][0], json!(parse_units("59900", 18).unwrap()));

    // The taker's IOC buy up to 60,200 takes 0.1 of the ask, at the ask's price.
    let lift = signed(&s, &taker, true, "0.1", "60200", TimeInForce::Ioc, 1).await;
    let ack = place(&s, &lift).await.unwrap();
    assert_eq!(ack["status"], "filled");
    assert_eq!(ack["fills"].as_array().unwrap().len(), 1);
    let fill_id = ack["fills"][0].clone();
    // The maker hears of the match, then of its settlement on chain.
    let settled = next_where(&mut maker_events, |e| {
        e["fill"]["id"] == fill_id && e["fill"]["status"] == "settled"
    })
    .await;
    assert_eq!(settled["orderHash"], json!(ask.hash));
    assert_eq!(
        settled["fill"]["price"],
        json!(parse_units("60100", 18).unwrap())
    );
    let tx: B256 = serde_json::from_value(settled["fill"]["transactionHash"].clone()).unwrap();
    let receipt = s
        .provider
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    // On chain: the taker is long 0.1, the maker short 0.1; the ask rests with 0.1 left.
    let tenth = I256::try_from(parse_units("0.1", 18).unwrap()).unwrap();
    assert_eq!(position(&s, taker.account).await, tenth);
    assert_eq!(position(&s, maker.account).await, -tenth);
    assert_eq!(
        resting(&s, ask.hash).await,
        Some(parse_units("0.1", 18).unwrap())
    );
    let filled = PerpVenue::new(s.d.venue, &s.provider)
        .filledOf(ask.hash)
        .call()
        .await
        .unwrap();
    assert_eq!(filled, parse_units("0.1", 18).unwrap());

    // Refused off-chain, nothing resting: beyond the key's size cap (0.5)…
    let big = signed(&s, &maker, false, "0.6", "60300", TimeInForce::PostOnly, 3).await;
    let e = place(&s, &big).await.unwrap_err();
    assert_eq!(code(&e), -32620, "{e}");
    assert!(e["message"].as_str().unwrap().contains("size"), "{e}");
    assert_eq!(resting(&s, big.hash).await, None);
    // …a post-only that would take…
    let cross = signed(&s, &taker, true, "0.05", "60100", TimeInForce::PostOnly, 2).await;
    assert_eq!(code(&place(&s, &cross).await.unwrap_err()), -32622);
    assert_eq!(resting(&s, cross.hash).await, None);
    // …an order placed twice…
    assert_eq!(code(&place(&s, &ask).await.unwrap_err()), -32622);
    // …a signature of another order, and an order changed after signing.
    let other = signed(&s, &maker, false, "0.1", "60400", TimeInForce::Gtt, 4).await;
    let forged = Signed {
        sig: ask.sig.clone(),
        ..other.clone()
    };
    assert_eq!(code(&place(&s, &forged).await.unwrap_err()), -32507);
    let mut bigger = other.json.clone();
    bigger["size"] = json!(parse_units("0.2", 18).unwrap());
    assert_eq!(
        code(
            &place(
                &s,
                &Signed {
                    json: bigger,
                    ..other.clone()
                }
            )
            .await
            .unwrap_err()
        ),
        -32507
    );
    // Another key signing the maker's order (its digest, by hand): refused.
    let maker_order = serde_json::from_value::<OrderJson>(other.json.clone())
        .unwrap()
        .to_order(0)
        .unwrap();
    let digest = keyscope_core::order::order_digest(
        maker.account,
        s.d.venue,
        s.devnet.deployment.chain_id,
        &maker_order,
    );
    let by_taker = keyscope_core::KeySigner::sign_digest(&taker.session, digest)
        .await
        .unwrap();
    let e = place(
        &s,
        &Signed {
            sig: by_taker,
            ..other.clone()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), -32507, "{e}");
    // The genuine one rests.
    assert_eq!(place(&s, &other).await.unwrap()["status"], "resting");
    // An "account" that is not a Keyscope TradingAccount — an address without code, or another contract
    // (one could answer getSession with any scope it likes) — is refused, whatever its key signed.
    for not_an_account in [maker.owner.address(), s.d.collateral] {
        let order = OrderBuilder::new(
            not_an_account,
            maker.session.address(),
            0,
            false,
            parse_units("0.1", 18).unwrap(),
            parse_units("60500", 18).unwrap(),
        )
        .expiry_ms(now_ms() + 60_000)
        .nonce(77)
        .build(now_ms())
        .unwrap();
        let sig = sign_order(
            &maker.session,
            s.d.venue,
            s.devnet.deployment.chain_id,
            &order,
        )
        .await
        .unwrap();
        let e = place(
            &s,
            &Signed {
                json: json!(OrderJson::from(&order)),
                sig,
                hash: order_hash(s.d.venue, s.devnet.deployment.chain_id, &order),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(code(&e), -32620, "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("not a Keyscope trading account"),
            "{e}"
        );
    }
    // The book has the maker's quotes only.
    let book = s.call("keyscope_getBook", json!([0])).await.unwrap();
    assert_eq!(book["asks"].as_array().unwrap().len(), 2);
    assert_eq!(book["bids"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn cancels_at_every_grain_and_the_chain_takes_a_revoked_keys_orders_off() {
    let s = setup("orders-cancel", 42_211, BundlingMode::Auto, |c| {
        c.matcher.watch_ms = 200;
    })
    .await;
    let t = s.trader(2110, "100000").await;
    let mut n = 0u64;
    let mut quote = || {
        n += 1;
        n
    };
    let mut q = Vec::new();
    for i in 0..4 {
        let o = signed(
            &s,
            &t,
            true,
            "0.1",
            &format!("{}", 59_000 + i),
            TimeInForce::Gtt,
            quote(),
        )
        .await;
        place(&s, &o).await.unwrap();
        q.push(o);
    }
    // One order, by its key.
    let (fields, sig) = request(&s, &t, RequestAction::Cancel(vec![q[0].hash])).await;
    let done = s
        .call("keyscope_cancelOrders", json!([fields, sig]))
        .await
        .unwrap();
    assert_eq!(done["cancelled"], json!([q[0].hash]));
    assert_eq!(done["notResting"], json!([]));
    assert_eq!(resting(&s, q[0].hash).await, None);
    // The lookup tells how it ended.
    let gone = s
        .call("keyscope_getOrder", json!([q[0].hash]))
        .await
        .unwrap();
    assert_eq!(gone["status"], "cancelled", "{gone}");
    assert_eq!(gone["reason"], "cancelled by its key", "{gone}");
    // Naming it again (and a hash never placed) cancels nothing and says so.
    let (fields2, sig2) = request(
        &s,
        &t,
        RequestAction::Cancel(vec![q[0].hash, B256::repeat_byte(0xaa)]),
    )
    .await;
    let done = s
        .call("keyscope_cancelOrders", json!([fields2, sig2]))
        .await
        .unwrap();
    assert_eq!(done["cancelled"], json!([]));
    assert_eq!(
        done["notResting"],
        json!([q[0].hash, B256::repeat_byte(0xaa)])
    );
    // The same request again: a replay, refused.
    let e = s
        .call("keyscope_cancelOrders", json!([fields, sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32623);
    // A stale one (signed 10 s ago): refused.
    let stale = Request {
        venue: s.d.venue,
        account: t.account,
        key: t.session.address(),
        action: RequestAction::CancelAll,
        timestamp_ms: now_ms() - 10_000,
    };
    let sig = stale
        .sign(&t.session, s.devnet.deployment.chain_id)
        .await
        .unwrap();
    let e = s
        .call(
            "keyscope_cancelAllOrders",
            json!([{ "account": t.account, "key": t.session.address(), "timestampMs": stale.timestamp_ms }, sig]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32623);
    assert!(resting(&s, q[1].hash).await.is_some());
    // Another key cannot cancel this key's orders: its signature is not this key's.
    let other = s.trader(2111, "100000").await;
    let (mut fields, sig) = request(&s, &other, RequestAction::CancelAll).await;
    fields["account"] = json!(t.account);
    fields["key"] = json!(t.session.address());
    let e = s
        .call("keyscope_cancelAllOrders", json!([fields, sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32507);
    assert!(resting(&s, q[1].hash).await.is_some());
    // All of the key's orders.
    let (fields, sig) = request(&s, &t, RequestAction::CancelAll).await;
    let done = s
        .call("keyscope_cancelAllOrders", json!([fields, sig]))
        .await
        .unwrap();
    assert_eq!(done["cancelled"].as_array().unwrap().len(), 3);

    // A scheduled cancel-all: a dead-man switch for resting quotes. Too soon is refused; 5 s fires.
    let o = signed(&s, &t, true, "0.1", "59100", TimeInForce::Gtt, quote()).await;
    place(&s, &o).await.unwrap();
    // Too soon (1 s): the SDK will not sign it; signed by hand, the matcher refuses it.
    let soon_at = now_ms() + 1_000;
    let soon = Request {
        venue: s.d.venue,
        account: t.account,
        key: t.session.address(),
        action: RequestAction::ScheduleCancel { at_ms: soon_at },
        timestamp_ms: now_ms(),
    };
    assert!(
        soon.sign(&t.session, s.devnet.deployment.chain_id)
            .await
            .is_err()
    );
    let sig = keyscope_core::KeySigner::sign_digest(
        &t.session,
        soon.digest(s.devnet.deployment.chain_id),
    )
    .await
    .unwrap();
    let e = s
        .call(
            "keyscope_scheduleCancel",
            json!([{ "account": t.account, "key": t.session.address(), "timestampMs": soon.timestamp_ms,
                     "atMs": soon_at }, sig]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32602, "{e}");
    let at = now_ms() + 5_500;
    let (fields, sig) = request(&s, &t, RequestAction::ScheduleCancel { at_ms: at }).await;
    let done = s
        .call("keyscope_scheduleCancel", json!([fields, sig]))
        .await
        .unwrap();
    assert_eq!(done["scheduledCancelMs"], json!(at));
    assert!(resting(&s, o.hash).await.is_some());
    tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()) + 300)).await;
    assert_eq!(
        resting(&s, o.hash).await,
        None,
        "the scheduled cancel fired"
    );

    // Cancel on disconnect: the key's stream closes, its quotes go.
    let (ws, mut sub) = subscribe_orders(&s, &t, true).await;
    let o = signed(&s, &t, true, "0.1", "59200", TimeInForce::Gtt, quote()).await;
    place(&s, &o).await.unwrap();
    next_where(&mut sub, |e| e["orderHash"] == json!(o.hash)).await;
    drop(sub);
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    while resting(&s, o.hash).await.is_some() {
        assert!(Instant::now() < deadline, "cancelled on disconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The key bumps its order epoch on chain (its own op): its resting orders go at the next read.
    let o = signed(&s, &t, true, "0.1", "59300", TimeInForce::Gtt, quote()).await;
    place(&s, &o).await.unwrap();
    let bump = s
        .direct
        .unsigned_key_op(
            t.session.address(),
            t.account,
            0,
            keyscope_core::order::bump_order_epoch_call_data(t.session.address()),
        )
        .await
        .unwrap();
    let bump = s
        .direct
        .sign_key_op(&t.session, t.account, bump, 30)
        .await
        .unwrap();
    assert!(s.direct.send(&bump).await.unwrap().success);
    let deadline = Instant::now() + Duration::from_secs(5);
    while resting(&s, o.hash).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "an epoch bump takes the key's orders off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Orders signed under the new epoch rest.
    let old = signed(&s, &t, true, "0.1", "59400", TimeInForce::Gtt, quote()).await;
    place(&s, &old).await.unwrap();

    // The owner revokes the key on chain: its orders go, and its next order is refused.
    let revoke = s
        .owner_op(
            &t,
            1,
            vec![ops::revoke_session(t.account, t.session.address())],
        )
        .await;
    assert!(s.direct.send(&revoke).await.unwrap().success);
    let revoked_at = Instant::now();
    let deadline = revoked_at + Duration::from_secs(5);
    while resting(&s, old.hash).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "a revoke takes the key's orders off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = signed(&s, &t, true, "0.1", "59500", TimeInForce::Gtt, quote()).await;
    let e = place(&s, &after).await.unwrap_err();
    assert_eq!(code(&e), -32620, "{e}");
}

#[tokio::test]
async fn a_restart_keeps_every_acknowledged_order_in_its_place() {
    let s = setup("orders-restart", 42_212, BundlingMode::Auto, |_| {}).await;
    let a = s.trader(2120, "100000").await;
    let b = s.trader(2121, "100000").await;
    let first = signed(&s, &a, false, "0.1", "60100", TimeInForce::Gtt, 1).await;
    let second = signed(&s, &b, false, "0.1", "60100", TimeInForce::Gtt, 1).await;
    let bid = signed(&s, &a, true, "0.3", "59900", TimeInForce::Gtt, 2).await;
    for o in [&first, &second, &bid] {
        place(&s, o).await.unwrap();
    }
    let before = s.call("keyscope_getBook", json!([0])).await.unwrap();
    let Setup {
        chain,
        relayer,
        data_dir,
        config,
    } = s;
    relayer.stop().await;
    let relayer = Relayer::start(config.clone()).await.unwrap();
    let s = Setup {
        chain,
        relayer,
        data_dir,
        config,
    };
    let after = s.call("keyscope_getBook", json!([0])).await.unwrap();
    assert_eq!(before, after);
    // Time priority kept: a taker lifting 0.1 at 60,100 meets the first ask, not the second.
    let lift = signed(&s, &b, true, "0.1", "60100", TimeInForce::Ioc, 3).await;
    // a's ask is first in line: b's buy fills against it (b's own ask, second, is not reached).
    let ack = place(&s, &lift).await.unwrap();
    assert_eq!(ack["status"], "filled");
    assert_eq!(resting(&s, first.hash).await, None);
    assert!(resting(&s, second.hash).await.is_some());
}

#[tokio::test]
async fn a_fill_the_chain_refuses_is_bisected_out_and_the_rest_of_the_batch_settles() {
    // Fills go out once per 3 s: three fills share one batch. The chain is read again only every minute,
    // so a revoke lands between match and settlement unseen by the matcher (a malicious or slow matcher
    // could do the same on purpose: the account refuses the fill at settlement either way).
    let s = setup("orders-bisect", 42_213, BundlingMode::Auto, |c| {
        c.matcher.settle_interval_ms = 3_000;
        c.matcher.watch_ms = 60_000;
    })
    .await;
    let good = s.trader(2130, "100000").await;
    let revoked = s.trader(2131, "100000").await;
    let taker = s.trader(2132, "100000").await;
    let asks = [
        signed(&s, &good, false, "0.1", "60100", TimeInForce::Gtt, 1).await,
        signed(&s, &revoked, false, "0.1", "60100", TimeInForce::Gtt, 1).await,
        signed(&s, &good, false, "0.1", "60100", TimeInForce::Gtt, 2).await,
    ];
    for a in &asks {
        place(&s, a).await.unwrap();
    }
    let revoke = s
        .owner_op(
            &revoked,
            1,
            vec![ops::revoke_session(
                revoked.account,
                revoked.session.address(),
            )],
        )
        .await;
    assert!(s.direct.send(&revoke).await.unwrap().success);
    let (_ws, mut events) = subscribe_orders(&s, &taker, false).await;
    // The taker sweeps all three, in time priority.
    let lift = signed(&s, &taker, true, "0.3", "60100", TimeInForce::Ioc, 1).await;
    let ack = place(&s, &lift).await.unwrap();
    assert_eq!(ack["fills"].as_array().unwrap().len(), 3);
    let ids: Vec<Value> = ack["fills"].as_array().unwrap().clone();
    let mut outcome = std::collections::HashMap::new();
    while outcome.len() < 3 {
        let ev = next_where(&mut events, |e| {
            matches!(e["fill"]["status"].as_str(), Some("settled" | "refused"))
        })
        .await;
        outcome.insert(ev["fill"]["id"].to_string(), ev);
    }
    let of = |i: usize| &outcome[&ids[i].to_string()];
    assert_eq!(of(0)["fill"]["status"], "settled");
    assert_eq!(of(2)["fill"]["status"], "settled");
    assert_eq!(of(1)["fill"]["status"], "refused");
    assert!(
        of(1)["reason"]
            .as_str()
            .unwrap()
            .contains("refused at settlement"),
        "{}",
        of(1)
    );
    // The two good fills went out in one transaction; on chain the taker is long 0.2, the revoked key's
    // account has no position and its order nothing filled.
    assert_eq!(
        of(0)["fill"]["transactionHash"],
        of(2)["fill"]["transactionHash"]
    );
    let tenth = I256::try_from(parse_units("0.1", 18).unwrap()).unwrap();
    assert_eq!(position(&s, taker.account).await, tenth + tenth);
    assert_eq!(position(&s, revoked.account).await, I256::ZERO);
    let venue = PerpVenue::new(s.d.venue, &s.provider);
    assert_eq!(
        venue.filledOf(asks[1].hash).call().await.unwrap(),
        alloy_primitives::U256::ZERO
    );
    // Filled in full, an order spends its nonce (the venue keeps no filled amount for it).
    assert!(nonce_spent(&s, &good, 2).await);
    assert!(!nonce_spent(&s, &revoked, 1).await);
}

#[tokio::test]
async fn a_settlement_a_reorg_undoes_is_sent_again_and_lands_once() {
    let s = setup("orders-reorg", 42_214, BundlingMode::Auto, |c| {
        c.matcher.settle_interval_ms = 200;
    })
    .await;
    let maker = s.trader(2140, "100000").await;
    let taker = s.trader(2141, "100000").await;
    let (_ws, mut events) = subscribe_orders(&s, &taker, false).await;
    let ask = signed(&s, &maker, false, "0.1", "60100", TimeInForce::Gtt, 1).await;
    place(&s, &ask).await.unwrap();
    let lift = signed(&s, &taker, true, "0.1", "60100", TimeInForce::Ioc, 1).await;
    place(&s, &lift).await.unwrap();
    let settled = next_where(&mut events, |e| e["fill"]["status"] == "settled").await;
    let tx: B256 = serde_json::from_value(settled["fill"]["transactionHash"].clone()).unwrap();
    let tenth = I256::try_from(parse_units("0.1", 18).unwrap()).unwrap();
    assert_eq!(position(&s, taker.account).await, tenth);

    // The block with the settlement leaves the chain.
    let _: Value = s
        .provider
        .raw_request("anvil_rollback".into(), (1u64,))
        .await
        .unwrap();
    assert_eq!(position(&s, taker.account).await, I256::ZERO, "undone");
    // The matcher sends the same transaction again: it lands, once.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s
        .provider
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "the settlement is sent again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(position(&s, taker.account).await, tenth);
    assert_eq!(position(&s, maker.account).await, -tenth);
    assert!(nonce_spent(&s, &maker, 1).await);
    // Nothing more goes out for it.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(position(&s, taker.account).await, tenth);
}
