//! Speed of a 2-of-3 quorum on loopback (a benchmark, not a test): distributed key generation with
//! auxiliary info (the test data's primes: prime generation is timed apart, by
//! `cargo run --release -p keyscope-threshold --example test_primes`), the rate of presignatures one
//! coordinator makes with one co-signer, and the online signing latency (p50, p99, max) with presignatures
//! ready, on secp256k1 and P-256. Targets: online p99 ≤ 5 ms; presignatures faster than 100/s.
//!
//! `cargo bench -p keyscope-threshold --bench quorum` (SIGNS sets the signatures per curve; default
//! 1,000). Run as a test (`cargo test --benches`) it only starts a quorum's members and stops them: key
//! generation takes half a minute in a debug build, and the tests already run it.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::{B256, keccak256};
use cggmp21::PregeneratedPrimes;
use futures::future::BoxFuture;
use keyscope_threshold::{Approver, KeyCurve, Member, MemberConfig, tls::dev_identities};
use serde_json::{Value, json};

/// The bench's policy: the digest must be the context's (the work a sidecar's check does is measured
/// by the sidecar's own bench).
struct DigestOf;

impl Approver for DigestOf {
    fn approve<'a>(
        &'a self,
        _from: u16,
        digest: B256,
        context: &'a Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if keccak256(serde_json::to_vec(context).unwrap()) == digest {
                Ok(())
            } else {
                Err("the digest is not the context's".into())
            }
        })
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let signs: usize = if full {
        std::env::var("SIGNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000)
    } else {
        5
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(signs, full));
}

async fn run(signs: usize, full: bool) {
    let primes: Vec<PregeneratedPrimes> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/primes.json"
        ))
        .unwrap(),
    )
    .unwrap();
    println!("2-of-3 quorum on loopback (mutual TLS), {signs} signatures per curve:");
    let curves: &[KeyCurve] = if full {
        &[KeyCurve::Secp256k1, KeyCurve::P256]
    } else {
        &[KeyCurve::Secp256k1]
    };
    for &curve in curves {
        let dir = std::env::temp_dir().join(format!(
            "keyscope-quorum-bench-{}-{curve:?}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addresses: Vec<SocketAddr> =
            listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        drop(listeners);
        let mut members = Vec::new();
        for (id, p) in dev_identities(3)
            .unwrap()
            .into_iter()
            .zip(primes.iter().cloned())
        {
            let config = MemberConfig {
                share_file: dir.join(format!("member-{}.json", id.index)),
                identity: id,
                addresses: addresses.clone(),
                password: "bench".into(),
                connect_timeout: Duration::from_secs(2),
                session_timeout: Duration::from_secs(300),
            };
            members.push(
                Member::start(config, Some(p), Arc::new(DigestOf))
                    .await
                    .unwrap(),
            );
        }
        if !full {
            println!(
                "  smoke run: {} members listening; `cargo bench` measures",
                members.len()
            );
            for m in &members {
                m.shutdown();
            }
            continue;
        }
        let t = Instant::now();
        members[0].keygen(curve, 2).await.unwrap();
        let name = format!("{curve:?}");
        println!(
            "  {name:<9} key generation with auxiliary info: {:.2} s",
            t.elapsed().as_secs_f64()
        );

        let t = Instant::now();
        for _ in 0..signs {
            members[0].presign_with(&[1]).await.unwrap();
        }
        let rate = signs as f64 / t.elapsed().as_secs_f64();
        println!(
            "  {name:<9} presignatures, one coordinator and one co-signer, one at a time: {rate:.1}/s"
        );

        let mut ms = Vec::with_capacity(signs);
        for n in 0..signs {
            let context = json!({ "market": 0, "nonce": n });
            let digest = keccak256(serde_json::to_vec(&context).unwrap());
            let t = Instant::now();
            // The signature is checked against the key before it is returned.
            members[0].sign(digest, &context).await.unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
        println!(
            "  {name:<9} online signature, presignature ready: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            at(0.5),
            at(0.99),
            ms[ms.len() - 1]
        );
        for m in &members {
            m.shutdown();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
