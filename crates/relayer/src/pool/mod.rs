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
mod checks;
mod estimate;
mod lifecycle;
pub(crate) mod mempool;
pub(crate) mod pending;
mod rebuild;
pub(crate) mod reputation;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use alloy::providers::DynProvider;
use alloy_primitives::{Address, B256};
use keyscope_core::rpc_op::RpcUserOperation;
use serde::Serialize;
use tokio::{runtime::Handle, sync::Notify};

pub use checks::{lone_pre_verification_gas, min_pre_verification_gas};
pub(crate) use mempool::{Mempool, PoolLimits, PoolOp, Standing};
pub(crate) use reputation::{
    RateLimiter, Reputation, ReputationEntry, ReputationStatus, THROTTLED_ENTITY_MEMPOOL_COUNT,
};

use crate::records::OpEvent;
use crate::{
    config::{BundlingMode, DoorConfig},
    metrics::Metrics,
    store::{AuditEntry, OpRecord, OpStatus, Store, StoreError},
    validate::{Head, SimConfig, layers::Commutative},
};
use pending::PendingState;

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes to make after a state change (outside any lock).
#[derive(Debug, Default)]
pub(crate) struct Persist {
    pub ops: Vec<OpRecord>,
    pub audit: Vec<AuditEntry>,
}

impl Persist {
    /// Adds `other`'s writes.
    pub(crate) fn extend(&mut self, other: Persist) {
        self.ops.extend(other.ops);
        self.audit.extend(other.audit);
    }

    /// True if there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.audit.is_empty()
    }
}

/// What the pool is configured with.
#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
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
    fn transition(&mut self, hash: B256, event: OpEvent, f: impl FnOnce(&mut OpRecord)) -> Persist {
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

    /// An accepted op failed with EntryPoint reason `reason` (at bundle time, or re-validated on a new head):
    /// the sightings of the entities not at fault are taken back (EREP-015); a staked factory answering for
    /// its account is banned (EREP-020).
    fn blame(&mut self, op: &PoolOp, reason: &str) {
        let (culprit, crashed) = op.culprit(reason);
        for e in op.tracked() {
            if Some(e) != culprit {
                self.reputation.unseen(e);
            }
        }
        if let (Some(c), true) = (culprit, crashed) {
            self.reputation.crashed(c);
        }
    }

    /// Drops a pooled or submitted op with `reason`.
    fn drop_op(&mut self, hash: B256, reason: String, metrics: &Metrics) -> Persist {
        self.mempool.remove(&hash);
        self.submitted.remove(&hash);
        Metrics::inc(&metrics.dropped);
        self.transition(hash, OpEvent::Dropped, |r| {
            r.status = OpStatus::Dropped;
            r.reason = Some(reason);
        })
    }
}

/// A summary for `keyscope_status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PoolStatus {
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
    /// Senders this relayer has accepted an op from (ops from others spend their client's fresh budget).
    known: Mutex<std::collections::HashSet<Address>>,
    /// The fresh-sender budget of each client address.
    fresh: Mutex<RateLimiter<std::net::IpAddr>>,
    /// Notified when an op is accepted (wakes the bundler).
    arrivals: Arc<Notify>,
    /// One permit per core: validations running at once.
    cores: tokio::sync::Semaphore,
    /// Held by whoever decides which head the pending state moves to (the chain follower's round, a
    /// catch-up after a refusal), so a slower decision cannot move it back to an older head.
    heads: tokio::sync::Mutex<()>,
    /// Status transitions the store has not taken yet (an outage), oldest first: retried, in order, with
    /// every later one and on every head, until they land. Held while writing, so transitions land in the
    /// order they happened.
    unsaved: tokio::sync::Mutex<std::collections::VecDeque<Persist>>,
}

