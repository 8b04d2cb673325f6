//! Signed off-chain orders (`contracts/venue/libraries/SignedOrder.sol`): the EIP-712 `Order` a session key
//! signs, its id at a venue, the nested digest the key signs, and a builder that refuses nonsense before
//! anything is signed.
//!
//! Two digests, both EIP-712:
//! - the order's id at a venue, [`order_hash`]: `Order` under the venue's domain ("Keyscope PerpVenue", "1",
//!   chain id, venue) — what `PerpVenue.orderHash` returns and fills are tracked by;
//! - what the key signs, [`order_digest`]: `VenueOrder(bytes32 venueDomain,Order order)` under the account's
//!   own domain ("Keyscope TradingAccount", "1", chain id, account) — ERC-7739 style nesting, so the
//!   signature is an order of that account, on that chain, at that venue, and nothing else (never an
//!   ERC-1271 message, whose type is `KeyscopeMessage`).
//!
//! Both come from alloy's EIP-712 implementation over the `Order` binding generated from the venue's ABI; only
//! the one-field wrapper `VenueOrder` is hashed here, because `sol!` from an artifact has no such struct.
//!
//! A maker's post-only ask, signed by its session key (either curve, any [`KeySigner`]):
//!
//! ```no_run
//! # async fn quote(
//! #     provider: impl alloy::providers::Provider,
//! #     key: alloy::signers::local::PrivateKeySigner,
//! #     account: alloy_primitives::Address,
//! #     venue: alloy_primitives::Address,
//! #     chain_id: u64,
//! #     now_ms: u64,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use keyscope_core::{
//!     order::{OrderBuilder, TimeInForce, key_order_grant, order_hash, sign_order},
//!     units::parse_units,
//! };
//! let (grant_id, epoch) = key_order_grant(&provider, account, key.address()).await?;
//! let ask = OrderBuilder::new(account, key.address(), 0, false, parse_units("0.1", 18)?, parse_units("60100", 18)?)
//!     .grant(grant_id, epoch)
//!     .time_in_force(TimeInForce::PostOnly as u8)
//!     .expiry_ms(now_ms + 60_000)
//!     .nonce(42)
//!     .build(now_ms)?; // a zero size or price, a past expiry, an unknown time in force: refused here
//! let signature = sign_order(&key, venue, chain_id, &ask).await?; // 65 bytes; 128 for a P-256 key
//! let id = order_hash(venue, chain_id, &ask); // PerpVenue.orderHash(ask)
//! # let _ = (signature, id);
//! # Ok(())
//! # }
//! ```

use alloy::{
    providers::Provider,
    sol_types::{Eip712Domain, SolCall, SolStruct, eip712_domain},
};
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};

use crate::{
    bindings::ISessionManager,
    key::{KeySigner, SignError},
};

pub use crate::bindings::{ISignedOrderVenue::Fill, SignedOrder::Order};

/// The venue's EIP-712 domain name (`SignedOrder.VENUE_NAME_HASH`).
pub const VENUE_DOMAIN_NAME: &str = "Keyscope PerpVenue";
/// The account's EIP-712 domain name (`TradingAccount._domainNameAndVersion`).
pub const ACCOUNT_DOMAIN_NAME: &str = "Keyscope TradingAccount";
/// The version of both domains.
pub const DOMAIN_VERSION: &str = "1";
/// The nested struct's type, without the referenced `Order` type EIP-712 appends to it.
const VENUE_ORDER_TYPE: &str = "VenueOrder(bytes32 venueDomain,Order order)";

/// How long an order may rest (`SignedOrder.TimeInForce`). Only the matcher interprets it; the chain enforces
/// the expiry alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TimeInForce {
    /// Good until the expiry.
    Gtt = 0,
    /// Immediate or cancel: never rests.
    Ioc = 1,
    /// Post-only: refused if it would take.
    PostOnly = 2,
}

impl TryFrom<u8> for TimeInForce {
    type Error = OrderError;
    fn try_from(v: u8) -> Result<Self, OrderError> {
        match v {
            0 => Ok(Self::Gtt),
            1 => Ok(Self::Ioc),
            2 => Ok(Self::PostOnly),
            _ => Err(OrderError::BadTimeInForce(v)),
        }
    }
}

