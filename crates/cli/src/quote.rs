//! `keyscope quote place|cancel|cancel-all|schedule-cancel|book|order|watch`: a market maker's signed
//! off-chain orders, sent to the relayer's matcher (`keyscope_placeOrder` and the other methods of
//! `keyscope_relayer::rpc::orders`). Orders and requests are signed by a session key — given here
//! (`--session-key`, either curve) or held by `keyscope signer` (`--signer` with `--key-id`) — with the
//! key's grant id and order epoch read from the chain. The relayer is `--bundler` / `KEYSCOPE_BUNDLER`
//! (HTTP; `watch` uses the same address over WebSocket).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::{
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use alloy_primitives::{Address, B256, Bytes, U256};
use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use jsonrpsee::{core::client::SubscriptionClientT, rpc_params, ws_client::WsClientBuilder};
use keyscope_core::{
    KeySigner, P256Key,
    deployment::Deployment,
    key::Curve,
    order::{Order, OrderBuilder, OrderJson, TimeInForce, key_order_grant, sign_order},
    order_request::{Request, RequestAction},
    signer,
    units::{format_units, parse_units},
};
use keyscope_signer::SignerClient;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{context::Ctx, global::Global, output::emit};

#[derive(Debug, Subcommand)]
pub(crate) enum QuoteCommand {
    /// Sign an order with the session key and place it with the matcher.
    Place {
        /// The market, by name (BTC).
        #[arg(long)]
        market: String,
        #[arg(long, value_enum)]
        side: Side,
        /// Size in base units (0.1 = a tenth of a BTC).
        #[arg(long)]
        size: String,
        /// Limit price in USD.
        #[arg(long)]
        price: String,
        /// Refused if it would take liquidity (a maker's quote).
        #[arg(long, conflicts_with = "ioc")]
        post_only: bool,
        /// Immediate or cancel: takes what it can, rests nothing. Without --post-only or --ioc the order is
        /// good until it expires.
        #[arg(long)]
        ioc: bool,
        /// How long the order lives: 500ms, 60s, 5m, 1h.
        #[arg(long, default_value = "60s")]
        expires_in: String,
        /// Only reduce the position.
        #[arg(long)]
        reduce_only: bool,
        /// The order's nonce (its bit in the key's cancel bitmap) [default: the clock in ms].
        #[arg(long)]
        nonce: Option<u64>,
        #[command(flatten)]
        key: QuoteKeyArgs,
    },
    /// Cancel resting orders of the key by order hash.
    Cancel {
        /// Order hashes (as `quote place` prints them).
        #[arg(required = true)]
        order_hashes: Vec<B256>,
        #[command(flatten)]
        key: QuoteKeyArgs,
    },
    /// Cancel every resting order of the key.
    CancelAll {
        #[command(flatten)]
        key: QuoteKeyArgs,
    },
    /// Have the matcher cancel every resting order of the key at a time unless moved again (a dead-man
    /// switch for quotes: re-run it before it fires), or clear it.
    ScheduleCancel {
        /// Fire this long from now (at least 5s): 10s, 1m.
        #[arg(
            long = "in",
            value_name = "DURATION",
            required_unless_present = "clear",
            conflicts_with = "clear"
        )]
        after: Option<String>,
        /// Clear the scheduled cancel.
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        key: QuoteKeyArgs,
    },
    /// A market's book, best levels first.
    Book {
        #[arg(long)]
        market: String,
        /// Levels per side.
        #[arg(long, default_value_t = 10)]
        depth: usize,
    },
    /// One order as the matcher holds it.
    Order {
        /// The order hash.
        order_hash: B256,
    },
    /// Stream the key's order updates and fills, one line each, until Ctrl-C.
    Watch {
        /// The matcher cancels the key's resting orders when this stream closes.
        #[arg(long)]
        cancel_on_disconnect: bool,
        #[command(flatten)]
        key: QuoteKeyArgs,
    },
}

/// A side of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Side {
    Buy,
    Sell,
}

/// The session key that signs quotes and requests (`order`'s key flags).
pub(crate) type QuoteKeyArgs = crate::order::KeySourceArgs;

/// What signs orders and requests.
enum KeyHandle {
    K1(PrivateKeySigner),
    P256(P256Key),
    Sidecar(SignerClient, Address),
}

