//! A real third-party client works unchanged: viem's account-abstraction bundler client (pinned in
//! package.json) estimates, sends and waits for a session-key order through the relayer; permissionless's
//! SimpleAccount client works with its documented defaults; and a foreign account cannot spend a
//! session key's quota by signing on its nonce lane.

mod common;

use alloy_primitives::U256;
use common::*;
use keyscope_core::devnet::repo_root;
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};
use tokio::process::Command;

#[tokio::test]
async fn viem_sends_a_session_order_through_the_relayer() {
    let s = setup("viem", 42_009, BundlingMode::Auto, |_| {}).await;
    let t = s.trader(9, "20000").await;
    let grant = s.grant_of(&t).await;
    let script = repo_root().join("crates/relayer/tests/viem/session-order.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("RPC_URL", s.devnet.endpoint())
        .env("BUNDLER_URL", s.relayer.url())
        .env("CHAIN_ID", s.d.chain_id.to_string())
        .env("ENTRY_POINT", s.d.entry_point.to_string())
        .env("ACCOUNT", t.account.to_string())
        .env("VENUE", s.d.venue.to_string())
        .env(
            "SESSION_KEY",
            format!(
                "0x{}",
                alloy_primitives::hex::encode(t.session.credential().to_bytes())
            ),
        )
        .env("GRANT_ID", grant.to_string())
        .output()
        .await
        .expect("node runs (Node.js comes with the toolchain; `make deps` installs viem)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the viem client failed:\n{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("viem printed {:?}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(result["success"], true);
    let status = s
        .call(
            "keyscope_userOperationStatus",
            json!([result["userOpHash"]]),
        )
        .await
        .unwrap();
    assert_eq!(status["status"], "included", "{status}");
    assert_eq!(status["sessionKey"], json!(t.session.address()));
    s.relayer.stop().await;
}

/// Runs the permissionless client `script` (in tests/viem) against `s`, with `env` besides the chain's and
/// the relayer's; its JSON answer.
async fn permissionless(s: &Setup, script: &str, env: &[(&str, String)]) -> Value {
    let script = repo_root().join("crates/relayer/tests/viem").join(script);
    let out = Command::new("node")
        .arg(&script)
        .env("RPC_URL", s.devnet.endpoint())
        .env("BUNDLER_URL", s.relayer.url())
        .env("CHAIN_ID", s.d.chain_id.to_string())
        .env("ENTRY_POINT", s.d.entry_point.to_string())
        .env("FUNDER_KEY", s.devnet.keys()[7].to_string())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .expect(
            "node runs (Node.js comes with the toolchain; `make deps` installs permissionless)",
        );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the permissionless client failed:\n{stderr}"
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("node printed {:?}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs `simple-accounts.mjs` in `phase` against `s`, with `extra` environment; its JSON answer.
async fn simple_accounts(s: &Setup, phase: &str, extra: &[(&str, String)]) -> Value {
    let env: Vec<_> = [("PHASE", phase.to_string())]
        .into_iter()
        .chain(extra.iter().cloned())
        .collect();
    permissionless(s, "simple-accounts.mjs", &env).await
}

#[tokio::test]
async fn permissionless_simple_accounts_work_with_their_defaults() {
    // The relayer's shipped defaults, bundling on its own.
    let s = setup("permissionless", 42_014, BundlingMode::Auto, |_| {}).await;
    let result = simple_accounts(&s, "clients", &[]).await;
    assert_eq!(result["deployed"], 10);
    let burst = result["burst"].as_array().unwrap();
    assert_eq!(burst.len(), 40);
    // The relayer's own record: included, and no Keyscope session key read into a foreign account's nonce.
    for hash in burst {
        let status = s
            .call("keyscope_userOperationStatus", json!([hash]))
            .await
            .unwrap();
        assert_eq!(status["status"], "included", "{status}");
        assert!(status["sessionKey"].is_null(), "{status}");
    }
    s.relayer.stop().await;
}

#[tokio::test]
async fn permissionless_sequential_ops_are_all_mined_when_deposits_run_out() {
    // The relayer's shipped defaults; the client's too (no fee hook, gas from the relayer's estimate).
    let s = setup("sequential", 42_031, BundlingMode::Auto, |_| {}).await;
    let env = [("ACCOUNTS", "3".to_string()), ("OPS", "10".to_string())];
    let result = permissionless(&s, "sequential-ops.mjs", &env).await;
    let runs = result["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        assert_eq!(run["hashes"].as_array().unwrap().len(), 10, "{run}");
        // The path that lost ops: the account's deposit no longer covered the prefund, so it paid the rest
        // while validating — more than once in ten ops.
        assert!(run["paidInValidation"].as_u64().unwrap() >= 2, "{run}");
    }
    s.relayer.stop().await;
}

#[tokio::test]
async fn a_foreign_account_on_a_session_keys_nonce_lane_cannot_spend_its_quota() {
    let s = setup("squat", 42_015, BundlingMode::Auto, |c| {
        c.door.burst_per_key = 3.0;
        c.door.ops_per_second_per_key = 0.001;
    })
    .await;
    let t = s.trader(15, "20000").await;
    // Lane 0 of the trader's session key, as the trader's own ops carry it.
    let lane = U256::from_be_slice(t.session.address().as_slice()) << 32;
    // The attacker: as many ops as the key's whole burst, each accepted and mined (its own account, its own
    // bucket). Read as the trader's key, they would have emptied the trader's bucket.
    let squat = simple_accounts(
        &s,
        "squat",
        &[
            ("SQUAT_KEY", format!("{lane:#x}")),
            ("SQUAT_OPS", "3".into()),
        ],
    )
    .await;
    assert_eq!(squat["hashes"].as_array().unwrap().len(), 3);
    // The trader's key still has its whole burst: three orders pass...
    for seq in 0..3 {
        let op = s.order_op(&t, 0, seq, "0.01", "60500", false).await;
        s.send(&op)
            .await
            .unwrap_or_else(|e| panic!("order {seq} refused after the squat: {e}"));
    }
    // ... and the fourth finds the bucket empty: the quota is live, the squatter just never touched it.
    let op = s.order_op(&t, 0, 3, "0.01", "60500", false).await;
    let e = s.send(&op).await.unwrap_err();
    assert_eq!(e["code"], -32504, "{e}");
    s.relayer.stop().await;
}
