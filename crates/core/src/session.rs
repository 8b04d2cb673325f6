//! Session-key signatures of UserOps, in the byte layout TradingAccount validates.
//!
//! A session op's `signature` is `0x01 ‖ opValidUntil (6 bytes) ‖ r ‖ s ‖ v`, where the key signs
//! `keccak256(userOpHash ‖ uint48 opValidUntil ‖ uint256 grantId)` with no message prefix. Binding the
//! op's own expiry stops a relayer from holding an op and sending it later; binding the grant id kills
//! ops signed under a grant the owner has since revoked, even if the key is granted again. Enable mode
//! (`0x02`) binds the owner's grant digest instead and carries the grant after the signature.
//!
//! A P-256 key (see [`crate::key`]) signs the same digests; its modes are `0x03` and `0x04` and its
//! signature is `r ‖ s ‖ x ‖ y`. A P-256 owner's signature is `0x10 ‖ r ‖ s ‖ x ‖ y`.

use alloy::signers::{Signature, SignerSync};
use alloy_primitives::{B256, Bytes, keccak256};

use crate::key::{Curve, KeySigner, SignError};

/// Signature mode byte of a plain session op (`TradingAccount.MODE_SESSION`).
pub const MODE_SESSION: u8 = 0x01;
/// Signature mode byte of an enable-in-first-op session op (`TradingAccount.MODE_ENABLE`).
pub const MODE_ENABLE: u8 = 0x02;
/// `MODE_SESSION` for a P-256 key (`TradingAccount.MODE_SESSION_P256`).
pub const MODE_SESSION_P256: u8 = 0x03;
/// `MODE_ENABLE` for a P-256 key (`TradingAccount.MODE_ENABLE_P256`).
pub const MODE_ENABLE_P256: u8 = 0x04;
/// First byte of a P-256 owner's signature (`P256Key.OWNER_PREFIX`).
pub const OWNER_P256_PREFIX: u8 = 0x10;

/// Largest op expiry the account accepts: it stores times in 40 bits.
pub const MAX_OP_VALID_UNTIL: u64 = (1 << 40) - 1;

/// Errors from building a session signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionSignError {
    /// The op's expiry is zero or does not fit the account's 40-bit time fields.
    #[error("op expiry {0} is out of range: it must be a unix time between 1 and 2^40 - 1")]
    OpExpiryOutOfRange(u64),
    /// The signer failed.
    #[error(transparent)]
    Signing(#[from] SignError),
}

/// The grant-id binding of a plain session op.
pub fn grant_binding(grant_id: u32) -> B256 {
    B256::left_padding_from(&grant_id.to_be_bytes())
}

/// The digest a session key signs for one op.
pub fn session_op_digest(user_op_hash: B256, op_valid_until: u64, binding: B256) -> B256 {
    let mut buf = [0u8; 32 + 6 + 32];
    buf[..32].copy_from_slice(user_op_hash.as_slice());
    buf[32..38].copy_from_slice(&op_valid_until.to_be_bytes()[2..]);
    buf[38..].copy_from_slice(binding.as_slice());
    keccak256(buf)
}

fn check_expiry(op_valid_until: u64) -> Result<(), SessionSignError> {
    if op_valid_until == 0 || op_valid_until > MAX_OP_VALID_UNTIL {
        return Err(SessionSignError::OpExpiryOutOfRange(op_valid_until));
    }
    Ok(())
}

/// The digest of a plain session op, once its expiry is known to be in range.
fn plain_digest(
    user_op_hash: B256,
    op_valid_until: u64,
    grant_id: u32,
) -> Result<B256, SessionSignError> {
    check_expiry(op_valid_until)?;
    Ok(session_op_digest(
        user_op_hash,
        op_valid_until,
        grant_binding(grant_id),
    ))
}

fn encode(mode: u8, op_valid_until: u64, key_sig: &[u8], tail: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(7 + key_sig.len() + tail.len());
    out.push(mode);
    out.extend_from_slice(&op_valid_until.to_be_bytes()[2..]);
    // r ‖ s ‖ v (secp256k1, v = 27 or 28) or r ‖ s ‖ x ‖ y (P-256), s in the lower half.
    out.extend_from_slice(key_sig);
    out.extend_from_slice(tail);
    out.into()
}

