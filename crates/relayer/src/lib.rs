//! Keyscope's relayer: an ERC-4337 bundler for EntryPoint v0.8 that any standard client (viem,
//! permissionless, alloy) can talk to unchanged, built for trading accounts.
//!
//! An op travels through one module per job: [`rpc`] (the JSON-RPC face) → [`admission`] (the door's
//! checks) → [`validate`] (`handleOps` on revm over the node's state, with the ERC-7562 inspector) →
//! [`pool`] (nonce lanes, limits, reputation, trading-first order) → [`builder`] (bundle, sign,
//! submit, follow to receipt, reorgs) → [`store`] (redb: ops and the audit log), with [`feed`]
//! pushing venue events to WebSocket subscribers and [`metrics`] timing every stage.
//!
//! Validation runs in-process: the relayer reads plain state (`eth_getStorageAt`, `eth_getCode`, …)
//! from any node and needs no `debug_traceCall`.

pub mod admission;
pub mod builder;
pub mod config;
pub mod error;
pub mod feed;
pub mod metrics;
pub mod op;
pub mod pool;
pub mod rpc;
pub mod state;
pub mod store;
pub mod validate;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy::{
    network::EthereumWallet,
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use jsonrpsee::server::{Server, ServerHandle};
use keyscope_core::deployment::Deployment;
use tokio::{sync::watch, task::JoinHandle};

pub use config::Config;

use crate::{
    metrics::Metrics,
    pool::{Mempool, RateLimiter, Reputation},
    state::{Inner, Shared, SharedState},
    store::Store,
    validate::{Simulator, SimulatorConfig},
};

/// Errors from starting the relayer.
#[derive(Debug, thiserror::Error)]
pub enum RelayerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Signer(#[from] keyscope_core::signer::SignerError),
    #[error("cannot reach the chain at {url}: {reason}")]
    Node { url: String, reason: String },
    #[error(
        "no EntryPoint at {address} on chain {chain_id}: deploy EntryPoint v0.8 first (keyscope devnet does)"
    )]
    NoEntryPoint {
        address: alloy_primitives::Address,
        chain_id: u64,
    },
    #[error(transparent)]
    Deployment(#[from] keyscope_core::deployment::DeploymentError),
    #[error("deployment file is for chain {file}, the node is chain {node}")]
    WrongChain { file: u64, node: u64 },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("recovering the pool failed: {0}")]
    Recover(#[from] builder::BuildError),
}

/// A running relayer. [`Relayer::stop`] shuts it down gracefully; dropping it stops the server.
pub struct Relayer {
    pub rpc_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub shared: SharedState,
    /// Ops resumed from the store at start.
    pub resumed: usize,
    server: ServerHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Relayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relayer")
            .field("rpc_addr", &self.rpc_addr)
            .finish_non_exhaustive()
    }
}

fn signer(config: &Config) -> Result<PrivateKeySigner, RelayerError> {
    Ok(match (&config.relayer_key, &config.keystore) {
        (Some(key), _) => keyscope_core::signer::from_hex(key)?,
        (None, Some(path)) => keyscope_core::signer::from_keystore(
            path,
            config.keystore_password.as_deref().unwrap_or_default(),
        )?,
        (None, None) => unreachable!("Config::check requires a key"),
    })
}

