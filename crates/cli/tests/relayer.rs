//! `keyscope relayer` as an operator runs it: a separate process, killed with SIGKILL while ops wait
//! in its pool, restarted on the same store — nothing lost, nothing included twice — then stopped
//! with SIGTERM and its audit log exported.

mod common;
#[path = "../../relayer/tests/common/mod.rs"]
mod fixture;

use std::{path::Path, process::Command};

use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
use alloy_primitives::{B256, U256};
use common::RelayerProcess;
use keyscope_core::{bindings::IEntryPoint, client::rpc_user_op, nonce::SessionLane};
use serde_json::{Value, json};

/// The relayer as an operator runs it, in manual bundling mode with the debug methods.
fn spawn(chain: &fixture::Chain, data_dir: &Path) -> RelayerProcess {
    RelayerProcess::spawn(
        &chain.devnet.endpoint(),
        &chain.devnet.keys()[1].to_string(),
        &chain.devnet.deployment_file,
        data_dir,
        &["--mode", "manual", "--debug-api"],
        &[],
    )
}

#[tokio::test]
async fn kill_9_with_ops_in_the_pool_loses_and_doubles_nothing() {
    let chain = fixture::Chain::start(41_020).await;
    let t = chain.trader(20, "20000").await;
    let data_dir = fixture::data_dir("kill9");

    let mut first = spawn(&chain, &data_dir);
    let mut hashes = Vec::new();
    for seq in 0..5 {
        let op = chain.order_op(&t, 0, seq, "0.01", "60500", false).await;
        let hash = fixture::rpc(
            &first.url(),
            "eth_sendUserOperation",
            json!([rpc_user_op(&op), chain.d.entry_point]),
        )
        .await
        .unwrap();
        hashes.push(hash);
    }
    // SIGKILL: no shutdown code runs.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let mut second = spawn(&chain, &data_dir);
    assert_eq!(second.ready["resumed"], 5, "{}", second.ready);
    let pool = fixture::rpc(
        &second.url(),
        "debug_bundler_dumpMempool",
        json!([chain.d.entry_point]),
    )
    .await
    .unwrap();
    assert_eq!(pool.as_array().unwrap().len(), 5);
    // Sending an already accepted op again is refused, not doubled.
    let again = chain.order_op(&t, 0, 0, "0.01", "60500", false).await;
    let e = fixture::rpc(
        &second.url(),
        "eth_sendUserOperation",
        json!([rpc_user_op(&again), chain.d.entry_point]),
    )
    .await
    .unwrap_err();
    assert_eq!(e["code"], -32602, "{e}");

    fixture::rpc(&second.url(), "debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    for h in &hashes {
        let r = fixture::rpc(&second.url(), "eth_getUserOperationReceipt", json!([h]))
            .await
            .unwrap();
        assert_eq!(r["success"], true, "{h}: {r}");
        let hash: B256 = serde_json::from_value(h.clone()).unwrap();
        let filter = Filter::new()
            .address(chain.d.entry_point)
            .event_signature(IEntryPoint::UserOperationEvent::SIGNATURE_HASH)
            .topic1(hash)
            .from_block(0);
        assert_eq!(
            chain.provider.get_logs(&filter).await.unwrap().len(),
            1,
            "{h} included exactly once"
        );
    }
    let lane = SessionLane::new(alloy::signers::Signer::address(&t.session), 0).nonce_key();
    assert_eq!(
        chain.nonce(t.account, lane).await & U256::from(u64::MAX),
        U256::from(5)
    );

    // SIGTERM: a graceful stop; then the audit log can be exported from the store.
    Command::new("kill")
        .args(["-TERM", &second.child.id().to_string()])
        .status()
        .unwrap();
    assert!(
        second.child.wait().unwrap().success(),
        "SIGTERM stops the relayer cleanly"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["relayer", "audit", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for event in ["accepted", "bundled", "included"] {
        assert_eq!(
            lines.iter().filter(|e| e["event"] == event).count(),
            5,
            "{event}"
        );
    }
    assert!(
        lines
            .iter()
            .filter(|e| e["event"] == "accepted")
            .all(|e| e["userOperation"]["signature"].is_string())
    );
    let csv = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["relayer", "audit", "--format", "csv", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(csv.stdout).unwrap().lines().count(),
        lines.len() + 1
    );
    // A reader that goes away (`keyscope relayer audit | head`) gets no error printed at it.
    let mut export = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["relayer", "audit", "--data-dir"])
        .arg(&data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(export.stdout.take());
    let out = export.wait_with_output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its logs went to a file: plain text, no colour escapes.
    let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap();
    assert!(log.contains("INFO"), "the relayer logged: {log}");
    assert!(
        !log.contains('\x1b'),
        "colour escapes in a log file: {log:?}"
    );
}
