//! The door: what happens between `eth_sendUserOperation` arriving and its hash going back. Cheap checks
//! first (fields, gas, fees, the key's token bucket, reputation, pool limits), then the op is simulated on
//! its own layer over the pending state — concurrently with other senders' ops — and committed into it;
//! only an op that is durably stored is answered with its hash.

use std::time::Instant;

use alloy::sol_types::SolValue;
use alloy_primitives::{Address, B256, U256};
use keyscope_core::{
    fees::{SessionWord, session_word_slot},
    nonce::session_key_of,
    ops::AccountCalls,
    rpc_op::{RpcUserOperation, unpack},
    user_op::{PackedUserOperation, user_op_hash},
};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    Book, Persist, Pool, PoolOp, ReputationStatus, THROTTLED_ENTITY_MEMPOOL_COUNT, now_us,
    pending::PendingState,
};
use crate::{
    config::DoorConfig,
    error::{Refusal, RpcError, code},
    metrics::Metrics,
    op::classify,
    pool::reputation::door_key,
    store::{AuditEntry, OpRecord, OpStatus, Timings},
    validate::{Head, HealthChange, SimError, Simulated},
};

/// An accepted op.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The op's ERC-4337 hash.
    pub user_op_hash: B256,
    /// The account's venue health before and after the op, on the pending state.
    pub health: Option<HealthChange>,
}

/// Gas the relayer asks each op to pay for beyond its calldata: ERC-4337's per-op overhead and a share of
/// the bundle transaction's fixed 21,000 (bundles are assumed to carry 4 ops or more).
const PER_OP_OVERHEAD: u64 = 18_300;
const FIXED_SHARE: u64 = 21_000 / 4;

/// Times an op is validated again when ops of other senders accepted meanwhile changed state it read,
/// before it is validated alone.
const OPTIMISTIC_TRIES: usize = 3;

/// The least preVerificationGas the relayer accepts for `op`.
pub fn min_pre_verification_gas(op: &PackedUserOperation) -> u64 {
    let encoded = op.abi_encode();
    let data_cost: u64 = encoded.iter().map(|b| if *b == 0 { 4 } else { 16 }).sum();
    data_cost + PER_OP_OVERHEAD + FIXED_SHARE + 4 * encoded.len().div_ceil(32) as u64
}

fn static_checks(door: &DoorConfig, op: &PackedUserOperation) -> Result<(), RpcError> {
    let (verification, call) = unpack(op.accountGasLimits);
    let (priority, max_fee) = unpack(op.gasFees);
    if verification > door.max_verification_gas as u128 {
        return Err(RpcError::invalid_fields(format!(
            "verificationGasLimit {verification} is over this relayer's maximum {}",
            door.max_verification_gas
        )));
    }
    if call > door.max_call_gas as u128 {
        return Err(RpcError::invalid_fields(format!(
            "callGasLimit {call} is over this relayer's maximum {}",
            door.max_call_gas
        )));
    }
    let min_pvg = min_pre_verification_gas(op);
    if op.preVerificationGas < U256::from(min_pvg) {
        return Err(RpcError::invalid_fields(format!(
            "preVerificationGas {} is below the {min_pvg} this op needs (calldata and per-op overhead)",
            op.preVerificationGas
        )));
    }
    if priority > max_fee {
        return Err(RpcError::invalid_fields(format!(
            "maxPriorityFeePerGas {priority} is above maxFeePerGas {max_fee}"
        )));
    }
    Ok(())
}

