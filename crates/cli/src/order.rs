//! `keyscope order place|close|heartbeat|hand-over` and `keyscope portfolio`.

use std::path::PathBuf;

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, Bytes, I256, U256};
use anyhow::Context;
use clap::Subcommand;
use keyscope_core::{
    KeySigner, P256Key,
    bindings::{PerpVenue, SignedPriceOracle},
    key::Curve,
    ops, signer,
    units::{format_units, parse_units},
    user_op::PackedUserOperation,
};
use keyscope_signer::SignerClient;
use serde_json::json;

use crate::{
    context::Ctx,
    global::Global,
    output::{emit, outcome_json},
};

#[derive(Debug, Subcommand)]
pub(crate) enum OrderCommand {
    /// Place an order (fills at the oracle price if it is within --limit).
    Place {
        #[arg(long)]
        market: String,
        /// Signed size in base units: 0.1 buys, -0.1 sells.
        #[arg(long, allow_hyphen_values = true)]
        size: String,
        /// Worst price in USD: a ceiling for buys, a floor for sells.
        #[arg(long)]
        limit: String,
        #[arg(long)]
        reduce_only: bool,
        #[command(flatten)]
        key: SessionKeyArgs,
    },
    /// Close the whole position in a market with a reduce-only order.
    Close {
        #[arg(long)]
        market: String,
        /// Worst price as a fraction away from the oracle price.
        #[arg(long, default_value = "0.01")]
        slippage: String,
        #[command(flatten)]
        key: SessionKeyArgs,
    },
    /// Arm or renew the session key's dead-man switch: if no heartbeat follows within --interval seconds,
    /// the key can only deposit, cancel and reduce until the next one.
    Heartbeat {
        /// Seconds until the switch trips (1 to 604800).
        #[arg(long)]
        interval: u32,
        #[command(flatten)]
        key: SessionKeyArgs,
    },
    /// Hand the session key's session (scope and what is left of its budgets) to the successor the owner
    /// committed at grant; the key dies.
    HandOver {
        #[command(flatten)]
        key: SessionKeyArgs,
    },
}

/// A session key that signs: given here (either curve), or held by the `keyscope signer` sidecar. Shared by
/// `order` (where, without one, the owner signs) and `quote` (which needs one).
#[derive(Debug, clap::Args)]
pub(crate) struct KeySourceArgs {
    /// Session private key (hex).
    #[arg(
        long = "session-key",
        env = "KEYSCOPE_SESSION_KEY",
        hide_env_values = true
    )]
    pub(crate) session_key: Option<String>,
    /// The session key's curve: secp256k1, or p256 (HSM, enclave and passkey keys).
    #[arg(long, default_value = "secp256k1")]
    pub(crate) key_type: Curve,
    /// Sign through the `keyscope signer` sidecar listening on this socket (with --key-id): this process
    /// never sees the key.
    #[arg(
        long,
        env = "KEYSCOPE_SIGNER",
        requires = "key_id",
        conflicts_with = "session_key"
    )]
    pub(crate) signer: Option<PathBuf>,
    /// The sidecar key's id (address or P-256 key id; `keyscope signer` lists them).
    #[arg(long)]
    pub(crate) key_id: Option<Address>,
}

/// Sign as a session key instead of the owner: a key given here, or a key held by `keyscope signer`;
/// without either, the owner signs.
#[derive(Debug, clap::Args)]
pub(crate) struct SessionKeyArgs {
    #[command(flatten)]
    source: KeySourceArgs,
    /// Nonce lane of the session key (parallel streams use different lanes).
    #[arg(long, default_value_t = 0)]
    lane: u32,
    /// How long the op stays valid, in seconds, at most the key's maxOpTtl [default: 30, or the key's
    /// maxOpTtl if shorter].
    #[arg(long)]
    ttl: Option<u64>,
}

fn signed_units(s: &str, decimals: u8) -> anyhow::Result<I256> {
    let (neg, digits) = match s.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.trim()),
    };
    let v = I256::try_from(parse_units(digits, decimals)?)?;
    Ok(if neg { -v } else { v })
}

async fn send_order(
    g: &Global,
    ctx: &Ctx,
    key: &SessionKeyArgs,
    market: u32,
    size: I256,
    limit: U256,
    reduce_only: bool,
) -> anyhow::Result<()> {
    let call = vec![ops::place_order(
        ctx.deployment.venue,
        market,
        size,
        limit,
        reduce_only,
    )];
    let (op, signer_name) = match session_key_id(key)? {
        Some(id) => {
            let op = sign_as_key(ctx, key, ops::session_call_data(id, call)).await?;
            (op, format!("session key {id}"))
        }
        None => (
            ctx.client.owner_op(&ctx.owner, Ctx::salt(g), call).await?,
            "owner".to_string(),
        ),
    };
    let outcome = ctx.send(&op).await?;
    let position = PerpVenue::new(ctx.deployment.venue, &ctx.provider)
        .position(ctx.account, market)
        .call()
        .await?;
    emit(
        ctx.json,
        json!({ "market": market, "size": size.to_string(), "positionSize": position.size.to_string(), "signer": signer_name, "op": outcome_json(&outcome) }),
        || {
            format!(
                "filled {} {} (signed by {signer_name}); position now {} (op {})",
                fmt_signed(size),
                ctx.deployment.market_name(market).unwrap_or("?"),
                fmt_signed(position.size),
                outcome.user_op_hash
            )
        },
    );
    Ok(())
}

