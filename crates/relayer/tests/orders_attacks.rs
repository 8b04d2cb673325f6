//! Attacks on the relayer's matcher for signed orders, on anvil, each beside its positive control (the same
//! action done legitimately succeeds): a third party with no key of the victim (cancel, replace, replay,
//! read its order stream, make its orders fail at settlement), a holder of a stolen session key (another
//! market or account, beyond size, notional or margin by many orders, after a revoke or epoch bump), an
//! order account contract that is not Keyscope's, and a client sending crafted JSON. Attacks that succeed
//! today are written as the safe behaviour and ignored with `BUG:`.

mod common;

use std::time::{Duration, Instant};

use alloy::{
    consensus::Transaction as _,
    network::TransactionBuilder,
    providers::Provider,
    signers::local::PrivateKeySigner,
    sol_types::{SolCall, SolValue},
};
use alloy_primitives::{Address, B256, Bytes, I256, U256};
use common::{orders::*, *};
use keyscope_core::{
    bindings::PerpVenue,
    ops,
    order::{OrderBuilder, OrderJson, TimeInForce, order_hash},
    order_request::RequestAction,
    units::parse_units,
};
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};

#[tokio::test]
async fn a_third_party_cannot_cancel_anothers_orders_nor_replay_the_owners_cancels() {
    let s = setup("attack-cancel", 42_220, BundlingMode::Auto, |_| {}).await;
    let victim = s.trader(2200, "100000").await;
    let attacker = s.trader(2201, "100000").await;
    let (va, vk) = (victim.account, victim.session.address());
    let b1 = signed(&s, &victim, true, "0.1", "59000", TimeInForce::Gtt, 1).await;
    let b2 = signed(&s, &victim, true, "0.1", "59001", TimeInForce::Gtt, 2).await;
    place(&s, &b1).await.unwrap();
    place(&s, &b2).await.unwrap();

    // The attacker's own key and account, naming the victim's order: not its order.
    let (f, sig) = request(&s, &attacker, RequestAction::Cancel(vec![b1.hash])).await;
    let e = s
        .call("keyscope_cancelOrders", json!([f, sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), BOOK, "{e}");
    // The victim's account and key, the attacker's signature: not the key's.
    for action in [
        RequestAction::Cancel(vec![b1.hash]),
        RequestAction::CancelAll,
    ] {
        let method = if matches!(action, RequestAction::CancelAll) {
            "keyscope_cancelAllOrders"
        } else {
            "keyscope_cancelOrders"
        };
        let (f, sig) = request_as(&s, &attacker.session, va, vk, action, now_ms()).await;
        let e = s.call(method, json!([f, sig])).await.unwrap_err();
        assert_eq!(code(&e), INVALID_SIGNATURE, "{e}");
    }
    // The victim's account with the attacker's key (signed under the victim's account's domain): the
    // victim's orders are another key's.
    let (f, sig) = request_as(
        &s,
        &attacker.session,
        va,
        attacker.session.address(),
        RequestAction::Cancel(vec![b1.hash, b2.hash]),
        now_ms(),
    )
    .await;
    let e = s
        .call("keyscope_cancelOrders", json!([f, sig]))
        .await
        .unwrap_err();
    // Not a key of the victim's account: refused before anything is looked up.
    assert_eq!(code(&e), -32620, "{e}");
    let (f, sig) = request_as(
        &s,
        &attacker.session,
        va,
        attacker.session.address(),
        RequestAction::CancelAll,
        now_ms(),
    )
    .await;
    let e = s
        .call("keyscope_cancelAllOrders", json!([f, sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32620, "{e}");
    let tenth = e18("0.1");
    assert_eq!(resting(&s, b1.hash).await, Some(tenth));
    assert_eq!(resting(&s, b2.hash).await, Some(tenth));

    // Control: the victim's key cancels its own order.
    let (f, sig) = request(&s, &victim, RequestAction::Cancel(vec![b1.hash])).await;
    let done = s
        .call("keyscope_cancelOrders", json!([f, sig]))
        .await
        .unwrap();
    assert_eq!(done["cancelled"], json!([b1.hash]));
    assert_eq!(resting(&s, b1.hash).await, None);

    // The victim cancels all; a captured copy of that request, replayed at once (inside its freshness
    // window) after the victim quoted again, cancels nothing.
    let (all, all_sig) = request(&s, &victim, RequestAction::CancelAll).await;
    let done = s
        .call("keyscope_cancelAllOrders", json!([all, all_sig]))
        .await
        .unwrap();
    assert_eq!(done["cancelled"], json!([b2.hash]));
    let b3 = signed(&s, &victim, true, "0.1", "59002", TimeInForce::Gtt, 3).await;
    place(&s, &b3).await.unwrap();
    let e = s
        .call("keyscope_cancelAllOrders", json!([all, all_sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), STALE, "{e}");
    // As another method (the same fields and signature as a cancel of listed orders): not the key's.
    let mut as_cancel = all.clone();
    as_cancel["orderHashes"] = json!([b3.hash]);
    let e = s
        .call("keyscope_cancelOrders", json!([as_cancel, all_sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), INVALID_SIGNATURE, "{e}");
    assert_eq!(resting(&s, b3.hash).await, Some(tenth));
    // Control: a fresh cancel-all of the victim's key takes it.
    let (f, sig) = request(&s, &victim, RequestAction::CancelAll).await;
    let done = s
        .call("keyscope_cancelAllOrders", json!([f, sig]))
        .await
        .unwrap();
    assert_eq!(done["cancelled"], json!([b3.hash]));
}

#[tokio::test]
async fn a_third_party_cannot_read_anothers_order_stream_nor_turn_it_into_a_cancel() {
    let s = setup("attack-stream", 42_221, BundlingMode::Auto, |_| {}).await;
    let victim = s.trader(2210, "100000").await;
    let attacker = s.trader(2211, "100000").await;
    let (va, vk) = (victim.account, victim.session.address());

    // Control: the victim's key subscribes to its own stream.
    let (f, sig) = request(
        &s,
        &victim,
        RequestAction::Subscribe {
            cancel_on_disconnect: false,
        },
    )
    .await;
    let victim_ws = ws(&s).await;
    let mut own = subscribe_with(&victim_ws, f.clone(), sig.clone())
        .await
        .unwrap();

    // The same request replayed by the attacker on its own connection: taken already.
    let attacker_ws = ws(&s).await;
    assert!(
        subscribe_with(&attacker_ws, f.clone(), sig.clone())
            .await
            .is_err()
    );
    // The same signature with cancel-on-disconnect turned on (so its close would cancel the victim's
    // quotes): not the key's.
    let mut cod = f.clone();
    cod["cancelOnDisconnect"] = json!(true);
    assert!(subscribe_with(&attacker_ws, cod, sig).await.is_err());
    // The attacker's key signing for the victim's key: not the key's.
    let (f, sig) = request_as(
        &s,
        &attacker.session,
        va,
        vk,
        RequestAction::Subscribe {
            cancel_on_disconnect: true,
        },
        now_ms(),
    )
    .await;
    assert!(subscribe_with(&attacker_ws, f, sig).await.is_err());
    // The attacker's key on the victim's account: not a key of that account, refused.
    let (f, sig) = request_as(
        &s,
        &attacker.session,
        va,
        attacker.session.address(),
        RequestAction::Subscribe {
            cancel_on_disconnect: true,
        },
        now_ms(),
    )
    .await;
    assert!(subscribe_with(&attacker_ws, f, sig).await.is_err());
    // Its own account's stream: accepted, and it sees none of the victim's orders.
    let (f, sig) = request(
        &s,
        &attacker,
        RequestAction::Subscribe {
            cancel_on_disconnect: true,
        },
    )
    .await;
    let mut spy = subscribe_with(&attacker_ws, f, sig).await.unwrap();

    let o = signed(&s, &victim, true, "0.1", "59000", TimeInForce::Gtt, 1).await;
    place(&s, &o).await.unwrap();
    let ev = next_where(&mut own, |e| e["orderHash"] == json!(o.hash)).await;
    assert_eq!(ev["status"], "resting");
    assert!(
        tokio::time::timeout(Duration::from_millis(1_000), spy.next())
            .await
            .is_err(),
        "the attacker's stream carries none of the victim's updates"
    );
    // The attacker's stream closing (cancel-on-disconnect on) leaves the victim's order resting.
    drop(spy);
    drop(attacker_ws);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(resting(&s, o.hash).await, Some(e18("0.1")));
}

#[tokio::test]
async fn replayed_malleated_expired_and_mistimed_orders_and_requests_are_refused() {
    let s = setup("attack-replay", 42_222, BundlingMode::Auto, |_| {}).await;
    let victim = s.trader(2220, "100000").await;
    let tenth = e18("0.1");

    // Control: the victim's order rests once; the same order again (anyone re-sending it) is refused.
    let o1 = signed(&s, &victim, true, "0.1", "59000", TimeInForce::Gtt, 1).await;
    assert_eq!(place(&s, &o1).await.unwrap()["status"], "resting");
    assert_eq!(code(&place(&s, &o1).await.unwrap_err()), BOOK);
    // After the victim cancels it, a replay does not bring it back.
    let (f, sig) = request(&s, &victim, RequestAction::Cancel(vec![o1.hash])).await;
    s.call("keyscope_cancelOrders", json!([f, sig]))
        .await
        .unwrap();
    assert_eq!(code(&place(&s, &o1).await.unwrap_err()), BOOK);
    assert_eq!(resting(&s, o1.hash).await, None);
    // Another order on the same nonce: one order per nonce.
    let same_nonce = signed(&s, &victim, true, "0.1", "58000", TimeInForce::Gtt, 1).await;
    let e = place(&s, &same_nonce).await.unwrap_err();
    assert_eq!(code(&e), BOOK, "{e}");
    assert!(e["message"].as_str().unwrap().contains("nonce"), "{e}");

    // A malleated signature (s -> n - s, the other parity): refused, as the account refuses it.
    let o2 = signed(&s, &victim, true, "0.1", "59001", TimeInForce::Gtt, 2).await;
    let sig = alloy_primitives::Signature::try_from(o2.sig.as_ref()).unwrap();
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let high = alloy_primitives::Signature::new(sig.r(), n - sig.s(), !sig.v());
    let malleated = Signed {
        sig: high.as_bytes().to_vec().into(),
        ..o2.clone()
    };
    let e = place(&s, &malleated).await.unwrap_err();
    assert_eq!(code(&e), INVALID_SIGNATURE, "{e}");
    assert_eq!(resting(&s, o2.hash).await, None);
    assert_eq!(place(&s, &o2).await.unwrap()["status"], "resting");

    // Expired before it arrives (signed by the key itself): refused, nothing rests.
    let mut past = order_of(&s, &victim, true, "0.1", "59002", TimeInForce::Gtt, 3).await;
    past.expiry = now_ms() - 1;
    let past = sign(&s, &victim.session, past).await;
    assert_eq!(code(&place(&s, &past).await.unwrap_err()), INVALID_FIELDS);
    assert_eq!(resting(&s, past.hash).await, None);
    // One that expires in 400 ms rests, then leaves the book at its expiry: no taker meets it later.
    let mut short = order_of(&s, &victim, false, "0.1", "60100", TimeInForce::Gtt, 4).await;
    short.expiry = now_ms() + 400;
    let short = sign(&s, &victim.session, short).await;
    assert_eq!(place(&s, &short).await.unwrap()["status"], "resting");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(resting(&s, short.hash).await, None);
    let taker = s.trader(2221, "100000").await;
    let lift = signed(&s, &taker, true, "0.1", "60100", TimeInForce::Ioc, 1).await;
    let ack = place(&s, &lift).await.unwrap();
    assert_eq!(ack["fills"], json!([]), "{ack}");

    // Requests dated too far ahead or behind: refused; a few seconds ahead: taken (control).
    for ts in [now_ms() + 6_000, now_ms() - 6_000] {
        let (f, sig) = request_as(
            &s,
            &victim.session,
            victim.account,
            victim.session.address(),
            RequestAction::CancelAll,
            ts,
        )
        .await;
        let e = s
            .call("keyscope_cancelAllOrders", json!([f, sig]))
            .await
            .unwrap_err();
        assert_eq!(code(&e), STALE, "{e}");
    }
    assert_eq!(resting(&s, o2.hash).await, Some(tenth));
    let (f, sig) = request_as(
        &s,
        &victim.session,
        victim.account,
        victim.session.address(),
        RequestAction::CancelAll,
        now_ms() + 3_000,
    )
    .await;
    let done = s
        .call("keyscope_cancelAllOrders", json!([f, sig]))
        .await
        .unwrap();
    assert_eq!(done["cancelled"], json!([o2.hash]));
}

#[tokio::test]
async fn a_stolen_key_stays_inside_its_scope_at_the_matcher() {
    let s = setup("attack-stolen", 42_223, BundlingMode::Auto, |_| {}).await;
    // 10,000 tUSD on the venue.
    let victim = s.trader(2230, "20000").await;
    let other = s.trader(2231, "100000").await;
    let thief = &victim.session;

    // Control: inside the scope, an order rests.
    let ok = signed(&s, &victim, true, "0.1", "59000", TimeInForce::Gtt, 1).await;
    place(&s, &ok).await.unwrap();
    // Another market (ETH: not in the key's market mask).
    let mut eth = order_of(&s, &victim, true, "0.1", "2900", TimeInForce::Gtt, 2).await;
    eth.marketId = 1;
    let eth = sign(&s, thief, eth).await;
    assert_eq!(code(&place(&s, &eth).await.unwrap_err()), OUT_OF_SCOPE);
    // Beyond the size (0.5) or notional (40,000) cap.
    let big = signed(&s, &victim, true, "0.6", "50000", TimeInForce::Gtt, 3).await;
    assert_eq!(code(&place(&s, &big).await.unwrap_err()), OUT_OF_SCOPE);
    let rich = signed(&s, &victim, true, "0.5", "90000", TimeInForce::Gtt, 4).await;
    assert_eq!(code(&place(&s, &rich).await.unwrap_err()), OUT_OF_SCOPE);
    // Another account (where the key holds no session), signed under that account's domain.
    let mut theirs = order_of(&s, &victim, true, "0.1", "59000", TimeInForce::Gtt, 5).await;
    theirs.account = other.account;
    let theirs = sign(&s, thief, theirs).await;
    let e = place(&s, &theirs).await.unwrap_err();
    assert_eq!(code(&e), OUT_OF_SCOPE, "{e}");
    // Every order inside the caps, but many: the account's margin bounds what rests.
    let mut placed = vec![];
    let mut refused = None;
    for nonce in 10..60u64 {
        let o = signed(&s, &victim, true, "0.5", "59000", TimeInForce::Gtt, nonce).await;
        match place(&s, &o).await {
            Ok(_) => placed.push(o),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the margin check refuses an order");
    assert_eq!(code(&e), MARGIN, "{e}");
    // 29,500 of notional an order against 10,000 of collateral: a handful at most.
    assert!(
        !placed.is_empty() && placed.len() < 10,
        "{} orders rest",
        placed.len()
    );
    assert!(!book_is_empty(&s).await);
    // Control: cancelling one frees its margin for the next.
    let (f, sig) = request(&s, &victim, RequestAction::Cancel(vec![placed[0].hash])).await;
    s.call("keyscope_cancelOrders", json!([f, sig]))
        .await
        .unwrap();
    let next = signed(&s, &victim, true, "0.5", "59000", TimeInForce::Gtt, 100).await;
    place(&s, &next).await.unwrap();
}

#[tokio::test]
async fn crafted_json_is_refused_and_changes_nothing() {
    let s = setup("attack-json", 42_224, BundlingMode::Auto, |_| {}).await;
    let t = s.trader(2240, "100000").await;
    let o = signed(&s, &t, true, "0.1", "59000", TimeInForce::Gtt, 1).await;

    let with = |field: &str, v: Value| {
        let mut j = o.json.clone();
        j[field] = v;
        j
    };
    let mut unknown = o.json.clone();
    unknown["salt"] = json!(1);
    let mut missing = o.json.clone();
    missing.as_object_mut().unwrap().remove("nonce");
    let huge = U256::from(1u8) << 200;
    for (what, params) in [
        ("an unknown field", json!([unknown, o.sig])),
        ("a missing field", json!([missing, o.sig])),
        ("a negative size", json!([with("size", json!("-1")), o.sig])),
        (
            "a size past u128",
            json!([with("size", json!(huge)), o.sig]),
        ),
        (
            "a price past u128",
            json!([with("limitPrice", json!(huge)), o.sig]),
        ),
        ("a zero size", json!([with("size", json!("0x0")), o.sig])),
        (
            "a zero price",
            json!([with("limitPrice", json!("0x0")), o.sig]),
        ),
        (
            "an unknown time in force",
            json!([with("timeInForce", json!(9)), o.sig]),
        ),
        (
            "a market past u32",
            json!([with("marketId", json!(1u64 << 40)), o.sig]),
        ),
        ("no signature", json!([o.json])),
        ("a 3-byte signature", json!([o.json, "0xabcdef"])),
        (
            "a 128-byte zero signature",
            json!([o.json, Bytes::from(vec![0u8; 128])]),
        ),
        (
            "a 65-byte zero signature",
            json!([o.json, Bytes::from(vec![0u8; 65])]),
        ),
        ("a signature that is not hex", json!([o.json, "0xzz"])),
        (
            "named params",
            json!({ "order": o.json, "signature": o.sig }),
        ),
        ("extra params", json!([o.json, o.sig, 1])),
    ] {
        let r = s.call("keyscope_placeOrder", params).await;
        assert!(r.is_err(), "{what}: {r:?}");
        assert!(book_is_empty(&s).await, "{what}: nothing rests");
    }
    // Control: the order as signed rests.
    assert_eq!(place(&s, &o).await.unwrap()["status"], "resting");

    // Requests: an unknown field, no orders, a missing field, a request of another method's shape.
    let (f, sig) = request(&s, &t, RequestAction::Cancel(vec![o.hash])).await;
    let mut extra = f.clone();
    extra["venue"] = json!(Address::repeat_byte(1));
    let mut none = f.clone();
    none["orderHashes"] = json!([]);
    let mut no_hashes = f.clone();
    no_hashes.as_object_mut().unwrap().remove("orderHashes");
    for (what, method, params) in [
        (
            "an unknown field",
            "keyscope_cancelOrders",
            json!([extra, sig]),
        ),
        ("no orders", "keyscope_cancelOrders", json!([none, sig])),
        (
            "no orderHashes",
            "keyscope_cancelOrders",
            json!([no_hashes, sig]),
        ),
        ("no atMs", "keyscope_scheduleCancel", json!([f, sig])),
        (
            "a negative timestamp",
            "keyscope_cancelOrders",
            json!([with_field(&f, "timestampMs", json!(-1)), sig]),
        ),
    ] {
        let r = s.call(method, params).await;
        assert!(r.is_err(), "{what}: {r:?}");
        assert_eq!(resting(&s, o.hash).await, Some(e18("0.1")), "{what}");
    }
    // Reads: a huge depth is capped, a market past u32 refused.
    let b = s
        .call("keyscope_getBook", json!([0, u64::MAX]))
        .await
        .unwrap();
    assert_eq!(b["bids"].as_array().unwrap().len(), 1);
    assert!(s.call("keyscope_getBook", json!([-1])).await.is_err());

    // Replace: another side, or an order that is not resting, is refused and the old order stays.
    let ask = signed(&s, &t, false, "0.1", "60100", TimeInForce::Gtt, 2).await;
    let e = s
        .call("keyscope_replaceOrder", json!([o.hash, ask.json, ask.sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), INVALID_FIELDS, "{e}");
    assert_eq!(resting(&s, o.hash).await, Some(e18("0.1")));
    let e = s
        .call(
            "keyscope_replaceOrder",
            json!([B256::repeat_byte(7), ask.json, ask.sig]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), BOOK, "{e}");
    assert_eq!(resting(&s, ask.hash).await, None);
    // Control: a replacement on the same side takes the old order's place.
    let better = signed(&s, &t, true, "0.2", "59010", TimeInForce::Gtt, 3).await;
    let ack = s
        .call(
            "keyscope_replaceOrder",
            json!([o.hash, better.json, better.sig]),
        )
        .await
        .unwrap();
    assert_eq!(ack["status"], "resting");
    assert_eq!(resting(&s, o.hash).await, None);
    assert_eq!(resting(&s, better.hash).await, Some(e18("0.2")));
}

fn with_field(v: &Value, field: &str, x: Value) -> Value {
    let mut v = v.clone();
    v[field] = x;
    v
}

#[tokio::test]
async fn a_fill_refused_for_the_takers_fault_leaves_the_makers_order_resting() {
    // Fills go out every 3 s and keys are read again only every minute: a taker's key revoked right after
    // its match is unseen by the matcher until settlement refuses the fill.
    let s = setup("attack-refused", 42_225, BundlingMode::Auto, |c| {
        c.matcher.settle_interval_ms = 3_000;
        c.matcher.watch_ms = 60_000;
    })
    .await;
    let victim = s.trader(2250, "100000").await;
    let attacker = s.trader(2251, "100000").await;
    let ask = signed(&s, &victim, false, "0.3", "60100", TimeInForce::Gtt, 1).await;
    place(&s, &ask).await.unwrap();

    // A reduce-only buy with no short to close can never settle: refused at once, nothing matched.
    let mut lift = order_of(&s, &attacker, true, "0.1", "60100", TimeInForce::Ioc, 1).await;
    lift.reduceOnly = true;
    let lift = sign(&s, &attacker.session, lift).await;
    let e = place(&s, &lift).await.unwrap_err();
    assert_eq!(code(&e), -32620, "{e}");
    assert_eq!(resting(&s, ask.hash).await, Some(e18("0.3")));

    // The attacker lifts 0.1, then has its own key revoked before the fill settles: the chain refuses the
    // fill for the taker's fault.
    let (_ws, mut events) = {
        let c = ws(&s).await;
        let (f, sig) = request(
            &s,
            &victim,
            RequestAction::Subscribe {
                cancel_on_disconnect: false,
            },
        )
        .await;
        let sub = subscribe_with(&c, f, sig).await.unwrap();
        (c, sub)
    };
    let lift = signed(&s, &attacker, true, "0.1", "60100", TimeInForce::Ioc, 2).await;
    let ack = place(&s, &lift).await.unwrap();
    assert_eq!(ack["fills"].as_array().unwrap().len(), 1, "{ack}");
    assert_eq!(resting(&s, ask.hash).await, Some(e18("0.2")));
    let revoke = s
        .owner_op(
            &attacker,
            1,
            vec![ops::revoke_session(
                attacker.account,
                attacker.session.address(),
            )],
        )
        .await;
    assert!(s.direct.send(&revoke).await.unwrap().success);
    let refused = next_where(&mut events, |e| e["fill"]["status"] == "refused").await;
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("refused at settlement"),
        "{refused}"
    );
    assert_eq!(position(&s, attacker.account).await, I256::ZERO);
    assert_eq!(position(&s, victim.account).await, I256::ZERO);
    // Safe: nothing of the victim's ask traded and none of it was the victim's fault: it rests in full.
    let deadline = Instant::now() + Duration::from_secs(5);
    while resting(&s, ask.hash).await != Some(e18("0.3")) {
        assert!(
            Instant::now() < deadline,
            "the maker's size comes back: {:?}",
            resting(&s, ask.hash).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it still trades: an honest taker lifts it and the fill settles.
    let honest = s.trader(2252, "100000").await;
    let lift = signed(&s, &honest, true, "0.1", "60100", TimeInForce::Ioc, 1).await;
    place(&s, &lift).await.unwrap();
    next_where(&mut events, |e| e["fill"]["status"] == "settled").await;
    assert_eq!(
        position(&s, honest.account).await,
        I256::try_from(e18("0.1")).unwrap()
    );
}

#[tokio::test]
async fn a_replace_with_an_order_seen_on_chain_cancels_nothing() {
    let s = setup("attack-replace", 42_226, BundlingMode::Auto, |_| {}).await;
    let victim = s.trader(2260, "100000").await;
    let attacker = s.trader(2261, "100000").await;
    let a = signed(&s, &victim, false, "0.2", "60100", TimeInForce::Gtt, 1).await;
    let b = signed(&s, &victim, false, "0.1", "60200", TimeInForce::Gtt, 2).await;
    place(&s, &a).await.unwrap();
    place(&s, &b).await.unwrap();

    // The attacker lifts 0.1 of the victim's ask and reads the settlement transaction: it carries the
    // victim's order and signature, as every settlement does.
    let c = ws(&s).await;
    let (f, sig) = request(
        &s,
        &attacker,
        RequestAction::Subscribe {
            cancel_on_disconnect: false,
        },
    )
    .await;
    let mut events = subscribe_with(&c, f, sig).await.unwrap();
    let lift = signed(&s, &attacker, true, "0.1", "60100", TimeInForce::Ioc, 1).await;
    place(&s, &lift).await.unwrap();
    let settled = next_where(&mut events, |e| e["fill"]["status"] == "settled").await;
    let tx: B256 = serde_json::from_value(settled["fill"]["transactionHash"].clone()).unwrap();
    let tx = s
        .provider
        .get_transaction_by_hash(tx)
        .await
        .unwrap()
        .unwrap();
    let call = PerpVenue::settleCall::abi_decode(tx.input()).unwrap();
    let chain_id = s.devnet.deployment.chain_id;
    let fill = call
        .fills
        .iter()
        .find(|f| order_hash(s.d.venue, chain_id, &f.maker) == a.hash)
        .expect("the victim's order in the settlement");
    let (seen, seen_sig) = (OrderJson::from(&fill.maker), fill.makerSignature.clone());
    assert_eq!(resting(&s, a.hash).await, Some(e18("0.1")));

    // "Replace" the victim's orders with that already-placed order: the matcher must refuse it and change
    // nothing.
    for old in [a.hash, b.hash] {
        let e = s
            .call("keyscope_replaceOrder", json!([old, seen, seen_sig]))
            .await
            .unwrap_err();
        assert_eq!(code(&e), BOOK, "{e}");
    }
    assert_eq!(resting(&s, a.hash).await, Some(e18("0.1")));
    assert_eq!(resting(&s, b.hash).await, Some(e18("0.1")));
}

#[tokio::test]
async fn a_key_revoked_or_epoch_bumped_while_nothing_of_it_rests_is_refused_at_the_matcher() {
    let s = setup("attack-revoked", 42_227, BundlingMode::Auto, |c| {
        c.matcher.watch_ms = 200;
    })
    .await;
    let stolen = s.trader(2270, "100000").await;
    let bumped = s.trader(2271, "100000").await;
    // Each key quotes once (the matcher reads its session) and cancels: nothing of it rests. Orders it
    // signed under its grant and epoch then are in other hands (a thief's, or leaked pre-signed quotes).
    let mut later = vec![];
    for t in [&stolen, &bumped] {
        let o = signed(&s, t, true, "0.1", "59000", TimeInForce::Gtt, 1).await;
        place(&s, &o).await.unwrap();
        let (f, sig) = request(&s, t, RequestAction::CancelAll).await;
        s.call("keyscope_cancelAllOrders", json!([f, sig]))
            .await
            .unwrap();
        later.push(signed(&s, t, true, "0.1", "59001", TimeInForce::Gtt, 2).await);
    }
    // On chain: the owner revokes the first key; the second key bumps its order epoch (its own op), which
    // cancels every order it signed before.
    revoke(&s, &stolen).await;
    let bump = s
        .direct
        .unsigned_key_op(
            bumped.session.address(),
            bumped.account,
            0,
            keyscope_core::order::bump_order_epoch_call_data(bumped.session.address()),
        )
        .await
        .unwrap();
    let bump = s
        .direct
        .sign_key_op(&bumped.session, bumped.account, bump, 30)
        .await
        .unwrap();
    assert!(s.direct.send(&bump).await.unwrap().success);
    // The matcher has had ten reads' time to see both.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    // The account refuses every fill of these orders; so must the matcher, and nothing rests.
    for (who, o) in ["revoked", "epoch-bumped"].iter().zip(&later) {
        let r = place(&s, o).await;
        assert!(
            r.as_ref().is_err_and(|e| code(e) == OUT_OF_SCOPE),
            "{who}: {r:?}"
        );
        assert_eq!(resting(&s, o.hash).await, None, "{who}");
    }
}

#[tokio::test]
async fn a_request_from_a_key_that_is_not_the_accounts_is_refused() {
    let s = setup("attack-stranger", 42_228, BundlingMode::Auto, |_| {}).await;
    let t = s.trader(2280, "100000").await;
    // Control: the account's key schedules a cancel-all.
    let at = now_ms() + 60_000;
    let (f, sig) = request(&s, &t, RequestAction::ScheduleCancel { at_ms: at }).await;
    let done = s
        .call("keyscope_scheduleCancel", json!([f, sig]))
        .await
        .unwrap();
    assert_eq!(done["scheduledCancelMs"], json!(at));
    // A fresh key, no session anywhere, for an account that does not exist, a schedule that never fires:
    // it must be refused (each one taken is a journal line and a schedule kept forever, scanned every tick).
    let stranger = PrivateKeySigner::random();
    let nobody = Address::repeat_byte(0x5a);
    let (f, sig) = request_as(
        &s,
        &stranger,
        nobody,
        stranger.address(),
        RequestAction::ScheduleCancel { at_ms: u64::MAX },
        now_ms(),
    )
    .await;
    let r = s.call("keyscope_scheduleCancel", json!([f, sig])).await;
    assert!(r.is_err(), "taken: {r:?}");
}

alloy::sol! {
    /// The attacker's account contract's one function the test calls.
    #[sol(rpc)]
    interface ITwoFaced {
        function fund(address token, uint256 amount) external;
    }
}

/// The creation code of `TwoFaced` (solc 0.8.30, optimizer 200 runs, cancun), its constructor taking the
/// venue; its source:
///
/// ```solidity
/// // SPDX-License-Identifier: MIT
/// pragma solidity ^0.8.24;
///
/// interface IERC20 {
///     function approve(address spender, uint256 amount) external returns (bool);
/// }
///
/// interface IVenue {
///     function depositMargin(uint256 amount) external;
///     function placeOrder(uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly) external;
/// }
///
/// /// An order account that answers every read the matcher makes as a live, wide session, and answers the
/// /// venue's checkOrderFill yes when simulated (eth_call: no gas price) and no when mined.
/// contract TwoFaced {
///     struct CallPermission {
///         address target;
///         bytes4 selector;
///         uint96 valueLimit;
///         uint64 marketMask;
///         uint88 maxOrderSize;
///         uint96 maxOrderNotional;
///         bool reduceOnly;
///     }
///
///     struct RiskLimits {
///         uint16 maxLeverage;
///         uint64 maxPositionNotional;
///         uint16 minHeadroomBps;
///         uint16 maxDrawdownBps;
///         uint64 drawdownFloor;
///     }
///
///     struct SessionInfo {
///         bool active;
///         bool tripped;
///         uint32 grantId;
///         uint40 validAfter;
///         uint40 validUntil;
///         uint16 maxOpTtl;
///         uint8 maxCallsPerOp;
///         uint16 rateCount;
///         uint24 ratePeriod;
///         uint40 windowStart;
///         uint16 windowUsed;
///         uint32 usesLeft;
///         uint256 maxOpCost;
///         uint256 feeLeft;
///         uint256 valueLeft;
///         RiskLimits risk;
///         uint64 highWaterMark;
///         address[] paymasters;
///         CallPermission[] permissions;
///     }
///
///     address public immutable venue;
///
///     constructor(address venue_) {
///         venue = venue_;
///     }
///
///     function fund(address token, uint256 amount) external {
///         IERC20(token).approve(venue, amount);
///         IVenue(venue).depositMargin(amount);
///     }
///
///     function getSession(address) external view returns (SessionInfo memory info) {
///         info.active = true;
///         info.grantId = 1;
///         info.validUntil = type(uint40).max;
///         info.usesLeft = type(uint32).max;
///         info.permissions = new CallPermission[](1);
///         info.permissions[0] = CallPermission(
///             venue, IVenue.placeOrder.selector, 0, 1, type(uint88).max, type(uint96).max, false
///         );
///     }
///
///     function orderEpoch(address) external pure returns (uint32) {
///         return 0;
///     }
///
///     function heartbeatDeadline(address) external pure returns (uint40) {
///         return 0;
///     }
///
///     fallback(bytes calldata) external returns (bytes memory) {
///         require(tx.gasprice == 0, "two-faced");
///         return abi.encode(msg.sig);
///     }
/// }
/// ```
const TWO_FACED_CODE: &str = concat!(
    "60a060405234801561000f575f5ffd5b5060405161089438038061089483398101604081905261002e9161003f565b60",
    "01600160a01b031660805261006c565b5f6020828403121561004f575f5ffd5b81516001600160a01b03811681146100",
    "65575f5ffd5b9392505050565b6080516107fb6100995f395f8181610130015281816101a50152818161023501526103",
    "e201526107fb5ff3fe608060405234801561000f575f5ffd5b5060043610610055575f3560e01c806343795d2b146100",
    "c95780637b1837de146100f65780638c8e13b91461010b578063a270a7371461012b578063e5fee43d1461016a575b5f",
    "3660603a156100975760405162461bcd60e51b81526020600482015260096024820152681d1ddbcb599858d95960ba1b",
    "604482015260640160405180910390fd5b604080516001600160e01b03195f3516602082015201604051602081830303",
    "8152906040529050915050805190602001f35b6100dc6100d736600461048a565b505f90565b60405163ffffffff9091",
    "1681526020015b60405180910390f35b6101096101043660046104aa565b61018e565b005b61011e6101193660046104",
    "8a565b610298565b6040516100ed91906105d5565b6101527f0000000000000000000000000000000000000000000000",
    "00000000000000000081565b6040516001600160a01b0390911681526020016100ed565b6101786100d736600461048a",
    "565b60405164ffffffffff90911681526020016100ed565b60405163095ea7b360e01b81526001600160a01b037f0000",
    "000000000000000000000000000000000000000000000000000000000000811660048301526024820183905283169063",
    "095ea7b3906044016020604051808303815f875af11580156101fa573d5f5f3e3d5ffd5b505050506040513d601f1960",
    "1f8201168201806040525081019061021e9190610792565b50604051630cde8bbb60e11b8152600481018290527f0000",
    "0000000000000000000000000000000000000000000000000000000000006001600160a01b0316906319bd1776906024",
    "015f604051808303815f87803b15801561027e575f5ffd5b505af1158015610290573d5f5f3e3d5ffd5b505050505050",
    "565b61035460408051610260810182525f80825260208083018290528284018290526060808401839052608080850184",
    "905260a080860185905260c0860185905260e08601859052610100860185905261012086018590526101408601859052",
    "610160860185905261018086018590526101a086018590526101c0860185905286519081018752848152928301849052",
    "948201839052810182905292830152906101e082019081525f60208201526060604082018190529081015290565b6001",
    "808252604080830182905264ffffffffff608084015263ffffffff610160840152805182815280820190915290816020",
    "015b6040805160e0810182525f8082526020808301829052928201819052606082018190526080820181905260a08201",
    "81905260c082015282525f1990920191018161038857505061024082019081526040805160e0810182527f0000000000",
    "0000000000000000000000000000000000000000000000000000006001600160a01b031681526308b3ce8360e31b6020",
    "8201525f918101829052600160608201526affffffffffffffffffffff60808201526001600160601b0360a082015260",
    "c081018290529151805190919061045f5761045f6107b1565b6020026020010181905250919050565b80356001600160",
    "a01b0381168114610485575f5ffd5b919050565b5f6020828403121561049a575f5ffd5b6104a38261046f565b939250",
    "5050565b5f5f604083850312156104bb575f5ffd5b6104c48361046f565b946020939093013593505050565b5f815180",
    "8452602084019350602083015f5b8281101561050b5781516001600160a01b0316865260209586019590910190600101",
    "6104e4565b5093949350505050565b5f8151808452602084019350602083015f5b8281101561050b57815160018060a0",
    "1b03815116875263ffffffff60e01b60208201511660208801526001600160601b03604082015116604088015267ffff",
    "ffffffffffff60608201511660608801526affffffffffffffffffffff608082015116608088015260a08101516105a8",
    "60a08901826001600160601b03169052565b5060c081015190506105be60c088018215159052565b5060e09590950194",
    "60209190910190600101610527565b602081526105e860208201835115159052565b5f60208301516105fc6040840182",
    "15159052565b50604083015163ffffffff8116606084015250606083015164ffffffffff811660808401525060808301",
    "5164ffffffffff811660a08401525060a083015161ffff811660c08401525060c083015160ff811660e08401525060e0",
    "83015161ffff81166101008401525061010083015162ffffff81166101208401525061012083015164ffffffffff8116",
    "6101408401525061014083015161ffff81166101608401525061016083015163ffffffff811661018084015250610180",
    "8301516101a08301526101a08301516101c08301526101c08301516101e08301526101e0830151610736610200840182",
    "61ffff815116825267ffffffffffffffff602082015116602083015261ffff604082015116604083015261ffff606082",
    "015116606083015267ffffffffffffffff60808201511660808301525050565b5061020083015167ffffffffffffffff",
    "166102a08301526102208301516102e06102c084015261076a6103008401826104d2565b9050610240840151601f1984",
    "8303016102e08501526107898282610515565b95945050505050565b5f602082840312156107a2575f5ffd5b81518015",
    "1581146104a3575f5ffd5b634e487b7160e01b5f52603260045260245ffdfea2646970667358221220ef8815d2febd62",
    "0c5d417a9e2a069ffa710cf7d74ad35f228c72013a4e44b69064736f6c634300081e0033",
);

#[tokio::test]
async fn an_account_contract_that_is_not_keyscopes_is_refused_before_it_can_poison_a_batch() {
    let s = setup("attack-twofaced", 42_229, BundlingMode::Auto, |c| {
        c.matcher.settle_interval_ms = 500;
    })
    .await;
    let victim = s.trader(2290, "100000").await;
    let honest = s.trader(2291, "100000").await;
    // The attacker's own order account, funded at the venue like any address: it tells the matcher its key
    // has a live, wide session, and tells the venue "yes" to a fill when simulated and "no" when mined — a
    // fill of it would pass the matcher's simulation and revert its whole batch on chain, again and again.
    let key = PrivateKeySigner::random();
    let creation = alloy_primitives::hex::decode(TWO_FACED_CODE).unwrap();
    let deploy = alloy::rpc::types::TransactionRequest::default()
        .with_deploy_code([creation, s.d.venue.abi_encode()].concat());
    let receipt = s
        .provider
        .send_transaction(deploy)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let account = receipt.contract_address.unwrap();
    let amount = parse_units("10000", 6).unwrap();
    let minter = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(s.devnet.signer(0)))
        .connect_http(s.devnet.endpoint_url());
    keyscope_core::bindings::TestUSD::new(s.d.collateral, &minter)
        .mint(account, amount)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        ITwoFaced::new(account, &s.provider)
            .fund(s.d.collateral, amount)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap()
            .status()
    );

    let ask = signed(&s, &victim, false, "0.3", "60100", TimeInForce::Gtt, 1).await;
    place(&s, &ask).await.unwrap();
    let bad = OrderBuilder::new(account, key.address(), 0, true, e18("0.1"), e18("60100"))
        .grant(1, 0)
        .time_in_force(TimeInForce::Ioc as u8)
        .expiry_ms(now_ms() + 120_000)
        .nonce(1)
        .build(now_ms())
        .unwrap();
    let bad = sign(&s, &key, bad).await;
    let e = place(&s, &bad).await.unwrap_err();
    assert_eq!(code(&e), OUT_OF_SCOPE, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not a Keyscope trading account"),
        "{e}"
    );
    assert_eq!(resting(&s, ask.hash).await, Some(e18("0.3")));
    // Control: a Keyscope account's taker lifts the same ask and its fill settles.
    let lift = signed(&s, &honest, true, "0.1", "60100", TimeInForce::Ioc, 1).await;
    let ack = place(&s, &lift).await.unwrap();
    assert_eq!(ack["fills"].as_array().unwrap().len(), 1, "{ack}");
    let tenth = I256::try_from(e18("0.1")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while position(&s, honest.account).await != tenth {
        assert!(Instant::now() < deadline, "the honest fill settles");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(position(&s, account).await, I256::ZERO);
}