impl KeyHandle {
    async fn open(args: &QuoteKeyArgs) -> anyhow::Result<Self> {
        if let (Some(socket), Some(id)) = (&args.signer, args.key_id) {
            return Ok(Self::Sidecar(wait_for_signer(socket).await?, id));
        }
        let Some(hex) = &args.session_key else {
            bail!(
                "name the session key that signs: --session-key <HEX> (or KEYSCOPE_SESSION_KEY), or --signer \
                 <SOCKET> with --key-id <ID>"
            );
        };
        Ok(match args.key_type {
            Curve::Secp256k1 => Self::K1(signer::from_hex(hex)?),
            Curve::P256 => {
                let scalar: B256 = hex
                    .trim()
                    .parse()
                    .context("the P-256 session key is not 32 bytes of hex")?;
                Self::P256(P256Key::from_bytes(&scalar)?)
            }
        })
    }

    fn id(&self) -> Address {
        match self {
            Self::K1(k) => k.address(),
            Self::P256(k) => k.id(),
            Self::Sidecar(_, id) => *id,
        }
    }

    async fn sign_order(
        &self,
        venue: Address,
        chain_id: u64,
        order: &Order,
    ) -> anyhow::Result<Bytes> {
        Ok(match self {
            Self::K1(k) => sign_order(k, venue, chain_id, order).await?,
            Self::P256(k) => sign_order(k, venue, chain_id, order).await?,
            Self::Sidecar(c, _) => c.sign_order(venue, order).await?.signature,
        })
    }

    async fn sign_request(&self, chain_id: u64, request: &Request) -> anyhow::Result<Bytes> {
        Ok(match self {
            Self::K1(k) => request.sign(k, chain_id).await?,
            Self::P256(k) => request.sign(k, chain_id).await?,
            Self::Sidecar(c, _) => c.sign_request(request).await?.signature,
        })
    }
}

/// A connection to the sidecar, waiting up to 10 s for one still starting (it decrypts its keystores and
/// reads the chain before it opens its socket).
async fn wait_for_signer(socket: &std::path::Path) -> anyhow::Result<SignerClient> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match SignerClient::connect(socket).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Milliseconds since the Unix epoch: the matcher's clock for expiries and request timestamps.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// `500ms`, `10s`, `5m`, `1h` in milliseconds.
fn parse_duration_ms(flag: &str, s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        anyhow::anyhow!("{flag} {s:?} is not a duration: write 500ms, 10s, 5m or 1h")
    })?;
    let per = match unit {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => bail!("{flag} {s:?}: unknown unit {unit:?}; write 500ms, 10s, 5m or 1h"),
    };
    n.checked_mul(per).filter(|ms| *ms > 0).ok_or_else(|| {
        anyhow::anyhow!("{flag} {s:?} must be more than zero and fit in milliseconds")
    })
}

/// The deployment, without an owner key: --deployment (KEYSCOPE_DEPLOYMENT), else
/// <project>/deployments/<chainId>.json for the chain at --rpc (as every command finds it).
async fn read_deployment(g: &Global) -> anyhow::Result<Deployment> {
    if let Some(path) = &g.deployment {
        return Ok(Deployment::load(path)?);
    }
    let url = g
        .rpc
        .parse()
        .with_context(|| format!("--rpc {:?} is not a URL", g.rpc))?;
    let chain_id = ProviderBuilder::new()
        .connect_http(url)
        .get_chain_id()
        .await
        .with_context(|| {
            format!(
                "cannot reach {} (is the chain running? `keyscope devnet` starts one)",
                g.rpc
            )
        })?;
    Ok(Deployment::load(
        g.project
            .join("deployments")
            .join(format!("{chain_id}.json")),
    )?)
}

/// The relayer's HTTP address: --bundler / KEYSCOPE_BUNDLER.
fn relayer_url(g: &Global) -> anyhow::Result<&str> {
    g.bundler.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "no relayer: signed orders go to the relayer's matcher; pass --bundler <URL> or set KEYSCOPE_BUNDLER \
             (`keyscope devnet` runs one at http://localhost:4337)"
        )
    })
}