/// The session key the flags name (its address or P-256 id), or None when the owner signs.
fn session_key_id(key: &SessionKeyArgs) -> anyhow::Result<Option<Address>> {
    if let Some(id) = key.source.key_id.filter(|_| key.source.signer.is_some()) {
        return Ok(Some(id));
    }
    Ok(match &key.source.session_key {
        None => None,
        Some(hex) => Some(match key.source.key_type {
            Curve::Secp256k1 => signer::from_hex(hex)?.address(),
            Curve::P256 => p256_from_hex(hex)?.id(),
        }),
    })
}

fn p256_from_hex(hex: &str) -> anyhow::Result<P256Key> {
    let scalar: B256 = hex
        .trim()
        .parse()
        .context("the P-256 session key is not 32 bytes of hex")?;
    Ok(P256Key::from_bytes(&scalar)?)
}

/// An op of the session key the flags name, with `call_data`, signed by it: here, or by the sidecar.
async fn sign_as_key(
    ctx: &Ctx,
    key: &SessionKeyArgs,
    call_data: Bytes,
) -> anyhow::Result<PackedUserOperation> {
    let id = session_key_id(key)?
        .context("name a session key: --session-key, or --signer with --key-id")?;
    let ttl = op_ttl(ctx, id, key.ttl).await?;
    let op = ctx
        .client
        .unsigned_key_op(id, ctx.account, key.lane, call_data)
        .await?;
    if let Some(socket) = &key.source.signer {
        let mut op = op;
        let until = ctx.client.chain_time().await? + ttl;
        let signed = connect_signer(socket).await?.sign(&op, Some(until)).await?;
        op.signature = signed.signature;
        return Ok(op);
    }
    let hex = key
        .source
        .session_key
        .as_deref()
        .expect("a key id without --signer comes from --session-key");
    Ok(match key.source.key_type {
        Curve::Secp256k1 => {
            let k: PrivateKeySigner = signer::from_hex(hex)?;
            ctx.client.sign_key_op(&k, ctx.account, op, ttl).await?
        }
        Curve::P256 => {
            let k = p256_from_hex(hex)?;
            ctx.client.sign_key_op(&k, ctx.account, op, ttl).await?
        }
    })
}

/// How long `key`'s op lives: `asked`, refused past the key's maxOpTtl (the account would refuse the op);
/// by default 30 s, or the key's maxOpTtl when that is shorter, so a key granted a short ttl still trades.
async fn op_ttl(ctx: &Ctx, key: Address, asked: Option<u64>) -> anyhow::Result<u64> {
    const DEFAULT: u64 = 30;
    let max = keyscope_core::bindings::ISessionManager::new(ctx.account, &ctx.provider)
        .getSession(key)
        .call()
        .await?
        .maxOpTtl as u64;
    Ok(match asked {
        Some(t) if max != 0 && t > max => anyhow::bail!(
            "--ttl {t} is longer than session key {key}'s maxOpTtl of {max} s: the account would refuse the op; \
             pass --ttl {max} or less"
        ),
        Some(t) => t,
        None if max != 0 => DEFAULT.min(max),
        None => DEFAULT,
    })
}

