//! Validation before acceptance: the op runs through the real EntryPoint's `handleOps` on revm, over
//! the node's state at the head block plus every op the relayer has already accepted (the pending
//! state, [`layers`]), with the ERC-7562 inspector ([`rules`]) watching its validation. One run answers
//! everything the door asks: signature, nonce, validity window, prefund, the rules, whether the execution
//! would revert and why, and — for a trading account — its health before and after. These functions run
//! on any revm database: the pool's pending state gives each simulation its own layer.

pub(crate) mod bundle;
pub(crate) mod layers;
pub(crate) mod node;
pub(crate) mod rules;
pub(crate) mod unfunded;

use std::collections::HashSet;

use alloy::{
    providers::{DynProvider, Provider},
    rpc::types::BlockNumberOrTag,
    sol_types::{SolCall, SolEvent},
};
use alloy_primitives::{Address, B256, Bytes, Log, U256};
use keyscope_core::{
    bindings::{IEntryPoint, PerpVenue, TradingAccount},
    user_op::PackedUserOperation,
};
use revm::{
    Context, Database, ExecuteEvm, InspectEvm, MainBuilder, MainContext,
    context::TxEnv,
    context_interface::result::{ExecutionResult, Output},
    primitives::{TxKind, hardfork::SpecId},
    state::EvmState,
};
use serde::Serialize;

pub(crate) use bundle::{BundleError, simulate_bundle};
pub(crate) use node::{NodeError, StateReadError};
use rules::Erc7562Inspector;

/// The head block the pending state starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Head {
    pub number: u64,
    pub timestamp: u64,
    pub base_fee: u128,
    pub parent_hash: B256,
    pub hash: B256,
}

impl Head {
    /// The node's latest block.
    pub(crate) async fn latest(provider: &DynProvider) -> Result<Head, NodeError> {
        Ok(Self::with_txs(provider, BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| NodeError("the node has no latest block".into()))?
            .0)
    }

    /// A block and its transactions' hashes (None if the node has no such block).
    pub(crate) async fn with_txs(
        provider: &DynProvider,
        block: BlockNumberOrTag,
    ) -> Result<Option<(Head, Vec<B256>)>, NodeError> {
        let Some(b) = provider
            .get_block_by_number(block)
            .await
            .map_err(NodeError::from_display)?
        else {
            return Ok(None);
        };
        let head = Head {
            number: b.header.number,
            timestamp: b.header.timestamp,
            base_fee: b.header.base_fee_per_gas.unwrap_or(0) as u128,
            hash: b.header.hash,
            parent_hash: b.header.parent_hash,
        };
        Ok(Some((head, b.transactions.hashes().collect())))
    }
}

/// A validity window as the account or paymaster returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValidationData {
    /// 0: none, 1: signature failed, else an aggregator.
    pub aggregator: Address,
    pub valid_after: u64,
    /// 0 means no expiry (stored as u64::MAX here).
    pub valid_until: u64,
}

impl ValidationData {
    pub(crate) fn parse(v: U256) -> Self {
        let aggregator = Address::from_slice(&v.to_be_bytes::<32>()[12..]);
        let until: U256 = (v >> 160usize) & U256::from(0xffff_ffff_ffffu64);
        let until = until.to::<u64>();
        let after: U256 = (v >> 208usize) & U256::from(0xffff_ffff_ffffu64);
        let after = after.to::<u64>();
        Self {
            aggregator,
            valid_after: after,
            valid_until: if until == 0 { u64::MAX } else { until },
        }
    }

    pub(crate) fn signature_failed(&self) -> bool {
        self.aggregator == Address::with_last_byte(1)
    }
}

pub use crate::records::{Health, HealthChange};

