//! The door's checks around the simulation: the op's fields and gas before it (no state read), what the
//! EntryPoint does not check after it (aggregators, validity window, staking for a postOp context,
//! reverting executions), a session key's fee limits, entity reputation — and how a refusal reads as an
//! ERC-7769 error.

use alloy::sol_types::SolValue;
use alloy_primitives::{Address, U256};
use keyscope_core::{
    fees::{SessionWord, session_word_slot},
    nonce::session_key_of,
    ops::AccountCalls,
    rpc_op::unpack,
    user_op::PackedUserOperation,
};
use serde_json::json;

use super::{
    Book, PoolOp, ReputationStatus, THROTTLED_ENTITY_MEMPOOL_COUNT, pending::PendingState,
};
use crate::{
    config::DoorConfig,
    error::{Refusal, RpcError, code},
    validate::{SimError, Simulated},
};

/// Gas the relayer asks each op to pay for beyond its calldata: ERC-4337's per-op overhead and a share of
/// the bundle transaction's fixed 21,000 (the door assumes bundles of 4 ops or more; an op that pays only
/// that waits for company, see the bundler's profit rule).
const PER_OP_OVERHEAD: u64 = 18_300;
const FIXED_SHARE: u64 = 21_000 / 4;
/// The preVerificationGas that pays for a bundle of `op` alone: what the estimate quotes.
pub fn lone_pre_verification_gas(op: &PackedUserOperation) -> u64 {
    min_pre_verification_gas(op) + 21_000 - FIXED_SHARE
}
/// The least preVerificationGas the relayer accepts for `op` before simulating it: its calldata at the
/// standard price (4 gas a token: 4 a zero byte, 16 any other) and the per-op overhead. Once the gas it
/// uses is known, [`calldata_floor_extra`] is added.
pub fn min_pre_verification_gas(op: &PackedUserOperation) -> u64 {
    let encoded = op.abi_encode();
    crate::calldata::STANDARD_TOKEN_GAS * crate::calldata::tokens(&encoded)
        + PER_OP_OVERHEAD
        + FIXED_SHARE
        + 4 * encoded.len().div_ceil(32) as u64
}

/// What EIP-7623's calldata floor (Prague on) asks of `op` beyond [`min_pre_verification_gas`]: a
/// transaction pays at least 10 gas a calldata token where the standard price is 4, and the gas its
/// execution burns counts toward that floor — so an op owes the other 6 a token less what its
/// validation and execution use (`gas_used`). Nothing for an op that burns more gas than its calldata's
/// floor; a bundle of ops that each pay this pays the bundle transaction's floor.
pub(super) fn calldata_floor_extra(op: &PackedUserOperation, gas_used: u64) -> u64 {
    ((crate::calldata::FLOOR_TOKEN_GAS - crate::calldata::STANDARD_TOKEN_GAS)
        * crate::calldata::tokens(&op.abi_encode()))
    .saturating_sub(gas_used)
}

/// The door's price check once `op` is simulated: its preVerificationGas pays for its calldata as the
/// chain charges it, EIP-7623's floor included.
pub(super) fn check_floor(op: &PackedUserOperation, s: &Simulated) -> Result<(), RpcError> {
    let needed = min_pre_verification_gas(op) + calldata_floor_extra(op, s.gas_used());
    if op.preVerificationGas < U256::from(needed) {
        return Err(RpcError::invalid_fields(format!(
            "preVerificationGas {} is below the {needed} this op needs (per-op overhead and its calldata \
             at EIP-7623's floor of 10 gas a token, less the gas it uses); eth_estimateUserOperationGas \
             quotes it",
            op.preVerificationGas
        )));
    }
    Ok(())
}

/// Refuses an op that carries an EIP-7702 authorization (`eip7702Auth`, whatever its form; `null` is none):
/// the relayer cannot yet put the authorization into the bundle transaction, and an op simulated without
/// it would be accepted for a delegation that never happens.
pub(super) fn refuse_eip7702(op: &serde_json::Value) -> Result<(), RpcError> {
    match op.get("eip7702Auth") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(_) => Err(RpcError::invalid_fields(
            "EIP-7702 authorizations are not supported by this relayer yet",
        )),
    }
}

pub(super) fn static_checks(door: &DoorConfig, op: &PackedUserOperation) -> Result<(), RpcError> {
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
pub(super) fn sim_error(e: SimError) -> RpcError {
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
            let aggregator =
                validation.is_some_and(|v| v.aggregator != Address::ZERO && !v.signature_failed());
            let code = code::of_entry_point_reason(&reason, aggregator);
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

/// Checks on a clean simulation that the EntryPoint does not make; returns the op's validity end. A
/// reverting execution is refused when estimating (there is nothing to estimate) and, with
/// `reject_reverting_ops`, for Keyscope accounts (`keyscope`): an order that would revert only costs its
/// trader gas. Any other account's reverting op is standard ERC-4337 and accepted.
pub(super) fn check_simulated(
    pending: &PendingState,
    door: &DoorConfig,
    op: &PackedUserOperation,
    s: &Simulated,
    estimating: bool,
    keyscope: bool,
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
        if !s.paymaster_staked {
            // EREP-050: a rule of the mempool, answered with the rules' code.
            return Err(RpcError::new(
                code::OPCODE_VALIDATION,
                format!(
                    "paymaster {pm} returns a postOp context but is not staked (ERC-7562 needs a stake for that)"
                ),
            ));
        }
    }
    if !s.success && ((door.reject_reverting_ops && keyscope) || estimating) {
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
pub(super) fn fee_limits(pending: &PendingState, op: &PackedUserOperation) -> Result<(), RpcError> {
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

pub(super) fn reputation_check(book: &Book, op: &PoolOp) -> Result<(), RpcError> {
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
    fn the_calldata_floor_counts_only_what_the_op_does_not_burn() {
        let big = PackedUserOperation {
            callData: vec![1u8; 40_000].into(),
            ..Default::default()
        };
        // 40,000 non-zero bytes: 160,000 tokens, 6 gas each beyond the standard price.
        let extra = calldata_floor_extra(&big, 0);
        assert!(extra >= 6 * 160_000, "{extra}");
        assert_eq!(calldata_floor_extra(&big, 100_000), extra - 100_000);
        // An op that burns more than its calldata's floor owes nothing more.
        let small = PackedUserOperation {
            callData: vec![1u8; 260].into(),
            ..Default::default()
        };
        assert_eq!(calldata_floor_extra(&small, 100_000), 0);
        assert_eq!(calldata_floor_extra(&big, u64::MAX), 0);
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