/// Calls `method` on the relayer; a refusal reads as the matcher's message with its code.
async fn call(g: &Global, url: &str, method: &str, params: Value) -> anyhow::Result<Value> {
    crate::apikey::call(g, url, method, params)
        .await
        .map_err(|e| {
            let message = e["message"].as_str().unwrap_or("no message").to_string();
            match e["code"].as_i64() {
                Some(code) => anyhow::anyhow!("the matcher refused ({code}): {message}"),
                None => anyhow::anyhow!(
                    "cannot reach the relayer at {url} ({message}); is it running (`keyscope devnet` runs one) and is \
                     --bundler / KEYSCOPE_BUNDLER its address?"
                ),
            }
        })
}

/// An 18-decimal amount as people write it.
fn amount(v: U256) -> String {
    format_units(v, 18)
}

fn market_name(deployment: &Deployment, id: u32) -> String {
    deployment
        .market_name(id)
        .map_or_else(|| format!("market {id}"), str::to_string)
}

/// The matcher's answer to a placed order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ack {
    order_hash: B256,
    status: String,
    filled: U256,
    resting: U256,
    fills: Vec<u64>,
}

/// The matcher's answer to a cancel or schedule request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Done {
    cancelled: Vec<B256>,
    scheduled_cancel_ms: Option<u64>,
}

pub(crate) async fn run(g: &Global, cmd: QuoteCommand) -> anyhow::Result<()> {
    // Reading the book or an order needs no key: only the deployment, for market names.
    match cmd {
        QuoteCommand::Book { market, depth } => {
            let deployment = read_deployment(g).await?;
            let id = deployment.market_id(&market)?;
            let book = call(g, relayer_url(g)?, "keyscope_getBook", json!([id, depth])).await?;
            return print_book(g.json, &deployment, id, book);
        }
        QuoteCommand::Order { order_hash } => {
            let deployment = read_deployment(g).await?;
            let order = call(g, relayer_url(g)?, "keyscope_getOrder", json!([order_hash])).await?;
            if order.is_null() {
                bail!(
                    "order {order_hash} is not on this matcher: never placed here, or finished long ago (the \
                     matcher remembers its last 10,000 finished orders; `keyscope quote watch` streams what happens \
                     to them)"
                );
            }
            return print_order(g.json, &deployment, order);
        }
        _ => {}
    }
    let ctx = Ctx::connect(g).await?;
    match cmd {
        QuoteCommand::Place {
            market,
            side,
            size,
            price,
            post_only,
            ioc,
            expires_in,
            reduce_only,
            nonce,
            key,
        } => {
            let p = PlaceArgs {
                market,
                side,
                size,
                price,
                tif: if post_only {
                    TimeInForce::PostOnly
                } else if ioc {
                    TimeInForce::Ioc
                } else {
                    TimeInForce::Gtt
                },
                expires_in,
                reduce_only,
                nonce,
            };
            place(g, &ctx, p, &key).await
        }
        QuoteCommand::Cancel { order_hashes, key } => {
            request(g, &ctx, &key, |_| RequestAction::Cancel(order_hashes)).await
        }
        QuoteCommand::CancelAll { key } => {
            request(g, &ctx, &key, |_| RequestAction::CancelAll).await
        }
        QuoteCommand::ScheduleCancel { after, clear, key } => {
            let ahead_ms = match (after, clear) {
                (_, true) => None,
                (Some(after), false) => Some(parse_duration_ms("--in", &after)?),
                (None, false) => bail!("say when: --in 10s, or --clear"),
            };
            // Counted from the request's own timestamp, as the matcher counts it.
            request(g, &ctx, &key, |now| RequestAction::ScheduleCancel {
                at_ms: ahead_ms.map_or(0, |ahead| now + ahead),
            })
            .await
        }
        QuoteCommand::Book { .. } | QuoteCommand::Order { .. } => unreachable!("answered above"),
        QuoteCommand::Watch {
            cancel_on_disconnect,
            key,
        } => watch(g, &ctx, &key, cancel_on_disconnect).await,
    }
}

struct PlaceArgs {
    market: String,
    side: Side,
    size: String,
    price: String,
    tif: TimeInForce,
    expires_in: String,
    reduce_only: bool,
    nonce: Option<u64>,
}

