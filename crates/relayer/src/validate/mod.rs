//! Validation before acceptance: the op runs through the real EntryPoint's `handleOps` on revm, over
//! the node's state at the head block plus every op the relayer has already accepted (the pending
//! state), with the ERC-7562 inspector watching its validation. One run answers everything the door
//! asks: signature, nonce, validity window, prefund, the rules, whether the execution would revert
//! and why, and — for a trading account — its health before and after.

pub mod rules;
pub mod state;

use std::collections::HashSet;

use alloy::{providers::DynProvider, sol_types::SolCall};
use alloy_primitives::{Address, Bytes, I256, Log, U256};
use keyscope_core::{
    bindings::{IEntryPoint, PerpVenue},
    user_op::PackedUserOperation,
};
use revm::{
    Context, DatabaseCommit, ExecuteEvm, InspectEvm, MainBuilder, MainContext,
    context::TxEnv,
    context_interface::result::{ExecutionResult, Output},
    database::CacheDB,
    primitives::{TxKind, hardfork::SpecId},
};
use serde::Serialize;
use tokio::runtime::Handle;

use rules::Erc7562Inspector;
use state::NodeState;

/// The head block the pending state starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub number: u64,
    pub timestamp: u64,
    pub base_fee: u128,
    pub parent_hash: alloy_primitives::B256,
    pub hash: alloy_primitives::B256,
}

/// A validity window as the account or paymaster returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationData {
    /// 0: none, 1: signature failed, else an aggregator.
    pub aggregator: Address,
    pub valid_after: u64,
    /// 0 means no expiry (stored as u64::MAX here).
    pub valid_until: u64,
}

impl ValidationData {
    pub fn parse(v: U256) -> Self {
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

    pub fn signature_failed(&self) -> bool {
        self.aggregator == Address::with_last_byte(1)
    }
}

/// An account's standing on the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub account_value: I256,
    pub initial_margin: U256,
    pub maintenance_margin: U256,
    /// `Healthy`, `MarginCall`, `Liquidatable` or `Bankrupt`.
    pub state: String,
}

/// Health before and after the op, on the pending state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthChange {
    pub before: Health,
    pub after: Health,
}

/// What simulating an op found.
#[derive(Debug, Clone)]
pub struct Simulated {
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
}

/// Why simulation refused an op.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SimError {
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

/// The state changes of a simulated op, to be committed into the pending state if it is accepted,
/// and whether they can have moved another account's venue health.
pub struct Changes(revm::state::EvmState, bool);

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Changes({} accounts)", self.0.len())
    }
}

/// The pending state and the EVM that validates ops against it.
pub struct Simulator {
    provider: DynProvider,
    handle: Handle,
    entry_point: Address,
    chain_id: u64,
    venue: Option<Address>,
    /// tx.origin and beneficiary of simulated bundles.
    relayer: Address,
    /// Stake needed for an entity to count as staked (ERC-7562 MIN_STAKE_VALUE) and its unstake delay.
    min_stake: U256,
    min_unstake_delay: u32,
    head: Head,
    /// The head's number, readable without the lock (for reads prefetched outside it).
    head_number: std::sync::Arc<std::sync::atomic::AtomicU64>,
    db: CacheDB<NodeState>,
    /// Each account's health as last read, with the block time it was read at (funding accrues
    /// with time, so a read is reused only at the same time).
    health_cache: std::collections::HashMap<Address, (u64, Health)>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// Where a simulation starts from and who asks.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub entry_point: Address,
    pub chain_id: u64,
    pub venue: Option<Address>,
    pub relayer: Address,
    pub min_stake: U256,
    pub min_unstake_delay: u32,
}

