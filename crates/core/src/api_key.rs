//! API keys for the relayer's channel: an Ed25519 key a client signs its HTTP requests with, bound to one
//! account by a registration its owner signs. Defined once here for the relayer's verifier and the clients
//! (the CLI, the SDK).
//!
//! **Registration.** `KeyscopeApiKey(bytes32 apiKey,address account,uint8 permission,uint64 expiresAt,
//! bytes32 allowedIps,uint256 chainId,uint64 nonce,uint64 issuedAt)` is hashed as an EIP-712 struct (its
//! `hash_struct`), and the owner signs the account's `replaySafeHash` of it (the account's ERC-1271 digest:
//! `KeyscopeMessage(bytes32 hash)` under the account's own domain), so the relayer asks the chain —
//! `isValidSignature(hash, signature)` — whether the owner signed, and a registration for one account or
//! chain never validates on another. A revocation is `KeyscopeApiKeyRevoke(bytes32 apiKey,address account,
//! uint256 chainId,uint64 issuedAt)`, signed the same way.
//!
//! **Signed request.** Every authenticated HTTP request (and a WebSocket's upgrade request, once per
//! connection) carries four headers: [`HEADER_KEY`] (the key's public key, hex), [`HEADER_TIMESTAMP`]
//! (Unix milliseconds), [`HEADER_WINDOW`] (how long after the timestamp the request is good, ms) and
//! [`HEADER_SIGNATURE`] (Ed25519 over [`request_message`]: the method, path, timestamp, window and the
//! keccak256 of the body, hex).

use std::net::IpAddr;

use alloy::sol_types::SolStruct;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{
    key::{KeySigner, SignError},
    order::account_domain,
};

/// The API key's public key, hex (32 bytes): the key id.
pub const HEADER_KEY: &str = "x-keyscope-key";
/// The request's time, Unix milliseconds.
pub const HEADER_TIMESTAMP: &str = "x-keyscope-timestamp";
/// How long after its timestamp the request is good, milliseconds.
pub const HEADER_WINDOW: &str = "x-keyscope-window";
/// Ed25519 over [`request_message`], hex (64 bytes).
pub const HEADER_SIGNATURE: &str = "x-keyscope-signature";
/// The window a client sends when it names none.
pub const DEFAULT_WINDOW_MS: u64 = 5_000;

alloy::sol! {
    /// An owner's registration of an API key for its account.
    #[derive(Debug, PartialEq, Eq)]
    struct KeyscopeApiKey {
        bytes32 apiKey;
        address account;
        uint8 permission;
        uint64 expiresAt;
        bytes32 allowedIps;
        uint256 chainId;
        uint64 nonce;
        uint64 issuedAt;
    }

    /// An owner's revocation of an API key.
    #[derive(Debug, PartialEq, Eq)]
    struct KeyscopeApiKeyRevoke {
        bytes32 apiKey;
        address account;
        uint256 chainId;
        uint64 issuedAt;
    }

    /// The account's ERC-1271 wrapper (`TradingAccount.replaySafeHash`).
    #[derive(Debug, PartialEq, Eq)]
    struct KeyscopeMessage {
        bytes32 hash;
    }
}

/// Errors of API keys and signed requests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiKeyError {
    /// Not a 32-byte Ed25519 public key (or secret key).
    #[error("not an Ed25519 key: {0}")]
    BadKey(String),
    /// A permission name that is none of read-only, trade, cancel-only.
    #[error("unknown permission {0:?}: read-only, trade or cancel-only")]
    BadPermission(String),
    /// A header is missing or does not parse.
    #[error("header {name}: {why}")]
    Header {
        /// The header.
        name: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The signature does not verify under the key for this request.
    #[error(
        "the request signature does not verify under the API key (wrong key, or the method, path, body, timestamp or window changed)"
    )]
    Signature,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Read methods only.
    ReadOnly,
    /// Everything: send ops, place, replace and cancel orders, read.
    Trade,
    /// Cancel orders and read; never place.
    CancelOnly,
}

