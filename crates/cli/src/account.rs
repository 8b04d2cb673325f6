//! `keyscope account create|info`, `deposit`, `withdraw`: the owner's side of the account.

use alloy::{network::TransactionBuilder, providers::Provider, rpc::types::TransactionRequest};
use alloy_primitives::{I256, U256};
use clap::Subcommand;
use keyscope_core::{
    bindings::{IEntryPoint, ISessionManager, PerpVenue, TestUSD, TradingAccount},
    ops,
    units::{format_amount, format_signed_amount, format_units, parse_units},
};
use serde_json::json;

use crate::{
    Global,
    context::Ctx,
    output::{emit, outcome_json},
};

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Deploy the account in its first UserOp (funding it with ETH for gas) and approve the venue.
    Create {
        /// ETH sent from the relayer EOA to the account for gas, if it has less.
        #[arg(long, default_value = "0.1")]
        fund: String,
        /// Collateral (tUSD) the owner's own address sends to the account.
        #[arg(long)]
        collateral: Option<String>,
    },
    /// Address, owner, balances, margin and session keys.
    Info,
    /// The account's address alone (deployed or not yet), for scripts: `ACCOUNT=$(keyscope account address)`.
    Address,
}

pub async fn run(g: &Global, cmd: AccountCommand) -> anyhow::Result<()> {
    match cmd {
        AccountCommand::Create { fund, collateral } => {
            create(g, &fund, collateral.as_deref()).await
        }
        AccountCommand::Info => info(g).await,
        AccountCommand::Address => {
            let ctx = Ctx::connect(g).await?;
            emit(
                ctx.json,
                serde_json::json!({ "account": ctx.account }),
                || ctx.account.to_string(),
            );
            Ok(())
        }
    }
}

/// Deploys the account, then sends `collateral` into it — once: on an account that already exists it moves
/// nothing and says what the account holds (`deposit` is what moves money), so a re-run is harmless.
async fn create(g: &Global, fund: &str, collateral: Option<&str>) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    // Read every amount before anything moves: a typo refuses the whole command.
    let fund = parse_units(fund, 18)?;
    let collateral = collateral.map(|a| parse_units(a, 6)).transpose()?;
    if ctx.client.is_deployed(ctx.account).await? {
        let (usd, margin) = holdings(&ctx).await?;
        emit(
            ctx.json,
            json!({
                "account": ctx.account,
                "created": false,
                "collateral": usd.to_string(),
                "venueMargin": margin.to_string(),
                "moved": "0",
            }),
            || {
                let mut text = format!(
                    "account {} already exists and holds {} tUSD, with {} tUSD in venue margin; nothing was sent",
                    ctx.account,
                    format_amount(usd, 6),
                    format_signed_amount(margin, 6)
                );
                if collateral.is_some() {
                    text.push_str(
                        "\n--collateral is only sent when the account is created; `keyscope deposit AMOUNT` \
                         moves the account's tUSD into venue margin",
                    );
                }
                text
            },
        );
        return Ok(());
    }
    if ctx.provider.get_balance(ctx.account).await? < fund {
        let tx = TransactionRequest::default()
            .with_to(ctx.account)
            .with_value(fund);
        ctx.provider
            .send_transaction(tx)
            .await?
            .get_receipt()
            .await?;
    }
    // The first op deploys the account and lets the venue pull collateral for deposits.
    let approve = ops::approve(ctx.deployment.collateral, ctx.deployment.venue, U256::MAX);
    let op = ctx
        .client
        .owner_op(&ctx.owner, Ctx::salt(g), vec![approve])
        .await?;
    let outcome = ctx.send(&op).await?;
    if let Some(amount) = collateral {
        // After the account exists, so a failed deployment moves no money and a re-run moves none twice:
        // a plain token transfer from the owner's own address, signed by the owner key.
        let owner_provider = alloy::providers::ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(ctx.owner.clone()))
            .connect_http(g.rpc.parse()?);
        TestUSD::new(ctx.deployment.collateral, &owner_provider)
            .transfer(ctx.account, amount)
            .send()
            .await?
            .get_receipt()
            .await?;
    }
    let moved = collateral.unwrap_or_default();
    emit(
        ctx.json,
        json!({ "account": ctx.account, "created": true, "moved": moved.to_string(), "op": outcome_json(&outcome) }),
        || {
            format!(
                "account {} created by its first UserOp {} (tx {}); {} tUSD sent in",
                ctx.account,
                outcome.user_op_hash,
                outcome.tx_hash,
                format_amount(moved, 6)
            )
        },
    );
    Ok(())
}