/// Why an order is refused before it is signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The order's size is zero.
    #[error("order size is zero")]
    ZeroSize,
    /// The order's limit price is zero.
    #[error("order limit price is zero")]
    ZeroPrice,
    /// A field does not fit the order's uint128.
    #[error("order {field} {value} does not fit the order's uint128")]
    TooLarge {
        /// Which field overflows (`size` or `limitPrice`).
        field: &'static str,
        /// Its value.
        value: U256,
    },
    /// The order's expiry is not after now.
    #[error("order expiry {expiry_ms} ms is not after now ({now_ms} ms)")]
    Expired {
        /// The order's expiry (ms since the epoch).
        expiry_ms: u64,
        /// The time it was checked at (ms since the epoch).
        now_ms: u64,
    },
    /// The time-in-force byte is none the venue knows.
    #[error("time in force {0} is not one of 0 (GTT), 1 (IOC), 2 (post-only)")]
    BadTimeInForce(u8),
    /// The order names another key than the one asked to sign it.
    #[error("the order names key {named}, not the signing key {key}")]
    KeyMismatch {
        /// The key the order names.
        named: Address,
        /// The key asked to sign it.
        key: Address,
    },
    /// The key could not sign.
    #[error(transparent)]
    Signing(#[from] SignError),
}

/// A venue's EIP-712 domain on `chain_id`.
pub fn venue_domain(venue: Address, chain_id: u64) -> Eip712Domain {
    eip712_domain! {
        name: VENUE_DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: venue,
    }
}

/// An account's EIP-712 domain on `chain_id`.
pub fn account_domain(account: Address, chain_id: u64) -> Eip712Domain {
    eip712_domain! {
        name: ACCOUNT_DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: account,
    }
}

/// The order's id at `venue` (`PerpVenue.orderHash`): its EIP-712 digest under the venue's domain.
pub fn order_hash(venue: Address, chain_id: u64, order: &Order) -> B256 {
    order.eip712_signing_hash(&venue_domain(venue, chain_id))
}

/// The digest the order's key signs (`TradingAccount.orderDigest(venue, order)` of the account at `account`):
/// `VenueOrder(venue's domain separator, order)` under the account's domain.
pub fn order_digest(account: Address, venue: Address, chain_id: u64, order: &Order) -> B256 {
    // The type hash is a constant: built once, not per order (the matcher checks thousands a second).
    static VENUE_ORDER_TYPEHASH: std::sync::LazyLock<B256> = std::sync::LazyLock::new(|| {
        let mut typ = VENUE_ORDER_TYPE.as_bytes().to_vec();
        typ.extend_from_slice(Order::eip712_encode_type().as_bytes());
        keccak256(&typ)
    });
    let mut buf = [0u8; 96];
    buf[..32].copy_from_slice(VENUE_ORDER_TYPEHASH.as_slice());
    buf[32..64].copy_from_slice(venue_domain(venue, chain_id).separator().as_slice());
    buf[64..].copy_from_slice(order.eip712_hash_struct().as_slice());
    let nested = keccak256(buf);
    let mut msg = [0u8; 66];
    msg[..2].copy_from_slice(b"\x19\x01");
    msg[2..34].copy_from_slice(account_domain(account, chain_id).separator().as_slice());
    msg[34..].copy_from_slice(nested.as_slice());
    keccak256(msg)
}

/// `key`'s signature of `order` for `venue` on `chain_id`, as the order's account checks it at settlement:
/// 65 bytes `r ‖ s ‖ v` (secp256k1) or 128 bytes `r ‖ s ‖ x ‖ y` (P-256). Refuses an order naming another
/// key, or whose size, price or time in force is nonsense (see [`check_order_fields`]).
pub async fn sign_order<K: KeySigner + ?Sized>(
    key: &K,
    venue: Address,
    chain_id: u64,
    order: &Order,
) -> Result<Bytes, OrderError> {
    if order.key != key.id() {
        return Err(OrderError::KeyMismatch {
            named: order.key,
            key: key.id(),
        });
    }
    check_order_fields(order)?;
    let digest = order_digest(order.account, venue, chain_id, order);
    Ok(key.sign_digest(digest).await?)
}

/// Checks that `signature` is the order key's over the order's digest at `venue` on `chain_id`, as the account
/// checks it at settlement (either curve, low s).
pub fn verify_order_signature(
    venue: Address,
    chain_id: u64,
    order: &Order,
    signature: &[u8],
) -> Result<(), crate::key::SignatureError> {
    crate::key::verify_digest(
        order.key,
        order_digest(order.account, venue, chain_id, order),
        signature,
    )
}

/// The checks an order passes whatever the time: a size, a price and a known time in force.
pub fn check_order_fields(order: &Order) -> Result<(), OrderError> {
    if order.size == 0 {
        return Err(OrderError::ZeroSize);
    }
    if order.limitPrice == 0 {
        return Err(OrderError::ZeroPrice);
    }
    TimeInForce::try_from(order.timeInForce)?;
    Ok(())
}

