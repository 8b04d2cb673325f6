//! What happens to pooled ops after acceptance, as the bundler and the chain follower report it: taken
//! into a bundle, sent, mined (included, or back to the pool if the bundle did not carry them), refused at
//! bundle time, reorged out, resumed after a restart.

use alloy_primitives::B256;
use std::collections::HashMap;

use super::{MinedIn, Persist, Pool, PoolOp, Recorded, now_us};
use crate::records::OpEvent;
use crate::{
    metrics::Metrics,
    store::{AuditEntry, OpRecord, OpStatus},
};

impl Pool {
    /// Up to `max_ops` pooled ops fitting `max_gas`, in bundle order, moved to the submitted set (they
    /// stay in the pending state).
    pub(crate) fn take(&self, max_ops: usize, max_gas: u64) -> Vec<PoolOp> {
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

    /// Puts ops taken for a bundle that was not sent back in the pool as they were (nothing was recorded
    /// of them yet).
    pub(crate) fn hold(&self, ops: Vec<PoolOp>) {
        let mut book = self.book();
        for op in ops {
            book.submitted.remove(&op.hash);
            book.mempool.insert(op);
        }
        self.update_size(&book);
    }

    /// Records `ops` as sent in transaction `tx` (replacing `replaced` by a fee bump, if any) and persists
    /// it: durable before the transaction is sent, so a restart finds and follows it.
    pub(crate) async fn mark_sent(
        &self,
        ops: &[B256],
        tx: B256,
        replaced: &[B256],
        bundled_us: u64,
        sent_us: u64,
        event: OpEvent,
    ) -> Result<(), crate::store::StoreError> {
        let persist = {
            let mut book = self.book();
            // An op forgotten since it was taken (its shard went to another instance) must not be sent.
            if let Some(gone) = ops.iter().find(|h| !book.records.contains_key(*h)) {
                return Err(crate::store::StoreError::Fenced(format!(
                    "op {gone} left this instance's pool while its bundle was built"
                )));
            }
            let mut p = Persist::default();
            for hash in ops {
                p.extend(book.transition(*hash, event, |r| {
                    // Claimed before the node has it; a fee bump's replacement replaces a sent one.
                    r.status = if replaced.is_empty() {
                        OpStatus::Claimed
                    } else {
                        OpStatus::Submitted
                    };
                    r.tx_hash = Some(tx);
                    r.replaced_txs = replaced.to_vec();
                    r.timings.bundled_us.get_or_insert(bundled_us);
                    r.timings.sent_us = Some(sent_us);
                }));
            }
            p
        };
        self.write_now(persist).await?;
        // Older transitions of these ops still waiting for the store must not land over this one.
        self.supersede_unsaved(ops).await;
        Ok(())
    }

    /// Records that the node took transaction `tx` carrying `ops` (claimed → sent). The audit log's
    /// `bundled` entry already names the transaction: only the records change.
    pub(crate) async fn confirm_sent(&self, ops: &[B256], tx: B256) {
        let records: Vec<OpRecord> = {
            let mut book = self.book();
            ops.iter()
                .filter_map(|h| {
                    let r = book.records.get_mut(h)?;
                    if r.status != OpStatus::Claimed || r.tx_hash != Some(tx) {
                        return None;
                    }
                    r.status = OpStatus::Submitted;
                    r.timings.sent_us = Some(now_us());
                    Some(r.clone())
                })
                .collect()
        };
        self.persist(Persist {
            ops: records,
            audit: Vec::new(),
        })
        .await;
    }

    /// Returns submitted `ops` to the pool (a send that failed, a dropped or reorged bundle), with
    /// `event` and `reason` in their records. Their effects are in the pending state already; a
    /// reorged op's record (final, so only in the store) is read back.
    pub(crate) async fn restore(&self, ops: Vec<PoolOp>, event: OpEvent, reason: &str) {
        let mut back = Vec::new();
        for op in &ops {
            if !self.book().records.contains_key(&op.hash) {
                // A reorged op's record is final, so only in the store. One that is not final and not here
                // was forgotten: its sender's shard is another instance's now, and so is the op.
                if let Ok(Some(rec)) = self.inner.store.op(op.hash).await {
                    if rec.status.is_final() {
                        back.push(rec);
                    }
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
                if !book.records.contains_key(&hash) {
                    continue;
                }
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
    pub(crate) async fn drop_at_bundle_time(&self, hash: B256, reason: &str) {
        let persist = {
            let mut book = self.book();
            book.dirty = true;
            if let Some((_, op)) = book.submitted.get(&hash).cloned() {
                book.blame(&op, reason);
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
    pub(crate) async fn settle(
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
                for e in op.tracked() {
                    book.reputation.included(e);
                }
                Metrics::inc(&self.inner.metrics.included);
                let t = book.transition(op.hash, OpEvent::Included, |r| {
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
                OpEvent::Unincluded,
                "the bundle transaction did not include it",
            )
            .await;
        }
        included
    }

    /// Included ops whose bundle was mined again in another block after a reorg.
    pub(crate) async fn reincluded(&self, ops: &[B256], mined: &MinedIn) {
        let mut p = Persist::default();
        for hash in ops {
            if let Ok(Some(mut rec)) = self.inner.store.op(*hash).await {
                rec.block_number = Some(mined.block_number);
                rec.block_hash = Some(mined.block_hash);
                rec.tx_hash = Some(mined.tx_hash);
                p.audit
                    .push(AuditEntry::about(&rec, OpEvent::Reincluded, now_us()));
                p.ops.push(rec);
            }
        }
        self.persist(p).await;
    }

    /// Included ops whose bundle left the canonical chain: back to the pool to be bundled again.
    pub(crate) async fn reorged(&self, ops: Vec<PoolOp>) {
        for _ in &ops {
            Metrics::inc(&self.inner.metrics.reorged_ops);
        }
        self.restore(ops, OpEvent::Reorged, "its bundle left the canonical chain")
            .await;
    }

    /// After a restart: the records of unfinished ops. Pending ones return to the pool; submitted ones
    /// are returned grouped by the transaction (and the ones it replaced) they were sent in, for the
    /// chain follower to settle, follow or send again. The pending state is rebuilt by the caller.
    pub(crate) fn resume(&self, records: Vec<OpRecord>) -> (usize, Vec<Recorded>) {
        let mut by_tx: std::collections::BTreeMap<B256, (Vec<B256>, Vec<PoolOp>)> =
            Default::default();
        let mut resumed = 0;
        let mut book = self.book();
        for rec in records {
            let Some(pool_op) = PoolOp::from_record(&rec) else {
                continue;
            };
            self.know(rec.user_operation.sender);
            // New ops are ordered after those taken over.
            book.mempool.insert_order_floor(rec.order);
            book.records.insert(rec.hash, rec.clone());
            match (rec.status, rec.tx_hash) {
                (s, Some(tx)) if s.in_bundle() => {
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

    /// Forgets every op of the senders `lost` picks, whose shard this instance no longer holds (another
    /// instance took it over): nothing is persisted — the new owner's records rule now — and the pending
    /// state is rebuilt without them. Returns how many ops were forgotten.
    pub(crate) async fn forget_senders(
        &self,
        lost: impl Fn(alloy_primitives::Address) -> bool,
    ) -> usize {
        let forgotten = {
            let mut book = self.book();
            let hashes: Vec<B256> = book
                .records
                .values()
                .filter(|r| lost(r.user_operation.sender))
                .map(|r| r.hash)
                .collect();
            for h in &hashes {
                book.mempool.remove(h);
                book.submitted.remove(h);
                book.records.remove(h);
            }
            self.update_size(&book);
            hashes.len()
        };
        if forgotten > 0 {
            self.rebuild(None).await;
        }
        forgotten
    }
}
