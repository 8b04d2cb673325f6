//! Persistence: every accepted op and its status, and an append-only audit log — the non-repudiation
//! record of who asked for what and when — behind one trait ([`Backend`]) with two implementations:
//!
//! - [`redb`]: an embedded, crash-safe file (the default: one relayer, nothing else to run);
//! - [`postgres`]: one database shared by several relayer instances ([`crate::cluster`]): every write of
//!   an op is fenced by the lease of the op's sender shard (and, for a bundle claim, of the bundle key),
//!   so an instance that lost its lease cannot change what the new owner now decides.
//!
//! An op is durable before its hash is returned to the client: `eth_sendUserOperation` answers only
//! after the commit that holds it.
//!
//! The audit log is a hash chain: each entry carries the hash of the one before, so an edited or
//! deleted entry breaks every hash after it (`verify_audit`).

use std::sync::Arc;

use alloy_primitives::{Address, B256};

pub mod api_keys;
pub mod postgres;
pub mod redb;

pub use crate::records::{AuditEntry, OpEvent, OpRecord, OpStatus, ReputationEntry, Timings};
pub use redb::export_audit;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, reached or migrated.
    #[error("cannot open the relayer store {path}: {reason}")]
    Open {
        /// The file or database.
        path: String,
        /// Why.
        reason: String,
    },
    /// A write did not commit.
    #[error("store write failed: {0}")]
    Write(String),
    /// A read failed.
    #[error("store read failed: {0}")]
    Read(String),
    /// A write was refused because this instance no longer holds the lease it was made under (another
    /// instance owns the sender's shard, or the bundle key, since): nothing was written.
    #[error("store write refused: {0}")]
    Fenced(String),
    /// An audit entry does not chain to the one before.
    #[error("audit log entry {seq} is corrupt: {reason}")]
    Audit {
        /// The entry's sequence number.
        seq: u64,
        /// What does not match.
        reason: String,
    },
}

pub(crate) fn write_err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Write(e.to_string())
}

pub(crate) fn read_err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Read(e.to_string())
}

/// What a store keeps and answers. Writes are atomic: a call's op records and audit entries commit
/// together or not at all.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Durably writes `ops` (replacing their earlier records) and appends `audit`; returns once
    /// committed.
    async fn write(&self, ops: Vec<OpRecord>, audit: Vec<AuditEntry>) -> Result<(), StoreError>;
    /// Durably replaces this relayer's saved reputation with `entries`.
    async fn save_reputation(
        &self,
        entries: Vec<(Address, ReputationEntry)>,
    ) -> Result<(), StoreError>;
    /// This relayer's reputation, as last saved.
    async fn reputation(&self) -> Result<Vec<(Address, ReputationEntry)>, StoreError>;
    /// One op's record.
    async fn op(&self, hash: B256) -> Result<Option<OpRecord>, StoreError>;
    /// Every op not yet included or dropped that this relayer resumes at start, in acceptance order.
    async fn unfinished(&self) -> Result<Vec<OpRecord>, StoreError>;
    /// Ops included at or above block `from` that this relayer resumes at start: the bundles it keeps
    /// watching for reorgs.
    async fn included_since(&self, from: u64) -> Result<Vec<OpRecord>, StoreError>;
    /// Number of op records.
    async fn op_count(&self) -> Result<u64, StoreError>;
    /// Audit entries from `from` (inclusive), at most `limit`.
    async fn audit(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// The highest order number stored (new ops continue after it).
    async fn max_order(&self) -> Result<u64, StoreError>;
}

/// The relayer's store: a handle to one [`Backend`], cheap to clone.
#[derive(Clone, Debug)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// The embedded store in the redb file at `path` (created if missing).
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(redb::RedbStore::open(path)?)))
    }

    /// A store over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self(backend)
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// Checks that `entries` (from seq 0) form an unbroken hash chain.
pub fn verify_audit(entries: &[AuditEntry]) -> Result<(), StoreError> {
    let mut prev = B256::ZERO;
    for (i, e) in entries.iter().enumerate() {
        if e.seq != i as u64 {
            return Err(StoreError::Audit {
                seq: e.seq,
                reason: format!("expected sequence number {i}"),
            });
        }
        if e.prev != prev || e.chained_hash() != e.hash {
            return Err(StoreError::Audit {
                seq: e.seq,
                reason: "hash chain broken: the entry or one before it was altered".into(),
            });
        }
        prev = e.hash;
    }
    Ok(())
}