/// [`check_order_fields`], and the expiry after `now_ms` (milliseconds since the epoch).
pub fn check_order(order: &Order, now_ms: u64) -> Result<(), OrderError> {
    check_order_fields(order)?;
    if order.expiry <= now_ms {
        return Err(OrderError::Expired {
            expiry_ms: order.expiry,
            now_ms,
        });
    }
    Ok(())
}

/// The grant id and order epoch `key`'s orders on `account` must carry now (`getSession(key).grantId`,
/// `orderEpoch(key)`), read from the chain: an order under an older one is refused at settlement.
pub async fn key_order_grant<P: Provider>(
    provider: &P,
    account: Address,
    key: Address,
) -> Result<(u32, u32), alloy::contract::Error> {
    let sessions = ISessionManager::new(account, provider);
    let grant_id = sessions.getSession(key).call().await?.grantId;
    let epoch = sessions.orderEpoch(key).call().await?;
    Ok((grant_id, epoch))
}

/// Where order `nonce` sits in its key's cancel bitmap at the venue: the word index (`nonce >> 8`) and the
/// one-bit mask (`1 << (nonce & 255)`) — what `cancelOrders` / `cancelSignedOrders` take. Masks of the same
/// word may be or-ed to cancel up to 256 orders in one write.
pub fn nonce_slot(nonce: u64) -> (U256, U256) {
    (
        U256::from(nonce >> 8),
        U256::from(1u8) << (nonce & 255) as usize,
    )
}

/// The callData of `key`'s own op cancelling its orders at `venue` with nonces `word_index << 8 | i` for each
/// bit `i` of `mask` (`cancelSignedOrders`): never rate-limited, valid past the key's dead-man deadline, and
/// only at a venue of one of the key's order permissions.
pub fn cancel_orders_call_data(
    key: Address,
    venue: Address,
    word_index: U256,
    mask: U256,
) -> Bytes {
    ISessionManager::cancelSignedOrdersCall {
        key,
        venue,
        wordIndex: word_index,
        mask,
    }
    .abi_encode()
    .into()
}

/// The callData of `key`'s own op cancelling every order it signed under its current order epoch
/// (`bumpOrderEpoch`): never rate-limited, valid past the key's dead-man deadline.
pub fn bump_order_epoch_call_data(key: Address) -> Bytes {
    ISessionManager::bumpOrderEpochCall { key }
        .abi_encode()
        .into()
}

/// An order as JSON carries it (the signing sidecar's and a matcher's wire form): the contract's field
/// names, size and limit price as 18-decimal integers (hex or decimal strings), the rest as numbers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderJson {
    /// The account the order trades for.
    pub account: Address,
    /// The session key that signs the order.
    pub key: Address,
    /// The grant the key holds the order right under.
    pub grant_id: u32,
    /// The key's order epoch (bumping it cancels every order signed under the old one).
    pub epoch: u32,
    /// The venue's market id.
    pub market_id: u32,
    /// True for a bid, false for an ask.
    pub is_buy: bool,
    /// Size in 18-decimal base units.
    pub size: U256,
    /// Limit price in 18-decimal collateral units.
    pub limit_price: U256,
    /// True if the order may only shrink the position.
    pub reduce_only: bool,
    /// Time in force: 0 good-till-time, 1 immediate-or-cancel, 2 post-only.
    pub time_in_force: u8,
    /// When the order expires (ms since the epoch).
    pub expiry: u64,
    /// The key's nonce that makes the order unique.
    pub nonce: u64,
}

impl From<&Order> for OrderJson {
    fn from(o: &Order) -> Self {
        Self {
            account: o.account,
            key: o.key,
            grant_id: o.grantId,
            epoch: o.epoch,
            market_id: o.marketId,
            is_buy: o.isBuy,
            size: U256::from(o.size),
            limit_price: U256::from(o.limitPrice),
            reduce_only: o.reduceOnly,
            time_in_force: o.timeInForce,
            expiry: o.expiry,
            nonce: o.nonce,
        }
    }
}

impl OrderJson {
    /// The order, if it passes [`OrderBuilder::build`]'s checks at `now_ms`.
    pub fn to_order(&self, now_ms: u64) -> Result<Order, OrderError> {
        OrderBuilder::new(
            self.account,
            self.key,
            self.market_id,
            self.is_buy,
            self.size,
            self.limit_price,
        )
        .grant(self.grant_id, self.epoch)
        .reduce_only(self.reduce_only)
        .time_in_force(self.time_in_force)
        .expiry_ms(self.expiry)
        .nonce(self.nonce)
        .build(now_ms)
    }
}

