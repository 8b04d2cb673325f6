//! The pool: every op the relayer has accepted and not yet seen mined, behind one small handle.
//!
//! [`Pool`] owns the ops (pooled, or in a bundle in flight), their records, the pending state they are
//! validated on, the door's token buckets and the ERC-7562 reputation. Nobody else touches them: the RPC
//! face adds ops and reads records through it ([`Pool::add`], [`Pool::record`]); the bundler takes the best
//! ops for a bundle and reports what happened to them ([`Pool::take`], [`Pool::mark_sent`],
//! [`Pool::settle`], [`Pool::restore`]); the chain follower tells it about new heads and reorgs
//! ([`Pool::on_head`], [`Pool::reorged`]). As in Rundler, the pool is a service behind a handle — here
//! in-process.
//!
//! Locks: the pool's bookkeeping sits behind a mutex held only for map updates; the pending state takes
//! concurrent validations ([`pending`]); a gate lets admissions run together and makes the rare
//! whole-state operations (a rebuild on a foreign head, a replacement, clearing) exclusive; and a lock per
//! sender keeps each account's ops in order.

mod admission;
pub mod mempool;
pub mod pending;
pub mod reputation;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use alloy::providers::DynProvider;
use alloy_primitives::{Address, B256};
use keyscope_core::rpc_op::RpcUserOperation;
use serde::Serialize;
use tokio::{runtime::Handle, sync::Notify};

pub use mempool::{Mempool, PoolLimits, PoolOp};
pub use reputation::{
    RateLimiter, Reputation, ReputationEntry, ReputationStatus, THROTTLED_ENTITY_MEMPOOL_COUNT,
};

use crate::{
    config::{BundlingMode, DoorConfig},
    error::Refusal,
    metrics::Metrics,
    store::{AuditEntry, OpRecord, OpStatus, Store},
    validate::{Head, SimConfig, SimError, layers::Commutative},
};
use pending::PendingState;

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes to make after a state change (outside any lock).
#[derive(Debug, Default)]
pub struct Persist {
    pub ops: Vec<OpRecord>,
    pub audit: Vec<AuditEntry>,
}

impl Persist {
    /// Adds `other`'s writes.
    pub fn extend(&mut self, other: Persist) {
        self.ops.extend(other.ops);
        self.audit.extend(other.audit);
    }

    /// True if there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.audit.is_empty()
    }
}

/// What the pool is configured with.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub door: DoorConfig,
    pub limits: PoolLimits,
    pub mode: BundlingMode,
}

/// The pool's bookkeeping: behind a mutex held only for updates.
#[derive(Debug)]
struct Book {
    mempool: Mempool,
    /// Ops in a bundle sent and not yet mined: not selectable, but in the pending state.
    /// Each with its place in the order bundles were taken (the order they execute on chain).
    submitted: HashMap<B256, (u64, PoolOp)>,
    /// Ops taken for bundles so far.
    taken: u64,
    /// Records of ops pooled or submitted.
    records: HashMap<B256, OpRecord>,
    limiter: RateLimiter,
    reputation: Reputation,
    mode: BundlingMode,
    /// The pending state holds effects of ops that are no longer pending: rebuild at the next head.
    dirty: bool,
}

impl Book {
    /// Changes an unfinished op's record and returns what to persist.
    fn transition(&mut self, hash: B256, event: &str, f: impl FnOnce(&mut OpRecord)) -> Persist {
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

    /// Drops a pooled or submitted op with `reason`.
    fn drop_op(&mut self, hash: B256, reason: String, metrics: &Metrics) -> Persist {
        self.mempool.remove(&hash);
        self.submitted.remove(&hash);
        Metrics::inc(&metrics.dropped);
        self.transition(hash, "dropped", |r| {
            r.status = OpStatus::Dropped;
            r.reason = Some(reason);
        })
    }
}

/// A summary for `keyscope_status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub head: Head,
    pub pool: usize,
    pub submitted: usize,
    pub bundling_mode: BundlingMode,
}

struct PoolInner {
    cfg: PoolConfig,
    sim: Arc<SimConfig>,
    commutative: Commutative,
    provider: DynProvider,
    handle: Handle,
    store: Store,
    metrics: Arc<Metrics>,
    book: Mutex<Book>,
    pending: RwLock<Arc<PendingState>>,
    /// Admissions hold it shared; rebuilds, replacements and clearing hold it alone.
    gate: tokio::sync::RwLock<()>,
    /// One lock per sender: an account's ops validate in order.
    senders: Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>,
    /// Notified when an op is accepted (wakes the bundler).
    arrivals: Arc<Notify>,
    /// One permit per core: validations running at once.
    cores: tokio::sync::Semaphore,
}

