//! A bundle simulated as the chain will run it: `handleOps(ops)` in one transaction, with no inspector (the
//! rules were checked when each op was accepted), on the state the bundles before it leave. An op the
//! EntryPoint refuses is named, so the bundler can drop it and try again.

use alloy::sol_types::{SolCall, SolEvent, SolInterface};
use alloy_primitives::{Address, U256};
use keyscope_core::{
    bindings::IEntryPoint::{self, IEntryPointErrors},
    refusal::{Refusal, describe_revert},
    user_op::PackedUserOperation,
};
use revm::{
    Database, ExecuteEvm, MainBuilder, context_interface::result::ExecutionResult, state::EvmState,
};

use super::{SimBlock, SimConfig, StateReadError, context, tx};

/// Why a bundle's simulation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum BundleError {
    /// The EntryPoint refused op `index` (`FailedOp` / `FailedOpWithRevert`): drop it and try again.
    #[error("op {index} refused: {reason}")]
    FailedOp { index: usize, reason: String },
    /// `handleOps` failed some other way.
    #[error("{0}")]
    Failed(String),
    /// The node's state could not be read: nobody's fault, no op is dropped or charged for it (the ops go
    /// back to the pool and the next round tries again).
    #[error("the node's state could not be read: {0}")]
    Node(String),
}

/// What a simulated bundle did.
#[derive(Debug)]
pub(crate) struct SimulatedBundle {
    /// Gas the transaction used, its intrinsic cost included.
    pub gas_used: u64,
    /// Gas the EntryPoint charged each op (`actualGasUsed`), in bundle order: what they repay, at their
    /// own fee fields, is for the caller to price.
    pub charged: Vec<U256>,
    /// The state it left.
    pub state: EvmState,
}

/// Runs `handleOps(ops)` with `beneficiary` on `db` as the bundle transaction would (no inspector: the
/// rules were checked when each op was accepted). Returns the gas it used, the gas each op is charged
/// and the state it left.
pub(crate) fn simulate_bundle<DB: Database<Error = StateReadError>>(
    db: &mut DB,
    cfg: &SimConfig,
    block: SimBlock,
    ops: &[PackedUserOperation],
    beneficiary: Address,
    gas_limit: u64,
) -> Result<SimulatedBundle, BundleError> {
    let data = IEntryPoint::handleOpsCall {
        ops: ops.to_vec(),
        beneficiary,
    }
    .abi_encode();
    let mut evm = context(db, cfg, block).build_mainnet();
    let out = evm
        .transact(tx(cfg, cfg.entry_point, data, gas_limit))
        .map_err(|e| match e {
            revm::context::result::EVMError::Database(db) => BundleError::Node(db.to_string()),
            other => BundleError::Failed(other.to_string()),
        })?;
    let gas_used = out.result.tx_gas_used();
    match out.result {
        ExecutionResult::Success { logs, .. } => {
            // A call that does not revert proves nothing (an address without code accepts any call): the
            // EntryPoint must report every op it executed.
            let events: Vec<_> = logs
                .iter()
                .filter(|l| l.address == cfg.entry_point)
                .filter_map(|l| IEntryPoint::UserOperationEvent::decode_log(l).ok())
                .collect();
            let executed = events.len();
            if executed != ops.len() {
                return Err(BundleError::Failed(format!(
                    "the simulated handleOps executed {executed} of {} ops (UserOperationEvents): is the \
                     EntryPoint at {} on this chain?",
                    ops.len(),
                    cfg.entry_point
                )));
            }
            Ok(SimulatedBundle {
                gas_used,
                charged: events.iter().map(|e| e.data.actualGasUsed).collect(),
                state: out.state,
            })
        }
        ExecutionResult::Revert { output, .. } => {
            let (index, reason) = match IEntryPointErrors::abi_decode(&output) {
                Ok(IEntryPointErrors::FailedOp(f)) => (f.opIndex, f.reason),
                Ok(IEntryPointErrors::FailedOpWithRevert(f)) => (
                    f.opIndex,
                    format!("{} ({})", f.reason, Refusal::decode(&f.inner).detail),
                ),
                _ => {
                    return Err(BundleError::Failed(format!(
                        "handleOps reverted: {}",
                        describe_revert(&output)
                    )));
                }
            };
            match usize::try_from(index) {
                Ok(index) if index < ops.len() => Err(BundleError::FailedOp { index, reason }),
                _ => Err(BundleError::Failed(format!(
                    "handleOps refused op {index} of {}: {reason}",
                    ops.len()
                ))),
            }
        }
        ExecutionResult::Halt { reason, .. } => {
            Err(BundleError::Failed(format!("handleOps halted: {reason:?}")))
        }
    }
}