/// An EntryPoint refusal or a broken rule as an ERC-7769 error.
pub fn sim_error(e: SimError) -> RpcError {
    match e {
        SimError::Rules(v) => RpcError::new(
            code::OPCODE_VALIDATION,
            format!("validation broke ERC-7562 rules: {}", v.join("; ")),
        )
        .with_data(json!({ "violations": v })),
        SimError::FailedOp {
            reason,
            inner,
            validation,
        } => {
            let aa = reason.get(..4).unwrap_or_default().to_string();
            let code = match aa.as_str() {
                "AA22" | "AA32" => code::EXPIRES_SHORTLY,
                "AA24" => match validation {
                    Some(v) if v.aggregator != Address::ZERO && !v.signature_failed() => {
                        code::UNSUPPORTED_AGGREGATOR
                    }
                    _ => code::INVALID_SIGNATURE,
                },
                "AA34" => code::INVALID_SIGNATURE,
                "AA31" => code::PAYMASTER_DEPOSIT_TOO_LOW,
                a if a.starts_with("AA3") => code::SIMULATE_PAYMASTER_VALIDATION,
                _ => code::SIMULATE_VALIDATION,
            };
            match inner.filter(|d| !d.is_empty()) {
                Some(data) => {
                    let why = Refusal::decode(&data);
                    RpcError::new(code, format!("{reason}: {} — {}", why.detail, why.hint()))
                        .with_data(why.to_json())
                }
                None => RpcError::new(code, format!("{reason}{}", hint_for(&aa))),
            }
        }
        SimError::Reverted(data) => {
            let why = Refusal::decode(&data);
            RpcError::new(
                code::SIMULATE_VALIDATION,
                format!("handleOps reverted: {}", why.detail),
            )
            .with_data(why.to_json())
        }
        SimError::Halted(h) => RpcError::new(
            code::SIMULATE_VALIDATION,
            format!("handleOps halted ({h}): raise the op's gas limits"),
        ),
        SimError::Internal(e) => RpcError::internal(e),
    }
}

fn hint_for(aa: &str) -> &'static str {
    match aa {
        "AA10" => ": the sender already exists; drop factory and factoryData",
        "AA13" | "AA14" | "AA15" => ": the factory did not deploy the sender it was asked for",
        "AA20" => ": the sender has no code; add factory and factoryData to deploy it",
        "AA21" => {
            ": the account cannot pay the prefund; deposit to the EntryPoint or fund the account"
        }
        "AA22" => ": the op is outside its validity window",
        "AA24" => ": the signature does not match the op (wrong key, chain or EntryPoint?)",
        "AA25" => ": use the EntryPoint's getNonce(sender, key) for this lane",
        "AA26" => ": raise verificationGasLimit",
        _ => "",
    }
}

/// Checks on a clean simulation that the EntryPoint does not make; returns the op's validity end.
fn check_simulated(
    pending: &PendingState,
    door: &DoorConfig,
    op: &PackedUserOperation,
    s: &Simulated,
    estimating: bool,
) -> Result<u64, RpcError> {
    let now = pending.block().timestamp;
    let vd = s.validation;
    if vd.aggregator != Address::ZERO && !vd.signature_failed() {
        return Err(RpcError::new(
            code::UNSUPPORTED_AGGREGATOR,
            format!(
                "the account asks for signature aggregator {}; this relayer supports none",
                vd.aggregator
            ),
        ));
    }
    if vd.signature_failed() && !estimating {
        return Err(RpcError::new(
            code::INVALID_SIGNATURE,
            "AA24 signature error: the account's signature check failed",
        ));
    }
    let (mut valid_until, mut valid_after) = (vd.valid_until, vd.valid_after);
    if let Some(p) = s.paymaster_validation {
        if p.signature_failed() && !estimating {
            return Err(RpcError::new(
                code::INVALID_SIGNATURE,
                "AA34 signature error: the paymaster's signature check failed",
            ));
        }
        valid_until = valid_until.min(p.valid_until);
        valid_after = valid_after.max(p.valid_after);
    }
    let window = json!({ "validAfter": valid_after, "validUntil": valid_until });
    if valid_after > now {
        return Err(RpcError::new(
            code::EXPIRES_SHORTLY,
            format!("the op is not valid until {valid_after} (chain time {now}); send it then"),
        )
        .with_data(window));
    }
    if !estimating && valid_until < now + door.min_valid_for_secs {
        return Err(RpcError::new(
            code::EXPIRES_SHORTLY,
            format!(
                "the op expires at {valid_until} (chain time {now}); it must stay valid for at least {}s to be bundled",
                door.min_valid_for_secs
            ),
        )
        .with_data(window));
    }
    if !s.paymaster_context.is_empty() {
        let pm = Address::from_slice(&op.paymasterAndData[..20]);
        if !pending.is_staked(pm).map_err(sim_error)? {
            return Err(RpcError::new(
                code::INSUFFICIENT_STAKE,
                format!(
                    "paymaster {pm} returns a postOp context but is not staked (ERC-7562 needs a stake for that)"
                ),
            ));
        }
    }
    if !s.success && (door.reject_reverting_ops || estimating) {
        let why = Refusal::decode(s.revert.as_ref().map_or(&[][..], |b| &b[..]));
        return Err(RpcError::new(
            code::EXECUTION_REVERTED,
            format!(
                "the op's execution would revert: {} — {}",
                why.detail,
                why.hint()
            ),
        )
        .with_data(why.to_json()));
    }
    Ok(valid_until)
}

