//! `keyscope apikey create|register|list|revoke`: API keys for the relayer's channel. `create` writes a new
//! Ed25519 key to a file (0600); `register` has the account's owner (`--key`/`--keystore`) sign the key's
//! registration — permission, expiry, allowed addresses — which the relayer checks through the account's
//! ERC-1271; `list` asks the relayer for the account's keys with a request signed by one of them; `revoke`
//! has the owner sign the key's revocation. Commands that talk to the relayer (`quote`, `apikey list`) sign
//! their requests with `--api-key <file>` / `KEYSCOPE_API_KEY`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use alloy::providers::Provider;
use alloy_primitives::B256;
use anyhow::{Context, bail};
use clap::Subcommand;
use keyscope_core::api_key::{
    ApiKey, DEFAULT_WINDOW_MS, Permission, Registration, Revocation, call_relayer, now_ms,
};
use serde_json::{Value, json};

use crate::{context::Ctx, global::Global, output::emit};

#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Generate a new API key and write its secret to a file (readable by you only).
    Create {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Register the key of --api-key for the owner's account (the owner signs; the relayer checks it
    /// through the account's ERC-1271).
    Register {
        /// read-only, trade or cancel-only.
        #[arg(long, default_value = "trade")]
        permission: Permission,
        /// How long the key is good: 30d, 12h, 90m.
        #[arg(long, default_value = "30d")]
        expires_in: String,
        /// Accept the key only from these client addresses (repeat the flag); none: from anywhere.
        #[arg(long = "allow-ip")]
        allow_ips: Vec<IpAddr>,
        /// A registration of the same key again (a new permission or expiry) needs a higher nonce.
        #[arg(long)]
        nonce: Option<u64>,
    },
    /// List the account's keys (signed with --api-key, one of them).
    List,
    /// Revoke a key of the owner's account (the owner signs) [default: the key of --api-key].
    Revoke {
        /// The key id (its public key), as `create` printed it.
        #[arg(long)]
        key_id: Option<B256>,
    },
}

/// Reads the API key file `path`.
pub(crate) fn read_key(path: &Path) -> anyhow::Result<ApiKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read API key file {}", path.display()))?;
    ApiKey::from_hex(&text).with_context(|| format!("API key file {}", path.display()))
}

/// The API key of --api-key, if given.
pub(crate) fn api_key(g: &Global) -> anyhow::Result<Option<ApiKey>> {
    g.api_key.as_deref().map(read_key).transpose()
}

/// Calls the relayer at `url`, signing with --api-key if given. A refusal reads with its code.
pub(crate) async fn call(
    g: &Global,
    url: &str,
    method: &str,
    params: Value,
) -> Result<Value, Value> {
    let key = api_key(g).map_err(|e| json!({ "message": format!("{e:#}") }))?;
    let client = alloy::transports::http::reqwest::Client::new();
    call_relayer(
        &client,
        url,
        key.as_ref(),
        DEFAULT_WINDOW_MS,
        method,
        params,
    )
    .await
}

/// Calls the relayer at `url` without an API key: registrations and revocations are signed by the owner
/// (a key not yet registered, or revoked, would get the request refused).
async fn call_unsigned(url: &str, method: &str, params: Value) -> Result<Value, Value> {
    let client = alloy::transports::http::reqwest::Client::new();
    call_relayer(&client, url, None, DEFAULT_WINDOW_MS, method, params).await
}

/// A duration as people write it: 90s, 30m, 12h, 30d.
fn parse_duration_secs(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .with_context(|| format!("not a duration: {s:?}"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("not a duration: {s:?} (use s, m, h or d)"),
    };
    Ok(n * mult)
}

fn relayer(g: &Global) -> anyhow::Result<&str> {
    g.bundler
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no relayer: pass --bundler <URL> or set KEYSCOPE_BUNDLER"))
}

fn refused(url: &str, e: Value) -> anyhow::Error {
    let message = e["message"].as_str().unwrap_or("no message").to_string();
    match e["code"].as_i64() {
        Some(code) => anyhow::anyhow!("the relayer refused ({code}): {message}"),
        None => anyhow::anyhow!("cannot reach the relayer at {url}: {message}"),
    }
}

pub(crate) async fn run(g: &Global, cmd: ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create { out } => {
            if out.exists() {
                bail!("{} exists: not overwriting a key", out.display());
            }
            let key = ApiKey::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options
                .open(&out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            std::io::Write::write_all(&mut f, format!("{}\n", key.to_hex()).as_bytes())?;
            emit(g.json, json!({ "apiKey": key.id(), "file": out }), || {
                format!(
                    "API key {} written to {} (register it: keyscope apikey register --api-key {})",
                    key.id(),
                    out.display(),
                    out.display()
                )
            });
        }
        ApiKeyCommand::Register {
            permission,
            expires_in,
            allow_ips,
            nonce,
        } => {
            let key =
                api_key(g)?.context("register needs --api-key <file> (keyscope apikey create)")?;
            let url = relayer(g)?;
            let ctx = Ctx::connect(g).await?;
            ctx.require_account().await?;
            let now = now_ms() / 1000;
            let reg = Registration {
                api_key: key.id(),
                account: ctx.account,
                permission,
                expires_at: now + parse_duration_secs(&expires_in)?,
                allowed_ips: allow_ips,
                chain_id: ctx.provider.get_chain_id().await?,
                nonce: nonce.unwrap_or(now_ms()),
                issued_at: now,
            };
            let sig = reg.sign(&ctx.owner).await?;
            let answer = call_unsigned(url, "keyscope_registerApiKey", json!([reg, sig]))
                .await
                .map_err(|e| refused(url, e))?;
            emit(g.json, answer, || {
                format!(
                    "API key {} registered for account {} ({:?}, until {})",
                    reg.api_key, reg.account, reg.permission, reg.expires_at
                )
            });
        }
        ApiKeyCommand::List => {
            let url = relayer(g)?;
            let key =
                api_key(g)?.context("list needs --api-key <file>: one of the account's keys")?;
            let ctx = Ctx::connect(g).await?;
            let answer = call(g, url, "keyscope_listApiKeys", json!([ctx.account]))
                .await
                .map_err(|e| refused(url, e))?;
            let mut text = format!("API keys of {} (signed with {}):", ctx.account, key.id());
            for k in answer.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "\n  {} {} {} until {}",
                    k["apiKey"].as_str().unwrap_or("?"),
                    k["permission"].as_str().unwrap_or("?"),
                    k["status"].as_str().unwrap_or("?"),
                    k["expiresAt"]
                ));
            }
            emit(g.json, answer, || text);
        }
        ApiKeyCommand::Revoke { key_id } => {
            let url = relayer(g)?;
            let id = match key_id {
                Some(id) => id,
                None => api_key(g)?
                    .context("revoke needs --key-id or --api-key <file>")?
                    .id(),
            };
            let ctx = Ctx::connect(g).await?;
            let rev = Revocation {
                api_key: id,
                account: ctx.account,
                chain_id: ctx.provider.get_chain_id().await?,
                issued_at: now_ms() / 1000,
            };
            let sig = rev.sign(&ctx.owner).await?;
            let answer = call_unsigned(url, "keyscope_revokeApiKey", json!([rev, sig]))
                .await
                .map_err(|e| refused(url, e))?;
            emit(g.json, answer, || format!("API key {id} revoked"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_secs("90s").unwrap(), 90);
        assert_eq!(parse_duration_secs("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration_secs("2h").unwrap(), 7_200);
        assert!(parse_duration_secs("2w").is_err());
        assert!(parse_duration_secs("h").is_err());
    }
}
