//! `eth_estimateUserOperationGas`: the op simulated on the pending state with room to spare, its gas
//! used returned with headroom.

use alloy_primitives::U256;
use keyscope_core::rpc_op::RpcUserOperation;
use serde_json::{Value, json};

use super::{
    Pool,
    checks::{check_simulated, min_pre_verification_gas, sim_error},
};
use crate::error::RpcError;

impl Pool {
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
