//! ERC-7769's `eth_*` methods.

use alloy_primitives::{Address, B256};
use jsonrpsee::{RpcModule, core::RegisterMethodError, types::Params};
use serde_json::{Value, json};

use super::{RpcContext, RpcResult, err, receipt::receipt};
use crate::{error::RpcError, store::OpStatus};

/// Registers `eth_chainId`, `eth_supportedEntryPoints`, `eth_sendUserOperation`,
/// `eth_estimateUserOperationGas`, `eth_getUserOperationByHash` and `eth_getUserOperationReceipt` (the
/// last two answer an op the relayer dropped with an error naming why, not `null`).
pub(super) fn register(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterMethodError> {
    m.register_method("eth_chainId", |_, ctx, _| -> RpcResult<String> {
        Ok(format!("{:#x}", ctx.service.identity.chain_id))
    })?;
    m.register_method(
        "eth_supportedEntryPoints",
        |_, ctx, _| -> RpcResult<Vec<Address>> { Ok(vec![ctx.service.identity.entry_point]) },
    )?;
    m.register_async_method("eth_sendUserOperation", |params, ctx, ext| async move {
        let (op, ep): (Value, Address) = params.parse()?;
        ctx.check_entry_point(ep)?;
        ctx.send(op, ep, false, super::client_of(&ext))
            .await
            .map_err(err)
    })?;
    m.register_async_method(
        "eth_estimateUserOperationGas",
        |params: Params<'static>, ctx, _| async move {
            let mut seq = params.sequence();
            let op: Value = seq.next()?;
            let ep: Address = seq.next()?;
            let overrides: Option<Value> = seq.optional_next()?;
            ctx.check_entry_point(ep)?;
            if overrides
                .as_ref()
                .is_some_and(|o| !o.is_null() && o.as_object().is_none_or(|o| !o.is_empty()))
            {
                return Err(err(RpcError::invalid_fields(
                    "state overrides are not supported by this relayer",
                )));
            }
            ctx.service.pool.estimate(op).await.map_err(err)
        },
    )?;
    m.register_async_method("eth_getUserOperationByHash", |params, ctx, _| async move {
        let hash = user_op_hash_param(&params)?;
        let Some(r) = ctx.service.pool.record(hash).await else {
            return RpcResult::Ok(None);
        };
        if r.status == OpStatus::Dropped {
            return Err(err(RpcError::dropped(hash, r.reason.as_deref())));
        }
        Ok(Some(json!({
            "userOperation": r.user_operation,
            "entryPoint": ctx.service.identity.entry_point.to_checksum(None),
            "blockNumber": r.block_number.map(|n| format!("{n:#x}")),
            "blockHash": r.block_hash,
            "transactionHash": r.tx_hash.filter(|_| r.status == OpStatus::Included),
        })))
    })?;
    m.register_async_method("eth_getUserOperationReceipt", |params, ctx, _| async move {
        let hash = user_op_hash_param(&params)?;
        receipt(&ctx.service, hash).await.map_err(err)
    })?;
    Ok(())
}

/// The one parameter of the by-hash methods: a 32-byte hex hash, or the error ERC-7769 clients expect.
fn user_op_hash_param(params: &Params<'_>) -> RpcResult<B256> {
    let bad = || err(RpcError::invalid_fields("Missing/invalid userOpHash"));
    let (value,): (Value,) = params.parse().map_err(|_| bad())?;
    let text = value.as_str().ok_or_else(bad)?;
    match text.strip_prefix("0x") {
        Some(hex) if hex.len() == 64 => text.parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}
