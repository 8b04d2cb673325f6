//! `keyscope session grant|revoke|revoke-all|rearm|rotate|disarm-heartbeat|list`.

use alloy_primitives::{Address, FixedBytes, U256};
use anyhow::bail;
use clap::Subcommand;
use keyscope_core::{
    bindings::ISessionManager,
    ops,
    outflow::parse_selector,
    scope::{MoneyLimits, PlainCall, Rate, TradingScope, parse_duration},
    units::{format_units, parse_bps, parse_leverage, parse_units, parse_wei},
};
use serde_json::json;

use crate::{
    context::Ctx,
    global::Global,
    output::{emit, outcome_json},
};

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
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
pub(crate) struct GrantArgs {
    /// The session key: its address, a P-256 key's id (`keyscope signer new-key --curve p256` prints it),
    /// or the secp256k1 private key itself (hex) as `order --session-key` takes it — its address is granted.
    #[arg(long = "session-key", value_parser = parse_session_key)]
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
    /// Most each listed paymaster may be charged for one of the key's ops: (every gas limit, the paymaster's
    /// included, + preVerificationGas) x maxFeePerGas; 0 for no per-op cap.
    #[arg(long, default_value = "0.01eth")]
    paymaster_max_op_cost: String,
    /// What each listed paymaster may be charged for all the key's ops, at each op's maximum: 0.1eth.
    #[arg(long, default_value = "0.1eth")]
    paymaster_budget: String,
    /// Only reduce-only orders.
    #[arg(long)]
    reduce_only: bool,
    /// Also let the key add margin from the account's own collateral (to answer margin calls).
    #[arg(long)]
    allow_deposit: bool,
    /// Also let the key call SELECTOR on TARGET, as TARGET:SELECTOR (selector in hex or as a signature:
    /// 0xVENUE:poke(address)); repeat for several. Selectors known to move value out are refused.
    #[arg(long = "call", value_parser = parse_call)]
    calls: Vec<PlainCall>,
    /// Grant this outflow selector anyway (hex or signature) — the key could then move value out with it;
    /// repeat for several. Never overrides the account's own deny list.
    #[arg(long = "allow-outflow-selector", value_parser = parse_outflow)]
    allow_outflow: Vec<FixedBytes<4>>,
    /// Replace the key's active grant (its budgets and counters start afresh) instead of refusing.
    #[arg(long)]
    replace: bool,
}

/// `--session-key`: an address (or key id), or a 32-byte secp256k1 private key whose address is meant.
fn parse_session_key(s: &str) -> Result<Address, String> {
    let hex_digits = s.trim().trim_start_matches("0x").len();
    match hex_digits {
        40 => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address")),
        64 => keyscope_core::signer::from_hex(s)
            .map(|k| k.address())
            .map_err(|e| format!("{s:?} is not a secp256k1 private key: {e}")),
        _ => Err(format!(
            "{s:?} is neither an address (40 hex digits) nor a private key (64 hex digits)"
        )),
    }
}

/// `TARGET:SELECTOR` for `--call`.
fn parse_call(s: &str) -> Result<PlainCall, String> {
    let (target, selector) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not TARGET:SELECTOR (0xVENUE:poke(address))"))?;
    Ok(PlainCall {
        target: target
            .trim()
            .parse()
            .map_err(|_| format!("{target:?} is not an address"))?,
        selector: parse_selector(selector).map_err(|e| e.to_string())?,
        value_limit: U256::ZERO,
    })
}

fn parse_outflow(s: &str) -> Result<FixedBytes<4>, String> {
    parse_selector(s).map_err(|e| e.to_string())
}

