//! Keys on either curve. Owners and session keys sign on secp256k1 (any alloy [`Signer`]: a local key,
//! a keystore, Ledger, a cloud KMS) or on P-256 — the curve HSMs, secure enclaves and passkeys sign — which
//! the account verifies through the EIP-7951 precompile. [`KeySigner`] is what signing code takes, so both
//! curves (and the `keyscope signer` sidecar's PKCS#11 keys) go through one path.
//!
//! A P-256 key is named on-chain by a 160-bit id, `keccak256("keyscope.p256" ‖ x ‖ y)[12..]`
//! (`P256Key.id` in the contracts): it stands wherever an address would (the owner slot, session storage,
//! the upper 160 bits of a session nonce key). Its signatures are `r ‖ s ‖ x ‖ y` with s in the lower half
//! of the group order; the account checks that the public key hashes to the id.

use std::future::Future;

use alloy::signers::Signer;
use alloy_primitives::{Address, B256, Bytes, keccak256};
use p256::{
    EncodedPoint,
    ecdsa::{
        Signature as P256Signature, SigningKey, VerifyingKey, signature::hazmat::PrehashSigner,
    },
};

/// The curve a key signs on; it picks the signature mode the account reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Curve {
    /// Ethereum's curve: 65-byte `r ‖ s ‖ v` signatures, verified by ecrecover.
    Secp256k1,
    /// NIST P-256 (secp256r1): 128-byte `r ‖ s ‖ x ‖ y` signatures, verified by the EIP-7951 precompile.
    P256,
}

impl std::str::FromStr for Curve {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "secp256k1" | "k256" => Ok(Curve::Secp256k1),
            "p256" | "p-256" | "secp256r1" => Ok(Curve::P256),
            _ => Err(KeyError::UnknownCurve(s.to_string())),
        }
    }
}

impl std::fmt::Display for Curve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Curve::Secp256k1 => "secp256k1",
            Curve::P256 => "p256",
        })
    }
}

/// Errors from loading a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key type named is neither secp256k1 nor P-256.
    #[error("unknown key type {0:?}: use secp256k1 or p256")]
    UnknownCurve(String),
    /// The bytes are not a valid P-256 private scalar.
    #[error(
        "not a P-256 private key: a scalar must be 32 bytes, non-zero and below the group order"
    )]
    BadP256Scalar,
    /// The bytes are not an uncompressed P-256 point on the curve.
    #[error("not a P-256 public key: expected an uncompressed point (0x04 ‖ x ‖ y) on the curve")]
    BadP256Point,
}

/// A signer that could not sign (a keystore, an HSM or a remote signer failed). Signing a digest needs
/// nothing from session rules, so this error is the key layer's own and [`crate::session`] wraps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// A key that signs Keyscope digests: an owner's userOp hash or grant digest, a session key's op digest.
pub trait KeySigner: Send + Sync {
    /// The key's on-chain name: its address (secp256k1) or its P-256 key id.
    fn id(&self) -> Address;
    /// The curve it signs on.
    fn curve(&self) -> Curve;
    /// The key's signature over `digest` as the account reads it: `r ‖ s ‖ v` (65 bytes) for secp256k1,
    /// `r ‖ s ‖ x ‖ y` (128 bytes, low s) for P-256. No message prefix is applied.
    fn sign_digest(&self, digest: B256) -> impl Future<Output = Result<Bytes, SignError>> + Send;
}

impl<S: Signer + Send + Sync + ?Sized> KeySigner for S {
    fn id(&self) -> Address {
        self.address()
    }

    fn curve(&self) -> Curve {
        Curve::Secp256k1
    }

    async fn sign_digest(&self, digest: B256) -> Result<Bytes, SignError> {
        // alloy's signers return s in the lower half and v = 27/28 in `as_bytes`, as the account requires.
        let sig = self
            .sign_hash(&digest)
            .await
            .map_err(|e| SignError(e.to_string()))?;
        Ok(sig.as_bytes().to_vec().into())
    }
}

/// The key id of the P-256 public key (x, y).
pub fn p256_key_id(x: B256, y: B256) -> Address {
    let mut buf = [0u8; 13 + 64];
    buf[..13].copy_from_slice(b"keyscope.p256");
    buf[13..45].copy_from_slice(x.as_slice());
    buf[45..].copy_from_slice(y.as_slice());
    Address::from_slice(&keccak256(buf)[12..])
}

/// A P-256 public key's coordinates from an uncompressed SEC1 point (`0x04 ‖ x ‖ y`), as HSMs export it.
pub fn p256_public_from_sec1(point: &[u8]) -> Result<(B256, B256), KeyError> {
    let key = VerifyingKey::from_sec1_bytes(point).map_err(|_| KeyError::BadP256Point)?;
    Ok(xy(&key.to_encoded_point(false)))
}

