//! A threshold key in the sidecar: this sidecar is one member of a `t`-of-`n` quorum
//! ([`keyscope_threshold`]) and holds one share, encrypted at rest with the keystore password
//! (`KEYSCOPE_SIGNER_PASSWORD`). A strategy asks any member to sign, exactly as for a whole key; that member
//! runs its usual checks (scope, rate, audit), then gathers the co-signers' partial signatures. Each
//! co-signer runs the same checks on what it is asked to co-sign — the order, the op or the request itself,
//! with the digest recomputed, never a bare digest — and records its decision in its own audit trail, so
//! one compromised member can neither sign alone nor get an out-of-scope signature from the others. The
//! coordinator's audit line names the members whose partial signatures made each signature.
//!
//! ```toml
//! [quorum]
//! name = "mm-quorum"
//! rate = "20/1s"
//! identity = "quorum/member-0.identity.json"  # from `keyscope signer quorum-certs`
//! share = "quorum/member-0.share.json"        # written by `quorum-keygen` / `quorum-join`
//! members = ["10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100"]  # every member, by index
//! presignatures = 8                            # kept ready with each set of co-signers
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use futures::future::BoxFuture;
use keyscope_core::key::{Curve, KeySigner, SignError, p256_key_id, verify_digest};
use keyscope_threshold::{
    Approver, KeyCurve, Member, MemberConfig, QuorumKeyInfo, RawSignature, tls::MemberIdentity,
};
use serde::Deserialize;
use serde_json::Value;

use crate::{SignerError, keys::HeldKey, service::SigningService};

/// The `[quorum]` table of a sidecar's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumConfig {
    /// The key's name, as `keys` lists it.
    pub name: String,
    /// The sidecar's own limit for this key, COUNT/PERIOD.
    pub rate: String,
    /// This member's TLS identity: the quorum authority's and every member's certificate, its own key.
    pub identity: PathBuf,
    /// This member's share, encrypted with the keystore password.
    pub share: PathBuf,
    /// Every member's address, by index (this member's own is where it listens).
    pub members: Vec<SocketAddr>,
    /// Presignatures kept ready with each set of co-signers.
    #[serde(default = "default_presignatures")]
    pub presignatures: usize,
    /// How long a member may take to answer a dial before it is taken for down.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
}

fn default_presignatures() -> usize {
    8
}

fn default_connect_ms() -> u64 {
    1_000
}

impl QuorumConfig {
    /// Resolves the relative paths against `base` (the config file's folder).
    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.identity, &mut self.share] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The member's configuration: its identity read from its file, the share's file and password.
    pub fn member_config(&self, password: &str) -> Result<MemberConfig, SignerError> {
        let fail = |reason: String| SignerError::Config {
            path: self.identity.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(&self.identity).map_err(|e| fail(e.to_string()))?;
        let identity: MemberIdentity =
            serde_json::from_str(&text).map_err(|e| fail(format!("not a member identity: {e}")))?;
        if identity.member_certs.len() != self.members.len() {
            return Err(fail(format!(
                "certificates for {} members, but `members` lists {}",
                identity.member_certs.len(),
                self.members.len()
            )));
        }
        Ok(MemberConfig {
            identity,
            addresses: self.members.clone(),
            share_file: self.share.clone(),
            password: password.into(),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            session_timeout: Duration::from_secs(60),
        })
    }
}

/// The curve of a quorum key, as the rest of Keyscope names it.
pub fn curve_of(curve: KeyCurve) -> Curve {
    match curve {
        KeyCurve::Secp256k1 => Curve::Secp256k1,
        KeyCurve::P256 => Curve::P256,
    }
}

/// The quorum's curve for a Keyscope curve.
pub fn key_curve(curve: Curve) -> KeyCurve {
    match curve {
        Curve::Secp256k1 => KeyCurve::Secp256k1,
        Curve::P256 => KeyCurve::P256,
    }
}

/// The quorum key's on-chain id: its address (secp256k1) or its P-256 key id — what an owner grants.
pub fn key_id(info: &QuorumKeyInfo) -> Address {
    let point = &info.public_key;
    match info.curve {
        KeyCurve::Secp256k1 => Address::from_slice(&keccak256(&point[1..])[12..]),
        KeyCurve::P256 => p256_key_id(
            B256::from_slice(&point[1..33]),
            B256::from_slice(&point[33..]),
        ),
    }
}