pub(crate) async fn run(g: &Global, cmd: SessionCommand) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    match cmd {
        SessionCommand::Grant(args) => grant(&ctx, g, args).await?,
        SessionCommand::Revoke { key } => {
            if !require_granted(&ctx, key).await? {
                emit(
                    ctx.json,
                    json!({ "revoked": key, "alreadyRevoked": true }),
                    || format!("{key} is already revoked; nothing was sent"),
                );
                return Ok(());
            }
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
            require_active(&ctx, key).await?;
            let call = ops::rearm_session(ctx.account, key);
            let text =
                format!("re-armed {key}: it may trade again, its high-water mark starts afresh");
            owner_call(&ctx, g, call, json!({ "rearmed": key }), text).await?
        }
        SessionCommand::Rotate { key, successor } => {
            require_active(&ctx, key).await?;
            let call = ops::rotate_session(ctx.account, key, successor);
            let text = format!(
                "rotated {key} to {successor}: same scope and what was left of its budgets"
            );
            let fields = json!({ "rotated": key, "successor": successor });
            owner_call(&ctx, g, call, fields, text).await?
        }
        SessionCommand::DisarmHeartbeat { key } => {
            require_active(&ctx, key).await?;
            let call = ops::disarm_heartbeat(ctx.account, key);
            let text = format!("disarmed {key}'s dead-man switch");
            owner_call(&ctx, g, call, json!({ "disarmed": key }), text).await?
        }
        SessionCommand::List => list(&ctx).await?,
    }
    Ok(())
}

/// Fails unless `key` was ever granted on the account; true if it is active now.
async fn require_granted(ctx: &Ctx, key: Address) -> anyhow::Result<bool> {
    let sessions = ISessionManager::new(ctx.account, &ctx.provider);
    if !sessions.sessionKeys().call().await?.contains(&key) {
        bail!(
            "no session key {key} was ever granted on account {}; nothing was sent (`keyscope session list` shows its keys)",
            ctx.account
        );
    }
    Ok(sessions.getSession(key).call().await?.active)
}

/// Fails unless `key` is an active session key of the account.
async fn require_active(ctx: &Ctx, key: Address) -> anyhow::Result<()> {
    if !require_granted(ctx, key).await? {
        bail!(
            "{key} is revoked on account {}; nothing was sent (grant it again with `keyscope session grant`)",
            ctx.account
        );
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
        paymaster_max_op_cost,
        paymaster_budget,
        calls,
        allow_outflow,
        replace,
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
    scope.calls = calls;
    scope.allow_outflow = allow_outflow;
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
        paymaster_max_op_cost: parse_wei(&paymaster_max_op_cost)?,
        paymaster_budget: parse_wei(&paymaster_budget)?,
        ..MoneyLimits::cautious()
    };
    let built = scope.build(ctx.client.chain_time().await?)?;
    let sessions = ISessionManager::new(ctx.account, &ctx.provider);
    let current = sessions.getSession(key).call().await?;
    if current.active && !replace {
        bail!(
            "{key} already holds an active grant ({} ETH of fee budget left, until unix {}); a new grant would \
             refill its budgets: pass --replace to replace it, or `keyscope session revoke {key}` first; nothing was sent",
            format_units(current.feeLeft, 18),
            current.validUntil
        );
    }
    let mut calls = vec![ops::grant_session(ctx.account, key, built.clone())];
    // After the grant, in the same op: a commitment is bound to the grant it follows.
    calls.extend(successor.map(|s| ops::commit_successor(ctx.account, key, s)));
    let op = ctx.client.owner_op(&ctx.owner, Ctx::salt(g), calls).await?;
    let outcome = ctx.send(&op).await?;
    let grant_id = sessions.getSession(key).call().await?.grantId;
    emit(
        ctx.json,
        json!({ "sessionKey": key, "grantId": grant_id, "successor": successor, "validUntil": built.validUntil.to::<u64>(), "op": outcome_json(&outcome) }),
        || {
            format!(
                "granted {key} (grant {grant_id}): {} until unix {} (op {})",
                markets.join(","),
                built.validUntil,
                outcome.user_op_hash
            )
        },
    );
    Ok(())
}

/// What a key can do now, read from the chain at this moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Revoked, rotated away or ended by `revoke-all`.
    Revoked,
    /// Past its `validUntil`.
    Expired,
    /// Its window has not opened yet.
    NotYetValid,
    /// Its drawdown breaker tripped: deposits, cancels and reductions only until re-armed.
    Tripped,
    /// Its dead-man switch's deadline passed: reductions only until it renews.
    PastDeadline,
    /// Its uses are spent (`--max-uses`): every order, op or fill needs one, so it can do nothing more.
    Exhausted,
    /// Active, with a successor committed that it may hand over to.
    SuccessorCommitted,
    Active,
}

