//! `keyscope signer serve|new-key|hsm-init|hsm-keygen|verify-audit|quorum-certs|quorum-keygen|quorum-join|
//! quorum-address`: the signing sidecar and its keys, whole or split across a quorum of sidecars.
//! `new-key`, `hsm-keygen` and the quorum's key commands print the key's id alone on stdout
//! (`ID=$(keyscope signer new-key …)`) and say what they did on stderr.

use std::path::PathBuf;

use alloy_primitives::Address;
use anyhow::Context;
use clap::Subcommand;
use keyscope_core::key::Curve;
use keyscope_signer::{
    SignerConfig, audit,
    keys::{HsmKey, HsmLocation, init_token, new_keystore},
    quorum_setup,
};
use serde_json::json;

use crate::{global::Global, output::emit};

#[derive(Debug, Subcommand)]
pub(crate) enum SignerCommand {
    /// Run the signing sidecar from its config file until stopped: it holds the keys and signs a strategy's
    /// in-scope ops over a Unix socket. Keystore password: KEYSCOPE_SIGNER_PASSWORD; HSM PIN: KEYSCOPE_HSM_PIN.
    Serve {
        /// The sidecar's TOML config (see the README).
        #[arg(long)]
        config: PathBuf,
    },
    /// Write a fresh key into an encrypted keystore (password: KEYSCOPE_SIGNER_PASSWORD) and print its id.
    NewKey {
        /// secp256k1, or p256.
        #[arg(long, default_value = "p256")]
        curve: Curve,
        /// The keystore file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Initialise a free token of a PKCS#11 module (SoftHSM, or a fresh slot) with a label, a security
    /// officer PIN and the user PIN in KEYSCOPE_HSM_PIN.
    HsmInit {
        /// The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
        #[arg(long)]
        module: PathBuf,
        /// The token's new label.
        #[arg(long)]
        token: String,
        /// The security officer's PIN.
        #[arg(long)]
        so_pin: String,
    },
    /// Generate a P-256 key inside an HSM token through PKCS#11 (PIN: KEYSCOPE_HSM_PIN) and print its id.
    HsmKeygen {
        /// The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
        #[arg(long)]
        module: PathBuf,
        /// The token's label.
        #[arg(long)]
        token: String,
        /// The new key's label (unique in the token).
        #[arg(long)]
        label: String,
    },
    /// Write the TLS identities of a quorum's members (a new development authority; one file per member,
    /// each with its member's key: hand each member only its own).
    QuorumCerts {
        /// How many members.
        #[arg(long, default_value_t = 3)]
        members: u16,
        /// The folder to write member-<i>.identity.json to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Coordinate the quorum's distributed key generation (no dealer) from this member (its config's
    /// [quorum]); the other members run quorum-join. Prints the key's id. Password: KEYSCOPE_SIGNER_PASSWORD.
    QuorumKeygen {
        /// This member's sidecar config.
        #[arg(long)]
        config: PathBuf,
        /// secp256k1, or p256.
        #[arg(long, default_value = "p256")]
        curve: Curve,
        /// How many members sign.
        #[arg(long, default_value_t = 2)]
        threshold: u16,
        /// This member's safe primes, generated earlier (default: generated now, which takes a while).
        #[arg(long)]
        primes: Option<PathBuf>,
    },
    /// Join the key generation another member coordinates; prints the key's id once this member's share
    /// is saved. Password: KEYSCOPE_SIGNER_PASSWORD.
    QuorumJoin {
        /// This member's sidecar config.
        #[arg(long)]
        config: PathBuf,
        /// This member's safe primes, generated earlier (default: generated now, which takes a while).
        #[arg(long)]
        primes: Option<PathBuf>,
    },
    /// Print the quorum key's id (what an owner grants) from this member's share.
    QuorumAddress {
        /// This member's sidecar config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check an audit trail line by line: hashes, links and the audit key's signatures.
    VerifyAudit {
        /// The trail (the config's audit_log).
        #[arg(long)]
        log: PathBuf,
        /// The audit key's address.
        #[arg(long)]
        auditor: Address,
    },
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// A quorum member's config, password and safe primes (read from `primes`, or generated now).
fn quorum_member(
    config: &std::path::Path,
    primes: Option<&std::path::Path>,
) -> anyhow::Result<(SignerConfig, String, keyscope_signer::quorum_setup::Primes)> {
    let config = SignerConfig::load(config)?;
    let password = env("KEYSCOPE_SIGNER_PASSWORD")
        .context("set the share's password in KEYSCOPE_SIGNER_PASSWORD")?;
    if primes.is_none() {
        eprintln!("generating this member's safe primes (minutes on a slow machine)…");
    }
    let (primes, took) = quorum_setup::primes(primes)?;
    eprintln!("safe primes ready ({:.1} s)", took.as_secs_f64());
    Ok((config, password, primes))
}

/// Says which key a quorum made; its id alone on stdout.
fn quorum_key_made(g: &Global, id: Address, curve: Curve, t: u16, n: u16) {
    eprintln!("{t}-of-{n} {curve} quorum key {id}: this member's share is saved, encrypted");
    emit(
        g.json,
        json!({ "id": id, "curve": curve, "threshold": t, "members": n }),
        || id.to_string(),
    );
}

/// A sidecar asked to stop (SIGTERM, Ctrl-C) takes its socket file with it, so nothing is left that looks
/// like a sidecar; the `.lock` beside it stays (removing a lock another process may be taking is a race).
fn stopped(socket: &std::path::Path) -> ! {
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!(
            "keyscope signer: could not remove {}: {e}",
            socket.display()
        ),
    }
    eprintln!("keyscope signer: stopped");
    // The serving thread never returns by itself, and the runtime would wait for it on the way out.
    std::process::exit(0)
}

pub(crate) async fn run(g: &Global, cmd: SignerCommand) -> anyhow::Result<()> {
    match cmd {
        SignerCommand::Serve { config } => {
            let config = SignerConfig::load(&config)?;
            let socket = config.socket.clone();
            // Refused before it claims to listen: a live sidecar already answers there.
            keyscope_signer::server::check_free(&socket)?;
            eprintln!(
                "keyscope signer: {} keys, listening on {}",
                config.keys.len(),
                socket.display()
            );
            // Its own thread and single-threaded runtime: requests are answered one after another with no
            // hop between threads (the latency bench measures this arrangement).
            let serving = tokio::task::spawn_blocking(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(keyscope_signer::server::run(
                        &config,
                        env("KEYSCOPE_SIGNER_PASSWORD").as_deref(),
                        env("KEYSCOPE_HSM_PIN").as_deref(),
                    ))
                    .map_err(anyhow::Error::from)
            });
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                served = serving => served?,
                _ = term.recv() => stopped(&socket),
                _ = tokio::signal::ctrl_c() => stopped(&socket),
            }
        }
        SignerCommand::NewKey { curve, out } => {
            let password = env("KEYSCOPE_SIGNER_PASSWORD")
                .context("set the keystore password in KEYSCOPE_SIGNER_PASSWORD")?;
            if out.exists() {
                anyhow::bail!("{} exists: refusing to overwrite a key", out.display());
            }
            let id = new_keystore(&out, curve, &password)?;
            eprintln!("{curve} key {id} written to {}", out.display());
            emit(
                g.json,
                json!({ "id": id, "curve": curve, "keystore": out }),
                || id.to_string(),
            );
            Ok(())
        }
        SignerCommand::HsmKeygen {
            module,
            token,
            label,
        } => {
            let pin =
                env("KEYSCOPE_HSM_PIN").context("set the token's user PIN in KEYSCOPE_HSM_PIN")?;
            let at = HsmLocation {
                module,
                token,
                label,
            };
            if HsmKey::open(&at, &pin).is_ok() {
                anyhow::bail!(
                    "token {:?} already holds a key labelled {:?}",
                    at.token,
                    at.label
                );
            }
            let key = HsmKey::generate(&at, &pin)?;
            eprintln!(
                "P-256 key {} generated in token {:?} as {:?}; it never leaves it",
                key.id, at.token, at.label
            );
            emit(
                g.json,
                json!({ "id": key.id, "curve": "p256", "token": at.token, "label": at.label }),
                || key.id.to_string(),
            );
            Ok(())
        }
        SignerCommand::HsmInit {
            module,
            token,
            so_pin,
        } => {
            let pin = env("KEYSCOPE_HSM_PIN")
                .context("set the token's new user PIN in KEYSCOPE_HSM_PIN")?;
            init_token(&module, &token, &so_pin, &pin)?;
            emit(g.json, json!({ "token": token }), || {
                format!("token {token:?} initialised")
            });
            Ok(())
        }
        SignerCommand::QuorumCerts { members, out } => {
            let files = quorum_setup::write_identities(&out, members)?;
            for f in &files {
                eprintln!("wrote {}", f.display());
            }
            emit(g.json, json!({ "identities": files }), || {
                format!("{} member identities in {}", files.len(), out.display())
            });
            Ok(())
        }
        SignerCommand::QuorumKeygen {
            config,
            curve,
            threshold,
            primes,
        } => {
            let (config, password, primes) = quorum_member(&config, primes.as_deref())?;
            eprintln!("waiting for every member to join the key generation…");
            let (id, info) =
                quorum_setup::generate(&config, &password, primes, curve, threshold).await?;
            quorum_key_made(g, id, curve, info.threshold, info.n);
            Ok(())
        }
        SignerCommand::QuorumJoin { config, primes } => {
            let (config, password, primes) = quorum_member(&config, primes.as_deref())?;
            eprintln!("listening for the key generation another member coordinates…");
            let (id, info) = quorum_setup::join(&config, &password, primes).await?;
            quorum_key_made(
                g,
                id,
                keyscope_signer::quorum::curve_of(info.curve),
                info.threshold,
                info.n,
            );
            Ok(())
        }
        SignerCommand::QuorumAddress { config } => {
            let config = SignerConfig::load(&config)?;
            let password = env("KEYSCOPE_SIGNER_PASSWORD")
                .context("set the share's password in KEYSCOPE_SIGNER_PASSWORD")?;
            let (id, curve, t, n) = quorum_setup::address(&config, &password)?;
            eprintln!("{t}-of-{n} {curve} quorum key");
            emit(
                g.json,
                json!({ "id": id, "curve": curve, "threshold": t, "members": n }),
                || id.to_string(),
            );
            Ok(())
        }
        SignerCommand::VerifyAudit { log, auditor } => {
            let (entries, head) = audit::verify(&log, auditor)?;
            emit(g.json, json!({ "entries": entries, "head": head }), || {
                format!("{entries} entries, unbroken and signed by {auditor}; head {head}")
            });
            Ok(())
        }
    }
}
