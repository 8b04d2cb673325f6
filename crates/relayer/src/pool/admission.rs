//! The door: what happens between `eth_sendUserOperation` arriving and its hash going back. Cheap checks
//! first (fields, gas, fees, the key's token bucket, reputation, pool limits), then the op is simulated on
//! its own layer over the pending state — concurrently with other senders' ops — and committed into it;
//! only an op that is durably stored is answered with its hash.

use std::time::Instant;

use alloy_primitives::B256;
use keyscope_core::{
    nonce::session_key_of,
    ops::OpKind,
    rpc_op::{RpcUserOperation, unpack},
    user_op::{PackedUserOperation, user_op_hash},
};
use serde::Serialize;
use serde_json::Value;

use super::{
    Persist, Pool, PoolOp, Standing,
    checks::{
        check_floor, check_simulated, fee_limits, refuse_eip7702, reputation_check, sim_error,
        static_checks,
    },
    now_us,
    pending::{OpFacts, PendingState},
};
use crate::records::OpEvent;
use crate::{
    config::DoorConfig,
    error::{RpcError, code},
    metrics::Metrics,
    op::classify,
    store::{AuditEntry, OpRecord, OpStatus, Timings},
    validate::{Head, HealthChange},
};

/// An accepted op.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Accepted {
    /// The op's ERC-4337 hash.
    pub user_op_hash: B256,
    /// The account's venue health before and after the op, on the pending state.
    pub health: Option<HealthChange>,
}

/// Times an op is validated again when ops of other senders accepted meanwhile changed state it read,
/// before it is validated alone.
const OPTIMISTIC_TRIES: usize = 3;

/// What validating an op on the pending state found, once its changes are committed.
struct Validated {
    valid_until: u64,
    health: Option<HealthChange>,
}

/// Simulates `op` on the pending state and commits it if it passes. `Ok(None)`: state it read changed
/// meanwhile (another sender's op was committed first) — validate it again.
fn validate_and_commit(
    pending: &PendingState,
    door: &DoorConfig,
    op: &PackedUserOperation,
    facts: &OpFacts,
    with_health: bool,
) -> Result<Option<Validated>, RpcError> {
    let keyscope = facts.keyscope;
    let (_, max_fee) = unpack(op.gasFees);
    let base_fee = pending.head().base_fee;
    if max_fee < base_fee {
        return Err(RpcError::invalid_fields(format!(
            "maxFeePerGas {max_fee} is below the current base fee {base_fee}; the bundle could not be mined"
        )));
    }
    if keyscope {
        fee_limits(pending, op)?;
    }
    let (result, changes) = pending.simulate_tracked(op, false, with_health, Some(facts));
    let checked = result.map_err(sim_error).and_then(|s| {
        let until = check_simulated(pending, door, op, &s, false, keyscope)?;
        check_floor(op, &s)?;
        Ok((s, until))
    });
    let (simulated, valid_until) = match checked {
        Ok(v) => v,
        // Refused on values another sender's op changed meanwhile: the refusal may not hold.
        Err(_) if !pending.is_current(&changes) => return Ok(None),
        Err(e) => return Err(e),
    };
    if pending.commit(changes).is_err() {
        return Ok(None);
    }
    let health = match simulated.health_before.clone() {
        Some(before) => pending
            .health(op.sender)
            .map(|after| HealthChange { before, after }),
        None => None,
    };
    Ok(Some(Validated {
        valid_until,
        health,
    }))
}

/// An op read and checked, waiting to be validated.
struct Candidate {
    /// What the door read of its entities (their stakes serve its simulation and the pool's limits).
    facts: OpFacts,
    /// Answer with the account's health before and after (`keyscope_sendUserOperation`).
    with_health: bool,
    rpc: RpcUserOperation,
    pool_op: PoolOp,
    received_us: u64,
}

impl Candidate {
    /// Its sender's stake and its paymaster's deposit, for the pool's limits.
    fn standing(&self) -> Standing {
        Standing {
            sender_staked: self.facts.sender_staked,
            paymaster_deposit: self.facts.paymaster_deposit,
        }
    }
}

/// Known senders remembered before the set starts over.
const MAX_KNOWN_SENDERS: usize = 1 << 20;