/// An order under construction: account, key, market, side, size and limit price up front; the grant and
/// epoch the key holds (`getSession(key).grantId`, `orderEpoch(key)`), reduce-only, time in force, expiry
/// and nonce set as needed. [`OrderBuilder::build`] checks it.
#[derive(Debug, Clone)]
pub struct OrderBuilder {
    order: Order,
    size: U256,
    limit_price: U256,
}

impl OrderBuilder {
    /// A GTT order of `key` of `account` on `market_id`, `size` base at `limit_price` (both 18 decimals), with
    /// grant id 0, epoch 0, nonce 0 and no expiry yet.
    pub fn new(
        account: Address,
        key: Address,
        market_id: u32,
        is_buy: bool,
        size: U256,
        limit_price: U256,
    ) -> Self {
        Self {
            order: Order {
                account,
                key,
                grantId: 0,
                epoch: 0,
                marketId: market_id,
                isBuy: is_buy,
                size: 0,
                limitPrice: 0,
                reduceOnly: false,
                timeInForce: TimeInForce::Gtt as u8,
                expiry: 0,
                nonce: 0,
            },
            size,
            limit_price,
        }
    }

    /// The key's grant and order epoch: an order under another is refused at settlement.
    pub fn grant(mut self, grant_id: u32, epoch: u32) -> Self {
        self.order.grantId = grant_id;
        self.order.epoch = epoch;
        self
    }

    /// Reduce-only.
    pub fn reduce_only(mut self, reduce_only: bool) -> Self {
        self.order.reduceOnly = reduce_only;
        self
    }

    /// The time in force as the order carries it (a [`TimeInForce`] as `u8`; anything else is refused).
    pub fn time_in_force(mut self, tif: u8) -> Self {
        self.order.timeInForce = tif;
        self
    }

    /// Expiry, milliseconds since the epoch.
    pub fn expiry_ms(mut self, expiry_ms: u64) -> Self {
        self.order.expiry = expiry_ms;
        self
    }

    /// The cancel-bitmap nonce: word `nonce >> 8`, bit `nonce & 255`.
    pub fn nonce(mut self, nonce: u64) -> Self {
        self.order.nonce = nonce;
        self
    }

    /// The order, if its size and price are non-zero and fit, its time in force is known and it expires after
    /// `now_ms`.
    pub fn build(self, now_ms: u64) -> Result<Order, OrderError> {
        let fit = |field, value: U256| {
            u128::try_from(value).map_err(|_| OrderError::TooLarge { field, value })
        };
        let order = Order {
            size: fit("size", self.size)?,
            limitPrice: fit("limit price", self.limit_price)?,
            ..self.order
        };
        check_order(&order, now_ms)?;
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::P256Key;
    use alloy::signers::local::PrivateKeySigner;
    use alloy_primitives::address;

    const VENUE: Address = address!("0x00000000000000000000000000000000000000e1");
    const NOW_MS: u64 = 1_800_000_000_000;

    fn e18(v: u64) -> U256 {
        U256::from(v) * U256::from(10u64).pow(U256::from(18))
    }

    fn builder(key: Address) -> OrderBuilder {
        OrderBuilder::new(
            Address::repeat_byte(0xac),
            key,
            0,
            true,
            e18(1),
            e18(60_000),
        )
        .grant(1, 0)
        .expiry_ms(NOW_MS + 60_000)
        .nonce(7)
    }

    #[test]
    fn the_type_is_the_contracts() {
        assert_eq!(
            Order::eip712_encode_type(),
            "Order(address account,address key,uint32 grantId,uint32 epoch,uint32 marketId,bool isBuy,\
             uint128 size,uint128 limitPrice,bool reduceOnly,uint8 timeInForce,uint64 expiry,uint64 nonce)"
        );
    }

    #[test]
    fn the_digests_bind_venue_account_chain_and_every_field() {
        let order = builder(Address::ZERO).build(NOW_MS).unwrap();
        let account = order.account;
        let hash = order_hash(VENUE, 1, &order);
        let digest = order_digest(account, VENUE, 1, &order);
        assert_ne!(hash, digest);
        assert_ne!(order_hash(Address::repeat_byte(2), 1, &order), hash);
        assert_ne!(order_hash(VENUE, 2, &order), hash);
        assert_ne!(
            order_digest(Address::repeat_byte(3), VENUE, 1, &order),
            digest
        );
        assert_ne!(
            order_digest(account, Address::repeat_byte(2), 1, &order),
            digest
        );
        assert_ne!(order_digest(account, VENUE, 2, &order), digest);
        let bigger = Order {
            size: order.size + 1,
            ..order.clone()
        };
        assert_ne!(order_hash(VENUE, 1, &bigger), hash);
        assert_ne!(order_digest(account, VENUE, 1, &bigger), digest);
    }

    #[test]
    fn json_round_trips_and_is_checked() {
        let order = builder(Address::repeat_byte(5)).build(NOW_MS).unwrap();
        let json = serde_json::to_value(OrderJson::from(&order)).unwrap();
        assert_eq!(
            json["limitPrice"],
            serde_json::json!(format!("{:#x}", e18(60_000)))
        );
        let back: OrderJson = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.to_order(NOW_MS).unwrap(), order);
        let mut bad = json;
        bad["timeInForce"] = 7.into();
        let bad: OrderJson = serde_json::from_value(bad).unwrap();
        assert_eq!(bad.to_order(NOW_MS), Err(OrderError::BadTimeInForce(7)));
    }

