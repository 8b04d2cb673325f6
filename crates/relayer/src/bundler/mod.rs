//! Bundling: choose ops from the pool (trading-first), simulate the bundle in-process on the state the
//! bundles already in flight leave, sign it with the relayer key, persist, send — several bundles may be
//! in flight at consecutive nonces — and bump a stuck one's fees. One file per job: [`proposer`] chooses
//! and simulates the ops of a bundle and checks it pays ([`economics`]), [`sender`] signs, records, sends
//! and bumps it; this file runs the rounds. Following each bundle to its receipt is the chain follower's
//! job ([`crate::chain`], over [`crate::in_flight`]).

pub(crate) mod economics;
mod proposer;
mod sender;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::{
    eips::eip1559::Eip1559Estimation,
    network::EthereumWallet,
    providers::{DynProvider, Provider},
    sol_types::SolCall,
};
use alloy_primitives::{Address, B256, U256};
use keyscope_core::bindings::IEntryPoint;

use crate::calldata::floor_gas as calldata_floor_gas;
use crate::in_flight::InFlight;
use crate::{
    config::{BundlerConfig, BundlingMode},
    metrics::Metrics,
    pool::{Pool, PoolOp},
    validate::{SimConfig, gas_sum},
};

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