impl Permission {
    /// Its code in the signed registration.
    pub fn code(self) -> u8 {
        match self {
            Self::ReadOnly => 0,
            Self::Trade => 1,
            Self::CancelOnly => 2,
        }
    }
}

impl std::str::FromStr for Permission {
    type Err = ApiKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read-only" | "read" => Ok(Self::ReadOnly),
            "trade" => Ok(Self::Trade),
            "cancel-only" | "cancel" => Ok(Self::CancelOnly),
            other => Err(ApiKeyError::BadPermission(other.into())),
        }
    }
}

/// An API key's secret half.
#[derive(Clone)]
pub struct ApiKey(SigningKey);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ApiKey").field(&self.id()).finish()
    }
}

impl ApiKey {
    /// A fresh key from the OS's randomness.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The key whose 32-byte secret is `hex` (with or without 0x).
    pub fn from_hex(hex: &str) -> Result<Self, ApiKeyError> {
        let secret: B256 = hex
            .trim()
            .parse()
            .map_err(|e| ApiKeyError::BadKey(format!("{e}")))?;
        Ok(Self(SigningKey::from_bytes(&secret.0)))
    }

    /// The secret, hex: what a key file holds.
    pub fn to_hex(&self) -> String {
        B256::from(self.0.to_bytes()).to_string()
    }

    /// The public key: the key id the relayer knows it by.
    pub fn id(&self) -> B256 {
        B256::from(self.0.verifying_key().to_bytes())
    }

    /// The headers that authenticate one request: `method` (e.g. POST), `path` (e.g. /), `body` as sent.
    pub fn sign_request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        timestamp_ms: u64,
        window_ms: u64,
    ) -> [(&'static str, String); 4] {
        let msg = request_message(method, path, keccak256(body), timestamp_ms, window_ms);
        let sig = self.0.sign(msg.as_bytes());
        [
            (HEADER_KEY, self.id().to_string()),
            (HEADER_TIMESTAMP, timestamp_ms.to_string()),
            (HEADER_WINDOW, window_ms.to_string()),
            (HEADER_SIGNATURE, Bytes::from(sig.to_bytes()).to_string()),
        ]
    }
}

/// Whether `key` is an Ed25519 public key (a point on the curve).
pub fn is_public_key(key: B256) -> bool {
    VerifyingKey::from_bytes(&key.0).is_ok()
}

/// The text a request's signature covers: one line each for the scheme, the method (upper case), the path
/// (with its query), the timestamp, the window and the body's keccak256.
pub fn request_message(
    method: &str,
    path: &str,
    body_hash: B256,
    timestamp_ms: u64,
    window_ms: u64,
) -> String {
    format!(
        "keyscope-request-v1\n{}\n{path}\n{timestamp_ms}\n{window_ms}\n{body_hash}",
        method.to_ascii_uppercase()
    )
}

/// A request's authentication headers, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The key id (public key).
    pub key: B256,
    /// Unix milliseconds.
    pub timestamp_ms: u64,
    /// Good until `timestamp_ms + window_ms`.
    pub window_ms: u64,
    /// 64 bytes.
    pub signature: [u8; 64],
}

