//! The relayer's configuration: a TOML file, every field optional with a working default for a local
//! devnet; the CLI's flags and `KEYSCOPE_RELAYER_*` environment variables override the file.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

use crate::records::PoolLimits;

/// Errors from reading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not a valid configuration (a wrong type, an unknown field).
    #[error("config {path} is not valid: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, as TOML tells it.
        reason: String,
    },
    /// A setting that would make the relayer misbehave.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What it must be.
        reason: String,
    },
}

/// Automatic bundling on a timer, or manual (`debug_bundler_sendBundleNow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundlingMode {
    /// Bundle whenever ops wait.
    Auto,
    /// Bundle only on `debug_bundler_sendBundleNow`.
    Manual,
}

/// How bundles are built and tracked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BundlerConfig {
    /// Automatic or manual bundling.
    pub mode: BundlingMode,
    /// How often the bundler looks for a new head and for ops to bundle.
    pub interval_ms: u64,
    /// Ops one bundle carries at most.
    pub max_ops_per_bundle: usize,
    /// Bundles sent and not yet mined at once (consecutive nonces of the relayer's key).
    pub max_in_flight: usize,
    /// Sum of the ops' gas limits a bundle may carry: under the block gas limit, and under EIP-7825's cap
    /// on a transaction's gas (2^24) on chains past Osaka.
    pub max_bundle_gas: u64,
    /// A bundle transaction not mined after this long, and gone from the node, is sent again.
    pub resubmit_after_secs: u64,
    /// A bundle transaction still pending this long is re-sent at the same nonce with higher fees
    /// (at most what its ops offer).
    pub bump_after_secs: u64,
    /// How many blocks back mined bundles are watched for reorgs.
    pub reorg_depth: u64,
    /// A bundle is sent only if its ops repay its gas cost plus this share of it, in percent (negative:
    /// the relayer accepts that share of loss; -100 sends whatever it costs).
    pub min_profit_percent: i64,
    /// How long ops whose bundle would not repay its cost wait for more ops to share it; then they are
    /// dropped, with the reason.
    pub profit_wait_ms: u64,
}

impl Default for BundlerConfig {
    fn default() -> Self {
        Self {
            mode: BundlingMode::Auto,
            interval_ms: 200,
            max_ops_per_bundle: 64,
            max_in_flight: 4,
            max_bundle_gas: 16_000_000,
            resubmit_after_secs: 30,
            bump_after_secs: 20,
            reorg_depth: 64,
            min_profit_percent: 0,
            profit_wait_ms: 10_000,
        }
    }
}

/// What the JSON-RPC server lets in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Connections (HTTP and WebSocket) held at once, in total.
    pub max_connections: usize,
    /// Connections held at once from one client address.
    pub max_connections_per_client: usize,
    /// Connections held at once from one subnet (an IPv4 /24, an IPv6 /64).
    pub max_connections_per_subnet: usize,
    /// Of `max_connections`, the last this many only for clients holding no connection: however many
    /// addresses fill the rest, a new client still gets in [default: a quarter of `max_connections`].
    pub reserved_connections: Option<usize>,
    /// The largest request body, in bytes.
    pub max_request_bytes: u32,
    /// A WebSocket that answers no ping for this long is closed.
    pub ws_inactive_secs: u64,
    /// An HTTP connection that does not send a whole request head in this long — a slow client, or an
    /// idle keep-alive connection — is closed.
    pub header_timeout_secs: u64,
    /// A request whose head and body do not arrive in this long is answered 408 Request Timeout and its
    /// connection closed (the head is held to the shorter of this and `header_timeout_secs`, the body to
    /// this from the head).
    pub request_timeout_secs: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_client: 128,
            max_connections_per_subnet: 512,
            reserved_connections: None,
            max_request_bytes: 1 << 20,
            ws_inactive_secs: 60,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
        }
    }
}

