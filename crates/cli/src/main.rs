//! `keyscope`: a trader's terminal for Keyscope accounts — deploy an account, fund it, grant and revoke
//! session keys, trade, watch the portfolio — and a one-command local devnet.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod account;
mod apikey;
mod completions;
mod context;
mod demo;
mod devnet;
mod global;
mod order;
mod output;
mod quote;
mod relayer;
mod repeat_guard;
mod scenarios;
mod session;
mod shutdown;
mod signer;
mod sim;

use clap::{CommandFactory, Parser, Subcommand};

use crate::global::Global;

/// Keyscope: ERC-4337 trading accounts with scoped session keys.
#[derive(Debug, Parser)]
#[command(name = "keyscope", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole stack on a fresh anvil: deploy, relayer, two traders, a session key trading and being
    /// refused, a price slide to a margin call and a liquidation; prints a report, writes a chart, exits.
    Demo(demo::DemoArgs),
    /// Start anvil, deploy Keyscope, publish prices, and stay up until Ctrl-C.
    Devnet(devnet::DevnetArgs),
    /// Create or inspect the trading account.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Move collateral from the account into its venue margin. The same amount moved in the last ten
    /// minutes of chain time (read from the venue's log) is taken for a re-run: nothing moves, it says
    /// so and exits 0, unless --again.
    Deposit {
        /// Amount in collateral units (e.g. 1000.5).
        amount: String,
        /// Deposit even though the same amount was deposited in the last ten minutes.
        #[arg(long)]
        again: bool,
    },
    /// Move collateral from venue margin back to the account (owner only; never a session key). The same
    /// amount moved in the last ten minutes of chain time is taken for a re-run: nothing moves, it says so
    /// and exits 0, unless --again.
    Withdraw {
        /// Amount in collateral units.
        amount: String,
        /// Withdraw even though the same amount was withdrawn in the last ten minutes.
        #[arg(long)]
        again: bool,
    },
    /// Grant, revoke and list session keys.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Place and close orders.
    #[command(subcommand)]
    Order(order::OrderCommand),
    /// Quote with signed off-chain orders on the relayer's matcher: place, cancel, schedule a cancel, read
    /// the book, watch the key's orders.
    #[command(subcommand)]
    Quote(quote::QuoteCommand),
    /// API keys for the relayer's channel: create, register (the owner signs), list, revoke.
    #[command(subcommand)]
    Apikey(apikey::ApiKeyCommand),
    /// Positions, account value, margin requirements and margin-call state.
    Portfolio,
    /// Run the ERC-4337 relayer (bundler) against a chain, or export its audit log.
    Relayer(relayer::RelayerArgs),
    /// Margin-call and liquidation scenarios on revm or anvil.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// The signing sidecar: hold session keys (keystore or HSM) and sign a strategy's in-scope ops.
    #[command(subcommand)]
    Signer(signer::SignerCommand),
    /// Print a shell completion script, e.g. `keyscope completions bash >
    /// ~/.local/share/bash-completion/completions/keyscope`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() {
    let cli = Cli::parse();
    if spawns_children(&cli.command) {
        // Before any thread: the worker must be forked from a single-threaded process.
        shutdown::supervise();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async_main(cli));
}

/// Commands that start anvil: it must not outlive us, however we stop.
fn spawns_children(command: &Command) -> bool {
    matches!(
        command,
        Command::Devnet(_) | Command::Demo(_) | Command::Sim(sim::SimCommand::Run { .. })
    )
}

async fn async_main(cli: Cli) {
    let json = cli.global.json;
    if let Err(e) = run(cli).await {
        if broken_pipe(&e) {
            // The reader went away (`keyscope relayer audit | head`): stop quietly, as a pipe's writer does.
            std::process::exit(128 + libc::SIGPIPE);
        }
        if json {
            println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
        } else {
            eprintln!("error: {e:#}");
        }
        std::process::exit(1);
    }
}

/// True if `e` is a write to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if spawns_children(&cli.command) {
        shutdown::install()?;
    }
    let g = cli.global;
    match cli.command {
        Command::Devnet(args) => devnet::run(&g, args).await,
        Command::Demo(args) => demo::run(&g, args).await,
        Command::Account(cmd) => account::run(&g, cmd).await,
        Command::Deposit { amount, again } => account::deposit(&g, &amount, again).await,
        Command::Withdraw { amount, again } => account::withdraw(&g, &amount, again).await,
        Command::Session(cmd) => session::run(&g, cmd).await,
        Command::Order(cmd) => order::run(&g, cmd).await,
        Command::Quote(cmd) => quote::run(&g, cmd).await,
        Command::Apikey(cmd) => apikey::run(&g, cmd).await,
        Command::Portfolio => order::portfolio(&g).await,
        Command::Sim(cmd) => sim::run_command(&g, cmd).await,
        Command::Relayer(args) => relayer::run(&g, args).await,
        Command::Signer(cmd) => signer::run(&g, cmd).await,
        Command::Completions { shell } => completions::print(shell, &mut Cli::command()),
    }
}
