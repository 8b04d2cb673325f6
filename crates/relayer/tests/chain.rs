//! The relayer against the chain's own behaviour: a reorg that drops a mined bundle (its op goes
//! back to the pool and is included again, exactly once), many senders at once, and a restart with
//! ops in the pool (none lost, none doubled).

mod common;

use std::collections::HashSet;

use alloy::providers::Provider;

fn seq(nonce: U256) -> u64 {
    (nonce & U256::from(u64::MAX)).to::<u64>()
}
use alloy_primitives::{B256, U256};
use common::*;
use keyscope_core::nonce::SessionLane;
use keyscope_relayer::{Relayer, config::BundlingMode};
use serde_json::{Value, json};

#[tokio::test]
async fn a_reorged_bundle_is_included_again() {
    let s = setup("reorg", 42_006, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(7, "20000").await;
    let hash = s
        .send(&s.order_op(&t, 0, 0, "0.1", "60500", false).await)
        .await
        .unwrap();
    let first_tx: B256 = serde_json::from_value(
        s.call("debug_bundler_sendBundleNow", json!([]))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        s.receipt(&hash).await["receipt"]["transactionHash"],
        json!(first_tx)
    );

    // The block with the bundle leaves the chain.
    let _: Value = s
        .provider
        .raw_request("anvil_rollback".into(), (1u64,))
        .await
        .unwrap();
    assert!(
        s.provider
            .get_transaction_receipt(first_tx)
            .await
            .unwrap()
            .is_none(),
        "the rollback dropped the bundle"
    );
    let lane = SessionLane::new(t.session.address(), 0).nonce_key();
    assert_eq!(
        seq(s.nonce(t.account, lane).await),
        0,
        "the op is undone on chain"
    );

    // The relayer notices, returns the op to the pool and bundles it again.
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    let again = s.receipt(&hash).await;
    assert_eq!(again["success"], true);
    let second_tx: B256 =
        serde_json::from_value(again["receipt"]["transactionHash"].clone()).unwrap();
    assert!(
        s.provider
            .get_transaction_receipt(second_tx)
            .await
            .unwrap()
            .is_some(),
        "included in the canonical chain"
    );
    assert_eq!(
        seq(s.nonce(t.account, lane).await),
        1,
        "included exactly once"
    );

    let log = s.call("keyscope_auditLog", json!([0, 100])).await.unwrap();
    let events: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["userOpHash"] == hash)
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "accepted", "bundled", "included", "reorged", "bundled", "included"
        ],
        "{events:?}"
    );
    s.relayer.stop().await;
}

#[tokio::test]
async fn many_concurrent_senders_all_included_once() {
    let s = setup("concurrent", 42_007, BundlingMode::Auto, |_| {}).await;
    let mut traders = Vec::new();
    for i in 0..6 {
        traders.push(s.trader(100 + i, "20000").await);
    }
    let mut ops = Vec::new();
    for t in &traders {
        for lane in 0..5 {
            ops.push(s.order_op(t, lane, 0, "0.01", "60500", false).await);
        }
    }
    let sends = ops.iter().map(|op| s.send(op));
    let hashes: Vec<Value> = join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("accepted"))
        .collect();
    assert_eq!(hashes.iter().collect::<HashSet<_>>().len(), 30);
    let mut txs = HashSet::new();
    for h in &hashes {
        let r = s.receipt(h).await;
        assert_eq!(r["success"], true, "{r}");
        txs.insert(r["receipt"]["transactionHash"].clone());
    }
    assert!(
        txs.len() < 30,
        "ops arriving together share bundles ({} bundles for 30 ops)",
        txs.len()
    );
    for t in &traders {
        for lane in 0..5 {
            assert_eq!(
                seq(s
                    .nonce(
                        t.account,
                        SessionLane::new(t.session.address(), lane).nonce_key()
                    )
                    .await),
                1
            );
        }
    }
    s.relayer.stop().await;
}

/// Runs `fs` concurrently (each send is its own request to the relayer) and returns their outputs.
async fn join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    use std::{pin::Pin, task::Poll};
    let mut fs: Vec<Pin<Box<F>>> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (i, f) in fs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => out[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(out.iter_mut().map(|o| o.take().unwrap()).collect())
        }
    })
    .await
}