/// Connects to the sidecar, waiting up to 10 s for a sidecar that is still starting (opening its keys and
/// reading the chain) to open its socket.
async fn connect_signer(socket: &std::path::Path) -> anyhow::Result<SignerClient> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SignerClient::connect(socket).await {
            Ok(c) => return Ok(c),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// The session key's own op (heartbeat or hand-over), sent.
async fn send_key_op(
    ctx: &Ctx,
    key: &SessionKeyArgs,
    call_data: impl FnOnce(Address) -> Bytes,
    what: &str,
) -> anyhow::Result<()> {
    let id = session_key_id(key)?
        .context("name a session key: --session-key, or --signer with --key-id")?;
    let op = sign_as_key(ctx, key, call_data(id)).await?;
    let outcome = ctx.send(&op).await?;
    emit(
        ctx.json,
        json!({ "key": id, "done": what, "op": outcome_json(&outcome) }),
        || format!("{what} for {id} (op {})", outcome.user_op_hash),
    );
    Ok(())
}

fn fmt_signed(v: I256) -> String {
    let s = format_units(v.unsigned_abs(), 18);
    if v.is_negative() { format!("-{s}") } else { s }
}

pub(crate) async fn run(g: &Global, cmd: OrderCommand) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    match cmd {
        OrderCommand::Place {
            market,
            size,
            limit,
            reduce_only,
            key,
        } => {
            let id = ctx.deployment.market_id(&market)?;
            let size = signed_units(&size, 18)?;
            if size.is_zero() {
                anyhow::bail!("--size must not be zero");
            }
            send_order(
                g,
                &ctx,
                &key,
                id,
                size,
                parse_units(&limit, 18)?,
                reduce_only,
            )
            .await
        }
        OrderCommand::Close {
            market,
            slippage,
            key,
        } => {
            let id = ctx.deployment.market_id(&market)?;
            let position = PerpVenue::new(ctx.deployment.venue, &ctx.provider)
                .position(ctx.account, id)
                .call()
                .await?;
            if position.size.is_zero() {
                anyhow::bail!("no open position in {market}");
            }
            let price = SignedPriceOracle::new(ctx.deployment.oracle, &ctx.provider)
                .freshPrice(id)
                .call()
                .await?
                .price;
            let slip = parse_units(&slippage, 18)?;
            let one = U256::from(10u64).pow(U256::from(18));
            // Selling a long accepts down to price x (1 - slippage); buying back a short up to x (1 + slippage).
            let limit = if position.size.is_positive() {
                price * (one - slip) / one
            } else {
                price * (one + slip) / one
            };
            send_order(g, &ctx, &key, id, -position.size, limit, true).await
        }
        OrderCommand::Heartbeat { interval, key } => {
            let what = format!("dead-man switch renewed for {interval} s");
            send_key_op(
                &ctx,
                &key,
                |id| ops::heartbeat_call_data(id, interval),
                &what,
            )
            .await
        }
        OrderCommand::HandOver { key } => {
            send_key_op(
                &ctx,
                &key,
                ops::hand_over_call_data,
                "session handed to the committed successor",
            )
            .await
        }
    }
}

pub(crate) async fn portfolio(g: &Global) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let pf = PerpVenue::new(ctx.deployment.venue, &ctx.provider)
        .portfolio(ctx.account)
        .call()
        .await?;
    let state = keyscope_core::bindings::account_state_name(pf.state);
    let quote = |v: I256| {
        let s = format_units(v.unsigned_abs(), 6);
        if v.is_negative() { format!("-{s}") } else { s }
    };
    let ratio = if pf.maintenanceMargin.is_zero() {
        None
    } else {
        // Account value over maintenance requirement, two decimals, in integers.
        let hundredths = pf.accountValue * I256::try_from(100).unwrap_or_default()
            / I256::try_from(pf.maintenanceMargin).unwrap_or(I256::MAX);
        let (sign, abs) = (
            if hundredths.is_negative() { "-" } else { "" },
            hundredths.unsigned_abs(),
        );
        Some(format!(
            "{sign}{}.{:02}",
            abs / U256::from(100),
            (abs % U256::from(100)).to::<u64>()
        ))
    };
    let positions: Vec<_> = pf
        .positions
        .iter()
        .map(|p| {
            json!({
                "market": ctx.deployment.market_name(p.marketId).unwrap_or("?"),
                "size": p.size.to_string(),
                "entryPrice": p.entryPrice.to_string(),
                "markPrice": p.markPrice.to_string(),
                "notional": p.notional.to_string(),
                "unrealisedPnl": p.unrealisedPnl.to_string(),
                "fundingOwed": p.fundingOwed.to_string(),
            })
        })
        .collect();
    emit(
        ctx.json,
        json!({
            "account": ctx.account,
            "collateral": pf.collateral.to_string(),
            "accountValue": pf.accountValue.to_string(),
            "initialMargin": pf.initialMargin.to_string(),
            "maintenanceMargin": pf.maintenanceMargin.to_string(),
            "marginRatio": ratio,
            "state": state,
            "positions": positions,
        }),
        || {
            let mut out = format!(
                "account {}\ncollateral {} tUSD, account value {}, IMR {}, MMR {}, value/MMR {} -> {state}",
                ctx.account,
                quote(pf.collateral),
                quote(pf.accountValue),
                format_units(pf.initialMargin, 6),
                format_units(pf.maintenanceMargin, 6),
                ratio.clone().unwrap_or_else(|| "-".into()),
            );
            for p in &pf.positions {
                out.push_str(&format!(
                    "\n  {} size {} entry {} mark {} uPnL {}",
                    ctx.deployment.market_name(p.marketId).unwrap_or("?"),
                    fmt_signed(p.size),
                    format_units(p.entryPrice, 18),
                    format_units(p.markPrice, 18),
                    quote(p.unrealisedPnl)
                ));
            }
            out
        },
    );
    Ok(())
}
