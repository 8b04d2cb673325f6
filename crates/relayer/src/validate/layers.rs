//! The pending state as layers, so ops of different senders validate at the same time.
//!
//! At the bottom the node's state at the head ([`NodeCache`]); above it the [`Diff`]: what every accepted
//! op changed, in acceptance order. Each simulation runs on its own [`SimDb`] over those two: its writes stay
//! its own, and it records every value it read from below. Accepting the op commits its writes into the
//! diff after a conflict check: if a value it read has since been changed by another accepted op, its
//! result may differ, so it is validated again ([`Conflict`]).
//!
//! Some values change with almost every op and never decide anything: the EntryPoint's and the relayer's
//! own ETH balance (prefunds in, gas out) and nonce, and the venue's pure accumulators (its pool, fees and
//! order counter, taken from the venue's storage layout). These are *commutative*: a change to them is
//! merged as a delta onto whatever the diff holds, so concurrent orders do not conflict over them.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

use alloy_primitives::{Address, B256, U256};
use revm::{
    Database, DatabaseCommit, DatabaseRef,
    state::{AccountInfo, Bytecode, EvmState},
};

use super::node::{NodeCache, StateReadError};

/// Values that change as deltas and never decide an op's outcome.
#[derive(Debug, Clone, Default)]
pub(crate) struct Commutative {
    /// Accounts whose balance and nonce merge as deltas (the EntryPoint, the relayer).
    pub accounts: HashSet<Address>,
    /// Storage slots that merge as deltas (the venue's accumulators).
    pub slots: HashSet<(Address, U256)>,
}

/// What accepted ops changed over the head.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    accounts: HashMap<Address, AccountInfo>,
    storage: HashMap<(Address, U256), U256>,
    /// Accounts created by an accepted op: their storage below the diff reads as zero.
    created: HashSet<Address>,
    /// Commits so far.
    version: u64,
    /// The latest block time an accepted op was simulated at: state it left may depend on it (a funding
    /// clock), so an op simulated at an earlier time must not build on it.
    time: u64,
}

/// A value an op read from below its own layer that another accepted op has since changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state the op read changed while it was validated ({0})")]
pub(crate) struct Conflict(pub String);

/// The values a simulation read from the layers below its own.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reads {
    accounts: HashMap<Address, Option<AccountInfo>>,
    storage: HashMap<(Address, U256), U256>,
}

/// One op's effect on the pending state: what it read and what it wrote.
#[derive(Debug, Clone, Default)]
pub(crate) struct Changes {
    reads: Reads,
    accounts: HashMap<Address, AccountInfo>,
    storage: HashMap<(Address, U256), U256>,
    created: HashSet<Address>,
    /// The op may have moved another account's venue health (anything but the account's own trading).
    pub moves_others: bool,
    /// The block time the op was simulated at.
    pub time: u64,
}

/// The head's state plus the diff: what simulations read below their own layer.
#[derive(Debug)]
pub(crate) struct Layers {
    node: Arc<NodeCache>,
    diff: RwLock<Diff>,
    commutative: Commutative,
}

fn poisoned<T>(_: T) -> StateReadError {
    StateReadError("the pending state's lock was poisoned".into())
}

impl Layers {
    /// Layers over `node` with nothing accepted yet.
    pub(crate) fn new(node: Arc<NodeCache>, commutative: Commutative) -> Self {
        Self {
            node,
            diff: RwLock::new(Diff::default()),
            commutative,
        }
    }

    /// The node cache at the bottom.
    pub(crate) fn node(&self) -> &Arc<NodeCache> {
        &self.node
    }