/// The `userOp.signature` of a plain session op from the key's signature over `session_op_digest`
/// (for callers that sign synchronously or elsewhere).
pub fn session_signature(op_valid_until: u64, sig: &Signature) -> Result<Bytes, SessionSignError> {
    session_signature_from(Curve::Secp256k1, op_valid_until, &sig.as_bytes())
}

/// The `userOp.signature` of a plain session op from a key signature on `curve` (65 bytes `r ‖ s ‖ v`, or
/// 128 bytes `r ‖ s ‖ x ‖ y`) over `session_op_digest` — for signers elsewhere, like `keyscope signer`.
pub fn session_signature_from(
    curve: Curve,
    op_valid_until: u64,
    key_sig: &[u8],
) -> Result<Bytes, SessionSignError> {
    check_expiry(op_valid_until)?;
    let mode = match curve {
        Curve::Secp256k1 => MODE_SESSION,
        Curve::P256 => MODE_SESSION_P256,
    };
    Ok(encode(mode, op_valid_until, key_sig, &[]))
}

/// The full `userOp.signature` of a plain session op, signed by `key` (any alloy signer — a local key,
/// a keystore, a hardware or remote signer — or a P-256 key).
pub async fn sign_session_op<K: KeySigner + ?Sized>(
    key: &K,
    user_op_hash: B256,
    op_valid_until: u64,
    grant_id: u32,
) -> Result<Bytes, SessionSignError> {
    let digest = plain_digest(user_op_hash, op_valid_until, grant_id)?;
    let sig = key.sign_digest(digest).await?;
    session_signature_from(key.curve(), op_valid_until, &sig)
}

/// `sign_session_op` for signers that sign synchronously (a local key), as simulations and benchmarks
/// do in tight loops.
pub fn sign_session_op_sync<S: SignerSync + ?Sized>(
    key: &S,
    user_op_hash: B256,
    op_valid_until: u64,
    grant_id: u32,
) -> Result<Bytes, SessionSignError> {
    let digest = plain_digest(user_op_hash, op_valid_until, grant_id)?;
    let sig = key
        .sign_hash_sync(&digest)
        .map_err(|e| SessionSignError::Signing(SignError(e.to_string())))?;
    session_signature(op_valid_until, &sig)
}

/// The `userOp.signature` of an owner op — or an owner's signature of any digest (a grant, an ERC-1271
/// message): a plain 65-byte ECDSA signature of the userOpHash, or a P-256 owner's `0x10 ‖ r ‖ s ‖ x ‖ y`.
pub async fn sign_owner_op<K: KeySigner + ?Sized>(
    owner: &K,
    user_op_hash: B256,
) -> Result<Bytes, SessionSignError> {
    let sig = owner.sign_digest(user_op_hash).await?;
    Ok(match owner.curve() {
        Curve::Secp256k1 => sig,
        Curve::P256 => [&[OWNER_P256_PREFIX][..], &sig].concat().into(),
    })
}

/// `sign_owner_op` for signers that sign synchronously (a local key).
pub fn sign_owner_op_sync<S: SignerSync + ?Sized>(
    owner: &S,
    user_op_hash: B256,
) -> Result<Bytes, SessionSignError> {
    let sig = owner
        .sign_hash_sync(&user_op_hash)
        .map_err(|e| SessionSignError::Signing(SignError(e.to_string())))?;
    Ok(sig.as_bytes().to_vec().into())
}

