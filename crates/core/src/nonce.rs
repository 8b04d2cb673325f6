//! Nonce lanes of session keys.
//!
//! An ERC-4337 nonce is a 192-bit key and a 64-bit sequence. TradingAccount reads the session key
//! from the key's upper 160 bits, leaving 32 bits of lane: each session key owns 2^32 independent
//! sequences, so several engines can stream orders in parallel, and revoking a key kills all of them.

use alloy_primitives::{Address, U256, aliases::U192};

/// Errors from reading a nonce as a session lane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// The nonce's key has zero in its upper 160 bits: it is an owner lane, not a session lane.
    #[error("nonce {0:#x} is on an owner lane: its upper 160 bits name no session key")]
    NotASessionLane(U256),
}

/// One nonce lane of one session key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionLane {
    /// The session key's address.
    pub key: Address,
    /// Which of the key's 2^32 lanes.
    pub lane: u32,
}

impl SessionLane {
    /// The lane `lane` of session key `key`.
    pub const fn new(key: Address, lane: u32) -> Self {
        Self { key, lane }
    }

    /// The 192-bit nonce key, as `TradingAccount.sessionNonceKey(key, lane)` returns it and
    /// `EntryPoint.getNonce(account, key)` takes it.
    pub fn nonce_key(&self) -> U192 {
        let key = U192::from_be_slice(self.key.as_slice());
        (key << 32) | U192::from(self.lane)
    }

    /// The full 256-bit nonce of this lane at `sequence`.
    pub fn nonce(&self, sequence: u64) -> U256 {
        (U256::from(self.nonce_key()) << 64) | U256::from(sequence)
    }

    /// Reads the session lane and sequence out of a full nonce.
    pub fn from_nonce(nonce: U256) -> Result<(Self, u64), NonceError> {
        let bytes = nonce.to_be_bytes::<32>();
        let key = Address::from_slice(&bytes[..20]);
        if key.is_zero() {
            return Err(NonceError::NotASessionLane(nonce));
        }
        let lane = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
        let sequence = u64::from_be_bytes(bytes[24..32].try_into().expect("8 bytes"));
        Ok((Self { key, lane }, sequence))
    }
}

/// The 192-bit key and 64-bit sequence of any nonce (owner or session lane).
pub fn split_nonce(nonce: U256) -> (U256, u64) {
    (nonce >> 64, (nonce & U256::from(u64::MAX)).to::<u64>())
}

/// The session key an op's nonce names (its upper 160 bits), if any: owner lanes name none.
pub fn session_key_of(nonce: U256) -> Option<Address> {
    SessionLane::from_nonce(nonce)
        .ok()
        .map(|(lane, _)| lane.key)
}

/// The EntryPoint v0.8 storage slot of `nonceSequenceNumber[sender][key]` (the mapping is its second
/// slot, after StakeManager's deposits).
pub fn entry_point_nonce_slot(sender: Address, key: U256) -> U256 {
    use alloy::sol_types::SolValue;
    let outer = alloy_primitives::keccak256((sender, U256::from(1)).abi_encode());
    U256::from_be_bytes(alloy_primitives::keccak256((key, outer).abi_encode()).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    #[test]
    fn nonce_round_trips_through_key_lane_and_sequence() {
        let lane = SessionLane::new(address!("87110f79f69670eE8dEd56E2231882D06b2873F2"), 7);
        let nonce = lane.nonce(42);
        assert_eq!(SessionLane::from_nonce(nonce), Ok((lane, 42)));
        // The key sits in the top 160 bits, the lane in the next 32, the sequence in the low 64.
        let bytes = nonce.to_be_bytes::<32>();
        assert_eq!(&bytes[..20], lane.key.as_slice());
        assert_eq!(&bytes[20..24], &7u32.to_be_bytes());
        assert_eq!(&bytes[24..], &42u64.to_be_bytes());
    }

    #[test]
    fn split_and_session_key_read_any_nonce() {
        let key = address!("87110f79f69670eE8dEd56E2231882D06b2873F2");
        let nonce = SessionLane::new(key, 3).nonce(5);
        assert_eq!(session_key_of(nonce), Some(key));
        assert_eq!(
            split_nonce(nonce),
            (U256::from(SessionLane::new(key, 3).nonce_key()), 5)
        );
        assert_eq!(session_key_of(U256::from(5)), None);
        assert_eq!(split_nonce(U256::from(5)), (U256::ZERO, 5));
    }

    #[test]
    fn owner_lane_is_not_a_session_lane() {
        let owner_nonce = U256::from(5u64);
        assert_eq!(
            SessionLane::from_nonce(owner_nonce),
            Err(NonceError::NotASessionLane(owner_nonce))
        );
    }
}