/// A session op over its key's per-op cost cap or remaining fee budget, refused before it is simulated with
/// the account's own reason (`feeLimit`): the key's session word is read from the pending state (so ops
/// already pooled have been charged) and checked as the account would.
fn fee_limits(pending: &PendingState, op: &PackedUserOperation) -> Result<(), RpcError> {
    let Some(key) = session_key_of(op.nonce) else {
        return Ok(());
    };
    if !AccountCalls::decode(&op.callData).is_ok_and(|c| c.session_key == Some(key)) {
        return Ok(());
    }
    let session = SessionWord::decode(
        pending
            .storage(op.sender, session_word_slot(key))
            .map_err(sim_error)?,
    );
    if !session.is_granted() {
        return Ok(());
    }
    session.check(op).map_err(|why| {
        RpcError::new(
            code::SIMULATE_VALIDATION,
            format!("AA23 reverted: {} — {}", why.detail, why.hint()),
        )
        .with_data(why.to_json())
    })
}

fn reputation_check(book: &Book, op: &PoolOp) -> Result<(), RpcError> {
    for (what, entity) in [("factory", op.factory()), ("paymaster", op.paymaster())] {
        let Some(e) = entity else { continue };
        let why = match book.reputation.status(e) {
            ReputationStatus::Ok => continue,
            ReputationStatus::Throttled
                if book.mempool.count_using(e) < THROTTLED_ENTITY_MEMPOOL_COUNT =>
            {
                continue;
            }
            ReputationStatus::Throttled => {
                format!(
                    "throttled by this relayer, and already has {THROTTLED_ENTITY_MEMPOOL_COUNT} ops pooled"
                )
            }
            ReputationStatus::Banned => "banned by this relayer".to_string(),
        };
        return Err(RpcError::new(
            code::REPUTATION,
            format!("{what} {e} is {why} (ERC-7562 reputation: too many of its ops failed)")
                .to_lowercase(),
        ));
    }
    Ok(())
}

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
    with_health: bool,
) -> Result<Option<Validated>, RpcError> {
    let (_, max_fee) = unpack(op.gasFees);
    let base_fee = pending.head().base_fee;
    if max_fee < base_fee {
        return Err(RpcError::invalid_fields(format!(
            "maxFeePerGas {max_fee} is below the current base fee {base_fee}; the bundle could not be mined"
        )));
    }
    fee_limits(pending, op)?;
    let (result, changes) = pending.simulate_tracked(op, false, with_health);
    let checked = result
        .map_err(sim_error)
        .and_then(|s| check_simulated(pending, door, op, &s, false).map(|until| (s, until)));
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
    /// Answer with the account's health before and after (`keyscope_sendUserOperation`).
    with_health: bool,
    rpc: RpcUserOperation,
    pool_op: PoolOp,
    received_us: u64,
}

impl Pool {
    /// `eth_sendUserOperation`: validates, pools and persists `op`; returns its hash once durable — and,
    /// `with_health`, the account's venue health before and after it (`keyscope_sendUserOperation`).
    pub async fn add(&self, op: Value, with_health: bool) -> Result<Accepted, RpcError> {
        Metrics::inc(&self.inner.metrics.received);
        let result = self.add_inner(op, with_health).await;
        match &result {
            Ok(_) => {
                Metrics::inc(&self.inner.metrics.accepted);
                self.inner.arrivals.notify_one();
            }
            Err(e) => self.inner.metrics.rejected(e.code),
        }
        result
    }

