//! Keys. Everything that signs takes alloy's [`Signer`] trait — the one hardware (Ledger, Trezor) and
//! remote (AWS, GCP KMS) signers already implement — so owner and session keys can live anywhere. Here:
//! a local key from hex, and an encrypted JSON keystore (the format geth, foundry and clef use).

use std::path::{Path, PathBuf};

pub use alloy::signers::Signer;
use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::B256;

/// Errors from loading or storing a key.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The private key is not 32 bytes of hex.
    #[error("the private key is not 32 bytes of hex: {0}")]
    BadKey(String),
    /// The keystore could not be opened or decrypted.
    #[error("cannot open keystore {path}: {reason} (wrong password, or not a keystore file)")]
    Keystore {
        /// The keystore file.
        path: String,
        /// Why it could not be decrypted or read.
        reason: String,
    },
}

/// A local signer from a hex private key (with or without 0x).
pub fn from_hex(key: &str) -> Result<PrivateKeySigner, SignerError> {
    let bytes: B256 = key
        .trim()
        .parse()
        .map_err(|e: alloy_primitives::hex::FromHexError| SignerError::BadKey(e.to_string()))?;
    PrivateKeySigner::from_bytes(&bytes).map_err(|e| SignerError::BadKey(e.to_string()))
}

/// A signer from an encrypted keystore file.
pub fn from_keystore(
    path: impl AsRef<Path>,
    password: &str,
) -> Result<PrivateKeySigner, SignerError> {
    let path = path.as_ref();
    PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| SignerError::Keystore {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Encrypts `key` into a keystore file `dir/name`, returning its path.
pub fn write_keystore(
    dir: impl AsRef<Path>,
    name: &str,
    key: &PrivateKeySigner,
    password: &str,
) -> Result<PathBuf, SignerError> {
    let dir = dir.as_ref();
    PrivateKeySigner::encrypt_keystore(
        dir,
        &mut rand::thread_rng(),
        key.credential().to_bytes(),
        password,
        Some(name),
    )
    .map_err(|e| SignerError::Keystore {
        path: dir.join(name).display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystore_round_trip() {
        let dir = std::env::temp_dir().join(format!("keyscope-keystore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key =
            from_hex("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d").unwrap();
        let path = write_keystore(&dir, "relayer.json", &key, "correct horse").unwrap();
        assert_eq!(
            from_keystore(&path, "correct horse").unwrap().address(),
            key.address()
        );
        assert!(matches!(
            from_keystore(&path, "wrong"),
            Err(SignerError::Keystore { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!(matches!(from_hex("0x1234"), Err(SignerError::BadKey(_))));
    }
}
