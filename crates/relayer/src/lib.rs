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
//! [`service`] puts the pool, the bundler and the chain follower together. The pool owns its state behind
//! a handle ([`pool::Pool`]): nobody else touches it.
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
pub mod store;
pub(crate) mod validate;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy::{
    network::EthereumWallet,
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use alloy_primitives::Address;
use jsonrpsee::server::{PingConfig, Server, ServerConfig, ServerHandle, stop_channel};
use keyscope_core::deployment::Deployment;
use tokio::{sync::watch, task::JoinHandle};

pub use config::Config;
pub use pool::{lone_pre_verification_gas, min_pre_verification_gas};
pub use rpc::tls;
pub use service::Identity;
pub use validate::{Health, HealthChange};

use crate::{
    bundler::{Bundler, BundlerDeps},
    chain::Chain,
    cluster::Cluster,
    in_flight::InFlight,
    metrics::Metrics,
    pool::{Pool, PoolConfig, PoolDeps},
    service::Service,
    store::{Store, postgres::PgStore},
    validate::{Head, NodeError, SimConfig, layers::Commutative},
};

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

/// The bundle keys an instance of a deployment may lease: its own, then `cluster.bundle_keys`, each once.
fn bundle_keys(config: &Config) -> Result<Vec<PrivateKeySigner>, RelayerError> {
    let mut keys = vec![signer(config)?];
    for hex in &config.cluster.bundle_keys {
        let key = keyscope_core::signer::from_hex(hex)?;
        if keys.iter().all(|k| k.address() != key.address()) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The store the config names, and with Postgres this instance's part in the deployment and the bundle
/// key it leased; with redb, the configured key.
async fn open_store(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(Store, Option<Arc<Cluster>>, PrivateKeySigner), RelayerError> {
    let Some(url) = &config.store else {
        let store = Store::open(&config.data_dir.join("relayer.redb"))?;
        return Ok((store, None, signer(config)?));
    };
    let c = &config.cluster;
    let instance = c
        .instance
        .clone()
        .unwrap_or_else(|| config.listen.to_string());
    let fence = Arc::new(cluster::Fence::new(instance, c.shards));
    let pg = Arc::new(PgStore::open(url, fence.clone(), metrics.clone()).await?);
    let cluster = Arc::new(Cluster::new(
        pg.clone(),
        fence,
        c.clone(),
        config.bundler.reorg_depth,
        metrics.clone(),
    ));
    cluster.join().await?;
    let key = cluster.lease_key(bundle_keys(config)?).await?;
    Ok((Store::new(pg), Some(cluster), key))
}

fn signer(config: &Config) -> Result<PrivateKeySigner, RelayerError> {
    Ok(
        match (
            &config.relayer_key,
            &config.keystore,
            &config.relayer_key_file,
        ) {
            (Some(key), _, _) => keyscope_core::signer::from_hex(key)?,
            (None, Some(path), _) => keyscope_core::signer::from_keystore(
                path,
                config.keystore_password.as_deref().unwrap_or_default(),
            )?,
            (None, None, Some(path)) => keyscope_core::signer::from_hex(&read_key_file(path)?)?,
            (None, None, None) => unreachable!("Config::check requires a key"),
        },
    )
}

/// The bundle key from a file only its owner may read: a key readable by other local users is refused.
fn read_key_file(path: &std::path::Path) -> Result<String, config::ConfigError> {
    let invalid = |reason: String| config::ConfigError::Invalid {
        field: "relayer_key_file",
        reason: format!("{}: {reason}", path.display()),
    };
    let meta = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(invalid(format!(
                "mode {mode:o} lets other users read the bundle key; chmod 600 it"
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))
}

/// The values that only change between EntryPoint and relayer as deltas, and the venue's accumulators.
fn commutative(
    entry_point: alloy_primitives::Address,
    relayer: alloy_primitives::Address,
    beneficiary: alloy_primitives::Address,
    venue: Option<alloy_primitives::Address>,
) -> Commutative {
    let mut c = Commutative::default();
    c.accounts.extend([entry_point, relayer, beneficiary]);
    if let Some(v) = venue {
        c.slots.extend(
            keyscope_core::layout::venue_accumulator_slots()
                .into_iter()
                .map(|s| (v, s)),
        );
    }
    c
}

/// The chain's endpoint, checked: it answers, it has the EntryPoint, and the deployment (if any) is its own.
async fn connect(
    config: &Config,
    relayer: Address,
) -> Result<(DynProvider, Identity), RelayerError> {
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
    config.check_chain(chain_id)?;
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
    if !keyscope_core::deploy::is_entry_point_v08_code(&code) {
        return Err(RelayerError::NotEntryPoint {
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
    let identity = Identity {
        chain_id,
        entry_point: config.entry_point,
        venue,
        relayer,
        beneficiary: config.beneficiary.unwrap_or(relayer),
    };
    Ok((provider, identity))
}

/// The pool, the bundler and the chain follower over `store`, with the unfinished ops it holds resumed.
/// Returns the service and how many ops were resumed.
async fn assemble(
    config: &Config,
    provider: DynProvider,
    identity: Identity,
    wallet: EthereumWallet,
    store: Store,
    metrics: Arc<Metrics>,
) -> Result<(Arc<Service>, usize), RelayerError> {
    let unfinished = store.unfinished().await?;
    let head = provider
        .get_block_number()
        .await
        .map_err(NodeError::from_display)?;
    let recently_included = store
        .included_since(head.saturating_sub(config.bundler.reorg_depth))
        .await?;
    // Keyscope's implementation sits at the same address on every chain with this EntryPoint.
    let implementation = keyscope_core::deploy::account_implementation(config.entry_point);
    let deployed = !provider
        .get_code_at(implementation)
        .await
        .map_err(NodeError::from_display)?
        .is_empty();
    let sim = Arc::new(SimConfig {
        entry_point: config.entry_point,
        chain_id: identity.chain_id,
        venue: identity.venue,
        relayer: identity.relayer,
        keyscope_implementation: deployed.then_some(implementation),
        min_stake: config.min_stake_wei,
        min_unstake_delay: config.min_unstake_delay_secs,
    });
    let head = Head::latest(&provider).await?;
    let pool = Pool::new(
        PoolConfig {
            door: config.door.clone(),
            limits: config.pool,
            mode: config.bundler.mode,
        },
        sim.clone(),
        commutative(
            config.entry_point,
            identity.relayer,
            identity.beneficiary,
            identity.venue,
        ),
        PoolDeps {
            provider: provider.clone(),
            handle: tokio::runtime::Handle::current(),
            store: store.clone(),
            metrics: metrics.clone(),
        },
        head,
    )
    .await?;
    let in_flight = Arc::new(InFlight::default());
    let sent = Arc::new(tokio::sync::Notify::new());
    let bundler = Bundler::new(
        BundlerDeps {
            pool: pool.clone(),
            in_flight: in_flight.clone(),
            provider: provider.clone(),
            wallet,
            sim,
            beneficiary: identity.beneficiary,
            metrics: metrics.clone(),
            sent: sent.clone(),
        },
        config.bundler.clone(),
    );
    let chain = Chain::new(
        pool.clone(),
        in_flight.clone(),
        provider.clone(),
        config.entry_point,
        identity.relayer,
        config.bundler.clone(),
        metrics,
    );
    let resumed = chain.recover(unfinished, recently_included).await?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed unfinished ops from the store");
    }
    let every = Duration::from_millis(config.bundler.interval_ms);
    let service = Service::new(
        identity, pool, chain, bundler, in_flight, provider, store, sent, every,
    );
    Ok((Arc::new(service), resumed))
}

impl Relayer {
    /// Connects to the chain, opens the store, resumes unfinished ops and starts serving.
    pub async fn start(config: Config) -> Result<Self, RelayerError> {
        config.check()?;
        let metrics = Arc::new(Metrics::default());
        let (store, cluster, key) = open_store(&config, &metrics).await?;
        let (provider, identity) = connect(&config, key.address()).await?;
        let wallet = EthereumWallet::from(key);
        let (service, resumed) = assemble(
            &config,
            provider.clone(),
            identity,
            wallet,
            store,
            metrics.clone(),
        )
        .await?;
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let matcher = match (&config.matcher.settler_key, identity.venue) {
            (Some(_), Some(venue)) => {
                let (m, t) = matcher::Matcher::start(
                    config.matcher.clone(),
                    provider.clone(),
                    venue,
                    identity.chain_id,
                    keyscope_core::deploy::account_implementation(config.entry_point),
                    config.bundler.reorg_depth,
                    &config.data_dir,
                    rx.clone(),
                )
                .await?;
                tracing::info!(settler = %m.settler(), %venue, "matcher for signed orders running");
                tasks.extend(t);
                Some(m)
            }
            _ => None,
        };
        let feed = tokio::sync::broadcast::channel(4096).0;
        // API keys live beside the redb store; a Postgres deployment serves none (config.check refuses
        // requiring them there).
        let api_keys = match (config.api_keys.enabled, &config.store) {
            (true, None) => Some(Arc::new(rpc::api_keys::ApiKeys::new(
                store::api_keys::ApiKeyTable::open(&config.data_dir.join("api_keys.redb"))?,
                provider.clone(),
                identity.chain_id,
                config.api_keys.clone(),
            ))),
            _ => None,
        };
        let access = Arc::new(rpc::AccessPolicy {
            admin_token: config.admin_token.clone(),
            loopback: config.listen.ip().is_loopback(),
            allowed_origins: config.allowed_origins.clone(),
            api_keys: api_keys.clone(),
        });
        let module = rpc::module(
            rpc::RpcContext {
                service: service.clone(),
                metrics: metrics.clone(),
                feed: feed.clone(),
                min_stake: (config.min_stake_wei, config.min_unstake_delay_secs),
                access: access.clone(),
                cluster: cluster.clone(),
                matcher,
                api_keys: api_keys.clone(),
            },
            config.debug_api,
        )
        .expect("method names are unique");
        let listen = config.listen;
        let listen_err = |e: std::io::Error| RelayerError::Listen {
            addr: listen,
            reason: e.to_string(),
        };
        let limits = &config.server;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(listen_err)?;
        let rpc_addr = listener.local_addr().map_err(listen_err)?;
        if let Some(cluster) = &cluster {
            cluster.set_url(
                config
                    .cluster
                    .advertise
                    .clone()
                    .unwrap_or_else(|| format!("http://{rpc_addr}")),
            );
        }
        let builder = Server::builder()
            .set_config(
                ServerConfig::builder()
                    .max_connections(limits.max_connections as u32)
                    .max_request_body_size(limits.max_request_bytes)
                    .enable_ws_ping(
                        PingConfig::new()
                            .ping_interval(Duration::from_secs(
                                limits.ws_inactive_secs.div_ceil(3).max(1),
                            ))
                            .inactive_limit(Duration::from_secs(limits.ws_inactive_secs.max(1)))
                            .max_failures(3),
                    )
                    .build(),
            )
            .set_http_middleware(tower::ServiceBuilder::new().layer(rpc::AccessLayer(access)))
            .set_rpc_middleware(
                jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new()
                    .layer(rpc::WsOnlyLayer)
                    .layer(rpc::auth::GateLayer {
                        keys: api_keys,
                        require: config.api_keys.require,
                        metrics: metrics.clone(),
                    }),
            )
            .to_service_builder();
        let tls = match &config.tls {
            Some(t) => Some(rpc::tls::Tls::load(t).map_err(|e| RelayerError::Listen {
                addr: listen,
                reason: e.to_string(),
            })?),
            None => None,
        };
        let (stop_handle, server) = stop_channel();
        tokio::spawn(rpc::serve(
            listener,
            builder,
            module.into(),
            stop_handle,
            rpc::ConnectionLimits {
                total: limits.max_connections,
                per_client: limits.max_connections_per_client,
                per_subnet: limits.max_connections_per_subnet,
                reserved: limits
                    .reserved_connections
                    .unwrap_or(limits.max_connections / 4),
                header_timeout: Duration::from_secs(limits.header_timeout_secs.max(1)),
                request_timeout: Duration::from_secs(limits.request_timeout_secs),
                max_request_bytes: limits.max_request_bytes,
            },
            {
                let service = service.clone();
                Arc::new(move || {
                    let service = service.clone();
                    Box::pin(async move { service.ready().await })
                })
            },
            tls,
        ));

        tasks.extend([
            tokio::spawn(service.clone().run(rx.clone())),
            tokio::spawn(decay_reputation(service.pool.clone(), rx.clone())),
        ]);
        if let Some(cluster) = cluster {
            tasks.push(tokio::spawn(cluster.run(service.clone(), rx.clone())));
        }
        if let Some(venue) = identity.venue {
            let every = Duration::from_millis(config.bundler.interval_ms.max(50));
            tasks.push(tokio::spawn(feed::run(
                provider,
                venue,
                every,
                feed,
                rx.clone(),
            )));
        }
        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                let (addr, task) = serve_metrics(metrics, addr, rx).await?;
                tasks.push(task);
                Some(addr)
            }
            None => None,
        };
        tracing::info!(%rpc_addr, relayer = %identity.relayer, chain_id = identity.chain_id, "relayer serving");
        Ok(Self {
            rpc_addr,
            metrics_addr,
            service,
            resumed,
            tls: config.tls.is_some(),
            server,
            shutdown,
            tasks,
        })
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

async fn decay_reputation(pool: Pool, mut shutdown: watch::Receiver<bool>) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    hourly.tick().await;
    loop {
        tokio::select! {
            _ = hourly.tick() => pool.decay_reputation(),
            _ = shutdown.changed() => break,
        }
    }
}

async fn serve_metrics(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), RelayerError> {
    use axum::{Router, http::header, routing::get};
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_others_can_read_is_refused_without_showing_the_key() {
        let dir = std::env::temp_dir().join(format!("keyscope-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bundle.key");
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        std::fs::write(&path, key).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = super::read_key_file(&path).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("59c6995e"), "the key leaked: {e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(super::read_key_file(&path).unwrap(), key);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
