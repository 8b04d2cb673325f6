//! `keyscope account create|info`, `deposit`, `withdraw`: the owner's side of the account.

use alloy::{
    network::TransactionBuilder,
    providers::Provider,
    rpc::types::{Filter, TransactionRequest},
    sol_types::SolEvent,
};
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
}

pub(crate) async fn run(g: &Global, cmd: AccountCommand) -> anyhow::Result<()> {
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

/// How long after moving an amount the same amount is taken for a re-run rather than a second move.
pub(crate) const REPEAT_WINDOW_SECS: u64 = 600;
/// How far back (in blocks) the venue's log is searched for that move. Some public RPC providers cap a log
/// query far lower (50 to 2,000 blocks): there the check fails with a sentence naming `--again`, not a raw
/// RPC error.
const REPEAT_LOOKBACK_BLOCKS: u64 = 5_000;

/// Margin moved by the owner: into the venue or back out.
#[derive(Clone, Copy)]
enum Move {
    Deposit,
    Withdraw,
}

impl Move {
    fn topic(self) -> B256 {
        match self {
            Move::Deposit => PerpVenue::Deposited::SIGNATURE_HASH,
            Move::Withdraw => PerpVenue::Withdrawn::SIGNATURE_HASH,
        }
    }

    fn past(self) -> &'static str {
        match self {
            Move::Deposit => "deposited",
            Move::Withdraw => "withdrew",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Move::Deposit => "deposit",
            Move::Withdraw => "withdraw",
        }
    }
}

/// Refuses a margin move that looks like a re-run: the venue's own log (the chain, not a file on this
/// machine) shows the account moved exactly `amount` the same way within [`REPEAT_WINDOW_SECS`] of the
/// chain's time. `again` is the user saying the second move is meant.
async fn refuse_repeat(ctx: &Ctx, kind: Move, amount: U256, again: bool) -> anyhow::Result<()> {
    if again {
        return Ok(());
    }
    let latest = ctx
        .provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the chain has no latest block"))?;
    let now = latest.header.timestamp;
    let filter = Filter::new()
        .address(ctx.deployment.venue)
        .event_signature(kind.topic())
        .topic1(ctx.account.into_word())
        .from_block(latest.header.number.saturating_sub(REPEAT_LOOKBACK_BLOCKS))
        .to_block(latest.header.number);
    let logs = ctx.provider.get_logs(&filter).await.map_err(|e| {
        anyhow::anyhow!(
            "could not check the venue's log for a {} of the same amount in the last {} minutes (the RPC \
             refused eth_getLogs over {REPEAT_LOOKBACK_BLOCKS} blocks: {e}); nothing was sent — pass \
             --again to {} without the check",
            kind.verb(),
            REPEAT_WINDOW_SECS / 60,
            kind.verb(),
        )
    })?;
    for log in logs.iter().rev() {
        // Both events carry (account, amount); the amount is the log's only data word.
        if log.data().data.len() != 32 || U256::from_be_slice(&log.data().data) != amount {
            continue;
        }
        let Some(number) = log.block_number else {
            continue;
        };
        let Some(block) = ctx.provider.get_block_by_number(number.into()).await? else {
            continue;
        };
        let ago = now.saturating_sub(block.header.timestamp);
        if ago > REPEAT_WINDOW_SECS {
            break;
        }
        let tx = log
            .transaction_hash
            .map_or_else(String::new, |h| format!(", transaction {h}"));
        anyhow::bail!(
            "this account {} {} tUSD {} ago in chain time (block {number}{tx}); nothing was sent, so a \
             re-run moves no money twice — to {} another {} tUSD, run the command again with --again",
            kind.past(),
            format_amount(amount, 6),
            ago_text(ago),
            kind.verb(),
            format_amount(amount, 6),
        );
    }
    Ok(())
}

fn ago_text(secs: u64) -> String {
    match secs {
        0..=1 => "a moment".into(),
        2..=119 => format!("{secs} seconds"),
        _ => format!("{} minutes", secs / 60),
    }
}

pub(crate) async fn deposit(g: &Global, amount: &str, again: bool) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let amount = parse_units(amount, 6)?;
    // A re-run first: after a first run moved everything, the balance check would give the wrong reason.
    refuse_repeat(&ctx, Move::Deposit, amount, again).await?;
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

pub(crate) async fn withdraw(g: &Global, amount: &str, again: bool) -> anyhow::Result<()> {
    let ctx = Ctx::connect(g).await?;
    ctx.require_account().await?;
    let amount = parse_units(amount, 6)?;
    refuse_repeat(&ctx, Move::Withdraw, amount, again).await?;
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
