//! The sidecar's TOML configuration. Paths are relative to the file's folder. Secrets are never in it:
//! keystore passwords come from `KEYSCOPE_SIGNER_PASSWORD`, the HSM user PIN from `KEYSCOPE_HSM_PIN`.
//!
//! ```toml
//! socket = "signer.sock"            # the Unix socket strategies connect to (created mode 0600)
//! rpc_url = "http://127.0.0.1:8545" # where sessions are read from
//! deployment = "deployments/31337.json"
//! account = "0x…"                   # the trading account the keys sign for
//! audit_log = "audit.jsonl"
//! audit_keystore = "audit-key.json" # a secp256k1 keystore: the key that signs the audit trail
//! refresh_secs = 2                  # how often sessions (budgets, counters) are re-read
//!
//! [[keys]]
//! name = "mm-hot"
//! curve = "p256"
//! keystore = "keys/mm-hot.json"
//! rate = "20/1s"
//!
//! [[keys]]
//! name = "mm-hsm"
//! pkcs11 = { module = "/usr/lib/softhsm/libsofthsm2.so", token = "keyscope", label = "mm-hsm" }
//! rate = "50/1s"
//! ```

use std::path::{Path, PathBuf};

use alloy_primitives::Address;
use keyscope_core::{key::Curve, scope::Rate};
use serde::Deserialize;

use crate::{
    SignerError,
    keys::{HeldKey, HsmKey, HsmLocation, read_keystore},
    quorum::QuorumConfig,
};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    /// The Unix socket strategies connect to (created mode 0600).
    pub socket: PathBuf,
    /// The chain's JSON-RPC endpoint, where sessions are read from.
    pub rpc_url: String,
    /// The deployment file.
    pub deployment: PathBuf,
    /// The trading account the keys sign for.
    pub account: Address,
    /// The audit trail's file (JSON lines).
    pub audit_log: PathBuf,
    /// The secp256k1 keystore whose key signs the audit trail.
    pub audit_keystore: PathBuf,
    /// How often sessions (budgets, counters) are re-read from the chain, in seconds.
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// The keys the sidecar holds whole.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// A threshold key this sidecar holds a share of ([`crate::quorum`]).
    #[serde(default)]
    pub quorum: Option<QuorumConfig>,
}

fn default_refresh() -> u64 {
    2
}

/// One key: in a keystore file (`keystore`, `curve`) or in an HSM (`pkcs11`, always P-256).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key's name, which strategies ask for it by.
    pub name: String,
    /// The keystore key's curve (`secp256k1` by default, or `p256`).
    #[serde(default)]
    pub curve: Option<String>,
    /// The keystore file holding the key.
    #[serde(default)]
    pub keystore: Option<PathBuf>,
    /// Where the key lives in an HSM.
    #[serde(default)]
    pub pkcs11: Option<HsmLocation>,
    /// The sidecar's own limit for this key, COUNT/PERIOD (like the scope's rate).
    pub rate: String,
}

/// A key ready to sign, with its name and rate.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    /// The key's name from the config.
    pub name: String,
    /// The key, opened.
    pub key: HeldKey,
    /// The sidecar's own signing rate for it.
    pub rate: Rate,
}

impl SignerConfig {
    /// Reads and checks `path`, resolving its relative paths against its folder.
    pub fn load(path: &Path) -> Result<Self, SignerError> {
        let fail = |reason: String| SignerError::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let mut c: SignerConfig = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rel(&mut c.socket);
        rel(&mut c.deployment);
        rel(&mut c.audit_log);
        rel(&mut c.audit_keystore);
        if c.keys.is_empty() && c.quorum.is_none() {
            return Err(fail(
                "no [[keys]] and no [quorum]: name at least one key to hold".into(),
            ));
        }
        if let Some(q) = &mut c.quorum {
            q.resolve(base);
            q.rate
                .parse::<Rate>()
                .map_err(|e| fail(format!("quorum {:?}: {e}", q.name)))?;
        }
        for k in &mut c.keys {
            if let Some(p) = &mut k.keystore {
                rel(p);
            }
            if k.keystore.is_some() == k.pkcs11.is_some() {
                return Err(fail(format!(
                    "key {:?}: give exactly one of keystore or pkcs11",
                    k.name
                )));
            }
            k.rate
                .parse::<Rate>()
                .map_err(|e| fail(format!("key {:?}: {e}", k.name)))?;
            if let Some(curve) = &k.curve {
                let curve: Curve = curve
                    .parse()
                    .map_err(|e| fail(format!("key {:?}: {e}", k.name)))?;
                if k.pkcs11.is_some() && curve != Curve::P256 {
                    return Err(fail(format!("key {:?}: PKCS#11 keys are P-256", k.name)));
                }
            }
        }
        Ok(c)
    }

