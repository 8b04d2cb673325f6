//! `keyscope session grant|revoke|revoke-all|rearm|rotate|disarm-heartbeat|list`.

use alloy_primitives::{Address, U256};
use clap::Subcommand;
use keyscope_core::{
    bindings::ISessionManager,
    ops,
    scope::{MoneyLimits, Rate, TradingScope, parse_duration},
    units::{format_units, parse_bps, parse_leverage, parse_units, parse_wei},
};
use serde_json::json;

use crate::{
    Global,
    context::Ctx,
    output::{emit, outcome_json},
};

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Grant a session key a trading scope on the venue (it can never withdraw).
    Grant(Box<GrantArgs>),
    /// Revoke one session key.
    Revoke {
        /// The session key's address.
        key: Address,
    },
    /// Revoke every session key at once (and every unused grant signature).
    RevokeAll,
    /// Re-arm a key whose drawdown breaker tripped.
    Rearm {
        /// The session key's address.
        key: Address,
    },
    /// Move a key's session, with what is left of its budgets, to another key in one owner op (the old key
    /// dies). Keys can also hand over themselves to a successor named at grant (`grant --successor`).
    Rotate {
        /// The session key (address or P-256 key id) to retire.
        key: Address,
        /// The key that takes the session over.
        successor: Address,
    },
    /// Disarm a key's dead-man switch (only the owner can; the key can only renew it).
    DisarmHeartbeat {
        /// The session key.
        key: Address,
    },
    /// Keys, scopes, windows and uses left.
    List,
}

/// `keyscope session grant`'s flags: the scope and its money limits.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// The session key's address, or a P-256 key's id (`keyscope signer new-key --curve p256` prints it).
    #[arg(long = "session-key")]
    key: Address,
    /// Commit the key's successor (address or P-256 key id): the key may hand its session over to it in
    /// one op of its own (`keyscope order hand-over`), without the owner.
    #[arg(long)]
    successor: Option<Address>,
    /// Markets it may trade, by name: BTC,ETH.
    #[arg(long, value_delimiter = ',', required = true)]
    markets: Vec<String>,
    /// Largest |size| per order, in base units (0.5 = half a BTC).
    #[arg(long)]
    max_size: String,
    /// Largest |size| x limit price per order, in USD.
    #[arg(long)]
    max_notional: String,
    /// Rate limit, COUNT/PERIOD: 20/1s, 100/1m.
    #[arg(long)]
    rate: Option<Rate>,
    /// How long the key lives: 30m, 8h, 2d.
    #[arg(long, default_value = "8h")]
    expires: String,
    /// Longest life of one op (the key's recvWindow): 30s, 2m.
    #[arg(long, default_value = "60s")]
    ttl: String,
    /// Total calls (orders) the key may ever make.
    #[arg(long)]
    max_uses: Option<u32>,
    /// Gas all the key's ops may cost together, charged at each op's maximum: 0.1eth, 50000000gwei.
    #[arg(long, default_value = "0.1eth")]
    fee_budget: String,
    /// Most one op may cost: (gas limits + preVerificationGas) x maxFeePerGas.
    #[arg(long, default_value = "0.01eth")]
    max_op_cost: String,
    /// Calls (orders) one op may make.
    #[arg(long, default_value_t = 8)]
    max_calls_per_op: u8,
    /// Most gross notional / account value after an order (3 or 3x); 0 for no limit.
    #[arg(long, default_value = "3x")]
    max_leverage: String,
    /// Account value kept above maintenance margin by this much after an order (50% = 1.5x MMR); 0 for none.
    #[arg(long, default_value = "50%")]
    min_headroom: String,
    /// Breaker: fall from the high-water mark that degrades the key to deposits and reductions; 0 for none.
    #[arg(long, default_value = "15%")]
    max_drawdown: String,
    /// Breaker: account value (USD) below which the key degrades.
    #[arg(long)]
    drawdown_floor: Option<String>,
    /// Largest notional of one market's position, in USD.
    #[arg(long)]
    max_position: Option<String>,
    /// A paymaster that may sponsor the key's ops (repeat for several).
    #[arg(long = "paymaster")]
    paymasters: Vec<Address>,
    /// Only reduce-only orders.
    #[arg(long)]
    reduce_only: bool,
    /// Also let the key add margin from the account's own collateral (to answer margin calls).
    #[arg(long)]
    allow_deposit: bool,
}

