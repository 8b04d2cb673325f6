//! The signed-order matcher end to end (a benchmark, not a test), against a real anvil and the in-process
//! relayer's matcher, every client on its own WebSocket connection sending one request at a time:
//!
//! 1. place → acknowledgement latency (p50/p99) of pre-signed post-only orders that rest without crossing
//!    (bids below, asks above the oracle's 60,000, within 1 %), each client keeping at most `RESTING` orders
//!    on the book by cancelling its oldest one (a signed `keyscope_cancelOrders`) after each new one;
//! 2. the place + cancel messages per second all clients together got through the one matcher, and how many
//!    were refused (none should be);
//! 3. a taker's acknowledgement → its order update with fill status "settled" (`keyscope_subscribeOrders`),
//!    one fill at a time, against the configured `settle_interval_ms`;
//! 4. an owner's revoke of a key (its receipt) → the first order of that key the matcher refuses, and its
//!    resting orders taken off, against the configured `watch_ms`.
//!
//! `cargo bench -p keyscope-relayer --bench matcher` (CLIENTS × ORDERS places, RESTING per client, FILLS;
//! defaults 16 × 1000, 16, 60). Run as a test (`cargo test --benches`) it does a small smoke run that still
//! asserts every acknowledgement, cancel, settlement and the revoke's refusal.
//!
//! Orders are signed before the clock starts. A cancel request carries a timestamp the matcher takes within
//! 5 s either way of its clock, so the cancels are signed per round of `ROUND` places a client, before that
//! round's clock starts, stamped 3 s ahead; the rounds' wall times add up to the throughput's.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy::{
    network::EthereumWallet, providers::ProviderBuilder, signers::local::PrivateKeySigner,
};
use alloy_primitives::{Address, B256, Bytes, U256};
use common::*;
use jsonrpsee::{
    core::client::{ClientT, Subscription, SubscriptionClientT},
    rpc_params,
    ws_client::{WsClient, WsClientBuilder},
};
use keyscope_core::{
    devnet::publish_price,
    order::{OrderBuilder, OrderJson, TimeInForce, key_order_grant, order_hash, sign_order},
    order_request::{Request, RequestAction},
    units::parse_units,
};
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};

/// Places per client per round: the round's cancels are signed just before it.
const ROUND: usize = 100;

