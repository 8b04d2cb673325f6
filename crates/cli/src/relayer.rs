//! `keyscope relayer`: run the ERC-4337 relayer against a chain, or export its audit log.

use std::{net::SocketAddr, path::PathBuf};

use keyscope_relayer::{Config, Relayer, config::BundlingMode, store};
use serde_json::json;

use crate::{global::Global, output::emit};

/// The chain endpoint `Global::rpc` defaults to.
const DEFAULT_RPC: &str = "http://127.0.0.1:8545";

#[derive(Debug, clap::Args)]
pub(crate) struct RelayerArgs {
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
    /// Keep the store in Postgres (postgres://user@host:port/db), shared by every instance of a
    /// deployment (see [cluster] in the config) [default: redb in --data-dir].
    #[arg(long, env = "KEYSCOPE_RELAYER_STORE")]
    store: Option<String>,
    /// This instance's name in a deployment on Postgres: unique, and the same across its restarts
    /// [default: the listen address].
    #[arg(long, env = "KEYSCOPE_RELAYER_INSTANCE")]
    instance: Option<String>,
    /// Relayer keystore file (password from KEYSCOPE_RELAYER_PASSWORD); or pass --relayer-key.
    #[arg(long, env = "KEYSCOPE_RELAYER_KEYSTORE")]
    relayer_keystore: Option<PathBuf>,
    /// auto: bundle continuously; manual: only on debug_bundler_sendBundleNow.
    #[arg(long, value_parser = ["auto", "manual"])]
    mode: Option<String>,
    /// Serve the debug_bundler_* methods (tests and devnets only).
    #[arg(long)]
    debug_api: bool,
    /// Stake (wei, decimal or 0x-hex) an entity needs to count as staked [default: 1].
    #[arg(long, env = "KEYSCOPE_RELAYER_MIN_STAKE", value_parser = parse_wei)]
    min_stake: Option<alloy_primitives::U256>,
    /// Unstake delay (seconds) an entity needs to count as staked [default: 86400].
    #[arg(long, env = "KEYSCOPE_RELAYER_MIN_UNSTAKE_DELAY")]
    min_unstake_delay: Option<u32>,
    /// Pooled ops one unstaked sender may have (ERC-7562 SAME_SENDER_MEMPOOL_COUNT is 4) [default: 64].
    #[arg(long, env = "KEYSCOPE_RELAYER_MAX_OPS_PER_SENDER")]
    max_ops_per_sender: Option<usize>,
    #[command(flatten)]
    tls: Box<TlsArgs>,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// TLS on the JSON-RPC listener (boxed: the command's arguments stay small).
#[derive(Debug, clap::Args)]
struct TlsArgs {
    /// Serve JSON-RPC over TLS with this certificate chain (PEM; with --tls-key). Re-read when the file
    /// changes. `keyscope relayer tls-init` writes a development pair.
    #[arg(long, env = "KEYSCOPE_RELAYER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM; with --tls-cert).
    #[arg(long, env = "KEYSCOPE_RELAYER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback --listen (behind a proxy that terminates TLS).
    #[arg(long, env = "KEYSCOPE_RELAYER_ALLOW_PLAINTEXT")]
    allow_plaintext: bool,
}

/// A wei amount: decimal or 0x-hex.
fn parse_wei(s: &str) -> Result<alloy_primitives::U256, String> {
    s.parse()
        .map_err(|e| format!("{s:?} is not a wei amount (decimal or 0x-hex): {e}"))
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
    /// Write a local development CA (ca.pem, ca.key) and a certificate it issues for localhost,
    /// 127.0.0.1 and ::1 (cert.pem, key.pem) into --out; run again to renew the certificate under the
    /// same CA. For devnets and demos: clients must trust ca.pem.
    TlsInit {
        /// The directory to write into.
        #[arg(long, default_value = ".keyscope/tls")]
        out: PathBuf,
        /// More names or addresses the certificate is for (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// How long the certificate is valid (days).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(i64).range(1..=825))]
        days: i64,
    },
}

/// The configuration: file, then flags and environment.
pub(crate) fn config(g: &Global, args: &RelayerArgs) -> anyhow::Result<Config> {
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
    if let Some(v) = &args.store {
        c.store = Some(v.clone());
    }
    if let Some(v) = &args.instance {
        c.cluster.instance = Some(v.clone());
    }
    // The matcher's settler key (never on the command line).
    if let Ok(key) = std::env::var("KEYSCOPE_RELAYER_SETTLER_KEY") {
        c.matcher.settler_key = Some(key);
    }
    // More bundle keys an instance of a deployment may lease, comma-separated (never on the command line).
    if let Ok(keys) = std::env::var("KEYSCOPE_RELAYER_BUNDLE_KEYS") {
        c.cluster.bundle_keys.extend(
            keys.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from),
        );
    }
    if let Some(k) = &g.relayer_key {
        if std::env::var("KEYSCOPE_RELAYER_KEY").ok().as_ref() != Some(k) {
            eprintln!(
                "warning: --relayer-key puts the bundle key in the process list (/proc/PID/cmdline) for \
                 every local user to read; use --relayer-keystore or KEYSCOPE_RELAYER_KEY"
            );
        }
        c.relayer_key = Some(k.clone());
    }
    if let Ok(token) = std::env::var("KEYSCOPE_RELAYER_ADMIN_TOKEN") {
        c.admin_token = Some(token);
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
    if let Some(v) = args.min_stake {
        c.min_stake_wei = v;
    }
    if let Some(v) = args.min_unstake_delay {
        c.min_unstake_delay_secs = v;
    }
    if let Some(v) = args.max_ops_per_sender {
        c.pool.max_ops_per_sender = v;
    }
    if let (Some(cert), Some(key)) = (&args.tls.tls_cert, &args.tls.tls_key) {
        c.tls = Some(match c.tls.take() {
            Some(t) => keyscope_relayer::config::TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                ..t
            },
            None => keyscope_relayer::config::TlsConfig::new(cert.clone(), key.clone()),
        });
    }
    c.allow_plaintext |= args.tls.allow_plaintext;
    Ok(c)
}

