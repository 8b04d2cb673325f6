//! Bundling: choose ops from the pool (trading-first), simulate the bundle in-process on the state the
//! bundles already in flight leave, sign it with the relayer key, persist, send — several bundles may be
//! in flight at consecutive nonces — and bump a stuck one's fees. Following each bundle to its receipt is
//! the chain follower's job ([`crate::chain`]).

pub(crate) mod economics;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::{
    consensus::Transaction as _,
    eips::eip1559::Eip1559Estimation,
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use alloy_primitives::{Address, B256, U256};
use keyscope_core::{bindings::IEntryPoint, rpc_op::unpack};

use crate::calldata::floor_gas as calldata_floor_gas;
use crate::in_flight::{Bundle, InFlight, SentState};
use crate::{
    config::{BundlerConfig, BundlingMode},
    metrics::Metrics,
    pool::{Pool, PoolOp, now_us},
    validate::{BundleError, SimBlock, SimConfig, gas_sum, layers::Layers, simulate_bundle},
};
use economics::{Charged, economics, losers, repays};

/// Errors from a bundling round.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// The node did not answer, or refused a transaction.
    #[error("node error: {0}")]
    Node(String),
    /// The store could not record the bundle before it was sent.
    #[error("recording the bundle failed: {0}")]
    Store(String),
    /// The wallet could not sign.
    #[error("signing the bundle failed: {0}")]
    Sign(String),
    /// The bundle's simulation failed for a reason no single op explains.
    #[error("the bundle cannot be built: {0}")]
    Simulation(String),
    /// A bundle was not mined in time.
    #[error("the bundle was not mined within {0:?}")]
    Timeout(Duration),
}

fn node<E: std::fmt::Display>(e: E) -> BuildError {
    BuildError::Node(e.to_string())
}

/// Gas `handleOps` spends around the ops themselves.
const BUNDLE_OVERHEAD: u64 = 150_000;

/// Who the bundles come from and where they go.
#[derive(Debug, Clone)]
pub(crate) struct BundlerDeps {
    pub pool: Pool,
    pub in_flight: Arc<InFlight>,
    pub provider: DynProvider,
    pub wallet: EthereumWallet,
    pub sim: Arc<SimConfig>,
    /// Receives the ops' gas payments.
    pub beneficiary: alloy_primitives::Address,
    pub metrics: Arc<Metrics>,
    /// Notified when a bundle is sent (wakes the chain follower).
    pub sent: Arc<tokio::sync::Notify>,
}

/// Builds, sends and bumps bundles.
#[derive(Debug)]
pub(crate) struct Bundler {
    deps: BundlerDeps,
    cfg: BundlerConfig,
    /// The fees asked of the last head seen, and that head.
    fees: Mutex<Option<(B256, Eip1559Estimation)>>,
    /// Since when the pooled ops have not repaid a bundle.
    unpaid_since: Mutex<Option<Instant>>,
}

impl Bundler {
    /// A bundler over `deps`.
    pub(crate) fn new(deps: BundlerDeps, cfg: BundlerConfig) -> Self {
        Self {
            deps,
            cfg,
            fees: Mutex::new(None),
            unpaid_since: Mutex::new(None),
        }
    }

    /// One round: bump stuck bundles, then send bundles while ops wait, fewer than `max_in_flight` are in
    /// flight and bundling is automatic (or `force`: one bundle). Returns the last bundle it sent.
    pub(crate) async fn round(&self, force: bool) -> Result<Option<B256>, BuildError> {
        self.bump_if_stuck().await?;
        let mut last = None;
        loop {
            let auto = self.deps.pool.mode() == BundlingMode::Auto;
            let due = (force && last.is_none()) || auto;
            if !due
                || !self.deps.pool.has_pooled()
                || self.deps.in_flight.len() >= self.cfg.max_in_flight
                || !self.deps.in_flight.may_send()
            {
                return Ok(last);
            }
            match self.send_bundle().await? {
                Some(tx) => last = Some(tx),
                None => return Ok(last),
            }
            if !auto {
                return Ok(last);
            }
        }
    }

    /// Takes the best ops, simulates them as one bundle (dropping ops it refuses, and ops that would not
    /// repay what they add to its cost), signs, persists and sends it. Returns its transaction, or None
    /// if every op was dropped or the bundle waits for company.
    async fn send_bundle(&self) -> Result<Option<B256>, BuildError> {
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
                    self.deps
                        .pool
                        .restore(
                            ops,
                            "unbundled",
                            &format!("the bundle could not be built: {e}"),
                        )
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
                    self.deps
                        .pool
                        .restore(
                            ops,
                            "unbundled",
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
                self.deps
                    .pool
                    .restore(
                        ops,
                        "unbundled",
                        "sending the bundle failed; it will be retried",
                    )
                    .await;
                Err(e)
            }
        }
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

