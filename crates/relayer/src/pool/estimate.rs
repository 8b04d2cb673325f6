//! `eth_estimateUserOperationGas`: the op simulated on the pending state with room to spare, its gas
//! used returned with headroom.

use alloy_primitives::U256;
use keyscope_core::{
    rpc_op::RpcUserOperation,
    user_op::{PackedUserOperation, pack_u128s},
};
use serde_json::{Value, json};

use super::{
    Pool,
    checks::{
        calldata_floor_extra, check_simulated, lone_pre_verification_gas, refuse_eip7702, sim_error,
    },
};
use crate::{
    error::RpcError,
    validate::{SimError, unfunded::simulate_unfunded},
};

impl Pool {
    /// `eth_estimateUserOperationGas`: simulates `op` on the pending state (gas limits it leaves at zero are
    /// filled with the relayer's maxima, a stub signature's failure is tolerated) and returns limits with
    /// headroom.
    pub(crate) async fn estimate(&self, op: Value) -> Result<Value, RpcError> {
        refuse_eip7702(&op)?;
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
        // The price of a bundle of this op alone, so a client that follows the estimate is never held
        // waiting for other ops to share the bundle's fixed cost (EIP-7623's calldata floor is added once
        // the gas the op uses is known).
        packed.preVerificationGas = U256::from(lone_pre_verification_gas(&packed));
        // Gas used does not depend on the fee, and an account that caps what an op may cost (a Keyscope
        // session key's fee limits) would refuse the relayer's maximal estimation limits at a real fee.
        let asked_fees = packed.gasFees;
        packed.gasFees = Default::default();
        self.catch_up(self.head()).await?;
        let _gate = self.inner.gate.read().await;
        let (pending, door, sim_cfg) = (self.pending(), door.clone(), self.inner.sim.clone());
        tokio::task::spawn_blocking(move || {
            let (sim, _) = pending.simulate(&packed, true).map_err(sim_error)?;
            check_simulated(&pending, &door, &packed, &sim, true, false)?;
            let with_headroom = |g: u64, extra: u64| g + g / 2 + extra;
            let mut verification = with_headroom(sim.validation_gas, 30_000);
            let call = with_headroom(sim.execution_gas, 20_000);
            let paymaster = with_headroom(sim.paymaster_gas, 20_000);
            let pvg = (lone_pre_verification_gas(&packed)
                + calldata_floor_extra(&packed, sim.gas_used()))
                * 11
                / 10;
            // The EntryPoint charges its own work on the op (copying and hashing it: large calldata costs)
            // to the verification limit too, and at a real fee the account pays its prefund and charges
            // its fee budget in validation. Try the estimate at the op's fee (or the head's) as the op will
            // run at its dearest — its sender with no EntryPoint deposit, paying its whole prefund while
            // validating (the deposit it will find depends on earlier ops' refunds at the base fee they are
            // mined at, and on the fee it is signed at) — and raise it until the op validates. An account
            // that cannot pay its prefund from its balance relies on its deposit: it is tried on the state
            // as it is. Any other refusal (no funds to pay, say) is the sender's to fix.
            let mut priced = packed.clone();
            priced.preVerificationGas = U256::from(pvg);
            priced.gasFees = if asked_fees.is_zero() {
                let base_fee = pending.head().base_fee;
                pack_u128s(1, base_fee.saturating_mul(2).saturating_add(1))
            } else {
                asked_fees
            };
            let mut unfunded = packed.paymasterAndData.is_empty();
            for _ in 0..8 {
                let trial = with_limits(&priced, verification, call, paymaster);
                let result = if unfunded {
                    simulate_unfunded(pending.layers().db(), &sim_cfg, pending.block(), &trial)
                } else {
                    pending.simulate(&trial, true).map(|(s, _)| s)
                };
                match result {
                    Err(SimError::FailedOp { reason, .. }) if reason.starts_with("AA26") => {
                        verification = verification.saturating_mul(3) / 2;
                    }
                    Err(_) if unfunded => unfunded = false,
                    _ => break,
                }
            }
            let mut v = json!({
                "preVerificationGas": U256::from(pvg),
                "verificationGasLimit": U256::from(verification),
                "callGasLimit": U256::from(call),
            });
            if packed.paymasterAndData.len() >= 20 {
                v["paymasterVerificationGasLimit"] = json!(U256::from(paymaster));
            }
            Ok(v)
        })
        .await
        .map_err(RpcError::internal)?
    }
}

/// `op` with the given verification, call and paymaster verification gas limits.
fn with_limits(
    op: &PackedUserOperation,
    verification: u64,
    call: u64,
    paymaster: u64,
) -> PackedUserOperation {
    let mut op = op.clone();
    op.accountGasLimits = pack_u128s(verification as u128, call as u128);
    if op.paymasterAndData.len() >= 52 {
        let mut pm = op.paymasterAndData.to_vec();
        pm[20..36].copy_from_slice(&(paymaster as u128).to_be_bytes());
        op.paymasterAndData = pm.into();
    }
    op
}
