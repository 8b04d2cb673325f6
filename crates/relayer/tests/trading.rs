//! Trading-aware behaviour on anvil: a margin deposit queued behind orders is bundled first, a
//! reduce-only order replaces a queued order without a fee bump (an ordinary one needs the bump),
//! the health an order is answered with follows another account's pending price update, and a
//! WebSocket subscriber sees the account's fills as they are mined.

mod common;

use std::time::Duration;

use alloy::{
    providers::Provider,
    sol_types::{SolCall, SolEvent},
};
use alloy_primitives::B256;
use common::*;
use jsonrpsee::{core::client::SubscriptionClientT, rpc_params, ws_client::WsClientBuilder};
use keyscope_core::{
    bindings::{IEntryPoint, PerpVenue, SignedPriceOracle},
    client::rpc_user_op,
    units::parse_units,
    user_op::pack_u128s,
};
use keyscope_relayer::{HealthChange, config::BundlingMode};
use serde_json::{Value, json};

#[tokio::test]
async fn margin_deposit_overtakes_queued_orders() {
    let s = setup("overtake", 42_003, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(4, "20000").await;
    let mut orders = Vec::new();
    for seq in 0..3 {
        let op = s.order_op(&t, 0, seq, "0.01", "60500", false).await;
        orders.push(s.send(&op).await.expect("order accepted"));
    }
    let deposit = s
        .owner_op(
            &t,
            1,
            execute(
                s.d.venue,
                PerpVenue::depositMarginCall {
                    amount: parse_units("1000", 6).unwrap(),
                }
                .abi_encode(),
            ),
        )
        .await;
    let deposit_hash = s.send(&deposit).await.expect("deposit accepted");
    let status = s
        .call("keyscope_userOperationStatus", json!([deposit_hash]))
        .await
        .unwrap();
    assert_eq!(status["kind"], "addsMargin");

    let tx: B256 = serde_json::from_value(
        s.call("debug_bundler_sendBundleNow", json!([]))
            .await
            .unwrap(),
    )
    .unwrap();
    let receipt = s
        .provider
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    let mined: Vec<Value> = receipt
        .inner
        .logs()
        .iter()
        .filter_map(|l| IEntryPoint::UserOperationEvent::decode_log(&l.inner).ok())
        .map(|e| json!(e.data.userOpHash))
        .collect();
    assert_eq!(mined.len(), 4, "one bundle carries all four");
    assert_eq!(
        mined[0], deposit_hash,
        "the deposit, sent last, is executed first"
    );
    assert_eq!(mined[1..], orders[..], "the orders keep their nonce order");
    s.relayer.stop().await;
}

#[tokio::test]
async fn reduce_only_replaces_without_bump_and_orders_need_one() {
    let s = setup("replace", 42_004, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(5, "20000").await;
    // Open a position to reduce later, mined.
    s.send(&s.order_op(&t, 0, 0, "0.1", "60500", false).await)
        .await
        .unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();

    // A queued order on lane 1 ...
    let queued = s.order_op(&t, 1, 0, "0.05", "60500", false).await;
    let queued_hash = s.send(&queued).await.unwrap();
    // ... cannot be replaced by another ordinary order at the same fees,
    let same_fee = s.order_op(&t, 1, 0, "0.02", "60500", false).await;
    let e = s.send(&same_fee).await.unwrap_err();
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("replacement underpriced"),
        "{e}"
    );
    // ... but a reduce-only order at the same fees replaces it.
    let reduce = s.order_op(&t, 1, 0, "-0.05", "59500", true).await;
    let reduce_hash = s
        .send(&reduce)
        .await
        .expect("reduce-only replaces without a bump");
    let old = s
        .call("keyscope_userOperationStatus", json!([queued_hash]))
        .await
        .unwrap();
    assert_eq!(old["status"], "dropped");
    assert!(
        old["reason"].as_str().unwrap().contains("replaced by"),
        "{old}"
    );
    // An ordinary order with a 10 % bump on both fees replaces too.
    let mut bumped = s.order_op(&t, 1, 0, "-0.04", "59500", false).await;
    let (prio, max) = keyscope_core::rpc_op::unpack(reduce.gasFees);
    bumped.gasFees = pack_u128s(prio * 11 / 10 + 1, max * 11 / 10 + 1);
    let bumped = s.re_sign_session_op(&t, bumped).await;
    let bumped_hash = s
        .send(&bumped)
        .await
        .expect("a bumped replacement is accepted");
    let pool = s
        .call("debug_bundler_dumpMempool", json!([s.d.entry_point]))
        .await
        .unwrap();
    assert_eq!(pool.as_array().unwrap().len(), 1, "{pool}");
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    assert_eq!(s.receipt(&bumped_hash).await["success"], true);
    let replaced = s
        .call("keyscope_userOperationStatus", json!([reduce_hash]))
        .await
        .unwrap();
    assert_eq!(replaced["status"], "dropped");
    s.relayer.stop().await;
}

#[tokio::test]
async fn order_health_follows_a_pending_price_update_from_another_account() {
    let s = setup("health", 42_011, BundlingMode::Manual, |_| {}).await;
    let trader = s.trader(7, "20000").await;
    let relay = s.trader(8, "20000").await;
    let health_of = |v: Value| -> HealthChange {
        serde_json::from_value(v["health"].clone()).expect("an order is answered with its health")
    };
    let send = |op: keyscope_core::user_op::PackedUserOperation| {
        let s = &s;
        async move {
            s.call(
                "keyscope_sendUserOperation",
                json!([rpc_user_op(&op), s.d.entry_point]),
            )
            .await
            .expect("accepted")
        }
    };
    // Long 0.01 BTC at 60,000, still in the pool.
    let first = health_of(send(s.order_op(&trader, 0, 0, "0.01", "60500", false).await).await);
    assert_eq!(first.after.state, "Healthy");

    // Another account's queued op publishes BTC at 59,000 (a signed oracle update anyone may relay).
    let (update, signature) = keyscope_core::devnet::sign_price(
        &s.provider,
        &s.d,
        &s.devnet.signer(0),
        0,
        parse_units("59000", 18).unwrap(),
    )
    .await
    .unwrap();
    let submit = SignedPriceOracle::submitCall {
        u: update,
        signature,
    }
    .abi_encode();
    send(s.owner_op(&relay, 1, execute(s.d.oracle, submit)).await).await;

    // The trader's next order starts from the new mark: 0.01 BTC × −1,000 = −10 tUSD, no funding.
    let second = health_of(send(s.order_op(&trader, 0, 1, "0.01", "59500", false).await).await);
    assert_eq!(
        second.before.account_value - first.after.account_value,
        alloy_primitives::I256::try_from(-10_000_000i64).unwrap(),
        "before: {:?}, after the first order: {:?}",
        second.before,
        first.after
    );
    s.relayer.stop().await;
}

#[tokio::test]
async fn websocket_subscribers_see_their_fills() {
    let s = setup("feed", 42_005, BundlingMode::Auto, |_| {}).await;
    let t = s.trader(6, "20000").await;
    let ws = WsClientBuilder::default()
        .build(s.relayer.ws_url())
        .await
        .unwrap();
    let mut sub = ws
        .subscribe::<Value, _>(
            "keyscope_subscribeAccountEvents",
            rpc_params![t.account],
            "keyscope_unsubscribeAccountEvents",
        )
        .await
        .unwrap();
    // A deposit and an order after subscribing: the feed pushes each as its block is read. (The setup's
    // own deposit may or may not still be ahead of the feed when the subscription starts.)
    let deposit = execute(
        s.d.venue,
        PerpVenue::depositMarginCall {
            amount: parse_units("100", 6).unwrap(),
        }
        .abi_encode(),
    );
    let hash = s.send(&s.owner_op(&t, 1, deposit).await).await.unwrap();
    s.receipt(&hash).await;
    let hash = s
        .send(&s.order_op(&t, 0, 0, "0.1", "60500", false).await)
        .await
        .unwrap();
    s.receipt(&hash).await;
    let mut seen = Vec::new();
    let event = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("an event arrives")
            .unwrap()
            .unwrap();
        seen.push(ev["event"].as_str().unwrap().to_string());
        if ev["event"] == "OrderFilled" {
            break ev;
        }
    };
    assert_eq!(seen[0], "Deposited", "{seen:?}");
    assert_eq!(event["account"], json!(t.account));
    assert_eq!(
        event["fields"]["newSize"],
        json!(alloy_primitives::I256::from_raw(
            parse_units("0.1", 18).unwrap()
        ))
    );
    s.relayer.stop().await;
}