/// The `userOp.signature` of an enable-mode op: the key signs over the grant's EIP-712 digest, and
/// `enable_payload` (`abi.encode(scope, ownerSignature)`) follows.
pub async fn sign_enable_op<K: KeySigner + ?Sized>(
    key: &K,
    user_op_hash: B256,
    op_valid_until: u64,
    grant_digest: B256,
    enable_payload: &[u8],
) -> Result<Bytes, SessionSignError> {
    check_expiry(op_valid_until)?;
    let digest = session_op_digest(user_op_hash, op_valid_until, grant_digest);
    let sig = key.sign_digest(digest).await?;
    let mode = match key.curve() {
        Curve::Secp256k1 => MODE_ENABLE,
        Curve::P256 => MODE_ENABLE_P256,
    };
    Ok(encode(mode, op_valid_until, &sig, enable_payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;
    use alloy_primitives::{address, b256, hex};

    fn signer() -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&b256!(
            "0000000000000000000000000000000000000000000000000000000000005e55"
        ))
        .unwrap()
    }

    /// The same vector is asserted by test/account/SessionVector.t.sol with forge's signer, so the Rust
    /// encoding and the contract's expectations cannot drift apart.
    #[tokio::test]
    async fn signature_matches_contract_test_vector() {
        let s = signer();
        assert_eq!(
            s.address(),
            address!("87110f79f69670eE8dEd56E2231882D06b2873F2")
        );
        let hash = B256::repeat_byte(0x11);
        assert_eq!(
            session_op_digest(hash, 1_800_000_030, grant_binding(3)),
            b256!("a1b764f383dfb2e21744ae5787fe4b6a702ead6e484d7afdd18b477dc1f890d7")
        );
        let sig = sign_session_op(&s, hash, 1_800_000_030, 3).await.unwrap();
        assert_eq!(
            sig.as_ref(),
            hex!(
                "01" "00006b49d21e"
                "4f1990515fd4d4785e0d6b1dcbe9f60ec6dda7aec7799616cc92d5b31d0af55e"
                "194a08dfce8967afb2394c4d3c5f0f530a0b26ae2d779225fd6b8c8a256b9500"
                "1b"
            )
        );
    }

    #[tokio::test]
    async fn signature_recovers_to_session_key() {
        let s = signer();
        let hash = keccak256("an op");
        let sig = sign_session_op(&s, hash, 1_900_000_000, 1).await.unwrap();
        assert_eq!(sig.len(), 72);
        let parsed = Signature::from_raw(&sig[7..]).unwrap();
        let recovered = parsed
            .recover_address_from_prehash(&session_op_digest(hash, 1_900_000_000, grant_binding(1)))
            .unwrap();
        assert_eq!(recovered, s.address());
        assert!(
            parsed.normalize_s().is_none(),
            "s must already be in the lower half"
        );
    }

    /// The same key id is asserted by test/account/P256Keys.t.sol for forge's P-256 key 0xC0FFEE.
    #[tokio::test]
    async fn p256_session_signature_layout() {
        let key = crate::key::P256Key::from_bytes(&b256!(
            "0000000000000000000000000000000000000000000000000000000000c0ffee"
        ))
        .unwrap();
        assert_eq!(
            key.id(),
            address!("0xe5b90972bc17763484dd420917fcb8c31a4160f9")
        );
        let hash = keccak256("an op");
        let sig = sign_session_op(&key, hash, 1_900_000_000, 7).await.unwrap();
        assert_eq!(sig.len(), 135);
        assert_eq!(sig[0], MODE_SESSION_P256);
        assert_eq!(&sig[1..7], &1_900_000_000u64.to_be_bytes()[2..]);
        assert_eq!(&sig[71..103], key.public_key().0.as_slice());
        let owner = sign_owner_op(&key, hash).await.unwrap();
        assert_eq!((owner.len(), owner[0]), (129, OWNER_P256_PREFIX));
        let enable = sign_enable_op(&key, hash, 1_900_000_000, B256::ZERO, &[0xee])
            .await
            .unwrap();
        assert_eq!(
            (enable.len(), enable[0], enable[135]),
            (136, MODE_ENABLE_P256, 0xee)
        );
    }

    #[tokio::test]
    async fn out_of_range_expiry_is_refused() {
        let s = signer();
        assert_eq!(
            sign_session_op(&s, B256::ZERO, 0, 1).await,
            Err(SessionSignError::OpExpiryOutOfRange(0))
        );
        assert_eq!(
            sign_session_op(&s, B256::ZERO, MAX_OP_VALID_UNTIL + 1, 1).await,
            Err(SessionSignError::OpExpiryOutOfRange(MAX_OP_VALID_UNTIL + 1))
        );
    }
}
