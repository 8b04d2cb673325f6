//! `keyscope signer`: a signing sidecar for strategy engines. It holds session keys — in an encrypted
//! keystore or in an HSM through PKCS#11 — and signs a strategy's UserOps and off-chain orders
//! ([`keyscope_core::order`]) over a Unix socket, so the strategy never sees key material. An order gets
//! the scope check its fills meet on chain ([`keyscope_core::policy::check_signed_order`]). Before it signs, it checks the op against the key's scope as the
//! account stores it (read from the chain, [`keyscope_core::policy`]: the same rules the account applies
//! in validation), applies its own rate limit per key, and appends every decision to a hash-chained audit
//! log signed by its own audit key.
//!
//! Layout: [`keys`] (where keys live: keystore files of either curve, PKCS#11 tokens), [`config`] (the
//! TOML file an operator writes), [`limiter`] (per-key rate limits), [`audit`] (the signed trail),
//! [`service`] (the decision: scope, rate, sign, record), [`server`] (the socket protocol) and
//! [`client`] (what a strategy links to talk to it). [`quorum`] holds a share of a threshold key instead of
//! a whole one: this sidecar is one member of a `t`-of-`n` quorum of sidecars, set up by [`quorum_setup`].

pub mod audit;
pub mod client;
pub mod config;
pub mod keys;
pub mod limiter;
pub mod quorum;
pub mod quorum_setup;
pub mod server;
pub mod service;

pub use client::SignerClient;
pub use config::SignerConfig;
pub use service::SigningService;

/// Errors of the sidecar's parts; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("keystore {path}: {reason}")]
    Keystore { path: String, reason: String },
    #[error("PKCS#11 ({module}): {reason}")]
    Pkcs11 { module: String, reason: String },
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("audit log {path}: {reason}")]
    Audit { path: String, reason: String },
    #[error("chain: {0}")]
    Chain(String),
    #[error("socket {path}: {reason}")]
    Socket { path: String, reason: String },
    #[error("quorum: {0}")]
    Quorum(String),
    #[error(
        "socket {path} is in use: a running sidecar answers on it; stop that sidecar first, or give this one \
         another `socket` in its config"
    )]
    SocketInUse { path: String },
}
