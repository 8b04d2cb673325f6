//! The relayer's shared state: the pending state (simulator), the pool, the bundle in flight and the
//! recently mined ones, and the records of every unfinished op. One lock guards them, so the pending
//! state always equals the head plus exactly the ops the pool and the bundle in flight hold.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Instant,
};

use alloy::providers::DynProvider;
use alloy_primitives::{Address, B256};
use tokio::sync::{MutexGuard, Notify, broadcast};

use crate::{
    config::{BundlingMode, Config},
    error::Refusal,
    feed::FeedEvent,
    metrics::Metrics,
    pool::{Mempool, PoolOp, RateLimiter, Reputation},
    store::{AuditEntry, OpRecord, OpStatus, Store},
    validate::{Head, SimError, Simulator},
};

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A bundle transaction sent and not yet mined.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// The transaction last sent.
    pub tx_hash: B256,
    /// Earlier transactions of this bundle at the same nonce, replaced by fee bumps: any of them may
    /// still be the one mined.
    pub replaced: Vec<B256>,
    pub ops: Vec<PoolOp>,
    pub sent_at: Instant,
}

/// A mined bundle, watched for reorgs.
#[derive(Debug, Clone)]
pub struct Mined {
    pub tx_hash: B256,
    pub block_number: u64,
    pub block_hash: B256,
    pub ops: Vec<PoolOp>,
}

/// Writes to make after a state change (outside the lock).
#[derive(Debug, Default)]
pub struct Persist {
    pub ops: Vec<OpRecord>,
    pub audit: Vec<AuditEntry>,
}

impl Persist {
    pub fn extend(&mut self, other: Persist) {
        self.ops.extend(other.ops);
        self.audit.extend(other.audit);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.audit.is_empty()
    }
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct Inner {
    pub sim: Simulator,
    pub pool: Mempool,
    pub in_flight: Option<InFlight>,
    pub mined: VecDeque<Mined>,
    /// Records of ops in the pool or in flight.
    pub records: HashMap<B256, OpRecord>,
    pub limiter: RateLimiter,
    pub reputation: Reputation,
    pub mode: BundlingMode,
    /// The pending state holds effects of ops that are no longer pending: rebuild at the next head.
    pub dirty: bool,
    /// The block of the last bundle settled: the bundler moves the pending state past it.
    pub settled_through: u64,
    /// The last head the bundler looked at (reorgs are judged against it, not the pending state's
    /// head, which admission may move).
    pub seen_head: Option<Head>,
}

impl Inner {
    /// Changes an unfinished op's record and returns what to persist.
    pub fn transition(
        &mut self,
        hash: B256,
        event: &str,
        f: impl FnOnce(&mut OpRecord),
    ) -> Persist {
        let Some(rec) = self.records.get_mut(&hash) else {
            return Persist::default();
        };
        f(rec);
        let rec = rec.clone();
        if rec.status.is_final() {
            self.records.remove(&hash);
        }
        Persist {
            audit: vec![AuditEntry::about(&rec, event, now_us())],
            ops: vec![rec],
        }
    }

    /// Drops a pooled op with `reason`.
    pub fn drop_op(&mut self, hash: B256, reason: String, metrics: &Metrics) -> Persist {
        self.pool.remove(&hash);
        Metrics::inc(&metrics.dropped);
        self.transition(hash, "dropped", |r| {
            r.status = OpStatus::Dropped;
            r.reason = Some(reason);
        })
    }