/// `tls-init`: the development CA and certificate, and where they are.
fn tls_init(g: &Global, out: &std::path::Path, hosts: &[String], days: i64) -> anyhow::Result<()> {
    let f = keyscope_relayer::tls::DevCa::write_dev_files(out, hosts, days)?;
    emit(
        g.json,
        json!({
            "caCert": f.ca_cert,
            "caKey": f.ca_key,
            "cert": f.cert,
            "key": f.key,
            "newCa": f.new_ca,
            "hosts": f.hosts,
        }),
        || {
            format!(
                "{} a certificate for {}, valid {days} days\n\
                 \x20 CA certificate (clients trust it): {}\n\
                 \x20 CA key (0600, keep it private):    {}\n\
                 \x20 relayer certificate:               {}\n\
                 \x20 relayer key (0600):                {}\n\
                 serve with: keyscope relayer --tls-cert {} --tls-key {}",
                if f.new_ca {
                    "wrote a new development CA and"
                } else {
                    "kept the development CA in place and wrote"
                },
                f.hosts.join(", "),
                f.ca_cert.display(),
                f.ca_key.display(),
                f.cert.display(),
                f.key.display(),
                f.cert.display(),
                f.key.display(),
            )
        },
    );
    Ok(())
}

pub(crate) async fn run(g: &Global, args: RelayerArgs) -> anyhow::Result<()> {
    match &args.command {
        Some(RelayerCommand::Audit { data_dir, format }) => return export(data_dir, format),
        Some(RelayerCommand::TlsInit { out, hosts, days }) => {
            return tls_init(g, out, hosts, *days);
        }
        None => {}
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
pub(crate) async fn wait_for_stop() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

fn init_logs(format: &str) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_env("KEYSCOPE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log file or a collector gets plain text, never escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<keyscope_relayer::Config, String> {
        let cli = Cli::try_parse_from(["keyscope", "relayer"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        let Command::Relayer(r) = cli.command else {
            panic!("not the relayer command")
        };
        super::config(&cli.global, &r).map_err(|e| e.to_string())
    }

    #[test]
    fn stake_and_pool_limits_come_from_flags() {
        let c = parse(&[
            "--min-stake",
            "0xde0b6b3a7640000",
            "--min-unstake-delay",
            "1",
            "--max-ops-per-sender",
            "4",
        ])
        .unwrap();
        assert_eq!(
            c.min_stake_wei,
            alloy_primitives::U256::from(10u128.pow(18))
        );
        assert_eq!(c.min_unstake_delay_secs, 1);
        assert_eq!(c.pool.max_ops_per_sender, 4);
        // Without the flags, the shipped defaults.
        let d = parse(&[]).unwrap();
        let shipped = keyscope_relayer::Config::default();
        assert_eq!(d.min_stake_wei, shipped.min_stake_wei);
        assert_eq!(d.pool.max_ops_per_sender, shipped.pool.max_ops_per_sender);
    }

    #[test]
    fn tls_flags_set_the_tls_section_and_need_each_other() {
        let c = parse(&[
            "--tls-cert",
            "/etc/k/cert.pem",
            "--tls-key",
            "/etc/k/key.pem",
        ])
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, std::path::PathBuf::from("/etc/k/cert.pem"));
        assert_eq!(tls.key, std::path::PathBuf::from("/etc/k/key.pem"));
        assert_eq!(tls.reload_secs, 5, "the rest at their defaults");
        let e = parse(&["--tls-cert", "/etc/k/cert.pem"]).unwrap_err();
        assert!(e.contains("--tls-key"), "{e}");
        assert!(parse(&[]).unwrap().tls.is_none());
        assert!(parse(&["--allow-plaintext"]).unwrap().allow_plaintext);
    }

    #[test]
    fn tls_init_writes_a_pair_the_relayer_loads() {
        let out =
            std::env::temp_dir().join(format!("keyscope-cli-tls-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let cli = Cli::try_parse_from([
            "keyscope",
            "--json",
            "relayer",
            "tls-init",
            "--out",
            out.to_str().unwrap(),
            "--host",
            "relayer.lan",
        ])
        .unwrap();
        let Command::Relayer(r) = cli.command else {
            panic!("not the relayer command")
        };
        let Some(super::RelayerCommand::TlsInit {
            out: o,
            hosts,
            days,
        }) = &r.command
        else {
            panic!("not tls-init")
        };
        assert_eq!(
            (hosts.as_slice(), *days),
            (&["relayer.lan".to_string()][..], 90)
        );
        super::tls_init(&cli.global, o, hosts, *days).unwrap();
        keyscope_relayer::tls::load_certified_key(&out.join("cert.pem"), &out.join("key.pem"))
            .unwrap();
        let e = Cli::try_parse_from(["keyscope", "relayer", "tls-init", "--days", "0"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--days"), "{e}");
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_bad_stake_is_refused_by_name() {
        let e = parse(&["--min-stake", "1eth"]).unwrap_err();
        assert!(
            e.contains("--min-stake") && e.contains("not a wei amount"),
            "{e}"
        );
    }
}
