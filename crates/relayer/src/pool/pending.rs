//! The pending state: the head plus every op the pool holds (in flight first, then in acceptance order),
//! as the next bundle would leave the chain. New ops are validated on it — several at once, each on its own
//! layer (see [`crate::validate::layers`]) — and committed into it when accepted.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use alloy::providers::DynProvider;
use alloy_primitives::{Address, B256, U256};
use keyscope_core::user_op::PackedUserOperation;
use tokio::runtime::Handle;

use crate::validate::{
    self, Head, Health, SimBlock, SimConfig, SimError, Simulated,
    layers::{Changes, Commutative, Conflict, Layers},
    node::NodeCache,
};

/// What the door reads of an op's entities before pooling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpFacts {
    /// The sender is a Keyscope TradingAccount (by its code, not its nonce or calldata).
    pub keyscope: bool,
    /// The sender has the stake ERC-7562 asks of staked entities.
    pub sender_staked: bool,
    /// The op's factory is staked.
    pub factory_staked: bool,
    /// The op's paymaster is staked.
    pub paymaster_staked: bool,
    /// The paymaster's EntryPoint deposit, if the op has one.
    pub paymaster_deposit: Option<U256>,
    /// The head of the pending state these were read on: on another (the chain follower moved it
    /// meanwhile) a simulation reads the stakes again.
    pub on: B256,
}