async fn place(g: &Global, ctx: &Ctx, p: PlaceArgs, key: &QuoteKeyArgs) -> anyhow::Result<()> {
    let url = relayer_url(g)?;
    let market = ctx.deployment.market_id(&p.market)?;
    let size = parse_units(&p.size, 18).with_context(|| format!("--size {:?}", p.size))?;
    if size.is_zero() {
        bail!("--size must be more than zero");
    }
    let price = parse_units(&p.price, 18).with_context(|| format!("--price {:?}", p.price))?;
    if price.is_zero() {
        bail!("--price must be more than zero");
    }
    let lifetime = parse_duration_ms("--expires-in", &p.expires_in)?;
    ctx.require_account().await?;
    let signer = KeyHandle::open(key).await?;
    let id = signer.id();
    let (grant_id, epoch) = key_order_grant(&ctx.provider, ctx.account, id)
        .await
        .with_context(|| format!("reading session key {id}'s grant on {}", ctx.account))?;
    let now = now_ms();
    let order = OrderBuilder::new(ctx.account, id, market, p.side == Side::Buy, size, price)
        .grant(grant_id, epoch)
        .time_in_force(p.tif as u8)
        .reduce_only(p.reduce_only)
        .expiry_ms(now + lifetime)
        .nonce(p.nonce.unwrap_or(now))
        .build(now)?;
    let venue = ctx.deployment.venue;
    let signature = signer
        .sign_order(venue, ctx.deployment.chain_id, &order)
        .await?;
    let answer = call(
        g,
        url,
        "keyscope_placeOrder",
        json!([OrderJson::from(&order), signature]),
    )
    .await?;
    let ack: Ack = serde_json::from_value(answer.clone()).with_context(|| {
        format!("the matcher's answer {answer} is not an order acknowledgement")
    })?;
    let side = match p.side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    };
    let tif = match p.tif {
        TimeInForce::Gtt => "good til time",
        TimeInForce::Ioc => "ioc",
        TimeInForce::PostOnly => "post-only",
    };
    emit(
        ctx.json,
        json!({
            "orderHash": ack.order_hash,
            "status": ack.status,
            "market": market_name(&ctx.deployment, market),
            "side": side,
            "size": amount(size),
            "price": amount(price),
            "timeInForce": tif,
            "filled": amount(ack.filled),
            "resting": amount(ack.resting),
            "fills": ack.fills,
            "key": id,
            "nonce": order.nonce,
            "expiryMs": order.expiry,
        }),
        || {
            let mut line = format!(
                "{side} {} {} @ {} ({tif}) {}: filled {}, resting {}; order {}",
                amount(size),
                market_name(&ctx.deployment, market),
                amount(price),
                if ack.status == "partiallyFilled" {
                    "partially filled"
                } else {
                    &ack.status
                },
                amount(ack.filled),
                amount(ack.resting),
                ack.order_hash
            );
            if !ack.fills.is_empty() {
                line.push_str(&format!(
                    "\n{} fill(s) matched; the matcher settles them on chain (`keyscope portfolio` shows the position)",
                    ack.fills.len()
                ));
            }
            line
        },
    );
    Ok(())
}

