//! Signed requests to a matcher about a key's resting orders: cancel some, cancel all, schedule a cancel-all
//! (a dead-man switch for resting orders), and subscribe to the key's order updates. An order proves its key
//! by its own signature; these requests carry no order, so the key signs one of them instead.
//!
//! `MatcherRequest(address venue,address account,address key,uint8 action,bytes32 payload,uint64 timestampMs)`
//! is signed as EIP-712 typed data under the account's own domain ("Keyscope TradingAccount", "1", chain id,
//! account) — the domain orders are signed under — so a request is bound to one account on one chain and one
//! venue, and can never pass as an order (whose struct is `VenueOrder`) or as an ERC-1271 message (whose struct
//! is `KeyscopeMessage`), nor either of them as a request. Nothing on chain reads a request: cancelling on
//! chain is the key's own op (`cancelSignedOrders`, `bumpOrderEpoch`, see [`crate::order`]).
//!
//! A matcher refuses a request whose `timestampMs` is more than [`REQUEST_WINDOW_MS`] from its clock and
//! remembers the digests it took inside that window, so a captured request cannot be replayed later to cancel
//! orders placed after it.

use alloy::sol_types::SolStruct;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};

use crate::{
    key::{KeySigner, SignError, SignatureError, verify_digest},
    order::account_domain,
};

/// How far a request's timestamp may be from the matcher's clock, either way.
pub const REQUEST_WINDOW_MS: u64 = 5_000;
/// The earliest a scheduled cancel-all may fire, from the request's time: shorter would cancel quotes on a
/// network hiccup (Hyperliquid's `scheduleCancel` has the same floor).
pub const MIN_SCHEDULED_CANCEL_MS: u64 = 5_000;

alloy::sol! {
    /// A key's signed request to a matcher.
    #[derive(Debug, PartialEq, Eq)]
    struct MatcherRequest {
        address venue;
        address account;
        address key;
        uint8 action;
        bytes32 payload;
        uint64 timestampMs;
    }
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    /// Cancel these orders (by order hash) of the key; payload: keccak256 of the hashes concatenated.
    Cancel(Vec<B256>),
    /// Cancel every resting order of the key; payload zero.
    CancelAll,
    /// Cancel every resting order of the key at `at_ms` unless a later request moves or clears it (0);
    /// payload: `at_ms`.
    ScheduleCancel {
        /// When to cancel (ms since the epoch); 0 clears the schedule.
        at_ms: u64,
    },
    /// Stream the key's order updates and fills; `cancel_on_disconnect`: cancel its resting orders when the
    /// stream closes. Payload: 1 or 0.
    Subscribe {
        /// Whether to cancel the key's resting orders when the stream closes.
        cancel_on_disconnect: bool,
    },
}

impl RequestAction {
    fn code(&self) -> u8 {
        match self {
            Self::Cancel(_) => 0,
            Self::CancelAll => 1,
            Self::ScheduleCancel { .. } => 2,
            Self::Subscribe { .. } => 3,
        }
    }

    fn payload(&self) -> B256 {
        match self {
            Self::Cancel(hashes) => {
                let mut buf = Vec::with_capacity(hashes.len() * 32);
                for h in hashes {
                    buf.extend_from_slice(h.as_slice());
                }
                keccak256(buf)
            }
            Self::CancelAll => B256::ZERO,
            Self::ScheduleCancel { at_ms } => U256::from(*at_ms).into(),
            Self::Subscribe {
                cancel_on_disconnect,
            } => U256::from(*cancel_on_disconnect as u8).into(),
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request's timestamp is too far from the matcher's clock.
    #[error(
        "the request's timestamp {timestamp_ms} ms is more than {REQUEST_WINDOW_MS} ms from the matcher's clock \
         ({now_ms} ms): sign it again with the current time"
    )]
    Stale {
        /// The request's signed time (ms since the epoch).
        timestamp_ms: u64,
        /// The matcher's clock (ms since the epoch).
        now_ms: u64,
    },
    /// A scheduled cancel is too close to the request's own time.
    #[error(
        "a scheduled cancel must be at least {MIN_SCHEDULED_CANCEL_MS} ms after the request ({at_ms} ms is \
         {ahead_ms} ms ahead); 0 clears it"
    )]
    ScheduleTooSoon {
        /// The time asked for (ms since the epoch).
        at_ms: u64,
        /// How far after the request's own time that is (ms).
        ahead_ms: i64,
    },
    /// A cancel request lists no order hash.
    #[error("a cancel request names no order")]
    NoOrders,
    /// The signature is not the named key's.
    #[error("the request's signature is not the key's: {0}")]
    Signature(#[from] SignatureError),
    /// The key could not sign.
    #[error(transparent)]
    Signing(#[from] SignError),
}

/// A request with everything that identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The venue whose matcher the request is for.
    pub venue: Address,
    /// The account whose orders it concerns.
    pub account: Address,
    /// The session key that signs it.
    pub key: Address,
    /// What it asks.
    pub action: RequestAction,
    /// When it was signed (ms since the epoch).
    pub timestamp_ms: u64,
}

impl Request {
    fn typed(&self) -> MatcherRequest {
        MatcherRequest {
            venue: self.venue,
            account: self.account,
            key: self.key,
            action: self.action.code(),
            payload: self.action.payload(),
            timestampMs: self.timestamp_ms,
        }
    }

    /// The digest the key signs on `chain_id`.
    pub fn digest(&self, chain_id: u64) -> B256 {
        self.typed()
            .eip712_signing_hash(&account_domain(self.account, chain_id))
    }

