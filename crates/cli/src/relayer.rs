//! `keyscope relayer`: run the ERC-4337 relayer against a chain, or export its audit log.

use std::{net::SocketAddr, path::PathBuf};

use keyscope_relayer::{Config, Relayer, config::BundlingMode, store};
use serde_json::json;

use crate::{Global, output::emit};

/// The chain endpoint `Global::rpc` defaults to.
const DEFAULT_RPC: &str = "http://127.0.0.1:8545";

#[derive(Debug, clap::Args)]
pub struct RelayerArgs {
    #[command(subcommand)]
    command: Option<RelayerCommand>,
    /// TOML config file (every field optional; flags and KEYSCOPE_RELAYER_* override it).
    #[arg(long, env = "KEYSCOPE_RELAYER_CONFIG")]
    config: Option<PathBuf>,
    /// Address for JSON-RPC over HTTP and WebSocket [default: 127.0.0.1:4337].
    #[arg(long, env = "KEYSCOPE_RELAYER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address for Prometheus /metrics [default: none].
    #[arg(long, env = "KEYSCOPE_RELAYER_METRICS")]
    metrics: Option<SocketAddr>,
    /// Where the store (ops, audit log) lives [default: .keyscope/relayer].
    #[arg(long, env = "KEYSCOPE_RELAYER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Relayer keystore file (password from KEYSCOPE_RELAYER_PASSWORD); or pass --relayer-key.
    #[arg(long, env = "KEYSCOPE_RELAYER_KEYSTORE")]
    relayer_keystore: Option<PathBuf>,
    /// auto: bundle continuously; manual: only on debug_bundler_sendBundleNow.
    #[arg(long, value_parser = ["auto", "manual"])]
    mode: Option<String>,
    /// Serve the debug_bundler_* methods (tests and devnets only).
    #[arg(long)]
    debug_api: bool,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Debug, clap::Subcommand)]
enum RelayerCommand {
    /// Export the audit log (every accepted op and what became of it) from a stopped relayer's store,
    /// after checking its hash chain.
    Audit {
        /// The relayer's data directory.
        #[arg(long, default_value = ".keyscope/relayer")]
        data_dir: PathBuf,
        /// jsonl (one entry per line, with the signed op) or csv.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
}

/// The configuration: file, then flags and environment.
pub fn config(g: &Global, args: &RelayerArgs) -> anyhow::Result<Config> {
    let mut c = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if args.config.is_none() || g.rpc != DEFAULT_RPC {
        c.rpc_url = g.rpc.clone();
    }
    if let Some(v) = args.listen {
        c.listen = v;
    }
    if let Some(v) = args.metrics {
        c.metrics_listen = Some(v);
    }
    if let Some(v) = &args.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(k) = &g.relayer_key {
        c.relayer_key = Some(k.clone());
    }
    if let Some(k) = &args.relayer_keystore {
        c.keystore = Some(k.clone());
    }
    if c.keystore.is_some() {
        c.keystore_password = std::env::var("KEYSCOPE_RELAYER_PASSWORD").ok();
    }
    if let Some(d) = &g.deployment {
        c.deployment = Some(d.clone());
    }
    match args.mode.as_deref() {
        Some("manual") => c.bundler.mode = BundlingMode::Manual,
        Some("auto") => c.bundler.mode = BundlingMode::Auto,
        _ => {}
    }
    c.debug_api |= args.debug_api;
    Ok(c)
}

pub async fn run(g: &Global, args: RelayerArgs) -> anyhow::Result<()> {
    if let Some(RelayerCommand::Audit { data_dir, format }) = &args.command {
        return export(data_dir, format);
    }
    init_logs(&args.log_format);
    // Only a deployment (or venue) it is given makes the relayer trading-aware: it never guesses one.
    let c = config(g, &args)?;
    let relayer = Relayer::start(c).await?;
    emit(
        g.json,
        json!({
            "ready": true,
            "rpc": relayer.url(),
            "ws": relayer.ws_url(),
            "metrics": relayer.metrics_addr.map(|a| format!("http://{a}/metrics")),
            "relayer": relayer.identity().relayer,
            "entryPoint": relayer.identity().entry_point,
            "chainId": relayer.identity().chain_id,
            "resumed": relayer.resumed,
        }),
        || {
            format!(
                "relayer serving on {} (WebSocket {}) for chain {}, EntryPoint {}; signs bundles as {}{}{}\nCtrl-C stops it.",
                relayer.url(),
                relayer.ws_url(),
                relayer.identity().chain_id,
                relayer.identity().entry_point,
                relayer.identity().relayer,
                relayer
                    .metrics_addr
                    .map(|a| format!("; metrics at http://{a}/metrics"))
                    .unwrap_or_default(),
                if relayer.resumed > 0 {
                    format!("; resumed {} unfinished ops", relayer.resumed)
                } else {
                    String::new()
                },
            )
        },
    );
    wait_for_stop().await;
    relayer.stop().await;
    if !g.json {
        println!("relayer stopped");
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_stop() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

fn init_logs(format: &str) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("KEYSCOPE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn export(data_dir: &std::path::Path, format: &str) -> anyhow::Result<()> {
    let entries = store::export_audit(&data_dir.join("relayer.redb"))?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if format == "csv" {
        writeln!(
            out,
            "seq,at_us,event,user_op_hash,sender,session_key,nonce,tx_hash,block_number,reason,entry_hash"
        )?;
        for e in entries {
            let reason = e.reason.unwrap_or_default().replace('"', "\"\"");
            writeln!(
                out,
                "{},{},{},{},{},{},{:#x},{},{},\"{}\",{}",
                e.seq,
                e.at_us,
                e.event,
                e.user_op_hash,
                e.sender,
                e.session_key.map(|k| k.to_string()).unwrap_or_default(),
                e.nonce,
                e.tx_hash.map(|h| h.to_string()).unwrap_or_default(),
                e.block_number.map(|n| n.to_string()).unwrap_or_default(),
                reason,
                e.hash
            )?;
        }
    } else {
        for e in entries {
            writeln!(out, "{}", serde_json::to_string(&e)?)?;
        }
    }
    Ok(())
}
