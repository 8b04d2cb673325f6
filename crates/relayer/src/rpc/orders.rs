//! The signed-order methods, served when the matcher runs (`matcher.settler_key` set): place, replace,
//! cancel, cancel-all and schedule a cancel-all (each signed by the order's key), read an order or a book,
//! and two WebSocket subscriptions — a market's book deltas and trades (public), and a key's own order
//! updates and fills (signed subscribe request; optionally cancel-on-disconnect).
//!
//! ```text
//! keyscope_placeOrder(order, signature)                 -> {orderHash, status, filled, resting, fills, sequence}
//! keyscope_replaceOrder(orderHash, order, signature)    -> the new order's answer
//! keyscope_cancelOrders({account, key, orderHashes, timestampMs}, signature)      -> {cancelled, scheduledCancelMs}
//! keyscope_cancelAllOrders({account, key, timestampMs}, signature)                -> the same
//! keyscope_scheduleCancel({account, key, atMs, timestampMs}, signature)           -> the same (atMs 0 clears)
//! keyscope_getOrder(orderHash) -> the order, filled and resting, or null
//! keyscope_getBook(marketId, depth?) -> {marketId, bids: [[price, size]…], asks}
//! keyscope_subscribeBook(marketId)  -> keyscope_bookEvent: a snapshot, then {type: book|trade, …}
//! keyscope_subscribeOrders({account, key, cancelOnDisconnect, timestampMs}, signature) -> keyscope_orderEvent
//! ```

use alloy_primitives::{Address, B256, Bytes};
use jsonrpsee::{RpcModule, core::RegisterMethodError, types::ErrorObjectOwned};
use keyscope_core::{
    order::OrderJson,
    order_request::{Request, RequestAction, RequestError},
};
use serde::Deserialize;
use serde_json::json;

use super::{RpcContext, RpcResult, err};
use crate::{
    error::{RpcError, code},
    matcher::{EngineError, MatchError, Matcher, MatcherEvent},
};

/// The JSON-RPC error for a matcher refusal: a code per kind, the reason in the message.
fn refusal(e: MatchError) -> ErrorObjectOwned {
    let c = match &e {
        MatchError::Order(_) | MatchError::WrongVenue(_) => code::INVALID_FIELDS,
        MatchError::Request(RequestError::Stale { .. }) | MatchError::Replayed => {
            code::REQUEST_STALE
        }
        MatchError::Request(RequestError::Signature(_)) | MatchError::Signature(_) => {
            code::INVALID_SIGNATURE
        }
        MatchError::Request(_) => code::INVALID_FIELDS,
        MatchError::Scope(_)
        | MatchError::DeadMan { .. }
        | MatchError::ReduceOnly { .. }
        | MatchError::NotASession { .. } => code::ORDER_OUT_OF_SCOPE,
        MatchError::ScheduleTooFar => code::INVALID_FIELDS,
        MatchError::Engine(EngineError::Margin { .. }) => code::ORDER_MARGIN,
        MatchError::Engine(EngineError::ReplaceMismatch) => code::INVALID_FIELDS,
        MatchError::Engine(_) => code::ORDER_BOOK,
        MatchError::Chain(crate::matcher::ChainReadError::Node(_)) | MatchError::Journal(_) => {
            code::INTERNAL
        }
        MatchError::Chain(_) => code::ORDER_OUT_OF_SCOPE,
    };
    err(RpcError::new(c, e.to_string()))
}

fn matcher(ctx: &RpcContext) -> RpcResult<&Matcher> {
    ctx.matcher.as_ref().ok_or_else(|| {
        err(RpcError::new(
            code::INVALID_FIELDS,
            "this relayer runs no matcher for signed orders (set matcher.settler_key and a venue)",
        ))
    })
}

fn order_of(json: &OrderJson) -> RpcResult<keyscope_core::order::Order> {
    // Fields only here; the expiry against the clock is the matcher's check.
    json.to_order(0).map_err(|e| refusal(MatchError::Order(e)))
}

/// A request's JSON: the method names the action.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestJson {
    account: Address,
    key: Address,
    #[serde(default)]
    order_hashes: Option<Vec<B256>>,
    #[serde(default)]
    at_ms: Option<u64>,
    #[serde(default)]
    cancel_on_disconnect: Option<bool>,
    timestamp_ms: u64,
}

impl RequestJson {
    fn into_request(self, venue: Address, method: &str) -> RpcResult<Request> {
        let missing = |f: &str| err(RpcError::invalid_fields(format!("{method} needs {f}")));
        let action = match method {
            "keyscope_cancelOrders" => {
                RequestAction::Cancel(self.order_hashes.ok_or_else(|| missing("orderHashes"))?)
            }
            "keyscope_cancelAllOrders" => RequestAction::CancelAll,
            "keyscope_scheduleCancel" => RequestAction::ScheduleCancel {
                at_ms: self.at_ms.ok_or_else(|| missing("atMs"))?,
            },
            _ => RequestAction::Subscribe {
                cancel_on_disconnect: self.cancel_on_disconnect.unwrap_or(false),
            },
        };
        Ok(Request {
            venue,
            account: self.account,
            key: self.key,
            action,
            timestamp_ms: self.timestamp_ms,
        })
    }
}

