//! The bundle profit rule on anvil: a bundle whose ops would not repay its gas is not sent; its ops wait
//! for company that makes it pay, and are dropped with the reason if none comes in time.

mod common;

use alloy::providers::Provider;
use alloy_primitives::U256;
use common::*;
use keyscope_core::{
    client::rpc_user_op,
    user_op::{PackedUserOperation, pack_u128s},
};
use keyscope_relayer::{config::BundlingMode, min_pre_verification_gas};
use serde_json::{Value, json};

/// A session order on `lane`/`seq` with gas limits from the relayer's estimate (the call limit trimmed so
/// no unused-gas penalty pays for it) and `extra_pvg` over the door's minimum preVerificationGas: an op
/// that pays its share of a shared bundle and no more.
async fn tight_order(
    s: &Setup,
    t: &Trader,
    lane: u32,
    seq: u64,
    extra_pvg: u64,
) -> PackedUserOperation {
    let mut op = s.order_op(t, lane, seq, "0.01", "60500", false).await;
    let gas = estimate(s, &op).await;
    // The estimate is used gas x 1.5 + 20,000: two thirds of it is within ~14,000 of what the call uses.
    op.accountGasLimits = pack_u128s(gas["verificationGasLimit"], gas["callGasLimit"] * 2 / 3);
    // The minimum depends on the signature's bytes: leave room for the new signature's (at most 65 x 12).
    op.preVerificationGas = U256::from(min_pre_verification_gas(&op) + 800 + extra_pvg);
    s.re_sign_session_op(t, op).await
}

/// The relayer's gas estimate for `op`, by field.
async fn estimate(s: &Setup, op: &PackedUserOperation) -> std::collections::HashMap<String, u128> {
    let est = s
        .call(
            "eth_estimateUserOperationGas",
            json!([rpc_user_op(op), s.d.entry_point]),
        )
        .await
        .unwrap();
    est.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let hex = v.as_str().unwrap().trim_start_matches("0x");
            (k.clone(), u128::from_str_radix(hex, 16).unwrap())
        })
        .collect()
}

async fn status(s: &Setup, hash: &Value) -> Value {
    s.call("keyscope_userOperationStatus", json!([hash]))
        .await
        .unwrap()
}

async fn metrics(s: &Setup) -> String {
    let url = format!("http://{}/metrics", s.relayer.metrics_addr.unwrap());
    alloy::transports::http::reqwest::get(&url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_bundle_that_would_lose_money_waits_for_company() {
    let s = setup("economics", 42_020, BundlingMode::Manual, |c| {
        c.bundler.profit_wait_ms = 60_000;
    })
    .await;
    let t = s.trader(20, "20000").await;
    let relayer = s.relayer.identity().relayer;
    let sent_before = s.provider.get_transaction_count(relayer).await.unwrap();

    // Alone, an op paying only its share of a four-op bundle would cost the relayer more than it repays.
    let lone = s.send(&tight_order(&s, &t, 0, 0, 0).await).await.unwrap();
    let answer = s
        .call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    assert_eq!(answer, "ok", "nothing sent");
    assert_eq!(
        s.provider.get_transaction_count(relayer).await.unwrap(),
        sent_before
    );
    assert_eq!(status(&s, &lone).await["status"], "pending");
    assert!(metrics(&s).await.contains("keyscope_bundles_held_total 1"));

    // With an op that pays more than its share, the bundle repays its gas: both are sent and mined.
    let generous = s
        .send(&tight_order(&s, &t, 0, 1, 40_000).await)
        .await
        .unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    for h in [&lone, &generous] {
        assert_eq!(s.receipt(h).await["success"], true);
    }
    // The metrics show what the mined bundle cost and what its ops repaid: no loss.
    let text = metrics(&s).await;
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .parse()
            .unwrap()
    };
    let (cost, repaid) = (
        value("keyscope_bundle_cost_gwei_total"),
        value("keyscope_bundle_repaid_gwei_total"),
    );
    assert!(
        cost > 0 && repaid >= cost,
        "cost {cost} gwei, repaid {repaid} gwei"
    );
    s.relayer.stop().await;
}

#[tokio::test]
async fn ops_no_bundle_pays_for_are_dropped_with_the_reason_after_the_wait() {
    let s = setup("economics-drop", 42_021, BundlingMode::Manual, |c| {
        c.bundler.profit_wait_ms = 300;
    })
    .await;
    let t = s.trader(21, "20000").await;
    let lone = s.send(&tight_order(&s, &t, 0, 0, 0).await).await.unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    assert_eq!(status(&s, &lone).await["status"], "pending");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    let st = status(&s, &lone).await;
    assert_eq!(st["status"], "dropped", "{st}");
    assert!(
        st["reason"]
            .as_str()
            .unwrap()
            .contains("no bundle repays its gas"),
        "{st}"
    );
    assert!(
        metrics(&s)
            .await
            .contains("keyscope_ops_unpaid_dropped_total 1")
    );
    // A client following the relayer's estimate (a bundle of its own) is sent at once, alone.
    let mut op = s.order_op(&t, 0, 0, "0.01", "60500", false).await;
    let gas = estimate(&s, &op).await;
    op.accountGasLimits = pack_u128s(gas["verificationGasLimit"], gas["callGasLimit"]);
    op.preVerificationGas = U256::from(gas["preVerificationGas"]);
    let op = s.re_sign_session_op(&t, op).await;
    let h = s.send(&op).await.unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    assert_eq!(s.receipt(&h).await["success"], true);
    s.relayer.stop().await;
}
