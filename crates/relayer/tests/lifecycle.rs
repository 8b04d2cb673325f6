//! An op's whole life through the relayer on anvil: a session-key order sent by the SDK's bundler
//! client, validated on revm, pooled, persisted, bundled, mined, and reported — receipt, status with
//! every stage's timestamp, health before and after, the audit log and the metrics.

mod common;

use alloy_primitives::U256;
use common::*;
use keyscope_core::client::rpc_user_op;
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};

#[tokio::test]
async fn session_order_goes_through_the_relayer() {
    let s = setup("lifecycle", 42_001, BundlingMode::Auto, |_| {}).await;
    let t = s.trader(1, "20000").await;

    // Standard methods first.
    assert_eq!(
        s.call("eth_chainId", json!([])).await.unwrap(),
        json!("0xa411")
    );
    assert_eq!(
        s.call("eth_supportedEntryPoints", json!([])).await.unwrap(),
        json!([s.d.entry_point])
    );

    // The SDK's bundler path, unchanged: send, then poll eth_getUserOperationReceipt.
    let op = s.order_op(&t, 0, 0, "0.1", "60500", false).await;
    let outcome = s
        .via_relayer()
        .send(&op)
        .await
        .expect("the relayer includes the order");
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.user_op_hash, s.hash(&op));

    // The nonce slot the relayer prefetches is where the EntryPoint keeps this lane's sequence.
    let lane = keyscope_core::nonce::SessionLane::new(t.session.address(), 0).nonce_key();
    let slot =
        keyscope_core::nonce::entry_point_nonce_slot(t.account, alloy_primitives::U256::from(lane));
    let stored = alloy::providers::Provider::get_storage_at(&s.provider, s.d.entry_point, slot)
        .await
        .unwrap();
    assert_eq!(
        stored,
        alloy_primitives::U256::from(1),
        "nonceSequenceNumber[account][key] after one op"
    );

    let receipt = s
        .call("eth_getUserOperationReceipt", json!([outcome.user_op_hash]))
        .await
        .unwrap();
    assert_eq!(receipt["success"], true);
    assert_eq!(receipt["sender"], json!(t.account));
    assert_eq!(
        receipt["receipt"]["transactionHash"],
        json!(outcome.tx_hash)
    );
    assert!(
        !receipt["logs"].as_array().unwrap().is_empty(),
        "the op's own logs (the fill) are in its receipt"
    );

    let by_hash = s
        .call("eth_getUserOperationByHash", json!([outcome.user_op_hash]))
        .await
        .unwrap();
    assert_eq!(by_hash["userOperation"], rpc_user_op(&op));
    assert_eq!(by_hash["transactionHash"], json!(outcome.tx_hash));

    let status = s
        .call(
            "keyscope_userOperationStatus",
            json!([outcome.user_op_hash]),
        )
        .await
        .unwrap();
    assert_eq!(status["status"], "included");
    for stage in [
        "receivedUs",
        "validatedUs",
        "bundledUs",
        "sentUs",
        "minedUs",
    ] {
        assert!(
            status["timestamps"][stage].as_u64().unwrap() > 0,
            "{stage} missing: {status}"
        );
    }
    assert_eq!(status["sessionKey"], json!(t.session.address()));
    // eth_sendUserOperation does not pay for venue health reads: the record has none.
    assert!(status["health"].is_null(), "{status}");

    // keyscope_sendUserOperation answers with the health change, and records it.
    let op2 = s.order_op(&t, 1, 0, "0.1", "60500", false).await;
    let accepted = s
        .call(
            "keyscope_sendUserOperation",
            json!([rpc_user_op(&op2), s.d.entry_point]),
        )
        .await
        .unwrap();
    assert_eq!(accepted["userOpHash"], json!(s.hash(&op2)));
    // Opening another 0.1 BTC raised the initial margin requirement.
    let health = &accepted["health"];
    assert!(health["after"]["accountValue"].is_string(), "{accepted}");
    let margin =
        |v: &Value| U256::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(
        margin(&health["after"]["initialMargin"]) > margin(&health["before"]["initialMargin"]),
        "{health}"
    );
    assert_eq!(health["after"]["state"], "Healthy", "{health}");
    let status2 = s
        .call(
            "keyscope_userOperationStatus",
            json!([accepted["userOpHash"]]),
        )
        .await
        .unwrap();
    assert_eq!(&status2["health"], health);
    s.receipt(&accepted["userOpHash"]).await;

    // The audit log: every accepted op with its signed body, then its bundling and inclusion.
    let log = s.call("keyscope_auditLog", json!([0, 100])).await.unwrap();
    let events: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["userOpHash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let first = format!("{}", outcome.user_op_hash);
    for ev in ["accepted", "bundled", "included"] {
        assert!(
            events.contains(&(ev.to_string(), first.clone())),
            "{ev} missing: {events:?}"
        );
    }
    let entries: Vec<keyscope_relayer::store::AuditEntry> = serde_json::from_value(log).unwrap();
    keyscope_relayer::store::verify_audit(&entries).unwrap();
    assert_eq!(
        entries[0].user_operation.as_ref().unwrap().signature,
        op.signature
    );

    // Metrics: counters and the lifecycle histograms.
    let text = s.metrics().await;
    assert!(text.contains("keyscope_ops_included_total 2"), "{text}");
    // Each event written to the audit log is counted once, by name: the metric and the log agree.
    for event in keyscope_relayer::store::OpEvent::ALL {
        let logged = entries.iter().filter(|e| e.event == event).count();
        let line = format!("keyscope_op_events_total{{event=\"{event}\"}} {logged}\n");
        assert!(text.contains(&line), "{line} missing: {text}");
    }
    assert!(text.contains("keyscope_op_events_total{event=\"included\"} 2\n"));
    assert!(
        text.contains("keyscope_op_stage_seconds_count{stage=\"total\"} 2"),
        "{text}"
    );

    // Served at /rpc as well as /.
    let at_rpc = rpc(
        &format!("{}/rpc", s.relayer.url()),
        "eth_chainId",
        json!([]),
    )
    .await
    .unwrap();
    assert_eq!(at_rpc, json!("0xa411"));
    s.relayer.stop().await;
}
