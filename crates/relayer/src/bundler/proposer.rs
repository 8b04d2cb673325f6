//! The proposer: takes the best ops from the pool, simulates them as one bundle on the sent state (the
//! state the bundles in flight leave), drops the ops the EntryPoint refuses or that break the bundle
//! (found by bisection), and holds or drops ops that would not repay what they add to its cost; then hands
//! the bundle to the sender.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, U256};

use super::{
    BuildError, Bundler, BundlerDeps, bundle_gas, calldata_floor_gas,
    economics::{Charged, economics, losers, repays},
    handle_ops_data,
};
use crate::{
    in_flight::{InFlight, SentState},
    metrics::Metrics,
    pool::{Pool, PoolOp, now_us},
    records::OpEvent,
    validate::{BundleError, SimBlock, SimConfig, layers::Layers, simulate_bundle},
};

impl Bundler {
    /// Takes the best ops, simulates them as one bundle (dropping ops it refuses, and ops that would not
    /// repay what they add to its cost), signs, persists and sends it. Returns its transaction, or None
    /// if every op was dropped or the bundle waits for company.
    pub(super) async fn send_bundle(&self) -> Result<Option<B256>, BuildError> {
        let mut ops = self
            .deps
            .pool
            .take(self.cfg.max_ops_per_bundle, self.cfg.max_bundle_gas);
        let bundled_us = now_us();
        loop {
            let block = self.deps.pool.pending_state().block();
            let (builder, deps, taken) = (self.sent_builder(), self.deps.clone(), ops.clone());
            let simulated = tokio::task::spawn_blocking(move || {
                simulate_dropping(&deps, &builder.build(), block, taken)
            })
            .await;
            // Taken ops go back to the pool on every way out but a sent bundle or a drop with its reason
            // (a simulation that panicked included), or they would wait in `submitted` with no transaction.
            let (kept, refused, charged) = match simulated
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(v) => v,
                Err(e) => {
                    self.unbundle(ops, &format!("the bundle could not be built: {e}"))
                        .await;
                    return Err(BuildError::Simulation(e.to_string()));
                }
            };
            for r in refused {
                tracing::warn!(op = %r.op.hash, "dropped at bundle time: {}", r.reason);
                self.drop_op(&r.op, &r.reason, r.at_fault).await;
            }
            ops = kept;
            let Some(charged) = charged else {
                return Ok(None);
            };
            let fees = match self.fees().await {
                Ok(fees) => fees,
                Err(e) => {
                    self.unbundle(
                        ops,
                        "the node's fees could not be read; the bundle will be retried",
                    )
                    .await;
                    return Err(e);
                }
            };
            let base_fee = self.deps.pool.head().base_fee;
            let (repaid, cost) = economics(&ops, &charged, base_fee, &fees);
            if repays(repaid, cost, self.cfg.min_profit_percent) {
                break;
            }
            let margin = self.cfg.min_profit_percent;
            let losers = losers(&ops, &charged, base_fee, &fees, margin);
            if losers.is_empty() {
                return self.unpaid(ops, repaid, cost).await;
            }
            // Ops that lose money whatever company they find leave alone; the rest is simulated again
            // on a sent state built without this bundle.
            self.deps.in_flight.forget_sent_state();
            for loser in losers.into_iter().rev() {
                let op = ops.remove(loser.index);
                let (repaid, cost) = (loser.repaid, loser.cost);
                let reason = match loser.short_of_gas {
                    true => format!(
                        "its preVerificationGas does not pay for its calldata as the chain prices it \
                         (EIP-7623's floor included): it would repay {repaid} wei of the {cost} wei it \
                         adds to its bundle's cost; raise preVerificationGas (eth_estimateUserOperationGas)"
                    ),
                    false => format!(
                        "its fees are below what its bundle pays: it would repay {repaid} wei of the \
                         {cost} wei it adds to its bundle's cost; raise maxPriorityFeePerGas"
                    ),
                };
                tracing::warn!(op = %op.hash, "dropped: {reason}");
                Metrics::inc(&self.deps.metrics.unpaid_dropped);
                // Only an op short of gas got past a door that prices calldata right: its sender is charged.
                self.drop_op(&op, &reason, loser.short_of_gas).await;
            }
            // They were valid: the pending state holds their effects until it is rebuilt.
            self.deps.pool.rebuild(None).await;
            if ops.is_empty() {
                return Ok(None);
            }
        }
        *self.unpaid_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        match self.sign_and_send(ops.clone(), bundled_us).await {
            Ok(tx) => Ok(Some(tx)),
            Err(e) => {
                self.deps.in_flight.halt();
                self.unbundle(ops, "sending the bundle failed; it will be retried")
                    .await;
                Err(e)
            }
        }
    }

    /// Gives ops taken for a bundle that will not be sent back to the pool, with the reason.
    async fn unbundle(&self, ops: Vec<PoolOp>, reason: &str) {
        self.deps
            .pool
            .restore(ops, OpEvent::Unbundled, reason)
            .await;
    }

    /// Drops `op`, refused at bundle time with `reason`; one `at_fault` (it passed validation, then broke
    /// the bundle or would have made the relayer lose on it) charges its sender's reputation, so the next
    /// such op costs its sender more than a simulation.
    async fn drop_op(&self, op: &PoolOp, reason: &str, at_fault: bool) {
        self.deps.pool.drop_at_bundle_time(op.hash, reason).await;
        if at_fault {
            self.deps.pool.charge_sender(op.op.sender);
        }
    }

    /// A bundle whose ops would not repay it is not sent: its ops wait in the pool for company (the sent
    /// state, which took the bundle in, is built again without it), and after `profit_wait_ms` without a
    /// bundle that pays they are dropped with the reason.
    async fn unpaid(
        &self,
        ops: Vec<PoolOp>,
        repaid: U256,
        cost: U256,
    ) -> Result<Option<B256>, BuildError> {
        Metrics::inc(&self.deps.metrics.bundles_held);
        self.deps.in_flight.forget_sent_state();
        let since = *self
            .unpaid_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
        if since.elapsed() < Duration::from_millis(self.cfg.profit_wait_ms) {
            self.deps.pool.hold(ops);
            return Ok(None);
        }
        let reason = format!(
            "no bundle repays its gas: the {} ops pooled would repay {repaid} wei of the {cost} wei a \
             bundle costs (min_profit_percent {}); raise preVerificationGas or the fees",
            ops.len(),
            self.cfg.min_profit_percent
        );
        for op in ops {
            tracing::warn!(op = %op.hash, "dropped: {reason}");
            Metrics::inc(&self.deps.metrics.unpaid_dropped);
            self.deps.pool.drop_at_bundle_time(op.hash, &reason).await;
        }
        // They were valid: the pending state holds their effects (nonces, fills) until it is rebuilt.
        self.deps.pool.rebuild(None).await;
        *self.unpaid_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(None)
    }

    /// What builds the sent state on a blocking thread (it may read the node).
    fn sent_builder(&self) -> SentBuilder {
        SentBuilder {
            pool: self.deps.pool.clone(),
            in_flight: self.deps.in_flight.clone(),
            sim: self.deps.sim.clone(),
            beneficiary: self.deps.beneficiary,
        }
    }
}