impl OpFacts {
    /// `op`'s entities these facts found staked (`op` is the op they were read for).
    pub(crate) fn staked(&self, op: &PackedUserOperation) -> HashSet<Address> {
        let (factory, paymaster) = validate::entities_of(op);
        [
            self.sender_staked.then_some(op.sender),
            factory.filter(|_| self.factory_staked),
            paymaster.filter(|_| self.paymaster_staked),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The pending state on one head.
#[derive(Debug)]
pub(crate) struct PendingState {
    head: Head,
    layers: Arc<Layers>,
    cfg: Arc<SimConfig>,
    /// Each account's health as last read, with the block time it was read at (funding accrues with
    /// time, so a read is reused only at the same time). Only the account's own trading moves it,
    /// unless an op that may move others' health is committed (the cache is then emptied).
    health: Mutex<HashMap<Address, (u64, Health)>>,
    /// The latest block time a simulation on this state used.
    clock: AtomicU64,
}

fn internal(e: impl std::fmt::Display) -> SimError {
    SimError::Internal(e.to_string())
}

impl PendingState {
    /// The state of `head` with nothing pending.
    pub(crate) fn new(
        provider: DynProvider,
        handle: Handle,
        cfg: Arc<SimConfig>,
        commutative: Commutative,
        head: Head,
    ) -> Self {
        let node = Arc::new(NodeCache::new(provider, head.number, handle));
        Self {
            head,
            layers: Arc::new(Layers::new(node, commutative)),
            cfg,
            health: Default::default(),
            clock: AtomicU64::new(0),
        }
    }

    /// The head this state starts from.
    pub(crate) fn head(&self) -> Head {
        self.head
    }

    /// The block simulations run in now: after the head, at the wall clock, never earlier than a
    /// simulation before it on this state.
    pub(crate) fn block(&self) -> SimBlock {
        let block = SimBlock::after(&self.head);
        let before = self.clock.fetch_max(block.timestamp, Ordering::Relaxed);
        SimBlock {
            timestamp: before.max(block.timestamp),
            ..block
        }
    }

    /// The node state at the bottom (to prefill slots read outside any lock, and for the bundler's
    /// simulations on the same head).
    pub(crate) fn node(&self) -> &Arc<NodeCache> {
        self.layers.node()
    }

    /// The layers of this state: a rebuild (every new head) makes new ones.
    pub(crate) fn layers(&self) -> &Arc<Layers> {
        &self.layers
    }

    /// A storage slot on the pending state.
    pub(crate) fn storage(&self, address: Address, slot: U256) -> Result<U256, SimError> {
        self.layers.read_slot(address, slot).map_err(internal)
    }

    /// What the door needs to know of `op`'s entities before it pools it, on the pending state: one
    /// EntryPoint read per entity.
    pub(crate) fn facts(&self, op: &PackedUserOperation) -> Result<OpFacts, SimError> {
        let block = self.block();
        let mut db = self.layers.db();
        let (factory, paymaster) = validate::entities_of(op);
        let factory_staked = match factory {
            Some(f) => validate::deposit_info(&mut db, &self.cfg, block, f)?.staked,
            None => false,
        };
        let paymaster = match paymaster {
            Some(p) => Some(validate::deposit_info(&mut db, &self.cfg, block, p)?),
            None => None,
        };
        Ok(OpFacts {
            keyscope: validate::is_keyscope_account(&mut db, &self.cfg, op.sender)?,
            sender_staked: validate::deposit_info(&mut db, &self.cfg, block, op.sender)?.staked,
            factory_staked,
            paymaster_staked: paymaster.is_some_and(|p| p.staked),
            paymaster_deposit: paymaster.map(|p| p.deposit),
            on: self.head.hash,
        })
    }

    /// Simulates `op` on its own layer over the pending state: what it finds (with the account's health
    /// before the op) and the op's changes, to commit if it is accepted.
    pub(crate) fn simulate(
        &self,
        op: &PackedUserOperation,
        estimate: bool,
    ) -> Result<(Simulated, Changes), SimError> {
        let (result, changes) = self.simulate_tracked(op, estimate, false, None);
        result.map(|s| (s, changes))
    }

    /// [`Self::simulate`], with what the simulation read even when it failed (to tell a real refusal from
    /// one computed on values another commit changed meanwhile: see [`Self::is_current`]), and the
    /// account's health before the op if `health` (a venue call: only when the client asks for it).
    /// `facts`: the op's entities' stakes if the door read them already on this head (else they are read
    /// here).
    pub(crate) fn simulate_tracked(
        &self,
        op: &PackedUserOperation,
        estimate: bool,
        health: bool,
        facts: Option<&OpFacts>,
    ) -> (Result<Simulated, SimError>, Changes) {
        let block = self.block();
        let mut db = self.layers.db();
        let result = (|| {
            let staked = match facts {
                Some(f) if f.on == self.head.hash => f.staked(op),
                _ => validate::staked_entities(&mut db, &self.cfg, block, op)?,
            };
            let before = match health {
                true => self
                    .cached_health(op.sender, block)
                    .or_else(|| validate::health(&mut db, &self.cfg, block, op.sender)),
                false => None,
            };
            let (mut simulated, state) =
                validate::simulate_op(&mut db, &self.cfg, block, op, staked, estimate)?;
            simulated.health_before = before;
            Ok((simulated, state))
        })();
        match result {
            Ok((simulated, state)) => {
                let moves_others = !crate::op::moves_only_own_health(&op.callData, self.cfg.venue);
                (
                    Ok(simulated),
                    db.changes(&state, moves_others, block.timestamp),
                )
            }
            Err(e) => (Err(e), db.reads_only(block.timestamp)),
        }
    }

    /// True if every value `changes` read is still current.
    pub(crate) fn is_current(&self, changes: &Changes) -> bool {
        self.layers.is_current(changes)
    }

    /// Commits an accepted op's changes, unless state it read has changed since (then validate it again).
    pub(crate) fn commit(&self, changes: Changes) -> Result<(), Conflict> {
        let moves_others = changes.moves_others;
        self.layers.commit(changes)?;
        if moves_others {
            self.forget_health();
        }
        Ok(())
    }

    /// Commits changes without the conflict check (ops replayed one by one on a new head).
    pub(crate) fn commit_unchecked(&self, changes: Changes) -> Result<(), SimError> {
        let moves_others = changes.moves_others;
        self.layers.commit_unchecked(changes).map_err(internal)?;
        if moves_others {
            self.forget_health();
        }
        Ok(())
    }

    /// The venue health of `account` now, remembered as its next op's health before.
    pub(crate) fn health(&self, account: Address) -> Option<Health> {
        let block = self.block();
        let h = validate::health(&mut self.layers.db(), &self.cfg, block, account)?;
        if let Ok(mut cache) = self.health.lock() {
            cache.insert(account, (block.timestamp, h.clone()));
        }
        Some(h)
    }

    fn cached_health(&self, account: Address, block: SimBlock) -> Option<Health> {
        let cache = self.health.lock().ok()?;
        match cache.get(&account) {
            Some((at, h)) if *at == block.timestamp => Some(h.clone()),
            _ => None,
        }
    }

    fn forget_health(&self) {
        if let Ok(mut cache) = self.health.lock() {
            cache.clear();
        }
    }
}