/// What simulating an op found.
#[derive(Debug, Clone)]
pub(crate) struct Simulated {
    pub validation: ValidationData,
    pub paymaster_validation: Option<ValidationData>,
    pub paymaster_context: Bytes,
    /// False when the op's calls would revert (it would still be included and pay).
    pub success: bool,
    /// The execution's revert data, if it reverted — or, for a session op the account undid because it
    /// breached the key's drawdown breaker (tripping it), that breach as the account reports it.
    pub revert: Option<Bytes>,
    pub validation_gas: u64,
    pub paymaster_gas: u64,
    pub execution_gas: u64,
    /// The account's venue health on the pending state before the op.
    pub health_before: Option<Health>,
    /// The op has a paymaster and it is staked enough (a postOp context needs that: EREP-050).
    pub paymaster_staked: bool,
}

impl Simulated {
    /// The gas the op's validation (its account, factory and paymaster) and execution used.
    pub(crate) fn gas_used(&self) -> u64 {
        self.validation_gas + self.paymaster_gas + self.execution_gas
    }
}

/// Why simulation refused an op.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SimError {
    /// ERC-7562 rules broken during validation.
    #[error("{}", .0.join("; "))]
    Rules(Vec<String>),
    /// The EntryPoint refused the op (`FailedOp` / `FailedOpWithRevert`).
    #[error("{reason}")]
    FailedOp {
        reason: String,
        inner: Option<Bytes>,
        validation: Option<ValidationData>,
    },
    /// `handleOps` reverted some other way.
    #[error("handleOps reverted: {0}")]
    Reverted(Bytes),
    /// `handleOps` halted (e.g. out of gas).
    #[error("handleOps halted: {0}")]
    Halted(String),
    /// The node could not be read, or the EVM refused the transaction.
    #[error("{0}")]
    Internal(String),
}

/// Who simulates, and against which contracts: fixed for the relayer's life.
#[derive(Debug, Clone)]
pub(crate) struct SimConfig {
    pub entry_point: Address,
    pub chain_id: u64,
    /// The venue, for trading-aware answers (health).
    pub venue: Option<Address>,
    /// tx.origin and beneficiary of simulated bundles.
    pub relayer: Address,
    /// The TradingAccount implementation Keyscope's factory deploys on this chain, if it is deployed: an
    /// account is Keyscope's when it is the factory's proxy pointing at it (see [`is_keyscope_account`]).
    pub keyscope_implementation: Option<Address>,
    /// Stake needed for an entity to count as staked (ERC-7562 MIN_STAKE_VALUE) and its unstake delay.
    pub min_stake: U256,
    pub min_unstake_delay: u32,
}

/// The block a simulation runs in: the one after the head, at the given time and base fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SimBlock {
    pub number: u64,
    pub timestamp: u64,
    /// The base fee the EntryPoint prices ops at (`block.basefee`): what an op is charged, so what its
    /// account's deposit keeps of its prefund, depends on it.
    pub base_fee: u64,
}

impl SimBlock {
    /// The block after `head`, no earlier than the wall clock (ops expire against real time), at the
    /// highest base fee EIP-1559 lets that block have (the head's plus an eighth): an op is charged at
    /// most what the chain will charge it, so the deposit the pending state leaves its account is never
    /// more than the chain's, and an op that the chain will make pay its prefund in validation is
    /// simulated paying it.
    pub(crate) fn after(head: &Head) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base_fee = u64::try_from(head.base_fee).unwrap_or(u64::MAX);
        Self {
            number: head.number + 1,
            timestamp: (head.timestamp + 1).max(now),
            base_fee: base_fee.saturating_add(base_fee.div_ceil(8)),
        }
    }
}

