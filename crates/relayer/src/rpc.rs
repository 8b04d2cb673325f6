//! The JSON-RPC face: ERC-7769's `eth_*` methods so any ERC-4337 client works unchanged, the
//! `debug_bundler_*` methods the bundler spec tests drive (only when the config enables them), and
//! Keyscope's own: the send that returns the account's health, an op's lifecycle status, the audit
//! log, the relayer's status, and the account event subscription (WebSocket).

use alloy::{
    providers::Provider,
    sol_types::{SolCall, SolEvent},
};
use alloy_primitives::{Address, B256, U256};
use jsonrpsee::{
    RpcModule,
    types::{ErrorObjectOwned, Params},
};
use keyscope_core::bindings::IEntryPoint;
use serde_json::{Value, json};

use alloy::network::EthereumWallet;

use crate::{
    admission, builder,
    config::BundlingMode,
    error::RpcError,
    op::RpcUserOperation,
    pool::ReputationEntry,
    state::{Persist, SharedState},
    store::OpStatus,
};

/// What every method gets.
#[derive(Debug, Clone)]
pub struct RpcContext {
    pub shared: SharedState,
    pub wallet: EthereumWallet,
}

type RpcResult<T> = Result<T, ErrorObjectOwned>;

fn err(e: RpcError) -> ErrorObjectOwned {
    e.into()
}

fn check_entry_point(ctx: &RpcContext, ep: Address) -> RpcResult<()> {
    if ep != ctx.shared.entry_point {
        return Err(err(RpcError::invalid_fields(format!(
            "unsupported entry point {ep}; this relayer serves {}",
            ctx.shared.entry_point
        ))));
    }
    Ok(())
}

