//! The `debug_bundler_*` methods the bundler spec tests drive (tests and devnets only).

use alloy::{providers::Provider, sol_types::SolCall};
use alloy_primitives::{Address, U256};
use jsonrpsee::{RpcModule, core::RegisterMethodError, types::ErrorObjectOwned};
use keyscope_core::{bindings::IEntryPoint, rpc_op::RpcUserOperation};
use serde_json::{Value, json};

use super::{RpcContext, RpcResult, err};
use crate::{config::BundlingMode, error::RpcError, pool::ReputationEntry};

/// Registers the `debug_bundler_*` methods: one registration per method, so it runs past 100 lines.
pub(super) fn register(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterMethodError> {
    m.register_async_method("debug_bundler_clearMempool", |_, ctx, ext| async move {
        ctx.access.admin(&ext, "debug_bundler_clearMempool")?;
        ctx.service.pool.clear().await;
        Ok::<_, ErrorObjectOwned>("ok")
    })?;
    m.register_async_method("debug_bundler_clearState", |_, ctx, ext| async move {
        ctx.access.admin(&ext, "debug_bundler_clearState")?;
        ctx.service.pool.clear().await;
        ctx.service.pool.clear_reputation();
        Ok::<_, ErrorObjectOwned>("ok")
    })?;
    m.register_method(
        "debug_bundler_dumpMempool",
        |params, ctx, ext| -> RpcResult<Vec<RpcUserOperation>> {
            ctx.access.admin(ext, "debug_bundler_dumpMempool")?;
            if let Some(ep) = params.sequence().optional_next::<Address>()? {
                ctx.check_entry_point(ep)?;
            }
            Ok(ctx.service.pool.dump())
        },
    )?;
    m.register_async_method("debug_bundler_sendBundleNow", |_, ctx, ext| async move {
        ctx.access.admin(&ext, "debug_bundler_sendBundleNow")?;
        ctx.service
            .bundle_now()
            .await
            .map(|tx| tx.map(|h| h.to_string()).unwrap_or_else(|| "ok".into()))
            .map_err(|e| err(RpcError::internal(e)))
    })?;
    m.register_method(
        "debug_bundler_setBundlingMode",
        |params, ctx, ext| -> RpcResult<&'static str> {
            ctx.access.admin(ext, "debug_bundler_setBundlingMode")?;
            let (mode,): (String,) = params.parse()?;
            let mode = match mode.as_str() {
                "auto" => BundlingMode::Auto,
                "manual" => BundlingMode::Manual,
                other => {
                    return Err(err(RpcError::invalid_fields(format!(
                        "bundling mode {other:?} is neither \"auto\" nor \"manual\""
                    ))));
                }
            };
            ctx.service.pool.set_mode(mode);
            ctx.service.pool.arrivals().notify_one();
            Ok("ok")
        },
    )?;
    m.register_method(
        "debug_bundler_setReputation",
        |params, ctx, ext| -> RpcResult<&'static str> {
            ctx.access.admin(ext, "debug_bundler_setReputation")?;
            let mut seq = params.sequence();
            let entries: Vec<Value> = seq.next()?;
            if let Some(ep) = seq.optional_next::<Address>()? {
                ctx.check_entry_point(ep)?;
            }
            let parsed = entries
                .iter()
                .map(reputation_entry)
                .collect::<RpcResult<Vec<_>>>()?;
            ctx.service.pool.set_reputation(parsed);
            Ok("ok")
        },
    )?;
    m.register_method(
        "debug_bundler_dumpReputation",
        |params, ctx, ext| -> RpcResult<Value> {
            ctx.access.admin(ext, "debug_bundler_dumpReputation")?;
            if let Some(ep) = params.sequence().optional_next::<Address>()? {
                ctx.check_entry_point(ep)?;
            }
            Ok(json!(
                ctx.service
                    .pool
                    .reputation_dump()
                    .into_iter()
                    .map(|(a, e, s)| json!({
                        "address": a,
                        "opsSeen": format!("{:#x}", e.ops_seen),
                        "opsIncluded": format!("{:#x}", e.ops_included),
                        // The reference bundler's numbering (ok, throttled, banned), hex like the counters.
                        "status": format!("{:#x}", s as u8),
                    }))
                    .collect::<Vec<_>>()
            ))
        },
    )?;
    m.register_method(
        "debug_bundler_clearReputation",
        |_, ctx, ext| -> RpcResult<&'static str> {
            ctx.access.admin(ext, "debug_bundler_clearReputation")?;
            ctx.service.pool.clear_reputation();
            Ok("ok")
        },
    )?;
    m.register_async_method(
        "debug_bundler_getStakeStatus",
        |params, ctx, ext| async move {
            ctx.access.admin(&ext, "debug_bundler_getStakeStatus")?;
            let (address, ep): (Address, Address) = params.parse()?;
            ctx.check_entry_point(ep)?;
            let data = IEntryPoint::getDepositInfoCall { account: address }.abi_encode();
            let req = alloy::rpc::types::TransactionRequest::default()
                .to(ctx.service.identity.entry_point)
                .input(data.into());
            let out = ctx
                .service
                .provider
                .call(req)
                .await
                .map_err(|e| err(RpcError::internal(e)))?;
            let info = IEntryPoint::getDepositInfoCall::abi_decode_returns(&out)
                .map_err(|e| err(RpcError::internal(e)))?;
            let (min_stake, min_delay) = ctx.min_stake;
            let is_staked = info.staked
                && U256::from(info.stake) >= min_stake
                && info.unstakeDelaySec >= min_delay;
            Ok::<_, ErrorObjectOwned>(json!({
                "stakeInfo": {
                    "addr": address,
                    "stake": info.stake.to::<u128>(),
                    "unstakeDelaySec": info.unstakeDelaySec,
                },
                "isStaked": is_staked,
            }))
        },
    )?;
    Ok(())
}

/// One entry of `debug_bundler_setReputation`: an address and its counters (numbers or hex strings).
fn reputation_entry(e: &Value) -> RpcResult<(Address, ReputationEntry)> {
    let address: Address = serde_json::from_value(e["address"].clone()).map_err(|x| {
        err(RpcError::invalid_fields(format!(
            "reputation entry needs an address: {x}"
        )))
    })?;
    let num = |k: &str| -> RpcResult<u64> {
        let bad = || {
            err(RpcError::invalid_fields(format!(
                "{k} must be a whole number"
            )))
        };
        match &e[k] {
            Value::Number(n) => n.as_u64().ok_or_else(bad),
            Value::String(s) => match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).map_err(|_| bad()),
                None => s.parse().map_err(|_| bad()),
            },
            Value::Null => Ok(0),
            _ => Err(bad()),
        }
    };
    Ok((
        address,
        ReputationEntry {
            ops_seen: num("opsSeen")?,
            ops_included: num("opsIncluded")?,
        },
    ))
}