fn xy(point: &EncodedPoint) -> (B256, B256) {
    let x = B256::from_slice(point.x().expect("an uncompressed point has x"));
    let y = B256::from_slice(point.y().expect("an uncompressed point has y"));
    (x, y)
}

/// `r ‖ s ‖ x ‖ y` from a P-256 signature (s moved to the lower half if it is not there: the account
/// refuses the upper-half twin) and the signer's public key.
pub fn p256_signature_bytes(sig: &P256Signature, x: B256, y: B256) -> Bytes {
    let sig = sig.normalize_s().unwrap_or(*sig);
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&sig.to_bytes());
    out.extend_from_slice(x.as_slice());
    out.extend_from_slice(y.as_slice());
    out.into()
}

/// Why a signature is not `key`'s over a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature has neither length a key signs with.
    #[error(
        "a signature is 65 bytes (secp256k1 r ‖ s ‖ v) or 128 bytes (P-256 r ‖ s ‖ x ‖ y), not {0}"
    )]
    Length(usize),
    /// The P-256 signature's s is in the upper half (not the low-s form the account takes).
    #[error(
        "the signature's s is in the upper half of the group order (the account refuses the twin)"
    )]
    HighS,
    /// The signature bytes do not parse as a signature on the curve.
    #[error("the signature does not parse: {0}")]
    Malformed(String),
    /// The signature is another key's.
    #[error("the signature is {signer}'s, not key {key}'s")]
    WrongSigner {
        /// Who actually signed (recovered, or the P-256 key id carried).
        signer: Address,
        /// The key the signature was expected from.
        key: Address,
    },
}

/// Half the secp256k1 group order: the largest s the account's ecrecover check accepts.
const SECP256K1_HALF_ORDER: alloy_primitives::U256 = alloy_primitives::uint!(
    0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0_U256
);
/// Half the P-256 group order.
const P256_HALF_ORDER: alloy_primitives::U256 = alloy_primitives::uint!(
    0x7FFFFFFF800000007FFFFFFFFFFFFFFFDE737D56D38BCF4279DCE5617E3192A8_U256
);

/// Checks that `signature` is `key`'s over `digest` as the account checks it: 65 bytes recovering to the
/// address `key` with a low s, or 128 bytes `r ‖ s ‖ x ‖ y` whose public key hashes to the id `key`, with
/// a low s, verifying on P-256. What the matcher runs on every order and request before it acknowledges it.
pub fn verify_digest(key: Address, digest: B256, signature: &[u8]) -> Result<(), SignatureError> {
    match signature.len() {
        65 => {
            let sig = alloy_primitives::Signature::try_from(signature)
                .map_err(|e| SignatureError::Malformed(e.to_string()))?;
            if sig.s() > SECP256K1_HALF_ORDER {
                return Err(SignatureError::HighS);
            }
            let signer = sig
                .recover_address_from_prehash(&digest)
                .map_err(|e| SignatureError::Malformed(e.to_string()))?;
            if signer != key {
                return Err(SignatureError::WrongSigner { signer, key });
            }
            Ok(())
        }
        128 => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let x = B256::from_slice(&signature[64..96]);
            let y = B256::from_slice(&signature[96..]);
            let signer = p256_key_id(x, y);
            if signer != key {
                return Err(SignatureError::WrongSigner { signer, key });
            }
            if alloy_primitives::U256::from_be_slice(&signature[32..64]) > P256_HALF_ORDER {
                return Err(SignatureError::HighS);
            }
            let point = EncodedPoint::from_affine_coordinates(
                x.as_slice().into(),
                y.as_slice().into(),
                false,
            );
            let verifying = VerifyingKey::from_encoded_point(&point)
                .map_err(|_| SignatureError::Malformed("the public key is not on P-256".into()))?;
            let sig = P256Signature::from_slice(&signature[..64])
                .map_err(|e| SignatureError::Malformed(e.to_string()))?;
            verifying
                .verify_prehash(digest.as_slice(), &sig)
                .map_err(|_| {
                    SignatureError::Malformed("the P-256 signature does not verify".into())
                })
        }
        n => Err(SignatureError::Length(n)),
    }
}

/// A P-256 private key held in this process (a keystore's, or a test's). HSM-held keys sign through the
/// `keyscope signer` sidecar's PKCS#11 backend instead.
#[derive(Clone)]
pub struct P256Key {
    key: SigningKey,
    x: B256,
    y: B256,
}

impl std::fmt::Debug for P256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the scalar.
        f.debug_struct("P256Key").field("id", &self.id()).finish()
    }
}

impl P256Key {
    /// A fresh random key.
    pub fn random() -> Self {
        Self::from_signing_key(SigningKey::random(&mut rand::thread_rng()))
    }

    /// The key with private scalar `scalar` (big-endian).
    pub fn from_bytes(scalar: &B256) -> Result<Self, KeyError> {
        SigningKey::from_bytes(scalar.as_slice().into())
            .map(Self::from_signing_key)
            .map_err(|_| KeyError::BadP256Scalar)
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let (x, y) = xy(&key.verifying_key().to_encoded_point(false));
        Self { key, x, y }
    }

