//! Bundling: pick ops (trading-first), re-simulate `handleOps` on the node, sign with the relayer key,
//! persist, send, and follow the transaction to its receipt. Every round also follows the head: a
//! new block settles the bundle in flight, checks recently mined bundles for reorgs (ops of a bundle
//! that left the canonical chain go back to the pool and are bundled again), and rebuilds the
//! pending state on the new head.

use std::time::{Duration, Instant};

use alloy::{
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    providers::Provider,
    rpc::types::{BlockNumberOrTag, TransactionReceipt, TransactionRequest},
    sol_types::{SolCall, SolEvent, SolInterface},
};
use alloy_primitives::{B256, U256};
use keyscope_core::bindings::IEntryPoint::{self, IEntryPointErrors};

use crate::{
    config::BundlingMode,
    metrics::Metrics,
    pool::PoolOp,
    state::{InFlight, Mined, Persist, Shared, SharedState, now_us},
    store::{OpRecord, OpStatus},
    validate::{Head, gas_sum},
};

/// Errors from a bundling round.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("node error: {0}")]
    Node(String),
    #[error("signing the bundle failed: {0}")]
    Sign(String),
    #[error("the bundle was not mined within {0:?}")]
    Timeout(Duration),
}

fn node<E: std::fmt::Display>(e: E) -> BuildError {
    BuildError::Node(e.to_string())
}

/// Gas `handleOps` spends around the ops themselves.
const BUNDLE_OVERHEAD: u64 = 150_000;

/// The chain's head block.
pub async fn head(shared: &Shared) -> Result<Head, BuildError> {
    head_of(&shared.provider).await
}

/// The head block as `provider` sees it.
pub async fn head_of(provider: &alloy::providers::DynProvider) -> Result<Head, BuildError> {
    Ok(latest_block(provider).await?.0)
}

/// The head block and its transactions' hashes.
async fn latest_block(
    provider: &alloy::providers::DynProvider,
) -> Result<(Head, Vec<B256>), BuildError> {
    let b = provider
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await
        .map_err(node)?
        .ok_or_else(|| BuildError::Node("the node has no latest block".into()))?;
    let head = Head {
        number: b.header.number,
        timestamp: b.header.timestamp,
        base_fee: b.header.base_fee_per_gas.unwrap_or(0) as u128,
        hash: b.header.hash,
        parent_hash: b.header.parent_hash,
    };
    Ok((head, b.transactions.hashes().collect()))
}

/// The bundler task: a round every `interval_ms`, or sooner when woken. Reputation changes are
/// saved at most once a second, and on shutdown.
pub async fn run(
    shared: SharedState,
    wallet: EthereumWallet,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval =
        tokio::time::interval(Duration::from_millis(shared.config.bundler.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved = (shared.lock().await.reputation.version(), Instant::now());
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shared.wake.notified() => {}
            _ = shutdown.changed() => break,
        }
        if let Err(e) = round(&shared, &wallet, false).await {
            tracing::warn!("bundling round failed: {e}");
        }
        if saved.1.elapsed() >= Duration::from_secs(1) {
            saved = (save_reputation(&shared, saved.0).await, Instant::now());
        }
    }
    save_reputation(&shared, saved.0).await;
}

/// Persists the reputation if it changed since `version`; returns the version now saved.
async fn save_reputation(shared: &Shared, version: u64) -> u64 {
    let (now, entries) = {
        let inner = shared.lock().await;
        (inner.reputation.version(), inner.reputation.entries())
    };
    if now == version {
        return version;
    }
    match shared.store.save_reputation(entries).await {
        Ok(()) => now,
        Err(e) => {
            tracing::warn!("saving reputation failed (tried again in a second): {e}");
            version
        }
    }
}