/// A session key's money limits, at the door: an op over the key's per-op cost cap is refused before it
/// is simulated, as the account would refuse it (`feeLimit`); an order that would take the account past
/// the key's 3x leverage is refused as a trading error (-32521, `riskLimit`) instead of being mined as a
/// reverted op the trader pays for. Each beside the same key's op that goes through.
#[tokio::test]
async fn money_limits_are_refused_with_typed_reasons() {
    let s = setup("limits", 42_012, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(6, "20000").await; // 10,000 tUSD margin; 3x, 1 ETH an op at most
    // 760,000 gas at 10,000 gwei may cost 7.6 ETH: over the key's 1 ETH cap.
    let mut greedy = s.order_op(&t, 0, 0, "0.01", "60500", false).await;
    greedy.gasFees = pack_u128s(10_000_000_000_000, 10_000_000_000_000);
    let greedy = s.re_sign_session_op(&t, greedy).await;
    let e = s.send(&greedy).await.unwrap_err();
    assert_eq!(e["code"], -32500, "{e}");
    assert_eq!(e["data"]["reason"], "feeLimit", "{e}");
    assert_eq!(e["data"]["error"], "SessionOpCostTooHigh", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("may cost up to 7.6 ETH, over the key's per-op cap of 1 ETH"),
        "{e}"
    );
    // 0.4 BTC at 60,000 on ~10,000 of value: 2.4x, accepted.
    s.send(&s.order_op(&t, 0, 0, "0.4", "60500", false).await)
        .await
        .expect("a 2.4x order is within the key's limits");
    // 0.2 more: 3.6x.
    let e = s
        .send(&s.order_op(&t, 0, 1, "0.2", "60500", false).await)
        .await
        .unwrap_err();
    assert_eq!(e["code"], -32521, "{e}");
    assert_eq!(e["data"]["reason"], "riskLimit", "{e}");
    assert_eq!(e["data"]["error"], "SessionLeverageTooHigh", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("over the key's 3x"),
        "{e}"
    );
    s.relayer.stop().await;
}
