//! Chain state for revm, read through alloy at one block and cached for as long as that block is the
//! head. The relayer reads the node's state and nothing else: no `debug_traceCall`, no state overrides.
//!
//! The cache is shared by every validation running at once: it is read through `&self`, and a value the
//! cache lacks is fetched from the node with no lock held, so one slow node read never stalls the others.

use std::{
    collections::HashMap,
    sync::{
        RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

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
pub(crate) struct StateReadError(pub String);

impl DBErrorMarker for StateReadError {}

/// A request the node did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the node did not answer: {0}")]
pub struct NodeError(pub String);

impl NodeError {
    /// Wraps any error's message.
    pub fn from_display(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// Accounts a cache holds before it starts over (each may carry up to 24 KiB of code: ≤ 1.6 GiB worst case,
/// ~100 MiB for plain accounts and the few contracts ops touch).
pub(crate) const MAX_CACHED_ACCOUNTS: usize = 1 << 16;
/// Storage slots a cache holds before it starts over (~100 bytes each: ~100 MiB).
pub(crate) const MAX_CACHED_SLOTS: usize = 1 << 20;

/// The node's state at one block, cached. Its methods block on the node when a value is missing, so it
/// is used from blocking threads (`spawn_blocking`), never from async tasks.
///
/// A head may stay the head for long (a quiet chain), so the cache is bounded: a map that reaches its limit
/// is emptied and fills again from the node. Values at one block never change, so starting over costs only
/// node reads.
#[derive(Debug)]
pub(crate) struct NodeCache {
    provider: DynProvider,
    block: u64,
    handle: Handle,
    accounts: RwLock<HashMap<Address, AccountInfo>>,
    storage: RwLock<HashMap<(Address, U256), U256>>,
    block_hashes: RwLock<HashMap<u64, B256>>,
    /// Values fetched from the node (for metrics and tests: a warm cache fetches nothing).
    fetches: AtomicU64,
    max_accounts: usize,
    max_slots: usize,
}

fn read<E: std::fmt::Display>(e: E) -> StateReadError {
    StateReadError(e.to_string())
}

impl NodeCache {
    /// An empty cache of the state at `block`.
    pub(crate) fn new(provider: DynProvider, block: u64, handle: Handle) -> Self {
        Self {
            provider,
            block,
            handle,
            accounts: Default::default(),
            storage: Default::default(),
            block_hashes: Default::default(),
            fetches: AtomicU64::new(0),
            max_accounts: MAX_CACHED_ACCOUNTS,
            max_slots: MAX_CACHED_SLOTS,
        }
    }

    /// The same cache with other bounds (tests: small ones show the bound).
    #[cfg(test)]
    fn bounded(self, max_accounts: usize, max_slots: usize) -> Self {
        Self {
            max_accounts,
            max_slots,
            ..self
        }
    }

    /// An empty cache of the same node's state at another block.
    pub(crate) fn at(&self, block: u64) -> Self {
        Self::new(self.provider.clone(), block, self.handle.clone())
    }

    /// The block this cache reads.
    pub(crate) fn block(&self) -> u64 {
        self.block
    }

    fn id(&self) -> BlockId {
        BlockId::number(self.block)
    }
}

impl DatabaseRef for NodeCache {
    type Error = StateReadError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        if let Some(a) = self.accounts.read().map_err(read)?.get(&address) {
            return Ok(Some(a.clone()));
        }
        let p = &self.provider;
        let (balance, nonce, code) = self
            .handle
            .block_on(async {
                tokio::try_join!(
                    p.get_balance(address).block_id(self.id()),
                    p.get_transaction_count(address).block_id(self.id()),
                    p.get_code_at(address).block_id(self.id()),
                )
            })
            .map_err(read)?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let code = Bytecode::new_raw(code);
        let info = AccountInfo {
            balance,
            nonce,
            code_hash: code.hash_slow(),
            code: Some(code),
            ..Default::default()
        };
        let mut accounts = self.accounts.write().map_err(read)?;
        if accounts.len() >= self.max_accounts {
            accounts.clear();
        }
        accounts.entry(address).or_insert_with(|| info.clone());
        Ok(Some(info))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        // `basic_ref` always returns the code with the account, so revm never asks by hash.
        Err(StateReadError(format!(
            "code {code_hash} was not loaded with its account"
        )))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        if let Some(v) = self.storage.read().map_err(read)?.get(&(address, index)) {
            return Ok(*v);
        }
        let value = self
            .handle
            .block_on(
                self.provider
                    .get_storage_at(address, index)
                    .block_id(self.id())
                    .into_future(),
            )
            .map_err(read)?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut storage = self.storage.write().map_err(read)?;
        if storage.len() >= self.max_slots {
            storage.clear();
        }
        storage.entry((address, index)).or_insert(value);
        Ok(value)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        if let Some(h) = self.block_hashes.read().map_err(read)?.get(&number) {
            return Ok(*h);
        }
        let block = self
            .handle
            .block_on(
                self.provider
                    .get_block_by_number(number.into())
                    .into_future(),
            )
            .map_err(read)?;
        let hash = block.map(|b| b.header.hash).unwrap_or_default();
        self.block_hashes
            .write()
            .map_err(read)?
            .insert(number, hash);
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::{node_bindings::Anvil, providers::ProviderBuilder};

    /// A cache past its bounds starts over and still answers the node's values.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_cache_starts_over_and_stays_right() {
        let anvil_bin =
            keyscope_core::devnet::find_anvil(&keyscope_core::devnet::repo_root()).expect("anvil");
        let anvil = Anvil::new().path(anvil_bin).spawn();
        let provider = ProviderBuilder::new()
            .connect_http(anvil.endpoint_url())
            .erased();
        let holder = Address::repeat_byte(0x42);
        for i in 0..10u64 {
            let _: bool = provider
                .raw_request(
                    "anvil_setStorageAt".into(),
                    (holder, U256::from(i), B256::from(U256::from(1000 + i))),
                )
                .await
                .unwrap();
        }
        let block = provider.get_block_number().await.unwrap();
        let cache = NodeCache::new(provider.clone(), block, Handle::current()).bounded(3, 4);
        let accounts: Vec<Address> = (1..=8u8).map(Address::repeat_byte).collect();
        tokio::task::spawn_blocking(move || {
            for round in 0..2 {
                for i in 0..10u64 {
                    let v = cache.storage_ref(holder, U256::from(i)).unwrap();
                    assert_eq!(v, U256::from(1000 + i), "slot {i}, round {round}");
                    assert!(cache.storage.read().unwrap().len() <= 4);
                }
                for a in &accounts {
                    assert!(cache.basic_ref(*a).unwrap().is_some());
                    assert!(cache.accounts.read().unwrap().len() <= 3);
                }
            }
            // Every read past the bounds went back to the node: 2 rounds of 10 slots and 8 accounts.
            assert_eq!(cache.fetches.load(Ordering::Relaxed), 36);
            // Within the bounds a warm read fetches nothing.
            let before = cache.fetches.load(Ordering::Relaxed);
            cache.storage_ref(holder, U256::from(9)).unwrap();
            assert_eq!(cache.fetches.load(Ordering::Relaxed), before);
        })
        .await
        .unwrap();
    }
}
