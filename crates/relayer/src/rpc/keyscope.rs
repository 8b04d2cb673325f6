//! Keyscope's own methods: the send that answers with the account's health, an op's lifecycle, the audit
//! log, the relayer's status, and the account event subscription (WebSocket).

use alloy_primitives::{Address, B256};
use jsonrpsee::{RpcModule, core::RegisterMethodError, types::ErrorObjectOwned};
use serde_json::{Value, json};

use super::{RpcContext, RpcResult, err};
use crate::{error::RpcError, store::OpRecord};

/// Registers `keyscope_sendUserOperation`, `keyscope_userOperationStatus`, `keyscope_auditLog`,
/// `keyscope_status` and `keyscope_subscribeAccountEvents`.
pub(super) fn register(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterMethodError> {
    m.register_async_method(
        "keyscope_sendUserOperation",
        |params, ctx, ext| async move {
            let (op, ep): (Value, Address) = params.parse()?;
            ctx.check_entry_point(ep)?;
            ctx.send(op, ep, true, super::client_of(&ext))
                .await
                .map_err(err)
        },
    )?;
    m.register_async_method(
        "keyscope_userOperationStatus",
        |params, ctx, _| async move {
            let (hash,): (B256,) = params.parse()?;
            RpcResult::Ok(ctx.service.pool.record(hash).await.map(|r| status(&r)))
        },
    )?;
    m.register_async_method("keyscope_auditLog", |params, ctx, ext| async move {
        // The operator's record of every sender's orders: admin only. A sender follows its own ops by
        // hash with keyscope_userOperationStatus.
        ctx.access.admin(&ext, "keyscope_auditLog")?;
        let mut seq = params.sequence();
        let from: Option<u64> = seq.optional_next()?;
        let limit: Option<usize> = seq.optional_next()?;
        let entries = ctx
            .service
            .store
            .audit(from.unwrap_or(0), limit.unwrap_or(1000).min(10_000))
            .await
            .map_err(|e| err(RpcError::internal(e)))?;
        RpcResult::Ok(json!(entries))
    })?;
    m.register_async_method("keyscope_status", |_, ctx, _| async move {
        let s = &ctx.service;
        let balance = s.balance().await.unwrap_or_default();
        let pool = s.pool.status();
        let id = s.identity;
        Ok::<_, ErrorObjectOwned>(json!({
            "chainId": id.chain_id,
            "entryPoint": id.entry_point,
            "venue": id.venue,
            "relayer": id.relayer,
            "relayerBalance": balance,
            "head": pool.head,
            "pool": pool.pool,
            "submitted": pool.submitted,
            "inFlight": s.in_flight.bundles().iter().map(|b| json!({
                "transactionHash": b.tx_hash, "replaced": b.replaced, "nonce": b.nonce, "ops": b.ops.len(),
            })).collect::<Vec<_>>(),
            "bundlingMode": pool.bundling_mode,
            "quantilesMs": crate::metrics::STAGES.iter().filter_map(|stage| {
                ctx.metrics.quantiles(stage).map(|(p50, p99)| {
                    (stage.to_string(), json!({ "p50": p50 as f64 / 1000.0, "p99": p99 as f64 / 1000.0 }))
                })
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
            if ctx.service.identity.venue.is_none() {
                pending
                    .reject(err(RpcError::invalid_fields(
                        "this relayer has no venue configured (set deployment or venue)",
                    )))
                    .await;
                return Ok(());
            }
            let mut events = ctx.feed.subscribe();
            let sink = pending.accept().await?;
            loop {
                tokio::select! {
                    _ = sink.closed() => break,
                    ev = events.recv() => match ev {
                        Ok(ev) if ev.account == account => {
                            if sink.send(serde_json::value::to_raw_value(&ev)?).await.is_err() {
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
    Ok(())
}

/// `keyscope_userOperationStatus`'s answer: the op's record with each lifecycle stage's duration.
fn status(r: &OpRecord) -> Value {
    let t = r.timings;
    let ms =
        |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a) as f64 / 1000.0);
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
}

/// Registers the method instances of one deployment forward ops to the holder of their sender's shard
/// with ([`crate::cluster::FORWARD_METHOD`]).
pub(super) fn register_forwarded(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterMethodError> {
    m.register_async_method(
        crate::cluster::FORWARD_METHOD,
        |params, ctx, ext| async move {
            // From another instance: taken here or refused, never forwarded again. Per-client limits
            // count the forwarding instance as the client.
            let (op, ep, with_health): (Value, Address, bool) = params.parse()?;
            ctx.check_entry_point(ep)?;
            ctx.take(op, with_health, super::client_of(&ext), true)
                .await
                .map_err(err)
        },
    )?;
    Ok(())
}