/// Builds the sent state on a blocking thread.
struct SentBuilder {
    pool: Pool,
    in_flight: Arc<InFlight>,
    sim: Arc<SimConfig>,
    beneficiary: alloy_primitives::Address,
}

impl SentBuilder {
    /// The sent state of the pending state now: kept while the pending state keeps its layers, else built
    /// on the head (on the pending state's node cache if it reads the head, a fresh one if the chain has
    /// moved past it) with every bundle in flight replayed in nonce order.
    fn build(self) -> SentState {
        let pending = self.pool.pending_state();
        if let Some(s) = self.in_flight.sent_state(pending.layers()) {
            return s;
        }
        let head = pending.head();
        let node = match pending.node().block() == head.number {
            true => pending.node().clone(),
            false => Arc::new(pending.node().at(head.number)),
        };
        let layers = Arc::new(Layers::new(node, Default::default()));
        let block = pending.block();
        for b in self.in_flight.bundles() {
            // A bundle the head holds already is refused here and leaves nothing: the state is the same.
            let ops: Vec<_> = b.ops.iter().map(|o| o.op.clone()).collect();
            let mut db = layers.db();
            if let Ok(sim) = simulate_bundle(
                &mut db,
                &self.sim,
                block,
                &ops,
                self.beneficiary,
                bundle_gas(&b.ops, self.beneficiary),
            ) {
                let changes = db.changes(&sim.state, false, block.timestamp);
                let _ = layers.commit_unchecked(changes);
            }
        }
        let sent = SentState {
            lineage: pending.layers().clone(),
            layers,
        };
        self.in_flight.set_sent_state(sent.clone());
        sent
    }
}

/// An op refused at bundle time, with the reason.
#[derive(Debug)]
struct Refused {
    op: PoolOp,
    reason: String,
    /// It passed validation, then made the bundle fail: its sender is charged.
    at_fault: bool,
}

/// The ops a bundle keeps, those it refused, and what the kept ones are charged (None if none are kept).
type Simulated = (Vec<PoolOp>, Vec<Refused>, Option<Charged>);

