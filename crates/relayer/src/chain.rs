//! Following the chain: each new head settles the bundles it mined (their ops are included, or back in the
//! pool if the bundle did not carry them), returns the ops of a bundle the node dropped, checks recently
//! mined bundles for reorgs (ops of a bundle that left the canonical chain are bundled again), and moves the
//! pending state to the head — cheaply when the new blocks hold nothing but our bundles. After a restart it
//! resumes what the store says was unfinished.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::{
    network::TransactionResponse,
    providers::{DynProvider, Provider},
    rpc::types::TransactionReceipt,
    sol_types::SolEvent,
};
use alloy_primitives::{Address, B256};
use keyscope_core::bindings::IEntryPoint;

use crate::records::OpEvent;
use crate::{
    config::BundlerConfig,
    in_flight::{Bundle, InFlight},
    metrics::Metrics,
    pool::{MinedIn, Pool, PoolOp},
    store::OpRecord,
    validate::{Head, NodeError},
};

/// New blocks walked one by one to see what they hold; a longer gap rebuilds the pending state.
const MAX_WALK: u64 = 32;

/// A mined bundle, watched for reorgs.
#[derive(Debug, Clone)]
struct Mined {
    at: MinedIn,
    ops: Vec<PoolOp>,
}

/// Follows the head for the pool and the bundler.
#[derive(Debug)]
pub(crate) struct Chain {
    pool: Pool,
    in_flight: Arc<InFlight>,
    provider: DynProvider,
    entry_point: Address,
    cfg: BundlerConfig,
    metrics: Arc<Metrics>,
    mined: Mutex<VecDeque<Mined>>,
    /// The last head followed.
    seen: Mutex<Option<Head>>,
    /// The key this instance signs bundles with.
    relayer: Address,
}

/// What the blocks since the last head hold.
struct NewBlocks {
    /// Each block's parent is the block before it, back to the last head seen.
    linear: bool,
    /// Transactions in the new blocks (empty if they were not walked).
    txs: HashSet<B256>,
    walked: bool,
}