/// All methods, debug ones included when `debug_api` is on.
pub fn module(
    ctx: RpcContext,
) -> Result<RpcModule<RpcContext>, jsonrpsee::core::RegisterMethodError> {
    let debug = ctx.shared.config.debug_api;
    let mut m = RpcModule::new(ctx);

    m.register_method("eth_chainId", |_, ctx, _| -> RpcResult<String> {
        Ok(format!("{:#x}", ctx.shared.chain_id))
    })?;
    m.register_method(
        "eth_supportedEntryPoints",
        |_, ctx, _| -> RpcResult<Vec<Address>> { Ok(vec![ctx.shared.entry_point]) },
    )?;

    m.register_async_method("eth_sendUserOperation", |params, ctx, _| async move {
        let (op, ep): (Value, Address) = params.parse()?;
        admission::send(&ctx.shared, op, ep)
            .await
            .map(|a| a.user_op_hash)
            .map_err(err)
    })?;
    m.register_async_method("keyscope_sendUserOperation", |params, ctx, _| async move {
        let (op, ep): (Value, Address) = params.parse()?;
        admission::send(&ctx.shared, op, ep).await.map_err(err)
    })?;
    m.register_async_method(
        "eth_estimateUserOperationGas",
        |params: Params<'static>, ctx, _| async move {
            let mut seq = params.sequence();
            let op: Value = seq.next()?;
            let ep: Address = seq.next()?;
            let overrides: Option<Value> = seq.optional_next()?;
            if overrides
                .as_ref()
                .is_some_and(|o| !o.is_null() && o.as_object().is_none_or(|o| !o.is_empty()))
            {
                return Err(err(RpcError::invalid_fields(
                    "state overrides are not supported by this relayer",
                )));
            }
            admission::estimate(&ctx.shared, op, ep).await.map_err(err)
        },
    )?;
    m.register_async_method("eth_getUserOperationByHash", |params, ctx, _| async move {
        let result: RpcResult<Option<Value>> = async {
            let (hash,): (B256,) = params.parse()?;
            Ok(ctx
                .shared
                .record(hash)
                .await
                .filter(|r| r.status != OpStatus::Dropped)
                .map(|r| {
                    json!({
                        "userOperation": r.user_operation,
                        "entryPoint": ctx.shared.entry_point,
                        "blockNumber": r.block_number.map(|n| format!("{n:#x}")),
                        "blockHash": r.block_hash,
                        "transactionHash": r.tx_hash.filter(|_| r.status == OpStatus::Included),
                    })
                }))
        }
        .await;
        result
    })?;
    m.register_async_method("eth_getUserOperationReceipt", |params, ctx, _| async move {
        let (hash,): (B256,) = params.parse()?;
        receipt(&ctx.shared, hash).await.map_err(err)
    })?;
    m.register_async_method(
        "keyscope_userOperationStatus",
        |params, ctx, _| async move {
            let result: RpcResult<Option<Value>> = async {
                let (hash,): (B256,) = params.parse()?;
                Ok(ctx.shared.record(hash).await.map(|r| {
                    let t = r.timings;
                    let ms = |a: Option<u64>, b: Option<u64>| {
                        a.zip(b).map(|(a, b)| b.saturating_sub(a) as f64 / 1000.0)
                    };
                    json!({
                        "userOpHash": r.hash,
                        "status": r.status,
                        "kind": r.kind,
                        "sessionKey": r.session_key,
                        "transactionHash": r.tx_hash,
                        "replacedTransactions": r.replaced_txs,
                        "blockNumber": r.block_number,
                        "success": r.success,
                        "reason": r.reason,
                        "health": r.health,
                        "timestamps": t,
                        "stagesMs": {
                            "validate": ms(Some(t.received_us), t.validated_us),
                            "waitBundle": ms(t.validated_us, t.bundled_us),
                            "send": ms(t.bundled_us, t.sent_us),
                            "mine": ms(t.sent_us, t.mined_us),
                            "total": ms(Some(t.received_us), t.mined_us),
                        },
                    })
                }))
            }
            .await;
            result
        },
    )?;
    m.register_method("keyscope_auditLog", |params, ctx, _| -> RpcResult<Value> {
        let mut seq = params.sequence();
        let from: Option<u64> = seq.optional_next()?;
        let limit: Option<usize> = seq.optional_next()?;
        let entries = ctx
            .shared
            .store
            .audit(from.unwrap_or(0), limit.unwrap_or(1000).min(10_000))
            .map_err(|e| err(RpcError::internal(e)))?;
        Ok(json!(entries))
    })?;
    m.register_async_method("keyscope_status", |_, ctx, _| async move {
        let balance = builder::balance(&ctx.shared).await.unwrap_or_default();
        let inner = ctx.shared.lock().await;
        Ok::<_, ErrorObjectOwned>(json!({
            "chainId": ctx.shared.chain_id,
            "entryPoint": ctx.shared.entry_point,
            "venue": ctx.shared.venue,
            "relayer": ctx.shared.relayer,
            "relayerBalance": balance,
            "head": inner.sim.head(),
            "pool": inner.pool.len(),
            "inFlight": inner.in_flight.as_ref().map(|f| json!({ "transactionHash": f.tx_hash, "replaced": f.replaced, "ops": f.ops.len() })),
            "bundlingMode": inner.mode,
            "quantilesMs": crate::metrics::STAGES.iter().filter_map(|s| {
                ctx.shared.metrics.quantiles(s).map(|(p50, p99)| (s.to_string(), json!({ "p50": p50 as f64 / 1000.0, "p99": p99 as f64 / 1000.0 })))
            }).collect::<serde_json::Map<_, _>>(),
        }))
    })?;
    m.register_subscription(
        "keyscope_subscribeAccountEvents",
        "keyscope_accountEvent",
        "keyscope_unsubscribeAccountEvents",
        |params, pending, ctx, _| async move {
            let (account,): (Address,) = match params.parse() {
                Ok(p) => p,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            if ctx.shared.venue.is_none() {
                pending
                    .reject(err(RpcError::invalid_fields(
                        "this relayer has no venue configured (set deployment or venue)",
                    )))
                    .await;
                return Ok(());
            }
            let mut events = ctx.shared.feed.subscribe();
            let sink = pending.accept().await?;
            loop {
                tokio::select! {
                    _ = sink.closed() => break,
                    ev = events.recv() => match ev {
                        Ok(ev) if ev.account == account => {
                            let msg = serde_json::value::to_raw_value(&ev)?;
                            if sink.send(msg).await.is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("account feed subscriber lagged by {n} events");
                        }
                        Err(_) => break,
                    },
                }
            }
            Ok(())
        },
    )?;

    if debug {
        register_debug(&mut m)?;
    }
    Ok(m)
}