pub(crate) fn context<DB: Database>(
    db: DB,
    cfg: &SimConfig,
    block: SimBlock,
) -> revm::handler::MainnetContext<DB> {
    let chain_id = cfg.chain_id;
    Context::mainnet()
        .with_db(db)
        .modify_cfg_chained(|c| {
            c.chain_id = chain_id;
            c.disable_nonce_check = true;
            // The node decides what transactions it takes (EIP-7825's cap is a config limit, see
            // `BundlerConfig::max_bundle_gas`); validation's own transactions need more room.
            c.tx_gas_limit_cap = Some(u64::MAX);
            c.set_spec_and_mainnet_gas_params(SpecId::OSAKA);
            // Simulations are sent at gas price 0 (the relayer pays nothing for them) while the block
            // has the chain's base fee, so the EntryPoint charges ops what the chain will.
            c.disable_base_fee = true;
        })
        .modify_block_chained(|b| {
            b.number = U256::from(block.number);
            b.timestamp = U256::from(block.timestamp);
            b.gas_limit = 100_000_000;
            b.basefee = block.base_fee;
        })
}

pub(crate) fn tx(cfg: &SimConfig, to: Address, data: Vec<u8>, gas_limit: u64) -> TxEnv {
    TxEnv::builder()
        .caller(cfg.relayer)
        .kind(TxKind::Call(to))
        .data(data.into())
        .gas_limit(gas_limit)
        .gas_price(0)
        .chain_id(Some(cfg.chain_id))
        .build()
        .expect("a plain call transaction is valid")
}

/// A read-only call on `db` (nothing is committed).
pub(crate) fn call<DB: Database<Error = StateReadError>>(
    db: &mut DB,
    cfg: &SimConfig,
    block: SimBlock,
    to: Address,
    data: Vec<u8>,
) -> Result<Bytes, SimError> {
    let mut evm = context(db, cfg, block).build_mainnet();
    match evm
        .transact(tx(cfg, to, data, 5_000_000))
        .map_err(|e| SimError::Internal(e.to_string()))?
        .result
    {
        ExecutionResult::Success {
            output: Output::Call(out),
            ..
        } => Ok(out),
        ExecutionResult::Revert { output, .. } => Err(SimError::Reverted(output)),
        other => Err(SimError::Halted(format!("{other:?}"))),
    }
}

/// An entity's standing in the EntryPoint, from one `getDepositInfo` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deposit {
    /// At least the minimum stake and unstake delay, and not unstaking (ERC-7562).
    pub staked: bool,
    /// Its deposit (what it can pay gas from).
    pub deposit: U256,
}

/// `entity`'s stake and deposit in the EntryPoint.
pub(crate) fn deposit_info<DB: Database<Error = StateReadError>>(
    db: &mut DB,
    cfg: &SimConfig,
    block: SimBlock,
    entity: Address,
) -> Result<Deposit, SimError> {
    let out = call(
        db,
        cfg,
        block,
        cfg.entry_point,
        IEntryPoint::getDepositInfoCall { account: entity }.abi_encode(),
    )?;
    let info = IEntryPoint::getDepositInfoCall::abi_decode_returns(&out)
        .map_err(|e| SimError::Internal(e.to_string()))?;
    Ok(Deposit {
        staked: info.staked
            && U256::from(info.stake) >= cfg.min_stake
            && info.unstakeDelaySec >= cfg.min_unstake_delay,
        deposit: info.deposit,
    })
}

/// The op's factory and paymaster, if it names them.
pub(crate) fn entities_of(op: &PackedUserOperation) -> (Option<Address>, Option<Address>) {
    let factory = (op.initCode.len() >= 20).then(|| Address::from_slice(&op.initCode[..20]));
    let paymaster =
        (op.paymasterAndData.len() >= 20).then(|| Address::from_slice(&op.paymasterAndData[..20]));
    (factory, paymaster)
}

/// The op's entities (sender, factory, paymaster) that are staked enough.
pub(crate) fn staked_entities<DB: Database<Error = StateReadError>>(
    db: &mut DB,
    cfg: &SimConfig,
    block: SimBlock,
    op: &PackedUserOperation,
) -> Result<HashSet<Address>, SimError> {
    let (factory, paymaster) = entities_of(op);
    let mut staked = HashSet::new();
    for entity in [Some(op.sender), factory, paymaster].into_iter().flatten() {
        if deposit_info(db, cfg, block, entity)?.staked {
            staked.insert(entity);
        }
    }
    Ok(staked)
}