/// The handle to the pool: cheap to clone, shared by the RPC face, the bundler and the chain follower.
#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// How the pool reaches the chain and where it keeps things.
#[derive(Debug, Clone)]
pub(crate) struct PoolDeps {
    pub provider: DynProvider,
    pub handle: Handle,
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

impl Pool {
    /// An empty pool on `head`, with the reputation saved in the store.
    pub(crate) async fn new(
        cfg: PoolConfig,
        sim: Arc<SimConfig>,
        commutative: Commutative,
        deps: PoolDeps,
        head: Head,
    ) -> Result<Self, crate::store::StoreError> {
        let reputation = Reputation::from_entries(deps.store.reputation().await?);
        let mut mempool = Mempool::new(cfg.limits);
        // New ops are ordered after every op ever stored.
        mempool.insert_order_floor(deps.store.max_order().await?);
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
        let fresh = RateLimiter::new(
            cfg.door.fresh_senders_per_second_per_client,
            cfg.door.fresh_senders_burst_per_client,
        );
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
                known: Mutex::new(Default::default()),
                fresh: Mutex::new(fresh),
                arrivals: Arc::new(Notify::new()),
                heads: tokio::sync::Mutex::new(()),
                unsaved: tokio::sync::Mutex::new(Default::default()),
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

    /// Sets the pool-size gauges from the pool as it is now.
    pub(crate) fn refresh_gauges(&self) {
        self.update_size(&self.book());
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

    /// Held while deciding which head the pending state moves to (see [`Pool::on_head`]).
    pub(crate) async fn head_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.heads.lock().await
    }

    /// Notified whenever an op is accepted.
    pub(crate) fn arrivals(&self) -> Arc<Notify> {
        self.inner.arrivals.clone()
    }

    /// The pending state now (a snapshot: a rebuild replaces it, and it stays valid for its holder).
    pub(crate) fn pending_state(&self) -> Arc<PendingState> {
        self.pending()
    }

    /// The head the pending state is on.
    pub(crate) fn head(&self) -> Head {
        self.pending().head()
    }

    /// The record of `hash`: unfinished ones from memory, the rest from the store.
    pub(crate) async fn record(&self, hash: B256) -> Option<OpRecord> {
        let held = self.book().records.get(&hash).cloned();
        if held.is_some() {
            return held;
        }
        self.inner.store.op(hash).await.ok().flatten()
    }

    /// Persists a transition after acceptance. A write the store does not take (an outage) is kept and
    /// retried — with every later transition, which waits behind it, and on every head (each rebuild
    /// persists) — so an op mined while the store was down ends `included` there, with its audit entry,
    /// once the store is back. A write refused by the fence is given up: another instance holds those
    /// senders now and re-derives their records from the chain.
    /// Writes `p` now (no queue), counting its events in the metrics once written.
    pub(crate) async fn write_now(&self, p: Persist) -> Result<(), StoreError> {
        let events: Vec<OpEvent> = p.audit.iter().map(|a| a.event).collect();
        self.inner.store.write(p.ops, p.audit).await?;
        self.inner.metrics.op_events(events);
        Ok(())
    }

    pub(crate) async fn persist(&self, p: Persist) {
        let mut unsaved = self.inner.unsaved.lock().await;
        if !p.is_empty() {
            unsaved.push_back(p);
        }
        while let Some(next) = unsaved.front() {
            match self
                .inner
                .store
                .write(next.ops.clone(), next.audit.clone())
                .await
            {
                Ok(()) => {
                    self.inner
                        .metrics
                        .op_events(next.audit.iter().map(|a| a.event));
                    unsaved.pop_front();
                }
                Err(StoreError::Fenced(why)) => {
                    tracing::warn!(
                        "op status not written, another instance holds the sender: {why}"
                    );
                    unsaved.pop_front();
                }
                Err(e) => {
                    tracing::error!(
                        "could not persist op status ({} transitions kept, retried on the next head): {e}",
                        unsaved.len()
                    );
                    return;
                }
            }
        }
    }

    /// Forgets kept transitions of `ops` whose newer records were just written directly (a bundle's
    /// claim), so a retry cannot write an older state over them.
    pub(crate) async fn supersede_unsaved(&self, ops: &[B256]) {
        let mut unsaved = self.inner.unsaved.lock().await;
        for p in unsaved.iter_mut() {
            p.ops.retain(|r| !ops.contains(&r.hash));
        }
    }

    /// A summary of the pool.
    pub(crate) fn status(&self) -> PoolStatus {
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
    pub(crate) fn mode(&self) -> BundlingMode {
        self.book().mode
    }

    /// Sets automatic or manual bundling (`debug_bundler_setBundlingMode`).
    pub(crate) fn set_mode(&self, mode: BundlingMode) {
        self.book().mode = mode;
    }

    /// True if ops wait for a bundle.
    pub(crate) fn has_pooled(&self) -> bool {
        !self.book().mempool.is_empty()
    }

    /// Pooled ops in acceptance order, as clients sent them (`debug_bundler_dumpMempool`).
    pub(crate) fn dump(&self) -> Vec<RpcUserOperation> {
        self.book()
            .mempool
            .in_order()
            .iter()
            .map(|o| RpcUserOperation::from_packed(&o.op))
            .collect()
    }

    /// Reputation: a snapshot (its version and entries), for saving.
    pub(crate) fn reputation_snapshot(&self) -> (u64, Vec<(Address, ReputationEntry)>) {
        let book = self.book();
        (book.reputation.version(), book.reputation.entries())
    }

    /// Reputation: every entity with its counters and status.
    pub(crate) fn reputation_dump(&self) -> Vec<(Address, ReputationEntry, ReputationStatus)> {
        self.book().reputation.dump()
    }

    /// Reputation: set entries (`debug_bundler_setReputation`).
    pub(crate) fn set_reputation(&self, entries: Vec<(Address, ReputationEntry)>) {
        let mut book = self.book();
        for (a, e) in entries {
            book.reputation.set(a, e);
        }
    }

    /// Reputation: forget everything.
    pub(crate) fn clear_reputation(&self) {
        self.book().reputation.clear();
    }

    /// Reputation: `sender` sent an op that passed validation and then broke a bundle or would have cost
    /// the relayer more than it repays — treated as ERC-7562 treats an entity whose op crashes a bundle
    /// (banned, decaying hourly like any entry).
    pub(crate) fn charge_sender(&self, sender: Address) {
        self.book().reputation.crashed(sender);
    }

    /// Reputation: the hourly decay.
    pub(crate) fn decay_reputation(&self) {
        self.book().reputation.decay();
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
pub(crate) type Recorded = (B256, Vec<B256>, Vec<PoolOp>);

/// Where a bundle was mined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MinedIn {
    pub tx_hash: B256,
    pub block_number: u64,
    pub block_hash: B256,
}
