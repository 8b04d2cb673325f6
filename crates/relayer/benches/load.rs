//! Load generator (a benchmark, not a test): N concurrent clients, each a trading account with its
//! own session key, send pre-signed session orders to the relayer over HTTP (`eth_sendUserOperation`)
//! against a real anvil, one request at a time per client. Reports accepted ops/s, p50/p99 send
//! latency, and p50/p99 time from arrival to receipt (the relayer's own lifecycle timestamps).
//!
//! `cargo bench -p keyscope-relayer --bench load` (CLIENTS and OPS set the load; defaults 16 × 250).
//! Run as a test (`cargo test --benches`) it does a small smoke run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use alloy::providers::Provider;
use alloy_primitives::U256;
use common::*;
use keyscope_core::user_op::OpGas;
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};

fn main() {
    let (clients, per_client) = bench_sizes(("CLIENTS", 16), ("OPS", 250), (2, 5));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(clients, per_client));
}

async fn run(clients: usize, per_client: usize) {
    let s = setup("load", 42_100, BundlingMode::Auto, |c| {
        c.door.ops_per_second_per_key = 0.0;
        c.pool.max_ops = 1_000_000;
        c.pool.max_ops_per_sender = 1_000_000;
        c.pool.max_ops_per_session_key = 1_000_000;
        c.bundler.max_ops_per_bundle = 256;
        c.bundler.interval_ms = 50;
    })
    .await;
    let mut traders = Vec::new();
    for i in 0..clients {
        traders.push(s.trader(1000 + i as u64, "100000").await);
    }
    // Limits with room over what a session order uses, so a bundle under anvil's 30M block gas limit
    // carries ~60 of them.
    let gas = OpGas {
        verification: 100_000,
        call: 250_000,
        pre_verification: 60_000,
    };
    let mut bodies: Vec<Vec<Value>> = Vec::new();
    for t in &traders {
        bodies.push(s.presigned_orders(t, per_client, gas).await);
    }

    let url = s.relayer.url();
    let started = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|ops| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = alloy::transports::http::reqwest::Client::new();
                send_each(&http, &url, ops).await
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut hashes = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        for (ms, resp) in t.await.unwrap() {
            latencies.push(ms);
            match resp.get("result") {
                Some(h) => hashes.push(h.clone()),
                None => refused.push(resp["error"].clone()),
            }
        }
    }
    let send_secs = started.elapsed().as_secs_f64();
    assert!(
        refused.is_empty(),
        "refused under load: {:?}",
        &refused[..refused.len().min(3)]
    );

    // Time to receipt, from the relayer's lifecycle timestamps.
    let mut to_receipt = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    for h in &hashes {
        loop {
            let st = s
                .call("keyscope_userOperationStatus", json!([h]))
                .await
                .unwrap();
            if st["status"] == "included" {
                let t = &st["timestamps"];
                to_receipt.push(
                    (t["minedUs"].as_u64().unwrap() - t["receivedUs"].as_u64().unwrap()) as f64
                        / 1e3,
                );
                break;
            }
            assert!(Instant::now() < deadline, "{h} not included: {st}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let all_secs = started.elapsed().as_secs_f64();
    let n = hashes.len();
    println!(
        "relayer load: {clients} clients x {per_client} ops = {n} session orders against anvil\n  \
         accepted: {:.0} ops/s ({n} in {send_secs:.2} s)\n  \
         eth_sendUserOperation latency: p50 {:.2} ms, p99 {:.2} ms\n  \
         time to receipt: p50 {:.0} ms, p99 {:.0} ms; all {n} mined after {all_secs:.2} s",
        n as f64 / send_secs,
        quantile(&mut latencies, 0.5),
        quantile(&mut latencies, 0.99),
        quantile(&mut to_receipt, 0.5),
        quantile(&mut to_receipt, 0.99),
    );
    let status = s.call("keyscope_status", json!([])).await.unwrap();
    let metrics_text = alloy::transports::http::reqwest::get(format!(
        "http://{}/metrics",
        s.relayer.metrics_addr.unwrap()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    for line in metrics_text.lines().filter(|l| {
        l.starts_with("keyscope_bundles_mined_total") || l.starts_with("keyscope_pending_")
    }) {
        println!("  {line}");
    }
    println!(
        "  relayer's own stage times (ms, p50/p99 of the last 4096 ops): {}",
        status["quantilesMs"]
    );
    let balance = s
        .provider
        .get_balance(s.relayer.identity().relayer)
        .await
        .unwrap();
    assert!(balance > U256::ZERO);
    s.relayer.stop().await;
}