    /// A fresh database for one simulation.
    pub(crate) fn db(&self) -> SimDb<'_> {
        SimDb {
            layers: self,
            local: Local::default(),
            reads: Reads::default(),
        }
    }

    fn account(
        &self,
        diff: &Diff,
        address: Address,
    ) -> Result<Option<AccountInfo>, StateReadError> {
        match diff.accounts.get(&address) {
            Some(a) => Ok(Some(a.clone())),
            None => self.node.basic_ref(address),
        }
    }

    fn slot(&self, diff: &Diff, address: Address, slot: U256) -> Result<U256, StateReadError> {
        if let Some(v) = diff.storage.get(&(address, slot)) {
            return Ok(*v);
        }
        if diff.created.contains(&address) {
            return Ok(U256::ZERO);
        }
        self.node.storage_ref(address, slot)
    }

    /// An account as the layers hold it (for reads outside a simulation).
    pub(crate) fn read_account(
        &self,
        address: Address,
    ) -> Result<Option<AccountInfo>, StateReadError> {
        let info = {
            let diff = self.diff.read().map_err(poisoned)?;
            diff.accounts.get(&address).cloned()
        };
        match info {
            Some(a) => Ok(Some(a)),
            None => self.node.basic_ref(address),
        }
    }

    /// A storage slot as the layers hold it (the diff's lock is not held while the node is read).
    pub(crate) fn read_slot(&self, address: Address, slot: U256) -> Result<U256, StateReadError> {
        let (value, created) = {
            let diff = self.diff.read().map_err(poisoned)?;
            (
                diff.storage.get(&(address, slot)).copied(),
                diff.created.contains(&address),
            )
        };
        match (value, created) {
            (Some(v), _) => Ok(v),
            (None, true) => Ok(U256::ZERO),
            (None, false) => self.node.storage_ref(address, slot),
        }
    }

    /// Commits `changes` if nothing the op read has changed since (commutative values excepted), merging
    /// commutative writes as deltas. Values the op read are in the node cache already, so the lock held
    /// here never waits on the node.
    pub(crate) fn commit(&self, changes: Changes) -> Result<(), Conflict> {
        let mut diff = self
            .diff
            .write()
            .map_err(|_| Conflict("the pending state's lock was poisoned".into()))?;
        self.check_reads(&diff, &changes)?;
        self.apply(&mut diff, changes)
            .map_err(|e| Conflict(e.to_string()))
    }

    /// True if every value `changes` read is still what the layers hold: its outcome is the outcome on the
    /// state now. (A simulation reads value by value while others commit, so a failure may come from values
    /// of two different moments.)
    pub(crate) fn is_current(&self, changes: &Changes) -> bool {
        self.diff
            .read()
            .is_ok_and(|diff| self.check_reads(&diff, changes).is_ok())
    }

    fn check_reads(&self, diff: &Diff, changes: &Changes) -> Result<(), Conflict> {
        let failed = |e: StateReadError| Conflict(e.to_string());
        if changes.time < diff.time {
            return Err(Conflict(format!(
                "an op simulated at a later block time ({}) was accepted first",
                diff.time
            )));
        }
        let reads = &changes.reads;
        for (address, seen) in &reads.accounts {
            let now = self.account(diff, *address).map_err(failed)?;
            if !same_account(
                seen.as_ref(),
                now.as_ref(),
                self.commutative.accounts.contains(address),
            ) {
                return Err(Conflict(format!("account {address}")));
            }
        }
        for ((address, slot), seen) in &reads.storage {
            if self.commutative.slots.contains(&(*address, *slot)) {
                continue;
            }
            if self.slot(diff, *address, *slot).map_err(failed)? != *seen {
                return Err(Conflict(format!("slot {slot:#x} of {address}")));
            }
        }
        Ok(())
    }

    /// Commits `changes` without the conflict check: for ops replayed one after another.
    pub(crate) fn commit_unchecked(&self, changes: Changes) -> Result<(), StateReadError> {
        let mut diff = self.diff.write().map_err(poisoned)?;
        self.apply(&mut diff, changes)
    }

    fn apply(&self, diff: &mut Diff, changes: Changes) -> Result<(), StateReadError> {
        for address in changes.created {
            diff.created.insert(address);
            diff.storage.retain(|(a, _), _| *a != address);
        }
        for (address, new) in changes.accounts {
            let merged = if self.commutative.accounts.contains(&address) {
                let seen = changes
                    .reads
                    .accounts
                    .get(&address)
                    .cloned()
                    .flatten()
                    .unwrap_or_default();
                let now = self.account(diff, address)?.unwrap_or_default();
                AccountInfo {
                    balance: now
                        .balance
                        .wrapping_add(new.balance.wrapping_sub(seen.balance)),
                    nonce: now.nonce.wrapping_add(new.nonce.wrapping_sub(seen.nonce)),
                    ..new
                }
            } else {
                new
            };
            diff.accounts.insert(address, merged);
        }
        for ((address, slot), new) in changes.storage {
            let merged = if self.commutative.slots.contains(&(address, slot)) {
                let seen = changes
                    .reads
                    .storage
                    .get(&(address, slot))
                    .copied()
                    .unwrap_or_default();
                self.slot(diff, address, slot)?
                    .wrapping_add(new.wrapping_sub(seen))
            } else {
                new
            };
            diff.storage.insert((address, slot), merged);
        }
        diff.version += 1;
        diff.time = diff.time.max(changes.time);
        Ok(())
    }
}

