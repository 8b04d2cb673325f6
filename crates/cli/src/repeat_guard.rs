//! The re-run guard of the commands that move money (`deposit`, `withdraw`, `account fund`).
//!
//! A run that finds the same move of the same amount in the chain's own log (not a file on this machine)
//! within the last ten minutes of chain time moves nothing, says so and exits 0 (`--again` moves anyway).
//! Every move is made at a nonce read *before* that log: if an earlier run's op or transaction is mined
//! between the check and the move, this run's op is stale and never mined; if the earlier one is still
//! waiting, the two share the nonce and at most one of them is mined. Either way money moves once.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::{eips::BlockNumberOrTag, providers::Provider, rpc::types::Filter, sol_types::SolEvent};
use alloy_primitives::{Address, B256, U256};
use anyhow::anyhow;
use keyscope_core::{
    bindings::{IEntryPoint, PerpVenue, TestUSD},
    client::ClientError,
    units::format_amount,
};
use serde_json::json;

use crate::{context::Ctx, output::emit};

/// How long after moving an amount the same amount is taken for a re-run rather than a second move.
pub(crate) const REPEAT_WINDOW_SECS: u64 = 600;
/// The first log query's span, in blocks; the walk goes back span by span until it is past the window.
const FIRST_SPAN_BLOCKS: u64 = 2_000;
/// Public RPCs cap `eth_getLogs` (to 50 to 2,000 blocks): a refused span is retried a quarter as long,
/// down to this.
const SMALLEST_SPAN_BLOCKS: u64 = 50;

/// Money the owner moves.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Move {
    /// The account's tUSD into its venue margin (an owner op).
    Deposit,
    /// Venue margin back to the account (an owner op).
    Withdraw,
    /// The owner's own tUSD to the account (a token transfer from the owner's address).
    Fund,
}

impl Move {
    /// The chain's record of this move by this account.
    fn filter(self, ctx: &Ctx) -> Filter {
        match self {
            Move::Deposit | Move::Withdraw => Filter::new()
                .address(ctx.deployment.venue)
                .event_signature(match self {
                    Move::Deposit => PerpVenue::Deposited::SIGNATURE_HASH,
                    _ => PerpVenue::Withdrawn::SIGNATURE_HASH,
                })
                .topic1(ctx.account.into_word()),
            Move::Fund => Filter::new()
                .address(ctx.deployment.collateral)
                .event_signature(TestUSD::Transfer::SIGNATURE_HASH)
                .topic1(ctx.owner_address().into_word())
                .topic2(ctx.account.into_word()),
        }
    }

    /// "this account deposited 5,000 tUSD into venue margin", for the refusal.
    fn happened(self, amount: U256) -> String {
        let amount = format_amount(amount, 6);
        match self {
            Move::Deposit => format!("this account deposited {amount} tUSD into venue margin"),
            Move::Withdraw => format!("this account withdrew {amount} tUSD from venue margin"),
            Move::Fund => format!("the owner sent this account {amount} tUSD"),
        }
    }

    /// The JSON field that says how much this command moved.
    fn json_key(self) -> &'static str {
        match self {
            Move::Deposit => "deposited",
            Move::Withdraw => "withdrawn",
            Move::Fund => "funded",
        }
    }
}

/// This run's own command line with `--again` added: every option given (`--salt`, `--rpc`, `--bundler`,
/// …) kept, so the command printed moves from the same account on the same chain; a key given on the
/// command line is shown as `<key>`, never printed.
fn again_command() -> String {
    again_command_of(std::env::args().skip(1))
}