impl Chain {
    /// A follower of `provider`'s chain for `pool` and the bundles `in_flight`.
    pub(crate) fn new(
        pool: Pool,
        in_flight: Arc<InFlight>,
        provider: DynProvider,
        entry_point: Address,
        relayer: Address,
        cfg: BundlerConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pool,
            in_flight,
            provider,
            entry_point,
            cfg,
            metrics,
            mined: Default::default(),
            seen: Default::default(),
            relayer,
        }
    }

    fn seen(&self) -> Option<Head> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at the head: settles mined bundles, notices dropped and reorged ones, and moves the pending
    /// state to the head.
    pub(crate) async fn follow(&self) -> Result<(), NodeError> {
        let _deciding = self.pool.head_lock().await;
        let latest = Head::latest(&self.provider).await?;
        let previous = self.seen().unwrap_or_else(|| self.pool.head());
        if latest.hash == previous.hash {
            return self.check_dropped().await;
        }
        let blocks = self.new_blocks(&previous, &latest).await?;

        for b in self.in_flight.bundles() {
            let may_be_mined = !blocks.walked || b.transactions().any(|t| blocks.txs.contains(&t));
            if !may_be_mined {
                continue;
            }
            if let Some(receipt) = self.receipt(&b).await? {
                self.settle(b, &receipt).await;
            }
        }
        if !blocks.linear {
            self.check_reorgs().await?;
        }
        self.prune(latest.number);
        self.check_dropped().await?;
        if latest.hash != self.pool.head().hash {
            self.pool.on_head(latest).await;
        }
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(latest);
        Ok(())
    }

    /// The blocks after `previous` up to `latest`: walked one by one if few, to see whether they link up and
    /// what they hold.
    async fn new_blocks(&self, previous: &Head, latest: &Head) -> Result<NewBlocks, NodeError> {
        if latest.number <= previous.number || latest.number - previous.number > MAX_WALK {
            return Ok(NewBlocks {
                linear: false,
                txs: HashSet::new(),
                walked: false,
            });
        }
        let (mut txs, mut parent, mut linear) = (HashSet::new(), previous.hash, true);
        for n in previous.number + 1..=latest.number {
            let Some((head, hashes)) = Head::with_txs(&self.provider, n.into()).await? else {
                linear = false;
                break;
            };
            linear &= head.parent_hash == parent;
            parent = head.hash;
            txs.extend(hashes);
        }
        // The chain may have moved again while it was walked.
        linear &= parent == latest.hash;
        Ok(NewBlocks {
            linear,
            txs,
            walked: true,
        })
    }

    /// The receipt of whichever transaction of `b` was mined: the last sent, or one a fee bump replaced but
    /// that the node mined first.
    async fn receipt(&self, b: &Bundle) -> Result<Option<TransactionReceipt>, NodeError> {
        for tx in b.transactions() {
            if let Some(r) = self
                .provider
                .get_transaction_receipt(tx)
                .await
                .map_err(NodeError::from_display)?
            {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// A mined bundle: its ops are included (or, if the transaction did not carry them, back in the pool).
    async fn settle(&self, b: Bundle, receipt: &TransactionReceipt) {
        self.in_flight.remove(b.tx_hash);
        Metrics::inc(&self.metrics.bundles_mined);
        let mut events = HashMap::new();
        let mut repaid = alloy_primitives::U256::ZERO;
        for log in receipt.inner.logs() {
            if log.address() != self.entry_point {
                continue;
            }
            if let Ok(ev) = IEntryPoint::UserOperationEvent::decode_log(&log.inner) {
                events.insert(ev.data.userOpHash, ev.data.success);
                repaid += ev.data.actualGasCost;
            }
        }
        // What the bundle cost and what its ops repaid, for the profit rule's metrics.
        let gwei = |wei: alloy_primitives::U256| {
            (wei / alloy_primitives::U256::from(1_000_000_000u64)).saturating_to::<u64>()
        };
        let cost = alloy_primitives::U256::from(receipt.gas_used)
            * alloy_primitives::U256::from(receipt.effective_gas_price);
        self.metrics
            .bundle_cost_gwei
            .fetch_add(gwei(cost), std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .bundle_repaid_gwei
            .fetch_add(gwei(repaid), std::sync::atomic::Ordering::Relaxed);
        let at = MinedIn {
            tx_hash: receipt.transaction_hash,
            block_number: receipt.block_number.unwrap_or_default(),
            block_hash: receipt.block_hash.unwrap_or_default(),
        };
        let carried = b.ops.len();

        let included = self.pool.settle(b.ops, &at, &events).await;
        if included.len() < carried {
            // The sent state assumed the bundle carried every op: build it again.
            tracing::warn!(tx = %at.tx_hash, "bundle mined without {} of its ops", carried - included.len());
            self.in_flight.halt();
        }
        if !included.is_empty() {
            self.mined
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(Mined { at, ops: included });
        }
    }

    /// Bundles mined in blocks that are no longer canonical: mined again elsewhere (only their block
    /// changes), or back to the pool.
    async fn check_reorgs(&self) -> Result<(), NodeError> {
        let mined: Vec<Mined> = self
            .mined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for m in mined {
            let canonical = self
                .provider
                .get_block_by_number(m.at.block_number.into())
                .await
                .map_err(NodeError::from_display)?
                .map(|b| b.header.hash);
            if canonical == Some(m.at.block_hash) {
                continue;
            }
            let receipt = self
                .provider
                .get_transaction_receipt(m.at.tx_hash)
                .await
                .map_err(NodeError::from_display)?;
            self.mined
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|x| x.at.tx_hash != m.at.tx_hash);
            match receipt.and_then(|r| Some((r.block_number?, r.block_hash?))) {
                Some((block_number, block_hash)) => {
                    let at = MinedIn {
                        block_number,
                        block_hash,
                        ..m.at
                    };
                    let hashes: Vec<B256> = m.ops.iter().map(|o| o.hash).collect();
                    self.pool.reincluded(&hashes, &at).await;
                    self.mined
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_back(Mined { at, ops: m.ops });
                }
                None => {
                    tracing::warn!(tx = %m.at.tx_hash, block = m.at.block_number, "bundle reorged out; its ops go back to the pool");
                    self.in_flight.halt();
                    self.pool.reorged(m.ops).await;
                }
            }
        }
        Ok(())
    }

    /// Watches the bundles that carried `included` (stored records), grouped by transaction, oldest first.
    fn watch_mined(&self, included: Vec<OpRecord>) {
        let mut by_tx: HashMap<B256, Mined> = HashMap::new();
        for rec in included {
            let (Some(tx_hash), Some(block_number), Some(block_hash)) =
                (rec.tx_hash, rec.block_number, rec.block_hash)
            else {
                continue;
            };
            let Some(op) = PoolOp::from_record(&rec) else {
                continue;
            };
            by_tx
                .entry(tx_hash)
                .or_insert_with(|| Mined {
                    at: MinedIn {
                        tx_hash,
                        block_number,
                        block_hash,
                    },
                    ops: Vec::new(),
                })
                .ops
                .push(op);
        }
        let mut found: Vec<Mined> = by_tx.into_values().collect();
        found.sort_by_key(|m| m.at.block_number);
        let mut mined = self.mined.lock().unwrap_or_else(|p| p.into_inner());
        for m in found {
            if !mined.iter().any(|x| x.at.tx_hash == m.at.tx_hash) {
                mined.push_back(m);
            }
        }
    }

    /// Forgets mined bundles deeper than the reorg depth.
    fn prune(&self, head: u64) {
        let mut mined = self.mined.lock().unwrap_or_else(|p| p.into_inner());
        while mined
            .front()
            .is_some_and(|m| m.at.block_number + self.cfg.reorg_depth < head)
        {
            mined.pop_front();
        }
    }

    /// Bundles not mined `resubmit_after_secs` after they were sent, that the node no longer knows: their
    /// ops go back to the pool.
    async fn check_dropped(&self) -> Result<(), NodeError> {
        let after = Duration::from_secs(self.cfg.resubmit_after_secs);
        for b in self.in_flight.bundles() {
            if b.sent_at.elapsed() < after || self.known(&b).await? {
                continue;
            }
            tracing::warn!(tx = %b.tx_hash, "bundle dropped by the node; its ops go back to the pool");
            self.in_flight.halt();
            if let Some(b) = self.in_flight.remove(b.tx_hash) {
                self.pool
                    .restore(
                        b.ops,
                        OpEvent::Resubmit,
                        "the bundle transaction was dropped",
                    )
                    .await;
            }
        }
        Ok(())
    }

    /// True if the node knows one of the bundle's transactions (pending or mined).
    async fn known(&self, b: &Bundle) -> Result<bool, NodeError> {
        for tx in b.transactions() {
            if self
                .provider
                .get_transaction_by_hash(tx)
                .await
                .map_err(NodeError::from_display)?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// After a restart: ops recorded as claimed or sent are settled from their receipts, followed if their
    /// transaction is still pending, or returned to the pool; pending ones return to the pool; the pending
    /// state is rebuilt on the head. Returns how many ops were resumed.
    pub(crate) async fn recover(
        &self,
        records: Vec<OpRecord>,
        recently_included: Vec<OpRecord>,
    ) -> Result<usize, NodeError> {
        let resumed = self.take_over(records, recently_included).await?;
        // The nonce after a followed bundle is asked of the node again.
        self.in_flight.halt();
        let latest = Head::latest(&self.provider).await?;
        self.pool.rebuild(Some(latest)).await;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(latest);
        Ok(resumed)
    }

    /// While running: the ops of a sender shard this instance just took over from another (which died, or
    /// stalled past its lease), resumed as after a restart. A bundle the other instance sent with its own
    /// key and the node still holds is watched, not bumped (the key is not this instance's); if the node
    /// drops it, its ops are bundled again here.
    pub(crate) async fn adopt(
        &self,
        records: Vec<OpRecord>,
        recently_included: Vec<OpRecord>,
    ) -> Result<usize, NodeError> {
        let _deciding = self.pool.head_lock().await;
        let resumed = self.take_over(records, recently_included).await?;
        self.pool.rebuild(None).await;
        Ok(resumed)
    }

    /// Resumes `records` into the pool and settles, follows or returns each bundle they were in.
    async fn take_over(
        &self,
        records: Vec<OpRecord>,
        recently_included: Vec<OpRecord>,
    ) -> Result<usize, NodeError> {
        let (resumed, by_tx) = self.pool.resume(records);
        for (tx, replaced, ops) in by_tx {
            let b = Bundle {
                tx_hash: tx,
                replaced,
                nonce: 0,
                ops,
                sent_at: Instant::now(),
                foreign: false,
            };
            if let Some(receipt) = self.receipt(&b).await? {
                self.settle(b, &receipt).await;
                continue;
            }
            if self.in_flight.carries(tx) {
                continue; // this instance's own bundle, still followed
            }
            let mut live = None;
            for h in b.transactions() {
                if let Some(t) = self
                    .provider
                    .get_transaction_by_hash(h)
                    .await
                    .map_err(NodeError::from_display)?
                {
                    live = Some((h, alloy::consensus::Transaction::nonce(&t), t.from()));
                    break;
                }
            }
            match live {
                Some((h, nonce, from)) => {
                    let mut replaced: Vec<B256> = b.transactions().filter(|t| *t != h).collect();
                    replaced.reverse();
                    let foreign = from != self.relayer;
                    self.in_flight.push(Bundle {
                        tx_hash: h,
                        replaced,
                        nonce,
                        foreign,
                        ..b
                    });
                    if !foreign {
                        // The nonce after it is asked of the node again.
                        self.in_flight.halt();
                    }
                }
                None => {
                    self.pool
                        .restore(b.ops, OpEvent::Resubmit, "its bundle was never mined")
                        .await
                }
            }
        }
        // Bundles mined within the reorg depth before the restart are watched again: a reorg while the
        // relayer was down, or after it, returns their ops to the pool.
        self.watch_mined(recently_included);
        self.check_reorgs().await?;
        Ok(resumed)
    }
}
