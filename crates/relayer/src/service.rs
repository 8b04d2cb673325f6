//! The relayer's moving parts put together: the pool, the chain follower and the bundler, driven by one
//! loop (a round on a timer, or sooner when an op arrives or a bundle is sent), and the identity the RPC
//! face reports.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::providers::{DynProvider, Provider};
use alloy_primitives::{Address, B256, U256};
use tokio::sync::{Mutex, Notify, watch};

use crate::{
    bundler::{BuildError, Bundler},
    chain::Chain,
    in_flight::InFlight,
    pool::Pool,
    store::Store,
};

/// Who the relayer is and what it serves.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// The chain's id.
    pub chain_id: u64,
    /// The EntryPoint served.
    pub entry_point: Address,
    /// The venue, for trading-aware answers.
    pub venue: Option<Address>,
    /// The relayer's EOA (signs bundles).
    pub relayer: Address,
    /// Receives the ops' gas payments.
    pub beneficiary: Address,
}

/// The pool, the chain follower and the bundler.
#[derive(Debug)]
pub(crate) struct Service {
    pub identity: Identity,
    pub pool: Pool,
    pub chain: Chain,
    pub bundler: Bundler,
    pub in_flight: Arc<InFlight>,
    pub provider: DynProvider,
    pub store: Store,
    /// Notified when a bundle is sent.
    pub sent: Arc<Notify>,
    /// One round at a time (the loop and `debug_bundler_sendBundleNow`).
    rounds: Mutex<()>,
    interval: Duration,
    /// When the node's chain id was last checked, and why the relayer stopped if it no longer matches.
    chain_check: std::sync::Mutex<(Option<Instant>, Option<String>)>,
}

/// How long `/ready` waits for the node and for the store.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// How many blocks the relayer's head may trail the node's and still be ready.
pub(crate) const READY_LAG: u64 = 8;