/// True if `account` is a Keyscope TradingAccount: its code is the proxy Keyscope's factory deploys and its
/// implementation slot names Keyscope's implementation. Nothing an account controls in an op (its nonce key,
/// its calldata) can make it pass for one.
pub(crate) fn is_keyscope_account<DB: Database<Error = StateReadError>>(
    db: &mut DB,
    cfg: &SimConfig,
    account: Address,
) -> Result<bool, SimError> {
    use keyscope_core::deploy::{ACCOUNT_PROXY_CODE_HASH, ERC1967_IMPLEMENTATION_SLOT};
    let Some(implementation) = cfg.keyscope_implementation else {
        return Ok(false);
    };
    let internal = |e: StateReadError| SimError::Internal(e.to_string());
    let code_hash = db.basic(account).map_err(internal)?.map(|a| a.code_hash);
    if code_hash != Some(ACCOUNT_PROXY_CODE_HASH) {
        return Ok(false);
    }
    let slot = db
        .storage(account, ERC1967_IMPLEMENTATION_SLOT.into())
        .map_err(internal)?;
    Ok(Address::from_word(slot.into()) == implementation)
}

/// The venue health of `account` (None without a venue, or when the venue cannot answer).
pub(crate) fn health<DB: Database<Error = StateReadError>>(
    db: &mut DB,
    cfg: &SimConfig,
    block: SimBlock,
    account: Address,
) -> Option<Health> {
    let venue = cfg.venue?;
    let out = call(
        db,
        cfg,
        block,
        venue,
        PerpVenue::healthCall { account }.abi_encode(),
    )
    .ok()?;
    let h = PerpVenue::healthCall::abi_decode_returns(&out).ok()?;
    Some(Health {
        account_value: h.accountValue,
        initial_margin: h.initialMargin,
        maintenance_margin: h.maintenanceMargin,
        state: keyscope_core::bindings::account_state_name(h.state).to_string(),
    })
}

/// Runs `handleOps([op])` on `db` under the ERC-7562 inspector. Returns what it found and the state the
/// transaction left (to commit if the op is accepted). `estimate`: a stub signature's failure is not an
/// error. `staked` are the op's entities with enough stake.
pub(crate) fn simulate_op<DB: Database<Error = StateReadError>>(
    db: &mut DB,
    cfg: &SimConfig,
    block: SimBlock,
    op: &PackedUserOperation,
    staked: HashSet<Address>,
    estimate: bool,
) -> Result<(Simulated, EvmState), SimError> {
    let (factory, paymaster) = entities_of(op);
    let paymaster_staked = paymaster.is_some_and(|p| staked.contains(&p));
    let inspector = Erc7562Inspector::new(
        cfg.entry_point,
        op.sender,
        factory,
        paymaster,
        staked,
        estimate,
    );
    let data = IEntryPoint::handleOpsCall {
        ops: vec![op.clone()],
        beneficiary: cfg.relayer,
    }
    .abi_encode();
    let limits = gas_sum(op) + 1_000_000;
    let mut evm = context(db, cfg, block).build_mainnet_with_inspector(inspector);
    let out = evm
        .inspect_tx(tx(cfg, cfg.entry_point, data, limits))
        .map_err(|e| SimError::Internal(e.to_string()))?;
    let inspector = std::mem::replace(
        &mut evm.inspector,
        Erc7562Inspector::new(
            Address::ZERO,
            Address::ZERO,
            None,
            None,
            HashSet::new(),
            false,
        ),
    );
    drop(evm);
    if !inspector.violations.is_empty() {
        return Err(SimError::Rules(inspector.violations));
    }
    let logs: Vec<Log> = match out.result {
        ExecutionResult::Success { logs, .. } => logs,
        ExecutionResult::Revert { output, .. } => {
            return Err(failed_op(
                output,
                inspector.validation_data.map(ValidationData::parse),
            ));
        }
        ExecutionResult::Halt { reason, .. } => {
            return Err(SimError::Halted(format!("{reason:?}")));
        }
    };
    let validation_data = inspector
        .validation_data
        .ok_or_else(|| SimError::Internal("validateUserOp returned nothing".into()))?;
    let (success, revert) = outcome(&logs, cfg, op);
    Ok((
        Simulated {
            validation: ValidationData::parse(validation_data),
            paymaster_validation: inspector
                .paymaster_result
                .as_ref()
                .map(|(_, vd)| ValidationData::parse(*vd)),
            paymaster_context: inspector
                .paymaster_result
                .map(|(c, _)| c)
                .unwrap_or_default(),
            success,
            revert,
            validation_gas: inspector.validation_gas,
            paymaster_gas: inspector.paymaster_gas,
            execution_gas: inspector.execution_gas,
            health_before: None,
            paymaster_staked,
        },
        out.state,
    ))
}

