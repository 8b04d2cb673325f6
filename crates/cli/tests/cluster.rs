//! Several `keyscope relayer` processes on one Postgres (a throwaway cluster) in front of one anvil, as an
//! operator runs them: ops sent to any instance are mined exactly once; the instance owning a busy shard
//! is killed with SIGKILL while its bundle waits for a block and another takes its shards and finishes
//! its ops; an instance stalled past its lease (SIGSTOP) loses its shards and cannot act on them when it
//! wakes; Postgres restarted under the instances, they carry on.

#[path = "../../relayer/tests/common/mod.rs"]
mod fixture;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
use alloy_primitives::{Address, B256, U256};
use keyscope_core::{bindings::IEntryPoint, client::rpc_user_op, nonce::SessionLane};
use keyscope_relayer::{cluster::shard_of, local_postgres::LocalPostgres};
use serde_json::{Value, json};

const SHARDS: u16 = 8;
const CONFIG: &str = "[cluster]\nshards = 8\nlease_ms = 1500\nrenew_ms = 250\n";

struct Instance {
    child: Child,
    ready: Value,
    name: String,
}

impl Instance {
    fn spawn(chain: &fixture::Chain, pg: &str, name: &str, key: usize, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("cluster.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyscope"))
            .args([
                "relayer",
                "--json",
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
                "--instance",
                name,
                "--store",
                pg,
                "--rpc",
            ])
            .arg(chain.devnet.endpoint())
            .arg("--config")
            .arg(&config)
            .arg("--deployment")
            .arg(&chain.devnet.deployment_file)
            .env("KEYSCOPE_RELAYER_KEY", chain.devnet.keys()[key].to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("instance {name} printed {line:?}"));
        assert_eq!(ready["ready"], true);
        Self {
            child,
            ready,
            name: name.into(),
        }
    }

    fn url(&self) -> String {
        self.ready["rpc"].as_str().unwrap().to_string()
    }

    fn key(&self) -> Address {
        self.ready["relayer"].as_str().unwrap().parse().unwrap()
    }

    fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .args([sig, &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    async fn metrics(&self) -> String {
        let url = self.ready["metrics"].as_str().unwrap();
        alloy::transports::http::reqwest::get(url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The shards it holds, from its metrics.
    async fn shards(&self) -> BTreeSet<u16> {
        self.metrics()
            .await
            .lines()
            .filter_map(|l| l.strip_prefix("keyscope_shard_lease_epoch{shard=\""))
            .filter_map(|l| l.split('"').next()?.parse().ok())
            .collect()
    }

    async fn counter(&self, name: &str) -> u64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in {}'s metrics", self.name))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `op` to the instances from `first` on, round the list, until one takes it (an instance that
/// died, or a shard changing hands, answers with an error to try again). Returns its hash.
async fn send(
    chain: &fixture::Chain,
    urls: &[String],
    first: usize,
    op: &keyscope_core::user_op::PackedUserOperation,
) -> B256 {
    let hash = chain.hash(op);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in first.. {
        let url = &urls[i % urls.len()];
        match fixture::rpc(
            url,
            "eth_sendUserOperation",
            json!([rpc_user_op(op), chain.d.entry_point]),
        )
        .await
        {
            Ok(h) => {
                assert_eq!(h, json!(hash));
                return hash;
            }
            // Taken by an instance that died before answering, then resumed by another: known already.
            Err(e) if e["code"] == -32602 && known(urls, hash).await => return hash,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no instance took {hash}; last answer: {e}"
                );
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    }
    unreachable!()
}

async fn known(urls: &[String], hash: B256) -> bool {
    for url in urls {
        if let Ok(v) = fixture::rpc(url, "eth_getUserOperationByHash", json!([hash])).await {
            if !v.is_null() {
                return true;
            }
        }
    }
    false
}

/// Waits for every op in `hashes` to be mined (asking any live instance), and checks each was mined exactly
/// once and succeeded. Returns the bundle signers.
async fn mined_once(chain: &fixture::Chain, urls: &[String], hashes: &[B256]) -> BTreeSet<Address> {
    let mut signers = BTreeSet::new();
    for h in hashes {
        let mut receipt = Value::Null;
        let deadline = Instant::now() + Duration::from_secs(90);
        while receipt.is_null() {
            assert!(Instant::now() < deadline, "{h} never mined");
            for url in urls {
                if let Ok(r) = fixture::rpc(url, "eth_getUserOperationReceipt", json!([h])).await {
                    if !r.is_null() {
                        receipt = r;
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(receipt["success"], true, "{h}: {receipt}");
        let filter = Filter::new()
            .address(chain.d.entry_point)
            .event_signature(IEntryPoint::UserOperationEvent::SIGNATURE_HASH)
            .topic1(*h)
            .from_block(0);
        assert_eq!(
            chain.provider.get_logs(&filter).await.unwrap().len(),
            1,
            "{h} included exactly once"
        );
        let tx: B256 =
            serde_json::from_value(receipt["receipt"]["transactionHash"].clone()).unwrap();
        let tx = chain
            .provider
            .get_transaction_by_hash(tx)
            .await
            .unwrap()
            .unwrap();
        signers.insert(alloy::network::TransactionResponse::from(&tx));
    }
    signers
}

async fn lane_nonce(chain: &fixture::Chain, t: &fixture::Trader) -> U256 {
    let lane = SessionLane::new(alloy::signers::Signer::address(&t.session), 0).nonce_key();
    chain.nonce(t.account, lane).await & U256::from(u64::MAX)
}

fn urls(instances: &[&Instance]) -> Vec<String> {
    instances.iter().map(|i| i.url()).collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The instance among `of` holding `account`'s shard.
async fn owner<'a>(of: &[&'a Instance], account: Address) -> &'a Instance {
    let shard = shard_of(account, SHARDS);
    for i in of {
        if i.shards().await.contains(&shard) {
            return i;
        }
    }
    panic!("no instance holds shard {shard}");
}

#[tokio::test]
async fn three_instances_on_one_postgres_survive_a_kill_and_a_stall() {
    let pg = LocalPostgres::start().unwrap();
    let chain = fixture::Chain::start(42_200).await;
    let mut traders = Vec::new();
    for seed in 0..4 {
        traders.push(chain.trader(4200 + seed, "20000").await);
    }
    let dir = scratch("three");
    let a = Instance::spawn(&chain, &pg.url(), "a", 1, &dir);
    let b = Instance::spawn(&chain, &pg.url(), "b", 2, &dir);
    let c = Instance::spawn(&chain, &pg.url(), "c", 3, &dir);
    let all = [&a, &b, &c];
    until(
        "the shards are spread over the three",
        Duration::from_secs(30),
        || async {
            let mut total = 0;
            for i in all {
                let n = i.shards().await.len();
                if n < 2 {
                    return false;
                }
                total += n;
            }
            total == usize::from(SHARDS)
        },
    )
    .await;

    // Ops sent round the three instances: each is forwarded to its sender's owner and mined exactly once.
    let every = urls(&all);
    let mut hashes = Vec::new();
    let mut sent = vec![0u64; traders.len()];
    for seq in 0..4u64 {
        for (n, t) in traders.iter().enumerate() {
            let op = chain.order_op(t, 0, seq, "0.01", "60500", false).await;
            hashes.push(send(&chain, &every, n + seq as usize, &op).await);
            sent[n] += 1;
        }
    }
    let signers = mined_once(&chain, &every, &hashes).await;
    assert!(signers.len() >= 2, "bundles came from {signers:?}");
    let mut forwarded = 0;
    for i in all {
        forwarded += i.counter("keyscope_ops_forwarded_total").await;
    }
    assert!(forwarded > 0);

    // From here a block comes once a second: a bundle waits in the node's pool for up to a second.
    chain
        .provider
        .raw_request::<_, Value>("evm_setAutomine".into(), [false])
        .await
        .unwrap();
    chain
        .provider
        .raw_request::<_, Value>("evm_setIntervalMining".into(), [1])
        .await
        .unwrap();

    // SIGKILL the owner of trader 0's shard just after it took a burst of that trader's orders.
    let busy = &traders[0];
    let victim = owner(&all, busy.account).await;
    let survivors: Vec<&Instance> = all.into_iter().filter(|i| i.name != victim.name).collect();
    let via = urls(&survivors);
    let mut burst = Vec::new();
    for _ in 0..3 {
        let op = chain
            .order_op(busy, 0, sent[0], "0.01", "60500", false)
            .await;
        burst.push(send(&chain, &via, 0, &op).await);
        sent[0] += 1;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let killed = victim.key();
    let mut victim_process = Command::new("kill")
        .args(["-KILL", &victim.child.id().to_string()])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    victim_process.wait().unwrap();
    // More orders of the same trader: refused as "changing hands" until a survivor takes the shard.
    for _ in 0..3 {
        let op = chain
            .order_op(busy, 0, sent[0], "0.01", "60500", false)
            .await;
        burst.push(send(&chain, &via, 1, &op).await);
        sent[0] += 1;
    }
    let signers = mined_once(&chain, &via, &burst).await;
    eprintln!(
        "kill -9 of the owner → its trader's last orders mined by a survivor in {:?} (lease 1.5 s)",
        t0.elapsed()
    );
    assert!(signers.iter().any(|s| *s != killed), "{signers:?}");
    assert_eq!(lane_nonce(&chain, busy).await, U256::from(sent[0]));
    until(
        "the survivors hold every shard",
        Duration::from_secs(20),
        || async {
            let mut held = BTreeSet::new();
            for i in &survivors {
                held.extend(i.shards().await);
            }
            held.len() == usize::from(SHARDS)
        },
    )
    .await;

    // SIGSTOP a survivor past its lease: the other takes its shards over; the stalled one, woken,
    // finds them gone and forwards their ops instead of acting on them.
    let (stalled, other) = (survivors[0], survivors[1]);
    until(
        "the two survivors share the shards",
        Duration::from_secs(20),
        || async { !stalled.shards().await.is_empty() && !other.shards().await.is_empty() },
    )
    .await;
    stalled.signal("-STOP");
    until(
        "the other survivor takes every shard",
        Duration::from_secs(20),
        || async { other.shards().await.len() == usize::from(SHARDS) },
    )
    .await;
    let mut late = Vec::new();
    for (n, tr) in traders.iter().enumerate() {
        let op = chain.order_op(tr, 0, sent[n], "0.01", "60500", false).await;
        late.push(send(&chain, &[other.url()], 0, &op).await);
        sent[n] += 1;
    }
    stalled.signal("-CONT");
    until(
        "the woken instance learns it lost its shards",
        Duration::from_secs(20),
        || async { stalled.counter("keyscope_shards_lost_total").await >= 1 },
    )
    .await;
    // Through the woken instance: forwarded, or taken once it holds a shard again; never twice.
    for (n, tr) in traders.iter().enumerate() {
        let op = chain.order_op(tr, 0, sent[n], "0.01", "60500", false).await;
        late.push(send(&chain, &[stalled.url(), other.url()], 0, &op).await);
        sent[n] += 1;
    }
    mined_once(&chain, &via, &late).await;
    for (n, tr) in traders.iter().enumerate() {
        assert_eq!(
            lane_nonce(&chain, tr).await,
            U256::from(sent[n]),
            "trader {n}"
        );
    }
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_instances_ride_out_a_postgres_restart() {
    let pg = LocalPostgres::start().unwrap();
    let chain = fixture::Chain::start(42_201).await;
    let traders = [
        chain.trader(4210, "20000").await,
        chain.trader(4211, "20000").await,
    ];
    let dir = scratch("restart");
    let a = Instance::spawn(&chain, &pg.url(), "a", 1, &dir);
    let b = Instance::spawn(&chain, &pg.url(), "b", 2, &dir);
    let both = urls(&[&a, &b]);
    let mut hashes = Vec::new();
    for seq in 0..2u64 {
        for (n, t) in traders.iter().enumerate() {
            let op = chain.order_op(t, 0, seq, "0.01", "60500", false).await;
            hashes.push(send(&chain, &both, n, &op).await);
        }
    }
    mined_once(&chain, &both, &hashes).await;

    pg.stop("fast").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again().unwrap();

    for seq in 2..5u64 {
        for (n, t) in traders.iter().enumerate() {
            let op = chain.order_op(t, 0, seq, "0.01", "60500", false).await;
            hashes.push(send(&chain, &both, n + seq as usize, &op).await);
        }
    }
    mined_once(&chain, &both, &hashes).await;
    for t in &traders {
        assert_eq!(lane_nonce(&chain, t).await, U256::from(5));
    }
    until(
        "the two hold every shard again",
        Duration::from_secs(20),
        || async {
            let mut held = a.shards().await;
            held.extend(b.shards().await);
            held.len() == usize::from(SHARDS)
        },
    )
    .await;
    let mut a = a;
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "instance a is still running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