fn register_debug(
    m: &mut RpcModule<RpcContext>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    m.register_async_method("debug_bundler_clearMempool", |_, ctx, _| async move {
        clear_mempool(&ctx.shared).await;
        Ok::<_, ErrorObjectOwned>("ok")
    })?;
    m.register_async_method("debug_bundler_clearState", |_, ctx, _| async move {
        clear_mempool(&ctx.shared).await;
        ctx.shared.lock().await.reputation.clear();
        Ok::<_, ErrorObjectOwned>("ok")
    })?;
    m.register_async_method("debug_bundler_dumpMempool", |params, ctx, _| async move {
        let result: RpcResult<Vec<RpcUserOperation>> = async {
            let mut seq = params.sequence();
            if let Some(ep) = seq.optional_next::<Address>()? {
                check_entry_point(&ctx, ep)?;
            }
            let inner = ctx.shared.lock().await;
            Ok(inner
                .pool
                .in_order()
                .iter()
                .map(|o| RpcUserOperation::from_packed(&o.op))
                .collect())
        }
        .await;
        result
    })?;
    m.register_async_method("debug_bundler_sendBundleNow", |_, ctx, _| async move {
        builder::bundle_now(&ctx.shared, &ctx.wallet)
            .await
            .map(|tx| tx.map(|h| h.to_string()).unwrap_or_else(|| "ok".into()))
            .map_err(|e| err(RpcError::internal(e)))
    })?;
    m.register_async_method(
        "debug_bundler_setBundlingMode",
        |params, ctx, _| async move {
            let result: RpcResult<&'static str> = async {
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
                ctx.shared.lock().await.mode = mode;
                ctx.shared.wake.notify_one();
                Ok("ok")
            }
            .await;
            result
        },
    )?;
    m.register_async_method("debug_bundler_setReputation", |params, ctx, _| async move {
        let result: RpcResult<&'static str> = async {
            let mut seq = params.sequence();
            let entries: Vec<Value> = seq.next()?;
            if let Some(ep) = seq.optional_next::<Address>()? {
                check_entry_point(&ctx, ep)?;
            }
            let mut parsed = Vec::new();
            for e in entries {
                let address: Address =
                    serde_json::from_value(e["address"].clone()).map_err(|x| {
                        err(RpcError::invalid_fields(format!(
                            "reputation entry needs an address: {x}"
                        )))
                    })?;
                let num = |k: &str| -> RpcResult<u64> {
                    match &e[k] {
                        Value::Number(n) => n.as_u64().ok_or_else(|| {
                            err(RpcError::invalid_fields(format!(
                                "{k} must be a whole number"
                            )))
                        }),
                        Value::String(s) => u64::from_str_radix(
                            s.trim_start_matches("0x"),
                            if s.starts_with("0x") { 16 } else { 10 },
                        )
                        .map_err(|_| {
                            err(RpcError::invalid_fields(format!("{k} must be a number")))
                        }),
                        Value::Null => Ok(0),
                        _ => Err(err(RpcError::invalid_fields(format!(
                            "{k} must be a number"
                        )))),
                    }
                };
                parsed.push((
                    address,
                    ReputationEntry {
                        ops_seen: num("opsSeen")?,
                        ops_included: num("opsIncluded")?,
                    },
                ));
            }
            let mut inner = ctx.shared.lock().await;
            for (a, e) in parsed {
                inner.reputation.set(a, e);
            }
            Ok("ok")
        }
        .await;
        result
    })?;
    m.register_async_method("debug_bundler_dumpReputation", |params, ctx, _| async move {
        let result: RpcResult<Value> = async {
        let mut seq = params.sequence();
        if let Some(ep) = seq.optional_next::<Address>()? {
            check_entry_point(&ctx, ep)?;
        }
        let inner = ctx.shared.lock().await;
        Ok(json!(inner
            .reputation
            .dump()
            .into_iter()
            .map(|(a, e, s)| json!({ "address": a, "opsSeen": format!("{:#x}", e.ops_seen), "opsIncluded": format!("{:#x}", e.ops_included), "status": s }))
            .collect::<Vec<_>>()))
        }
        .await;
        result
    })?;
    m.register_async_method("debug_bundler_clearReputation", |_, ctx, _| async move {
        let result: RpcResult<&'static str> = async {
            ctx.shared.lock().await.reputation.clear();
            Ok("ok")
        }
        .await;
        result
    })?;
    m.register_async_method("debug_bundler_getStakeStatus", |params, ctx, _| async move {
        let (address, ep): (Address, Address) = params.parse()?;
        check_entry_point(&ctx, ep)?;
        let data = IEntryPoint::getDepositInfoCall { account: address }.abi_encode();
        let req = alloy::rpc::types::TransactionRequest::default().to(ctx.shared.entry_point).input(data.into());
        let out = ctx.shared.provider.call(req).await.map_err(|e| err(RpcError::internal(e)))?;
        let info = IEntryPoint::getDepositInfoCall::abi_decode_returns(&out).map_err(|e| err(RpcError::internal(e)))?;
        let is_staked = info.staked
            && U256::from(info.stake) >= ctx.shared.config.min_stake_wei
            && info.unstakeDelaySec >= ctx.shared.config.min_unstake_delay_secs;
        Ok::<_, ErrorObjectOwned>(json!({
            "stakeInfo": { "addr": address, "stake": format!("{:#x}", info.stake), "unstakeDelaySec": format!("{:#x}", info.unstakeDelaySec) },
            "isStaked": is_staked,
        }))
    })?;
    Ok(())
}