    /// Opens every key: keystores with `password`, HSM keys with `pin`.
    pub fn open_keys(
        &self,
        password: Option<&str>,
        pin: Option<&str>,
    ) -> Result<Vec<LoadedKey>, SignerError> {
        let missing = |what: &str, var: &str, name: &str| SignerError::Config {
            path: name.to_string(),
            reason: format!("key {name:?} needs the {what} in {var}"),
        };
        self.keys
            .iter()
            .map(|k| {
                let rate: Rate = k.rate.parse().expect("checked by load");
                let key = match (&k.keystore, &k.pkcs11) {
                    (Some(path), _) => {
                        let curve = match &k.curve {
                            Some(c) => c.parse().expect("checked by load"),
                            None => Curve::Secp256k1,
                        };
                        let pw = password.ok_or_else(|| {
                            missing("keystore password", "KEYSCOPE_SIGNER_PASSWORD", &k.name)
                        })?;
                        read_keystore(path, curve, pw)?
                    }
                    (None, Some(at)) => {
                        let pin = pin
                            .ok_or_else(|| missing("HSM user PIN", "KEYSCOPE_HSM_PIN", &k.name))?;
                        HeldKey::Hsm(HsmKey::open(at, pin)?.into())
                    }
                    (None, None) => unreachable!("checked by load"),
                };
                Ok(LoadedKey {
                    name: k.name.clone(),
                    key,
                    rate,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "keyscope-signer-config-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signer.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const HEAD: &str = r#"
socket = "s.sock"
rpc_url = "http://127.0.0.1:8545"
deployment = "d.json"
account = "0x1111111111111111111111111111111111111111"
audit_log = "audit.jsonl"
audit_keystore = "audit.json"
"#;

    #[test]
    fn paths_resolve_against_the_file_and_bad_keys_are_named() {
        let ok = write(
            "ok",
            &format!(
                "{HEAD}[[keys]]\nname = \"a\"\ncurve = \"p256\"\nkeystore = \"k/a.json\"\nrate = \"20/1s\"\n"
            ),
        );
        let c = SignerConfig::load(&ok).unwrap();
        assert_eq!(
            c.keys[0].keystore.as_ref().unwrap(),
            &ok.parent().unwrap().join("k/a.json")
        );
        assert_eq!(c.socket, ok.parent().unwrap().join("s.sock"));
        assert_eq!(c.refresh_secs, 2);
        for (name, keys, needle) in [
            ("none", "keys = []\n", "no [[keys]] and no [quorum]"),
            (
                "both",
                "[[keys]]\nname = \"b\"\nkeystore = \"x\"\npkcs11 = { module = \"m\", token = \"t\", label = \"l\" }\nrate = \"1/1s\"\n",
                "exactly one",
            ),
            (
                "rate",
                "[[keys]]\nname = \"c\"\nkeystore = \"x\"\nrate = \"fast\"\n",
                "COUNT/PERIOD",
            ),
            (
                "curve",
                "[[keys]]\nname = \"d\"\ncurve = \"ed25519\"\nkeystore = \"x\"\nrate = \"1/1s\"\n",
                "unknown key type",
            ),
            (
                "typo",
                "[[keys]]\nname = \"e\"\nkeystor = \"x\"\nrate = \"1/1s\"\n",
                "unknown field",
            ),
        ] {
            let err = SignerConfig::load(&write(name, &format!("{HEAD}{keys}")))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
