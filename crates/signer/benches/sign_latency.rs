//! Sign latency of `keyscope signer` (a benchmark, not a test): a strategy's `sign` requests over the
//! Unix socket, one at a time, each answered after the scope check, the rate limit, the signature and the
//! audit line — for a P-256 keystore key, a secp256k1 keystore key and, where SoftHSM2 is installed, an
//! HSM-held P-256 key. Reports p50, p99 and max per key. The budget: p99 ≤ 1 ms for a keystore key.
//!
//! `cargo bench -p keyscope-signer --bench sign_latency` (SIGNS sets the count per key; default 5,000).
//! Run as a test (`cargo test --benches`) it does a small smoke run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use keyscope_core::{key::Curve, user_op::pack_u128s};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let signs: usize = if full {
        std::env::var("SIGNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000)
    } else {
        50
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(signs));
}

async fn run(signs: usize) {
    let dir = temp_dir("bench");
    let (p256, p256_toml) = keystore_key(&dir, "p256-keystore", Curve::P256, "65535/1s");
    let (k1, k1_toml) = keystore_key(&dir, "k1-keystore", Curve::Secp256k1, "65535/1s");
    let setup = Setup::start(41_043, dir, &[p256, k1]).await;
    // The default refresh (every 2 s): the sessions are re-read from anvil while the requests run.
    let (config, _) = setup.write_config_refreshing(&format!("{p256_toml}{k1_toml}"), 2);
    let (task, signer) = start_sidecar(&config, None).await;
    println!("sign requests over the socket, {signs} per key, one at a time:");
    for (name, key) in [("P-256 keystore", p256), ("secp256k1 keystore", k1)] {
        let mut op = setup.order_op(key, 0, 0, "0.01").await;
        // A 1-wei fee: the op's maximum cost stays far inside the key's fee budget however many are signed.
        op.gasFees = pack_u128s(1, 1);
        let mut ms = Vec::with_capacity(signs);
        for _ in 0..signs {
            let t = Instant::now();
            signer.sign(&op, None).await.expect("in scope");
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
        println!(
            "  {name:<20} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            at(0.5),
            at(0.9),
            at(0.99),
            ms[ms.len() - 1]
        );
    }
    task.stop();
}
