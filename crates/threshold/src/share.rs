//! A member's share of a quorum key: the library's key share (its secret share, every member's public
//! share, its Paillier key and the others' public auxiliary data) on one of the two curves Keyscope
//! accounts verify, the key's public key, the check of a combined signature against it, and the share's
//! file: encrypted at rest in the Web3 Secret Storage format the sidecar's keystores use (scrypt,
//! AES-128-CTR and a MAC, so a changed byte is refused). A share read back is validated by the library
//! (its secret share must match its public share, the public shares the key), so a share edited before
//! it was encrypted is refused too.

use std::path::Path;

use alloy_primitives::B256;
use cggmp21::{
    DataToSign, KeyShare, Signature,
    generic_ec::{Curve as EcCurve, Point, Scalar},
    key_share::AnyKeyShare,
    supported_curves::{Secp256k1, Secp256r1},
};
use serde::{Deserialize, Serialize};

use crate::ThresholdError;

/// The curve of a quorum key: the two Keyscope accounts verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyCurve {
    /// Ethereum's curve.
    Secp256k1,
    /// NIST P-256 (secp256r1).
    P256,
}

/// A member's share, on either curve.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "curve", content = "share", rename_all = "lowercase")]
pub enum Share {
    /// A share of a secp256k1 key.
    Secp256k1(KeyShare<Secp256k1>),
    /// A share of a P-256 key.
    P256(KeyShare<Secp256r1>),
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("curve", &self.curve())
            .field("index", &self.index())
            .field("threshold", &self.threshold())
            .finish_non_exhaustive()
    }
}

/// A quorum key's public facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumKeyInfo {
    /// The curve the key is on.
    pub curve: KeyCurve,
    /// Uncompressed SEC1: `0x04 ‖ x ‖ y`.
    pub public_key: [u8; 65],
    /// How many members sign.
    pub threshold: u16,
    /// How many members hold shares.
    pub n: u16,
}

/// A signature of the quorum key: `r` and `s` (s in the lower half), big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSignature {
    /// The signature's `r`.
    pub r: B256,
    /// The signature's `s`, in the lower half of the group order.
    pub s: B256,
}

/// The uncompressed SEC1 bytes of a public key.
fn sec1<E: EcCurve>(point: &Point<E>) -> [u8; 65] {
    let bytes = point.to_bytes(false);
    let mut out = [0u8; 65];
    out.copy_from_slice(bytes.as_ref());
    out
}

/// The message scalar of `digest` on curve `E` (the digest's bits reduced, as ECDSA verifiers do).
pub(crate) fn data_to_sign<E: EcCurve>(digest: B256) -> DataToSign<E> {
    DataToSign::from_scalar(Scalar::<E>::from_be_bytes_mod_order(digest.as_slice()))
}

/// `signature` with s in the lower half, if it verifies for `public_key` over `digest` (the library's
/// check); `None` if a member contributed a bad partial signature.
pub(crate) fn checked<E: EcCurve>(
    signature: Signature<E>,
    public_key: &Point<E>,
    digest: B256,
) -> Option<RawSignature>
where
    cggmp21::generic_ec::NonZero<Point<E>>: cggmp21::generic_ec::coords::AlwaysHasAffineX<E>,
{
    let signature = signature.normalize_s();
    signature.verify(public_key, &data_to_sign(digest)).ok()?;
    Some(RawSignature {
        r: B256::from_slice(&signature.r.to_be_bytes()),
        s: B256::from_slice(&signature.s.to_be_bytes()),
    })
}

impl Share {
    /// The key's public facts.
    pub fn info(&self) -> QuorumKeyInfo {
        QuorumKeyInfo {
            curve: self.curve(),
            public_key: self.public_key(),
            threshold: self.threshold(),
            n: self.n(),
        }
    }

    /// The curve of the key this share is of.
    pub fn curve(&self) -> KeyCurve {
        match self {
            Share::Secp256k1(_) => KeyCurve::Secp256k1,
            Share::P256(_) => KeyCurve::P256,
        }
    }

    /// This member's index in the quorum.
    pub fn index(&self) -> u16 {
        match self {
            Share::Secp256k1(s) => s.core.i,
            Share::P256(s) => s.core.i,
        }
    }

    /// How many members hold shares.
    pub fn n(&self) -> u16 {
        match self {
            Share::Secp256k1(s) => s.core.key_info.public_shares.len() as u16,
            Share::P256(s) => s.core.key_info.public_shares.len() as u16,
        }
    }

    /// How many members must take part in a signature.
    pub fn threshold(&self) -> u16 {
        match self {
            Share::Secp256k1(s) => s.min_signers(),
            Share::P256(s) => s.min_signers(),
        }
    }

    /// The quorum key's public key, uncompressed SEC1 (`0x04 ‖ x ‖ y`).
    pub fn public_key(&self) -> [u8; 65] {
        match self {
            Share::Secp256k1(s) => sec1(&s.core.key_info.shared_public_key),
            Share::P256(s) => sec1(&s.core.key_info.shared_public_key),
        }
    }

    /// Writes the share encrypted with `password` to `path` (a new file, mode 0600 by the keystore
    /// library's default umask handling).
    pub fn save(&self, path: &Path, password: &str) -> Result<(), ThresholdError> {
        let fail = |reason: String| ThresholdError::ShareFile {
            path: path.display().to_string(),
            reason,
        };
        let json = serde_json::to_vec(self).map_err(|e| fail(e.to_string()))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| fail("not a file name".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        eth_keystore::encrypt_key(dir, &mut rand::thread_rng(), json, password, Some(name))
            .map_err(|e| fail(e.to_string()))?;
        Ok(())
    }

    /// Reads, decrypts and validates the share at `path`.
    pub fn load(path: &Path, password: &str) -> Result<Self, ThresholdError> {
        let fail = |reason: String| ThresholdError::ShareFile {
            path: path.display().to_string(),
            reason,
        };
        let json = eth_keystore::decrypt_key(path, password).map_err(|e| {
            fail(format!(
                "{e} (wrong password, or the file was changed: its MAC does not match)"
            ))
        })?;
        serde_json::from_slice(&json).map_err(|e| fail(format!("not a valid key share: {e}")))
    }
}
