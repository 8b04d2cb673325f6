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

#![warn(missing_docs)]
#![warn(unreachable_pub)]

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
    /// A keystore could not be read or decrypted.
    #[error("keystore {path}: {reason}")]
    Keystore {
        /// The keystore file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The PKCS#11 module or token failed.
    #[error("PKCS#11 ({module}): {reason}")]
    Pkcs11 {
        /// The PKCS#11 module's path.
        module: String,
        /// What went wrong.
        reason: String,
    },
    /// The config file could not be read or is invalid.
    #[error("config {path}: {reason}")]
    Config {
        /// The config file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The audit log could not be opened, read or written.
    #[error("audit log {path}: {reason}")]
    Audit {
        /// The audit log file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading the chain failed.
    #[error("chain: {0}")]
    Chain(String),
    /// The socket could not be bound or served.
    #[error("socket {path}: {reason}")]
    Socket {
        /// The socket's path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The threshold quorum failed.
    #[error("quorum: {0}")]
    Quorum(String),
    /// Another running sidecar answers on the socket.
    #[error(
        "socket {path} is in use: a running sidecar answers on it; stop that sidecar first, or give this one \
         another `socket` in its config"
    )]
    SocketInUse {
        /// The socket's path.
        path: String,
    },
}