pub async fn run(g: &Global, cmd: SessionCommand) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    match cmd {
        SessionCommand::Grant(args) => grant(&ctx, g, args).await?,
        SessionCommand::Revoke { key } => {
            let call = ops::revoke_session(ctx.account, key);
            owner_call(
                &ctx,
                g,
                call,
                json!({ "revoked": key }),
                format!("revoked {key}"),
            )
            .await?
        }
        SessionCommand::RevokeAll => {
            let call = ops::call(ctx.account, ISessionManager::revokeAllSessionsCall {});
            let text = "revoked every session key".to_string();
            owner_call(&ctx, g, call, json!({ "revokedAll": true }), text).await?
        }
        SessionCommand::Rearm { key } => {
            let call = ops::rearm_session(ctx.account, key);
            let text =
                format!("re-armed {key}: it may trade again, its high-water mark starts afresh");
            owner_call(&ctx, g, call, json!({ "rearmed": key }), text).await?
        }
        SessionCommand::Rotate { key, successor } => {
            let call = ops::rotate_session(ctx.account, key, successor);
            let text = format!(
                "rotated {key} to {successor}: same scope and what was left of its budgets"
            );
            let fields = json!({ "rotated": key, "successor": successor });
            owner_call(&ctx, g, call, fields, text).await?
        }
        SessionCommand::DisarmHeartbeat { key } => {
            let call = ops::disarm_heartbeat(ctx.account, key);
            let text = format!("disarmed {key}'s dead-man switch");
            owner_call(&ctx, g, call, json!({ "disarmed": key }), text).await?
        }
        SessionCommand::List => list(&ctx).await?,
    }
    Ok(())
}

/// Sends `call` as an owner op and reports it: `fields` and the op in JSON, `text` for people.
async fn owner_call(
    ctx: &Ctx,
    g: &Global,
    call: ops::Call,
    mut fields: serde_json::Value,
    text: String,
) -> anyhow::Result<()> {
    let op = ctx
        .client
        .owner_op(&ctx.owner, Ctx::salt(g), vec![call])
        .await?;
    let outcome = ctx.send(&op).await?;
    fields["op"] = outcome_json(&outcome);
    emit(ctx.json, fields, || text);
    Ok(())
}

