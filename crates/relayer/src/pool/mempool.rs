//! Accepted ops waiting for a bundle, nonce-ordered per (sender, nonce key) lane, with limits per
//! sender and per session key, fee-bump replacement and expiry.
//!
//! Bundles are filled trading-first: ops that add margin, cancel or only reduce positions go ahead
//! of everything else (a margin top-up must not wait behind a queue of new orders), then by priority
//! fee, then first come first served — always in nonce order within a lane.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap},
};

use alloy_primitives::{Address, B256, U256};
use keyscope_core::user_op::PackedUserOperation;

use keyscope_core::{nonce::split_nonce as nonce_parts, ops::OpKind, rpc_op::unpack};

use crate::error::{RpcError, code};

/// An accepted op and what the pool orders it by.
#[derive(Debug, Clone)]
pub(crate) struct PoolOp {
    pub hash: B256,
    pub op: PackedUserOperation,
    pub kind: OpKind,
    pub session_key: Option<Address>,
    /// The sender is a Keyscope TradingAccount: trading features (session-key quotas, trading-first order,
    /// refusing reverting orders) apply.
    pub keyscope: bool,
    /// Its sender is staked (reputation tracks it, and it answers for its paymaster, EREP-030).
    pub sender_staked: bool,
    /// Its factory is staked (it answers for the account it deploys, EREP-020).
    pub factory_staked: bool,
    pub valid_until: u64,
    /// Acceptance order; a replacement keeps the order of the op it replaced.
    pub order: u64,
}

impl PoolOp {
    /// The op as a stored record describes it (stakes are read again when it is next validated); None if
    /// the stored op no longer parses.
    pub(crate) fn from_record(rec: &crate::store::OpRecord) -> Option<Self> {
        Some(Self {
            hash: rec.hash,
            op: rec.user_operation.to_packed().ok()?,
            kind: rec.kind,
            session_key: rec.session_key,
            keyscope: rec.keyscope,
            sender_staked: false,
            factory_staked: false,
            valid_until: rec.valid_until,
            order: rec.order,
        })
    }

    pub(crate) fn lane(&self) -> (Address, U256) {
        (self.op.sender, nonce_parts(self.op.nonce).0)
    }

    pub(crate) fn seq(&self) -> u64 {
        nonce_parts(self.op.nonce).1
    }

    pub(crate) fn fees(&self) -> (u128, u128) {
        let (priority, max) = unpack(self.op.gasFees);
        (max, priority)
    }

    pub(crate) fn factory(&self) -> Option<Address> {
        (self.op.initCode.len() >= 20).then(|| Address::from_slice(&self.op.initCode[..20]))
    }

    pub(crate) fn paymaster(&self) -> Option<Address> {
        (self.op.paymasterAndData.len() >= 20)
            .then(|| Address::from_slice(&self.op.paymasterAndData[..20]))
    }

