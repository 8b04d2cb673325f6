//! The sender: signs a bundle with the relayer key at the next nonce in flight, records it (claimed)
//! before the node sees it, sends it, and re-sends a stuck one with higher fees when its ops repay them.

use alloy::{
    consensus::Transaction as _,
    eips::eip1559::Eip1559Estimation,
    network::{NetworkTransactionBuilder, TransactionBuilder},
    providers::Provider,
    rpc::types::TransactionRequest,
};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use keyscope_core::rpc_op::unpack;

use super::{BuildError, Bundler, bundle_gas, handle_ops_data, node};
use crate::{
    in_flight::Bundle,
    metrics::Metrics,
    pool::{PoolOp, now_us},
    records::OpEvent,
};

impl Bundler {
    /// Fees for the next bundle: what the node asks, read once per head.
    pub(super) async fn fees(&self) -> Result<Eip1559Estimation, BuildError> {
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

    pub(super) async fn sign_and_send(
        &self,
        ops: Vec<PoolOp>,
        bundled_us: u64,
    ) -> Result<B256, BuildError> {
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
            .mark_sent(
                &hashes,
                tx_hash,
                &[],
                bundled_us,
                now_us(),
                OpEvent::Bundled,
            )
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
                                OpEvent::Unbundled,
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
    pub(super) async fn bump_if_stuck(&self) -> Result<(), BuildError> {
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
            .mark_sent(
                &hashes,
                new_tx,
                &replaced,
                now_us(),
                now_us(),
                OpEvent::Bumped,
            )
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
                        OpEvent::BumpRefused,
                    )
                    .await;
                Err(node(e))
            }
        }
    }
}
