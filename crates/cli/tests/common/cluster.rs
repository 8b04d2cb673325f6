//! Several `keyscope relayer` processes on one Postgres, for the scale-out tests and the failover bench:
//! an instance process and its metrics, sending an op to whichever instance takes it, and waiting until
//! ops are mined — each checked to be mined exactly once.

#![allow(dead_code)] // the test and the bench each use part of it

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
use alloy_primitives::{Address, B256, U256};
use keyscope_core::{bindings::IEntryPoint, client::rpc_user_op, nonce::SessionLane};
use keyscope_relayer::cluster::shard_of;
use serde_json::{Value, json};

use crate::fixture;

pub const SHARDS: u16 = 8;
pub const CONFIG: &str = "[cluster]\nshards = 8\nlease_ms = 1500\nrenew_ms = 250\n";

pub struct Instance {
    pub child: Child,
    pub ready: Value,
    pub name: String,
}

impl Instance {
    /// `keyscope relayer` as instance `name` of the deployment on `pg`, signing with anvil key `key`.
    pub fn command(
        chain: &fixture::Chain,
        pg: &str,
        name: &str,
        key: usize,
        dir: &Path,
    ) -> Command {
        Self::command_with(chain, pg, name, key, dir, CONFIG)
    }

    /// [`Instance::command`] with its own cluster `config` (TOML).
    pub fn command_with(
        chain: &fixture::Chain,
        pg: &str,
        name: &str,
        key: usize,
        dir: &Path,
        config: &str,
    ) -> Command {
        std::fs::create_dir_all(dir).unwrap();
        let config_file = dir.join(format!("cluster-{name}.toml"));
        std::fs::write(&config_file, config).unwrap();
        let config = config_file;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyscope"));
        cmd.args([
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
        .env("KEYSCOPE_RELAYER_KEY", chain.devnet.keys()[key].to_string());
        cmd
    }

    pub fn spawn(chain: &fixture::Chain, pg: &str, name: &str, key: usize, dir: &Path) -> Self {
        Self::spawn_with(chain, pg, name, key, dir, CONFIG)
    }

    /// [`Instance::spawn`] with its own cluster `config` (TOML).
    pub fn spawn_with(
        chain: &fixture::Chain,
        pg: &str,
        name: &str,
        key: usize,
        dir: &Path,
        config: &str,
    ) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut child = Self::command_with(chain, pg, name, key, dir, config)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let ready = crate::common::ready(&mut child, &format!("instance {name}"));
        Self {
            child,
            ready,
            name: name.into(),
        }
    }

    pub fn url(&self) -> String {
        self.ready["rpc"].as_str().unwrap().to_string()
    }

    pub fn key(&self) -> Address {
        self.ready["relayer"].as_str().unwrap().parse().unwrap()
    }

    pub fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .args([sig, &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    pub async fn metrics(&self) -> String {
        let url = self.ready["metrics"].as_str().unwrap();
        alloy::transports::http::reqwest::get(url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The shards it holds, from its metrics.
    pub async fn shards(&self) -> BTreeSet<u16> {
        self.metrics()
            .await
            .lines()
            .filter_map(|l| l.strip_prefix("keyscope_shard_lease_epoch{shard=\""))
            .filter_map(|l| l.split('"').next()?.parse().ok())
            .collect()
    }

    pub async fn counter(&self, name: &str) -> u64 {
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

pub async fn until<F, Fut>(what: &str, limit: Duration, mut done: F)
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
pub async fn send(
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

pub async fn known(urls: &[String], hash: B256) -> bool {
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
pub async fn mined_once(
    chain: &fixture::Chain,
    urls: &[String],
    hashes: &[B256],
) -> BTreeSet<Address> {
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

pub async fn lane_nonce(chain: &fixture::Chain, t: &fixture::Trader) -> U256 {
    let lane = SessionLane::new(alloy::signers::Signer::address(&t.session), 0).nonce_key();
    chain.nonce(t.account, lane).await & U256::from(u64::MAX)
}

pub fn urls(instances: &[&Instance]) -> Vec<String> {
    instances.iter().map(|i| i.url()).collect()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The instance among `of` holding `account`'s shard.
pub async fn owner<'a>(of: &[&'a Instance], account: Address) -> &'a Instance {
    let shard = shard_of(account, SHARDS);
    for i in of {
        if i.shards().await.contains(&shard) {
            return i;
        }
    }
    panic!("no instance holds shard {shard}");
}

/// A TCP relay from an instance to Postgres that can be cut like a network: once cut it passes no byte
/// either way and lets no new connection through, yet keeps every socket open (the instance sees its
/// calls hang, as in a partition, not refused); mended, new connections pass again.
pub struct Link {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Link {
    pub async fn to(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, state) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut state = state.clone();
                tokio::spawn(async move {
                    let cut_now = *state.borrow();
                    if cut_now {
                        let _held = inbound;
                        return std::future::pending::<()>().await;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        _ = async { state.wait_for(|c| *c).await.map(|_| ()) } => {
                            let _held = (ri, wi, ro, wo);
                            std::future::pending::<()>().await
                        }
                    }
                });
            }
        });
        Self { port, cut }
    }

    /// The Postgres URL through this link.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn mend(&self) {
        self.cut.send_replace(false);
    }
}
