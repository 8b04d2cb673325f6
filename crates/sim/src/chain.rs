//! An in-process chain on revm: the real forge artifacts deployed into a fresh in-memory state, and
//! transactions executed and committed one by one with the block clock under the harness's control.
//! No node, no RPC: thousands of signed UserOps per second on one core.

use std::collections::HashMap;

use alloy::sol_types::SolCall;
use alloy_primitives::{Address, B256, Bytes, Log, U256};
use keyscope_core::deploy::{CREATE2_DEPLOYER, PlanParams};
use revm::{
    Context, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext,
    context::{ContextTr, TxEnv},
    context_interface::result::{ExecutionResult, Output},
    database::InMemoryDB,
    handler::{MainnetContext, MainnetEvm},
    primitives::TxKind,
    state::{AccountInfo, Bytecode},
};

/// Errors from the in-process chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The transaction reverted; `data` is the revert payload.
    #[error("reverted: 0x{}", alloy_primitives::hex::encode(.data))]
    Reverted {
        /// The revert payload.
        data: Bytes,
        /// The logs revm reports with the revert.
        logs: Vec<Log>,
    },
    /// The transaction halted (out of gas, invalid opcode, ...).
    #[error("halted: {0}")]
    Halted(String),
    /// The EVM refused the transaction itself (nonce, balance, ...).
    #[error("invalid transaction: {0}")]
    Invalid(String),
}

/// What a successful transaction returned.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// What the call returned.
    pub output: Bytes,
    /// The contract a create made, if it was one.
    pub created: Option<Address>,
    /// The logs it emitted.
    pub logs: Vec<Log>,
    /// Gas it used.
    pub gas_used: u64,
}

/// The runtime code of Arachnid's deterministic deployment proxy ([`CREATE2_DEPLOYER`]), which every dev
/// chain (and anvil) has: it CREATE2s `data[32..]` with salt `data[..32]`.
const CREATE2_DEPLOYER_CODE: &str = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3";

/// The gas limit of every harness transaction, on both backends (a fixed limit, not a node's estimate: an
/// estimate made a block earlier can fall short when funding accrues in between).
pub const TX_GAS_LIMIT: u64 = 16_000_000;

/// A revm chain with a block clock.
pub struct RevmChain {
    evm: MainnetEvm<MainnetContext<InMemoryDB>>,
    nonces: HashMap<Address, u64>,
}

impl std::fmt::Debug for RevmChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevmChain")
            .field("timestamp", &self.timestamp())
            .finish_non_exhaustive()
    }
}

impl RevmChain {
    /// An empty chain with the CREATE2 deployer in place, at `timestamp`.
    pub fn new(chain_id: u64, timestamp: u64) -> Self {
        let evm = Context::mainnet()
            .with_db(InMemoryDB::default())
            .modify_cfg_chained(|cfg| {
                cfg.chain_id = chain_id;
            })
            .modify_block_chained(|block| {
                block.number = U256::from(1);
                block.timestamp = U256::from(timestamp);
                block.gas_limit = 60_000_000;
                block.basefee = 0;
            })
            .build_mainnet();
        let mut chain = Self {
            evm,
            nonces: HashMap::new(),
        };
        let code = Bytecode::new_raw(
            alloy_primitives::hex::decode(CREATE2_DEPLOYER_CODE)
                .expect("hex")
                .into(),
        );
        chain.set_account(
            CREATE2_DEPLOYER,
            AccountInfo {
                code_hash: code.hash_slow(),
                code: Some(code),
                ..Default::default()
            },
        );
        chain
    }

    /// An independent copy of this chain: the same state, clock and senders' nonces, each going its own
    /// way after (many price paths run from one set-up).
    pub fn fork(&self) -> Self {
        let ctx = &self.evm.ctx;
        let evm = Context::mainnet()
            .with_db(ctx.db().clone())
            .with_block(ctx.block.clone())
            .with_cfg(ctx.cfg.clone())
            .build_mainnet();
        Self {
            evm,
            nonces: self.nonces.clone(),
        }
    }

    fn set_account(&mut self, address: Address, info: AccountInfo) {
        self.evm.ctx.db_mut().insert_account_info(address, info);
    }

    /// Gives `address` `wei` of balance (replacing what it had).
    pub fn fund(&mut self, address: Address, wei: U256) {
        let mut info = self
            .evm
            .ctx
            .db_mut()
            .cache
            .accounts
            .get(&address)
            .map(|a| a.info.clone())
            .unwrap_or_default();
        info.balance = wei;
        self.set_account(address, info);
    }

    /// The chain's id.
    pub fn chain_id(&self) -> u64 {
        self.evm.ctx.cfg.chain_id
    }

    /// The current block's timestamp (unix seconds).
    pub fn timestamp(&self) -> u64 {
        self.evm.ctx.block.timestamp.to::<u64>()
    }

    /// Moves the clock forward by `seconds` (and the block number by one).
    pub fn advance(&mut self, seconds: u64) {
        self.evm.ctx.modify_block(|b| {
            b.timestamp += U256::from(seconds);
            b.number += U256::from(1);
        });
    }

    /// The code deployed at `address` (empty for none).
    pub fn code(&mut self, address: Address) -> Bytes {
        use revm::Database;
        let db = self.evm.ctx.db_mut();
        db.basic(address)
            .ok()
            .flatten()
            .and_then(|a| a.code.or_else(|| db.code_by_hash(a.code_hash).ok()))
            .map(|c| c.original_bytes())
            .unwrap_or_default()
    }

