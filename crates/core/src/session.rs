//! Session-key signatures of UserOps, in the byte layout TradingAccount validates.
//!
//! A session op's `signature` is `0x01 ‖ opValidUntil (6 bytes) ‖ r ‖ s ‖ v`, where the key signs
//! `keccak256(userOpHash ‖ uint48 opValidUntil ‖ uint256 grantId)` with no message prefix. Binding the
//! op's own expiry stops a relayer from holding an op and sending it later; binding the grant id kills
//! ops signed under a grant the owner has since revoked, even if the key is granted again.

use alloy_primitives::{Address, B256, Bytes, keccak256};
use k256::ecdsa::SigningKey;

/// Signature mode byte of a plain session op (`TradingAccount.MODE_SESSION`).
pub const MODE_SESSION: u8 = 0x01;

/// Largest op expiry the account accepts: it stores times in 40 bits.
pub const MAX_OP_VALID_UNTIL: u64 = (1 << 40) - 1;

/// Errors from building a session signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionSignError {
    /// The op's expiry is zero or does not fit the account's 40-bit time fields.
    #[error("op expiry {0} is out of range: it must be a unix time between 1 and 2^40 - 1")]
    OpExpiryOutOfRange(u64),
    /// The private key bytes are not a valid secp256k1 scalar.
    #[error("invalid secp256k1 private key")]
    InvalidKey,
    /// The signing backend failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The digest a session key signs for one op.
pub fn session_op_digest(user_op_hash: B256, op_valid_until: u64, grant_id: u32) -> B256 {
    let mut buf = [0u8; 32 + 6 + 32];
    buf[..32].copy_from_slice(user_op_hash.as_slice());
    buf[32..38].copy_from_slice(&op_valid_until.to_be_bytes()[2..]);
    buf[38 + 28..].copy_from_slice(&grant_id.to_be_bytes());
    keccak256(buf)
}

/// A local secp256k1 session key.
#[derive(Clone)]
pub struct SessionSigner {
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for SessionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSigner").field("address", &self.address).finish_non_exhaustive()
    }
}

impl SessionSigner {
    /// A signer from 32 private-key bytes.
    pub fn from_bytes(secret: &B256) -> Result<Self, SessionSignError> {
        let key = SigningKey::from_bytes(secret.as_slice().into()).map_err(|_| SessionSignError::InvalidKey)?;
        let address = Address::from_public_key(key.verifying_key());
        Ok(Self { key, address })
    }

    /// The session key's address, as the owner grants it.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The full `userOp.signature` of a session op.
    pub fn sign_op(&self, user_op_hash: B256, op_valid_until: u64, grant_id: u32) -> Result<Bytes, SessionSignError> {
        if op_valid_until == 0 || op_valid_until > MAX_OP_VALID_UNTIL {
            return Err(SessionSignError::OpExpiryOutOfRange(op_valid_until));
        }
        let digest = session_op_digest(user_op_hash, op_valid_until, grant_id);
        // RFC 6979 deterministic nonces; k256 returns s in the lower half, as the account requires.
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(digest.as_slice())
            .map_err(|e| SessionSignError::Signing(e.to_string()))?;
        let mut out = Vec::with_capacity(72);
        out.push(MODE_SESSION);
        out.extend_from_slice(&op_valid_until.to_be_bytes()[2..]);
        out.extend_from_slice(&sig.to_bytes());
        out.push(27 + recid.to_byte());
        Ok(out.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Signature, address, b256, hex};

    fn signer() -> SessionSigner {
        SessionSigner::from_bytes(&b256!("0000000000000000000000000000000000000000000000000000000000005e55")).unwrap()
    }

    /// The same vector is asserted by test/account/SessionVector.t.sol with forge's signer, so the Rust
    /// encoding and the contract's expectations cannot drift apart.
    #[test]
    fn signature_matches_contract_test_vector() {
        let s = signer();
        assert_eq!(s.address(), address!("87110f79f69670eE8dEd56E2231882D06b2873F2"));
        let hash = B256::repeat_byte(0x11);
        assert_eq!(
            session_op_digest(hash, 1_800_000_030, 3),
            b256!("a1b764f383dfb2e21744ae5787fe4b6a702ead6e484d7afdd18b477dc1f890d7")
        );
        let sig = s.sign_op(hash, 1_800_000_030, 3).unwrap();
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

    #[test]
    fn signature_recovers_to_session_key() {
        let s = signer();
        let hash = keccak256("an op");
        let sig = s.sign_op(hash, 1_900_000_000, 1).unwrap();
        assert_eq!(sig.len(), 72);
        let parsed = Signature::from_raw(&sig[7..]).unwrap();
        let recovered = parsed.recover_address_from_prehash(&session_op_digest(hash, 1_900_000_000, 1)).unwrap();
        assert_eq!(recovered, s.address());
        // Low s, as the account refuses malleable twins.
        assert!(parsed.normalize_s().is_none(), "s must already be in the lower half");
    }

    #[test]
    fn out_of_range_expiry_is_refused() {
        let s = signer();
        assert_eq!(s.sign_op(B256::ZERO, 0, 1), Err(SessionSignError::OpExpiryOutOfRange(0)));
        assert_eq!(
            s.sign_op(B256::ZERO, MAX_OP_VALID_UNTIL + 1, 1),
            Err(SessionSignError::OpExpiryOutOfRange(MAX_OP_VALID_UNTIL + 1))
        );
    }

    #[test]
    fn zero_key_is_refused() {
        assert_eq!(SessionSigner::from_bytes(&B256::ZERO).unwrap_err(), SessionSignError::InvalidKey);
    }
}
