//! Scale-out bench (a benchmark, not a test): `keyscope relayer` processes on one throwaway Postgres in
//! front of one anvil (automine).
//!
//! - Throughput: TRADERS trading accounts send OPS session orders in all (each trader one at a time,
//!   alternately buying and selling), through one instance, then spread over three; ops/s from the first
//!   send to the last receipt.
//! - Failover: ROUNDS times, the instance holding trader 0's shard is killed with SIGKILL and an order of
//!   that trader is sent to the survivors at once; the time from the kill to that order's receipt is the
//!   failover time (lease expiry, the takeover, the new owner's first bundle). The killed instance is
//!   started again before the next round.
//!
//! `cargo bench -p keyscope-cli --bench failover` (ROUNDS and OPS set the sizes; defaults 5 and 240; the
//! lease settings are `kit::CONFIG`'s). Run as a test (`cargo test --benches`) it does a small smoke run.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../relayer/tests/common/mod.rs"]
mod fixture;
#[path = "../tests/common/cluster.rs"]
mod kit;

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use keyscope_relayer::local_postgres::LocalPostgres;
use kit::*;
use serde_json::json;

const TRADERS: usize = 8;

fn main() {
    let (rounds, ops) = fixture::bench_sizes(("ROUNDS", 5), ("OPS", 240), (1, 16));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(rounds, ops));
}

/// The next order of trader `n` (buying and selling in turn, so its position stays small).
async fn order(
    chain: &fixture::Chain,
    t: &fixture::Trader,
    seq: &mut u64,
) -> keyscope_core::user_op::PackedUserOperation {
    let (size, limit) = if *seq % 2 == 0 {
        ("0.01", "60500")
    } else {
        ("-0.01", "59500")
    };
    let op = chain.order_op(t, 0, *seq, size, limit, false).await;
    *seq += 1;
    op
}

/// Sends `ops` orders spread over `traders` through `urls` (trader n starts at instance n); returns ops/s
/// from the first send to the last receipt, after checking every op was mined exactly once.
async fn throughput(
    chain: &Arc<fixture::Chain>,
    urls: &[String],
    traders: &[fixture::Trader],
    seqs: &mut [u64],
    ops: usize,
) -> f64 {
    let per = ops.div_ceil(traders.len());
    let mut signed = Vec::new();
    for (n, t) in traders.iter().enumerate() {
        let mut mine = Vec::new();
        for _ in 0..per {
            mine.push(order(chain, t, &mut seqs[n]).await);
        }
        signed.push(mine);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, mine) in signed.into_iter().enumerate() {
        let (chain, urls) = (chain.clone(), urls.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut hashes = Vec::new();
            for op in &mine {
                hashes.push(send(&chain, &urls, n, op).await);
            }
            hashes
        }));
    }
    let mut hashes: Vec<B256> = Vec::new();
    let mut last = Vec::new();
    for t in tasks {
        let h = t.await.unwrap();
        last.push(*h.last().unwrap());
        hashes.extend(h);
    }
    // A trader's ops are mined in nonce order: its last op's receipt means all of them are.
    for h in &last {
        while fixture::rpc(&urls[0], "eth_getUserOperationReceipt", json!([h]))
            .await
            .unwrap()
            .is_null()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let rate = hashes.len() as f64 / started.elapsed().as_secs_f64();
    mined_once(chain, urls, &hashes).await;
    rate
}

async fn spread(instances: &[&Instance]) {
    until("the shards are spread", Duration::from_secs(30), || async {
        let mut total = 0;
        for i in instances {
            let n = i.shards().await.len();
            if n < usize::from(SHARDS) / instances.len() {
                return false;
            }
            total += n;
        }
        total == usize::from(SHARDS)
    })
    .await;
}

async fn run(rounds: usize, ops: usize) {
    let Some(pg) = LocalPostgres::for_test("failover bench") else {
        return;
    };
    let chain = Arc::new(fixture::Chain::start(42_202).await);
    let mut traders = Vec::new();
    for seed in 0..TRADERS {
        traders.push(chain.trader(4300 + seed as u64, "100000").await);
    }
    let mut seqs = vec![0u64; TRADERS];
    let dir = scratch("bench");
    let names = ["a", "b", "c"];
    let mut instances = vec![Instance::spawn(&chain, &pg.url(), names[0], 1, &dir)];
    spread(&[&instances[0]]).await;
    let one = throughput(&chain, &[instances[0].url()], &traders, &mut seqs, ops).await;
    for (k, name) in names.iter().enumerate().skip(1) {
        instances.push(Instance::spawn(&chain, &pg.url(), name, k + 1, &dir));
    }
    spread(&instances.iter().collect::<Vec<_>>()).await;
    let every: Vec<String> = instances.iter().map(Instance::url).collect();
    let three = throughput(&chain, &every, &traders, &mut seqs, ops).await;

    let mut failover = Vec::new();
    for _ in 0..rounds {
        let refs: Vec<&Instance> = instances.iter().collect();
        let victim = owner(&refs, traders[0].account).await.name.clone();
        let at = instances.iter().position(|i| i.name == victim).unwrap();
        let key = at_key(&names, &victim);
        let survivors: Vec<String> = instances
            .iter()
            .filter(|i| i.name != victim)
            .map(Instance::url)
            .collect();
        let op = order(&chain, &traders[0], &mut seqs[0]).await;
        let pid = instances[at].child.id().to_string();
        let t0 = Instant::now();
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        let hash = send(&chain, &survivors, 0, &op).await;
        while fixture::rpc(&survivors[0], "eth_getUserOperationReceipt", json!([hash]))
            .await
            .unwrap()
            .is_null()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        failover.push(t0.elapsed().as_secs_f64() * 1e3);
        mined_once(&chain, &survivors, &[hash]).await;
        instances[at] = Instance::spawn(&chain, &pg.url(), &victim, key, &dir);
        spread(&instances.iter().collect::<Vec<_>>()).await;
    }
    failover.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let lease = CONFIG.replace('\n', " ");
    println!(
        "scale-out bench ({lease}; {TRADERS} traders, anvil automine, Postgres on this machine)"
    );
    println!(
        "  throughput, {} ops: one instance {one:.1} ops/s, three instances {three:.1} ops/s",
        ops.div_ceil(TRADERS) * TRADERS
    );
    println!(
        "  failover (kill -9 of the owner -> its trader's next order mined by a survivor), {} rounds: \
         min {:.0} ms, median {:.0} ms, max {:.0} ms",
        failover.len(),
        failover[0],
        failover[failover.len() / 2],
        failover[failover.len() - 1]
    );
    drop(instances);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The anvil key index instance `name` signs with (a → 1, b → 2, c → 3).
fn at_key(names: &[&str], name: &str) -> usize {
    names.iter().position(|n| *n == name).unwrap() + 1
}