    /// The private scalar (for writing it to an encrypted keystore).
    pub fn to_bytes(&self) -> B256 {
        B256::from_slice(&self.key.to_bytes())
    }

    /// The public key's coordinates.
    pub fn public_key(&self) -> (B256, B256) {
        (self.x, self.y)
    }

    /// `r ‖ s ‖ x ‖ y` over `digest`, synchronously (RFC 6979 deterministic nonces).
    pub fn sign_digest_sync(&self, digest: B256) -> Result<Bytes, SignError> {
        let sig: P256Signature = self
            .key
            .sign_prehash(digest.as_slice())
            .map_err(|e| SignError(e.to_string()))?;
        Ok(p256_signature_bytes(&sig, self.x, self.y))
    }
}

impl KeySigner for P256Key {
    fn id(&self) -> Address {
        p256_key_id(self.x, self.y)
    }

    fn curve(&self) -> Curve {
        Curve::P256
    }

    async fn sign_digest(&self, digest: B256) -> Result<Bytes, SignError> {
        self.sign_digest_sync(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{U256, b256};
    use p256::ecdsa::signature::hazmat::PrehashVerifier;

    #[test]
    fn id_is_the_domain_separated_hash_of_the_public_key() {
        let key = P256Key::from_bytes(&b256!(
            "0000000000000000000000000000000000000000000000000000000000c0ffee"
        ))
        .unwrap();
        let (x, y) = key.public_key();
        let mut pre = b"keyscope.p256".to_vec();
        pre.extend_from_slice(x.as_slice());
        pre.extend_from_slice(y.as_slice());
        assert_eq!(key.id(), Address::from_slice(&keccak256(&pre)[12..]));
        assert_ne!(key.id(), P256Key::random().id());
    }

    #[test]
    fn signatures_verify_and_have_low_s() {
        let key = P256Key::random();
        let order = U256::from_be_bytes(
            b256!("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551").0,
        );
        for i in 0..32u8 {
            let digest = keccak256([i]);
            let sig = key.sign_digest_sync(digest).unwrap();
            assert_eq!(sig.len(), 128);
            let s = U256::from_be_slice(&sig[32..64]);
            assert!(s <= order / U256::from(2), "s must be in the lower half");
            let parsed = P256Signature::from_slice(&sig[..64]).unwrap();
            key.key
                .verifying_key()
                .verify_prehash(digest.as_slice(), &parsed)
                .unwrap();
            assert_eq!(&sig[64..96], key.public_key().0.as_slice());
        }
    }

    #[tokio::test]
    async fn signatures_verify_against_their_key_on_both_curves_and_nothing_else() {
        let digest = keccak256(b"an order");
        let p = P256Key::random();
        let k = alloy::signers::local::PrivateKeySigner::random();
        for (id, sig) in [
            (p.id(), p.sign_digest(digest).await.unwrap()),
            (
                KeySigner::id(&k),
                KeySigner::sign_digest(&k, digest).await.unwrap(),
            ),
        ] {
            verify_digest(id, digest, &sig).unwrap();
            // Another digest, another key, a flipped byte: refused.
            assert!(verify_digest(id, keccak256(b"other"), &sig).is_err());
            let other = Address::repeat_byte(7);
            assert!(matches!(
                verify_digest(other, digest, &sig),
                Err(SignatureError::WrongSigner { key, .. }) if key == other
            ));
            let mut bad = sig.to_vec();
            bad[5] ^= 1;
            assert!(verify_digest(id, digest, &bad).is_err());
            assert_eq!(
                verify_digest(id, digest, &sig[..64]),
                Err(SignatureError::Length(64))
            );
        }
        // The high-s twin of a valid P-256 signature verifies mathematically but is refused, as on chain.
        let sig = p.sign_digest_sync(digest).unwrap();
        let n = U256::from_be_bytes(
            b256!("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551").0,
        );
        let s = U256::from_be_slice(&sig[32..64]);
        let mut twin = sig.to_vec();
        twin[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
        assert_eq!(
            verify_digest(p.id(), digest, &twin),
            Err(SignatureError::HighS)
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(
            P256Key::from_bytes(&B256::ZERO).unwrap_err(),
            KeyError::BadP256Scalar
        );
        assert_eq!(
            p256_public_from_sec1(&[4u8; 65]).unwrap_err(),
            KeyError::BadP256Point
        );
        assert_eq!(
            "ed25519".parse::<Curve>().unwrap_err(),
            KeyError::UnknownCurve("ed25519".into())
        );
        let key = P256Key::random();
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(key.public_key().0.as_slice());
        sec1.extend_from_slice(key.public_key().1.as_slice());
        assert_eq!(p256_public_from_sec1(&sec1).unwrap(), key.public_key());
    }
}
