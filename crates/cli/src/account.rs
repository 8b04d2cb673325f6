//! `keyscope account create|info|address|fund`, `deposit`, `withdraw`: the owner's side of the account.

use alloy::{network::TransactionBuilder, providers::Provider, rpc::types::TransactionRequest};
use alloy_primitives::{B256, I256, U256};
use clap::Subcommand;
use keyscope_core::{
    bindings::{IEntryPoint, ISessionManager, PerpVenue, TestUSD, TradingAccount},
    ops,
    units::{format_amount, format_signed_amount, format_units, parse_units},
};
use serde_json::json;

use crate::{
    context::Ctx,
    global::Global,
    output::{emit, outcome_json},
    repeat_guard::{Move, Pinned, already_moved, explain_failure},
};

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
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
    /// Send the owner's own tUSD to the account (what `create --collateral` sends at creation). The same
    /// amount sent in the last ten minutes of chain time is taken for a re-run: nothing moves, exit 0.
    Fund {
        /// Amount in collateral units (e.g. 20000).
        amount: String,
        /// Send even though the same amount was sent in the last ten minutes.
        #[arg(long)]
        again: bool,
    },
}

pub(crate) async fn run(g: &Global, cmd: AccountCommand) -> anyhow::Result<()> {
    match cmd {
        AccountCommand::Create { fund, collateral } => {
            create(g, &fund, collateral.as_deref()).await
        }
        AccountCommand::Info => info(g).await,
        AccountCommand::Fund { amount, again } => fund(g, &amount, again).await,
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
                        "\n--collateral is only sent when the account is created; `keyscope account fund \
                         AMOUNT` sends the owner's tUSD to the account, `keyscope deposit AMOUNT` moves the \
                         account's tUSD into venue margin",
                    );
                }
                text
            },
        );
        return Ok(());
    }
    if let Some(amount) = collateral {
        let (owner, have) = owner_usd(&ctx).await?;
        if have < amount {
            anyhow::bail!(
                "--collateral {} is more than the owner {owner} holds ({} tUSD); nothing was deployed or sent",
                format_amount(amount, 6),
                format_amount(have, 6)
            );
        }
    }
    // Both nonces before anything is read that decides what to send: a second run racing this one shares
    // them, so at most one funding transfer and one first op are mined (see `repeat_guard`).
    let funding_nonce = ctx.provider.get_transaction_count(ctx.relayer).await?;
    let op_nonce = ctx.client.owner_nonce(ctx.account).await?;
    if ctx.provider.get_balance(ctx.account).await? < fund {
        let tx = TransactionRequest::default()
            .with_to(ctx.account)
            .with_value(fund)
            .with_nonce(funding_nonce);
        let sent = async {
            ctx.provider
                .send_transaction(tx)
                .await?
                .get_receipt()
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = sent {
            let pinned = Pinned::Transaction {
                from: ctx.relayer,
                nonce: funding_nonce,
            };
            return Err(explain_failure(&ctx, pinned, e).await);
        }
    }
    // The first op deploys the account and lets the venue pull collateral for deposits.
    let approve = ops::approve(ctx.deployment.collateral, ctx.deployment.venue, U256::MAX);
    let outcome = owner_move(&ctx, g, vec![approve], op_nonce).await?;
    if let Some(amount) = collateral {
        // After the account exists, so a failed deployment moves no money and a re-run moves none twice:
        // a plain token transfer from the owner's own address, signed by the owner key.
        let owner = ctx.owner_address();
        let nonce = ctx.provider.get_transaction_count(owner).await?;
        send_collateral(&ctx, g, amount, nonce).await?;
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

pub(crate) async fn deposit(g: &Global, amount: &str, again: bool) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let amount = positive(parse_units(amount, 6)?)?;
    // The nonce before the log: see `repeat_guard`.
    let nonce = ctx.client.owner_nonce(ctx.account).await?;
    // A re-run first: after a first run moved everything, the balance check would give the wrong reason.
    if already_moved(&ctx, Move::Deposit, amount, again).await? {
        return Ok(());
    }
    let have = TestUSD::new(ctx.deployment.collateral, &ctx.provider)
        .balanceOf(ctx.account)
        .call()
        .await?;
    if have < amount {
        anyhow::bail!(
            "the account holds {} tUSD, less than {}; `keyscope account fund AMOUNT` sends it the owner's tUSD",
            format_amount(have, 6),
            format_amount(amount, 6)
        );
    }
    let calls = vec![
        ops::approve(ctx.deployment.collateral, ctx.deployment.venue, U256::MAX),
        ops::deposit_margin(ctx.deployment.venue, amount),
    ];
    let outcome = owner_move(&ctx, g, calls, nonce).await?;
    emit(
        ctx.json,
        json!({ "deposited": amount.to_string(), "moved": amount.to_string(), "op": outcome_json(&outcome) }),
        || {
            format!(
                "deposited {} tUSD into venue margin (op {})",
                format_amount(amount, 6),
                outcome.user_op_hash
            )
        },
    );
    Ok(())
}

pub(crate) async fn withdraw(g: &Global, amount: &str, again: bool) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let amount = positive(parse_units(amount, 6)?)?;
    let nonce = ctx.client.owner_nonce(ctx.account).await?;
    if already_moved(&ctx, Move::Withdraw, amount, again).await? {
        return Ok(());
    }
    let calls = vec![ops::withdraw_margin(ctx.deployment.venue, amount)];
    let outcome = owner_move(&ctx, g, calls, nonce).await?;
    emit(
        ctx.json,
        json!({ "withdrawn": amount.to_string(), "moved": amount.to_string(), "op": outcome_json(&outcome) }),
        || {
            format!(
                "withdrew {} tUSD from venue margin to the account (op {})",
                format_amount(amount, 6),
                outcome.user_op_hash
            )
        },
    );
    Ok(())
}