/// What the door checks before simulating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DoorConfig {
    /// Token-bucket refill rate per session key (or per account, for owner ops); 0 turns it off.
    pub ops_per_second_per_key: f64,
    /// Token-bucket size: the burst a key may send at once.
    pub burst_per_key: f64,
    /// Ops from senders this relayer has not accepted an op from before, per second per client address
    /// (a flood of fresh senders costs a simulation each and passes every per-sender limit); 0: off.
    pub fresh_senders_per_second_per_client: f64,
    /// The burst of fresh senders one client address may send at once.
    pub fresh_senders_burst_per_client: f64,
    /// An op must stay valid at least this long after it arrives.
    pub min_valid_for_secs: u64,
    /// Refuse ops whose calls would revert (they would pay gas for nothing), with the decoded reason.
    pub reject_reverting_ops: bool,
    /// The largest verificationGasLimit accepted.
    pub max_verification_gas: u64,
    /// The largest callGasLimit accepted.
    pub max_call_gas: u64,
}

impl Default for DoorConfig {
    fn default() -> Self {
        Self {
            ops_per_second_per_key: 100.0,
            burst_per_key: 200.0,
            fresh_senders_per_second_per_client: 20.0,
            fresh_senders_burst_per_client: 200.0,
            // The floor the tools size a key's op ttl by, defined once in core.
            min_valid_for_secs: keyscope_core::scope::RELAYER_MIN_VALID_FOR.as_secs(),
            reject_reverting_ops: true,
            max_verification_gas: 10_000_000,
            max_call_gas: 10_000_000,
        }
    }
}

/// Running several instances on one Postgres store (`store = "postgres://…"`).
///
/// Senders are split into `shards`; each shard is leased to one instance at a time, which alone validates,
/// bundles and records its senders' ops (an op sent to another instance is forwarded to it). Each instance
/// also leases one bundle key of those it is given, so no two instances sign with the same key. A lease
/// not renewed for `lease_ms` may be taken over; taking it over raises its epoch, and a write made under
/// the old epoch is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This instance's name, unique in the deployment and the same across its restarts [default: the
    /// listen address].
    pub instance: Option<String>,
    /// The URL other instances forward this instance's senders' ops to [default: `http://` + `listen`].
    pub advertise: Option<String>,
    /// Sender shards in the deployment: fixed by its first instance [default: 16].
    pub shards: u16,
    /// How long a lease lasts without renewal (ms): an instance that died is replaced after about this
    /// long [default: 5000].
    pub lease_ms: u64,
    /// How often leases are renewed and shards rebalanced (ms); well under `lease_ms` [default: 1000].
    pub renew_ms: u64,
    /// More bundle keys (hex) this instance may lease, besides its own `relayer_key`: with one list shared
    /// by every instance, a restarted instance takes whichever key is free. Prefer
    /// KEYSCOPE_RELAYER_BUNDLE_KEYS (comma-separated).
    pub bundle_keys: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instance: None,
            advertise: None,
            shards: 16,
            lease_ms: 5000,
            renew_ms: 1000,
            bundle_keys: Vec::new(),
        }
    }
}

/// The matcher for signed orders (`keyscope_placeOrder` and the rest): a book per market of the configured
/// venue, and a settlement loop that settles matched fills through the venue's `settle`, sent from
/// `settler_key` — a key the venue's owner allowed (`PerpVenue.setSettler`), other than `relayer_key` (each
/// key's nonces are its own sender's). Unset `settler_key`: no matcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatcherConfig {
    /// The settler key (hex). Prefer KEYSCOPE_RELAYER_SETTLER_KEY.
    pub settler_key: Option<String>,
    /// How often matched fills go out in one settlement transaction (ms) [default: 250].
    pub settle_interval_ms: u64,
    /// Most fills in one settlement transaction [default: 64].
    pub max_fills_per_batch: usize,
    /// How often the journal is flushed to disk (ms): a kill -9 loses nothing acknowledged at any setting
    /// (every line is written before its answer); a power loss may lose up to this much [default: 20].
    pub sync_ms: u64,
    /// How often keys with resting orders and their accounts' margins are read again from the chain (ms):
    /// a revoke, an epoch bump or a tripped breaker takes their orders off within about this [default: 500].
    pub watch_ms: u64,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            settler_key: None,
            settle_interval_ms: 250,
            max_fills_per_batch: 64,
            sync_ms: 20,
            watch_ms: 500,
        }
    }
}