    /// The entities reputation tracks for this op: its factory, its paymaster, and its sender if staked.
    pub(crate) fn tracked(&self) -> Vec<Address> {
        let sender = self.sender_staked.then_some(self.op.sender);
        [self.factory(), self.paymaster(), sender]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Who answers for the op failing with EntryPoint reason `reason` after it was accepted (ERC-7562
    /// EREP-020/030): the factory for AA1x, the account for AA2x (its staked factory in its place), the
    /// paymaster for AA3x (a staked account in its place). `crashed`: the staked factory answering for its
    /// account, to be banned.
    pub(crate) fn culprit(&self, reason: &str) -> (Option<Address>, bool) {
        match reason.get(..3) {
            Some("AA1") => (self.factory(), false),
            Some("AA2") if self.factory_staked => (self.factory(), true),
            Some("AA2") => (Some(self.op.sender), false),
            Some("AA3") if self.sender_staked => (Some(self.op.sender), false),
            Some("AA3") => (self.paymaster(), false),
            _ => (None, false),
        }
    }

    /// The most the op can cost whoever pays for it: all its gas at its max fee.
    pub(crate) fn max_cost(&self) -> U256 {
        U256::from(crate::validate::gas_sum(&self.op)).saturating_mul(U256::from(self.fees().0))
    }
}

pub(crate) use crate::records::PoolLimits;

/// Nonce-ordered pending ops.
#[derive(Debug, Default)]
pub(crate) struct Mempool {
    limits: PoolLimits,
    ops: HashMap<B256, PoolOp>,
    by_nonce: HashMap<(Address, U256), B256>,
    lanes: HashMap<(Address, U256), BTreeMap<u64, B256>>,
    per_sender: HashMap<Address, usize>,
    per_key: HashMap<Address, usize>,
    /// Pooled ops naming each address as their factory or paymaster.
    per_entity: HashMap<Address, usize>,
    /// The most the pooled ops each paymaster sponsors can cost it, together.
    paymaster_cost: HashMap<Address, U256>,
    next_order: u64,
}

/// What the door knows of an op's sender and paymaster, for the pool's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Standing {
    /// The sender is staked: ERC-7562's SAME_SENDER_MEMPOOL_COUNT does not apply.
    pub sender_staked: bool,
    /// The paymaster's EntryPoint deposit (it must cover every pooled op it sponsors).
    pub paymaster_deposit: Option<U256>,
}

impl Mempool {
    pub(crate) fn new(limits: PoolLimits) -> Self {
        Self {
            limits,
            ..Default::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Pooled ops that name `entity` as their factory or paymaster.
    pub(crate) fn count_using(&self, entity: Address) -> usize {
        self.per_entity.get(&entity).copied().unwrap_or(0)
    }

    /// ERC-7562: an address is a sender in the pool or an entity (factory, paymaster) in it, not both.
    fn check_roles(&self, op: &PoolOp) -> Result<(), RpcError> {
        for (what, entity) in [("factory", op.factory()), ("paymaster", op.paymaster())] {
            if let Some(e) = entity.filter(|e| self.per_sender.contains_key(e)) {
                return Err(RpcError::new(
                    code::OPCODE_VALIDATION,
                    format!(
                        "the op's {what} {e} is used as a sender entity in another UserOperation currently in mempool"
                    ),
                ));
            }
        }
        let sender = op.op.sender;
        if self.count_using(sender) > 0 {
            return Err(RpcError::new(
                code::OPCODE_VALIDATION,
                format!(
                    "sender {sender} is used as a different entity in another UserOperation currently in mempool"
                ),
            ));
        }
        Ok(())
    }

    /// The paymaster's deposit must cover the most every op it sponsors in the pool may cost, this one included.
    fn check_paymaster_deposit(&self, op: &PoolOp, deposit: Option<U256>) -> Result<(), RpcError> {
        let (Some(pm), Some(deposit)) = (op.paymaster(), deposit) else {
            return Ok(());
        };
        let pooled = self.paymaster_cost.get(&pm).copied().unwrap_or_default();
        if pooled.is_zero() {
            return Ok(()); // the EntryPoint checks one op against the deposit itself (AA31)
        }
        let needed = pooled.saturating_add(op.max_cost());
        if needed > deposit {
            return Err(RpcError::new(
                code::PAYMASTER_DEPOSIT_TOO_LOW,
                format!(
                    "paymaster {pm} deposit too low: {deposit} wei in the EntryPoint, its pooled ops may cost {needed}"
                ),
            ));
        }
        Ok(())
    }

    /// Numbers new ops after `floor` (the highest order ever stored).
    pub(crate) fn insert_order_floor(&mut self, floor: u64) {
        self.next_order = self.next_order.max(floor);
    }

    /// The order number the next accepted op gets.
    pub(crate) fn take_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    /// Checks whether `op` may enter; returns the hash of the op it replaces, if any.
    pub(crate) fn admit(&self, op: &PoolOp, standing: Standing) -> Result<Option<B256>, RpcError> {
        if self.ops.contains_key(&op.hash) {
            return Err(RpcError::invalid_fields(format!(
                "op {} is already in the pool",
                op.hash
            )));
        }
        if let Some(old_hash) = self.by_nonce.get(&(op.op.sender, op.op.nonce)) {
            let old = &self.ops[old_hash];
            let (old_max, old_prio) = old.fees();
            let (max, prio) = op.fees();
            let bump =
                |old: u128| old + old * self.limits.replacement_fee_bump_percent as u128 / 100;
            let bumped = max >= bump(old_max) && prio >= bump(old_prio);
            if !bumped && !op.kind.is_protective() {
                return Err(RpcError::invalid_fields(format!(
                    "replacement underpriced: op {old_hash} has this nonce; raise maxFeePerGas to at least {} and \
                     maxPriorityFeePerGas to at least {} ({}% bump) — margin deposits, cancels and reduce-only orders replace without one",
                    bump(old_max),
                    bump(old_prio),
                    self.limits.replacement_fee_bump_percent
                )));
            }
            return Ok(Some(*old_hash));
        }
        self.check_roles(op)?;
        self.check_paymaster_deposit(op, standing.paymaster_deposit)?;
        if self.ops.len() >= self.limits.max_ops {
            return Err(RpcError::new(
                code::REPUTATION,
                format!(
                    "the pool is full ({} ops); try again shortly",
                    self.limits.max_ops
                ),
            ));
        }
        let sender_count = self.per_sender.get(&op.op.sender).copied().unwrap_or(0);
        let limit = match op.keyscope {
            true => self.limits.max_ops_per_sender,
            false => self.limits.max_ops_per_other_sender,
        };
        if sender_count >= limit && !standing.sender_staked {
            return Err(RpcError::new(
                code::REPUTATION,
                format!(
                    "sender {} already has {sender_count} ops waiting (limit {limit} for an unstaked sender); wait for a bundle",
                    op.op.sender
                ),
            ));
        }
        if let Some(key) = op.session_key {
            let n = self.per_key.get(&key).copied().unwrap_or(0);
            if n >= self.limits.max_ops_per_session_key {
                return Err(RpcError::new(
                    code::REPUTATION,
                    format!(
                        "session key {key} already has {n} ops waiting (limit {}); wait for a bundle",
                        self.limits.max_ops_per_session_key
                    ),
                ));
            }
        }
        Ok(None)
    }

    /// Adds an admitted op.
    pub(crate) fn insert(&mut self, op: PoolOp) {
        self.by_nonce.insert((op.op.sender, op.op.nonce), op.hash);
        self.lanes
            .entry(op.lane())
            .or_default()
            .insert(op.seq(), op.hash);
        *self.per_sender.entry(op.op.sender).or_default() += 1;
        if let Some(k) = op.session_key {
            *self.per_key.entry(k).or_default() += 1;
        }
        for e in [op.factory(), op.paymaster()].into_iter().flatten() {
            *self.per_entity.entry(e).or_default() += 1;
        }
        if let Some(pm) = op.paymaster() {
            let cost = self.paymaster_cost.entry(pm).or_default();
            *cost = cost.saturating_add(op.max_cost());
        }
        self.next_order = self.next_order.max(op.order);
        self.ops.insert(op.hash, op);
    }

    /// Removes an op (bundled, replaced, expired or invalid).
    pub(crate) fn remove(&mut self, hash: &B256) -> Option<PoolOp> {
        let op = self.ops.remove(hash)?;
        self.by_nonce.remove(&(op.op.sender, op.op.nonce));
        if let Some(lane) = self.lanes.get_mut(&op.lane()) {
            lane.remove(&op.seq());
            if lane.is_empty() {
                self.lanes.remove(&op.lane());
            }
        }
        decrement(&mut self.per_sender, op.op.sender);
        if let Some(k) = op.session_key {
            decrement(&mut self.per_key, k);
        }
        for e in [op.factory(), op.paymaster()].into_iter().flatten() {
            decrement(&mut self.per_entity, e);
        }
        if let Some(pm) = op.paymaster() {
            if let Some(cost) = self.paymaster_cost.get_mut(&pm) {
                *cost = cost.saturating_sub(op.max_cost());
                if cost.is_zero() {
                    self.paymaster_cost.remove(&pm);
                }
            }
        }
        Some(op)
    }

    /// Every op in acceptance order (the order the pending state was built in).
    pub(crate) fn in_order(&self) -> Vec<PoolOp> {
        let mut all: Vec<PoolOp> = self.ops.values().cloned().collect();
        all.sort_by_key(|o| (o.order, o.seq()));
        all
    }

    /// Up to `max_ops` ops whose gas fits `max_gas`, in bundle order: protective ops first, then by
    /// priority fee, then by arrival; each lane in nonce order.
    pub(crate) fn best(&self, max_ops: usize, max_gas: u64) -> Vec<B256> {
        type Key = (bool, Reverse<u128>, u64, B256);
        let key = |o: &PoolOp| -> Key {
            (
                !o.kind.is_protective(),
                Reverse(o.fees().1),
                o.order,
                o.hash,
            )
        };
        let mut cursors: HashMap<
            (Address, U256),
            std::collections::btree_map::Values<'_, u64, B256>,
        > = self
            .lanes
            .iter()
            .map(|(lane, ops)| (*lane, ops.values()))
            .collect();
        let mut heads: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
        for cursor in cursors.values_mut() {
            if let Some(h) = cursor.next() {
                heads.push(Reverse(key(&self.ops[h])));
            }
        }
        let (mut picked, mut gas) = (Vec::new(), 0u64);
        while let Some(Reverse((_, _, _, hash))) = heads.pop() {
            if picked.len() >= max_ops {
                break;
            }
            let op = &self.ops[&hash];
            let g = crate::validate::gas_sum(&op.op);
            if gas.saturating_add(g) > max_gas {
                continue; // the rest of this lane waits for the next bundle
            }
            gas += g;
            picked.push(hash);
            if let Some(next) = cursors.get_mut(&op.lane()).and_then(|c| c.next()) {
                heads.push(Reverse(key(&self.ops[next])));
            }
        }
        picked
    }

    /// Counts for `debug_bundler_dumpMempool`-style views.
    pub(crate) fn hashes(&self) -> Vec<B256> {
        self.in_order().into_iter().map(|o| o.hash).collect()
    }
}

fn decrement(map: &mut HashMap<Address, usize>, key: Address) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyscope_core::user_op::pack_u128s;

    fn op(sender: u8, key: u64, seq: u64, prio: u128, kind: OpKind, order: u64) -> PoolOp {
        let nonce = (U256::from(key) << 64) | U256::from(seq);
        let packed = PackedUserOperation {
            sender: Address::repeat_byte(sender),
            nonce,
            accountGasLimits: pack_u128s(100_000, 100_000),
            preVerificationGas: U256::from(50_000),
            gasFees: pack_u128s(prio, 10 * prio),
            ..Default::default()
        };
        PoolOp {
            hash: alloy_primitives::keccak256([sender, key as u8, seq as u8, prio as u8]),
            op: packed,
            kind,
            session_key: None,
            keyscope: false,
            sender_staked: false,
            factory_staked: false,
            valid_until: u64::MAX,
            order,
        }
    }

    #[test]
    fn protective_ops_overtake_orders_but_lanes_keep_nonce_order() {
        let mut pool = Mempool::new(PoolLimits::default());
        let orders: Vec<PoolOp> = (0..3)
            .map(|i| op(1, 1, i, 5, OpKind::Other, i + 1))
            .collect();
        let deposit = op(1, 0, 0, 1, OpKind::AddsMargin, 10);
        // A protective op behind an ordinary one on its own lane does not jump its lane.
        let lane_head = op(2, 0, 0, 1, OpKind::Other, 11);
        let reduce = op(2, 0, 1, 1, OpKind::ReducesRisk, 12);
        for o in orders.iter().chain([&deposit, &lane_head, &reduce]) {
            pool.insert(o.clone());
        }
        let best = pool.best(10, u64::MAX);
        assert_eq!(best[0], deposit.hash);
        let pos = |h: B256| best.iter().position(|x| *x == h).unwrap();
        assert!(
            pos(orders[0].hash) < pos(orders[1].hash) && pos(orders[1].hash) < pos(orders[2].hash)
        );
        assert!(pos(lane_head.hash) < pos(reduce.hash));
        assert_eq!(best.len(), 6);
        assert_eq!(pool.best(2, u64::MAX).len(), 2);
        // Gas budget: each op needs 250k.
        assert_eq!(pool.best(10, 600_000).len(), 2);
    }

    #[test]
    fn replacement_needs_a_fee_bump_unless_protective() {
        let mut pool = Mempool::new(PoolLimits::default());
        let first = op(1, 0, 0, 100, OpKind::Other, 1);
        pool.insert(first.clone());
        let cheap = op(1, 0, 0, 105, OpKind::Other, 2);
        let err = pool.admit(&cheap, Standing::default()).unwrap_err();
        assert!(
            err.message.contains("replacement underpriced"),
            "{}",
            err.message
        );
        let bumped = op(1, 0, 0, 110, OpKind::Other, 3);
        assert_eq!(
            pool.admit(&bumped, Standing::default()).unwrap(),
            Some(first.hash)
        );
        let protective = op(1, 0, 0, 100, OpKind::ReducesRisk, 4);
        let protective = PoolOp {
            hash: B256::repeat_byte(9),
            ..protective
        };
        assert_eq!(
            pool.admit(&protective, Standing::default()).unwrap(),
            Some(first.hash)
        );
    }

    #[test]
    fn per_sender_limit_refuses_with_a_reason_and_frees_on_remove() {
        let limits = PoolLimits {
            max_ops_per_other_sender: 2,
            ..Default::default()
        };
        let mut pool = Mempool::new(limits);
        let a = op(1, 0, 0, 1, OpKind::Other, 1);
        pool.insert(a.clone());
        pool.insert(op(1, 0, 1, 1, OpKind::Other, 2));
        let err = pool
            .admit(&op(1, 0, 2, 1, OpKind::Other, 3), Standing::default())
            .unwrap_err();
        assert_eq!(err.code, code::REPUTATION);
        assert!(err.message.contains("limit 2"));
        pool.remove(&a.hash);
        assert!(
            pool.admit(&op(1, 0, 2, 1, OpKind::Other, 3), Standing::default())
                .is_ok()
        );
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn keyscope_accounts_get_their_lanes_and_other_senders_ercs_four() {
        let mut pool = Mempool::new(PoolLimits::default());
        let keyscope = |seq: u64| PoolOp {
            keyscope: true,
            ..op(2, 0, seq, 1, OpKind::Other, 100 + seq)
        };
        for seq in 0..64 {
            pool.insert(keyscope(seq));
        }
        let err = pool.admit(&keyscope(64), Standing::default()).unwrap_err();
        assert!(err.message.contains("limit 64"), "{}", err.message);
        for seq in 0..4 {
            pool.insert(op(3, 0, seq, 1, OpKind::Other, 200 + seq));
        }
        let fifth = op(3, 0, 4, 1, OpKind::Other, 204);
        let err = pool.admit(&fifth, Standing::default()).unwrap_err();
        assert_eq!(err.code, code::REPUTATION);
        assert!(err.message.contains("limit 4"), "{}", err.message);
        // A staked sender has no cap.
        let staked = Standing {
            sender_staked: true,
            ..Default::default()
        };
        assert!(pool.admit(&fifth, staked).is_ok());
    }
}