fn again_command_of(args: impl Iterator<Item = String>) -> String {
    const SECRET: [&str; 2] = ["--key", "--relayer-key"];
    let mut words = vec!["keyscope".to_string()];
    let mut secret_next = false;
    for arg in args {
        if std::mem::take(&mut secret_next) {
            words.push("<key>".into());
            continue;
        }
        if SECRET.contains(&arg.as_str()) {
            secret_next = true;
            words.push(arg);
        } else if let Some(flag) = SECRET.iter().find(|f| arg.starts_with(&format!("{f}="))) {
            words.push(format!("{flag}=<key>"));
        } else if let Some(hidden) = without_url_credentials(&arg) {
            words.push(hidden);
        } else if arg.is_empty()
            || arg
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_=.,:/@+%".contains(c)))
        {
            words.push(format!("'{}'", arg.replace('\'', r"'\''")));
        } else {
            words.push(arg);
        }
    }
    if !words.iter().any(|w| w == "--again") {
        // Before a `--`: after it, `--again` would be read as a value.
        match words.iter().position(|w| w == "--") {
            Some(at) => words.insert(at, "--again".into()),
            None => words.push("--again".into()),
        }
    }
    words.join(" ")
}

/// `arg` with a URL's user and password (`http://user:token@host`) shown as `<credentials>`, if it has any.
fn without_url_credentials(arg: &str) -> Option<String> {
    let (scheme, rest) = arg.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some(format!("{scheme}://<credentials>@{}", &rest[at + 1..]))
}

/// The same move of the same amount found in the window.
#[derive(Debug)]
struct Repeat {
    block: u64,
    transaction: Option<B256>,
    seconds_ago: u64,
    /// How far the chain's latest block lags this machine's clock (an idle devnet mines no blocks).
    chain_lag: u64,
}

/// True if this run is a re-run: `kind` of exactly `amount` is in the chain's log within the window (and
/// `again` was not given). Then it has said so — what moved, when, and the command that moves it again —
/// and the caller sends nothing.
pub(crate) async fn already_moved(
    ctx: &Ctx,
    kind: Move,
    amount: U256,
    again: bool,
) -> anyhow::Result<bool> {
    if again {
        return Ok(false);
    }
    let Some(repeat) = find_repeat(ctx, kind, amount).await? else {
        return Ok(false);
    };
    report_repeat(ctx, kind, amount, &repeat);
    Ok(true)
}

/// The newest `kind` of exactly `amount` by this account within [`REPEAT_WINDOW_SECS`] of the chain's
/// latest block, read from the chain's log span by span, newest first.
async fn find_repeat(ctx: &Ctx, kind: Move, amount: U256) -> anyhow::Result<Option<Repeat>> {
    let latest = block_at(ctx, BlockNumberOrTag::Latest).await?;
    let now = latest.1;
    let since = now.saturating_sub(REPEAT_WINDOW_SECS);
    let filter = kind.filter(ctx);
    let mut to = latest.0;
    let mut span = FIRST_SPAN_BLOCKS;
    loop {
        let from = to.saturating_sub(span - 1);
        let logs = match ctx
            .provider
            .get_logs(&filter.clone().from_block(from).to_block(to))
            .await
        {
            Ok(logs) => logs,
            Err(_) if span > SMALLEST_SPAN_BLOCKS => {
                span = (span / 4).max(SMALLEST_SPAN_BLOCKS);
                continue;
            }
            Err(e) => anyhow::bail!(
                "could not read the chain's log for an earlier move of the same amount (the RPC refused \
                 eth_getLogs even over {SMALLEST_SPAN_BLOCKS} blocks: {e}); nothing was sent — run `{}` to \
                 move without the check",
                again_command()
            ),
        };
        for log in logs.iter().rev() {
            // Every one of these events carries the amount as its only data word.
            if log.data().data.len() != 32 || U256::from_be_slice(&log.data().data) != amount {
                continue;
            }
            let Some(number) = log.block_number else {
                continue;
            };
            let at = match log.block_timestamp {
                Some(t) => t,
                None => block_at(ctx, number.into()).await?.1,
            };
            if at < since {
                return Ok(None);
            }
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            return Ok(Some(Repeat {
                block: number,
                transaction: log.transaction_hash,
                seconds_ago: now.saturating_sub(at),
                chain_lag: wall.saturating_sub(now),
            }));
        }
        if from == 0 || block_at(ctx, from.into()).await?.1 < since {
            return Ok(None);
        }
        to = from - 1;
    }
}

