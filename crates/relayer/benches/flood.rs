//! Fresh-sender flood (a benchmark, not a test): an honest trader sends pre-signed session orders one at
//! a time, first alone and then while another client address floods the relayer with ops from thousands
//! of senders it has never seen. Reports the honest client's `eth_sendUserOperation` latency (p50/p99)
//! in both phases, what became of the flood, and the process's resident memory before, after it, and after
//! a second flood of as many new senders (memory that grew per refused op would grow again).
//!
//! `cargo bench -p keyscope-relayer --bench flood` (FLOOD and HONEST set the sizes; defaults 5,000 and
//! 200). Run as a test (`cargo test --benches`) it does a small smoke run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use alloy::transports::http::reqwest;
use alloy_primitives::Address;
use common::*;
use keyscope_core::user_op::OpGas;
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};

/// The process's resident memory, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let (flood, honest) = bench_sizes(("FLOOD", 5_000), ("HONEST", 200), (50, 4));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(flood, honest));
}

fn latencies(answers: &[(f64, Value)]) -> Vec<f64> {
    for (_, a) in answers {
        assert!(
            a.get("result").is_some(),
            "an honest order was refused: {a}"
        );
    }
    answers.iter().map(|(ms, _)| *ms).collect()
}

/// Sends one op from each sender numbered in `senders` (a copy of `template` with that sender), 64 at a time
/// from `http`; how many got each answer (the error code, or "accepted").
async fn flood_ops(
    http: reqwest::Client,
    url: String,
    template: Value,
    ep: Address,
    senders: std::ops::Range<usize>,
) -> BTreeMap<String, usize> {
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let ids: Vec<usize> = senders.collect();
    for chunk in ids.chunks(64) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let mut op = template.clone();
                op["sender"] = json!(Address::left_padding_from(&(i as u64 + 1).to_be_bytes()));
                let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendUserOperation", "params": [op, ep] });
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    let v: Value = http.post(&url).json(&body).send().await.unwrap().json().await.unwrap();
                    v["error"]["code"].as_i64().map_or("accepted".to_string(), |c| c.to_string())
                })
            })
            .collect();
        for b in batch {
            *outcomes.entry(b.await.unwrap()).or_default() += 1;
        }
    }
    outcomes
}

async fn run(flood: usize, honest: usize) {
    let s = setup("flood", 42_101, BundlingMode::Auto, |c| {
        c.pool.max_ops_per_session_key = 100_000;
        c.pool.max_ops_per_sender = 100_000;
        c.door.ops_per_second_per_key = 0.0;
    })
    .await;
    let t = s.trader(2_000, "100000").await;
    let gas = OpGas {
        verification: 100_000,
        call: 250_000,
        pre_verification: 60_000,
    };
    let mut orders = s.presigned_orders(&t, 2 * honest, gas).await;
    let during = orders.split_off(honest);
    let url = s.relayer.url();
    let http = reqwest::Client::new();

    // Alone.
    let rss_before = rss_mib();
    let mut alone = latencies(&send_each(&http, &url, orders).await);

    // The flood: ops from `flood` senders the relayer has never seen (nothing deployed there), 64 at a
    // time, from another client address.
    let template = during[0]["params"][0].clone();
    let ep = s.d.entry_point;
    let attacker = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let started = Instant::now();
    let flooding = tokio::spawn(flood_ops(
        attacker.clone(),
        url.clone(),
        template.clone(),
        ep,
        0..flood,
    ));
    let mut under_flood = latencies(&send_each(&http, &url, during).await);
    let outcomes = flooding.await.unwrap();
    let flood_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_mib();
    // A second flood of as many new senders: memory that grew per refused op would grow again.
    let again = flood_ops(attacker, url.clone(), template, ep, flood..2 * flood).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_again = rss_mib();

    println!(
        "relayer fresh-sender flood: {flood} ops from {flood} new senders (another client address) while \
         one trader sends {honest} orders one at a time\n  \
         honest eth_sendUserOperation alone: p50 {:.2} ms, p99 {:.2} ms\n  \
         honest under the flood:            p50 {:.2} ms, p99 {:.2} ms\n  \
         flood answered in {flood_secs:.2} s: {outcomes:?} (-32504: the client's fresh-sender budget; \
         -32500: validated and refused)\n  \
         a second flood of {flood} more new senders: {again:?}\n  \
         resident memory (relayer, anvil client and bench in one process): {rss_before:.1} MiB before, \
         {rss_after:.1} MiB after the flood, {rss_again:.1} MiB after the second",
        quantile(&mut alone, 0.5),
        quantile(&mut alone, 0.99),
        quantile(&mut under_flood, 0.5),
        quantile(&mut under_flood, 0.99),
    );
    s.relayer.stop().await;
}