/// TLS on the JSON-RPC listener (HTTP and WebSocket on one port): a certificate chain and its key, PEM
/// files read again when they change (every `reload_secs`), so a renewed certificate is served without a
/// restart; a reload that fails keeps the certificate in use and logs why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM): the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1), readable by the relayer's user only.
    pub key: PathBuf,
    /// Mutual TLS: a PEM bundle of CA certificates; set, only clients presenting a certificate one of
    /// them issued get a connection. Read once at start.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// A client that does not finish its TLS handshake in this long is disconnected (seconds) [default: 10].
    #[serde(default = "TlsConfig::default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    /// How often the certificate and key files are checked for a change (seconds) [default: 5].
    #[serde(default = "TlsConfig::default_reload_secs")]
    pub reload_secs: u64,
}

impl TlsConfig {
    fn default_handshake_timeout_secs() -> u64 {
        10
    }

    fn default_reload_secs() -> u64 {
        5
    }

    /// TLS with `cert` and `key`, the other settings at their defaults.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self {
            cert,
            key,
            client_ca: None,
            handshake_timeout_secs: Self::default_handshake_timeout_secs(),
            reload_secs: Self::default_reload_secs(),
        }
    }
}

/// Who must sign their requests with an API key (see `keyscope_core::api_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequireKeys {
    /// Nobody: a request without a key is served as before (standard ERC-4337 clients, the spec tests).
    None,
    /// The signed-order methods (`keyscope_placeOrder` and the rest) need a key; the others do not.
    Orders,
    /// Every method but the probes needs a key.
    All,
}

/// API keys bound to accounts and signed requests: who must sign, how fresh a request must be, how long an
/// owner's ERC-1271 check is trusted, and the quotas and behaviour score of each key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// Serve `keyscope_registerApiKey` and the rest, and take signed requests [default: true].
    pub enabled: bool,
    /// Who must sign [default: none].
    pub require: RequireKeys,
    /// The longest receive window a request may name (ms) [default: 60000].
    pub max_window_ms: u64,
    /// How far ahead of the relayer's clock a timestamp may be (ms) [default: 1000].
    pub max_future_ms: u64,
    /// A registration or revocation signed longer ago than this is refused (s) [default: 600].
    pub max_signed_age_secs: u64,
    /// The account's ERC-1271 answer for a key's registration is trusted this long, then asked again:
    /// a key stops working at most this long after its account's owner changes (ms) [default: 2000].
    pub owner_recheck_ms: u64,
    /// Signatures remembered per key to refuse a replay within its window [default: 4096].
    pub replay_cache_per_key: usize,
    /// Requests per second per key [default: 50].
    pub requests_per_sec: f64,
    /// The burst of requests above that rate [default: 100].
    pub requests_burst: f64,
    /// Orders and ops (placing, replacing, sending) per second per key [default: 20].
    pub orders_per_sec: f64,
    /// The burst of orders and ops above that rate [default: 40].
    pub orders_burst: f64,
    /// Cancels per second a key always gets, however throttled or banned it is [default: 5].
    pub cancel_floor_per_sec: f64,
    /// Requests (HTTP) and WebSocket connections one key holds at once [default: 32].
    pub max_connections_per_key: usize,
    /// Share of refused orders/ops and invalid signatures above which a key is slowed to half its rates,
    /// once it has `min_samples` [default: 0.25].
    pub slow_ratio: f64,
    /// The share above which it is banned [default: 0.5].
    pub ban_ratio: f64,
    /// Outcomes (decayed) a key needs before its share counts [default: 20].
    pub min_samples: u64,
    /// The first ban's length (ms), doubled for each ban since the key last behaved [default: 10000].
    pub ban_base_ms: u64,
    /// The longest ban (ms) [default: 3600000].
    pub ban_max_ms: u64,
    /// A key's counts halve every this long (ms), and one ban is forgotten per this long without one
    /// [default: 300000].
    pub forget_ms: u64,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            require: RequireKeys::None,
            max_window_ms: 60_000,
            max_future_ms: 1_000,
            max_signed_age_secs: 600,
            owner_recheck_ms: 2_000,
            replay_cache_per_key: 4_096,
            requests_per_sec: 50.0,
            requests_burst: 100.0,
            orders_per_sec: 20.0,
            orders_burst: 40.0,
            cancel_floor_per_sec: 5.0,
            max_connections_per_key: 32,
            slow_ratio: 0.25,
            ban_ratio: 0.5,
            min_samples: 20,
            ban_base_ms: 10_000,
            ban_max_ms: 3_600_000,
            forget_ms: 300_000,
        }
    }
}