#[tokio::test]
async fn a_restart_resumes_the_pool() {
    let s = setup("restart", 42_008, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(8, "20000").await;
    let mut hashes = Vec::new();
    for seq in 0..3 {
        hashes.push(
            s.send(&s.order_op(&t, 0, seq, "0.01", "60500", false).await)
                .await
                .unwrap(),
        );
    }
    let config = s.config.clone();
    let Setup { relayer, chain, .. } = s;
    let Chain {
        devnet,
        provider,
        d,
        ..
    } = chain;
    relayer.stop().await;

    let relayer = Relayer::start(config)
        .await
        .expect("restarts on the same store");
    assert_eq!(relayer.resumed, 3);
    let url = relayer.url();
    let pool = rpc(&url, "debug_bundler_dumpMempool", json!([d.entry_point]))
        .await
        .unwrap();
    assert_eq!(pool.as_array().unwrap().len(), 3);
    rpc(&url, "debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    for h in &hashes {
        let r = rpc(&url, "eth_getUserOperationReceipt", json!([h]))
            .await
            .unwrap();
        assert_eq!(r["success"], true, "{h}: {r}");
    }
    let lane = SessionLane::new(t.session.address(), 0).nonce_key();
    let nonce = keyscope_core::bindings::IEntryPoint::new(d.entry_point, &provider)
        .getNonce(t.account, lane)
        .call()
        .await
        .unwrap();
    assert_eq!(seq(nonce), 3);
    drop(devnet);
    relayer.stop().await;
}

#[tokio::test]
async fn a_bundle_the_node_drops_is_sent_again() {
    let s = setup("dropped", 42_010, BundlingMode::Auto, |c| {
        c.bundler.resubmit_after_secs = 1
    })
    .await;
    let t = s.trader(11, "20000").await;
    // Blocks only on request from now on, so the bundle waits in anvil's pool.
    let _: Value = s
        .provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let hash = s
        .send(&s.order_op(&t, 0, 0, "0.1", "60500", false).await)
        .await
        .unwrap();
    let mut first_tx = Value::Null;
    for _ in 0..100 {
        let st = s
            .call("keyscope_userOperationStatus", json!([hash]))
            .await
            .unwrap();
        if st["status"] == "submitted" {
            first_tx = st["transactionHash"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(first_tx.is_string(), "the op was bundled and sent");
    let _: Value = s
        .provider
        .raw_request("anvil_dropTransaction".into(), (first_tx.clone(),))
        .await
        .unwrap();

    // The relayer notices the transaction is gone and sends the op again (the same ops, nonce and
    // fees sign to the same transaction, so the node gets the identical bundle back).
    let events = |log: &Value| -> Vec<String> {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["userOpHash"] == hash)
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    };
    let mut resent = false;
    for _ in 0..200 {
        let log = s.call("keyscope_auditLog", json!([0, 100])).await.unwrap();
        if events(&log).ends_with(&["resubmit".to_string(), "bundled".to_string()]) {
            resent = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(resent, "the op was bundled again");
    let second_tx = s
        .call("keyscope_userOperationStatus", json!([hash]))
        .await
        .unwrap()["transactionHash"]
        .clone();
    let on_node: Option<alloy::rpc::types::Transaction> = s
        .provider
        .raw_request("eth_getTransactionByHash".into(), (second_tx.clone(),))
        .await
        .unwrap();
    assert!(on_node.is_some(), "the node has the bundle again");
    let _: Value = s.provider.raw_request("evm_mine".into(), ()).await.unwrap();
    let r = s.receipt(&hash).await;
    assert_eq!(r["receipt"]["transactionHash"], second_tx);
    let lane = SessionLane::new(t.session.address(), 0).nonce_key();
    assert_eq!(
        seq(s.nonce(t.account, lane).await),
        1,
        "included exactly once"
    );
    let log = s.call("keyscope_auditLog", json!([0, 100])).await.unwrap();
    let events: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["userOpHash"] == hash)
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["accepted", "bundled", "resubmit", "bundled", "included"],
        "{events:?}"
    );
    s.relayer.stop().await;
}