    /// The request's own checks: a cancel names an order, a schedule is far enough ahead (or clears).
    pub fn check_fields(&self) -> Result<(), RequestError> {
        match &self.action {
            RequestAction::Cancel(hashes) if hashes.is_empty() => Err(RequestError::NoOrders),
            RequestAction::ScheduleCancel { at_ms }
                if *at_ms != 0 && *at_ms < self.timestamp_ms + MIN_SCHEDULED_CANCEL_MS =>
            {
                Err(RequestError::ScheduleTooSoon {
                    at_ms: *at_ms,
                    ahead_ms: *at_ms as i64 - self.timestamp_ms as i64,
                })
            }
            _ => Ok(()),
        }
    }

    /// `key`'s signature of the request (checked first: nothing nonsensical is signed).
    pub async fn sign<K: KeySigner + ?Sized>(
        &self,
        key: &K,
        chain_id: u64,
    ) -> Result<Bytes, RequestError> {
        self.check_fields()?;
        Ok(key.sign_digest(self.digest(chain_id)).await?)
    }

    /// Checks the request at `now_ms` and that `signature` is its key's. Returns its digest (a matcher's
    /// replay key).
    pub fn verify(
        &self,
        chain_id: u64,
        signature: &[u8],
        now_ms: u64,
    ) -> Result<B256, RequestError> {
        if self.timestamp_ms.abs_diff(now_ms) > REQUEST_WINDOW_MS {
            return Err(RequestError::Stale {
                timestamp_ms: self.timestamp_ms,
                now_ms,
            });
        }
        self.check_fields()?;
        let digest = self.digest(chain_id);
        verify_digest(self.key, digest, signature)?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        key::P256Key,
        order::{OrderBuilder, order_digest},
    };
    use alloy::signers::local::PrivateKeySigner;

    const NOW: u64 = 1_800_000_000_000;
    const VENUE: Address = Address::repeat_byte(0xe1);

    fn request(key: Address, action: RequestAction) -> Request {
        Request {
            venue: VENUE,
            account: Address::repeat_byte(0xac),
            key,
            action,
            timestamp_ms: NOW,
        }
    }

    #[tokio::test]
    async fn a_request_verifies_only_as_itself_on_both_curves() {
        let p = P256Key::random();
        let k = PrivateKeySigner::random();
        for id in [p.id(), k.address()] {
            let r = request(id, RequestAction::Cancel(vec![B256::repeat_byte(1)]));
            let sig = if id == p.id() {
                r.sign(&p, 1).await.unwrap()
            } else {
                r.sign(&k, 1).await.unwrap()
            };
            r.verify(1, &sig, NOW + 4_000).unwrap();
            // Another chain, account, venue, action, order list or time: refused.
            assert!(r.verify(2, &sig, NOW).is_err());
            for other in [
                Request {
                    account: Address::repeat_byte(1),
                    ..r.clone()
                },
                Request {
                    venue: Address::repeat_byte(2),
                    ..r.clone()
                },
                Request {
                    action: RequestAction::CancelAll,
                    ..r.clone()
                },
                Request {
                    action: RequestAction::Cancel(vec![B256::repeat_byte(2)]),
                    ..r.clone()
                },
                Request {
                    timestamp_ms: NOW + 1,
                    ..r.clone()
                },
            ] {
                assert!(matches!(
                    other.verify(1, &sig, NOW),
                    Err(RequestError::Signature(_))
                ));
            }
            // Stale either way.
            assert!(matches!(
                r.verify(1, &sig, NOW + REQUEST_WINDOW_MS + 1),
                Err(RequestError::Stale { .. })
            ));
            assert!(matches!(
                r.verify(1, &sig, NOW - REQUEST_WINDOW_MS - 1),
                Err(RequestError::Stale { .. })
            ));
        }
    }

    #[tokio::test]
    async fn an_order_signature_is_never_a_request_and_nonsense_is_not_signed() {
        let k = PrivateKeySigner::random();
        let account = Address::repeat_byte(0xac);
        let order = OrderBuilder::new(account, k.address(), 0, true, U256::from(1), U256::from(1))
            .expiry_ms(NOW + 1)
            .build(NOW)
            .unwrap();
        let order_sig = k
            .sign_digest(order_digest(account, VENUE, 1, &order))
            .await
            .unwrap();
        let r = request(k.address(), RequestAction::CancelAll);
        assert!(r.verify(1, &order_sig, NOW).is_err());
        assert_ne!(r.digest(1), order_digest(account, VENUE, 1, &order));
        assert_eq!(
            request(k.address(), RequestAction::Cancel(vec![]))
                .sign(&k, 1)
                .await,
            Err(RequestError::NoOrders)
        );
        assert!(matches!(
            request(
                k.address(),
                RequestAction::ScheduleCancel {
                    at_ms: NOW + MIN_SCHEDULED_CANCEL_MS - 1
                }
            )
            .sign(&k, 1)
            .await,
            Err(RequestError::ScheduleTooSoon { .. })
        ));
        request(
            k.address(),
            RequestAction::ScheduleCancel {
                at_ms: NOW + MIN_SCHEDULED_CANCEL_MS,
            },
        )
        .sign(&k, 1)
        .await
        .unwrap();
        request(k.address(), RequestAction::ScheduleCancel { at_ms: 0 })
            .sign(&k, 1)
            .await
            .unwrap();
    }
}