    #[test]
    fn nonces_map_to_bitmap_words() {
        assert_eq!(nonce_slot(0), (U256::ZERO, U256::from(1)));
        assert_eq!(nonce_slot(255), (U256::ZERO, U256::from(1) << 255));
        assert_eq!(nonce_slot(256 * 3 + 5), (U256::from(3), U256::from(32)));
    }

    #[tokio::test]
    async fn both_curves_sign_the_nested_digest() {
        let k1 = PrivateKeySigner::random();
        let order = builder(k1.address()).build(NOW_MS).unwrap();
        let sig = sign_order(&k1, VENUE, 1, &order).await.unwrap();
        assert_eq!(sig.len(), 65);
        let digest = order_digest(order.account, VENUE, 1, &order);
        let parsed = alloy::signers::Signature::from_raw(&sig).unwrap();
        assert_eq!(
            parsed.recover_address_from_prehash(&digest).unwrap(),
            k1.address()
        );

        let p = P256Key::random();
        let order = builder(p.id()).build(NOW_MS).unwrap();
        let sig = sign_order(&p, VENUE, 1, &order).await.unwrap();
        assert_eq!(sig.len(), 128);
        assert_eq!(&sig[64..96], p.public_key().0.as_slice());
        // What a matcher checks before it acknowledges: the order's key, at this venue and chain only.
        verify_order_signature(VENUE, 1, &order, &sig).unwrap();
        assert!(verify_order_signature(VENUE, 2, &order, &sig).is_err());
        assert!(verify_order_signature(Address::repeat_byte(9), 1, &order, &sig).is_err());
        let bigger = Order {
            size: order.size + 1,
            ..order.clone()
        };
        assert!(verify_order_signature(VENUE, 1, &bigger, &sig).is_err());
    }

    #[tokio::test]
    async fn nonsense_is_refused_before_signing() {
        let k1 = PrivateKeySigner::random();
        let b = || builder(k1.address());
        assert_eq!(
            OrderBuilder {
                size: U256::ZERO,
                ..b()
            }
            .build(NOW_MS),
            Err(OrderError::ZeroSize)
        );
        assert_eq!(
            OrderBuilder {
                limit_price: U256::ZERO,
                ..b()
            }
            .build(NOW_MS),
            Err(OrderError::ZeroPrice)
        );
        assert!(matches!(
            OrderBuilder {
                size: U256::from(u128::MAX) + U256::from(1),
                ..b()
            }
            .build(NOW_MS),
            Err(OrderError::TooLarge { field: "size", .. })
        ));
        assert_eq!(
            b().expiry_ms(NOW_MS).build(NOW_MS),
            Err(OrderError::Expired {
                expiry_ms: NOW_MS,
                now_ms: NOW_MS
            })
        );
        assert_eq!(
            b().time_in_force(3).build(NOW_MS),
            Err(OrderError::BadTimeInForce(3))
        );
        // Positive control: every known time in force builds.
        for tif in [TimeInForce::Gtt, TimeInForce::Ioc, TimeInForce::PostOnly] {
            b().time_in_force(tif as u8).build(NOW_MS).unwrap();
        }
        // Signing refuses another key's order and a malformed one.
        let order = b().build(NOW_MS).unwrap();
        let other = PrivateKeySigner::random();
        assert!(matches!(
            sign_order(&other, VENUE, 1, &order).await,
            Err(OrderError::KeyMismatch { .. })
        ));
        let zero = Order {
            size: 0,
            ..order.clone()
        };
        assert_eq!(
            sign_order(&k1, VENUE, 1, &zero).await,
            Err(OrderError::ZeroSize)
        );
    }
}