/// The relayer's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The chain's JSON-RPC endpoint.
    pub rpc_url: String,
    /// JSON-RPC over HTTP and WebSocket (same port; served at `/` and `/rpc`).
    pub listen: SocketAddr,
    /// Prometheus metrics at `/metrics`; unset: no metrics server.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the embedded store lives (`relayer.redb`), when `store` is unset.
    pub data_dir: PathBuf,
    /// A Postgres URL (`postgres://user@host:port/db`) to keep the store in, shared by every instance of
    /// the deployment ([`ClusterConfig`]); unset: the embedded redb file in `data_dir`.
    pub store: Option<String>,
    /// Several instances on one Postgres store: sender shards and bundle keys leased to instances.
    pub cluster: ClusterConfig,
    /// The EntryPoint served (v0.8 at its canonical address by default).
    pub entry_point: Address,
    /// A `deployments/<chainId>.json`: gives the venue for trading-aware features.
    pub deployment: Option<PathBuf>,
    /// The venue, if not from `deployment`.
    pub venue: Option<Address>,
    /// The key that signs bundles (hex). Prefer `keystore` (+ KEYSCOPE_RELAYER_PASSWORD) outside devnets.
    pub relayer_key: Option<String>,
    /// A keystore file holding the key that signs bundles.
    pub keystore: Option<PathBuf>,
    /// A file holding the key that signs bundles (hex), readable by its owner only.
    pub relayer_key_file: Option<PathBuf>,
    /// The keystore's password: never read from the file, only from KEYSCOPE_RELAYER_PASSWORD.
    #[serde(skip)]
    pub keystore_password: Option<String>,
    /// Who receives the ops' gas payments [default: the relayer's address].
    pub beneficiary: Option<Address>,
    /// Serve the `debug_bundler_*` methods (tests and devnets only).
    pub debug_api: bool,
    /// Admin methods (`debug_bundler_*`, `keyscope_auditLog`) need `Authorization: Bearer <token>`.
    /// Unset: they are served only when `listen` is a loopback address. Prefer KEYSCOPE_RELAYER_ADMIN_TOKEN.
    pub admin_token: Option<String>,
    /// Origins a browser page may call from (`"*"`: any). Requests with another `Origin` get 403.
    pub allowed_origins: Vec<String>,
    /// Start with the debug methods on a public network's chain id (mainnets and public testnets).
    pub allow_debug_on_public_chain: bool,
    /// Stake an entity needs to count as staked (ERC-7562 MIN_STAKE_VALUE, in wei): what an attacker must
    /// lock up to earn the staked relaxations. The ERC leaves the value to each chain; the default, 1 ETH,
    /// is meant for chains whose native token is ETH (Ethereum and its rollups) — set it for any other.
    pub min_stake_wei: U256,
    /// The unstake delay a staked entity needs (ERC-7562 MIN_UNSTAKE_DELAY, in seconds).
    pub min_unstake_delay_secs: u32,
    /// Connection and request limits.
    pub server: ServerLimits,
    /// How bundles are built and tracked.
    pub bundler: BundlerConfig,
    /// Pool limits.
    pub pool: PoolLimits,
    /// What the door checks before simulating.
    pub door: DoorConfig,
    /// The matcher for signed orders.
    pub matcher: MatcherConfig,
    /// TLS on `listen`; unset: plain HTTP and WebSocket, allowed on a loopback address only unless
    /// `allow_plaintext`.
    pub tls: Option<TlsConfig>,
    /// API keys and signed requests.
    pub api_keys: ApiKeysConfig,
    /// Serve plain HTTP on a non-loopback `listen` (behind a proxy that terminates TLS, on a private
    /// network): without it such a relayer refuses to start.
    pub allow_plaintext: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rpc_url: "http://127.0.0.1:8545".into(),
            listen: "127.0.0.1:4337".parse().expect("address"),
            metrics_listen: None,
            data_dir: PathBuf::from(".keyscope/relayer"),
            store: None,
            cluster: ClusterConfig::default(),
            entry_point: keyscope_core::ENTRY_POINT_V08,
            deployment: None,
            venue: None,
            relayer_key: None,
            keystore: None,
            relayer_key_file: None,
            keystore_password: None,
            beneficiary: None,
            debug_api: false,
            admin_token: None,
            allowed_origins: Vec::new(),
            allow_debug_on_public_chain: false,
            min_stake_wei: U256::from(10u64).pow(U256::from(18u64)),
            min_unstake_delay_secs: 86_400,
            server: ServerLimits::default(),
            bundler: BundlerConfig::default(),
            pool: PoolLimits::default(),
            door: DoorConfig::default(),
            matcher: MatcherConfig::default(),
            tls: None,
            api_keys: ApiKeysConfig::default(),
            allow_plaintext: false,
        }
    }
}