async fn clear_mempool(shared: &SharedState) {
    let persist = {
        let mut inner = shared.lock().await;
        let mut p = Persist::default();
        for hash in inner.pool.hashes() {
            p.extend(inner.drop_op(
                hash,
                "cleared by debug_bundler_clearMempool".into(),
                &shared.metrics,
            ));
        }
        p
    };
    shared.persist(persist).await;
    shared.rebuild(None).await;
}

/// ERC-7769's receipt of an included op: its own logs (those emitted between the previous op's
/// UserOperationEvent and its own) and the bundle transaction's receipt.
async fn receipt(shared: &SharedState, hash: B256) -> Result<Option<Value>, RpcError> {
    let Some(rec) = shared.record(hash).await else {
        return Ok(None);
    };
    let (OpStatus::Included, Some(tx)) = (rec.status, rec.tx_hash) else {
        return Ok(None);
    };
    let Some(r) = shared
        .provider
        .get_transaction_receipt(tx)
        .await
        .map_err(RpcError::internal)?
    else {
        return Ok(None);
    };
    let mut segment = Vec::new();
    let mut found = None;
    for log in r.inner.logs() {
        if log.address() == shared.entry_point {
            if let Ok(ev) = IEntryPoint::UserOperationEvent::decode_log(&log.inner) {
                if ev.data.userOpHash == hash {
                    found = Some(ev.data);
                    break;
                }
                segment.clear();
                continue;
            }
            if IEntryPoint::BeforeExecution::decode_log(&log.inner).is_ok() {
                segment.clear();
                continue;
            }
        }
        segment.push(log.clone());
    }
    let Some(ev) = found else {
        return Err(RpcError::internal(format!(
            "transaction {tx} has no UserOperationEvent for {hash}"
        )));
    };
    let reason = r
        .inner
        .logs()
        .iter()
        .filter_map(|l| IEntryPoint::UserOperationRevertReason::decode_log(&l.inner).ok())
        .find(|e| e.data.userOpHash == hash)
        .map(|e| e.data.revertReason.to_string())
        .unwrap_or_default();
    Ok(Some(json!({
        "userOpHash": hash,
        "entryPoint": shared.entry_point,
        "sender": ev.sender,
        "nonce": format!("{:#x}", ev.nonce),
        "paymaster": ev.paymaster,
        "actualGasCost": format!("{:#x}", ev.actualGasCost),
        "actualGasUsed": format!("{:#x}", ev.actualGasUsed),
        "success": ev.success,
        "reason": reason,
        "logs": segment,
        "receipt": r,
    })))
}
