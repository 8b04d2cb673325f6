//! The relayer against the chain's own behaviour: a reorg that drops a mined bundle (its op goes
//! back to the pool and is included again, exactly once), many senders at once, a restart with
//! ops in the pool (none lost, none doubled), a bundle the node drops, and one stuck behind better
//! paying transactions (re-sent with higher fees only when its ops pay for them, and followed
//! across a restart), and a node that restarts empty (no bundle sent to an EntryPoint that is gone).

mod common;

use std::collections::HashSet;

use alloy::{consensus::Transaction as _, providers::Provider};

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
    let first_tx = bundle_tx(&s, &hash, &Value::Null).await;
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
    // Waits until the node has the bundle again.
    let second_tx = bundle_tx(&s, &hash, &Value::Null).await;
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

/// Waits until the op's record names a bundle transaction other than `not` and the node has it
/// (the record is written before the transaction is sent), and returns it.
async fn bundle_tx(s: &Setup, hash: &Value, not: &Value) -> Value {
    for _ in 0..200 {
        let st = s
            .call("keyscope_userOperationStatus", json!([hash]))
            .await
            .unwrap();
        let tx = &st["transactionHash"];
        if st["status"] == "submitted" && tx != not {
            let on_node: Option<alloy::rpc::types::Transaction> = s
                .provider
                .raw_request("eth_getTransactionByHash".into(), (tx,))
                .await
                .unwrap();
            if on_node.is_some() {
                return tx.clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{hash} was never sent in a transaction other than {not}");
}

/// Congestion: a transaction that burns all but 100k of the next block's gas at a 100 gwei tip
/// (to a loop `JUMPDEST PUSH1 0 JUMP` put at an unused address), then that block is mined, without
/// room for the bundle.
async fn mine_a_full_block(s: &Setup) {
    use alloy::{
        network::{EthereumWallet, TransactionBuilder},
        providers::ProviderBuilder,
        rpc::types::TransactionRequest,
    };
    let burner = alloy_primitives::Address::repeat_byte(0xbe);
    let _: Value = s
        .provider
        .raw_request(
            "anvil_setCode".into(),
            (
                burner,
                alloy_primitives::Bytes::from(vec![0x5b, 0x60, 0x00, 0x56]),
            ),
        )
        .await
        .unwrap();
    let limit = s
        .provider
        .get_block_by_number(alloy::rpc::types::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .gas_limit;
    let rival = ProviderBuilder::new()
        .wallet(EthereumWallet::from(s.devnet.signer(5)))
        .connect_http(s.devnet.endpoint_url());
    let _pending = rival
        .send_transaction(
            TransactionRequest::default()
                .with_to(burner)
                .with_gas_limit(limit - 100_000)
                .with_max_priority_fee_per_gas(100_000_000_000)
                .with_max_fee_per_gas(1_000_000_000_000),
        )
        .await
        .unwrap();
    let _: Value = s.provider.raw_request("evm_mine".into(), ()).await.unwrap();
}

#[tokio::test]
async fn a_bundle_stuck_behind_better_paying_transactions_is_re_sent_with_higher_fees() {
    let s = setup("bump", 42_012, BundlingMode::Auto, |c| {
        c.bundler.bump_after_secs = 1;
    })
    .await;
    let t = s.trader(12, "20000").await;
    let _: Value = s
        .provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let on_node = |h: Value| {
        let s = &s;
        async move {
            let t: Option<alloy::rpc::types::Transaction> = s
                .provider
                .raw_request("eth_getTransactionByHash".into(), (h,))
                .await
                .unwrap();
            t
        }
    };

    // An op at the node's fee estimate is bundled at about the same fees.
    let cheap = s
        .send(&s.order_op(&t, 0, 0, "0.01", "60500", false).await)
        .await
        .unwrap();
    let tx1 = bundle_tx(&s, &cheap, &Value::Null).await;
    // A full block leaves it out. Outbidding would cost the relayer more than the op repays (its
    // maxFeePerGas), so the relayer waits instead.
    mine_a_full_block(&s).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let st = s
        .call("keyscope_userOperationStatus", json!([cheap]))
        .await
        .unwrap();
    assert_eq!(st["transactionHash"], tx1, "not replaced: {st}");
    assert!(
        on_node(tx1.clone())
            .await
            .is_some_and(|t| t.block_number.is_none()),
        "still pending on the node"
    );
    // The next block has room and mines that same transaction.
    let _: Value = s.provider.raw_request("evm_mine".into(), ()).await.unwrap();
    assert_eq!(s.receipt(&cheap).await["receipt"]["transactionHash"], tx1);

    // An op that offers up to 200 gwei a gas but no more tip than the node asked ...
    let withheld = || async {
        let text = s.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix("keyscope_bundle_bumps_withheld_total "))
            .map(|v| v.parse::<u64>().unwrap())
            .unwrap_or_else(|| panic!("no bumps_withheld in {text}"))
    };
    let mut capped = s.order_op(&t, 0, 1, "0.01", "60500", false).await;
    let (tip, _) = keyscope_core::rpc_op::unpack(capped.gasFees);
    capped.gasFees = keyscope_core::user_op::pack_u128s(tip, 200_000_000_000);
    let capped = s.re_sign_session_op(&t, capped).await;
    let capped = s.send(&capped).await.unwrap();
    let tx = bundle_tx(&s, &capped, &Value::Null).await;
    let before = withheld().await;
    // ... left out of a full block, is not re-sent: a higher tip would be the relayer's loss on every gas.
    mine_a_full_block(&s).await;
    let st = loop {
        let st = s
            .call("keyscope_userOperationStatus", json!([capped]))
            .await
            .unwrap();
        if st["transactionHash"] != tx || withheld().await > before {
            break st;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(st["transactionHash"], tx, "not replaced: {st}");
    let _: Value = s.provider.raw_request("evm_mine".into(), ()).await.unwrap();
    assert_eq!(s.receipt(&capped).await["receipt"]["transactionHash"], tx);

    // An op that offers up to 200 gwei a gas and twice the tip ...
    let mut generous = s.order_op(&t, 0, 2, "0.01", "60500", false).await;
    let (tip, _) = keyscope_core::rpc_op::unpack(generous.gasFees);
    generous.gasFees = keyscope_core::user_op::pack_u128s(2 * tip, 200_000_000_000);
    let generous = s.re_sign_session_op(&t, generous).await;
    let hash = s.send(&generous).await.unwrap();
    let tx2 = bundle_tx(&s, &hash, &Value::Null).await;
    let first = on_node(tx2.clone())
        .await
        .expect("the bundle is on the node");
    // ... left out of a full block, is re-sent at the same nonce with higher fees.
    mine_a_full_block(&s).await;
    let tx3 = bundle_tx(&s, &hash, &tx2).await;
    let replacement = on_node(tx3.clone())
        .await
        .expect("the replacement is on the node");
    assert_eq!(replacement.nonce(), first.nonce(), "the same nonce");
    assert!(
        replacement.max_priority_fee_per_gas()
            >= first.max_priority_fee_per_gas().map(|f| f * 9 / 8)
            && replacement.max_fee_per_gas() >= first.max_fee_per_gas() * 9 / 8
            && replacement.max_fee_per_gas() <= 200_000_000_000,
        "{replacement:?} after {first:?}"
    );
    assert!(on_node(tx2.clone()).await.is_none(), "the node replaced it");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("keyscope_bundle_fee_bumps_total 1\n"),
        "{metrics}"
    );

    // A restart while the replacement is pending follows it (the store names both transactions).
    let config = s.config.clone();
    let Setup { relayer, chain, .. } = s;
    relayer.stop().await;
    let relayer = Relayer::start(config).await.expect("restarts");
    assert_eq!(relayer.resumed, 1, "the bumped op, still in flight");
    let url = relayer.url();
    let _: Value = chain
        .provider
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    let r = receipt_at(&url, &hash).await;
    assert_eq!(
        r["receipt"]["transactionHash"], tx3,
        "the replacement was mined: {r}"
    );
    let status = rpc(&url, "keyscope_userOperationStatus", json!([hash]))
        .await
        .unwrap();
    assert_eq!(status["replacedTransactions"], json!([tx2]));
    let lane = SessionLane::new(t.session.address(), 0).nonce_key();
    let nonce = keyscope_core::bindings::IEntryPoint::new(chain.d.entry_point, &chain.provider)
        .getNonce(t.account, lane)
        .call()
        .await
        .unwrap();
    assert_eq!(seq(nonce), 3, "each op once");
    let log = rpc(&url, "keyscope_auditLog", json!([0, 100]))
        .await
        .unwrap();
    let events = |h: &Value| -> Vec<String> {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["userOpHash"] == *h)
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(events(&cheap), ["accepted", "bundled", "included"]);
    assert_eq!(events(&hash), ["accepted", "bundled", "bumped", "included"]);
    relayer.stop().await;
}

#[tokio::test]
async fn after_the_node_resets_no_bundle_is_sent_to_an_empty_entry_point() {
    let s = setup("reset", 42_018, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(18, "20000").await;
    let relayer = s.relayer.identity().relayer;
    // Positive control: an op is bundled and mined.
    s.first_order_mined(&t).await;
    let second = s.order_op(&t, 0, 1, "0.01", "60500", false).await;
    s.send(&second).await.unwrap();
    // The node restarts empty: no EntryPoint, no account, the relayer's nonce back to 0.
    let _: Value = s
        .provider
        .raw_request("anvil_reset".into(), ())
        .await
        .unwrap();
    assert!(
        s.provider
            .get_code_at(s.d.entry_point)
            .await
            .unwrap()
            .is_empty()
    );
    let answer = s.call("debug_bundler_sendBundleNow", json!([])).await;
    // Whatever the relayer answers, it sent nothing: no block, no transaction from its key.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        s.provider.get_block_number().await.unwrap(),
        0,
        "{answer:?}"
    );
    assert_eq!(
        s.provider.get_transaction_count(relayer).await.unwrap(),
        0,
        "{answer:?}"
    );
    // And it says why.
    let e = answer.unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("is the EntryPoint at"),
        "{e}"
    );
    s.relayer.stop().await;
}

#[tokio::test]
async fn a_reorg_after_a_restart_includes_every_dropped_op_again_once() {
    let s = setup("restart-reorg", 42_019, BundlingMode::Manual, |_| {}).await;
    let mut traders = Vec::new();
    for i in 0..4 {
        traders.push(s.trader(190 + i, "20000").await);
    }
    let mut hashes = Vec::new();
    for t in &traders {
        for lane in 0..5 {
            let op = s.order_op(t, lane, 0, "0.01", "60500", false).await;
            hashes.push(s.send(&op).await.unwrap());
        }
    }
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    let mut first_txs = HashSet::new();
    for h in &hashes {
        let r = s.receipt(h).await;
        assert_eq!(r["success"], true, "{r}");
        first_txs.insert(r["receipt"]["blockHash"].clone());
    }
    assert_eq!(first_txs.len(), 1, "one bundle of 20, in one block");

    // The relayer restarts; then the block with the bundle leaves the chain.
    let config = s.config.clone();
    let Setup { relayer, chain, .. } = s;
    relayer.stop().await;
    let relayer = Relayer::start(config).await.expect("restarts");
    let _: Value = chain
        .provider
        .raw_request("anvil_rollback".into(), (1u64,))
        .await
        .unwrap();
    let lanes: Vec<_> = traders
        .iter()
        .flat_map(|t| {
            (0..5).map(move |lane| {
                (
                    t.account,
                    SessionLane::new(t.session.address(), lane).nonce_key(),
                )
            })
        })
        .collect();
    let ep = keyscope_core::bindings::IEntryPoint::new(chain.d.entry_point, &chain.provider);
    for (account, key) in &lanes {
        assert_eq!(
            seq(ep.getNonce(*account, *key).call().await.unwrap()),
            0,
            "undone on chain"
        );
    }

    // The restarted relayer notices and bundles all 20 again, each exactly once.
    let url = relayer.url();
    rpc(&url, "debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    for h in &hashes {
        let r = receipt_at(&url, h).await;
        assert_eq!(r["success"], true, "{h}: {r}");
        // The same transaction may come back (same nonce, same ops, same fees), but in a new block.
        assert!(
            !first_txs.contains(&r["receipt"]["blockHash"]),
            "{h} in the block that left"
        );
    }
    for (account, key) in &lanes {
        assert_eq!(
            seq(ep.getNonce(*account, *key).call().await.unwrap()),
            1,
            "included once"
        );
    }
    let log = rpc(&url, "keyscope_auditLog", json!([0, 1000]))
        .await
        .unwrap();
    let reorged = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "reorged")
        .count();
    assert_eq!(reorged, 20);
    relayer.stop().await;
}

#[tokio::test]
async fn a_node_that_changes_chain_gets_no_more_bundles() {
    let s = setup("chain-id", 42_026, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(26, "20000").await;
    let relayer = s.relayer.identity().relayer;
    // Positive control: bundled and mined.
    s.first_order_mined(&t).await;
    s.send(&s.order_op(&t, 0, 1, "0.01", "60500", false).await)
        .await
        .unwrap();
    let sent = s.provider.get_transaction_count(relayer).await.unwrap();
    // The node now serves another chain id: the relayer stops, says why, and signs nothing more.
    let _: Value = s
        .provider
        .raw_request("anvil_setChainId".into(), (4_242u64,))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let e = s
        .call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("chain id 4242"),
        "{e}"
    );
    assert_eq!(
        s.provider.get_transaction_count(relayer).await.unwrap(),
        sent
    );
    s.relayer.stop().await;
}
