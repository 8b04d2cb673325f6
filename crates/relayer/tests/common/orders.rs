//! Signed orders and matcher requests as a client makes them, for the matcher's tests and benches: orders
//! built and signed by a trader's session key (or by anyone, for attacks), requests signed the same way, the
//! RPC calls and subscriptions, and reads of what the matcher and the venue hold.

use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, Bytes, I256, U256};
use jsonrpsee::{
    core::client::{Subscription, SubscriptionClientT},
    rpc_params,
    ws_client::{WsClient, WsClientBuilder},
};
use keyscope_core::{
    KeySigner,
    bindings::PerpVenue,
    ops,
    order::{Order, OrderBuilder, OrderJson, TimeInForce, key_order_grant, order_hash, sign_order},
    order_request::{Request, RequestAction},
    units::parse_units,
};
use serde_json::{Value, json};

use super::{Chain, Setup, Trader, rpc};

/// The JSON-RPC error codes the matcher answers with.
pub const INVALID_FIELDS: i64 = -32602;
pub const INVALID_SIGNATURE: i64 = -32507;
pub const OUT_OF_SCOPE: i64 = -32620;
pub const MARGIN: i64 = -32621;
pub const BOOK: i64 = -32622;
pub const STALE: i64 = -32623;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn e18(v: &str) -> U256 {
    parse_units(v, 18).unwrap()
}

/// An order as a client sends it: its JSON, a signature and its hash at the venue.
#[derive(Clone, Debug)]
pub struct Signed {
    pub json: Value,
    pub sig: Bytes,
    pub hash: B256,
}

/// `t`'s key's BTC order under its current grant and epoch, expiring in `ttl_ms` (unsigned).
#[allow(clippy::too_many_arguments)]
pub async fn order_for(
    c: &Chain,
    t: &Trader,
    is_buy: bool,
    size: &str,
    price: &str,
    tif: TimeInForce,
    nonce: u64,
    ttl_ms: u64,
) -> Order {
    let (grant, epoch) = key_order_grant(&c.provider, t.account, t.session.address())
        .await
        .unwrap();
    OrderBuilder::new(
        t.account,
        t.session.address(),
        0,
        is_buy,
        e18(size),
        e18(price),
    )
    .grant(grant, epoch)
    .time_in_force(tif as u8)
    .expiry_ms(now_ms() + ttl_ms)
    .nonce(nonce)
    .build(now_ms())
    .unwrap()
}

/// [`order_for`], expiring in two minutes.
pub async fn order_of(
    c: &Chain,
    t: &Trader,
    is_buy: bool,
    size: &str,
    price: &str,
    tif: TimeInForce,
    nonce: u64,
) -> Order {
    order_for(c, t, is_buy, size, price, tif, nonce, 120_000).await
}

/// `order` signed by `key` (its own key, or not).
pub async fn sign(c: &Chain, key: &PrivateKeySigner, order: Order) -> Signed {
    let chain_id = c.devnet.deployment.chain_id;
    let sig = sign_order(key, c.d.venue, chain_id, &order).await.unwrap();
    Signed {
        json: json!(OrderJson::from(&order)),
        hash: order_hash(c.d.venue, chain_id, &order),
        sig,
    }
}

/// `t`'s own signed order, expiring in two minutes.
pub async fn signed(
    c: &Chain,
    t: &Trader,
    is_buy: bool,
    size: &str,
    price: &str,
    tif: TimeInForce,
    nonce: u64,
) -> Signed {
    let o = order_of(c, t, is_buy, size, price, tif, nonce).await;
    sign(c, &t.session, o).await
}

/// `keyscope_placeOrder` at the relayer at `url`.
pub async fn place_at(url: &str, o: &Signed) -> Result<Value, Value> {
    rpc(url, "keyscope_placeOrder", json!([o.json, o.sig])).await
}

pub async fn place(s: &Setup, o: &Signed) -> Result<Value, Value> {
    place_at(&s.relayer.url(), o).await
}