impl Relayer {
    /// Connects to the chain, opens the store, resumes unfinished ops and starts serving.
    pub async fn start(config: Config) -> Result<Self, RelayerError> {
        config.check()?;
        let key = signer(&config)?;
        let relayer = key.address();
        let node = |reason: String| RelayerError::Node {
            url: config.rpc_url.clone(),
            reason,
        };
        let url = config
            .rpc_url
            .parse()
            .map_err(|e: url::ParseError| node(e.to_string()))?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| node(e.to_string()))?;
        let code = provider
            .get_code_at(config.entry_point)
            .await
            .map_err(|e| node(e.to_string()))?;
        if code.is_empty() {
            return Err(RelayerError::NoEntryPoint {
                address: config.entry_point,
                chain_id,
            });
        }
        let venue = match (&config.venue, &config.deployment) {
            (Some(v), _) => Some(*v),
            (None, Some(path)) => {
                let d = Deployment::load(path)?;
                if d.chain_id != chain_id {
                    return Err(RelayerError::WrongChain {
                        file: d.chain_id,
                        node: chain_id,
                    });
                }
                Some(d.venue)
            }
            (None, None) => None,
        };
        let store = Store::open(&config.data_dir.join("relayer.redb"))?;
        let unfinished = store.unfinished()?;
        let reputation = Reputation::from_entries(store.reputation()?);
        let mut pool = Mempool::new(config.pool);
        // New ops are ordered after every op ever stored.
        pool.insert_order_floor(store.max_order()?);
        let sim = Simulator::new(
            provider.clone(),
            tokio::runtime::Handle::current(),
            SimulatorConfig {
                entry_point: config.entry_point,
                chain_id,
                venue,
                relayer,
                min_stake: config.min_stake_wei,
                min_unstake_delay: config.min_unstake_delay_secs,
            },
            builder::head_of(&provider)
                .await
                .map_err(|e| node(e.to_string()))?,
        );
        let head_number = sim.head_number();
        let shared = Arc::new(Shared {
            chain_id,
            entry_point: config.entry_point,
            venue,
            relayer,
            beneficiary: config.beneficiary.unwrap_or(relayer),
            provider: provider.clone(),
            store,
            metrics: Metrics::default(),
            head_number,
            inner: tokio::sync::Mutex::new(Inner {
                sim,
                pool,
                in_flight: None,
                mined: Default::default(),
                records: Default::default(),
                limiter: RateLimiter::new(
                    config.door.ops_per_second_per_key,
                    config.door.burst_per_key,
                ),
                reputation,
                mode: config.bundler.mode,
                dirty: false,
                settled_through: 0,
                seen_head: None,
            }),
            feed: tokio::sync::broadcast::channel(4096).0,
            wake: Default::default(),
            bundling: Default::default(),
            config,
        });
        let resumed = builder::recover(&shared, unfinished).await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed unfinished ops from the store");
        }

        let wallet = EthereumWallet::from(key);
        let module = rpc::module(rpc::RpcContext {
            shared: shared.clone(),
            wallet: wallet.clone(),
        })
        .expect("method names are unique");
        let listen = shared.config.listen;
        let server = Server::builder()
            .build(listen)
            .await
            .map_err(|e| RelayerError::Listen {
                addr: listen,
                reason: e.to_string(),
            })?;
        let rpc_addr = server.local_addr().map_err(|e| RelayerError::Listen {
            addr: listen,
            reason: e.to_string(),
        })?;
        let server = server.start(module);

        let (shutdown, rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(builder::run(shared.clone(), wallet, rx.clone())),
            tokio::spawn(feed::run(shared.clone(), rx.clone())),
            tokio::spawn(decay_reputation(shared.clone(), rx.clone())),
        ];
        let metrics_addr = match shared.config.metrics_listen {
            Some(addr) => {
                let (addr, task) = serve_metrics(shared.clone(), addr, rx).await?;
                tasks.push(task);
                Some(addr)
            }
            None => None,
        };
        tracing::info!(%rpc_addr, %relayer, chain_id, "relayer serving");
        Ok(Self {
            rpc_addr,
            metrics_addr,
            shared,
            resumed,
            server,
            shutdown,
            tasks,
        })
    }

    /// The JSON-RPC endpoint (HTTP; the same port speaks WebSocket).
    pub fn url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.rpc_addr)
    }

    /// Stops taking requests, lets the bundler finish its round, and returns. Everything accepted is
    /// already in the store.
    pub async fn stop(self) {
        let _ = self.server.stop();
        self.server.stopped().await;
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

async fn decay_reputation(shared: SharedState, mut shutdown: watch::Receiver<bool>) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    hourly.tick().await;
    loop {
        tokio::select! {
            _ = hourly.tick() => shared.lock().await.reputation.decay(),
            _ = shutdown.changed() => break,
        }
    }
}

async fn serve_metrics(
    shared: SharedState,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), RelayerError> {
    use axum::{Router, http::header, routing::get};
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let shared = shared.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    shared.metrics.render(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RelayerError::Listen {
            addr,
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| RelayerError::Listen {
        addr,
        reason: e.to_string(),
    })?;
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!("metrics server failed: {e}");
        }
    });
    Ok((local, task))
}
