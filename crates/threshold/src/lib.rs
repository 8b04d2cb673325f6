//! Threshold ECDSA quorums for Keyscope keys: a session (or owner) key split `t`-of-`n` across several
//! members — `keyscope signer` sidecars — so that no machine ever holds the key, any `t` of them sign,
//! and the chain sees an ordinary secp256k1 or P-256 ECDSA signature (no contract change, no extra gas).
//!
//! The protocol is the [`cggmp21`] crate's (CGGMP21, with its threshold key generation): distributed key
//! generation with no dealer, auxiliary info (each member's Paillier key, from safe primes), and
//! presignatures made ahead so that signing online is one partial signature from each co-signer. This
//! crate writes no protocol maths: it is the quorum around the library — who the members are and how they
//! reach each other ([`tls`]: mutual TLS, each member known by its certificate), the sessions' delivery
//! ([`mesh`], [`wire`]), the library's protocols run over it ([`protocol`]), the shares at rest
//! ([`share`]: encrypted like the sidecar's keystores) and a member ([`member`]): the pool of
//! presignatures, the policy check ([`member::Approver`]) each member makes before it contributes, and the
//! coordination of a signature with fail-fast fallback to other co-signers.
//!
//! ## Why cggmp21
//! - `cggmp21` (LFDT Lockness, first written by Dfns): maintained, audited (Kudelski), implements the
//!   CGGMP21 paper's presignature design (1-round online signing) with threshold key generation, both
//!   curves Keyscope verifies (secp256k1 and secp256r1), and is transport-agnostic (`round_based`), so
//!   members talk over our own authenticated channels.
//! - The GG18/GG20 implementations (e.g. ZenGo's `multi-party-ecdsa`) are archived, and that family of
//!   implementations was the subject of the 2023 key-extraction attacks (BitForge, TSSHOCK).
//! - FROST (the ZF `frost-*` crates) is Schnorr: the account verifies ECDSA.
//! - DKLs-style OT-based ECDSA libraries, and Coinbase's `cb-mpc` (C++), were weighed too: the first are
//!   younger in Rust, the second is not a Rust library; cggmp21's presignatures fit a sidecar that signs
//!   orders at market-making rates.
//!
//! ## What the library does not do (and so neither does this crate)
//! - **Key refresh of threshold keys.** cggmp21 0.6 refreshes only `n`-of-`n` keys ("Key refresh for
//!   threshold keys (i.e., t-out-of-n)" is listed as unsupported); proactive resharing of a 2-of-3 key,
//!   and so **replacing a lost member** with the public key unchanged, are not available. A lost member
//!   is handled by a new quorum key: generate it, grant it, revoke the old one (the account's rotation).
//! - Identifiable abort: a bad partial signature is detected (the combined signature is checked against
//!   the key before it is handed out) but the library does not say which member cheated.
//!
//! ## Safe primes
//! Auxiliary info needs two 1536-bit safe primes per member. Production members generate their own
//! ([`cggmp21::PregeneratedPrimes::generate`]); tests use primes generated once and kept in the test data.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod member;
pub mod mesh;
pub mod protocol;
pub mod share;
pub mod tls;
pub mod wire;

/// Safe primes for a member's auxiliary info (generated, or read from where they were kept).
pub use cggmp21::PregeneratedPrimes;
pub use member::{Approver, Member, MemberConfig, QuorumSignature};
pub use share::{KeyCurve, QuorumKeyInfo, RawSignature, Share};

/// Why a quorum operation failed; each says which member, or what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// The TLS configuration could not be built from the certificates and keys.
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// A connection failed or broke.
    #[error("connection: {0}")]
    Transport(String),
    /// The quorum's configuration is invalid.
    #[error("quorum config: {0}")]
    Config(String),
    /// The share file could not be read, decrypted or written.
    #[error("share file {path}: {reason}")]
    ShareFile {
        /// The share file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A protocol run failed.
    #[error("{what} failed: {reason}")]
    Protocol {
        /// Which protocol (key generation, presigning, signing, …).
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A member could not be reached.
    #[error("member {member} is unreachable: {reason}")]
    MemberDown {
        /// The member's index.
        member: u16,
        /// What went wrong.
        reason: String,
    },
    /// A member refused to take part.
    #[error("member {member} refused: {reason}")]
    Refused {
        /// The member's index.
        member: u16,
        /// The reason it gave.
        reason: String,
    },
    /// Not enough members could take part to sign.
    #[error("no quorum could sign: {0}")]
    NoQuorum(String),
    /// The combined signature does not verify for the quorum's key.
    #[error(
        "the signature of members {members:?} does not verify for the quorum's key: one of them \
         contributed a bad partial signature (a tampered share or a cheating member); the presignature \
         is discarded"
    )]
    BadSignature {
        /// The members whose partial signatures were combined.
        members: Vec<u16>,
    },
}