impl Pool {
    /// `eth_sendUserOperation`: validates, pools and persists `op`; returns its hash once durable — and,
    /// `with_health`, the account's venue health before and after it (`keyscope_sendUserOperation`).
    /// `client` is the caller's address, if known: ops from senders the relayer has not accepted an op
    /// from before spend that address's fresh-sender budget.
    pub(crate) async fn add(
        &self,
        op: Value,
        with_health: bool,
        client: Option<std::net::IpAddr>,
    ) -> Result<Accepted, RpcError> {
        Metrics::inc(&self.inner.metrics.received);
        let result = self.add_inner(op, with_health, client).await;
        match &result {
            Ok(_) => {
                Metrics::inc(&self.inner.metrics.accepted);
                self.inner.arrivals.notify_one();
            }
            Err(e) => self.inner.metrics.rejected(e.code),
        }
        result
    }

    async fn add_inner(
        &self,
        op: Value,
        with_health: bool,
        client: Option<std::net::IpAddr>,
    ) -> Result<Accepted, RpcError> {
        let eip7702 = refuse_eip7702(&op).err();
        let rpc = RpcUserOperation::from_json(op)?;
        let packed = rpc.to_packed()?;
        let hash = user_op_hash(&packed, self.inner.sim.entry_point, self.inner.sim.chain_id)
            .map_err(|e| RpcError::invalid_fields(e.to_string()))?;
        static_checks(&self.inner.cfg.door, &packed)?;
        if let Some(refusal) = eip7702 {
            // Refused (the relayer cannot put the authorization into its bundle), but after the refusal
            // the op earns anyway: a sender the EntryPoint refuses without the delegation applied (an
            // EOA: AA20) gets that refusal and its code, as a client expects. Nothing is pooled either way.
            let simulate = |op: PackedUserOperation| {
                let pending = self.pending_state();
                async move {
                    tokio::task::spawn_blocking(move || pending.simulate(&op, false).map(|_| ()))
                        .await
                        .map_err(|e| RpcError::internal(e.to_string()))
                }
            };
            let tried_on = self.head();
            let mut simulated = simulate(packed.clone()).await?;
            // Refused on a head older than the node's (as any op is): judged again on the new one.
            if simulated.is_err() && self.catch_up(tried_on).await? {
                simulated = simulate(packed).await?;
            }
            simulated.map_err(sim_error)?;
            return Err(refusal);
        }
        let packed_sender = packed.sender;
        if let Some(ip) = client {
            self.fresh_sender_budget(ip, packed_sender)?;
        }
        // An account's ops are validated one after another, in the order they arrive.
        let sender = self.sender_lock(packed.sender);
        let _in_order = sender.lock().await;
        let received_us = now_us();
        let mut candidate = self
            .candidate(rpc, packed, hash, with_health, received_us)
            .await?;
        let key = candidate
            .pool_op
            .session_key
            .unwrap_or(candidate.pool_op.op.sender);
        {
            let mut book = self.book();
            if book.records.contains_key(&hash) {
                return Err(RpcError::invalid_fields(format!(
                    "op {hash} is already known to this relayer"
                )));
            }
            if let Err(wait) = book.limiter.take(key, Instant::now()) {
                let door = &self.inner.cfg.door;
                return Err(RpcError::new(
                    code::REPUTATION,
                    format!(
                        "{key} is sending faster than {}/s (burst {}); retry in {} ms",
                        door.ops_per_second_per_key,
                        door.burst_per_key,
                        wait.as_millis().max(1)
                    ),
                ));
            }
        }
        let tried_on = self.head();
        let mut result = self.admit(&candidate).await;
        // The pending state follows the head through the chain follower, not per op (a node round trip per
        // op is the price of nothing); a refusal, though, may come from a head the relayer has not seen
        // yet (an account deployed a moment ago): look once, catch up and decide again.
        if result.as_ref().is_err_and(|e| e.code != code::REPUTATION)
            && self.catch_up(tried_on).await?
        {
            let Candidate { rpc, pool_op, .. } = candidate;
            candidate = self
                .candidate(rpc, pool_op.op, hash, with_health, received_us)
                .await?;
            result = self.admit(&candidate).await;
        }
        if result.is_err() {
            self.book().limiter.refund(key);
        }
        let (record, persist) = result?;
        if let Err(e) = self.write_now(persist).await {
            // Not durable, so not accepted: take it out again and rebuild the pending state without it.
            {
                let mut book = self.book();
                book.mempool.remove(&hash);
                book.records.remove(&hash);
                self.update_size(&book);
            }
            self.rebuild(None).await;
            return Err(RpcError::retry_later(
                "the relayer could not record the op just now",
                e,
            ));
        }
        self.know(packed_sender);
        Ok(Accepted {
            user_op_hash: hash,
            health: record.health,
        })
    }