    /// Reads the bundle key's balance into its gauge (an operator refills the key before it runs dry).
    pub(crate) async fn refresh_balance(&self) {
        match self.deps.provider.get_balance(self.deps.sim.relayer).await {
            Ok(wei) => {
                let gwei = wei / U256::from(1_000_000_000u64);
                self.deps.metrics.bundle_key_balance_gwei.store(
                    gwei.try_into().unwrap_or(u64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            Err(e) => tracing::debug!("reading the bundle key's balance failed: {e}"),
        }
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

    /// Fees for the next bundle: what the node asks, read once per head.
    async fn fees(&self) -> Result<Eip1559Estimation, BuildError> {
        let head = self.deps.pool.head().hash;
        if let Some((at, fees)) = *self.fees.lock().unwrap_or_else(|p| p.into_inner()) {
            if at == head {
                return Ok(fees);
            }
        }
        let fees = self
            .deps
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(node)?;
        *self.fees.lock().unwrap_or_else(|p| p.into_inner()) = Some((head, fees));
        Ok(fees)
    }

    async fn sign_and_send(&self, ops: Vec<PoolOp>, bundled_us: u64) -> Result<B256, BuildError> {
        let sim = &self.deps.sim;
        let data = handle_ops_data(&ops, self.deps.beneficiary);
        let nonce = match self.deps.in_flight.next_nonce() {
            Some(n) => n,
            None => self
                .deps
                .provider
                .get_transaction_count(sim.relayer)
                .pending()
                .await
                .map_err(node)?,
        };
        let fees = self.fees().await?;
        let envelope = TransactionRequest::default()
            .with_from(sim.relayer)
            .with_to(sim.entry_point)
            .with_input(data)
            .with_gas_limit(bundle_gas(&ops, self.deps.beneficiary))
            .with_nonce(nonce)
            .with_chain_id(sim.chain_id)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .build(&self.deps.wallet)
            .await
            .map_err(|e| BuildError::Sign(e.to_string()))?;
        let tx_hash = *envelope.tx_hash();
        let hashes: Vec<B256> = ops.iter().map(|o| o.hash).collect();
        // Durable before it is sent: a restart finds the transaction and follows it.
        self.deps
            .pool
            .mark_sent(&hashes, tx_hash, &[], bundled_us, now_us(), "bundled")
            .await
            .map_err(|e| BuildError::Store(e.to_string()))?;
        let count = ops.len();
        let carried = hashes.clone();
        self.deps.in_flight.push(Bundle {
            tx_hash,
            replaced: Vec::new(),
            nonce,
            ops,
            sent_at: Instant::now(),
            foreign: false,
        });
        // Sent in the background: the next bundle is built while the node takes this one.
        let (provider, deps) = (self.deps.provider.clone(), self.deps.clone());
        tokio::spawn(async move {
            match provider.send_tx_envelope(envelope).await {
                Ok(_) => {
                    Metrics::inc(&deps.metrics.bundles_sent);
                    tracing::info!(tx = %tx_hash, ops = count, nonce, "bundle sent");
                    deps.pool.confirm_sent(&carried, tx_hash).await;
                }
                Err(e) => {
                    tracing::warn!(tx = %tx_hash, "sending the bundle failed: {e}; its ops go back to the pool");
                    deps.in_flight.halt();
                    if let Some(b) = deps.in_flight.remove(tx_hash) {
                        deps.pool
                            .restore(
                                b.ops,
                                "unbundled",
                                &format!("sending the bundle failed: {e}"),
                            )
                            .await;
                    }
                }
            }
            deps.sent.notify_one();
        });
        Ok(tx_hash)
    }

    /// A bundle still pending `bump_after_secs` after it was sent is sent again at the same nonce with its
    /// fees raised by an eighth (or to what the node now asks, if more), so a rising base fee does not stall
    /// every op behind it. Never above the lowest `maxFeePerGas` nor the lowest tip of its ops: past either
    /// the relayer would pay more a gas than an op repays, and it waits instead.
    async fn bump_if_stuck(&self) -> Result<(), BuildError> {
        let after = Duration::from_secs(self.cfg.bump_after_secs);
        for b in self.deps.in_flight.bundles() {
            if !b.foreign && b.sent_at.elapsed() >= after {
                self.bump(b).await?;
            }
        }
        Ok(())
    }

    /// Re-sends `b`'s transaction with higher fees, unless that would pay more than its ops offer; records
    /// the replacement before sending it (read the steps in order: the node, the fees, the persist, the send,
    /// and undoing the record if the node refuses — 105 lines, kept together).
    async fn bump(&self, b: Bundle) -> Result<(), BuildError> {
        // Gone from the node: the chain follower returns its ops to the pool. Mined: it settles it.
        let Some(tx) = self
            .deps
            .provider
            .get_transaction_by_hash(b.tx_hash)
            .await
            .map_err(node)?
        else {
            return Ok(());
        };
        if tx.block_number.is_some() {
            return Ok(());
        }
        let (old_max, old_tip) = (
            tx.max_fee_per_gas(),
            tx.max_priority_fee_per_gas()
                .unwrap_or(tx.max_fee_per_gas()),
        );
        let asked = self
            .deps
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(node)?;
        // The bundle pays min(max fee, base fee + tip) a gas and each op repays min(its max fee, base fee
        // + its tip): with neither above the ops' lowest, no base fee makes the relayer pay more a gas
        // than an op repays.
        let (cap_fee, cap_tip) = b
            .ops
            .iter()
            .map(|o| {
                let (tip, max_fee) = unpack(o.op.gasFees);
                (max_fee, tip)
            })
            .fold((u128::MAX, u128::MAX), |(f, t), (of, ot)| {
                (f.min(of), t.min(ot))
            });
        let max_fee = (old_max + old_max.div_ceil(8)).max(asked.max_fee_per_gas);
        let tip = (old_tip + old_tip.div_ceil(8))
            .max(asked.max_priority_fee_per_gas)
            .min(max_fee);
        if max_fee > cap_fee || tip > cap_tip || tip <= old_tip {
            tracing::warn!(
                tx = %b.tx_hash,
                "bundle stuck: a replacement would pay {max_fee} wei/gas at a {tip} wei tip, more than its \
                 ops repay (at most {cap_fee} at a {cap_tip} tip); waiting"
            );
            Metrics::inc(&self.deps.metrics.bumps_withheld);
            self.deps
                .in_flight
                .update(b.tx_hash, |g| g.sent_at = Instant::now());
            return Ok(());
        }
        let sim = &self.deps.sim;
        let mut request = TransactionRequest::default()
            .with_from(sim.relayer)
            .with_input(tx.input().clone())
            .with_gas_limit(tx.gas_limit())
            .with_nonce(tx.nonce())
            .with_chain_id(sim.chain_id)
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(tip);
        if let Some(to) = tx.to() {
            request = request.with_to(to);
        }
        let envelope = request
            .build(&self.deps.wallet)
            .await
            .map_err(|e| BuildError::Sign(e.to_string()))?;
        let (old_tx, new_tx) = (b.tx_hash, *envelope.tx_hash());
        let hashes: Vec<B256> = b.ops.iter().map(|o| o.hash).collect();
        let mut replaced = b.replaced.clone();
        replaced.push(old_tx);
        // Durable before it is sent, as for the first transaction: a restart follows both.
        self.deps
            .pool
            .mark_sent(&hashes, new_tx, &replaced, now_us(), now_us(), "bumped")
            .await
            .map_err(|e| BuildError::Store(e.to_string()))?;
        self.deps.in_flight.update(old_tx, |g| {
            g.replaced.push(old_tx);
            g.tx_hash = new_tx;
            g.sent_at = Instant::now();
        });
        match self.deps.provider.send_tx_envelope(envelope).await {
            Ok(_) => {
                Metrics::inc(&self.deps.metrics.fee_bumps);
                Metrics::inc(&self.deps.metrics.bundles_sent);
                tracing::info!(old = %old_tx, new = %new_tx, max_fee, tip, "stuck bundle re-sent with higher fees");
                Ok(())
            }
            Err(e) => {
                // The node refused the replacement: the first transaction is still the one to follow.
                self.deps.in_flight.update(new_tx, |g| {
                    g.replaced.retain(|h| *h != old_tx);
                    g.tx_hash = old_tx;
                });
                let _ = self
                    .deps
                    .pool
                    .mark_sent(
                        &hashes,
                        old_tx,
                        &b.replaced,
                        now_us(),
                        now_us(),
                        "bump refused",
                    )
                    .await;
                Err(node(e))
            }
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

/// The gas limit of a bundle of `ops`: all the gas each op may use and `handleOps`' own — and at least the
/// EIP-7623 floor of its calldata, which the chain charges however little the bundle executes.
pub(crate) fn bundle_gas(ops: &[PoolOp], beneficiary: Address) -> u64 {
    let limits = ops.iter().map(|o| gas_sum(&o.op)).sum::<u64>() + BUNDLE_OVERHEAD;
    limits.max(calldata_floor_gas(&handle_ops_data(ops, beneficiary)))
}

/// The bundle transaction's calldata: `handleOps(ops, beneficiary)`.
fn handle_ops_data(ops: &[PoolOp], beneficiary: Address) -> Vec<u8> {
    IEntryPoint::handleOpsCall {
        ops: ops.iter().map(|o| o.op.clone()).collect(),
        beneficiary,
    }
    .abi_encode()
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