/// The account's collateral-token balance and its venue margin.
async fn holdings(ctx: &Ctx) -> anyhow::Result<(U256, I256)> {
    let usd = TestUSD::new(ctx.deployment.collateral, &ctx.provider)
        .balanceOf(ctx.account)
        .call()
        .await?;
    let margin = PerpVenue::new(ctx.deployment.venue, &ctx.provider)
        .collateralOf(ctx.account)
        .call()
        .await?;
    Ok((usd, margin))
}

async fn info(g: &Global) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    let deployed = ctx.client.is_deployed(ctx.account).await?;
    let eth = ctx.provider.get_balance(ctx.account).await?;
    let (usd, margin) = holdings(&ctx).await?;
    let deposit = IEntryPoint::new(ctx.deployment.entry_point, &ctx.provider)
        .balanceOf(ctx.account)
        .call()
        .await?;
    let (owner, keys, active, epoch) = if deployed {
        let a = TradingAccount::new(ctx.account, &ctx.provider);
        let sessions = ISessionManager::new(ctx.account, &ctx.provider);
        let keys = sessions.sessionKeys().call().await?;
        // Active by the chain's clock now, as `session list` reads it — not merely granted once.
        let now = ctx.client.chain_time().await?;
        let mut active = 0;
        for &key in &keys {
            let s = sessions.getSession(key).call().await?;
            if crate::session::key_state(&ctx, &s, key, now)
                .await?
                .0
                .can_trade()
            {
                active += 1;
            }
        }
        (
            Some(a.owner().call().await?),
            keys.len(),
            active,
            a.epoch().call().await?,
        )
    } else {
        (None, 0, 0, 0)
    };
    emit(
        ctx.json,
        json!({
            "account": ctx.account,
            "deployed": deployed,
            "owner": owner,
            "eth": eth.to_string(),
            "entryPointDeposit": deposit.to_string(),
            "collateral": usd.to_string(),
            "venueMargin": margin.to_string(),
            "sessionKeys": keys,
            "activeSessionKeys": active,
            "epoch": epoch,
        }),
        || {
            format!(
                "account      {}{}\nowner        {}\nETH          {} (EntryPoint deposit {})\ncollateral   {} tUSD in the account, {} tUSD venue margin\nsession keys {} active of {} granted (epoch {})",
                ctx.account,
                if deployed {
                    ""
                } else {
                    " (not deployed yet: `keyscope account create`)"
                },
                owner.unwrap_or(ctx.owner.address()),
                format_units(eth, 18),
                format_units(deposit, 18),
                format_units(usd, 6),
                format_units(
                    U256::try_from(margin.max(I256::ZERO)).unwrap_or_default(),
                    6
                ),
                active,
                keys,
                epoch
            )
        },
    );
    Ok(())
}

pub async fn deposit(g: &Global, amount: &str) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let amount = parse_units(amount, 6)?;
    let have = TestUSD::new(ctx.deployment.collateral, &ctx.provider)
        .balanceOf(ctx.account)
        .call()
        .await?;
    if have < amount {
        anyhow::bail!(
            "the account holds {} tUSD, less than {}",
            format_units(have, 6),
            format_units(amount, 6)
        );
    }
    let calls = vec![
        ops::approve(ctx.deployment.collateral, ctx.deployment.venue, U256::MAX),
        ops::deposit_margin(ctx.deployment.venue, amount),
    ];
    let op = ctx.client.owner_op(&ctx.owner, Ctx::salt(g), calls).await?;
    let outcome = ctx.send(&op).await?;
    emit(
        ctx.json,
        json!({ "deposited": amount.to_string(), "op": outcome_json(&outcome) }),
        || {
            format!(
                "deposited {} tUSD into venue margin (op {})",
                format_units(amount, 6),
                outcome.user_op_hash
            )
        },
    );
    Ok(())
}

pub async fn withdraw(g: &Global, amount: &str) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let amount = parse_units(amount, 6)?;
    let op = ctx
        .client
        .owner_op(
            &ctx.owner,
            Ctx::salt(g),
            vec![ops::withdraw_margin(ctx.deployment.venue, amount)],
        )
        .await?;
    let outcome = ctx.send(&op).await?;
    emit(
        ctx.json,
        json!({ "withdrawn": amount.to_string(), "op": outcome_json(&outcome) }),
        || {
            format!(
                "withdrew {} tUSD from venue margin to the account (op {})",
                format_units(amount, 6),
                outcome.user_op_hash
            )
        },
    );
    Ok(())
}