/// (number, timestamp) of a block.
async fn block_at(ctx: &Ctx, at: BlockNumberOrTag) -> anyhow::Result<(u64, u64)> {
    let block = ctx
        .provider
        .get_block_by_number(at)
        .await?
        .ok_or_else(|| anyhow!("the chain has no block {at}"))?;
    Ok((block.header.number, block.header.timestamp))
}

/// Prints what the earlier move was and that this run moved nothing (JSON: `moved` "0" and `repeatOf`).
fn report_repeat(ctx: &Ctx, kind: Move, amount: U256, repeat: &Repeat) {
    let again = again_command();
    emit(
        ctx.json,
        json!({
            kind.json_key(): "0",
            "moved": "0",
            "repeatOf": {
                "amount": amount.to_string(),
                "block": repeat.block,
                "transaction": repeat.transaction,
                "secondsAgo": repeat.seconds_ago,
            },
            "again": again,
        }),
        || {
            let tx = repeat
                .transaction
                .map_or_else(String::new, |h| format!(", transaction {h}"));
            let idle = if repeat.chain_lag > 60 {
                format!(
                    " — the chain's last block is {} behind this machine's clock (an idle devnet mines no \
                     blocks)",
                    ago_text(repeat.chain_lag)
                )
            } else {
                String::new()
            };
            format!(
                "{} {} ago in chain time (block {}{tx}){idle}; nothing was sent, so a re-run moves no money \
                 twice — to move it again, run `{again}`",
                kind.happened(amount),
                ago_text(repeat.seconds_ago),
                repeat.block,
            )
        },
    );
}

fn ago_text(secs: u64) -> String {
    match secs {
        0..=1 => "a moment".into(),
        2..=119 => format!("{secs} seconds"),
        _ => format!("{} minutes", secs / 60),
    }
}

/// The nonce a move was made at, read before the log was.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pinned {
    /// An owner op at this nonce of the account's owner lane, with its userOpHash.
    Op { nonce: U256, hash: B256 },
    /// A transaction from `from` at this nonce.
    Transaction { from: Address, nonce: u64 },
}