/// Registers the methods and subscriptions above.
pub(super) fn register(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterMethodError> {
    m.register_async_method("keyscope_placeOrder", |params, ctx, _| async move {
        let (order, signature): (OrderJson, Bytes) = params.parse()?;
        let order = order_of(&order)?;
        let ack = matcher(&ctx)?
            .place(order, signature)
            .await
            .map_err(refusal)?;
        RpcResult::Ok(json!(ack))
    })?;
    m.register_async_method("keyscope_replaceOrder", |params, ctx, _| async move {
        let (old, order, signature): (B256, OrderJson, Bytes) = params.parse()?;
        let order = order_of(&order)?;
        let ack = matcher(&ctx)?
            .replace(old, order, signature)
            .await
            .map_err(refusal)?;
        RpcResult::Ok(json!(ack))
    })?;
    for method in [
        "keyscope_cancelOrders",
        "keyscope_cancelAllOrders",
        "keyscope_scheduleCancel",
    ] {
        m.register_async_method(method, move |params, ctx, _| async move {
            let (req, signature): (RequestJson, Bytes) = params.parse()?;
            let m = matcher(&ctx)?;
            let req = req.into_request(m.venue(), method)?;
            let done = m.request(&req, &signature).await.map_err(refusal)?;
            RpcResult::Ok(json!(done))
        })?;
    }
    m.register_method("keyscope_getOrder", |params, ctx, _| {
        let (hash,): (B256,) = params.parse()?;
        RpcResult::Ok(json!(matcher(ctx)?.order(hash)))
    })?;
    m.register_method("keyscope_getBook", |params, ctx, _| {
        let mut seq = params.sequence();
        let market: u32 = seq.next()?;
        let depth: Option<usize> = seq.optional_next()?;
        RpcResult::Ok(json!(
            matcher(ctx)?.book(market, depth.unwrap_or(20).min(500))
        ))
    })?;
    m.register_subscription(
        "keyscope_subscribeBook",
        "keyscope_bookEvent",
        "keyscope_unsubscribeBook",
        |params, pending, ctx, _| async move {
            let setup = async {
                let (market,): (u32,) = params.parse()?;
                RpcResult::Ok((market, matcher(&ctx)?.clone()))
            };
            let (market, m) = match setup.await {
                Ok(v) => v,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            // Subscribed before the snapshot: a change between them arrives after it (never lost).
            let mut events = m.subscribe();
            let sink = pending.accept().await?;
            let snapshot = json!({ "type": "snapshot", "book": m.book(market, 500) });
            sink.send(serde_json::value::to_raw_value(&snapshot)?)
                .await?;
            loop {
                tokio::select! {
                    _ = sink.closed() => break,
                    ev = events.recv() => match ev {
                        Ok(ev) if ev.market() == Some(market) => {
                            if sink.send(serde_json::value::to_raw_value(&ev)?).await.is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            // A subscriber this slow gets a fresh snapshot instead of a gap.
                            tracing::warn!("book subscriber lagged by {n} events: sending a snapshot");
                            let snapshot = json!({ "type": "snapshot", "book": m.book(market, 500) });
                            if sink.send(serde_json::value::to_raw_value(&snapshot)?).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                }
            }
            Ok(())
        },
    )?;
    m.register_subscription(
        "keyscope_subscribeOrders",
        "keyscope_orderEvent",
        "keyscope_unsubscribeOrders",
        |params, pending, ctx, _| async move {
            // Parsed, the matcher's, and the key's signed request checked: else refused before anything streams.
            let setup = async {
                let (req, signature): (RequestJson, Bytes) = params.parse()?;
                let m = matcher(&ctx)?.clone();
                let req = req.into_request(m.venue(), "keyscope_subscribeOrders")?;
                m.request(&req, &signature).await.map_err(refusal)?;
                RpcResult::Ok((req, m))
            };
            let (req, m) = match setup.await {
                Ok(v) => v,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            let cancel_on_disconnect = matches!(
                req.action,
                RequestAction::Subscribe {
                    cancel_on_disconnect: true
                }
            );
            let (account, key) = (req.account, req.key);
            let mut events = m.subscribe();
            let sink = pending.accept().await?;
            loop {
                tokio::select! {
                    _ = sink.closed() => break,
                    ev = events.recv() => match ev {
                        Ok(MatcherEvent::Order(u)) if (u.account, u.key) == (account, key) => {
                            if sink.send(serde_json::value::to_raw_value(&u)?).await.is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            // Other keys' traffic may have pushed this one's events out: say so and go on
                            // (closing would fire a cancel-on-disconnect nobody asked for); the client reads
                            // its orders back with keyscope_getOrder.
                            tracing::warn!(%account, %key, "order subscriber lagged by {n} events");
                            let notice = json!({ "type": "lagged", "missed": n });
                            if sink.send(serde_json::value::to_raw_value(&notice)?).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                }
            }
            if cancel_on_disconnect {
                m.disconnected(account, key);
            }
            Ok(())
        },
    )?;
    Ok(())
}