/// Accounts are the same for a conflict check: same code, and the same balance and nonce unless those
/// are commutative.
fn same_account(a: Option<&AccountInfo>, b: Option<&AccountInfo>, commutative: bool) -> bool {
    let (a, b) = (
        a.cloned().unwrap_or_default(),
        b.cloned().unwrap_or_default(),
    );
    a.code_hash == b.code_hash && (commutative || (a.balance == b.balance && a.nonce == b.nonce))
}

/// A simulation's own writes (from an earlier call in the same simulation, such as the op itself before
/// the health read after it).
#[derive(Debug, Default)]
struct Local {
    accounts: HashMap<Address, AccountInfo>,
    storage: HashMap<(Address, U256), U256>,
    created: HashSet<Address>,
}

/// One simulation's database: its own layer over the pending layers, recording what it read below.
#[derive(Debug)]
pub(crate) struct SimDb<'a> {
    layers: &'a Layers,
    local: Local,
    reads: Reads,
}

impl SimDb<'_> {
    /// What the simulation read so far, with no writes (for a simulation that failed).
    pub(crate) fn reads_only(&self, time: u64) -> Changes {
        Changes {
            reads: self.reads.clone(),
            time,
            ..Default::default()
        }
    }

    /// The writes of `state` (one transaction's result) as the op's changes, with what it read.
    pub(crate) fn changes(&self, state: &EvmState, moves_others: bool, time: u64) -> Changes {
        let mut c = Changes {
            reads: self.reads.clone(),
            moves_others,
            time,
            ..Default::default()
        };
        for (address, account) in state {
            if !account.is_touched() {
                continue;
            }
            if account.is_created() {
                c.created.insert(*address);
            }
            c.accounts.insert(*address, account.info.clone());
            for (slot, value) in &account.storage {
                if value.is_changed() {
                    c.storage.insert((*address, *slot), value.present_value);
                }
            }
        }
        c
    }
}

impl Database for SimDb<'_> {
    type Error = StateReadError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        if let Some(a) = self.local.accounts.get(&address) {
            return Ok(Some(a.clone()));
        }
        if let Some(a) = self.reads.accounts.get(&address) {
            return Ok(a.clone());
        }
        let a = self.layers.read_account(address)?;
        self.reads.accounts.insert(address, a.clone());
        Ok(a)
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Err(StateReadError(format!(
            "code {code_hash} was not loaded with its account"
        )))
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        if let Some(v) = self.local.storage.get(&(address, index)) {
            return Ok(*v);
        }
        if self.local.created.contains(&address) {
            return Ok(U256::ZERO);
        }
        if let Some(v) = self.reads.storage.get(&(address, index)) {
            return Ok(*v);
        }
        let v = self.layers.read_slot(address, index)?;
        self.reads.storage.insert((address, index), v);
        Ok(v)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.layers.node.block_hash_ref(number)
    }
}

impl DatabaseCommit for SimDb<'_> {
    fn commit(&mut self, state: EvmState) {
        for (address, account) in state {
            if !account.is_touched() {
                continue;
            }
            if account.is_created() {
                self.local.created.insert(address);
                self.local.storage.retain(|(a, _), _| *a != address);
            }
            for (slot, value) in &account.storage {
                if value.is_changed() {
                    self.local
                        .storage
                        .insert((address, *slot), value.present_value);
                }
            }
            self.local.accounts.insert(address, account.info);
        }
    }
}
