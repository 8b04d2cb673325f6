//! Moving the pending state to a new head: rebuilt by replaying what is in flight and then the pool in
//! acceptance order, dropping what no longer validates.

use std::{collections::HashSet, sync::Arc};

use alloy_primitives::{Address, U256};
use keyscope_core::nonce::entry_point_nonce_slot;
use revm::DatabaseRef;

use super::{Persist, Pool, PoolOp, pending::PendingState};
use crate::{
    error::Refusal,
    metrics::Metrics,
    validate::{Head, SimError},
};

impl Pool {
    /// A new head: the pending state is rebuilt on it, even when the new blocks hold nothing but our own
    /// bundle. What that bundle's ops left in its simulated diff is not what the chain has: each op's
    /// charge (so its account's EntryPoint deposit, and the relayer's balance) depends on the base fee
    /// of the block it was mined in, which a simulation only bounds; the next op of that account must
    /// be validated on the deposit it will really find.
    pub(crate) async fn on_head(&self, head: Head) {
        self.rebuild(Some(head)).await;
    }

    /// Rebuilds the pending state on `head` (default: the current one): submitted ops first, then the
    /// pool in acceptance order. Pooled ops that no longer validate (or would now revert, when such ops
    /// are refused), or that expire within two seconds, are dropped with the reason. Admissions wait.
    pub(crate) async fn rebuild(&self, head: Option<Head>) {
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
        // Every (sender, nonce key, sequence) the relayer holds: a gap before an op's nonce is filled if
        // these cover it.
        let held: HashSet<(Address, U256, u64)> = submitted
            .iter()
            .chain(&pooled)
            .map(|o| {
                let (sender, key) = o.lane();
                (sender, key, o.seq())
            })
            .collect();
        for op in submitted {
            if let Ok((_, changes)) = pending.simulate(&op.op, false) {
                let _ = pending.commit_unchecked(changes);
            }
        }
        let horizon = pending.block().timestamp + 2;
        let mut persist = Persist::default();
        let mut deferred = Vec::new();
        for op in pooled {
            let hash = op.hash;
            let drop_reason = match self.replay_op(&pending, &op, horizon) {
                Replayed::Kept => None,
                Replayed::Refused(reason) => Some(reason),
                Replayed::StaleNonce(e) => match self.nonce_still_open(&pending, &op, &held) {
                    // An earlier op of its lane came later in acceptance order (or the pending state
                    // is wrong): try it again after the rest.
                    true => {
                        deferred.push(op);
                        None
                    }
                    false => Some(self.blamed(&op, &e)),
                },
            };
            if let Some(reason) = drop_reason {
                let mut book = self.book();
                persist.extend(book.drop_op(hash, reason, &self.inner.metrics));
            }
        }
        // In nonce order, so each lane's ops find the nonce the one before leaves.
        deferred.sort_by_key(|o| (o.lane(), o.seq()));
        for op in deferred {
            let drop_reason = match self.replay_op(&pending, &op, horizon) {
                Replayed::Kept => None,
                Replayed::Refused(reason) => Some(reason),
                Replayed::StaleNonce(e) => {
                    // Its nonce is still open on chain: the next head tries it again, and it is dropped
                    // once the chain's nonce has passed it.
                    tracing::warn!(op = %op.hash, "kept though the pending state refuses it: {e}");
                    None
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

    /// Replays one pooled op on `pending`: committed if it still validates (and, when such ops are
    /// refused, would not revert) and does not expire before `horizon`.
    fn replay_op(&self, pending: &PendingState, op: &PoolOp, horizon: u64) -> Replayed {
        if op.valid_until < horizon {
            return Replayed::Refused(format!("expired: valid until {}", op.valid_until));
        }
        let reject_reverting = self.inner.cfg.door.reject_reverting_ops;
        match pending.simulate(&op.op, false) {
            Ok((s, changes)) if s.success || !reject_reverting || !op.keyscope => {
                let _ = pending.commit_unchecked(changes);
                Replayed::Kept
            }
            Ok((s, _)) => {
                let why = Refusal::decode(s.revert.as_ref().map_or(&[][..], |b| &b[..]));
                Replayed::Refused(format!("would now revert: {}", why.detail))
            }
            Err(SimError::Internal(e)) => {
                // The node did not answer: keep the op, the next head retries.
                tracing::warn!(op = %op.hash, "re-validation could not read state: {e}");
                Replayed::Kept
            }
            Err(e @ SimError::FailedOp { .. }) if e.to_string().starts_with("AA25") => {
                Replayed::StaleNonce(e)
            }
            Err(e) => Replayed::Refused(self.blamed(op, &e)),
        }
    }

    /// The reason `op` is dropped for `e`, its entities charged if the EntryPoint refused it.
    fn blamed(&self, op: &PoolOp, e: &SimError) -> String {
        if let SimError::FailedOp { reason, .. } = e {
            self.book().blame(op, reason);
        }
        format!("no longer valid: {e}")
    }

    /// True if `op`'s nonce may still be used on chain: the chain's nonce for its key (at the head) is
    /// its own, or an earlier one whose every sequence up to it an op the relayer holds (`held`) takes.
    /// If the chain cannot be read it is kept (the next head asks again).
    fn nonce_still_open(
        &self,
        pending: &PendingState,
        op: &PoolOp,
        held: &HashSet<(Address, U256, u64)>,
    ) -> bool {
        let (sender, key) = op.lane();
        let slot = entry_point_nonce_slot(sender, key);
        let Ok(chain) = pending.node().storage_ref(self.inner.sim.entry_point, slot) else {
            return true;
        };
        let seq = op.seq();
        chain <= U256::from(seq)
            && (chain.to::<u64>()..seq).all(|s| held.contains(&(sender, key, s)))
    }
    /// Drops every pooled op (`debug_bundler_clearMempool`).
    pub(crate) async fn clear(&self) {
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

    /// Rebuilds the pending state on its head while the caller holds the gate alone.
    pub(super) async fn replay_now(&self) -> Persist {
        self.reset_pending(self.head());
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.replay_blocking())
            .await
            .unwrap_or_default()
    }
}

/// What replaying a pooled op on a new pending state found.
enum Replayed {
    /// It still validates (its changes are committed), or the node could not tell.
    Kept,
    /// It no longer validates: dropped with this reason.
    Refused(String),
    /// The EntryPoint refused its nonce (AA25): final only if the chain's nonce says so.
    StaleNonce(SimError),
}
