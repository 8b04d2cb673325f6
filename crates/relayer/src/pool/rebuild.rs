//! Moving the pending state to a new head: rebuilt by replaying what is in flight and then the pool in
//! acceptance order, dropping what no longer validates.

use std::sync::Arc;

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
    pub async fn on_head(&self, head: Head) {
        self.rebuild(Some(head)).await;
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
                    Ok((s, changes)) if s.success || !reject_reverting || !op.keyscope => {
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
                    Err(e) => {
                        if let SimError::FailedOp { reason, .. } = &e {
                            self.book().blame(&op, reason);
                        }
                        Some(format!("no longer valid: {e}"))
                    }
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

    /// Rebuilds the pending state on its head while the caller holds the gate alone.
    pub(super) async fn replay_now(&self) -> Persist {
        self.reset_pending(self.head());
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.replay_blocking())
            .await
            .unwrap_or_default()
    }
}
