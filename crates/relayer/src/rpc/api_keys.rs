//! API keys bound to accounts: the registry the relayer keeps, and the methods that change and list it.
//!
//! ```text
//! keyscope_registerApiKey(registration, ownerSignature) -> {apiKey, account, permission, expiresAt}
//! keyscope_revokeApiKey(revocation, ownerSignature)     -> {apiKey, revokedAt}
//! keyscope_listApiKeys(account)                         -> [{apiKey, permission, expiresAt, allowedIps, registeredAt, revokedAt, status}]
//! ```
//!
//! The chain, not this table, says who may act for whom: a registration or a revocation is taken only if
//! the account's `isValidSignature(hash, ownerSignature)` answers the ERC-1271 magic value. At use, that
//! answer is trusted for `owner_recheck_ms`, then the chain is asked again with the stored registration and
//! signature: when the account's owner changes (or anything else makes the account stop validating the
//! registration), its keys stop working within that time, with no event to miss. Listing needs a signed
//! request from one of the account's own keys (the allow-lists are nobody else's business).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::providers::{DynProvider, Provider};
use alloy_primitives::{Address, B256, Bytes};
use jsonrpsee::{RpcModule, core::RegisterMethodError};
use keyscope_core::{
    api_key::{Permission, Registration, Revocation, SignedHeaders, is_public_key, now_ms},
    bindings::TradingAccount,
};
use serde_json::json;

use super::{RpcContext, RpcResult, err, quota::Quotas};
use crate::{
    config::ApiKeysConfig,
    error::{RpcError, code},
    store::{
        StoreError,
        api_keys::{ApiKeyRecord, ApiKeyTable},
    },
};

/// The ERC-1271 magic value.
const ERC1271_MAGIC: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];
/// Most client addresses one key's allow-list may name.
const MAX_ALLOWED_IPS: usize = 64;

/// The key a request was authenticated with: who it acts for and what it may do. Held in the request's
/// extensions (for a WebSocket, the connection's), it counts against the key's connection cap until
/// dropped.
#[derive(Debug)]
pub(crate) struct Caller {
    /// The key id.
    pub key: B256,
    /// The account it acts for.
    pub account: Address,
    /// What it may do.
    pub permission: Permission,
    _held: super::quota::Held,
}

/// A key's record and when the account last validated it.
#[derive(Debug, Clone)]
struct Checked {
    record: ApiKeyRecord,
    valid_at: Option<Instant>,
}

/// Signatures a key sent inside their windows: a second use is a replay.
#[derive(Debug, Default)]
struct Seen(HashMap<[u8; 64], u64>);

/// The registry of API keys.
#[derive(Debug)]
pub(crate) struct ApiKeys {
    table: ApiKeyTable,
    provider: DynProvider,
    chain_id: u64,
    /// The settings.
    pub cfg: ApiKeysConfig,
    /// Every key's quotas and behaviour.
    pub quotas: Arc<Quotas>,
    checked: Mutex<HashMap<B256, Checked>>,
    seen: Mutex<HashMap<B256, Seen>>,
}

/// A refusal of the channel: its JSON-RPC code and reason.
pub(super) fn refused(c: i32, message: impl Into<String>) -> RpcError {
    RpcError::new(c, message)
}

fn store_err(e: StoreError) -> RpcError {
    RpcError::internal(e)
}