/// Signs the request `action` makes of its timestamp (now, in ms) for the key's account, and sends it.
async fn request(
    g: &Global,
    ctx: &Ctx,
    key: &QuoteKeyArgs,
    action: impl FnOnce(u64) -> RequestAction,
) -> anyhow::Result<()> {
    let url = relayer_url(g)?;
    ctx.require_account().await?;
    let signer = KeyHandle::open(key).await?;
    let now = now_ms();
    let req = Request {
        venue: ctx.deployment.venue,
        account: ctx.account,
        key: signer.id(),
        action: action(now),
        timestamp_ms: now,
    };
    let signature = signer.sign_request(ctx.deployment.chain_id, &req).await?;
    let mut params =
        json!({ "account": req.account, "key": req.key, "timestampMs": req.timestamp_ms });
    let method = match &req.action {
        RequestAction::Cancel(hashes) => {
            params["orderHashes"] = json!(hashes);
            "keyscope_cancelOrders"
        }
        RequestAction::CancelAll => "keyscope_cancelAllOrders",
        RequestAction::ScheduleCancel { at_ms } => {
            params["atMs"] = json!(at_ms);
            "keyscope_scheduleCancel"
        }
        RequestAction::Subscribe { .. } => unreachable!("watch subscribes"),
    };
    let answer = call(g, url, method, json!([params, signature])).await?;
    let done: Done = serde_json::from_value(answer.clone())
        .with_context(|| format!("the matcher's answer {answer} is not a request's result"))?;
    let key_id = req.key;
    emit(
        ctx.json,
        json!({
            "key": key_id,
            "cancelled": done.cancelled,
            "scheduledCancelMs": done.scheduled_cancel_ms,
        }),
        || {
            let mut out = match (&req.action, done.cancelled.len()) {
                (RequestAction::ScheduleCancel { at_ms: 0 }, _) => {
                    format!("scheduled cancel of key {key_id}'s orders cleared")
                }
                (RequestAction::ScheduleCancel { at_ms }, _) => format!(
                    "every resting order of key {key_id} will be cancelled in {:.1} s unless this is run again \
                     (or --clear)",
                    at_ms.saturating_sub(now_ms()) as f64 / 1000.0
                ),
                (_, 0) => format!("cancelled nothing: key {key_id} had no order resting"),
                (_, n) => format!("cancelled {n} order(s) of key {key_id}"),
            };
            for h in &done.cancelled {
                out.push_str(&format!("\n  {h}"));
            }
            out
        },
    );
    Ok(())
}

fn print_book(
    json_mode: bool,
    deployment: &Deployment,
    market: u32,
    book: Value,
) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Book {
        bids: Vec<(U256, U256)>,
        asks: Vec<(U256, U256)>,
    }
    let b: Book = serde_json::from_value(book.clone())
        .with_context(|| format!("the matcher's answer {book} is not a book"))?;
    let levels = |side: &[(U256, U256)]| -> Vec<Value> {
        side.iter()
            .map(|(p, s)| json!({ "price": amount(*p), "size": amount(*s) }))
            .collect()
    };
    let name = market_name(deployment, market);
    emit(
        json_mode,
        json!({ "market": name, "bids": levels(&b.bids), "asks": levels(&b.asks) }),
        || {
            let mut out = format!("{name} book");
            if b.asks.is_empty() {
                out.push_str("\n  no asks");
            }
            // Asks from the highest down, then bids from the best down: the spread in the middle.
            for (p, s) in b.asks.iter().rev() {
                out.push_str(&format!("\n  ask {} x {}", amount(*p), amount(*s)));
            }
            for (p, s) in &b.bids {
                out.push_str(&format!("\n  bid {} x {}", amount(*p), amount(*s)));
            }
            if b.bids.is_empty() {
                out.push_str("\n  no bids");
            }
            out
        },
    );
    Ok(())
}

fn print_order(json_mode: bool, deployment: &Deployment, view: Value) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct View {
        order_hash: B256,
        order: OrderJson,
        status: String,
        reason: Option<String>,
        filled: U256,
        resting: U256,
    }
    let v: View = serde_json::from_value(view.clone())
        .with_context(|| format!("the matcher's answer {view} is not an order"))?;
    let o = &v.order;
    let tif = match TimeInForce::try_from(o.time_in_force) {
        Ok(TimeInForce::Gtt) => "good til time",
        Ok(TimeInForce::Ioc) => "ioc",
        Ok(TimeInForce::PostOnly) => "post-only",
        Err(_) => "unknown time in force",
    };
    let side = if o.is_buy { "buy" } else { "sell" };
    let market = market_name(deployment, o.market_id);
    emit(
        json_mode,
        json!({
            "orderHash": v.order_hash,
            "market": market,
            "side": side,
            "size": amount(o.size),
            "price": amount(o.limit_price),
            "timeInForce": tif,
            "reduceOnly": o.reduce_only,
            "status": v.status,
            "reason": v.reason,
            "filled": amount(v.filled),
            "resting": amount(v.resting),
            "key": o.key,
            "account": o.account,
            "expiryMs": o.expiry,
            "nonce": o.nonce,
            "order": o,
        }),
        || {
            format!(
                "order {}: {side} {} {market} @ {} ({tif}{}), {}{}, filled {}, resting {}; key {} of {}, expires {} \
                 ms, nonce {}",
                v.order_hash,
                amount(o.size),
                amount(o.limit_price),
                if o.reduce_only { ", reduce-only" } else { "" },
                v.status,
                v.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                amount(v.filled),
                amount(v.resting),
                o.key,
                o.account,
                o.expiry,
                o.nonce
            )
        },
    );
    Ok(())
}