/// Says what a failed move pinned at `pinned` means for the money: whether something else at that nonce
/// (an earlier run of this command, or another command of the same owner) was mined, or one at that nonce
/// is still waiting — so the user knows nothing moved twice and what to run. Other failures are returned
/// as they are.
pub(crate) async fn explain_failure(
    ctx: &Ctx,
    pinned: Pinned,
    err: anyhow::Error,
) -> anyhow::Error {
    // Whose nonce it is: the account's owner lane (any owner op of this account, whatever the command), or
    // the sending address (any transaction from it: a transfer, gas funding, another account's command).
    let (nonce, now, whose) = match pinned {
        Pinned::Op { nonce, .. } => match ctx.client.owner_nonce(ctx.account).await {
            Ok(now) => (nonce, now, format!("an op of account {}", ctx.account)),
            Err(_) => return err,
        },
        Pinned::Transaction { from, nonce } => {
            match ctx.provider.get_transaction_count(from).await {
                Ok(now) => (
                    U256::from(nonce),
                    U256::from(now),
                    format!("a transaction from {from}"),
                ),
                Err(_) => return err,
            }
        }
    };
    if now > nonce {
        if let Pinned::Op { hash, .. } = pinned {
            if let Some(tx) = op_mined(ctx, hash).await {
                // This very op is mined. If this run's error is its outcome (its call reverted), that is the
                // answer; otherwise another run sent the very same op (same account, calls, nonce and fees
                // sign to the same op) and it was mined once.
                if format!("{err:#}").contains("its call reverted") {
                    return err;
                }
                return anyhow!(
                    "the op this run signed ({hash}) is mined once, in transaction {tx}: an earlier run of \
                     this same command sent the very same op, so nothing moved twice and this run sent \
                     nothing more (`keyscope account info` shows the account now)"
                );
            }
        }
        return anyhow!(
            "this run sent nothing that was mined, so nothing moved twice: while it ran, {whose} used nonce \
             {nonce} and was mined — an earlier run of this command, or another command of the same owner. \
             If this command still needs doing, run it again: it reads the chain afresh (and says so if the \
             earlier run already did the same). The refusal: {err:#}"
        );
    }
    let waiting = err.chain().any(|e| {
        let text = e.to_string().to_lowercase();
        // A node's or bundler's pool refusing a second op or transaction at a nonce it holds one at, or a
        // simulation against the pending state, where the waiting one already used it (AA25).
        text.contains("underpriced")
            || text.contains("already known")
            || text.contains("already imported")
            || text.contains("replacement")
            || text.contains("aa25")
    });
    if waiting {
        return anyhow!(
            "{whose} at nonce {nonce} is already waiting to be mined — an earlier run of this command, or \
             another command of the same owner; this run shares its nonce, so at most one of the two is \
             ever mined, and nothing new was sent. Once that one is mined (`keyscope account info` shows \
             the account), run this command again if it still needs doing. The refusal: {err:#}"
        );
    }
    if err.chain().any(|e| {
        matches!(
            e.downcast_ref::<ClientError>(),
            Some(ClientError::Timeout(_))
        )
    }) {
        return anyhow!(
            "{err:#}: the op at nonce {nonce} may still be mined — `keyscope account info` shows whether it \
             was. Running this command again is safe: it reads the nonce and the chain's log again, and \
             shares nonce {nonce} with the waiting op, so at most one of them is mined"
        );
    }
    err
}

/// The transaction that mined op `hash`, if a recent block holds its `UserOperationEvent`.
async fn op_mined(ctx: &Ctx, hash: B256) -> Option<B256> {
    let latest = ctx.provider.get_block_number().await.ok()?;
    let filter = Filter::new()
        .address(ctx.deployment.entry_point)
        .event_signature(IEntryPoint::UserOperationEvent::SIGNATURE_HASH)
        .topic1(hash)
        .from_block(latest.saturating_sub(SMALLEST_SPAN_BLOCKS))
        .to_block(latest);
    let logs = ctx.provider.get_logs(&filter).await.ok()?;
    logs.first().and_then(|l| l.transaction_hash)
}

#[cfg(test)]
mod tests {
    use super::again_command_of;

    fn again(line: &[&str]) -> String {
        again_command_of(line.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_again_command_keeps_every_option_and_hides_keys() {
        assert_eq!(
            again(&["--salt", "3", "deposit", "1000"]),
            "keyscope --salt 3 deposit 1000 --again"
        );
        assert_eq!(
            again(&["withdraw", "5", "--rpc", "http://h:8545", "--json"]),
            "keyscope withdraw 5 --rpc http://h:8545 --json --again"
        );
        let hidden = again(&["--key", "0xabc", "deposit", "1", "--relayer-key=0xdef"]);
        assert_eq!(
            hidden,
            "keyscope --key <key> deposit 1 --relayer-key=<key> --again"
        );
        assert_eq!(
            again(&["--deployment", "my file.json", "deposit", "1"]),
            "keyscope --deployment 'my file.json' deposit 1 --again"
        );
        // `--again` goes before a `--`, where it is still an option.
        assert_eq!(
            again(&["--salt", "3", "deposit", "--", "2000"]),
            "keyscope --salt 3 deposit --again -- 2000"
        );
        // A URL's credentials are not printed.
        assert_eq!(
            again(&[
                "deposit",
                "1",
                "--bundler",
                "https://u:tok@relay.example/rpc"
            ]),
            "keyscope deposit 1 --bundler https://<credentials>@relay.example/rpc --again"
        );
    }
}