/// The handle to the pool: cheap to clone, shared by the RPC face, the bundler and the chain follower.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// How the pool reaches the chain and where it keeps things.
#[derive(Debug, Clone)]
pub struct PoolDeps {
    pub provider: DynProvider,
    pub handle: Handle,
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

impl Pool {
    /// An empty pool on `head`, with the reputation saved in the store.
    pub fn new(
        cfg: PoolConfig,
        sim: Arc<SimConfig>,
        commutative: Commutative,
        deps: PoolDeps,
        head: Head,
    ) -> Result<Self, crate::store::StoreError> {
        let reputation = Reputation::from_entries(deps.store.reputation()?);
        let mut mempool = Mempool::new(cfg.limits);
        // New ops are ordered after every op ever stored.
        mempool.insert_order_floor(deps.store.max_order()?);
        let pending = PendingState::new(
            deps.provider.clone(),
            deps.handle.clone(),
            sim.clone(),
            commutative.clone(),
            head,
        );
        let book = Book {
            mempool,
            submitted: HashMap::new(),
            taken: 0,
            records: HashMap::new(),
            limiter: RateLimiter::new(cfg.door.ops_per_second_per_key, cfg.door.burst_per_key),
            reputation,
            mode: cfg.mode,
            dirty: false,
        };
        Ok(Self {
            inner: Arc::new(PoolInner {
                cfg,
                sim,
                commutative,
                provider: deps.provider,
                handle: deps.handle,
                store: deps.store,
                metrics: deps.metrics,
                book: Mutex::new(book),
                pending: RwLock::new(Arc::new(pending)),
                gate: tokio::sync::RwLock::new(()),
                senders: Mutex::new(HashMap::new()),
                arrivals: Arc::new(Notify::new()),
                cores: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                ),
            }),
        })
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.inner.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> Arc<PendingState> {
        self.inner
            .pending
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update_size(&self, book: &Book) {
        let m = &self.inner.metrics;
        m.pool_size.store(
            book.mempool.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        m.submitted_ops.store(
            book.submitted.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Notified whenever an op is accepted.
    pub fn arrivals(&self) -> Arc<Notify> {
        self.inner.arrivals.clone()
    }

    /// The pending state now (a snapshot: a rebuild replaces it, and it stays valid for its holder).
    pub fn pending_state(&self) -> Arc<PendingState> {
        self.pending()
    }

    /// The head the pending state is on.
    pub fn head(&self) -> Head {
        self.pending().head()
    }

    /// The record of `hash`: unfinished ones from memory, the rest from the store.
    pub fn record(&self, hash: B256) -> Option<OpRecord> {
        if let Some(r) = self.book().records.get(&hash) {
            return Some(r.clone());
        }
        self.inner.store.op(hash).ok().flatten()
    }

    /// Persists, logging (not failing) on error: used for transitions after acceptance, which the next
    /// restart re-derives from the chain if they are lost.
    pub async fn persist(&self, p: Persist) {
        if p.is_empty() {
            return;
        }
        if let Err(e) = self.inner.store.write(p.ops, p.audit).await {
            tracing::error!("could not persist op status: {e}");
        }
    }

    /// A summary of the pool.
    pub fn status(&self) -> PoolStatus {
        let head = self.head();
        let book = self.book();
        PoolStatus {
            head,
            pool: book.mempool.len(),
            submitted: book.submitted.len(),
            bundling_mode: book.mode,
        }
    }

    /// Automatic or manual bundling.
    pub fn mode(&self) -> BundlingMode {
        self.book().mode
    }

    /// Sets automatic or manual bundling (`debug_bundler_setBundlingMode`).
    pub fn set_mode(&self, mode: BundlingMode) {
        self.book().mode = mode;
    }

    /// True if ops wait for a bundle.
    pub fn has_pooled(&self) -> bool {
        !self.book().mempool.is_empty()
    }

    /// Pooled ops in acceptance order, as clients sent them (`debug_bundler_dumpMempool`).
    pub fn dump(&self) -> Vec<RpcUserOperation> {
        self.book()
            .mempool
            .in_order()
            .iter()
            .map(|o| RpcUserOperation::from_packed(&o.op))
            .collect()
    }

    /// Up to `max_ops` pooled ops fitting `max_gas`, in bundle order, moved to the submitted set (they
    /// stay in the pending state).
    pub fn take(&self, max_ops: usize, max_gas: u64) -> Vec<PoolOp> {
        let mut book = self.book();
        let picked = book.mempool.best(max_ops, max_gas);
        let ops: Vec<PoolOp> = picked
            .iter()
            .filter_map(|h| book.mempool.remove(h))
            .collect();
        for op in &ops {
            book.taken += 1;
            let at = book.taken;
            book.submitted.insert(op.hash, (at, op.clone()));
        }
        self.update_size(&book);
        ops
    }

    /// Records `ops` as sent in transaction `tx` (replacing `replaced` by a fee bump, if any) and persists
    /// it: durable before the transaction is sent, so a restart finds and follows it.
    pub async fn mark_sent(
        &self,
        ops: &[B256],
        tx: B256,
        replaced: &[B256],
        bundled_us: u64,
        sent_us: u64,
        event: &str,
    ) -> Result<(), crate::store::StoreError> {
        let persist = {
            let mut book = self.book();
            let mut p = Persist::default();
            for hash in ops {
                p.extend(book.transition(*hash, event, |r| {
                    r.status = OpStatus::Submitted;
                    r.tx_hash = Some(tx);
                    r.replaced_txs = replaced.to_vec();
                    r.timings.bundled_us.get_or_insert(bundled_us);
                    r.timings.sent_us = Some(sent_us);
                }));
            }
            p
        };
        self.inner.store.write(persist.ops, persist.audit).await
    }

    /// Returns submitted `ops` to the pool (a send that failed, a dropped or reorged bundle), with
    /// `event` and `reason` in their records. Their effects are in the pending state already; a
    /// reorged op's record (final, so only in the store) is read back.
    pub async fn restore(&self, ops: Vec<PoolOp>, event: &str, reason: &str) {
        let mut back = Vec::new();
        for op in &ops {
            if !self.book().records.contains_key(&op.hash) {
                if let Ok(Some(rec)) = self.inner.store.op(op.hash) {
                    back.push(rec);
                }
            }
        }
        let persist = {
            let mut book = self.book();
            let mut p = Persist::default();
            for rec in back {
                book.records.entry(rec.hash).or_insert(rec);
                book.dirty = true;
            }
            for op in ops {
                let hash = op.hash;
                book.submitted.remove(&hash);
                book.mempool.insert(op);
                p.extend(book.transition(hash, event, |r| {
                    r.status = OpStatus::Pending;
                    r.tx_hash = None;
                    r.block_number = None;
                    r.block_hash = None;
                    r.success = None;
                    r.reason = Some(reason.to_string());
                }));
            }
            self.update_size(&book);
            p
        };
        self.persist(persist).await;
    }

    /// Drops a submitted op the bundle simulation refused, blaming `entity` (its factory or paymaster)
    /// in the reputation if it caused the failure.
    pub async fn drop_at_bundle_time(&self, hash: B256, reason: &str, entity: Option<Address>) {
        let persist = {
            let mut book = self.book();
            book.dirty = true;
            if let Some(e) = entity {
                book.reputation.failed(e);
            }
            let p = book.drop_op(
                hash,
                format!("refused at bundle time: {reason}"),
                &self.inner.metrics,
            );
            self.update_size(&book);
            p
        };
        self.persist(persist).await;
    }

    /// A mined bundle: each of `ops` the receipt's events name is included (with `success`), the others
    /// go back to the pool. Returns the included ones (the chain follower watches them for reorgs).
    pub async fn settle(
        &self,
        ops: Vec<PoolOp>,
        mined: &MinedIn,
        events: &HashMap<B256, bool>,
    ) -> Vec<PoolOp> {
        let mined_us = now_us();
        let (persist, included, unincluded) = {
            let mut book = self.book();
            let mut p = Persist::default();
            let (mut included, mut unincluded) = (Vec::new(), Vec::new());
            for op in ops {
                book.submitted.remove(&op.hash);
                let Some(success) = events.get(&op.hash) else {
                    unincluded.push(op);
                    continue;
                };
                for e in [op.factory(), op.paymaster()].into_iter().flatten() {
                    book.reputation.included(e);
                }
                Metrics::inc(&self.inner.metrics.included);
                let t = book.transition(op.hash, "included", |r| {
                    r.status = OpStatus::Included;
                    r.tx_hash = Some(mined.tx_hash);
                    r.block_number = Some(mined.block_number);
                    r.block_hash = Some(mined.block_hash);
                    r.success = Some(*success);
                    r.reason = None;
                    r.timings.mined_us = Some(mined_us);
                });
                if let Some(rec) = t.ops.first() {
                    self.inner.metrics.observe_lifecycle(rec);
                }
                p.extend(t);
                included.push(op);
            }
            self.update_size(&book);
            (p, included, unincluded)
        };
        self.persist(persist).await;
        if !unincluded.is_empty() {
            self.restore(
                unincluded,
                "unincluded",
                "the bundle transaction did not include it",
            )
            .await;
        }
        included
    }

    /// Included ops whose bundle was mined again in another block after a reorg.
    pub async fn reincluded(&self, ops: &[B256], mined: &MinedIn) {
        let mut p = Persist::default();
        for hash in ops {
            if let Ok(Some(mut rec)) = self.inner.store.op(*hash) {
                rec.block_number = Some(mined.block_number);
                rec.block_hash = Some(mined.block_hash);
                rec.tx_hash = Some(mined.tx_hash);
                p.audit
                    .push(AuditEntry::about(&rec, "reincluded", now_us()));
                p.ops.push(rec);
            }
        }
        self.persist(p).await;
    }

    /// Included ops whose bundle left the canonical chain: back to the pool to be bundled again.
    pub async fn reorged(&self, ops: Vec<PoolOp>) {
        for _ in &ops {
            Metrics::inc(&self.inner.metrics.reorged_ops);
        }
        self.restore(ops, "reorged", "its bundle left the canonical chain")
            .await;
    }

    /// A new head: if the blocks since the last hold nothing but ops the pending state already has
    /// (`ours_only`: our own bundle) the pending state moves to it as it is — every value the bundle
    /// changed is in its diff already, and nothing else changed — otherwise it is rebuilt on it.
    pub async fn on_head(&self, head: Head, ours_only: bool) {
        if ours_only && !self.book().dirty {
            let _gate = self.inner.gate.write().await;
            let moved = self.pending().advanced(head);
            *self
                .inner
                .pending
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Arc::new(moved);
            Metrics::inc(&self.inner.metrics.advances);
        } else {
            self.rebuild(Some(head)).await;
        }
    }

    /// Rebuilds the pending state on `head` (default: the current one): submitted ops first, then the
    /// pool in acceptance order. Pooled ops that no longer validate (or would now revert, when such ops
    /// are refused), or that expire within two seconds, are dropped with the reason. Admissions wait.
    pub async fn rebuild(&self, head: Option<Head>) {
        let gate = self.inner.gate.write().await;
        self.reset_pending(head.unwrap_or_else(|| self.head()));
        let pool = self.clone();
        let persist = tokio::task::spawn_blocking(move || pool.replay_blocking())
            .await
            .unwrap_or_default();
        drop(gate);
        self.persist(persist).await;
    }

    /// An empty pending state on `head`, to replay the pool onto (the caller holds the gate alone).
    fn reset_pending(&self, head: Head) {
        let fresh = PendingState::new(
            self.inner.provider.clone(),
            self.inner.handle.clone(),
            self.inner.sim.clone(),
            self.inner.commutative.clone(),
            head,
        );
        *self
            .inner
            .pending
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        self.book().dirty = false;
        Metrics::inc(&self.inner.metrics.rebuilds);
    }

    fn replay_blocking(&self) -> Persist {
        let pending = self.pending();
        let (submitted, pooled) = {
            let book = self.book();
            let mut submitted: Vec<(u64, PoolOp)> = book.submitted.values().cloned().collect();
            submitted.sort_by_key(|(at, _)| *at);
            (
                submitted.into_iter().map(|(_, op)| op).collect::<Vec<_>>(),
                book.mempool.in_order(),
            )
        };
        for op in submitted {
            if let Ok((_, changes)) = pending.simulate(&op.op, false) {
                let _ = pending.commit_unchecked(changes);
            }
        }
        let horizon = pending.block().timestamp + 2;
        let reject_reverting = self.inner.cfg.door.reject_reverting_ops;
        let mut persist = Persist::default();
        for op in pooled {
            let drop_reason = if op.valid_until < horizon {
                Some(format!("expired: valid until {}", op.valid_until))
            } else {
                match pending.simulate(&op.op, false) {
                    Ok((s, changes)) if s.success || !reject_reverting => {
                        let _ = pending.commit_unchecked(changes);
                        None
                    }
                    Ok((s, _)) => {
                        let why = Refusal::decode(s.revert.as_ref().map_or(&[][..], |b| &b[..]));
                        Some(format!("would now revert: {}", why.detail))
                    }
                    Err(SimError::Internal(e)) => {
                        // The node did not answer: keep the op, the next head retries.
                        tracing::warn!(op = %op.hash, "re-validation could not read state: {e}");
                        None
                    }
                    Err(e) => Some(format!("no longer valid: {e}")),
                }
            };
            if let Some(reason) = drop_reason {
                let mut book = self.book();
                persist.extend(book.drop_op(op.hash, reason, &self.inner.metrics));
            }
        }
        self.update_size(&self.book());
        persist
    }

    /// Drops every pooled op (`debug_bundler_clearMempool`).
    pub async fn clear(&self) {
        let persist = {
            let mut book = self.book();
            let mut p = Persist::default();
            for hash in book.mempool.hashes() {
                p.extend(book.drop_op(
                    hash,
                    "cleared by debug_bundler_clearMempool".into(),
                    &self.inner.metrics,
                ));
            }
            self.update_size(&book);
            p
        };
        self.persist(persist).await;
        self.rebuild(None).await;
    }

    /// Reputation: a snapshot (its version and entries), for saving.
    pub fn reputation_snapshot(&self) -> (u64, Vec<(Address, ReputationEntry)>) {
        let book = self.book();
        (book.reputation.version(), book.reputation.entries())
    }

    /// Reputation: every entity with its counters and status.
    pub fn reputation_dump(&self) -> Vec<(Address, ReputationEntry, ReputationStatus)> {
        self.book().reputation.dump()
    }

    /// Reputation: set entries (`debug_bundler_setReputation`).
    pub fn set_reputation(&self, entries: Vec<(Address, ReputationEntry)>) {
        let mut book = self.book();
        for (a, e) in entries {
            book.reputation.set(a, e);
        }
    }

    /// Reputation: forget everything.
    pub fn clear_reputation(&self) {
        self.book().reputation.clear();
    }

    /// Reputation: the hourly decay.
    pub fn decay_reputation(&self) {
        self.book().reputation.decay();
    }

    /// After a restart: the records of unfinished ops. Pending ones return to the pool; submitted ones
    /// are returned grouped by the transaction (and the ones it replaced) they were sent in, for the
    /// chain follower to settle, follow or send again. The pending state is rebuilt by the caller.
    pub fn resume(&self, records: Vec<OpRecord>) -> (usize, Vec<Recorded>) {
        let mut by_tx: std::collections::BTreeMap<B256, (Vec<B256>, Vec<PoolOp>)> =
            Default::default();
        let mut resumed = 0;
        let mut book = self.book();
        for rec in records {
            let Ok(op) = rec.user_operation.to_packed() else {
                continue;
            };
            let pool_op = PoolOp {
                hash: rec.hash,
                op,
                kind: rec.kind,
                session_key: rec.session_key,
                valid_until: rec.valid_until,
                order: rec.order,
            };
            book.records.insert(rec.hash, rec.clone());
            match (rec.status, rec.tx_hash) {
                (OpStatus::Submitted, Some(tx)) => {
                    book.taken += 1;
                    let at = book.taken;
                    book.submitted.insert(pool_op.hash, (at, pool_op.clone()));
                    let entry = by_tx.entry(tx).or_default();
                    entry.0.clone_from(&rec.replaced_txs);
                    entry.1.push(pool_op);
                }
                _ => book.mempool.insert(pool_op),
            }
            resumed += 1;
        }
        self.update_size(&book);
        (
            resumed,
            by_tx
                .into_iter()
                .map(|(tx, (replaced, ops))| (tx, replaced, ops))
                .collect(),
        )
    }

    fn sender_lock(&self, sender: Address) -> Arc<tokio::sync::Mutex<()>> {
        let mut senders = self.inner.senders.lock().unwrap_or_else(|p| p.into_inner());
        if senders.len() > 4096 {
            senders.retain(|_, l| Arc::strong_count(l) > 1);
        }
        senders.entry(sender).or_default().clone()
    }
}

/// A bundle transaction the store says was sent: the transaction last sent, those a fee bump replaced,
/// and the ops it carries.
pub type Recorded = (B256, Vec<B256>, Vec<PoolOp>);

/// Where a bundle was mined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinedIn {
    pub tx_hash: B256,
    pub block_number: u64,
    pub block_hash: B256,
}