/// The relayer's WebSocket address: its HTTP address with the ws scheme (same port).
fn ws_url(http: &str) -> anyhow::Result<String> {
    if let Some(rest) = http.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = http.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else if http.starts_with("ws://") || http.starts_with("wss://") {
        Ok(http.to_string())
    } else {
        bail!("--bundler {http:?} is not an http(s) or ws(s) URL")
    }
}

async fn watch(
    g: &Global,
    ctx: &Ctx,
    key: &QuoteKeyArgs,
    cancel_on_disconnect: bool,
) -> anyhow::Result<()> {
    let url = ws_url(relayer_url(g)?)?;
    ctx.require_account().await?;
    let signer = KeyHandle::open(key).await?;
    let req = Request {
        venue: ctx.deployment.venue,
        account: ctx.account,
        key: signer.id(),
        action: RequestAction::Subscribe {
            cancel_on_disconnect,
        },
        timestamp_ms: now_ms(),
    };
    let signature = signer.sign_request(ctx.deployment.chain_id, &req).await?;
    let client = WsClientBuilder::default()
        .build(&url)
        .await
        .with_context(|| format!("cannot open a WebSocket to the relayer at {url}"))?;
    let params = json!({
        "account": req.account,
        "key": req.key,
        "cancelOnDisconnect": cancel_on_disconnect,
        "timestampMs": req.timestamp_ms,
    });
    let mut sub = client
        .subscribe::<Value, _>(
            "keyscope_subscribeOrders",
            rpc_params![params, signature],
            "keyscope_unsubscribeOrders",
        )
        .await
        .map_err(|e| match e {
            jsonrpsee::core::ClientError::Call(obj) => anyhow::anyhow!(
                "the matcher refused the subscription ({}): {}",
                obj.code(),
                obj.message()
            ),
            other => anyhow::anyhow!("subscribing at {url}: {other}"),
        })?;
    if !ctx.json {
        eprintln!(
            "watching key {}'s orders on {}{}; Ctrl-C stops",
            req.key,
            ctx.account,
            if cancel_on_disconnect {
                " (its resting orders are cancelled when this stops)"
            } else {
                ""
            }
        );
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            ev = sub.next() => match ev {
                Some(Ok(ev)) => emit(ctx.json, ev.clone(), || update_line(ctx, &ev)),
                Some(Err(e)) => bail!("the order stream broke: {e}"),
                None => bail!("the relayer closed the order stream (it stopped, or this reader fell behind)"),
            },
        }
    }
}

/// One order update as a line.
fn update_line(ctx: &Ctx, ev: &Value) -> String {
    let num = |v: &Value| {
        serde_json::from_value::<U256>(v.clone())
            .map(amount)
            .unwrap_or_else(|_| v.to_string())
    };
    let market = ev["marketId"]
        .as_u64()
        .map_or_else(|| "?".into(), |m| market_name(&ctx.deployment, m as u32));
    let mut line = format!(
        "{} {} {} {}: filled {}, remaining {}",
        ev["orderHash"].as_str().unwrap_or("?"),
        ev["status"].as_str().unwrap_or("?"),
        if ev["isBuy"] == true { "buy" } else { "sell" },
        market,
        num(&ev["filled"]),
        num(&ev["remaining"]),
    );
    if let Some(fill) = ev.get("fill").filter(|f| !f.is_null()) {
        line.push_str(&format!(
            "; fill {} of {} @ {} {}",
            fill["id"],
            num(&fill["size"]),
            num(&fill["price"]),
            fill["status"].as_str().unwrap_or("?")
        ));
        if let Some(tx) = fill["transactionHash"].as_str() {
            line.push_str(&format!(" (tx {tx})"));
        }
    }
    if let Some(reason) = ev["reason"].as_str() {
        line.push_str(&format!(" ({reason})"));
    }
    line
}
