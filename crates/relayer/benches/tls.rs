//! TLS overhead (a benchmark, not a test): one devnet with two relayers in front of it, one in plain
//! HTTP and one over TLS (a `tls-init` certificate, ECDSA P-256, TLS 1.3). CLIENTS clients, each on its
//! own keep-alive connection, call `eth_chainId` REQUESTS times: p50/p99 latency per listener, and TLS's
//! overhead on them, and the same calls on TLS signed with an API key (`keyscope_core::api_key`: Ed25519
//! over method, path, timestamp, window and body hash, checked with its replay cache and quotas). Then new TLS connections (no session resumption), CLIENTS at a time, each a TCP
//! connect, a full handshake and one call: handshakes per second, and p50/p99 of a handshake.
//!
//! `cargo bench -p keyscope-relayer --bench tls` (CLIENTS and REQUESTS set the load; defaults 16 × 2000).
//! Run as a test (`cargo test --benches`) it does a small smoke run.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/tls_client/mod.rs"]
mod tls_client;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use keyscope_core::api_key::{ApiKey, Permission, Registration, now_ms};
use keyscope_relayer::{
    Relayer,
    config::{BundlingMode, TlsConfig},
    tls::DevCa,
};
use serde_json::json;
use tls_client::{Client, client_tls};

fn main() {
    let (clients, requests) = bench_sizes(("CLIENTS", 16), ("REQUESTS", 2000), (2, 20));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(clients, requests));
}

/// `clients` connections to `url`, each calling `eth_chainId` `requests` times after a few warm-up
/// calls: every call's latency (ms).
async fn latencies(
    client: &Client,
    url: &str,
    clients: usize,
    requests: usize,
    key: Option<&ApiKey>,
) -> Vec<f64> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.to_string(), key.cloned());
            tokio::spawn(async move {
                let mut conn = client.connect(&url).await.unwrap();
                conn.api_key = key;
                for _ in 0..10 {
                    conn.call("eth_chainId", json!([])).await.unwrap();
                }
                let mut ms = Vec::with_capacity(requests);
                for _ in 0..requests {
                    let t = Instant::now();
                    let id = conn.call("eth_chainId", json!([])).await.unwrap();
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                    assert_eq!(id, json!("0xa520"));
                }
                ms
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// An API key of a fresh trader's account, registered with the relayer at `url` by the owner's signature.
async fn api_key_of(chain: &Chain, client: &Client, url: &str) -> ApiKey {
    let t = chain.trader(4272, "1000").await;
    let key = ApiKey::generate();
    let now = now_ms() / 1000;
    let reg = Registration {
        api_key: key.id(),
        account: t.account,
        permission: Permission::ReadOnly,
        expires_at: now + 3_600,
        allowed_ips: vec![],
        chain_id: chain.devnet.deployment.chain_id,
        nonce: 1,
        issued_at: now,
    };
    let sig = reg.sign(&t.owner).await.unwrap();
    tls_client::call(client, url, "keyscope_registerApiKey", json!([reg, sig]))
        .await
        .unwrap();
    key
}

async fn run(clients: usize, requests: usize) {
    let certs = data_dir("bench-tls-certs");
    let files = DevCa::write_dev_files(&certs, &[], 1).unwrap();
    let chain = Chain::start(42_272).await;
    let plain = Relayer::start(config_for(
        &chain.devnet,
        data_dir("bench-tls-plain"),
        BundlingMode::Manual,
    ))
    .await
    .unwrap();
    let mut c = config_for(
        &chain.devnet,
        data_dir("bench-tls-on"),
        BundlingMode::Manual,
    );
    c.tls = Some(TlsConfig::new(files.cert.clone(), files.key.clone()));
    // Signed requests measured for their cost, not their quotas: one key, no rate or replay-cache bound
    // in reach.
    c.api_keys.requests_per_sec = 1e9;
    c.api_keys.requests_burst = 1e9;
    c.api_keys.replay_cache_per_key = 10_000_000;
    c.api_keys.max_connections_per_key = 4 * clients;
    let tls = Relayer::start(c).await.unwrap();
    let ca = std::fs::read(&files.ca_cert).unwrap();
    let https = tls_client::https(&ca, None);
    let key = api_key_of(&chain, &https, &tls.url()).await;

    let mut plain_ms =
        latencies(&Client { tls: None }, &plain.url(), clients, requests, None).await;
    let mut tls_ms = latencies(&https, &tls.url(), clients, requests, None).await;
    let mut signed_ms = latencies(&https, &tls.url(), clients, requests, Some(&key)).await;
    let (p50, p99) = (quantile(&mut plain_ms, 0.5), quantile(&mut plain_ms, 0.99));
    let (t50, t99) = (quantile(&mut tls_ms, 0.5), quantile(&mut tls_ms, 0.99));
    let (s50, s99) = (
        quantile(&mut signed_ms, 0.5),
        quantile(&mut signed_ms, 0.99),
    );

    // Full handshakes: no session resumption, so each one signs with the server's key.
    let mut fresh = client_tls(&ca, None);
    fresh.resumption = rustls::client::Resumption::disabled();
    let fresh = Client {
        tls: Some(Arc::new(fresh)),
    };
    let per_client = (requests / 10).max(5);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (fresh.clone(), tls.url());
            tokio::spawn(async move {
                let mut ms = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    let mut conn = client.connect(&url).await.unwrap();
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                    conn.call("eth_chainId", json!([])).await.unwrap();
                }
                ms
            })
        })
        .collect();
    let mut handshake_ms = Vec::new();
    for t in tasks {
        handshake_ms.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    let n = handshake_ms.len();
    println!(
        "relayer TLS: {clients} clients x {requests} eth_chainId calls on keep-alive connections\n  \
         plain HTTP: p50 {p50:.3} ms, p99 {p99:.3} ms\n  \
         TLS:        p50 {t50:.3} ms, p99 {t99:.3} ms  (overhead: p50 {:+.3} ms, p99 {:+.3} ms)\n  \
         TLS+signed: p50 {s50:.3} ms, p99 {s99:.3} ms  (overhead on plain: p50 {:+.3} ms, p99 {:+.3} ms)\n  \
         new TLS connections ({clients} at a time, full handshakes): {:.0}/s ({n} in {secs:.2} s, \
         each with one call); connect + handshake p50 {:.2} ms, p99 {:.2} ms",
        t50 - p50,
        t99 - p99,
        s50 - p50,
        s99 - p99,
        n as f64 / secs,
        quantile(&mut handshake_ms, 0.5),
        quantile(&mut handshake_ms, 0.99),
    );
    plain.stop().await;
    tls.stop().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = std::fs::remove_dir_all(&certs);
}