    async fn add_inner(&self, op: Value, with_health: bool) -> Result<Accepted, RpcError> {
        let rpc = RpcUserOperation::from_json(op)?;
        let packed = rpc.to_packed()?;
        let hash = user_op_hash(&packed, self.inner.sim.entry_point, self.inner.sim.chain_id)
            .map_err(|e| RpcError::invalid_fields(e.to_string()))?;
        static_checks(&self.inner.cfg.door, &packed)?;
        let candidate = Candidate {
            pool_op: PoolOp {
                hash,
                kind: classify(&packed.callData, self.inner.sim.venue),
                session_key: session_key_of(packed.nonce),
                valid_until: u64::MAX,
                order: 0,
                op: packed,
            },
            received_us: now_us(),
            with_health,
            rpc,
        };
        // An account's ops are validated one after another, in the order they arrive.
        let sender = self.sender_lock(candidate.pool_op.op.sender);
        let _in_order = sender.lock().await;
        let key = door_key(&candidate.pool_op.op);
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
        let mut result = self.admit(&candidate).await;
        // The pending state follows the head through the chain follower, not per op (a node round trip per
        // op is the price of nothing); a refusal, though, may come from a head the relayer has not seen
        // yet (an account deployed a moment ago): look once, catch up and decide again.
        if result.as_ref().is_err_and(|e| e.code != code::REPUTATION) && self.catch_up().await? {
            result = self.admit(&candidate).await;
        }
        if result.is_err() {
            self.book().limiter.refund(key);
        }
        let (record, persist) = result?;
        if let Err(e) = self.inner.store.write(persist.ops, persist.audit).await {
            // Not durable, so not accepted: take it out again and rebuild the pending state without it.
            {
                let mut book = self.book();
                book.mempool.remove(&hash);
                book.records.remove(&hash);
                self.update_size(&book);
            }
            self.rebuild(None).await;
            return Err(RpcError::internal(format!(
                "the op could not be stored: {e}"
            )));
        }
        Ok(Accepted {
            user_op_hash: hash,
            health: record.health,
        })
    }

    /// Moves the pending state to the node's head if the node has a block the relayer has not seen and no
    /// bundle of ours is in flight (those blocks the chain follower settles, keeping the pending state).
    /// True if it moved.
    async fn catch_up(&self) -> Result<bool, RpcError> {
        if !self.book().submitted.is_empty() {
            return Ok(false);
        }
        let latest = Head::latest(&self.inner.provider)
            .await
            .map_err(|e| RpcError::internal(format!("the node did not answer: {e}")))?;
        if latest.number <= self.head().number {
            return Ok(false);
        }
        self.on_head(latest, false).await;
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
                book.mempool.admit(&c.pool_op)?
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
            let old = book.mempool.admit(&c.pool_op)?;
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
        let pending = self.pending();
        tokio::task::spawn_blocking(move || {
            validate_and_commit(&pending, &pool.inner.cfg.door, &op, with_health)
        })
        .await
        .map_err(RpcError::internal)?
    }