/// A request for (`account`, `key`) at `timestamp_ms`, signed by `by` (the key itself, or an attacker's):
/// (its fields as the RPC methods take them, the signature).
pub async fn request_as(
    c: &Chain,
    by: &PrivateKeySigner,
    account: Address,
    key: Address,
    action: RequestAction,
    timestamp_ms: u64,
) -> (Value, Bytes) {
    let r = Request {
        venue: c.d.venue,
        account,
        key,
        action: action.clone(),
        timestamp_ms,
    };
    // By hand (not `Request::sign`): an attacker signs whatever it likes.
    let sig = by
        .sign_digest(r.digest(c.devnet.deployment.chain_id))
        .await
        .unwrap();
    let mut fields = json!({ "account": account, "key": key, "timestampMs": timestamp_ms });
    match action {
        RequestAction::Cancel(h) => fields["orderHashes"] = json!(h),
        RequestAction::ScheduleCancel { at_ms } => fields["atMs"] = json!(at_ms),
        RequestAction::Subscribe {
            cancel_on_disconnect,
        } => fields["cancelOnDisconnect"] = json!(cancel_on_disconnect),
        RequestAction::CancelAll => {}
    }
    (fields, sig)
}

/// `t`'s own request, now.
pub async fn request(c: &Chain, t: &Trader, action: RequestAction) -> (Value, Bytes) {
    request_as(
        c,
        &t.session,
        t.account,
        t.session.address(),
        action,
        now_ms(),
    )
    .await
}

pub async fn ws(s: &Setup) -> WsClient {
    WsClientBuilder::default()
        .build(s.relayer.ws_url())
        .await
        .unwrap()
}

pub async fn subscribe_with(
    ws: &WsClient,
    fields: Value,
    sig: Bytes,
) -> Result<Subscription<Value>, jsonrpsee::core::client::Error> {
    ws.subscribe::<Value, _>(
        "keyscope_subscribeOrders",
        rpc_params![fields, sig],
        "keyscope_unsubscribeOrders",
    )
    .await
}

/// `t`'s key's order stream on a connection of its own.
pub async fn subscribe_orders(
    s: &Setup,
    t: &Trader,
    cancel_on_disconnect: bool,
) -> (WsClient, Subscription<Value>) {
    let c = ws(s).await;
    let (fields, sig) = request(
        s,
        t,
        RequestAction::Subscribe {
            cancel_on_disconnect,
        },
    )
    .await;
    let sub = subscribe_with(&c, fields, sig).await.unwrap();
    (c, sub)
}

/// The next event on `sub` for which `pred` holds, within 20 s.
pub async fn next_where(sub: &mut Subscription<Value>, pred: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = sub.next().await.expect("open").expect("json");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("the event within 20 s")
}

pub fn code(e: &Value) -> i64 {
    e["code"].as_i64().unwrap_or_else(|| panic!("no code: {e}"))
}

/// What of order `hash` rests on the book (None: nothing).
pub async fn resting(s: &Setup, hash: B256) -> Option<U256> {
    let o = s.call("keyscope_getOrder", json!([hash])).await.unwrap();
    if o.is_null() {
        return None;
    }
    let r: U256 = serde_json::from_value(o["resting"].clone()).unwrap();
    (!r.is_zero()).then_some(r)
}

pub async fn book_is_empty(s: &Setup) -> bool {
    let b = s.call("keyscope_getBook", json!([0])).await.unwrap();
    b["bids"].as_array().unwrap().is_empty() && b["asks"].as_array().unwrap().is_empty()
}

/// `account`'s BTC position on the venue.
pub async fn position(c: &Chain, account: Address) -> I256 {
    PerpVenue::new(c.d.venue, &c.provider)
        .position(account, 0)
        .call()
        .await
        .unwrap()
        .size
}

/// Whether `t`'s key's order nonce `nonce` is spent at the venue (filled in full or cancelled on chain).
pub async fn nonce_spent(c: &Chain, t: &Trader, nonce: u64) -> bool {
    let (word, bit) = keyscope_core::order::nonce_slot(nonce);
    let w = PerpVenue::new(c.d.venue, &c.provider)
        .cancelledOrders(t.account, t.session.address(), word)
        .call()
        .await
        .unwrap();
    w & bit != U256::ZERO
}

/// Revokes `t`'s session key on chain (its owner's op).
pub async fn revoke(c: &Chain, t: &Trader) {
    let op = c
        .owner_op(
            t,
            1,
            vec![ops::revoke_session(t.account, t.session.address())],
        )
        .await;
    assert!(c.direct.send(&op).await.unwrap().success);
}
