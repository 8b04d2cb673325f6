//! A real third-party client works unchanged: viem's account-abstraction bundler client (pinned in
//! package.json) estimates, sends and waits for a session-key order through the relayer.

mod common;

use common::*;
use keyscope_core::{bindings::ISessionManager, devnet::repo_root};
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};
use tokio::process::Command;

#[tokio::test]
async fn viem_sends_a_session_order_through_the_relayer() {
    let s = setup("viem", 42_009, BundlingMode::Auto, |_| {}).await;
    let t = s.trader(9, "20000").await;
    let grant = ISessionManager::new(t.account, &s.provider)
        .getSession(t.session.address())
        .call()
        .await
        .unwrap()
        .grantId;
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
