//! The door: what happens between `eth_sendUserOperation` arriving and its hash going back. Cheap
//! checks first (fields, gas, fees, the key's token bucket, reputation, pool limits), then the op is
//! simulated on the pending state, and only an op that is durably stored is answered with its hash.

use std::time::Instant;

use alloy::{providers::Provider, sol_types::SolValue};
use alloy_primitives::{Address, B256, U256};
use keyscope_core::fees::{SessionWord, session_word_slot};
use keyscope_core::ops::AccountCalls;
use keyscope_core::user_op::{PackedUserOperation, user_op_hash};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    error::{Refusal, RpcError, code},
    metrics::Metrics,
    op::{RpcUserOperation, classify, session_key_of, unpack},
    pool::{PoolOp, ReputationStatus, THROTTLED_ENTITY_MEMPOOL_COUNT, door_key},
    state::{Inner, Persist, Shared, SharedState, now_us},
    store::{AuditEntry, OpRecord, OpStatus, Timings},
    validate::{HealthChange, SimError, Simulated},
};

/// An accepted op.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub user_op_hash: B256,
    /// The account's venue health before and after the op, on the pending state.
    pub health: Option<HealthChange>,
}

/// Gas the relayer asks each op to pay for beyond its calldata: ERC-4337's per-op overhead and a
/// share of the bundle transaction's fixed 21,000 (bundles are assumed to carry 4 ops or more).
const PER_OP_OVERHEAD: u64 = 18_300;
const FIXED_SHARE: u64 = 21_000 / 4;

/// The least preVerificationGas the relayer accepts for `op`.
pub fn min_pre_verification_gas(op: &PackedUserOperation) -> u64 {
    let encoded = op.abi_encode();
    let data_cost: u64 = encoded.iter().map(|b| if *b == 0 { 4 } else { 16 }).sum();
    data_cost + PER_OP_OVERHEAD + FIXED_SHARE + 4 * encoded.len().div_ceil(32) as u64
}

fn check_entry_point(shared: &Shared, entry_point: Address) -> Result<(), RpcError> {
    if entry_point != shared.entry_point {
        return Err(RpcError::invalid_fields(format!(
            "unsupported entry point {entry_point}; this relayer serves {} (v0.8)",
            shared.entry_point
        )));
    }
    Ok(())
}