/// An owner op making `calls` at the `nonce` read before the repeat check, sent; a failure says whether
/// another op took the nonce or one at it is still waiting.
async fn owner_move(
    ctx: &Ctx,
    g: &Global,
    calls: Vec<keyscope_core::ops::Call>,
    nonce: U256,
) -> anyhow::Result<keyscope_core::client::OpOutcome> {
    let op = ctx
        .client
        .owner_op_at(&ctx.owner, Ctx::salt(g), calls, nonce)
        .await?;
    let hash = ctx.client.hash(&op)?;
    match ctx.send(&op).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => Err(explain_failure(ctx, Pinned::Op { nonce, hash }, e).await),
    }
}

/// `keyscope account fund AMOUNT`: the owner's own tUSD to the account, from the owner's address — what
/// `account create --collateral` sends, for an account that exists (or whose creation was interrupted
/// before the collateral went in).
async fn fund(g: &Global, amount: &str, again: bool) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let amount = positive(parse_units(amount, 6)?)?;
    let owner = ctx.owner_address();
    let nonce = ctx.provider.get_transaction_count(owner).await?;
    if already_moved(&ctx, Move::Fund, amount, again).await? {
        return Ok(());
    }
    let tx = send_collateral(&ctx, g, amount, nonce).await?;
    emit(
        ctx.json,
        json!({ "funded": amount.to_string(), "moved": amount.to_string(), "transaction": tx }),
        || {
            format!(
                "sent {} tUSD from the owner {owner} to the account {} (transaction {tx})",
                format_amount(amount, 6),
                ctx.account
            )
        },
    );
    Ok(())
}

/// `amount`, unless it is zero: moving nothing is a mistake, not a transaction to pay for.
fn positive(amount: U256) -> anyhow::Result<U256> {
    anyhow::ensure!(
        !amount.is_zero(),
        "the amount is 0: nothing to move; give the amount in tUSD, e.g. 1000"
    );
    Ok(amount)
}

/// The owner's address and the tUSD it holds.
async fn owner_usd(ctx: &Ctx) -> anyhow::Result<(alloy_primitives::Address, U256)> {
    let owner = ctx.owner_address();
    let have = TestUSD::new(ctx.deployment.collateral, &ctx.provider)
        .balanceOf(owner)
        .call()
        .await?;
    Ok((owner, have))
}

/// A token transfer of `amount` from the owner's own address to the account, signed by the owner key at
/// transaction nonce `nonce`; returns its hash once mined.
async fn send_collateral(ctx: &Ctx, g: &Global, amount: U256, nonce: u64) -> anyhow::Result<B256> {
    let (owner, have) = owner_usd(ctx).await?;
    if have < amount {
        anyhow::bail!(
            "the owner {owner} holds {} tUSD, less than {}; nothing was sent",
            format_amount(have, 6),
            format_amount(amount, 6)
        );
    }
    let owner_provider = alloy::providers::ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(ctx.owner.clone()))
        .connect_http(g.rpc.parse()?);
    let sent = async {
        let receipt = TestUSD::new(ctx.deployment.collateral, &owner_provider)
            .transfer(ctx.account, amount)
            .nonce(nonce)
            .send()
            .await?
            .get_receipt()
            .await?;
        anyhow::ensure!(
            receipt.status(),
            "the transfer {} reverted",
            receipt.transaction_hash
        );
        Ok(receipt.transaction_hash)
    }
    .await;
    match sent {
        Ok(tx) => Ok(tx),
        Err(e) => Err(explain_failure(ctx, Pinned::Transaction { from: owner, nonce }, e).await),
    }
}
