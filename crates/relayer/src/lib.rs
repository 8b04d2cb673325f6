//! Keyscope's relayer: an ERC-4337 bundler for EntryPoint v0.8 that any standard client (viem,
//! permissionless, alloy) can talk to unchanged, built for trading accounts.
//!
//! An op travels through one module per job: [`rpc`] (the JSON-RPC face, one file per namespace) →
//! [`pool`] (the door's checks, validation on the pending state — [`validate`]: `handleOps` on revm with
//! the ERC-7562 inspector, ops of different senders in parallel — nonce lanes, limits, reputation,
//! trading-first order) → [`bundler`] (choose, simulate in-process, sign, send several bundles in flight,
//! bump) → [`chain`] (follow the head: settle, reorgs, recovery) → [`store`] (ops and the audit log: redb
//! embedded, or Postgres shared by several instances, which [`cluster`] splits the senders among with
//! fenced leases), with [`feed`] pushing venue events to WebSocket subscribers and [`metrics`] timing
//! every stage.
//! [`service`] puts the pool, the bundler and the chain follower together; [`startup`] wires a config
//! into a serving relayer (keys, store, chain check, listeners, background tasks). The pool owns its state
//! behind a handle ([`pool::Pool`]): nobody else touches it.
//!
//! Validation runs in-process: the relayer reads plain state (`eth_getStorageAt`, `eth_getCode`, …) from
//! any node and needs no `debug_traceCall`.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub(crate) mod bundler;
pub(crate) mod calldata;
pub(crate) mod chain;
pub mod cluster;
pub mod config;
pub(crate) mod error;
pub(crate) mod feed;
pub(crate) mod in_flight;
#[cfg(feature = "devnet")]
pub mod local_postgres;
pub(crate) mod matcher;
pub(crate) mod metrics;
pub(crate) mod op;
pub(crate) mod pool;
pub(crate) mod records;
pub(crate) mod rpc;
pub(crate) mod service;
mod startup;
pub mod store;
pub(crate) mod validate;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use jsonrpsee::server::ServerHandle;
use tokio::{sync::watch, task::JoinHandle};

pub use config::Config;
pub use pool::{lone_pre_verification_gas, min_pre_verification_gas};
pub use rpc::tls;
pub use service::Identity;
pub use validate::{Health, HealthChange};

use crate::service::Service;

/// Errors from starting the relayer.
#[derive(Debug, thiserror::Error)]
pub enum RelayerError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The bundle key could not be read.
    #[error(transparent)]
    Signer(#[from] keyscope_core::signer::SignerError),
    /// The chain's endpoint did not answer.
    #[error("cannot reach the chain at {url}: {reason}")]
    Node {
        /// The endpoint.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The chain has no code at the configured EntryPoint.
    #[error(
        "no EntryPoint at {address} on chain {chain_id}: deploy EntryPoint v0.8 first (keyscope devnet does)"
    )]
    NoEntryPoint {
        /// The configured EntryPoint.
        address: alloy_primitives::Address,
        /// The chain asked.
        chain_id: u64,
    },
    /// The configured EntryPoint address holds other code than EntryPoint v0.8.
    #[error(
        "the code at {address} on chain {chain_id} is not EntryPoint v0.8's (the published runtime with \
         its immutables): check entry_point in the config"
    )]
    NotEntryPoint {
        /// The configured EntryPoint.
        address: alloy_primitives::Address,
        /// The chain asked.
        chain_id: u64,
    },
    /// The deployment file could not be read.
    #[error(transparent)]
    Deployment(#[from] keyscope_core::deployment::DeploymentError),
    /// The deployment file is for another chain.
    #[error("deployment file is for chain {file}, the node is chain {node}")]
    WrongChain {
        /// The file's chain id.
        file: u64,
        /// The node's.
        node: u64,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The RPC or metrics address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// Unfinished ops could not be resumed (the node did not answer).
    #[error("recovering the pool failed: {0}")]
    Recover(#[from] validate::NodeError),
    /// The instance could not join its deployment on the Postgres store.
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// The matcher for signed orders could not start.
    #[error(transparent)]
    Matcher(#[from] matcher::MatcherStartError),
}

/// A running relayer. [`Relayer::stop`] shuts it down gracefully; dropping it stops the server.
pub struct Relayer {
    /// Where JSON-RPC is served (HTTP and WebSocket).
    pub rpc_addr: SocketAddr,
    /// Where Prometheus metrics are served, if configured.
    pub metrics_addr: Option<SocketAddr>,
    service: Arc<Service>,
    /// Ops resumed from the store at start.
    pub resumed: usize,
    /// Whether `rpc_addr` speaks TLS.
    tls: bool,
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

impl Relayer {
    /// Connects to the chain, opens the store, resumes unfinished ops and starts serving.
    pub async fn start(config: Config) -> Result<Self, RelayerError> {
        startup::start(config).await
    }

    /// Who the relayer is and what it serves.
    pub fn identity(&self) -> Identity {
        self.service.identity
    }

    /// The JSON-RPC endpoint (HTTP, or HTTPS with TLS; the same port speaks WebSocket).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.rpc_addr)
    }

    /// The same endpoint over WebSocket (`wss` with TLS).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}", self.rpc_addr)
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