/// The quorum's signature as the account reads it — `r ‖ s ‖ v` (secp256k1) or `r ‖ s ‖ x ‖ y` (P-256)
/// — checked with [`verify_digest`] like any other key's.
pub fn encode(info: &QuorumKeyInfo, raw: RawSignature, digest: B256) -> Result<Bytes, SignError> {
    let id = key_id(info);
    let bytes: Bytes = match info.curve {
        KeyCurve::Secp256k1 => [false, true]
            .into_iter()
            .map(|v| {
                alloy_primitives::Signature::new(
                    U256::from_be_bytes(raw.r.0),
                    U256::from_be_bytes(raw.s.0),
                    v,
                )
            })
            .find(|sig| sig.recover_address_from_prehash(&digest).ok() == Some(id))
            .ok_or_else(|| SignError("the quorum's signature recovers to no key".into()))?
            .as_bytes()
            .to_vec()
            .into(),
        KeyCurve::P256 => [raw.r.as_slice(), raw.s.as_slice(), &info.public_key[1..]]
            .concat()
            .into(),
    };
    verify_digest(id, digest, &bytes).map_err(|e| SignError(e.to_string()))?;
    Ok(bytes)
}

/// A quorum key this sidecar holds a share of: its running member and its public facts.
pub struct QuorumKey {
    /// This sidecar's running quorum member.
    pub member: Member,
    /// The key's public facts.
    pub info: QuorumKeyInfo,
    /// The key's on-chain name (address or P-256 key id).
    pub id: Address,
}

impl std::fmt::Debug for QuorumKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumKey")
            .field("id", &self.id)
            .field("member", &self.member.index())
            .finish_non_exhaustive()
    }
}

impl QuorumKey {
    /// Starts this sidecar's member of the quorum `config` names; its share must exist (run key
    /// generation first) and decrypt with `password`.
    pub async fn start(
        config: &QuorumConfig,
        password: &str,
        approver: Arc<dyn Approver>,
    ) -> Result<Self, SignerError> {
        if !config.share.exists() {
            return Err(SignerError::Config {
                path: config.share.display().to_string(),
                reason: "no share: run `keyscope signer quorum-keygen` (one member) and \
                         `quorum-join` (the others) first"
                    .into(),
            });
        }
        let member = Member::start(config.member_config(password)?, None, approver)
            .await
            .map_err(|e| SignerError::Quorum(e.to_string()))?;
        let info = member
            .key()
            .expect("a member started from a share holds it");
        Ok(Self {
            member,
            id: key_id(&info),
            info,
        })
    }
}

/// The key a sidecar's slot signs with: held whole (keystore, HSM) or a quorum's.
#[derive(Debug, Clone)]
pub enum SlotKey {
    /// A key held whole, in a keystore or an HSM.
    Held(HeldKey),
    /// A threshold key this sidecar holds a share of.
    Quorum(Arc<QuorumKey>),
}

impl SlotKey {
    /// The key's on-chain name: its address or P-256 key id.
    pub fn id(&self) -> Address {
        match self {
            SlotKey::Held(k) => k.id(),
            SlotKey::Quorum(q) => q.id,
        }
    }

    /// The curve the key signs on.
    pub fn curve(&self) -> Curve {
        match self {
            SlotKey::Held(k) => k.curve(),
            SlotKey::Quorum(q) => curve_of(q.info.curve),
        }
    }

    /// A signer for one request whose co-signers are shown `context` (what is being signed).
    pub fn for_context(&self, context: Value) -> ContextSigner<'_> {
        ContextSigner {
            key: self,
            context,
            members: Mutex::new(None),
        }
    }
}

/// A slot's key signing one request; for a quorum key, the members who took part are kept.
pub struct ContextSigner<'a> {
    key: &'a SlotKey,
    context: Value,
    members: Mutex<Option<Vec<u16>>>,
}

impl ContextSigner<'_> {
    /// The quorum members whose partial signatures made the last signature (`None` for a whole key).
    pub fn members(&self) -> Option<Vec<u16>> {
        self.members
            .lock()
            .expect("no panic while holding the members")
            .clone()
    }
}

impl KeySigner for ContextSigner<'_> {
    fn id(&self) -> Address {
        self.key.id()
    }

    fn curve(&self) -> Curve {
        self.key.curve()
    }

    async fn sign_digest(&self, digest: B256) -> Result<Bytes, SignError> {
        match self.key {
            SlotKey::Held(k) => k.sign_digest(digest).await,
            SlotKey::Quorum(q) => {
                let signed = q
                    .member
                    .sign(digest, &self.context)
                    .await
                    .map_err(|e| SignError(format!("quorum: {e}")))?;
                *self
                    .members
                    .lock()
                    .expect("no panic while holding the members") = Some(signed.members);
                encode(&q.info, signed.signature, digest)
            }
        }
    }
}

/// A co-signer's check: the service's own ([`SigningService::cosign`]), bound once the service exists.
#[derive(Default)]
pub struct CosignCheck(OnceLock<Weak<SigningService>>);

impl CosignCheck {
    /// Binds the check to `service`.
    pub fn bind(&self, service: &Arc<SigningService>) {
        let _ = self.0.set(Arc::downgrade(service));
    }
}

impl Approver for CosignCheck {
    fn approve<'a>(
        &'a self,
        from: u16,
        digest: B256,
        context: &'a Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let service = self
                .0
                .get()
                .and_then(Weak::upgrade)
                .ok_or("this member's sidecar is not serving yet")?;
            service
                .cosign(from, digest, context)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