    /// A sender the relayer has not accepted an op from spends a token of its client's fresh-sender
    /// budget, before any simulation: a flood of new senders (each passing every per-sender limit) is held
    /// to its client's share, and known senders are never slowed by it. Not refunded when the op is then
    /// refused: a refused op cost a simulation all the same.
    fn fresh_sender_budget(
        &self,
        ip: std::net::IpAddr,
        sender: alloy_primitives::Address,
    ) -> Result<(), RpcError> {
        if self.is_known(sender) {
            return Ok(());
        }
        let taken = self
            .inner
            .fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(ip, Instant::now());
        taken.map_err(|wait| {
            let door = &self.inner.cfg.door;
            RpcError::new(
                code::REPUTATION,
                format!(
                    "{ip} is sending ops from new senders faster than {}/s (burst {}); retry in {} ms",
                    door.fresh_senders_per_second_per_client,
                    door.fresh_senders_burst_per_client,
                    wait.as_millis().max(1)
                ),
            )
        })
    }

    fn is_known(&self, sender: alloy_primitives::Address) -> bool {
        self.inner
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&sender)
    }

    /// Remembers `sender` as known (a sender with an accepted op).
    pub(super) fn know(&self, sender: alloy_primitives::Address) {
        let mut known = self.inner.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_KNOWN_SENDERS {
            known.clear(); // forgetting only makes senders spend the fresh budget once more
        }
        known.insert(sender);
    }

    /// The op as the pool would hold it, with what the pending state says of its sender and paymaster:
    /// trading features (session-key quotas, trading-first order) only for Keyscope accounts.
    async fn candidate(
        &self,
        rpc: RpcUserOperation,
        op: PackedUserOperation,
        hash: B256,
        with_health: bool,
        received_us: u64,
    ) -> Result<Candidate, RpcError> {
        let pending = self.pending();
        let probe = op.clone();
        let facts = tokio::task::spawn_blocking(move || pending.facts(&probe))
            .await
            .map_err(RpcError::internal)?
            .map_err(sim_error)?;
        let keyscope = facts.keyscope;
        Ok(Candidate {
            pool_op: PoolOp {
                hash,
                kind: if keyscope {
                    classify(&op.callData, self.inner.sim.venue)
                } else {
                    OpKind::Other
                },
                session_key: if keyscope {
                    session_key_of(op.nonce)
                } else {
                    None
                },
                keyscope,
                sender_staked: facts.sender_staked,
                factory_staked: facts.factory_staked,
                valid_until: u64::MAX,
                order: 0,
                op,
            },
            facts,
            received_us,
            with_health,
            rpc,
        })
    }

    /// Moves the pending state to the node's head if the node has a block the relayer has not seen and no
    /// bundle of ours is in flight (those blocks the chain follower settles, keeping the pending state). True
    /// if the pending state is no longer the one `tried_on` (moved here, or by the chain follower meanwhile).
    pub(super) async fn catch_up(&self, tried_on: Head) -> Result<bool, RpcError> {
        let _deciding = self.head_lock().await;
        if self.head().hash != tried_on.hash {
            return Ok(true); // the chain follower moved it meanwhile
        }
        if !self.book().submitted.is_empty() {
            return Ok(false);
        }
        let latest = Head::latest(&self.inner.provider)
            .await
            .map_err(|e| RpcError::retry_later("the relayer's node did not answer", e))?;
        if latest.number <= self.head().number {
            return Ok(false);
        }
        self.on_head(latest).await;
        Ok(true)
    }

    /// Validates a candidate: concurrently with other senders' ops while the pool admits ops, alone when a
    /// replacement reorders the pending state or state it read keeps changing under it.
    async fn admit(&self, c: &Candidate) -> Result<(OpRecord, Persist), RpcError> {
        {
            let gate = self.inner.gate.read().await;
            let replaces = {
                let book = self.book();
                reputation_check(&book, &c.pool_op)?;
                book.mempool.admit(&c.pool_op, c.standing())?
            };
            if replaces.is_none() {
                for _ in 0..OPTIMISTIC_TRIES {
                    let validated = self.validate(c).await?;
                    if let Some(v) = validated {
                        let accepted = self.accept(c, v, None);
                        drop(gate);
                        return Ok(accepted);
                    }
                }
            }
        }
        self.admit_alone(c).await
    }

    /// Validates a candidate with no other admission running: a replacement (the op it replaces leaves the
    /// pending state, which is replayed without it) or an op whose reads kept conflicting.
    async fn admit_alone(&self, c: &Candidate) -> Result<(OpRecord, Persist), RpcError> {
        let _alone = self.inner.gate.write().await;
        let replaced = {
            let mut book = self.book();
            reputation_check(&book, &c.pool_op)?;
            let old = book.mempool.admit(&c.pool_op, c.standing())?;
            old.and_then(|h| book.mempool.remove(&h))
        };
        let mut persist = Persist::default();
        if replaced.is_some() {
            persist.extend(self.replay_now().await);
        }
        let validated = self.validate(c).await.and_then(|v| {
            v.ok_or_else(|| {
                RpcError::internal("the pending state changed during an exclusive validation")
            })
        });
        match validated {
            Ok(v) => {
                let (record, p) = self.accept(c, v, replaced);
                persist.extend(p);
                Ok((record, persist))
            }
            Err(e) => {
                if let Some(old) = replaced {
                    self.book().mempool.insert(old);
                    persist.extend(self.replay_now().await);
                }
                self.persist(persist).await;
                Err(e)
            }
        }
    }

    /// Validates and commits a candidate on a blocking thread, at most as many at once as there are cores
    /// (more would only share them, and each would finish later).
    async fn validate(&self, c: &Candidate) -> Result<Option<Validated>, RpcError> {
        let _core = self
            .inner
            .cores
            .acquire()
            .await
            .map_err(RpcError::internal)?;
        let (pool, op, with_health) = (self.clone(), c.pool_op.op.clone(), c.with_health);
        let (pending, facts) = (self.pending(), c.facts);
        tokio::task::spawn_blocking(move || {
            validate_and_commit(&pending, &pool.inner.cfg.door, &op, &facts, with_health)
        })
        .await
        .map_err(RpcError::internal)?
    }

    /// Pools a validated op (committed to the pending state already) and writes its record.
    fn accept(&self, c: &Candidate, v: Validated, replaced: Option<PoolOp>) -> (OpRecord, Persist) {
        let hash = c.pool_op.hash;
        let mut book = self.book();
        let order = match &replaced {
            Some(o) => o.order,
            None => book.mempool.take_order(),
        };
        let pool_op = PoolOp {
            valid_until: v.valid_until,
            order,
            ..c.pool_op.clone()
        };
        // A replaced op's sightings are taken back; the new op's are counted (ERC-7562: once per op).
        if let Some(old) = &replaced {
            for e in old.tracked() {
                book.reputation.unseen(e);
            }
        }
        for e in pool_op.tracked() {
            book.reputation.seen(e);
        }
        let record = OpRecord {
            hash,
            user_operation: c.rpc.clone(),
            kind: pool_op.kind,
            session_key: pool_op.session_key,
            keyscope: pool_op.keyscope,
            status: OpStatus::Pending,
            order,
            valid_until: v.valid_until,
            timings: Timings {
                received_us: c.received_us,
                validated_us: Some(now_us()),
                ..Default::default()
            },
            tx_hash: None,
            replaced_txs: Vec::new(),
            block_number: None,
            block_hash: None,
            success: None,
            reason: None,
            health: v.health,
        };
        book.mempool.insert(pool_op);
        book.records.insert(hash, record.clone());
        let mut persist = Persist::default();
        if let Some(old) = replaced {
            Metrics::inc(&self.inner.metrics.dropped);
            persist.extend(book.transition(old.hash, OpEvent::Replaced, |r| {
                r.status = OpStatus::Dropped;
                r.reason = Some(format!("replaced by {hash}"));
            }));
        }
        self.update_size(&book);
        drop(book);
        self.inner
            .metrics
            .observe("validate", now_us().saturating_sub(c.received_us));
        persist.ops.push(record.clone());
        persist
            .audit
            .push(AuditEntry::about(&record, OpEvent::Accepted, now_us()));
        (record, persist)
    }
}