    /// A transaction at the harness's gas limit and no gas price.
    fn tx(&self, from: Address, kind: TxKind, data: Bytes, value: U256, nonce: u64) -> TxEnv {
        TxEnv::builder()
            .caller(from)
            .kind(kind)
            .data(data)
            .value(value)
            .nonce(nonce)
            .gas_limit(TX_GAS_LIMIT)
            .gas_price(0)
            .chain_id(Some(self.evm.ctx.cfg.chain_id))
            .build_fill()
    }

    /// Sends a transaction from `from` and commits it.
    pub fn transact(
        &mut self,
        from: Address,
        to: Option<Address>,
        data: Bytes,
        value: U256,
    ) -> Result<Receipt, ChainError> {
        let nonce = self.nonces.get(&from).copied().unwrap_or(0);
        let kind = to.map_or(TxKind::Create, TxKind::Call);
        let tx = self.tx(from, kind, data, value, nonce);
        let result = self
            .evm
            .transact_commit(tx)
            .map_err(|e| ChainError::Invalid(format!("{e:?}")))?;
        self.nonces.insert(from, nonce + 1);
        match result {
            ExecutionResult::Success {
                output, logs, gas, ..
            } => {
                let (output, created) = match output {
                    Output::Call(b) => (b, None),
                    Output::Create(b, a) => (b, a),
                };
                Ok(Receipt {
                    output,
                    created,
                    logs,
                    gas_used: gas.tx_gas_used(),
                })
            }
            ExecutionResult::Revert { output, logs, .. } => {
                Err(ChainError::Reverted { data: output, logs })
            }
            ExecutionResult::Halt { reason, .. } => Err(ChainError::Halted(format!("{reason:?}"))),
        }
    }

    /// A read-only call: executed and dropped, nothing committed (not even the sender's nonce).
    pub fn view<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<C::Return, ChainError> {
        let nonce = self.nonces.get(&from).copied().unwrap_or(0);
        let tx = self.tx(
            from,
            TxKind::Call(to),
            call.abi_encode().into(),
            U256::ZERO,
            nonce,
        );
        let result = self
            .evm
            .transact(tx)
            .map_err(|e| ChainError::Invalid(format!("{e:?}")))?
            .result;
        match result {
            ExecutionResult::Success {
                output: Output::Call(out),
                ..
            } => C::abi_decode_returns(&out).map_err(|e| ChainError::Invalid(e.to_string())),
            ExecutionResult::Success { .. } => {
                Err(ChainError::Invalid("a view created a contract".into()))
            }
            ExecutionResult::Revert { output, logs, .. } => {
                Err(ChainError::Reverted { data: output, logs })
            }
            ExecutionResult::Halt { reason, .. } => Err(ChainError::Halted(format!("{reason:?}"))),
        }
    }

    /// A call whose state changes are committed.
    pub fn call<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<C::Return, ChainError> {
        let r = self.transact(from, Some(to), call.abi_encode().into(), U256::ZERO)?;
        C::abi_decode_returns(&r.output).map_err(|e| ChainError::Invalid(e.to_string()))
    }

    /// Deploys `init_code` from `from` with CREATE.
    pub fn deploy(&mut self, from: Address, init_code: Bytes) -> Result<Address, ChainError> {
        self.transact(from, None, init_code, U256::ZERO)?
            .created
            .ok_or_else(|| ChainError::Halted("no contract created".into()))
    }

    /// Deploys `init_code` through the CREATE2 deployer with `salt`.
    pub fn deploy_create2(
        &mut self,
        from: Address,
        salt: B256,
        init_code: &[u8],
    ) -> Result<Address, ChainError> {
        let data: Bytes = [salt.as_slice(), init_code].concat().into();
        let r = self.transact(from, Some(CREATE2_DEPLOYER), data, U256::ZERO)?;
        Ok(Address::from_slice(&r.output))
    }
}

/// Keyscope deployed on a `RevmChain`: core's deploy plan ([`keyscope_core::deploy`]), the same one the
/// devnet sends to anvil, so with the same deployer every address matches an anvil deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevmDeployment {
    /// The ERC-4337 EntryPoint.
    pub entry_point: Address,
    /// The factory that deploys TradingAccounts.
    pub account_factory: Address,
    /// The collateral token.
    pub collateral: Address,
    /// The signed price oracle.
    pub oracle: Address,
    /// The perpetuals venue.
    pub venue: Address,
}

impl RevmDeployment {
    /// Runs the deploy plan from `deployer` (owner of token, oracle and venue; registered oracle signer
    /// `oracle_signer`): EntryPoint v0.8, the factory, the token, the oracle and the venue through the
    /// CREATE2 deployer, BTC (0) and ETH (1) listed, the pool (10,000,000) and the insurance fund
    /// (`insurance_fund`, 6 decimals) funded.
    pub fn deploy(
        chain: &mut RevmChain,
        deployer: Address,
        oracle_signer: Address,
        insurance_fund: U256,
    ) -> Result<Self, ChainError> {
        let plan = keyscope_core::deploy::plan(
            chain.chain_id(),
            PlanParams {
                deployer,
                oracle_signer,
                insurance_fund,
            },
        );
        for step in &plan.steps {
            chain
                .transact(deployer, Some(step.to), step.data.clone(), U256::ZERO)
                .map_err(|e| ChainError::Invalid(format!("deploying ({}): {e}", step.what)))?;
            if let Some(at) = step.creates {
                if chain.code(at).is_empty() {
                    return Err(ChainError::Invalid(format!(
                        "{}: nothing was deployed at {at}",
                        step.what
                    )));
                }
            }
        }
        let d = plan.deployment;
        Ok(Self {
            entry_point: d.entry_point,
            account_factory: d.account_factory,
            collateral: d.collateral,
            oracle: d.oracle,
            venue: d.venue,
        })
    }
}