impl Service {
    /// Puts the parts together.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        identity: Identity,
        pool: Pool,
        chain: Chain,
        bundler: Bundler,
        in_flight: Arc<InFlight>,
        provider: DynProvider,
        store: Store,
        sent: Arc<Notify>,
        interval: Duration,
    ) -> Self {
        Self {
            identity,
            pool,
            chain,
            bundler,
            in_flight,
            provider,
            store,
            sent,
            rounds: Mutex::new(()),
            interval,
            chain_check: std::sync::Mutex::new((None, None)),
        }
    }

    /// One round: follow the head, then bundle (automatically, or once if `force`).
    pub(crate) async fn round(&self, force: bool) -> Result<Option<B256>, BuildError> {
        let _one = self.rounds.lock().await;
        self.check_chain().await?;
        self.chain
            .follow()
            .await
            .map_err(|e| BuildError::Node(e.to_string()))?;
        self.bundler.round(force).await
    }

    /// At most once a second, asks the node its chain id: a node that now serves another chain (a
    /// misconfigured failover, a devnet restarted with another id) stops the relayer's bundling for good,
    /// with the reason, rather than sending bundles signed for the wrong chain.
    async fn check_chain(&self) -> Result<(), BuildError> {
        {
            let c = self.chain_check.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(why) = &c.1 {
                return Err(BuildError::Node(why.clone()));
            }
            if c.0.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return Ok(());
            }
        }
        let id = self
            .provider
            .get_chain_id()
            .await
            .map_err(|e| BuildError::Node(e.to_string()))?;
        let mut c = self.chain_check.lock().unwrap_or_else(|p| p.into_inner());
        c.0 = Some(Instant::now());
        if id != self.identity.chain_id {
            let why = format!(
                "the node now reports chain id {id}, but this relayer serves chain {}: it sends nothing \
                 more; restart it against the right node",
                self.identity.chain_id
            );
            tracing::error!("{why}");
            c.1 = Some(why.clone());
            return Err(BuildError::Node(why));
        }
        Ok(())
    }

    /// Runs rounds until `shutdown`; reputation changes are saved at most once a second, and on shutdown.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let arrivals = self.pool.arrivals();
        let mut saved = (self.pool.reputation_snapshot().0, Instant::now());
        self.bundler.refresh_balance().await;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = arrivals.notified() => {}
                _ = self.sent.notified() => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = self.round(false).await {
                tracing::warn!("bundling round failed: {e}");
            }
            // The pool and in-flight gauges read from the pool itself, so they cannot drift.
            self.pool.refresh_gauges();
            if saved.1.elapsed() >= Duration::from_secs(1) {
                saved = (self.save_reputation(saved.0).await, Instant::now());
                self.bundler.refresh_balance().await;
            }
        }
        self.save_reputation(saved.0).await;
    }

    /// Whether the relayer can do its work now (`/ready`): still on its chain, the node answering with a
    /// head the relayer follows within [`READY_LAG`] blocks, the store answering, and the bundle key holding
    /// some ETH. The reason, if not, names no host or URL (the details go to the log).
    pub(crate) async fn ready(&self) -> Result<serde_json::Value, String> {
        if let Some(why) = &self.chain_check.lock().unwrap_or_else(|p| p.into_inner()).1 {
            return Err(why.clone());
        }
        let latest = match tokio::time::timeout(PROBE_WAIT, self.provider.get_block_number()).await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!("readiness: the node did not answer: {e}");
                return Err("the node does not answer".into());
            }
            Err(_) => return Err(format!("the node did not answer within {PROBE_WAIT:?}")),
        };
        let head = self.pool.head().number;
        if latest.saturating_sub(head) > READY_LAG {
            return Err(format!(
                "the relayer follows block {head}, {} behind the node's {latest}",
                latest - head
            ));
        }
        match tokio::time::timeout(PROBE_WAIT, self.store.op(B256::ZERO)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!("readiness: the store did not answer: {e}");
                return Err("the store does not answer".into());
            }
            Err(_) => return Err(format!("the store did not answer within {PROBE_WAIT:?}")),
        }
        // A bundle key with nothing to pay gas with accepts ops it can never send.
        let key = self.identity.relayer;
        match tokio::time::timeout(PROBE_WAIT, self.provider.get_balance(key)).await {
            Ok(Ok(wei)) if wei.is_zero() => {
                return Err(format!(
                    "the bundle key {key} holds no ETH: it cannot pay for bundles; send it ETH"
                ));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!("readiness: the node did not answer a balance read: {e}");
                return Err("the node does not answer".into());
            }
            Err(_) => return Err(format!("the node did not answer within {PROBE_WAIT:?}")),
        }
        Ok(serde_json::json!({ "ready": true, "head": head, "nodeHead": latest }))
    }

    /// Persists the reputation if it changed since `version`; returns the version now saved.
    async fn save_reputation(&self, version: u64) -> u64 {
        let (now, entries) = self.pool.reputation_snapshot();
        if now == version {
            return version;
        }
        match self.store.save_reputation(entries).await {
            Ok(()) => now,
            Err(e) => {
                tracing::warn!("saving reputation failed (tried again in a second): {e}");
                version
            }
        }
    }

    /// `debug_bundler_sendBundleNow`: settles what is in flight, bundles what is pooled and returns once
    /// that bundle is mined, with the transaction that mined it (after a fee bump, not the first sent).
    pub(crate) async fn bundle_now(&self) -> Result<Option<B256>, BuildError> {
        const LIMIT: Duration = Duration::from_secs(60);
        let deadline = Instant::now() + LIMIT;
        let wait = || async {
            if Instant::now() > deadline {
                return Err(BuildError::Timeout(LIMIT));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        };
        while !self.in_flight.is_empty() {
            self.round(false).await?;
            wait().await?;
        }
        let Some(tx) = self.round(true).await? else {
            return Ok(None);
        };
        let first_op = self
            .in_flight
            .bundles()
            .iter()
            .find(|b| b.carried_by(tx))
            .and_then(|b| b.ops.first().map(|o| o.hash));
        while self.in_flight.carries(tx) {
            wait().await?;
            self.round(false).await?;
        }
        // A settled op's record has left memory for the store, which `record` reads.
        let mined = match first_op {
            Some(op) => self.pool.record(op).await.and_then(|r| r.tx_hash),
            None => None,
        };
        Ok(Some(mined.unwrap_or(tx)))
    }

    /// The relayer's ETH balance.
    pub(crate) async fn balance(&self) -> Result<U256, BuildError> {
        self.provider
            .get_balance(self.identity.relayer)
            .await
            .map_err(|e| BuildError::Node(e.to_string()))
    }
}

#[async_trait::async_trait]
impl crate::cluster::ShardHolder for Service {
    fn head_number(&self) -> u64 {
        self.pool.head().number
    }

    async fn adopt(
        &self,
        records: Vec<crate::records::OpRecord>,
        mined: Vec<crate::records::OpRecord>,
    ) -> Result<usize, String> {
        self.chain
            .adopt(records, mined)
            .await
            .map_err(|e| e.to_string())
    }

    async fn forget_senders(
        &self,
        lost: &(dyn Fn(alloy_primitives::Address) -> bool + Send + Sync),
    ) {
        self.pool.forget_senders(lost).await;
    }
}
