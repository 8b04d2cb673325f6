//! ERC-7769's receipt of an included op — or, for an op the relayer accepted and then dropped, an error
//! naming why (see [`RpcError::dropped`]).

use alloy::{providers::Provider, sol_types::SolEvent};
use alloy_primitives::B256;
use keyscope_core::bindings::IEntryPoint;
use serde_json::{Value, json};

use crate::{error::RpcError, service::Service, store::OpStatus};

/// The receipt of an included op: its own logs (those emitted between the previous op's
/// `UserOperationEvent` and its own) and the bundle transaction's receipt. A dropped op is an error.
pub(super) async fn receipt(service: &Service, hash: B256) -> Result<Option<Value>, RpcError> {
    let Some(rec) = service.pool.record(hash).await else {
        return Ok(None);
    };
    if rec.status == OpStatus::Dropped {
        return Err(RpcError::dropped(hash, rec.reason.as_deref()));
    }
    // Included, or in a bundle the node may have mined since the chain follower last looked: the receipt is
    // answered as soon as the node has it, not at the next round.
    let txs: Vec<_> = match (rec.status, rec.tx_hash) {
        (OpStatus::Included, Some(tx)) => vec![tx],
        (s, Some(tx)) if s.in_bundle() => std::iter::once(tx)
            .chain(rec.replaced_txs.iter().copied())
            .collect(),
        _ => return Ok(None),
    };
    let mut mined = None;
    for tx in txs {
        if let Some(r) = service
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(RpcError::internal)?
        {
            mined = Some((tx, r));
            break;
        }
    }
    let Some((tx, r)) = mined else {
        return Ok(None);
    };
    if rec.status.in_bundle() {
        // Settle that block now, so the op's status, its account's pending state and the next op from a
        // client that waited on this receipt all see it too.
        if let Err(e) = service.chain.follow().await {
            tracing::warn!(error = %e, "following the head for a receipt");
        }
    }
    let entry_point = service.identity.entry_point;
    let mut segment = Vec::new();
    let mut found = None;
    for log in r.inner.logs() {
        if log.address() == entry_point {
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
        // A bundle mined without the op (it goes back to the pool) has no receipt for it.
        if rec.status != OpStatus::Included {
            return Ok(None);
        }
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
        "entryPoint": entry_point.to_checksum(None),
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
