//! Chain state for revm, read through alloy at one block and cached for as long as that block is the
//! head. The relayer reads the node's state and nothing else: no `debug_traceCall`, no state overrides.

use alloy::{
    eips::BlockId,
    providers::{DynProvider, Provider},
};
use alloy_primitives::{Address, B256, U256};
use revm::{
    DatabaseRef,
    database_interface::DBErrorMarker,
    state::{AccountInfo, Bytecode},
};
use tokio::runtime::Handle;

/// A state read the node did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("reading chain state failed: {0}")]
pub struct StateReadError(pub String);

impl DBErrorMarker for StateReadError {}

/// The node's state at one block, as a revm database (wrap it in a `CacheDB`). Its methods block on
/// the node, so it is used from blocking threads (`spawn_blocking`), never from async tasks.
#[derive(Debug, Clone)]
pub struct NodeState {
    provider: DynProvider,
    block: BlockId,
    handle: Handle,
}

impl NodeState {
    pub fn new(provider: DynProvider, block: u64, handle: Handle) -> Self {
        Self {
            provider,
            block: BlockId::number(block),
            handle,
        }
    }
}

fn read<E: std::fmt::Display>(e: E) -> StateReadError {
    StateReadError(e.to_string())
}

impl DatabaseRef for NodeState {
    type Error = StateReadError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let p = &self.provider;
        let (balance, nonce, code) = self
            .handle
            .block_on(async {
                tokio::try_join!(
                    p.get_balance(address).block_id(self.block),
                    p.get_transaction_count(address).block_id(self.block),
                    p.get_code_at(address).block_id(self.block),
                )
            })
            .map_err(read)?;
        let code = Bytecode::new_raw(code);
        Ok(Some(AccountInfo {
            balance,
            nonce,
            code_hash: code.hash_slow(),
            code: Some(code),
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        // `basic_ref` always returns the code with the account, so revm never asks by hash.
        Err(StateReadError(format!(
            "code {code_hash} was not loaded with its account"
        )))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.handle
            .block_on(
                self.provider
                    .get_storage_at(address, index)
                    .block_id(self.block)
                    .into_future(),
            )
            .map_err(read)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        let block = self
            .handle
            .block_on(
                self.provider
                    .get_block_by_number(number.into())
                    .into_future(),
            )
            .map_err(read)?;
        Ok(block.map(|b| b.header.hash).unwrap_or_default())
    }
}