/// One round: follow the head, then send a bundle if bundling is automatic (or `force`) and none is
/// in flight. Returns the hash of a bundle it sent.
pub async fn round(
    shared: &SharedState,
    wallet: &EthereumWallet,
    force: bool,
) -> Result<Option<B256>, BuildError> {
    let _one_at_a_time = shared.bundling.lock().await;
    follow_head(shared).await?;
    bump_if_stuck(shared, wallet).await?;
    let due = {
        let inner = shared.lock().await;
        (force || inner.mode == BundlingMode::Auto)
            && inner.in_flight.is_none()
            && !inner.pool.is_empty()
    };
    if !due {
        return Ok(None);
    }
    send_bundle(shared, wallet).await
}

/// `debug_bundler_sendBundleNow`: bundles what is pooled and returns once it is mined.
pub async fn bundle_now(
    shared: &SharedState,
    wallet: &EthereumWallet,
) -> Result<Option<B256>, BuildError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    // A bundle already in flight is settled first.
    while shared.lock().await.in_flight.is_some() {
        round(shared, wallet, false).await?;
        if Instant::now() > deadline {
            return Err(BuildError::Timeout(Duration::from_secs(60)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(tx) = round(shared, wallet, true).await? else {
        return Ok(None);
    };
    let first_op = {
        let inner = shared.lock().await;
        inner
            .in_flight
            .as_ref()
            .and_then(|f| f.ops.first())
            .map(|o| o.hash)
    };
    while shared
        .lock()
        .await
        .in_flight
        .as_ref()
        .is_some_and(|f| f.tx_hash == tx || f.replaced.contains(&tx))
    {
        if Instant::now() > deadline {
            return Err(BuildError::Timeout(Duration::from_secs(60)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _one_at_a_time = shared.bundling.lock().await;
        follow_head(shared).await?;
        bump_if_stuck(shared, wallet).await?;
    }
    // After a fee bump the transaction mined is not the one first sent. A settled op's record has
    // left memory for the store, which `record` reads.
    let mined = match first_op {
        Some(op) => shared.record(op).await.and_then(|r| r.tx_hash),
        None => None,
    };
    Ok(Some(mined.unwrap_or(tx)))
}

/// Settles the bundle in flight, checks mined bundles for reorgs, and rebuilds on a new head.
pub async fn follow_head(shared: &SharedState) -> Result<(), BuildError> {
    let (latest, latest_txs) = latest_block(&shared.provider).await?;
    let mut persist = Persist::default();
    let previous = shared.lock().await.sim.head();
    let mut changed = previous.hash != latest.hash;
    let mut settled = None;

    let in_flight = shared.lock().await.in_flight.clone();
    if let Some(f) = in_flight {
        match mined_receipt(shared, &f).await? {
            Some(receipt) => {
                persist.extend(settle(shared, &mut *shared.lock().await, &f, &receipt));
                settled = receipt.block_number.map(|n| (n, f.tx_hash));
                changed = true;
            }
            None => {
                let waited = f.sent_at.elapsed()
                    > Duration::from_secs(shared.config.bundler.resubmit_after_secs);
                if waited
                    && shared
                        .provider
                        .get_transaction_by_hash(f.tx_hash)
                        .await
                        .map_err(node)?
                        .is_none()
                {
                    tracing::warn!(tx = %f.tx_hash, "bundle dropped by the node; its ops go back to the pool");
                    let mut inner = shared.lock().await;
                    inner.in_flight = None;
                    for op in f.ops {
                        persist.extend(back_to_pool(
                            shared,
                            &mut inner,
                            op,
                            "resubmit",
                            "the bundle transaction was dropped",
                        ));
                    }
                    changed = true;
                }
            }
        }
    }

    let depth = shared.config.bundler.reorg_depth;
    // Mined bundles can only have left the chain if it did not simply grow by one block on top of the
    // last head seen.
    let seen = shared
        .lock()
        .await
        .seen_head
        .replace(latest)
        .unwrap_or(previous);
    let linear = latest.hash == seen.hash
        || (latest.parent_hash == seen.hash && latest.number == seen.number + 1);
    let mined: Vec<Mined> = if linear {
        Vec::new()
    } else {
        shared.lock().await.mined.iter().cloned().collect()
    };
    for m in mined {
        let canonical = shared
            .provider
            .get_block_by_number(m.block_number.into())
            .await
            .map_err(node)?
            .map(|b| b.header.hash);
        if canonical == Some(m.block_hash) {
            continue;
        }
        changed = true;
        let receipt = shared
            .provider
            .get_transaction_receipt(m.tx_hash)
            .await
            .map_err(node)?;
        let mut inner = shared.lock().await;
        inner.mined.retain(|x| x.tx_hash != m.tx_hash);
        match receipt.and_then(|r| Some((r.block_number?, r.block_hash?))) {
            Some((number, hash)) => {
                // Re-mined in the new chain: only its block changed.
                for op in &m.ops {
                    persist.extend(inner.transition(op.hash, "reincluded", |r| {
                        r.block_number = Some(number);
                        r.block_hash = Some(hash);
                    }));
                }
                inner.mined.push_back(Mined {
                    block_number: number,
                    block_hash: hash,
                    ..m
                });
            }
            None => {
                tracing::warn!(tx = %m.tx_hash, block = m.block_number, "bundle reorged out; its ops go back to the pool");
                for op in m.ops {
                    Metrics::inc(&shared.metrics.reorged_ops);
                    persist.extend(back_to_pool(
                        shared,
                        &mut inner,
                        op,
                        "reorged",
                        "its bundle left the canonical chain",
                    ));
                }
            }
        }
    }
    {
        let mut inner = shared.lock().await;
        while inner
            .mined
            .front()
            .is_some_and(|m| m.block_number + depth < latest.number)
        {
            inner.mined.pop_front();
        }
    }
    shared.persist(persist).await;
    // The bundle may have been mined after the head was read: read it again so the check below sees
    // the block that holds it.
    let (latest, latest_txs) = match settled {
        Some((n, _)) if n > latest.number => latest_block(&shared.provider).await?,
        _ => (latest, latest_txs),
    };
    if changed {
        // The common case under load: the only new block holds just our bundle, whose ops the
        // pending state already has — keep it instead of replaying the whole pool.
        let ours_only = settled
            == Some((
                latest.number,
                latest_txs.first().copied().unwrap_or_default(),
            ))
            && latest_txs.len() == 1
            && latest.parent_hash == previous.hash;
        let mut inner = shared.lock().await;
        if ours_only && !inner.dirty {
            inner.sim.advance(latest);
            Metrics::inc(&shared.metrics.advances);
        } else {
            drop(inner);
            shared.rebuild(Some(latest)).await;
        }
    }
    Ok(())
}

/// Returns an op that was bundled to the pool (its record must be kept: reorged ops were final).
fn back_to_pool(
    shared: &Shared,
    inner: &mut crate::state::Inner,
    op: PoolOp,
    event: &str,
    reason: &str,
) -> Persist {
    let hash = op.hash;
    inner.dirty = true;
    if let std::collections::hash_map::Entry::Vacant(slot) = inner.records.entry(hash) {
        if let Ok(Some(rec)) = shared.store.op(hash) {
            slot.insert(rec);
        }
    }
    inner.pool.insert(op);
    inner.transition(hash, event, |r| {
        r.status = OpStatus::Pending;
        r.tx_hash = None;
        r.block_number = None;
        r.block_hash = None;
        r.success = None;
        r.reason = Some(reason.to_string());
    })
}

/// The receipt of whichever transaction of the bundle in flight was mined: the last sent, or one a
/// fee bump replaced but that the node mined first.
async fn mined_receipt(
    shared: &Shared,
    f: &InFlight,
) -> Result<Option<TransactionReceipt>, BuildError> {
    for tx in std::iter::once(&f.tx_hash).chain(f.replaced.iter().rev()) {
        if let Some(r) = shared
            .provider
            .get_transaction_receipt(*tx)
            .await
            .map_err(node)?
        {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// A bundle still pending `bump_after_secs` after it was sent is sent again at the same nonce with
/// its fees raised by an eighth (or to what the node now asks, if more), so a rising base fee does
/// not stall every op behind it. Never above the lowest `maxFeePerGas` of its ops: past that the
/// relayer would pay more than the ops repay, and it waits instead.
async fn bump_if_stuck(shared: &SharedState, wallet: &EthereumWallet) -> Result<(), BuildError> {
    use alloy::consensus::Transaction as _;
    let Some(f) = shared.lock().await.in_flight.clone() else {
        return Ok(());
    };
    let after = Duration::from_secs(shared.config.bundler.bump_after_secs);
    if f.tx_hash == B256::ZERO || f.sent_at.elapsed() < after {
        return Ok(());
    }
    // Gone from the node: follow_head returns its ops to the pool. Mined: follow_head settles it.
    let Some(tx) = shared
        .provider
        .get_transaction_by_hash(f.tx_hash)
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
    let asked = shared
        .provider
        .estimate_eip1559_fees()
        .await
        .map_err(node)?;
    let cap = f
        .ops
        .iter()
        .map(|o| crate::op::unpack(o.op.gasFees).1)
        .min()
        .unwrap_or(0);
    let max_fee = (old_max + old_max.div_ceil(8)).max(asked.max_fee_per_gas);
    let tip = (old_tip + old_tip.div_ceil(8))
        .max(asked.max_priority_fee_per_gas)
        .min(max_fee);
    if max_fee > cap || tip <= old_tip {
        tracing::warn!(
            tx = %f.tx_hash,
            "bundle stuck: a replacement would pay {max_fee} wei/gas, more than its ops offer ({cap}); waiting"
        );
        if let Some(g) = shared.lock().await.in_flight.as_mut() {
            g.sent_at = Instant::now();
        }
        return Ok(());
    }
    let mut request = TransactionRequest::default()
        .with_from(shared.relayer)
        .with_input(tx.input().clone())
        .with_gas_limit(tx.gas_limit())
        .with_nonce(tx.nonce())
        .with_chain_id(shared.chain_id)
        .with_max_fee_per_gas(max_fee)
        .with_max_priority_fee_per_gas(tip);
    if let Some(to) = tx.to() {
        request = request.with_to(to);
    }
    let envelope = request
        .build(wallet)
        .await
        .map_err(|e| BuildError::Sign(e.to_string()))?;
    let new_tx = *envelope.tx_hash();
    let old_tx = f.tx_hash;
    // Durable before it is sent, as for the first transaction: a restart follows both.
    let persist = {
        let mut inner = shared.lock().await;
        let mut p = Persist::default();
        if let Some(g) = inner.in_flight.as_mut() {
            g.replaced.push(old_tx);
            g.tx_hash = new_tx;
            g.sent_at = Instant::now();
        }
        for op in &f.ops {
            p.extend(inner.transition(op.hash, "bumped", |r| {
                r.tx_hash = Some(new_tx);
                r.replaced_txs.push(old_tx);
                r.reason = Some(format!(
                    "fee bump: {old_tx} stuck at {old_max} wei/gas, replaced at {max_fee}"
                ));
            }));
        }
        p
    };
    shared
        .store
        .write(persist.ops, persist.audit)
        .await
        .map_err(|e| BuildError::Node(e.to_string()))?;
    match shared.provider.send_tx_envelope(envelope).await {
        Ok(_) => {
            Metrics::inc(&shared.metrics.fee_bumps);
            Metrics::inc(&shared.metrics.bundles_sent);
            tracing::info!(old = %old_tx, new = %new_tx, max_fee, tip, "stuck bundle re-sent with higher fees");
            Ok(())
        }
        Err(e) => {
            // The node refused the replacement: the first transaction is still the one to follow.
            let persist = {
                let mut inner = shared.lock().await;
                if let Some(g) = inner.in_flight.as_mut() {
                    g.replaced.retain(|h| *h != old_tx);
                    g.tx_hash = old_tx;
                }
                let mut p = Persist::default();
                for op in &f.ops {
                    p.extend(inner.transition(op.hash, "bundled", |r| {
                        r.tx_hash = Some(old_tx);
                        r.replaced_txs.retain(|h| *h != old_tx);
                        r.reason = Some(format!("fee bump refused by the node: {e}"));
                    }));
                }
                p
            };
            shared.persist(persist).await;
            Err(node(e))
        }
    }
}

/// A mined bundle: its ops are included (or, if the bundle reverted, back in the pool).
fn settle(
    shared: &Shared,
    inner: &mut crate::state::Inner,
    f: &InFlight,
    receipt: &TransactionReceipt,
) -> Persist {
    let mut events = std::collections::HashMap::new();
    for log in receipt.inner.logs() {
        if let Ok(ev) = IEntryPoint::UserOperationEvent::decode_log(&log.inner) {
            events.insert(ev.data.userOpHash, ev.data.success);
        }
    }
    let (number, block_hash) = (
        receipt.block_number.unwrap_or_default(),
        receipt.block_hash.unwrap_or_default(),
    );
    let mined_us = now_us();
    let mut persist = Persist::default();
    inner.in_flight = None;
    inner.settled_through = inner.settled_through.max(number);
    Metrics::inc(&shared.metrics.bundles_mined);
    let mut included = Vec::new();
    for op in &f.ops {
        match events.get(&op.hash) {
            Some(success) => {
                for e in [op.factory(), op.paymaster()].into_iter().flatten() {
                    inner.reputation.included(e);
                }
                Metrics::inc(&shared.metrics.included);
                let p = inner.transition(op.hash, "included", |r| {
                    r.status = OpStatus::Included;
                    r.tx_hash = Some(receipt.transaction_hash);
                    r.block_number = Some(number);
                    r.block_hash = Some(block_hash);
                    r.success = Some(*success);
                    r.reason = None;
                    r.timings.mined_us = Some(mined_us);
                });
                if let Some(rec) = p.ops.first() {
                    observe_lifecycle(&shared.metrics, rec);
                }
                persist.extend(p);
                included.push(op.clone());
            }
            None => persist.extend(back_to_pool(
                shared,
                inner,
                op.clone(),
                "unincluded",
                "the bundle transaction reverted",
            )),
        }
    }
    if !included.is_empty() {
        inner.mined.push_back(Mined {
            tx_hash: receipt.transaction_hash,
            block_number: number,
            block_hash,
            ops: included,
        });
    }
    persist
}

fn observe_lifecycle(m: &Metrics, r: &OpRecord) {
    let t = r.timings;
    let span = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
    for (stage, v) in [
        ("wait_bundle", span(t.validated_us, t.bundled_us)),
        ("send", span(t.bundled_us, t.sent_us)),
        ("mine", span(t.sent_us, t.mined_us)),
        ("total", span(Some(t.received_us), t.mined_us)),
    ] {
        if let Some(v) = v {
            m.observe(stage, v);
        }
    }
}

/// Picks ops, re-simulates the bundle on the node (dropping ops it refuses), signs, persists and
/// sends it.
async fn send_bundle(
    shared: &SharedState,
    wallet: &EthereumWallet,
) -> Result<Option<B256>, BuildError> {
    let cfg = &shared.config.bundler;
    let mut ops: Vec<PoolOp> = {
        let mut inner = shared.lock().await;
        let picked = inner.pool.best(cfg.max_ops_per_bundle, cfg.max_bundle_gas);
        let ops: Vec<PoolOp> = picked.iter().filter_map(|h| inner.pool.remove(h)).collect();
        // In flight from now on, so a rebuild meanwhile keeps them in the pending state.
        inner.in_flight = Some(InFlight {
            tx_hash: B256::ZERO,
            replaced: Vec::new(),
            ops: ops.clone(),
            sent_at: Instant::now(),
        });
        ops
    };
    let result = sign_and_send(shared, wallet, &mut ops).await;
    match result {
        Ok(Some(tx_hash)) => Ok(Some(tx_hash)),
        Ok(None) => {
            shared.lock().await.in_flight = None;
            Ok(None)
        }
        Err(e) => {
            let mut persist = Persist::default();
            {
                let mut inner = shared.lock().await;
                inner.in_flight = None;
                for op in ops {
                    persist.extend(back_to_pool(
                        shared,
                        &mut inner,
                        op,
                        "unbundled",
                        "sending the bundle failed; it will be retried",
                    ));
                }
            }
            shared.persist(persist).await;
            Err(e)
        }
    }
}

async fn sign_and_send(
    shared: &SharedState,
    wallet: &EthereumWallet,
    ops: &mut Vec<PoolOp>,
) -> Result<Option<B256>, BuildError> {
    let bundled_us = now_us();
    loop {
        if ops.is_empty() {
            return Ok(None);
        }
        let packed: Vec<_> = ops.iter().map(|o| o.op.clone()).collect();
        let data = IEntryPoint::handleOpsCall {
            ops: packed,
            beneficiary: shared.beneficiary,
        }
        .abi_encode();
        let gas: u64 = ops.iter().map(|o| gas_sum(&o.op)).sum::<u64>() + BUNDLE_OVERHEAD;
        let request = TransactionRequest::default()
            .with_from(shared.relayer)
            .with_to(shared.entry_point)
            .with_input(data)
            .with_gas_limit(gas);
        match shared.provider.call(request.clone()).await {
            Ok(_) => {}
            Err(e) => {
                let Some(revert) = e.as_error_resp().and_then(|p| p.as_revert_data()) else {
                    return Err(node(e));
                };
                let (index, reason) = match IEntryPointErrors::abi_decode(&revert) {
                    Ok(IEntryPointErrors::FailedOp(f)) => (f.opIndex, f.reason),
                    Ok(IEntryPointErrors::FailedOpWithRevert(f)) => (
                        f.opIndex,
                        format!(
                            "{} ({})",
                            f.reason,
                            crate::error::Refusal::decode(&f.inner).detail
                        ),
                    ),
                    _ => {
                        return Err(BuildError::Node(format!(
                            "handleOps reverted: {}",
                            keyscope_core::refusal::describe_revert(&revert)
                        )));
                    }
                };
                let index: usize = index.try_into().unwrap_or(usize::MAX);
                if index >= ops.len() {
                    return Err(BuildError::Node(format!(
                        "handleOps refused op {index} of {}: {reason}",
                        ops.len()
                    )));
                }
                let bad = ops.remove(index);
                tracing::warn!(op = %bad.hash, "dropped at bundle time: {reason}");
                let persist = {
                    let mut inner = shared.lock().await;
                    if let Some(f) = inner.in_flight.as_mut() {
                        f.ops.retain(|o| o.hash != bad.hash);
                    }
                    // The pending state holds the dropped op's effects: rebuild at the next head.
                    inner.dirty = true;
                    let entity = match reason.get(..3) {
                        Some("AA1") => bad.factory(),
                        Some("AA3") => bad.paymaster(),
                        _ => None,
                    };
                    if let Some(e) = entity {
                        inner.reputation.failed(e);
                    }
                    Metrics::inc(&shared.metrics.dropped);
                    inner.transition(bad.hash, "dropped", |r| {
                        r.status = OpStatus::Dropped;
                        r.reason = Some(format!("refused at bundle time: {reason}"));
                    })
                };
                shared.persist(persist).await;
                continue;
            }
        }
        let nonce = shared
            .provider
            .get_transaction_count(shared.relayer)
            .pending()
            .await
            .map_err(node)?;
        let fees = shared
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(node)?;
        let request = request
            .with_nonce(nonce)
            .with_chain_id(shared.chain_id)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = request
            .build(wallet)
            .await
            .map_err(|e| BuildError::Sign(e.to_string()))?;
        let tx_hash = *envelope.tx_hash();
        // Durable before it is sent: a restart finds the transaction and follows it.
        let sent_us = now_us();
        let persist = {
            let mut inner = shared.lock().await;
            if let Some(f) = inner.in_flight.as_mut() {
                f.tx_hash = tx_hash;
                f.sent_at = Instant::now();
            }
            let mut p = Persist::default();
            for op in ops.iter() {
                p.extend(inner.transition(op.hash, "bundled", |r| {
                    r.status = OpStatus::Submitted;
                    r.tx_hash = Some(tx_hash);
                    r.timings.bundled_us = Some(bundled_us);
                    r.timings.sent_us = Some(sent_us);
                }));
            }
            p
        };
        shared
            .store
            .write(persist.ops, persist.audit)
            .await
            .map_err(|e| BuildError::Node(e.to_string()))?;
        let _pending = shared
            .provider
            .send_tx_envelope(envelope)
            .await
            .map_err(node)?;
        Metrics::inc(&shared.metrics.bundles_sent);
        tracing::info!(tx = %tx_hash, ops = ops.len(), "bundle sent");
        return Ok(Some(tx_hash));
    }
}

/// After a restart: ops recorded as submitted are settled from their receipts (or go back to the
/// pool), pending ones return to the pool, and the pending state is rebuilt on the head.
pub async fn recover(shared: &SharedState, records: Vec<OpRecord>) -> Result<usize, BuildError> {
    // A bundle's transaction, with those a fee bump replaced, and its ops.
    let mut by_tx: std::collections::BTreeMap<B256, (Vec<B256>, Vec<PoolOp>)> = Default::default();
    let mut resumed = 0;
    {
        let mut inner = shared.lock().await;
        for rec in records {
            let Ok(op) = rec.user_operation.to_packed() else {
                continue;
            };
            let pool_op = PoolOp {
                hash: rec.hash,
                op,
                kind: rec.kind,
                session_key: rec.session_key,
                received_ms: rec.timings.received_us / 1000,
                valid_until: rec.valid_until,
                order: rec.order,
            };
            inner.records.insert(rec.hash, rec.clone());
            match (rec.status, rec.tx_hash) {
                (OpStatus::Submitted, Some(tx)) => {
                    let entry = by_tx.entry(tx).or_default();
                    entry.0.clone_from(&rec.replaced_txs);
                    entry.1.push(pool_op);
                }
                _ => inner.pool.insert(pool_op),
            }
            resumed += 1;
        }
    }
    let mut persist = Persist::default();
    for (tx, (replaced, ops)) in by_tx {
        let mut f = InFlight {
            tx_hash: tx,
            replaced,
            ops,
            sent_at: Instant::now(),
        };
        // The pending one of its transactions, if the node still has one (a bump the crash kept
        // from being sent leaves the one it replaced).
        let receipt = mined_receipt(shared, &f).await?;
        let mut pending = None;
        if receipt.is_none() {
            for h in std::iter::once(tx).chain(f.replaced.iter().rev().copied()) {
                if shared
                    .provider
                    .get_transaction_by_hash(h)
                    .await
                    .map_err(node)?
                    .is_some()
                {
                    pending = Some(h);
                    break;
                }
            }
        }
        match (receipt, pending) {
            (Some(receipt), _) => {
                persist.extend(settle(shared, &mut *shared.lock().await, &f, &receipt))
            }
            (None, Some(live)) if shared.lock().await.in_flight.is_none() => {
                if live != f.tx_hash {
                    f.replaced.retain(|h| *h != live);
                    f.replaced.push(f.tx_hash);
                    f.tx_hash = live;
                }
                shared.lock().await.in_flight = Some(f);
            }
            (None, _) => {
                let mut inner = shared.lock().await;
                for op in f.ops {
                    persist.extend(back_to_pool(
                        shared,
                        &mut inner,
                        op,
                        "resubmit",
                        "its bundle was never mined",
                    ));
                }
            }
        }
    }
    let latest = head(shared).await?;
    shared.persist(persist).await;
    shared.rebuild(Some(latest)).await;
    Ok(resumed)
}

/// The relayer's ETH balance, for the status method.
pub async fn balance(shared: &Shared) -> Result<U256, BuildError> {
    shared
        .provider
        .get_balance(shared.relayer)
        .await
        .map_err(node)
}