impl SignedHeaders {
    /// Parses the four headers; `get` reads one by name. None when the request carries no key header (an
    /// anonymous request).
    pub fn parse<'a>(
        get: impl Fn(&'static str) -> Option<&'a str>,
    ) -> Result<Option<Self>, ApiKeyError> {
        let Some(key) = get(HEADER_KEY) else {
            return Ok(None);
        };
        let header = |name: &'static str| {
            get(name).ok_or(ApiKeyError::Header {
                name,
                why: "missing (a request with an API key carries all four X-Keyscope headers)"
                    .into(),
            })
        };
        let bad = |name: &'static str, e: &dyn std::fmt::Display| ApiKeyError::Header {
            name,
            why: e.to_string(),
        };
        let key: B256 = key.trim().parse().map_err(|e| bad(HEADER_KEY, &e))?;
        let timestamp_ms = header(HEADER_TIMESTAMP)?
            .trim()
            .parse()
            .map_err(|e| bad(HEADER_TIMESTAMP, &e))?;
        let window_ms = header(HEADER_WINDOW)?
            .trim()
            .parse()
            .map_err(|e| bad(HEADER_WINDOW, &e))?;
        let sig: Bytes = header(HEADER_SIGNATURE)?
            .trim()
            .parse()
            .map_err(|e| bad(HEADER_SIGNATURE, &e))?;
        let signature: [u8; 64] = sig
            .as_ref()
            .try_into()
            .map_err(|_| bad(HEADER_SIGNATURE, &"not 64 bytes"))?;
        Ok(Some(Self {
            key,
            timestamp_ms,
            window_ms,
            signature,
        }))
    }

    /// Checks the signature over `method`, `path` and the body's hash under the key the headers name.
    pub fn verify(&self, method: &str, path: &str, body_hash: B256) -> Result<(), ApiKeyError> {
        let key = VerifyingKey::from_bytes(&self.key.0)
            .map_err(|e| ApiKeyError::BadKey(e.to_string()))?;
        let msg = request_message(method, path, body_hash, self.timestamp_ms, self.window_ms);
        key.verify_strict(
            msg.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ApiKeyError::Signature)
    }
}

/// An owner's registration of an API key (what it signs, and what the relayer keeps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The API key's public key.
    pub api_key: B256,
    /// The account the key acts for.
    pub account: Address,
    /// What the key may do.
    pub permission: Permission,
    /// Unix seconds after which the key is refused.
    pub expires_at: u64,
    /// Client addresses the key is accepted from; empty: any.
    #[serde(default)]
    pub allowed_ips: Vec<IpAddr>,
    /// The chain.
    pub chain_id: u64,
    /// Any number the owner picks: two registrations of one key differ by it.
    pub nonce: u64,
    /// Unix seconds when the owner signed (the relayer refuses one signed long ago).
    pub issued_at: u64,
}

impl Registration {
    /// keccak256 of the IP list, one address per line as text (zero for an empty list).
    fn ips_hash(&self) -> B256 {
        if self.allowed_ips.is_empty() {
            return B256::ZERO;
        }
        let text: Vec<String> = self.allowed_ips.iter().map(|ip| ip.to_string()).collect();
        keccak256(text.join("\n"))
    }

    /// The hash the owner's signature is checked against with the account's `isValidSignature`.
    pub fn hash(&self) -> B256 {
        KeyscopeApiKey {
            apiKey: self.api_key,
            account: self.account,
            permission: self.permission.code(),
            expiresAt: self.expires_at,
            allowedIps: self.ips_hash(),
            chainId: U256::from(self.chain_id),
            nonce: self.nonce,
            issuedAt: self.issued_at,
        }
        .eip712_hash_struct()
    }

    /// The owner's signature of this registration (over the account's `replaySafeHash`).
    pub async fn sign(&self, owner: &impl KeySigner) -> Result<Bytes, SignError> {
        owner
            .sign_digest(replay_safe_hash(self.account, self.chain_id, self.hash()))
            .await
    }
}

/// An owner's revocation of an API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// The API key's public key.
    pub api_key: B256,
    /// Its account.
    pub account: Address,
    /// The chain.
    pub chain_id: u64,
    /// Unix seconds when the owner signed.
    pub issued_at: u64,
}

impl Revocation {
    /// The hash the owner's signature is checked against with the account's `isValidSignature`.
    pub fn hash(&self) -> B256 {
        KeyscopeApiKeyRevoke {
            apiKey: self.api_key,
            account: self.account,
            chainId: U256::from(self.chain_id),
            issuedAt: self.issued_at,
        }
        .eip712_hash_struct()
    }