fn main() {
    let (clients, orders) = bench_sizes(("CLIENTS", 16), ("ORDERS", 1000), (2, 6));
    let (resting, fills) = bench_sizes(("RESTING", 16), ("FILLS", 60), (2, 3));
    assert!(
        clients >= 2,
        "CLIENTS must be at least 2 (a maker and a taker)"
    );
    assert!(resting >= 1, "RESTING must be at least 1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(clients, orders, resting, fills));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A session key as its orders name it.
#[derive(Clone)]
struct Key {
    account: Address,
    signer: PrivateKeySigner,
    grant: u32,
    epoch: u32,
    venue: Address,
    chain_id: u64,
}

/// A signed order: its id at the venue, its wire form and its signature.
struct Signed {
    hash: B256,
    order: OrderJson,
    sig: Bytes,
}

impl Key {
    async fn of(s: &Setup, t: &Trader) -> Self {
        let (grant, epoch) = key_order_grant(&s.provider, t.account, t.session.address())
            .await
            .unwrap();
        Self {
            account: t.account,
            signer: t.session.clone(),
            grant,
            epoch,
            venue: s.d.venue,
            chain_id: s.d.chain_id,
        }
    }

    /// A BTC order of `size` at `price` (whole dollars), expiring in 15 minutes.
    async fn order(
        &self,
        is_buy: bool,
        size: &str,
        price: u64,
        tif: TimeInForce,
        nonce: u64,
    ) -> Signed {
        let now = now_ms();
        let o = OrderBuilder::new(
            self.account,
            self.signer.address(),
            0,
            is_buy,
            parse_units(size, 18).unwrap(),
            parse_units(&price.to_string(), 18).unwrap(),
        )
        .grant(self.grant, self.epoch)
        .time_in_force(tif as u8)
        .expiry_ms(now + 900_000)
        .nonce(nonce)
        .build(now)
        .unwrap();
        let sig = sign_order(&self.signer, self.venue, self.chain_id, &o)
            .await
            .unwrap();
        Signed {
            hash: order_hash(self.venue, self.chain_id, &o),
            order: OrderJson::from(&o),
            sig,
        }
    }

    /// A signed request stamped `ts` (ms), as the request methods take it: (fields, signature).
    async fn request(&self, action: RequestAction, ts: u64) -> (Value, Bytes) {
        let req = Request {
            venue: self.venue,
            account: self.account,
            key: self.signer.address(),
            action: action.clone(),
            timestamp_ms: ts,
        };
        let sig = req.sign(&self.signer, self.chain_id).await.unwrap();
        let mut body =
            json!({ "account": self.account, "key": self.signer.address(), "timestampMs": ts });
        match action {
            RequestAction::Cancel(hashes) => body["orderHashes"] = json!(hashes),
            RequestAction::CancelAll => {}
            RequestAction::ScheduleCancel { at_ms } => body["atMs"] = json!(at_ms),
            RequestAction::Subscribe {
                cancel_on_disconnect,
            } => body["cancelOnDisconnect"] = json!(cancel_on_disconnect),
        }
        (body, sig)
    }

    /// This key's order updates on `ws`.
    async fn subscribe(&self, ws: &WsClient) -> Subscription<Value> {
        let (body, sig) = self
            .request(
                RequestAction::Subscribe {
                    cancel_on_disconnect: false,
                },
                now_ms(),
            )
            .await;
        ws.subscribe(
            "keyscope_subscribeOrders",
            rpc_params![body, sig],
            "keyscope_unsubscribeOrders",
        )
        .await
        .unwrap()
    }
}

async fn place(ws: &WsClient, o: &Signed) -> Result<Value, String> {
    ws.request("keyscope_placeOrder", rpc_params![&o.order, &o.sig])
        .await
        .map_err(|e| e.to_string())
}

async fn connect(s: &Setup) -> WsClient {
    WsClientBuilder::default()
        .build(s.relayer.ws_url())
        .await
        .unwrap()
}

/// One place, then (after the first `RESTING`) the cancel of the oldest order still resting.
struct Step {
    place: Signed,
    cancel: Option<(B256, Value, Bytes)>,
}

#[derive(Default)]
struct RoundOut {
    place_ms: Vec<f64>,
    cancel_ms: Vec<f64>,
    refused: Vec<String>,
    messages: usize,
}

async fn run_round(ws: Arc<WsClient>, steps: Vec<Step>) -> RoundOut {
    let mut out = RoundOut::default();
    for step in steps {
        let t0 = Instant::now();
        let ack = place(&ws, &step.place).await;
        out.place_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        out.messages += 1;
        match ack {
            Ok(a) if a["status"] == "resting" => {}
            Ok(a) => out
                .refused
                .push(format!("place acknowledged but not resting: {a}")),
            Err(e) => out.refused.push(format!("place: {e}")),
        }
        if let Some((hash, body, sig)) = step.cancel {
            let t0 = Instant::now();
            let done: Result<Value, _> = ws
                .request("keyscope_cancelOrders", rpc_params![body, sig])
                .await;
            out.cancel_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            out.messages += 1;
            match done {
                Ok(d) if d["cancelled"] == json!([hash]) => {}
                Ok(d) => out.refused.push(format!("cancel of {hash} cancelled {d}")),
                Err(e) => out.refused.push(format!("cancel: {e}")),
            }
        }
    }
    out
}

async fn run(clients: usize, orders: usize, resting: usize, fills: usize) {
    let s = setup("matcher", 42_240, BundlingMode::Auto, |_| {}).await;
    let mc = s.config.matcher.clone();
    let mut traders = Vec::new();
    let mut keys = Vec::new();
    for i in 0..clients {
        let t = s.trader(2_000 + i as u64, "100000").await;
        keys.push(Key::of(&s, &t).await);
        traders.push(t);
    }

    // 1 and 2: resting places and cancels, every order signed before the clock starts.
    let mut places: Vec<std::vec::IntoIter<Signed>> = Vec::new();
    let mut hashes: Vec<Vec<B256>> = Vec::new();
    for k in &keys {
        let mut v = Vec::with_capacity(orders);
        for i in 0..orders {
            // Bids 59,400..59,899 and asks 60,100..60,599: nothing crosses, everything within 1 % of 60,000.
            let level = (i / 2 % 500) as u64;
            let o = if i % 2 == 0 {
                k.order(
                    true,
                    "0.001",
                    59_400 + level,
                    TimeInForce::PostOnly,
                    i as u64,
                )
            } else {
                k.order(
                    false,
                    "0.001",
                    60_100 + level,
                    TimeInForce::PostOnly,
                    i as u64,
                )
            }
            .await;
            v.push(o);
        }
        hashes.push(v.iter().map(|o| o.hash).collect());
        places.push(v.into_iter());
    }
    let mut ws = Vec::new();
    for _ in 0..clients {
        ws.push(Arc::new(connect(&s).await));
    }
    let mut all = RoundOut::default();
    let mut wall = Duration::ZERO;
    let mut start = 0;
    while start < orders {
        let end = (start + ROUND).min(orders);
        // This round's cancels, stamped 3 s ahead: taken from 2 s before now until 8 s after.
        let ts = now_ms() + 3_000;
        let mut work = Vec::new();
        for (c, k) in keys.iter().enumerate() {
            let mut steps = Vec::new();
            for i in start..end {
                let place = places[c].next().unwrap();
                let cancel = match i.checked_sub(resting) {
                    Some(old) => {
                        let h = hashes[c][old];
                        let (body, sig) = k.request(RequestAction::Cancel(vec![h]), ts).await;
                        Some((h, body, sig))
                    }
                    None => None,
                };
                steps.push(Step { place, cancel });
            }
            work.push(steps);
        }
        let t0 = Instant::now();
        let tasks: Vec<_> = work
            .into_iter()
            .zip(&ws)
            .map(|(steps, ws)| tokio::spawn(run_round(ws.clone(), steps)))
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            all.place_ms.extend(r.place_ms);
            all.cancel_ms.extend(r.cancel_ms);
            all.refused.extend(r.refused);
            all.messages += r.messages;
        }
        wall += t0.elapsed();
        start = end;
    }
    assert!(
        all.refused.is_empty(),
        "{} of {} messages refused, e.g. {:?}",
        all.refused.len(),
        all.messages,
        &all.refused[..all.refused.len().min(3)]
    );
    let book = s.call("keyscope_getBook", json!([0, 500])).await.unwrap();
    let on_book = |book: &Value, side: &str| book[side].as_array().unwrap().len();
    assert!(
        on_book(&book, "bids") > 0 && on_book(&book, "asks") > 0,
        "nothing rests: {book}"
    );
    // Everything off the book again before the fills.
    for (k, ws) in keys.iter().zip(&ws) {
        let (body, sig) = k.request(RequestAction::CancelAll, now_ms()).await;
        let done: Value = ws
            .request("keyscope_cancelAllOrders", rpc_params![body, sig])
            .await
            .unwrap();
        assert_eq!(
            done["cancelled"].as_array().unwrap().len(),
            resting.min(orders)
        );
    }
    let book = s.call("keyscope_getBook", json!([0, 500])).await.unwrap();
    assert_eq!(
        (on_book(&book, "bids"), on_book(&book, "asks")),
        (0, 0),
        "the book is empty after every cancel-all: {book}"
    );
    let placed = all.place_ms.len();
    let cancels = all.cancel_ms.len();
    let line1 = format!(
        "place -> ack over WebSocket ({clients} clients, {placed} post-only orders resting, \
         at most {resting} a client): p50 {:.3} ms, p99 {:.3} ms (cancel -> ack: p50 {:.3} ms, p99 {:.3} ms)",
        quantile(&mut all.place_ms, 0.5),
        quantile(&mut all.place_ms, 0.99),
        if cancels > 0 {
            quantile(&mut all.cancel_ms, 0.5)
        } else {
            f64::NAN
        },
        if cancels > 0 {
            quantile(&mut all.cancel_ms, 0.99)
        } else {
            f64::NAN
        },
    );
    let line2 = format!(
        "place + cancel through one matcher: {:.0} messages/s ({} places + {cancels} cancels in {:.2} s), \
         refused: {}",
        all.messages as f64 / wall.as_secs_f64(),
        placed,
        wall.as_secs_f64(),
        all.refused.len(),
    );

    // 3: fill -> settled. A fresh oracle price (it is good for 120 s) so the venue takes the fills.
    let oracle = s.devnet.signer(0);
    let oracle_rpc = ProviderBuilder::new()
        .wallet(EthereumWallet::from(oracle.clone()))
        .connect_http(s.devnet.endpoint_url());
    publish_price(
        &oracle_rpc,
        &s.d,
        &oracle,
        0,
        parse_units("60000", 18).unwrap(),
    )
    .await
    .unwrap();
    let (maker, taker) = (&keys[0], &keys[1]);
    let mut pairs = Vec::new();
    for i in 0..fills {
        let nonce = (orders + i) as u64;
        pairs.push((
            maker
                .order(false, "0.001", 60_050, TimeInForce::PostOnly, nonce)
                .await,
            taker
                .order(true, "0.001", 60_100, TimeInForce::Ioc, nonce)
                .await,
        ));
    }
    let mut feed = taker.subscribe(&ws[1]).await;
    let (mut submit_ms, mut settle_ms) = (Vec::new(), Vec::new());
    for (i, (ask, bid)) in pairs.iter().enumerate() {
        // Fills settle once per interval: each fill starts at its own point of the interval (spread evenly,
        // in a scrambled order) rather than in step with the previous settlement.
        let phase = (i * 37 % 100) as u64 * mc.settle_interval_ms / 100;
        tokio::time::sleep(Duration::from_millis(phase)).await;
        let a = place(&ws[0], ask).await.unwrap();
        assert_eq!(a["status"], "resting", "{a}");
        let b = place(&ws[1], bid).await.unwrap();
        let acked = Instant::now();
        assert_eq!(b["status"], "filled", "the taker lifts the ask: {b}");
        assert_eq!(b["fills"].as_array().unwrap().len(), 1, "{b}");
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(30), feed.next())
                .await
                .expect("the fill settles within 30 s")
                .unwrap()
                .unwrap();
            if ev["orderHash"]
                .as_str()
                .and_then(|h| h.parse::<B256>().ok())
                != Some(bid.hash)
            {
                continue;
            }
            match ev["fill"]["status"].as_str() {
                Some("submitted") => submit_ms.push(acked.elapsed().as_secs_f64() * 1e3),
                Some("settled") => break,
                Some("refused") => panic!("the chain refused the fill: {ev}"),
                _ => {}
            }
        }
        settle_ms.push(acked.elapsed().as_secs_f64() * 1e3);
    }
    assert_eq!(
        submit_ms.len(),
        fills,
        "a \"submitted\" event for every fill"
    );
    let line3 = format!(
        "taker ack -> fill \"settled\" event ({} fills, one at a time, at spread points of the interval): \
         p50 {:.0} ms, p99 {:.0} ms (settle_interval_ms {}; ack -> \"submitted\": p50 {:.0} ms, \
         p99 {:.0} ms; anvil mines each transaction as it arrives)",
        settle_ms.len(),
        quantile(&mut settle_ms, 0.5),
        quantile(&mut settle_ms, 0.99),
        mc.settle_interval_ms,
        quantile(&mut submit_ms, 0.5),
        quantile(&mut submit_ms, 0.99),
    );
    drop(feed);

    // 4: revoke -> first refusal, while the key keeps placing resting bids.
    let owner = s.trader(2_999, "100000").await;
    let key = Key::of(&s, &owner).await;
    let rws = Arc::new(connect(&s).await);
    let mut feed = key.subscribe(&rws).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let looping = {
        let (key, rws, acked) = (key.clone(), rws.clone(), acked.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut hashes = Vec::new();
            for i in 0.. {
                assert!(
                    Instant::now() < deadline,
                    "no refusal 60 s into the revoked key's orders"
                );
                let o = key
                    .order(true, "0.001", 59_000 + i % 500, TimeInForce::PostOnly, i)
                    .await;
                match place(&rws, &o).await {
                    Ok(a) => {
                        assert_eq!(a["status"], "resting", "{a}");
                        hashes.push(o.hash);
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => return (hashes, Instant::now(), e),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            unreachable!()
        })
    };
    while acked.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let revoke = s
        .direct
        .owner_op(
            &owner.owner,
            U256::ZERO,
            vec![keyscope_core::ops::revoke_session(
                owner.account,
                owner.session.address(),
            )],
        )
        .await
        .unwrap();
    let sent = Instant::now();
    assert!(s.direct.send(&revoke).await.unwrap().success);
    let receipt = Instant::now();
    let (placed_before, refused_at, why) = looping.await.unwrap();
    assert!(
        why.contains("not active"),
        "the first refusal is the revoked session's: {why}"
    );
    let signed_ms = |a: Instant, b: Instant| match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(b.duration_since(a).as_secs_f64() * 1e3),
    };
    let to_refusal = signed_ms(refused_at, receipt);
    // Every order the key had resting is taken off (an order admitted just before the refresh may rest
    // until the next watch pass).
    let mut off = 0;
    let until = Instant::now() + Duration::from_secs(10);
    for h in &placed_before {
        loop {
            let v = s.call("keyscope_getOrder", json!([h])).await.unwrap();
            if v.is_null() || v["resting"] == "0x0" {
                off += 1;
                break;
            }
            assert!(
                Instant::now() < until,
                "{h} still rests after the revoke: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut cancelled_events = 0;
    let mut reason = Value::Null;
    while cancelled_events < placed_before.len() {
        let ev = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("a cancel event for every resting order")
            .unwrap()
            .unwrap();
        if ev["status"] == "cancelled" {
            cancelled_events += 1;
            reason = ev["reason"].clone();
        }
    }
    let line4 = format!(
        "revoke receipt -> first refused place: {to_refusal:.0} ms (revoke sent -> refused {:.0} ms; \
         watch_ms {}); resting orders of the key cancelled: {off} of {} (events: {cancelled_events}, reason {reason})",
        signed_ms(refused_at, sent),
        mc.watch_ms,
        placed_before.len(),
    );
    println!(
        "matcher (chain 42240, in-process relayer, anvil):\n  {line1}\n  {line2}\n  {line3}\n  {line4}"
    );
    s.relayer.stop().await;
}