/// Chain ids of public networks (mainnets and their public testnets) the debug methods refuse.
pub const PUBLIC_CHAINS: &[u64] = &[
    1, 10, 56, 100, 130, 137, 324, 480, 1101, 5000, 8453, 42161, 42170, 43114, 59144, 81457,
    534352, 7777777, 11155111, 17000, 560048, 84532, 11155420, 421614, 80002, 43113, 97,
];

impl Config {
    /// Reads a TOML file; missing fields take their defaults, unknown fields are errors.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses a configuration from TOML text. The error names the line and the fault, never the text
    /// of the line: it may hold a key or a token.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                // The line the fault starts on: newlines before it, plus one (a fault at the start of a
                // line, such as an unknown key inside a `[section]`, is on that line, not the one before).
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(n) => format!("line {n}: {}", e.message()),
                None => e.message().to_string(),
            }
        })
    }

    /// Refuses the debug methods on a public network's chain id unless forced.
    pub fn check_chain(&self, chain_id: u64) -> Result<(), ConfigError> {
        if self.debug_api && !self.allow_debug_on_public_chain && PUBLIC_CHAINS.contains(&chain_id)
        {
            return Err(ConfigError::Invalid {
                field: "debug_api",
                reason: format!(
                    "chain {chain_id} is a public network: the debug methods clear pools and ban \
                     entities; set allow_debug_on_public_chain to force it"
                ),
            });
        }
        Ok(())
    }

    #[cfg(feature = "devnet")]
    /// A relayer for a local devnet: its endpoint and deployment, anvil's key 1 signing bundles, and
    /// the debug methods on.
    pub fn for_devnet(
        devnet: &keyscope_core::devnet::Devnet,
        listen: SocketAddr,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            rpc_url: devnet.endpoint(),
            listen,
            data_dir,
            relayer_key: Some(devnet.keys()[1].to_string()),
            deployment: Some(devnet.deployment_file.clone()),
            debug_api: true,
            matcher: MatcherConfig {
                settler_key: Some(
                    devnet.keys()[keyscope_core::devnet::SETTLER_KEY_INDEX].to_string(),
                ),
                ..MatcherConfig::default()
            },
            ..Self::default()
        }
    }

    /// Checks values that would make the relayer misbehave rather than fail.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.store.is_some() && self.api_keys.require != RequireKeys::None {
            return Err(ConfigError::Invalid {
                field: "api_keys.require",
                reason:
                    "API keys are kept in the redb store; the Postgres deployment does not serve \
                         them yet: set require = \"none\" (or run one instance on redb)"
                        .into(),
            });
        }
        let m = &self.matcher;
        if m.settler_key.is_some() {
            let bad = |field, reason: &str| {
                Err(ConfigError::Invalid {
                    field,
                    reason: reason.into(),
                })
            };
            if self.venue.is_none() && self.deployment.is_none() {
                return bad(
                    "matcher.settler_key",
                    "the matcher settles at a venue: set deployment or venue",
                );
            }
            if self.store.is_some() {
                return bad(
                    "matcher.settler_key",
                    "the matcher runs on one instance with its journal in data_dir; it is not built for a \
                     deployment of several instances on Postgres yet",
                );
            }
            if m.settler_key == self.relayer_key {
                return bad(
                    "matcher.settler_key",
                    "must differ from relayer_key: settlements and bundles each need their own nonces",
                );
            }
            if m.settle_interval_ms == 0 || m.sync_ms == 0 || m.watch_ms == 0 {
                return bad(
                    "matcher",
                    "settle_interval_ms, sync_ms and watch_ms must be above zero",
                );
            }
            if m.max_fills_per_batch == 0 || m.max_fills_per_batch > 512 {
                return bad("matcher.max_fills_per_batch", "must be 1 to 512");
            }
        }
        if let Some(url) = &self.store {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::Invalid {
                    field: "store",
                    reason: "must be a postgres:// URL (unset: the embedded store in data_dir)"
                        .into(),
                });
            }
            let c = &self.cluster;
            if c.shards == 0 || c.shards > 4096 {
                return Err(ConfigError::Invalid {
                    field: "cluster.shards",
                    reason: "must be 1 to 4096".into(),
                });
            }
            if c.renew_ms == 0 || c.lease_ms < 3 * c.renew_ms {
                return Err(ConfigError::Invalid {
                    field: "cluster.lease_ms",
                    reason: format!(
                        "must be at least three renewals (renew_ms {}), so one late renewal does not \
                         lose the lease",
                        c.renew_ms
                    ),
                });
            }
        }
        let server = &self.server;
        if server
            .reserved_connections
            .is_some_and(|r| r >= server.max_connections)
        {
            return Err(ConfigError::Invalid {
                field: "server.reserved_connections",
                reason: format!(
                    "must be under max_connections ({}): the rest serve clients holding a connection",
                    server.max_connections
                ),
            });
        }
        if server.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "server.request_timeout_secs",
                reason: "must be at least 1".into(),
            });
        }
        if self.bundler.max_ops_per_bundle == 0 {
            return Err(ConfigError::Invalid {
                field: "bundler.max_ops_per_bundle",
                reason: "must be at least 1".into(),
            });
        }
        if self.bundler.max_in_flight == 0 {
            return Err(ConfigError::Invalid {
                field: "bundler.max_in_flight",
                reason: "must be at least 1".into(),
            });
        }
        if self.debug_api && !self.listen.ip().is_loopback() && self.admin_token.is_none() {
            return Err(ConfigError::Invalid {
                field: "debug_api",
                reason: format!(
                    "the debug methods would be open to anyone who reaches {}: listen on a loopback \
                     address, or set admin_token (KEYSCOPE_RELAYER_ADMIN_TOKEN)",
                    self.listen
                ),
            });
        }
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Invalid {
                field: "admin_token",
                reason: "must be at least 16 characters".into(),
            });
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_plaintext {
            return Err(ConfigError::Invalid {
                field: "listen",
                reason: format!(
                    "{} is not a loopback address and TLS is off: anyone on the path could read and \
                     alter every request; set [tls] cert and key (`keyscope relayer tls-init` writes a \
                     development pair), or allow_plaintext = true behind a proxy that terminates TLS",
                    self.listen
                ),
            });
        }
        if let Some(tls) = &self.tls {
            if self.store.is_some() {
                return Err(ConfigError::Invalid {
                    field: "tls",
                    reason: "instances of a deployment on Postgres forward ops to each other at their \
                             plain-HTTP addresses, which a TLS listener would not answer: run them in \
                             plain (allow_plaintext) behind a proxy that terminates TLS"
                        .into(),
                });
            }
            if tls.handshake_timeout_secs == 0 || tls.reload_secs == 0 {
                return Err(ConfigError::Invalid {
                    field: "tls",
                    reason: "handshake_timeout_secs and reload_secs must be at least 1".into(),
                });
            }
        }
        if self.server.max_connections == 0
            || self.server.max_connections_per_client == 0
            || self.server.max_connections_per_subnet == 0
            || self.server.max_request_bytes < 4096
        {
            return Err(ConfigError::Invalid {
                field: "server",
                reason: "connection limits must be at least 1 and max_request_bytes at least 4096"
                    .into(),
            });
        }
        if self.pool.max_ops_per_sender == 0 {
            return Err(ConfigError::Invalid {
                field: "pool.max_ops_per_sender",
                reason: "must be at least 1".into(),
            });
        }
        if self.pool.max_ops_per_other_sender == 0 {
            return Err(ConfigError::Invalid {
                field: "pool.max_ops_per_other_sender",
                reason: "must be at least 1".into(),
            });
        }
        if self.bundler.min_profit_percent < -100 {
            return Err(ConfigError::Invalid {
                field: "bundler.min_profit_percent",
                reason: "must be at least -100 (send whatever it costs)".into(),
            });
        }
        if self.bundler.interval_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "bundler.interval_ms",
                reason: "must be at least 1".into(),
            });
        }
        if self.door.ops_per_second_per_key < 0.0
            || self.door.burst_per_key < 1.0 && self.door.ops_per_second_per_key > 0.0
        {
            return Err(ConfigError::Invalid {
                field: "door",
                reason: "rate must be ≥ 0 and burst ≥ 1".into(),
            });
        }
        if self.relayer_key.is_none() && self.keystore.is_none() && self.relayer_key_file.is_none()
        {
            return Err(ConfigError::Invalid {
                field: "relayer_key",
                reason: "set keystore (+ KEYSCOPE_RELAYER_PASSWORD), relayer_key_file (mode 0600) or relayer_key (KEYSCOPE_RELAYER_KEY): bundles must be signed".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The project's README, whose configuration examples these tests hold to the code.
    fn readme() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap()
    }

    #[test]
    fn the_readme_api_keys_block_is_the_defaults_and_postgres_refuses_requiring_keys() {
        let readme = readme();
        let block = readme
            .split("```toml\n[api_keys]\n")
            .nth(1)
            .expect("the README's [api_keys] example")
            .split("```")
            .next()
            .unwrap();
        let c = Config::parse(&format!("[api_keys]\n{block}")).unwrap();
        assert_eq!(c.api_keys, ApiKeysConfig::default());
        let mut pg = Config {
            store: Some("postgres://relayer@db/keyscope".into()),
            ..Config::default()
        };
        pg.api_keys.require = RequireKeys::Orders;
        match pg.check() {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "api_keys.require"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_line_is_named_without_its_text() {
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let err = Config::parse(&format!(
            "listen = \"127.0.0.1:1\"\nrelayer_key = \"{key}\" x\n"
        ))
        .unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(!err.contains("59c6995e"), "the key leaked: {err}");
    }

    #[test]
    fn a_typo_inside_a_section_is_named_on_its_own_line() {
        let err = Config::parse("listen = \"127.0.0.1:1\"\n[pool]\nmax_opps = 3\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        let err = Config::parse("[bundler]\nmode = \"auto\"\n\n[server]\nmax_conections = 1\n")
            .unwrap_err();
        assert!(err.starts_with("line 5:"), "{err}");
    }

    #[test]
    fn open_debug_methods_need_loopback_or_a_token() {
        let mut c = Config {
            relayer_key: Some("0x01".into()),
            debug_api: true,
            listen: "0.0.0.0:4337".parse().unwrap(),
            ..Config::default()
        };
        assert!(c.check().unwrap_err().to_string().contains("loopback"));
        c.admin_token = Some("short".into());
        assert!(c.check().unwrap_err().to_string().contains("16 characters"));
        c.admin_token = Some("sixteen-chars-ok".into());
        c.allow_plaintext = true;
        c.check().unwrap();
        c.allow_plaintext = false;
        c.admin_token = None;
        c.listen = "127.0.0.1:4337".parse().unwrap();
        c.check().unwrap();
    }

    #[test]
    fn partial_files_keep_defaults_and_unknown_fields_are_refused() {
        let c = Config::parse("listen = \"0.0.0.0:9000\"\n[bundler]\nmode = \"manual\"\n").unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.bundler.mode, BundlingMode::Manual);
        assert_eq!(c.bundler.max_ops_per_bundle, 64);
        assert_eq!(c.pool.max_ops_per_sender, 64);
        let err = Config::parse("listne = \"0.0.0.0:9000\"").unwrap_err();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn the_readme_operator_config_parses() {
        let readme = readme();
        let section = readme
            .split("## Running the relayer")
            .nth(1)
            .expect("the README has the operator section");
        let toml = section
            .split("```toml")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        let c = Config::parse(toml)
            .unwrap_or_else(|e| panic!("the README's config does not parse: {e}"));
        assert_eq!(c.listen.port(), 4337);
        assert_eq!(c.bundler.max_ops_per_bundle, 64);
        assert_eq!(c.door.burst_per_key, 200.0);
        // Every default is written down: the README block is the default config.
        assert_eq!(
            Config {
                keystore: None,
                deployment: None,
                metrics_listen: None,
                ..c
            },
            Config::default()
        );
    }

    #[test]
    fn a_postgres_store_needs_a_sane_cluster() {
        let ok = Config {
            relayer_key: Some("0x01".into()),
            store: Some("postgres://relayer@db/keyscope".into()),
            ..Default::default()
        };
        ok.check().unwrap();
        let bad = |f: fn(&mut Config)| {
            let mut c = ok.clone();
            f(&mut c);
            c.check().unwrap_err().to_string()
        };
        let e = bad(|c| c.store = Some("mysql://db/keyscope".into()));
        assert!(e.contains("postgres:// URL"), "{e}");
        let e = bad(|c| c.cluster.shards = 0);
        assert!(e.contains("cluster.shards"), "{e}");
        let e = bad(|c| c.cluster.lease_ms = 2 * c.cluster.renew_ms);
        assert!(
            e.contains("cluster.lease_ms") && e.contains("three renewals"),
            "{e}"
        );
        let c = Config::parse("[cluster]\nshards = 8\nlease_ms = 1500\nrenew_ms = 250\n").unwrap();
        assert_eq!((c.cluster.shards, c.cluster.lease_ms), (8, 1500));
        let e = Config::parse("[cluster]\nshard = 8\n").unwrap_err();
        assert!(e.contains("shard"), "{e}");
    }

    #[test]
    fn connection_limits_that_leave_no_room_are_refused() {
        let ok = Config {
            relayer_key: Some("0x01".into()),
            ..Default::default()
        };
        ok.check().unwrap();
        let mut c = ok.clone();
        c.server.reserved_connections = Some(c.server.max_connections);
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("server.reserved_connections"), "{e}");
        let mut c = ok.clone();
        c.server.request_timeout_secs = 0;
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("server.request_timeout_secs"), "{e}");
        let mut c = ok.clone();
        c.server.max_connections_per_subnet = 0;
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("connection limits must be at least 1"), "{e}");
        let mut c = ok;
        c.pool.max_ops_per_other_sender = 0;
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("pool.max_ops_per_other_sender"), "{e}");
    }

    #[test]
    fn a_relayer_without_a_key_is_refused() {
        let err = Config::default().check().unwrap_err().to_string();
        assert!(err.contains("relayer_key"), "{err}");
        let c = Config {
            relayer_key: Some("0x01".into()),
            ..Default::default()
        };
        c.check().unwrap();
    }

    #[test]
    fn plain_http_beyond_loopback_needs_tls_or_allow_plaintext() {
        let mut c = Config {
            relayer_key: Some("0x01".into()),
            listen: "0.0.0.0:4337".parse().unwrap(),
            ..Config::default()
        };
        let e = c.check().unwrap_err().to_string();
        assert!(
            e.contains("listen") && e.contains("TLS is off") && e.contains("allow_plaintext"),
            "{e}"
        );
        c.listen = "[::]:4337".parse().unwrap();
        assert!(c.check().is_err(), "every IPv6 interface is not loopback");
        c.allow_plaintext = true;
        c.check().unwrap();
        c.allow_plaintext = false;
        c.tls = Some(TlsConfig::new("cert.pem".into(), "key.pem".into()));
        c.check().unwrap();
        let mut cluster = c.clone();
        cluster.store = Some("postgres://relayer@db/keyscope".into());
        let e = cluster.check().unwrap_err().to_string();
        assert!(e.contains("tls") && e.contains("forward"), "{e}");
        c.tls.as_mut().unwrap().handshake_timeout_secs = 0;
        assert!(c.check().unwrap_err().to_string().contains("tls"));
        // Loopback stays allowed in plain (devnets, the demo, tests).
        for l in ["127.0.0.1:4337", "[::1]:4337"] {
            let c = Config {
                relayer_key: Some("0x01".into()),
                listen: l.parse().unwrap(),
                ..Config::default()
            };
            c.check().unwrap();
        }
    }

    #[test]
    fn a_tls_section_parses_with_defaults_and_refuses_typos() {
        let c = Config::parse(
            "listen = \"0.0.0.0:4337\"\n[tls]\ncert = \"/etc/keyscope/cert.pem\"\nkey = \"/etc/keyscope/key.pem\"\n",
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/etc/keyscope/cert.pem"));
        assert_eq!((tls.handshake_timeout_secs, tls.reload_secs), (10, 5));
        assert_eq!(tls.client_ca, None);
        let e = Config::parse("[tls]\ncert = \"c.pem\"\n").unwrap_err();
        assert!(e.contains("key"), "a missing key is named: {e}");
        let e = Config::parse("[tls]\ncert = \"c\"\nkey = \"k\"\ncerts = \"x\"\n").unwrap_err();
        assert!(e.starts_with("line 4:") && e.contains("certs"), "{e}");
    }
}
