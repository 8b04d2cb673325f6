//! `keyscope session grant|revoke|revoke-all|list`.

use alloy::sol_types::SolCall;
use alloy_primitives::{Address, U256};
use clap::Subcommand;
use keyscope_core::{
    bindings::TradingAccount,
    scope::{Rate, TradingScope, parse_duration},
    units::{format_units, parse_units},
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
    Grant {
        /// The session key's address.
        #[arg(long = "session-key")]
        key: Address,
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
        /// Total ops the key may ever send.
        #[arg(long)]
        max_uses: Option<u32>,
        /// Only reduce-only orders.
        #[arg(long)]
        reduce_only: bool,
        /// Also let the key add margin from the account's own collateral (to answer margin calls).
        #[arg(long)]
        allow_deposit: bool,
    },
    /// Revoke one session key.
    Revoke {
        /// The session key's address.
        key: Address,
    },
    /// Revoke every session key at once (and every unused grant signature).
    RevokeAll,
    /// Keys, scopes, windows and uses left.
    List,
}

pub async fn run(g: &Global, cmd: SessionCommand) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let self_call = |data: Vec<u8>| -> alloy_primitives::Bytes {
        TradingAccount::executeCall {
            target: ctx.account,
            value: U256::ZERO,
            data: data.into(),
        }
        .abi_encode()
        .into()
    };
    match cmd {
        SessionCommand::Grant {
            key,
            markets,
            max_size,
            max_notional,
            rate,
            expires,
            ttl,
            max_uses,
            reduce_only,
            allow_deposit,
        } => {
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
            let built = scope.build(ctx.client.chain_time().await?)?;
            let op = ctx
                .client
                .owner_op(
                    &ctx.owner,
                    Ctx::salt(g),
                    self_call(
                        TradingAccount::grantSessionCall {
                            key,
                            scope: built.clone(),
                        }
                        .abi_encode(),
                    ),
                )
                .await?;
            let outcome = ctx.send(&op).await?;
            emit(
                ctx.json,
                json!({ "sessionKey": key, "validUntil": built.validUntil.to::<u64>(), "op": outcome_json(&outcome) }),
                || {
                    format!(
                        "granted {key}: {} until unix {} (op {})",
                        markets.join(","),
                        built.validUntil,
                        outcome.user_op_hash
                    )
                },
            );
        }
        SessionCommand::Revoke { key } => {
            let op = ctx
                .client
                .owner_op(
                    &ctx.owner,
                    Ctx::salt(g),
                    self_call(TradingAccount::revokeSessionCall { key }.abi_encode()),
                )
                .await?;
            let outcome = ctx.send(&op).await?;
            emit(
                ctx.json,
                json!({ "revoked": key, "op": outcome_json(&outcome) }),
                || format!("revoked {key}"),
            );
        }
        SessionCommand::RevokeAll => {
            let op = ctx
                .client
                .owner_op(
                    &ctx.owner,
                    Ctx::salt(g),
                    self_call(TradingAccount::revokeAllSessionsCall {}.abi_encode()),
                )
                .await?;
            let outcome = ctx.send(&op).await?;
            emit(
                ctx.json,
                json!({ "revokedAll": true, "op": outcome_json(&outcome) }),
                || "revoked every session key".to_string(),
            );
        }
        SessionCommand::List => {
            let account = TradingAccount::new(ctx.account, &ctx.provider);
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
                }));
            }
            let text = rows
                .iter()
                .map(|r| {
                    format!(
                        "{} {} markets {} max size {} max notional ${} until unix {}",
                        r["key"].as_str().unwrap_or_default(),
                        if r["active"].as_bool() == Some(true) {
                            "ACTIVE "
                        } else {
                            "revoked"
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
        }
    }
    Ok(())
}