impl Simulator {
    pub fn new(provider: DynProvider, handle: Handle, cfg: SimulatorConfig, head: Head) -> Self {
        let db = CacheDB::new(NodeState::new(
            provider.clone(),
            head.number,
            handle.clone(),
        ));
        Self {
            provider,
            handle,
            entry_point: cfg.entry_point,
            chain_id: cfg.chain_id,
            venue: cfg.venue,
            relayer: cfg.relayer,
            min_stake: cfg.min_stake,
            min_unstake_delay: cfg.min_unstake_delay,
            head,
            head_number: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(head.number)),
            db,
            health_cache: Default::default(),
        }
    }

    /// The head's number, shared: it moves with [`Simulator::reset`] and [`Simulator::advance`].
    pub fn head_number(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.head_number.clone()
    }

    /// Fills a storage slot read from the node at `block` outside the lock, so validation does not
    /// wait on the node for it — only if `block` is still the head and the pending state has no value
    /// there (its own writes win).
    pub fn prefill(&mut self, block: u64, address: Address, slot: U256, value: U256) {
        if block != self.head.number {
            return;
        }
        if let Some(account) = self.db.cache.accounts.get_mut(&address) {
            account.storage.entry(slot).or_insert(value);
        }
    }

    pub fn head(&self) -> Head {
        self.head
    }

    /// The time simulated blocks carry: the next block's, no earlier than the wall clock.
    pub fn block_time(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        (self.head.timestamp + 1).max(now)
    }

    /// Moves to `head` keeping the pending state: right only when the blocks since the last head hold
    /// nothing but the relayer's own bundle, whose ops the pending state already contains.
    pub fn advance(&mut self, head: Head) {
        self.head = head;
        self.head_number
            .store(head.number, std::sync::atomic::Ordering::Relaxed);
        // A new block moves time (funding), so healths are read again.
        self.health_cache.clear();
        self.db.db = NodeState::new(self.provider.clone(), head.number, self.handle.clone());
    }

    /// Starts over from `head`'s state with nothing pending (callers replay what is still pending).
    pub fn reset(&mut self, head: Head) {
        self.head = head;
        self.head_number
            .store(head.number, std::sync::atomic::Ordering::Relaxed);
        self.health_cache.clear();
        self.db = CacheDB::new(NodeState::new(
            self.provider.clone(),
            head.number,
            self.handle.clone(),
        ));
    }

    fn evm_call(&mut self, to: Address, data: Vec<u8>) -> Result<Bytes, SimError> {
        let tx = self.tx(to, data, 5_000_000);
        let mut evm = self.context().build_mainnet();
        match evm
            .transact(tx)
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

    fn context(&mut self) -> revm::handler::MainnetContext<&mut CacheDB<NodeState>> {
        let (number, timestamp, chain_id) =
            (self.head.number + 1, self.block_time(), self.chain_id);
        Context::mainnet()
            .with_db(&mut self.db)
            .modify_cfg_chained(|cfg| {
                cfg.chain_id = chain_id;
                cfg.disable_nonce_check = true;
                cfg.set_spec_and_mainnet_gas_params(SpecId::OSAKA);
            })
            .modify_block_chained(|b| {
                b.number = U256::from(number);
                b.timestamp = U256::from(timestamp);
                b.gas_limit = 100_000_000;
                b.basefee = 0;
            })
    }

    fn tx(&self, to: Address, data: Vec<u8>, gas_limit: u64) -> TxEnv {
        TxEnv::builder()
            .caller(self.relayer)
            .kind(TxKind::Call(to))
            .data(data.into())
            .gas_limit(gas_limit)
            .gas_price(0)
            .chain_id(Some(self.chain_id))
            .build()
            .expect("a plain call transaction is valid")
    }

    /// True if `entity` has at least the minimum stake and unstake delay in the EntryPoint.
    pub fn is_staked(&mut self, entity: Address) -> Result<bool, SimError> {
        let out = self.evm_call(
            self.entry_point,
            IEntryPoint::getDepositInfoCall { account: entity }.abi_encode(),
        )?;
        let info = IEntryPoint::getDepositInfoCall::abi_decode_returns(&out)
            .map_err(|e| SimError::Internal(e.to_string()))?;
        Ok(info.staked
            && U256::from(info.stake) >= self.min_stake
            && info.unstakeDelaySec >= self.min_unstake_delay)
    }

    /// A storage slot of `address` on the pending state.
    pub fn storage(&mut self, address: Address, slot: U256) -> Result<U256, SimError> {
        use revm::Database;
        self.db
            .storage(address, slot)
            .map_err(|e| SimError::Internal(e.to_string()))
    }

    /// The EntryPoint deposit of `account` on the pending state.
    pub fn deposit_of(&mut self, account: Address) -> Result<U256, SimError> {
        let out = self.evm_call(
            self.entry_point,
            IEntryPoint::balanceOfCall { account }.abi_encode(),
        )?;
        IEntryPoint::balanceOfCall::abi_decode_returns(&out)
            .map_err(|e| SimError::Internal(e.to_string()))
    }

    /// The venue health of `account` on the pending state (None without a venue or for non-traders),
    /// read from the venue and remembered as the account's health until the pending state moves.
    pub fn health(&mut self, account: Address) -> Option<Health> {
        let h = self.read_health(account)?;
        self.health_cache
            .insert(account, (self.block_time(), h.clone()));
        Some(h)
    }

    /// The health [`Simulator::health`] last read for `account` on this pending state, else a fresh
    /// read. Between heads only the account's own ops change it, unless an op moves others' health
    /// (see [`Simulator::commit`]) or the block time moves (funding), and each accepted op's health
    /// is read after it is committed.
    fn health_before(&mut self, account: Address) -> Option<Health> {
        let now = self.block_time();
        match self.health_cache.get(&account) {
            Some((at, h)) if *at == now => Some(h.clone()),
            _ => self.read_health(account),
        }
    }

    fn read_health(&mut self, account: Address) -> Option<Health> {
        let venue = self.venue?;
        let out = self
            .evm_call(venue, PerpVenue::healthCall { account }.abi_encode())
            .ok()?;
        let h = PerpVenue::healthCall::abi_decode_returns(&out).ok()?;
        Some(Health {
            account_value: h.accountValue,
            initial_margin: h.initialMargin,
            maintenance_margin: h.maintenanceMargin,
            state: keyscope_core::bindings::account_state_name(h.state).to_string(),
        })
    }

    /// Keeps an accepted op's effects: later ops are validated after it. An op that may have moved
    /// other accounts' health (a price update, a liquidation, any call but the account's own
    /// trading) empties the health cache.
    pub fn commit(&mut self, changes: Changes) {
        if changes.1 {
            self.health_cache.clear();
        }
        self.db.commit(changes.0);
    }

    /// Runs `handleOps([op])` on the pending state with the rules inspector, without keeping its
    /// effects (see [`Simulator::commit`]). `estimate`: a stub signature's failure is not an error.
    pub fn simulate(
        &mut self,
        op: &PackedUserOperation,
        estimate: bool,
    ) -> Result<(Simulated, Changes), SimError> {
        let factory = (op.initCode.len() >= 20).then(|| Address::from_slice(&op.initCode[..20]));
        let paymaster = (op.paymasterAndData.len() >= 20)
            .then(|| Address::from_slice(&op.paymasterAndData[..20]));
        let mut staked = HashSet::new();
        for entity in [factory, paymaster].into_iter().flatten() {
            if self.is_staked(entity)? {
                staked.insert(entity);
            }
        }
        let before = self.health_before(op.sender);
        let inspector = Erc7562Inspector::new(
            self.entry_point,
            op.sender,
            factory,
            paymaster,
            staked,
            estimate,
        );
        let limits = gas_sum(op) + 1_000_000;
        let data = IEntryPoint::handleOpsCall {
            ops: vec![op.clone()],
            beneficiary: self.relayer,
        }
        .abi_encode();
        let tx = self.tx(self.entry_point, data, limits);
        let mut evm = self.context().build_mainnet_with_inspector(inspector);
        let out = evm
            .inspect_tx(tx)
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
        let mut success = true;
        let mut revert = None;
        for log in &logs {
            if log.address == op.sender {
                // The account undid the op's calls and tripped the key's breaker: to the trader, a refusal.
                if let Ok(ev) = <keyscope_core::bindings::TradingAccount::SessionBreakerTripped as alloy::sol_types::SolEvent>::decode_log(log) {
                    let breach = keyscope_core::bindings::TradingAccount::SessionDrawdownBreached {
                        accountValue: ev.data.accountValue,
                        threshold: ev.data.threshold,
                    };
                    if !crate::op::classify(&op.callData, self.venue).is_protective() {
                        success = false;
                        revert = Some(alloy::sol_types::SolError::abi_encode(&breach).into());
                    }
                }
                continue;
            }
            if log.address != self.entry_point {
                continue;
            }
            if let Ok(ev) =
                <IEntryPoint::UserOperationEvent as alloy::sol_types::SolEvent>::decode_log(log)
            {
                success = success && ev.data.success;
            }
            if let Ok(ev) =
                <IEntryPoint::UserOperationRevertReason as alloy::sol_types::SolEvent>::decode_log(
                    log,
                )
            {
                revert = Some(ev.data.revertReason.clone());
            }
        }
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
                health_before: before,
            },
            Changes(
                out.state,
                !crate::op::moves_only_own_health(&op.callData, self.venue),
            ),
        ))
    }
}

/// All the gas an op may use: what `handleOps` needs available for it.
pub fn gas_sum(op: &PackedUserOperation) -> u64 {
    let (v, c) = crate::op::unpack(op.accountGasLimits);
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