    /// The owner's signature of this revocation.
    pub async fn sign(&self, owner: &impl KeySigner) -> Result<Bytes, SignError> {
        owner
            .sign_digest(replay_safe_hash(self.account, self.chain_id, self.hash()))
            .await
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Calls `method` on the relayer at `url` (over `client`), the request signed with `key` (now, with a
/// `window_ms` receive window) if one is given. The result, or the JSON-RPC error object (a transport
/// failure as `{"message": …}`).
pub async fn call_relayer(
    client: &alloy::transports::http::reqwest::Client,
    url: &str,
    key: Option<&ApiKey>,
    window_ms: u64,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, serde_json::Value> {
    let failed = |e: &dyn std::fmt::Display| serde_json::json!({ "message": e.to_string() });
    // Ed25519 signatures are deterministic: two identical requests in one millisecond would be one
    // signature, the second refused as a replay. A random id per request (under 2^53, for JavaScript
    // readers) keeps them apart, across threads and processes sharing the key.
    let id = rand::random::<u64>() >> 11;
    let body = serde_json::to_vec(
        &serde_json::json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }),
    )
    .map_err(|e| failed(&e))?;
    let parsed = alloy::transports::http::reqwest::Url::parse(url).map_err(|e| failed(&e))?;
    let mut request = client
        .post(parsed.clone())
        .header("content-type", "application/json");
    if let Some(key) = key {
        let path = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        for (name, value) in key.sign_request("POST", &path, &body, now_ms(), window_ms) {
            request = request.header(name, value);
        }
    }
    let resp: serde_json::Value = request
        .body(body)
        .send()
        .await
        .map_err(|e| failed(&e))?
        .json()
        .await
        .map_err(|e| failed(&e))?;
    match resp.get("error") {
        Some(e) => Err(e.clone()),
        None => Ok(resp["result"].clone()),
    }
}

/// The account's `replaySafeHash(hash)`: what its owner signs for ERC-1271.
pub fn replay_safe_hash(account: Address, chain_id: u64, hash: B256) -> B256 {
    KeyscopeMessage { hash }.eip712_signing_hash(&account_domain(account, chain_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(h: &[(&'static str, String); 4]) -> SignedHeaders {
        SignedHeaders::parse(|n| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let key = ApiKey::generate();
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
        let h = key.sign_request("POST", "/", body, 1_000, 5_000);
        let parsed = headers_of(&h);
        assert_eq!(parsed.key, key.id());
        parsed.verify("POST", "/", keccak256(body)).unwrap();
        assert_eq!(
            parsed.verify("POST", "/", keccak256(b"{}")),
            Err(ApiKeyError::Signature),
            "tampered body"
        );
        assert!(
            parsed.verify("POST", "/x", keccak256(body)).is_err(),
            "path"
        );
        assert!(
            parsed.verify("GET", "/", keccak256(body)).is_err(),
            "method"
        );
        let mut later = parsed.clone();
        later.timestamp_ms += 1;
        assert!(later.verify("POST", "/", keccak256(body)).is_err(), "time");
        let mut other = parsed.clone();
        other.key = ApiKey::generate().id();
        assert!(other.verify("POST", "/", keccak256(body)).is_err(), "key");
        // A key file round-trips.
        assert_eq!(ApiKey::from_hex(&key.to_hex()).unwrap().id(), key.id());
    }

    #[test]
    fn headers_are_all_or_none() {
        assert_eq!(SignedHeaders::parse(|_| None), Ok(None));
        let e = SignedHeaders::parse(|n| (n == HEADER_KEY).then_some("0x00")).unwrap_err();
        assert!(matches!(e, ApiKeyError::Header { .. }), "{e}");
    }

    #[test]
    fn registrations_differ_by_every_field() {
        let r = Registration {
            api_key: B256::repeat_byte(1),
            account: Address::repeat_byte(2),
            permission: Permission::Trade,
            expires_at: 10,
            allowed_ips: vec![],
            chain_id: 1,
            nonce: 0,
            issued_at: 5,
        };
        let mut ip = r.clone();
        ip.allowed_ips.push("127.0.0.1".parse().unwrap());
        let mut perm = r.clone();
        perm.permission = Permission::ReadOnly;
        let mut chain = r.clone();
        chain.chain_id = 2;
        let hashes = [r.hash(), ip.hash(), perm.hash(), chain.hash()];
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(
            replay_safe_hash(r.account, 1, r.hash()),
            replay_safe_hash(r.account, 2, r.hash())
        );
    }
}
