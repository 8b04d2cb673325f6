//! `pimlico_getUserOperationGasPrice`: the fee source permissionless's smart account client and other
//! common clients call before they sign, answered from this relayer's view of the chain.

use alloy::providers::Provider;
use jsonrpsee::{RpcModule, core::RegisterMethodError};
use serde_json::{Value, json};

use super::{RpcContext, err};
use crate::error::RpcError;

/// Each tier's tip as a multiple of the node's suggested tip, in percent.
const TIERS: [(&str, u128); 3] = [("slow", 100), ("standard", 125), ("fast", 150)];

/// Registers `pimlico_getUserOperationGasPrice`.
pub(super) fn register(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterMethodError> {
    m.register_async_method("pimlico_getUserOperationGasPrice", |_, ctx, _| async move {
        let base_fee = ctx.service.pool.head().base_fee;
        let tip = ctx
            .service
            .provider
            .get_max_priority_fee_per_gas()
            .await
            .map_err(|e| {
                err(RpcError::internal(format!(
                    "the node's fee suggestion: {e}"
                )))
            })?;
        Ok::<_, jsonrpsee::types::ErrorObjectOwned>(tiers(base_fee, tip))
    })?;
    Ok(())
}

/// slow / standard / fast: a rising tip over the node's suggestion, and a fee cap of twice the base fee
/// plus the tip, so an op signed now stays minable through several full blocks of base-fee rises.
fn tiers(base_fee: u128, suggested_tip: u128) -> Value {
    TIERS
        .iter()
        .map(|(name, percent)| {
            let tip = suggested_tip.saturating_mul(*percent) / 100;
            let max_fee = base_fee.saturating_mul(2).saturating_add(tip);
            (
                name.to_string(),
                json!({
                    "maxFeePerGas": format!("{max_fee:#x}"),
                    "maxPriorityFeePerGas": format!("{tip:#x}"),
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::tiers;

    #[test]
    fn tiers_rise_and_cover_the_base_fee() {
        let t = tiers(1_000, 100);
        let get = |tier: &str, field: &str| {
            u128::from_str_radix(
                t[tier][field].as_str().unwrap().trim_start_matches("0x"),
                16,
            )
            .unwrap()
        };
        assert_eq!(get("slow", "maxPriorityFeePerGas"), 100);
        assert_eq!(get("standard", "maxPriorityFeePerGas"), 125);
        assert_eq!(get("fast", "maxPriorityFeePerGas"), 150);
        assert_eq!(get("slow", "maxFeePerGas"), 2_100);
        assert_eq!(get("fast", "maxFeePerGas"), 2_150);
    }
}