impl KeyState {
    /// Precedence: what stops the key outright first, then what limits it.
    fn of(
        s: &keyscope_core::bindings::ITradingAccount::SessionInfo,
        now: u64,
        deadline: u64,
        successor: Address,
    ) -> Self {
        if !s.active {
            Self::Revoked
        } else if s.validUntil.to::<u64>() <= now {
            Self::Expired
        } else if s.validAfter.to::<u64>() > now {
            Self::NotYetValid
        } else if s.usesLeft == 0 {
            Self::Exhausted
        } else if s.tripped {
            Self::Tripped
        } else if deadline != 0 && deadline < now {
            Self::PastDeadline
        } else if !successor.is_zero() {
            Self::SuccessorCommitted
        } else {
            Self::Active
        }
    }

    /// The stable name in `--json`'s `state` and the text listing.
    fn name(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::Tripped => "tripped",
            Self::PastDeadline => "past-deadline",
            Self::Exhausted => "exhausted",
            Self::SuccessorCommitted => "successor-committed",
            Self::Active => "active",
        }
    }

    /// Whether the key can still open risk.
    pub(crate) fn can_trade(self) -> bool {
        matches!(self, Self::Active | Self::SuccessorCommitted)
    }
}

/// `key`'s state at chain time `now` (with its dead-man deadline and committed successor, read for it).
pub(crate) async fn key_state(
    ctx: &Ctx,
    s: &keyscope_core::bindings::ITradingAccount::SessionInfo,
    key: Address,
    now: u64,
) -> anyhow::Result<(KeyState, u64, Address)> {
    let account = ISessionManager::new(ctx.account, &ctx.provider);
    let deadline = account.heartbeatDeadline(key).call().await?.to::<u64>();
    let successor = account.successorOf(key).call().await?;
    Ok((
        KeyState::of(s, now, deadline, successor),
        deadline,
        successor,
    ))
}

/// Every session key of the account: its state now, scope, window, what is left of its budgets.
async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let account = ISessionManager::new(ctx.account, &ctx.provider);
    let now = ctx.client.chain_time().await?;
    let mut rows = Vec::new();
    for key in account.sessionKeys().call().await? {
        let s = account.getSession(key).call().await?;
        let (state, deadline, successor) = key_state(ctx, &s, key, now).await?;
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
            "state": state.name(),
            "active": state.can_trade(),
            "successor": (!successor.is_zero()).then_some(successor),
            "heartbeatDeadline": (deadline != 0).then_some(deadline),
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
            if r["state"] == "revoked" {
                return format!("{} revoked", r["key"].as_str().unwrap_or_default());
            }
            format!(
                "{} {} markets {} max size {} max notional ${} fee budget left {} ETH until unix {}",
                r["key"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
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
        json!({ "account": ctx.account, "chainTime": now, "sessions": rows }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use keyscope_core::bindings::ITradingAccount::SessionInfo;

    fn live() -> SessionInfo {
        SessionInfo {
            active: true,
            validAfter: alloy_primitives::aliases::U40::from(100u64),
            validUntil: alloy_primitives::aliases::U40::from(1_000u64),
            usesLeft: 5,
            ..Default::default()
        }
    }

    #[test]
    fn a_key_with_no_use_left_is_exhausted_not_active() {
        let none = Address::ZERO;
        assert_eq!(KeyState::of(&live(), 500, 0, none), KeyState::Active);
        let spent = SessionInfo {
            usesLeft: 0,
            ..live()
        };
        let state = KeyState::of(&spent, 500, 0, none);
        assert_eq!(state, KeyState::Exhausted);
        assert_eq!(state.name(), "exhausted");
        assert!(!state.can_trade());
        // What stops a key outright still comes first.
        let revoked = SessionInfo {
            active: false,
            ..spent.clone()
        };
        assert_eq!(KeyState::of(&revoked, 500, 0, none), KeyState::Revoked);
        assert_eq!(KeyState::of(&spent, 1_000, 0, none), KeyState::Expired);
    }
}