/// Grants a session key the scope `args` describe, by an owner op.
async fn grant(ctx: &Ctx, g: &Global, args: Box<GrantArgs>) -> anyhow::Result<()> {
    let GrantArgs {
        key,
        successor,
        markets,
        max_size,
        max_notional,
        rate,
        expires,
        ttl,
        max_uses,
        reduce_only,
        allow_deposit,
        fee_budget,
        max_op_cost,
        max_calls_per_op,
        max_leverage,
        min_headroom,
        max_drawdown,
        drawdown_floor,
        max_position,
        paymasters,
    } = *args;
    let ids = markets
        .iter()
        .map(|m| ctx.deployment.market_id(m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut scope = TradingScope::new(
        ctx.deployment.venue,
        ids,
        parse_units(&max_size, 18)?,
        parse_units(&max_notional, 18)?,
    );
    scope.rate = rate;
    scope.valid_for = parse_duration(&expires)?;
    scope.op_ttl = parse_duration(&ttl)?;
    scope.max_uses = max_uses;
    scope.reduce_only = reduce_only;
    scope.allow_deposit = allow_deposit;
    let usd = |v: &Option<String>| -> anyhow::Result<U256> {
        Ok(match v {
            Some(v) => parse_units(v, 6)?,
            None => U256::ZERO,
        })
    };
    scope.limits = MoneyLimits {
        fee_budget: parse_wei(&fee_budget)?,
        max_op_cost: parse_wei(&max_op_cost)?,
        max_calls_per_op,
        max_leverage: parse_leverage(&max_leverage)?,
        min_headroom_bps: parse_bps(&min_headroom)?,
        max_drawdown_bps: parse_bps(&max_drawdown)?,
        drawdown_floor: usd(&drawdown_floor)?,
        max_position_notional: usd(&max_position)?,
        paymasters,
        ..MoneyLimits::cautious()
    };
    let built = scope.build(ctx.client.chain_time().await?)?;
    let mut calls = vec![ops::grant_session(ctx.account, key, built.clone())];
    // After the grant, in the same op: a commitment is bound to the grant it follows.
    calls.extend(successor.map(|s| ops::commit_successor(ctx.account, key, s)));
    let op = ctx.client.owner_op(&ctx.owner, Ctx::salt(g), calls).await?;
    let outcome = ctx.send(&op).await?;
    emit(
        ctx.json,
        json!({ "sessionKey": key, "successor": successor, "validUntil": built.validUntil.to::<u64>(), "op": outcome_json(&outcome) }),
        || {
            format!(
                "granted {key}: {} until unix {} (op {})",
                markets.join(","),
                built.validUntil,
                outcome.user_op_hash
            )
        },
    );
    Ok(())
}

/// Every session key of the account: scope, window, what is left of its budgets, whether it tripped.
async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let account = ISessionManager::new(ctx.account, &ctx.provider);
    let mut rows = Vec::new();
    for key in account.sessionKeys().call().await? {
        let s = account.getSession(key).call().await?;
        let markets: Vec<String> = s
            .permissions
            .iter()
            .filter(|p| p.marketMask != 0)
            .flat_map(|p| (0..64u32).filter(move |i| p.marketMask >> i & 1 == 1))
            .map(|id| {
                ctx.deployment
                    .market_name(id)
                    .map(str::to_string)
                    .unwrap_or_else(|| id.to_string())
            })
            .collect();
        let order = s.permissions.iter().find(|p| p.marketMask != 0);
        rows.push(json!({
            "key": key,
            "active": s.active,
            "grantId": s.grantId,
            "validUntil": s.validUntil.to::<u64>(),
            "markets": markets,
            "maxOrderSize": order.map(|p| p.maxOrderSize.to_string()),
            "maxOrderNotional": order.map(|p| p.maxOrderNotional.to_string()),
            "reduceOnly": order.map(|p| p.reduceOnly),
            "rate": if s.rateCount == 0 { None } else { Some(format!("{}/{}s", s.rateCount, s.ratePeriod)) },
            "usesLeft": if s.usesLeft == u32::MAX { None } else { Some(s.usesLeft) },
            "feeLeft": s.feeLeft.to_string(),
            "maxOpCost": s.maxOpCost.to_string(),
            "maxLeverage": s.risk.maxLeverage,
            "maxDrawdownBps": s.risk.maxDrawdownBps,
            "tripped": s.tripped,
            "highWaterMark": s.highWaterMark,
        }));
    }
    let text = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} markets {} max size {} max notional ${} fee budget left {} ETH until unix {}",
                r["key"].as_str().unwrap_or_default(),
                match (r["active"].as_bool(), r["tripped"].as_bool()) {
                    (Some(true), Some(true)) => "TRIPPED",
                    (Some(true), _) => "ACTIVE ",
                    _ => "revoked",
                },
                r["markets"]
                    .as_array()
                    .map(|m| m
                        .iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default(),
                r["maxOrderSize"]
                    .as_str()
                    .map(|v| format_units(v.parse().unwrap_or_default(), 18))
                    .unwrap_or_default(),
                r["maxOrderNotional"]
                    .as_str()
                    .map(|v| format_units(v.parse().unwrap_or_default(), 18))
                    .unwrap_or_default(),
                r["feeLeft"]
                    .as_str()
                    .map(|v| format_units(v.parse().unwrap_or_default(), 18))
                    .unwrap_or_default(),
                r["validUntil"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    emit(
        ctx.json,
        json!({ "account": ctx.account, "sessions": rows }),
        || {
            if text.is_empty() {
                "no session keys".into()
            } else {
                text
            }
        },
    );
    Ok(())
}