fn static_checks(shared: &Shared, op: &PackedUserOperation) -> Result<(), RpcError> {
    let door = &shared.config.door;
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
    if op.signature.is_empty() {
        return Err(RpcError::invalid_fields("the op has no signature"));
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

/// Checks on a clean simulation that the EntryPoint does not make.
fn check_simulated(
    inner: &mut Inner,
    shared: &Shared,
    op: &PackedUserOperation,
    s: &Simulated,
    estimating: bool,
) -> Result<u64, RpcError> {
    let now = inner.sim.block_time();
    let door = &shared.config.door;
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
    let mut valid_until = vd.valid_until;
    let mut valid_after = vd.valid_after;
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
    if valid_after > now {
        return Err(RpcError::new(
            code::EXPIRES_SHORTLY,
            format!("the op is not valid until {valid_after} (chain time {now}); send it then"),
        )
        .with_data(json!({ "validAfter": valid_after, "validUntil": valid_until })));
    }
    if !estimating && valid_until < now + door.min_valid_for_secs {
        return Err(RpcError::new(
            code::EXPIRES_SHORTLY,
            format!(
                "the op expires at {valid_until} (chain time {now}); it must stay valid for at least {}s to be bundled",
                door.min_valid_for_secs
            ),
        )
        .with_data(json!({ "validAfter": valid_after, "validUntil": valid_until })));
    }
    if !s.paymaster_context.is_empty() {
        let pm = Address::from_slice(&op.paymasterAndData[..20]);
        if !inner.sim.is_staked(pm).map_err(sim_error)? {
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

/// `eth_sendUserOperation`: validates, pools and persists `op`; returns its hash once durable.
pub async fn send(
    shared: &SharedState,
    op: Value,
    entry_point: Address,
) -> Result<Accepted, RpcError> {
    Metrics::inc(&shared.metrics.received);
    let result = send_inner(shared, op, entry_point).await;
    if let Err(e) = &result {
        shared.metrics.rejected(e.code);
    }
    result
}

async fn send_inner(
    shared: &SharedState,
    op: Value,
    entry_point: Address,
) -> Result<Accepted, RpcError> {
    check_entry_point(shared, entry_point)?;
    let rpc_op = RpcUserOperation::from_json(op)?;
    let packed = rpc_op.to_packed()?;
    let hash = user_op_hash(&packed, shared.entry_point, shared.chain_id)
        .map_err(|e| RpcError::invalid_fields(e.to_string()))?;
    let received_us = now_us();
    let started = Instant::now();
    // The one slot a new nonce lane touches first, read before taking the lock so that validation
    // (serialised on the pending state) does not wait on the node for it.
    let block = shared
        .head_number
        .load(std::sync::atomic::Ordering::Relaxed);
    let slot = crate::op::nonce_slot(packed.sender, crate::op::nonce_parts(packed.nonce).0);
    let prefetched = shared
        .provider
        .get_storage_at(shared.entry_point, slot)
        .block_id(block.into())
        .await
        .ok()
        .map(|value| (block, slot, value));
    let s = shared.clone();
    let (record, persist) = tokio::task::spawn_blocking(move || {
        admit(&s, hash, rpc_op, packed, received_us, prefetched)
    })
    .await
    .map_err(RpcError::internal)??;
    shared
        .metrics
        .observe("validate", started.elapsed().as_micros() as u64);
    if let Err(e) = shared.store.write(persist.ops, persist.audit).await {
        // Not durable, so not accepted: take it out again and rebuild the pending state without it.
        {
            let mut inner = shared.lock().await;
            inner.pool.remove(&hash);
            inner.records.remove(&hash);
        }
        shared.rebuild(None).await;
        return Err(RpcError::internal(format!(
            "the op could not be stored: {e}"
        )));
    }
    Metrics::inc(&shared.metrics.accepted);
    shared.wake.notify_one();
    Ok(Accepted {
        user_op_hash: hash,
        health: record.health,
    })
}

/// Moves the pending state to the node's head if the node has a block the relayer has not seen and
/// that is not its own bundle's (those the bundler settles, keeping the pending state: replaying the
/// whole pool for our own block would make every op pay for the pool's size).
fn catch_up(shared: &Shared, inner: &mut Inner, latest: u64) -> Result<Option<Persist>, RpcError> {
    if latest <= inner.sim.head().number.max(inner.settled_through) || inner.in_flight.is_some() {
        return Ok(None);
    }
    let head = tokio::runtime::Handle::current()
        .block_on(crate::builder::head_of(&shared.provider))
        .map_err(|e| RpcError::internal(format!("the node did not answer: {e}")))?;
    Ok(Some(inner.rebuild(head, &shared.config, &shared.metrics)))
}

fn admit(
    shared: &Shared,
    hash: B256,
    rpc_op: RpcUserOperation,
    packed: PackedUserOperation,
    received_us: u64,
    prefetched: Option<(u64, U256, U256)>,
) -> Result<(OpRecord, Persist), RpcError> {
    let mut guard = shared.lock_blocking();
    let inner = &mut *guard;
    if let Some((block, slot, value)) = prefetched {
        inner.sim.prefill(block, shared.entry_point, slot, value);
    }
    static_checks(shared, &packed)?;
    if inner.records.contains_key(&hash) {
        return Err(RpcError::invalid_fields(format!(
            "op {hash} is already known to this relayer"
        )));
    }
    let key = door_key(&packed);
    if let Err(wait) = inner.limiter.take(key, Instant::now()) {
        return Err(RpcError::new(
            code::REPUTATION,
            format!(
                "{key} is sending faster than {}/s (burst {}); retry in {} ms",
                shared.config.door.ops_per_second_per_key,
                shared.config.door.burst_per_key,
                wait.as_millis().max(1)
            ),
        ));
    }
    let mut result = admit_limited(
        shared,
        inner,
        hash,
        rpc_op.clone(),
        packed.clone(),
        received_us,
    );
    // The pending state follows the head through the bundler, not per op (a node round trip per op
    // is the price of nothing); a refusal, though, may come from a head the relayer has not seen yet
    // (an account deployed a moment ago): look once, catch up and decide again.
    let mut caught_up = Persist::default();
    if result.as_ref().is_err_and(|e| e.code != code::REPUTATION) {
        let latest = tokio::runtime::Handle::current()
            .block_on(shared.provider.get_block_number().into_future())
            .map_err(|e| RpcError::internal(format!("the node did not answer: {e}")))?;
        if let Some(p) = catch_up(shared, inner, latest)? {
            caught_up = p;
            result = admit_limited(shared, inner, hash, rpc_op, packed, received_us);
        }
    }
    if result.is_err() {
        inner.limiter.refund(key);
    }
    // Drops found while catching up are persisted with the op (or lost with a refused one: the
    // next rebuild finds them again).
    result.map(|(record, mut persist)| {
        persist.ops.splice(0..0, caught_up.ops);
        persist.audit.splice(0..0, caught_up.audit);
        (record, persist)
    })
}

/// A session op over its key's per-op cost cap or remaining fee budget, refused before it is simulated
/// with the account's own reason (`feeLimit`): the key's session word is read from the pending state (so
/// ops already pooled have been charged) and checked as the account would.
fn fee_limits(inner: &mut Inner, op: &PackedUserOperation) -> Result<(), RpcError> {
    let Some(key) = session_key_of(op.nonce) else {
        return Ok(());
    };
    let names_key = AccountCalls::decode(&op.callData).is_ok_and(|c| c.session_key == Some(key));
    if !names_key {
        return Ok(());
    }
    let word = inner
        .sim
        .storage(op.sender, session_word_slot(key))
        .map_err(sim_error)?;
    let session = SessionWord::decode(word);
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

fn admit_limited(
    shared: &Shared,
    inner: &mut Inner,
    hash: B256,
    rpc_op: RpcUserOperation,
    packed: PackedUserOperation,
    received_us: u64,
) -> Result<(OpRecord, Persist), RpcError> {
    // Against the pending state's head, so a stale head is caught up and checked again.
    let (_, max_fee) = unpack(packed.gasFees);
    let base_fee = inner.sim.head().base_fee;
    if max_fee < base_fee {
        return Err(RpcError::invalid_fields(format!(
            "maxFeePerGas {max_fee} is below the current base fee {base_fee}; the bundle could not be mined"
        )));
    }
    fee_limits(inner, &packed)?;
    let candidate = PoolOp {
        hash,
        kind: classify(&packed.callData, shared.venue),
        session_key: session_key_of(packed.nonce),
        received_ms: received_us / 1000,
        valid_until: u64::MAX,
        order: 0,
        op: packed.clone(),
    };
    for (what, entity) in [
        ("factory", candidate.factory()),
        ("paymaster", candidate.paymaster()),
    ] {
        if let Some(e) = entity {
            let refusal = match inner.reputation.status(e) {
                ReputationStatus::Ok => None,
                ReputationStatus::Throttled
                    if inner.pool.count_using(e) < THROTTLED_ENTITY_MEMPOOL_COUNT =>
                {
                    None
                }
                ReputationStatus::Throttled => Some(format!(
                    "throttled by this relayer, and already has {THROTTLED_ENTITY_MEMPOOL_COUNT} ops pooled"
                )),
                ReputationStatus::Banned => Some("banned by this relayer".to_string()),
            };
            if let Some(why) = refusal {
                return Err(RpcError::new(
                    code::REPUTATION,
                    format!(
                        "{what} {e} is {why} (ERC-7562 reputation: too many of its ops failed)"
                    )
                    .to_lowercase(),
                ));
            }
        }
    }
    let replaced = inner.pool.admit(&candidate)?;
    let mut persist = Persist::default();
    let old = match replaced {
        Some(old_hash) => {
            let old = inner
                .pool
                .remove(&old_hash)
                .expect("admit named a pooled op");
            let head = inner.sim.head();
            persist.extend(inner.rebuild(head, &shared.config, &shared.metrics));
            Some(old)
        }
        None => None,
    };
    let outcome = inner
        .sim
        .simulate(&packed, false)
        .map_err(sim_error)
        .and_then(|(s, changes)| {
            let valid_until = check_simulated(inner, shared, &packed, &s, false)?;
            Ok((s, changes, valid_until))
        });
    let (simulated, changes, valid_until) = match outcome {
        Ok(v) => v,
        Err(e) => {
            if let Some(old) = old {
                inner.pool.insert(old);
                let head = inner.sim.head();
                persist.extend(inner.rebuild(head, &shared.config, &shared.metrics));
            }
            return Err(e);
        }
    };
    inner.sim.commit(changes);
    let health = match (simulated.health_before, inner.sim.health(packed.sender)) {
        (Some(before), Some(after)) => Some(HealthChange { before, after }),
        _ => None,
    };
    let order = match &old {
        Some(o) => o.order,
        None => inner.pool.take_order(),
    };
    let pool_op = PoolOp {
        valid_until,
        order,
        ..candidate
    };
    for e in [pool_op.factory(), pool_op.paymaster()]
        .into_iter()
        .flatten()
    {
        inner.reputation.seen(e);
    }
    let record = OpRecord {
        hash,
        user_operation: rpc_op,
        kind: pool_op.kind,
        session_key: pool_op.session_key,
        status: OpStatus::Pending,
        order,
        valid_until,
        timings: Timings {
            received_us,
            validated_us: Some(now_us()),
            ..Default::default()
        },
        tx_hash: None,
        replaced_txs: Vec::new(),
        block_number: None,
        block_hash: None,
        success: None,
        reason: None,
        health,
    };
    inner.pool.insert(pool_op);
    inner.records.insert(hash, record.clone());
    shared.metrics.pool_size.store(
        inner.pool.len() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Some(old) = old {
        Metrics::inc(&shared.metrics.dropped);
        persist.extend(inner.transition(old.hash, "replaced", |r| {
            r.status = OpStatus::Dropped;
            r.reason = Some(format!("replaced by {hash}"));
        }));
    }
    persist.ops.push(record.clone());
    persist
        .audit
        .push(AuditEntry::about(&record, "accepted", now_us()));
    Ok((record, persist))
}

/// `eth_estimateUserOperationGas`: simulates `op` (gas limits it leaves at zero are filled with the
/// relayer's maxima, a stub signature's failure is tolerated) and returns limits with headroom.
pub async fn estimate(
    shared: &SharedState,
    op: Value,
    entry_point: Address,
) -> Result<Value, RpcError> {
    check_entry_point(shared, entry_point)?;
    let mut rpc_op = RpcUserOperation::from_json(op)?;
    let door = &shared.config.door;
    if rpc_op.verification_gas_limit.is_zero() {
        rpc_op.verification_gas_limit = U256::from(door.max_verification_gas);
    }
    if rpc_op.call_gas_limit.is_zero() {
        rpc_op.call_gas_limit = U256::from(door.max_call_gas);
    }
    if rpc_op.paymaster.is_some()
        && rpc_op
            .paymaster_verification_gas_limit
            .unwrap_or_default()
            .is_zero()
    {
        rpc_op.paymaster_verification_gas_limit = Some(U256::from(door.max_verification_gas));
    }
    let mut packed = rpc_op.to_packed()?;
    let pvg = min_pre_verification_gas(&packed) * 11 / 10;
    packed.preVerificationGas = U256::from(pvg);
    // Gas used does not depend on the fee, and an account that caps what an op may cost (a Keyscope
    // session key's fee limits) would refuse the relayer's maximal estimation limits at a real fee.
    packed.gasFees = Default::default();
    let latest = shared
        .provider
        .get_block_number()
        .await
        .map_err(|e| RpcError::internal(format!("the node did not answer: {e}")))?;
    let s = shared.clone();
    let (caught_up, result) = tokio::task::spawn_blocking(move || {
        let mut inner = s.lock_blocking();
        let caught_up = match catch_up(&s, &mut inner, latest) {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => return (Persist::default(), Err(e)),
        };
        let estimate = (|| {
            let (sim, _) = inner.sim.simulate(&packed, true).map_err(sim_error)?;
            check_simulated(&mut inner, &s, &packed, &sim, true)?;
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
        })();
        (caught_up, estimate)
    })
    .await
    .map_err(RpcError::internal)?;
    // Ops the catch-up dropped are recorded like any other drop.
    shared.persist(caught_up).await;
    result
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
}