    /// Rebuilds the pending state on its head while the caller holds the gate alone.
    async fn replay_now(&self) -> Persist {
        self.reset_pending(self.head());
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.replay_blocking())
            .await
            .unwrap_or_default()
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
        for e in [pool_op.factory(), pool_op.paymaster()]
            .into_iter()
            .flatten()
        {
            book.reputation.seen(e);
        }
        let record = OpRecord {
            hash,
            user_operation: c.rpc.clone(),
            kind: pool_op.kind,
            session_key: pool_op.session_key,
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
            persist.extend(book.transition(old.hash, "replaced", |r| {
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
            .push(AuditEntry::about(&record, "accepted", now_us()));
        (record, persist)
    }

    /// `eth_estimateUserOperationGas`: simulates `op` on the pending state (gas limits it leaves at zero are
    /// filled with the relayer's maxima, a stub signature's failure is tolerated) and returns limits with
    /// headroom.
    pub async fn estimate(&self, op: Value) -> Result<Value, RpcError> {
        let mut rpc = RpcUserOperation::from_json(op)?;
        let door = &self.inner.cfg.door;
        if rpc.verification_gas_limit.is_zero() {
            rpc.verification_gas_limit = U256::from(door.max_verification_gas);
        }
        if rpc.call_gas_limit.is_zero() {
            rpc.call_gas_limit = U256::from(door.max_call_gas);
        }
        if rpc.paymaster.is_some()
            && rpc
                .paymaster_verification_gas_limit
                .unwrap_or_default()
                .is_zero()
        {
            rpc.paymaster_verification_gas_limit = Some(U256::from(door.max_verification_gas));
        }
        let mut packed = rpc.to_packed()?;
        let pvg = min_pre_verification_gas(&packed) * 11 / 10;
        packed.preVerificationGas = U256::from(pvg);
        // Gas used does not depend on the fee, and an account that caps what an op may cost (a Keyscope
        // session key's fee limits) would refuse the relayer's maximal estimation limits at a real fee.
        packed.gasFees = Default::default();
        self.catch_up().await?;
        let _gate = self.inner.gate.read().await;
        let (pending, door) = (self.pending(), door.clone());
        tokio::task::spawn_blocking(move || {
            let (sim, _) = pending.simulate(&packed, true).map_err(sim_error)?;
            check_simulated(&pending, &door, &packed, &sim, true)?;
            let with_headroom = |g: u64, extra: u64| U256::from(g + g / 2 + extra);
            let mut v = json!({
                "preVerificationGas": U256::from(pvg),
                "verificationGasLimit": with_headroom(sim.validation_gas, 30_000),
                "callGasLimit": with_headroom(sim.execution_gas, 20_000),
            });
            if packed.paymasterAndData.len() >= 20 {
                v["paymasterVerificationGasLimit"] =
                    json!(with_headroom(sim.paymaster_gas, 20_000));
            }
            Ok(v)
        })
        .await
        .map_err(RpcError::internal)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_verification_gas_grows_with_calldata() {
        let small = PackedUserOperation::default();
        let big = PackedUserOperation {
            callData: vec![1u8; 1000].into(),
            ..Default::default()
        };
        let (a, b) = (
            min_pre_verification_gas(&small),
            min_pre_verification_gas(&big),
        );
        assert!(a > PER_OP_OVERHEAD + FIXED_SHARE);
        assert!(b >= a + 16_000, "{a} {b}");
        // Keyscope's SDK default (60,000) covers a plain session order.
        let order = PackedUserOperation {
            callData: vec![1u8; 260].into(),
            signature: vec![1u8; 104].into(),
            ..Default::default()
        };
        assert!(min_pre_verification_gas(&order) < 60_000);
    }

    #[test]
    fn aa_codes_map_to_erc7769_codes() {
        let f = |r: &str| {
            sim_error(SimError::FailedOp {
                reason: r.into(),
                inner: None,
                validation: None,
            })
            .code
        };
        assert_eq!(f("AA25 invalid account nonce"), code::SIMULATE_VALIDATION);
        assert_eq!(f("AA22 expired or not due"), code::EXPIRES_SHORTLY);
        assert_eq!(f("AA24 signature error"), code::INVALID_SIGNATURE);
        assert_eq!(f("AA33 reverted"), code::SIMULATE_PAYMASTER_VALIDATION);
        assert_eq!(
            f("AA31 paymaster deposit too low"),
            code::PAYMASTER_DEPOSIT_TOO_LOW
        );
        assert_eq!(
            sim_error(SimError::Rules(vec!["OP-011: x".into()])).code,
            code::OPCODE_VALIDATION
        );
        let msg = sim_error(SimError::FailedOp {
            reason: "AA21 didn't pay prefund".into(),
            inner: None,
            validation: None,
        })
        .message;
        assert!(msg.contains("deposit to the EntryPoint"), "{msg}");
    }

    #[test]
    fn static_checks_name_the_field() {
        let door = DoorConfig::default();
        let op = PackedUserOperation {
            accountGasLimits: keyscope_core::user_op::pack_u128s(
                door.max_verification_gas as u128 + 1,
                0,
            ),
            ..Default::default()
        };
        let e = static_checks(&door, &op).unwrap_err();
        assert_eq!(e.code, code::INVALID_FIELDS);
        assert!(e.message.contains("verificationGasLimit"), "{}", e.message);
        let op = PackedUserOperation {
            preVerificationGas: U256::from(1_000_000),
            gasFees: keyscope_core::user_op::pack_u128s(2, 1),
            ..Default::default()
        };
        assert!(
            static_checks(&door, &op)
                .unwrap_err()
                .message
                .contains("maxPriorityFeePerGas")
        );
    }
}