/// Whether the op's execution succeeded, and the revert data if not. A session op the account undid
/// because it breached the key's drawdown breaker (tripping it) counts as reverted, with the breach as its
/// reason, unless it only protected the account.
fn outcome(logs: &[Log], cfg: &SimConfig, op: &PackedUserOperation) -> (bool, Option<Bytes>) {
    let (mut success, mut revert) = (true, None);
    for log in logs {
        if log.address == op.sender {
            if let Ok(ev) = TradingAccount::SessionBreakerTripped::decode_log(log) {
                let breach = TradingAccount::SessionDrawdownBreached {
                    accountValue: ev.data.accountValue,
                    threshold: ev.data.threshold,
                };
                if !crate::op::classify(&op.callData, cfg.venue).is_protective() {
                    success = false;
                    revert = Some(alloy::sol_types::SolError::abi_encode(&breach).into());
                }
            }
            continue;
        }
        if log.address != cfg.entry_point {
            continue;
        }
        if let Ok(ev) = IEntryPoint::UserOperationEvent::decode_log(log) {
            success = success && ev.data.success;
        }
        if let Ok(ev) = IEntryPoint::UserOperationRevertReason::decode_log(log) {
            revert = Some(ev.data.revertReason.clone());
        }
    }
    (success, revert)
}

/// All the gas an op may use: what `handleOps` needs available for it.
pub(crate) fn gas_sum(op: &PackedUserOperation) -> u64 {
    let (v, c) = keyscope_core::rpc_op::unpack(op.accountGasLimits);
    let pm = if op.paymasterAndData.len() >= 52 {
        U256::from_be_slice(&op.paymasterAndData[20..36])
            .saturating_add(U256::from_be_slice(&op.paymasterAndData[36..52]))
    } else {
        U256::ZERO
    };
    let total = U256::from(v) + U256::from(c) + op.preVerificationGas + pm;
    total.try_into().unwrap_or(u64::MAX)
}

fn failed_op(output: Bytes, validation: Option<ValidationData>) -> SimError {
    use alloy::sol_types::SolInterface;
    use keyscope_core::bindings::IEntryPoint::IEntryPointErrors;
    match IEntryPointErrors::abi_decode(&output) {
        Ok(IEntryPointErrors::FailedOp(f)) => SimError::FailedOp {
            reason: f.reason,
            inner: None,
            validation,
        },
        Ok(IEntryPointErrors::FailedOpWithRevert(f)) => SimError::FailedOp {
            reason: f.reason,
            inner: Some(f.inner),
            validation,
        },
        _ => SimError::Reverted(output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_data_unpacks_window_and_aggregator() {
        let vd = (U256::from(100u64) << 208) | (U256::from(200u64) << 160) | U256::from(1);
        let p = ValidationData::parse(vd);
        assert_eq!((p.valid_after, p.valid_until), (100, 200));
        assert!(p.signature_failed());
        let none = ValidationData::parse(U256::ZERO);
        assert_eq!(none.valid_until, u64::MAX);
        assert!(!none.signature_failed());
    }
}