/// Simulates `ops` as one bundle on the sent state, dropping each op the EntryPoint refuses (FailedOp),
/// and each op found by bisection to make the bundle fail some other way, until the rest passes; commits
/// the bundle into the sent state. Returns the ops kept, those refused with reasons, and the gas the kept
/// ones are charged with the bundle's own (None if none are kept). A failure that a bundle of no op
/// shows too is nobody's fault: it is returned.
fn simulate_dropping(
    deps: &BundlerDeps,
    sent: &SentState,
    block: SimBlock,
    mut ops: Vec<PoolOp>,
) -> Result<Simulated, BundleError> {
    let simulate = |ops: &[PoolOp]| {
        let packed: Vec<_> = ops.iter().map(|o| o.op.clone()).collect();
        let mut db = sent.layers.db();
        let sim = simulate_bundle(
            &mut db,
            &deps.sim,
            block,
            &packed,
            deps.beneficiary,
            bundle_gas(ops, deps.beneficiary),
        );
        (sim, db)
    };
    let mut dropped = Vec::new();
    let mut charged = None;
    while !ops.is_empty() {
        match simulate(&ops) {
            (Ok(sim), db) => {
                let changes = db.changes(&sim.state, false, block.timestamp);
                sent.layers
                    .commit_unchecked(changes)
                    .map_err(|e| BundleError::Failed(e.to_string()))?;
                charged = Some(Charged {
                    bundle_gas: sim.gas_used,
                    floor_gas: calldata_floor_gas(&handle_ops_data(&ops, deps.beneficiary)),
                    ops: sim.charged,
                });
                break;
            }
            (Err(BundleError::FailedOp { index, reason }), _) => dropped.push(Refused {
                op: ops.remove(index),
                reason,
                at_fault: false,
            }),
            // The node did not answer: nobody's fault; the caller puts every op back.
            (Err(BundleError::Node(e)), _) => return Err(BundleError::Node(e)),
            (Err(BundleError::Failed(e)), _) => {
                // With no EntryPoint code every call "passes": no op can be told at fault.
                if !has_code(sent, deps.sim.entry_point) {
                    return Err(BundleError::Failed(e));
                }
                let fails = |n: usize| match simulate(&ops[..n]).0 {
                    Err(BundleError::Failed(e)) => Ok(Some(e)),
                    Err(BundleError::Node(e)) => Err(e),
                    _ => Ok(None),
                };
                let Some((index, why)) =
                    culprit(ops.len(), e.clone(), fails).map_err(BundleError::Node)?
                else {
                    return Err(BundleError::Failed(e));
                };
                dropped.push(Refused {
                    op: ops.remove(index),
                    reason: format!("it makes the bundle fail: {why}"),
                    at_fault: true,
                });
            }
        }
    }
    Ok((ops, dropped, charged))
}

/// True if `at` has code on the sent state (false if it cannot be read).
fn has_code(sent: &SentState, at: Address) -> bool {
    use revm::{Database, primitives::KECCAK_EMPTY};
    let mut db = sent.layers.db();
    matches!(db.basic(at), Ok(Some(info)) if info.code_hash != KECCAK_EMPTY && !info.code_hash.is_zero())
}

/// The op that makes a bundle of `n` ops fail (`failure`) in a way no FailedOp names, by bisection over
/// its prefixes (ops run in order, so a later op's nonce needs the earlier ones): the first op whose prefix
/// fails, with that prefix's failure. `fails(k)` simulates the first `k` ops and returns a failure other
/// than FailedOp, if any. None if a bundle of no op fails as well: then no op is at fault.
/// A simulation that could not be run (the node did not answer) ends the search with `Err`: no op is blamed
/// for it.
fn culprit(
    n: usize,
    failure: String,
    fails: impl Fn(usize) -> Result<Option<String>, String>,
) -> Result<Option<(usize, String)>, String> {
    if fails(0)?.is_some() {
        return Ok(None);
    }
    // Invariant: the first `lo` ops pass, the first `hi` fail with `why`.
    let (mut lo, mut hi, mut why) = (0, n, failure);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match fails(mid)? {
            Some(e) => (hi, why) = (mid, e),
            None => lo = mid,
        }
    }
    Ok(Some((hi - 1, why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_finds_the_first_op_that_makes_the_bundle_fail() {
        // Ops 0..8; op 5 makes every prefix holding it fail. Every position is found, in log2 steps.
        for bad in 0..8 {
            let calls = std::cell::Cell::new(0);
            let fails = |k: usize| {
                calls.set(calls.get() + 1);
                Ok((k > bad).then(|| format!("prefix {k} fails")))
            };
            let found = culprit(8, "all fail".into(), fails).unwrap();
            assert_eq!(found.map(|(i, _)| i), Some(bad));
            assert!(calls.get() <= 4, "{} simulations", calls.get());
        }
        // The failure named is the culprit's own prefix's, when one was simulated.
        assert_eq!(
            culprit(4, "all".into(), |k| Ok((k > 1).then(|| format!("at {k}")))),
            Ok(Some((1, "at 2".into())))
        );
    }

    #[test]
    fn a_failure_an_empty_bundle_shows_too_is_no_ops_fault() {
        assert_eq!(
            culprit(3, "node down".into(), |_| Ok(Some("node down".into()))),
            Ok(None)
        );
    }

    #[test]
    fn a_node_that_stops_answering_mid_search_blames_no_op() {
        // The node answers the empty bundle and the first halving, then fails: the search ends with the
        // node's error, not with the op whose prefix happened to be simulated when it failed.
        let calls = std::cell::Cell::new(0);
        let fails = |k: usize| {
            calls.set(calls.get() + 1);
            if calls.get() > 2 {
                Err("connection refused".to_string())
            } else {
                Ok((k > 6).then(|| "op 6 fails".to_string()))
            }
        };
        assert_eq!(
            culprit(8, "op 6 fails".into(), fails),
            Err("connection refused".into())
        );
    }
}