impl ApiKeys {
    /// The registry in `table`, asking the chain through `provider` (chain `chain_id`).
    pub(crate) fn new(
        table: ApiKeyTable,
        provider: DynProvider,
        chain_id: u64,
        cfg: ApiKeysConfig,
    ) -> Self {
        Self {
            table,
            provider,
            chain_id,
            quotas: Arc::new(Quotas::new(cfg.clone())),
            cfg,
            checked: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the account validates `signature` over `hash` (ERC-1271). A node that does not answer is an
    /// error; an account with no code, or one that reverts, is not valid.
    async fn owner_signed(
        &self,
        account: Address,
        hash: B256,
        signature: &Bytes,
    ) -> Result<bool, RpcError> {
        let code = self
            .provider
            .get_code_at(account)
            .await
            .map_err(|e| RpcError::internal(format!("reading the account's code: {e}")))?;
        if code.is_empty() {
            return Ok(false);
        }
        let answer = TradingAccount::new(account, &self.provider)
            .isValidSignature(hash, signature.clone())
            .call()
            .await;
        Ok(matches!(answer, Ok(v) if v.0 == ERC1271_MAGIC))
    }

    /// Checks the time an owner signed at: not long ago, not ahead.
    fn fresh(&self, issued_at: u64, now_s: u64) -> Result<(), RpcError> {
        if issued_at + self.cfg.max_signed_age_secs < now_s || issued_at > now_s + 60 {
            return Err(refused(
                code::API_KEY_STALE,
                format!(
                    "signed at {issued_at}, the relayer's clock is {now_s}: sign again (at most {} s old)",
                    self.cfg.max_signed_age_secs
                ),
            ));
        }
        Ok(())
    }

    /// Takes an owner's registration of a key.
    pub(crate) async fn register(
        &self,
        reg: Registration,
        signature: Bytes,
    ) -> Result<ApiKeyRecord, RpcError> {
        let now_s = now_ms() / 1000;
        let invalid = |m: String| RpcError::invalid_fields(m);
        if reg.chain_id != self.chain_id {
            return Err(invalid(format!(
                "registration for chain {}, this relayer serves chain {}",
                reg.chain_id, self.chain_id
            )));
        }
        if !is_public_key(reg.api_key) {
            return Err(invalid("apiKey is not an Ed25519 public key".into()));
        }
        if reg.expires_at <= now_s {
            return Err(invalid(format!("expiresAt {} has passed", reg.expires_at)));
        }
        if reg.allowed_ips.len() > MAX_ALLOWED_IPS {
            return Err(invalid(format!("at most {MAX_ALLOWED_IPS} allowed IPs")));
        }
        self.fresh(reg.issued_at, now_s)?;
        let table = &self.table;
        if let Some(old) = table.get(reg.api_key).map_err(store_err)? {
            let why = if old.registration.account != reg.account {
                Some("is registered to another account".to_string())
            } else if old.revoked_at.is_some() {
                Some("was revoked; a revoked key stays revoked: create a new key".to_string())
            } else if reg.nonce <= old.registration.nonce {
                Some(format!(
                    "is registered with nonce {}: a new registration of it needs a higher nonce",
                    old.registration.nonce
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(invalid(format!("API key {} {why}", reg.api_key)));
            }
        }
        if !self
            .owner_signed(reg.account, reg.hash(), &signature)
            .await?
        {
            return Err(refused(
                code::INVALID_SIGNATURE,
                format!(
                    "account {} does not validate the registration's signature (ERC-1271): its owner must sign it",
                    reg.account
                ),
            ));
        }
        let record = ApiKeyRecord {
            registration: reg,
            owner_signature: signature,
            registered_at: now_s,
            revoked_at: None,
        };
        table.put(&record).map_err(store_err)?;
        self.lock_checked().insert(
            record.registration.api_key,
            Checked {
                record: record.clone(),
                valid_at: Some(Instant::now()),
            },
        );
        Ok(record)
    }

    /// Takes an owner's revocation of a key: refused from then on.
    pub(crate) async fn revoke(&self, rev: Revocation, signature: Bytes) -> Result<u64, RpcError> {
        let now_s = now_ms() / 1000;
        if rev.chain_id != self.chain_id {
            return Err(RpcError::invalid_fields(format!(
                "revocation for chain {}, this relayer serves chain {}",
                rev.chain_id, self.chain_id
            )));
        }
        self.fresh(rev.issued_at, now_s)?;
        let mut record = self
            .table
            .get(rev.api_key)
            .map_err(store_err)?
            .filter(|r| r.registration.account == rev.account)
            .ok_or_else(|| {
                RpcError::invalid_fields(format!(
                    "API key {} is not registered to account {}",
                    rev.api_key, rev.account
                ))
            })?;
        if let Some(at) = record.revoked_at {
            return Ok(at);
        }
        if !self
            .owner_signed(rev.account, rev.hash(), &signature)
            .await?
        {
            return Err(refused(
                code::INVALID_SIGNATURE,
                format!(
                    "account {} does not validate the revocation's signature (ERC-1271): its owner must sign it",
                    rev.account
                ),
            ));
        }
        record.revoked_at = Some(now_s);
        self.table.put(&record).map_err(store_err)?;
        self.lock_checked().remove(&rev.api_key);
        Ok(now_s)
    }

    /// Every key of `account`.
    pub(crate) fn list(&self, account: Address) -> Result<Vec<ApiKeyRecord>, RpcError> {
        self.table.of_account(account).map_err(store_err)
    }

    fn lock_checked(&self) -> std::sync::MutexGuard<'_, HashMap<B256, Checked>> {
        self.checked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key's record, validated by its account within `owner_recheck_ms` (asked again otherwise).
    async fn valid_record(&self, key: B256) -> Result<ApiKeyRecord, RpcError> {
        let recheck = Duration::from_millis(self.cfg.owner_recheck_ms);
        let cached = self.lock_checked().get(&key).cloned();
        let checked = match cached {
            Some(c) => c,
            None => {
                let record = self.table.get(key).map_err(store_err)?.ok_or_else(|| {
                    refused(
                        code::API_KEY_INVALID,
                        format!(
                            "unknown API key {key}: register it first (keyscope apikey register)"
                        ),
                    )
                })?;
                Checked {
                    record,
                    valid_at: None,
                }
            }
        };
        let record = checked.record;
        if record.revoked_at.is_some() {
            return Err(refused(
                code::API_KEY_REVOKED,
                format!("API key {key} was revoked by its account's owner"),
            ));
        }
        if checked.valid_at.is_some_and(|t| t.elapsed() < recheck) {
            return Ok(record);
        }
        let r = &record.registration;
        let valid = self
            .owner_signed(r.account, r.hash(), &record.owner_signature)
            .await?;
        if !valid {
            self.lock_checked().remove(&key);
            return Err(refused(
                code::API_KEY_REVOKED,
                format!(
                    "account {} no longer validates API key {key}'s registration (ERC-1271): its owner changed; the new owner must register it again",
                    r.account
                ),
            ));
        }
        self.lock_checked().insert(
            key,
            Checked {
                record: record.clone(),
                valid_at: Some(Instant::now()),
            },
        );
        Ok(record)
    }

    /// Remembers `sig` of `key` until `expires_ms`; false if it was already taken (a replay) or the key
    /// has as many live signatures as the cache holds (refused rather than forgotten).
    fn first_use(
        &self,
        key: B256,
        sig: [u8; 64],
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), RpcError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut seen.entry(key).or_default().0;
        if s.contains_key(&sig) {
            return Err(refused(
                code::API_KEY_STALE,
                "replayed request: this signature was already taken (sign each request anew)",
            ));
        }
        if s.len() >= self.cfg.replay_cache_per_key {
            s.retain(|_, exp| *exp >= now_ms);
            if s.len() >= self.cfg.replay_cache_per_key {
                return Err(refused(
                    code::API_KEY_THROTTLED,
                    "too many signed requests inside their windows for this key: use a shorter window",
                ));
            }
        }
        s.insert(sig, expires_ms);
        Ok(())
    }

    /// Authenticates a request that carries `headers`: `method` and `path` as the client sent them,
    /// `body_hash` the keccak256 of its body, `client` its address. The caller, or why it is refused.
    pub(crate) async fn authenticate(
        &self,
        headers: &SignedHeaders,
        method: &str,
        path: &str,
        body_hash: B256,
        client: Option<IpAddr>,
    ) -> Result<Caller, RpcError> {
        let now = now_ms();
        let h = headers;
        if h.window_ms == 0 || h.window_ms > self.cfg.max_window_ms {
            return Err(refused(
                code::API_KEY_STALE,
                format!(
                    "receive window {} ms: it must be 1 to {} ms",
                    h.window_ms, self.cfg.max_window_ms
                ),
            ));
        }
        if h.timestamp_ms > now + self.cfg.max_future_ms {
            return Err(refused(
                code::API_KEY_STALE,
                format!(
                    "timestamp {} is {} ms ahead of the relayer's clock (at most {} ms): check the client's clock",
                    h.timestamp_ms,
                    h.timestamp_ms - now,
                    self.cfg.max_future_ms
                ),
            ));
        }
        let expires = h.timestamp_ms.saturating_add(h.window_ms);
        if now > expires {
            return Err(refused(
                code::API_KEY_STALE,
                format!(
                    "stale request: timestamp {} with a {} ms window ended {} ms ago",
                    h.timestamp_ms,
                    h.window_ms,
                    now - expires
                ),
            ));
        }
        if h.verify(method, path, body_hash).is_err() {
            // Counted against a registered key only: made-up key ids fill no memory.
            if self.table.get(h.key).map_err(store_err)?.is_some() {
                self.quotas.record(h.key, false, Instant::now());
            }
            return Err(refused(
                code::API_KEY_INVALID,
                "the request signature does not verify under the API key (wrong key, or the method, path, body, timestamp or window changed)",
            ));
        }
        let record = self.valid_record(h.key).await?;
        let r = &record.registration;
        if r.expires_at <= now / 1000 {
            return Err(refused(
                code::API_KEY_REVOKED,
                format!("API key {} expired at {}", h.key, r.expires_at),
            ));
        }
        if !r.allowed_ips.is_empty() && !client.is_some_and(|ip| r.allowed_ips.contains(&ip)) {
            return Err(refused(
                code::API_KEY_REVOKED,
                format!("API key {} is not allowed from this address", h.key),
            ));
        }
        self.first_use(h.key, h.signature, expires, now)?;
        let held = self
            .quotas
            .hold(h.key)
            .map_err(|e| refused(code::API_KEY_THROTTLED, e.to_string()))?;
        Ok(Caller {
            key: h.key,
            account: r.account,
            permission: r.permission,
            _held: held,
        })
    }
}

/// The registry or the error that it is off.
fn registry(ctx: &RpcContext) -> RpcResult<&Arc<ApiKeys>> {
    ctx.api_keys.as_ref().ok_or_else(|| {
        err(RpcError::invalid_fields(
            "this relayer keeps no API keys (api_keys.enabled is off, or the store is Postgres)",
        ))
    })
}

/// Registers the methods above.
pub(super) fn register(m: &mut RpcModule<RpcContext>) -> Result<(), RegisterMethodError> {
    m.register_async_method("keyscope_registerApiKey", |params, ctx, _| async move {
        let (reg, signature): (Registration, Bytes) = params.parse()?;
        let r = registry(&ctx)?
            .register(reg, signature)
            .await
            .map_err(err)?;
        let reg = r.registration;
        RpcResult::Ok(json!({
            "apiKey": reg.api_key,
            "account": reg.account,
            "permission": reg.permission,
            "expiresAt": reg.expires_at,
        }))
    })?;
    m.register_async_method("keyscope_revokeApiKey", |params, ctx, _| async move {
        let (rev, signature): (Revocation, Bytes) = params.parse()?;
        let key = rev.api_key;
        let at = registry(&ctx)?.revoke(rev, signature).await.map_err(err)?;
        RpcResult::Ok(json!({ "apiKey": key, "revokedAt": at }))
    })?;
    m.register_method("keyscope_listApiKeys", |params, ctx, ext| {
        let (account,): (Address,) = params.parse()?;
        let registry = registry(ctx)?;
        if ext
            .get::<Arc<Caller>>()
            .is_none_or(|c| c.account != account)
        {
            return Err(err(refused(
                code::API_KEY_REQUIRED,
                format!("listing needs a request signed with one of account {account}'s API keys"),
            )));
        }
        let now_s = now_ms() / 1000;
        let keys: Vec<_> = registry
            .list(account)
            .map_err(err)?
            .into_iter()
            .map(|r| {
                let status = match (r.revoked_at, r.registration.expires_at <= now_s) {
                    (Some(_), _) => "revoked",
                    (None, true) => "expired",
                    (None, false) => "active",
                };
                let reg = r.registration;
                let b = registry.quotas.behaviour(reg.api_key, Instant::now());
                json!({
                    "apiKey": reg.api_key,
                    "permission": reg.permission,
                    "expiresAt": reg.expires_at,
                    "allowedIps": reg.allowed_ips,
                    "registeredAt": r.registered_at,
                    "revokedAt": r.revoked_at,
                    "status": status,
                    "behaviour": { "score": b.score, "slowed": b.slowed, "strikes": b.strikes, "banned": b.banned },
                })
            })
            .collect();
        RpcResult::Ok(json!(keys))
    })?;
    Ok(())
}