    /// Rebuilds the pending state on `head`: the bundle in flight first, then the pool in acceptance
    /// order. Pooled ops that no longer validate (or would now revert, when such ops are refused),
    /// or that expire within `min_valid_for` seconds, are dropped with the reason.
    pub fn rebuild(&mut self, head: Head, config: &Config, metrics: &Metrics) -> Persist {
        self.sim.reset(head);
        self.dirty = false;
        Metrics::inc(&metrics.rebuilds);
        let mut persist = Persist::default();
        if let Some(f) = &self.in_flight {
            for op in f.ops.clone() {
                if let Ok((_, changes)) = self.sim.simulate(&op.op, false) {
                    self.sim.commit(changes);
                }
            }
        }
        let horizon = self.sim.block_time() + 2;
        for op in self.pool.in_order() {
            if op.valid_until < horizon {
                persist.extend(self.drop_op(
                    op.hash,
                    format!("expired: valid until {}", op.valid_until),
                    metrics,
                ));
                continue;
            }
            match self.sim.simulate(&op.op, false) {
                Ok((s, changes)) if s.success || !config.door.reject_reverting_ops => {
                    self.sim.commit(changes)
                }
                Ok((s, _)) => {
                    let why = Refusal::decode(s.revert.as_ref().map_or(&[][..], |b| &b[..]));
                    persist.extend(self.drop_op(
                        op.hash,
                        format!("would now revert: {}", why.detail),
                        metrics,
                    ));
                }
                Err(SimError::Internal(e)) => {
                    // The node did not answer: keep the op, the next head retries.
                    tracing::warn!(op = %op.hash, "re-validation could not read state: {e}");
                }
                Err(e) => {
                    persist.extend(self.drop_op(op.hash, format!("no longer valid: {e}"), metrics))
                }
            }
        }
        metrics
            .pool_size
            .store(self.pool.len() as u64, std::sync::atomic::Ordering::Relaxed);
        persist
    }
}

/// State shared by the RPC server, the bundler and the feed.
pub struct Shared {
    pub config: Config,
    pub chain_id: u64,
    pub entry_point: Address,
    pub venue: Option<Address>,
    /// The relayer's EOA (signs bundles).
    pub relayer: Address,
    pub beneficiary: Address,
    pub provider: DynProvider,
    pub store: Store,
    pub metrics: Metrics,
    /// The pending state's head number, readable without the lock.
    pub head_number: Arc<std::sync::atomic::AtomicU64>,
    pub inner: tokio::sync::Mutex<Inner>,
    pub feed: broadcast::Sender<FeedEvent>,
    /// Wakes the bundler (new op, bundle requested, shutdown).
    pub wake: Notify,
    /// Serialises bundle building (the timer and `sendBundleNow`).
    pub bundling: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("chain_id", &self.chain_id)
            .field("relayer", &self.relayer)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The lock, from async code (waiting yields the worker thread).
    pub async fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().await
    }

    /// The lock, from blocking threads (`spawn_blocking`), where the simulator runs.
    pub fn lock_blocking(&self) -> MutexGuard<'_, Inner> {
        self.inner.blocking_lock()
    }

    /// The record of `hash`: unfinished ones from memory, the rest from the store.
    pub async fn record(&self, hash: B256) -> Option<OpRecord> {
        if let Some(r) = self.lock().await.records.get(&hash) {
            return Some(r.clone());
        }
        self.store.op(hash).ok().flatten()
    }

    /// Rebuilds the pending state on `head` (default: the current one) on a blocking thread — the
    /// simulator reads the node synchronously — and persists the drops.
    pub async fn rebuild(self: &Arc<Self>, head: Option<Head>) {
        let shared = self.clone();
        let persist = tokio::task::spawn_blocking(move || {
            let mut inner = shared.lock_blocking();
            let head = head.unwrap_or_else(|| inner.sim.head());
            inner.rebuild(head, &shared.config, &shared.metrics)
        })
        .await
        .unwrap_or_default();
        self.persist(persist).await;
    }

    /// Persists, logging (not failing) on error: used for transitions after acceptance, which the
    /// next restart re-derives from the chain if they are lost.
    pub async fn persist(&self, p: Persist) {
        if p.is_empty() {
            return;
        }
        if let Err(e) = self.store.write(p.ops, p.audit).await {
            tracing::error!("could not persist op status: {e}");
        }
    }
}

/// Shared state handle.
pub type SharedState = Arc<Shared>;
