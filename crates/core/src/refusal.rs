//! Why the contracts refuse an op, read from revert data into a typed reason.
//!
//! Everything that turns Keyscope's revert data into words lives here — the client's refusals, the relayer's
//! JSON-RPC `data`, the CLI's messages and the harness's reports — so an error added to a contract is
//! described once. A reason has a kind a program can match on, the contract error's name, a sentence for
//! people and a hint saying what to do.

use std::fmt;

use alloy::sol_types::SolInterface;
use alloy_primitives::U256;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    bindings::{
        IEntryPoint::IEntryPointErrors, PerpVenue::PerpVenueErrors,
        SignedPriceOracle::SignedPriceOracleErrors, TestUSD::TestUSDErrors,
        TradingAccount::TradingAccountErrors,
    },
    units::{format_amount, format_signed_amount, format_units},
};

/// What kind of refusal: what a program branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RefusalKind {
    /// The venue's initial-margin check failed, or a withdrawal asked for more margin than there is.
    InsufficientMargin,
    /// A token transfer moved more than its sender holds.
    InsufficientBalance,
    /// The oracle's price is older than its maximum age.
    StalePrice,
    /// The order's limit price is not met or is outside the venue's band.
    OutsideLimitPrice,
    /// The session key's scope does not allow the call.
    ScopeViolation,
    /// The op would cost more than the key's per-op cap or remaining fee budget, names a paymaster the key may
    /// not use, or sends more value than the key's value budget has left.
    FeeLimit,
    /// After the op the account would break the key's leverage, position, headroom or drawdown limits, or the
    /// key's breaker has tripped.
    RiskLimit,
    /// The session key is revoked, expired, rate-limited or used up.
    SessionUnusable,
    /// Any other revert.
    Other,
}

/// A refusal: its kind, the contract error's name, a sentence, and the EntryPoint's AA reason around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal it is.
    pub kind: RefusalKind,
    /// The contract error's name (`SessionLeverageTooHigh`), or None for EntryPoint-only reasons.
    pub error: Option<String>,
    /// What happened, in words.
    pub detail: String,
    /// The EntryPoint's reason wrapping it (`AA23 reverted`), if any.
    pub entry_point: Option<String>,
}

impl Refusal {
    fn new(kind: RefusalKind, error: &str, detail: String) -> Self {
        Self {
            kind,
            error: Some(error.to_string()),
            detail,
            entry_point: None,
        }
    }

    /// The same refusal with every market it mentions by id named as `markets` (a deployment's names)
    /// lists it: "market 1 is not in the session's scope" reads "ETH (market 1) is not in ...".
    pub fn naming_markets(mut self, markets: &std::collections::BTreeMap<String, u32>) -> Self {
        for (name, id) in markets {
            let plain = format!("market {id}");
            let mut named = String::with_capacity(self.detail.len() + name.len() + 3);
            let mut rest = self.detail.as_str();
            while let Some(at) = rest.find(&plain) {
                let after = &rest[at + plain.len()..];
                named.push_str(&rest[..at]);
                match after.starts_with(|c: char| c.is_ascii_digit()) {
                    // "market 10" is not market 1.
                    true => named.push_str(&plain),
                    false => named.push_str(&format!("{name} ({plain})")),
                }
                rest = after;
            }
            named.push_str(rest);
            self.detail = named;
        }
        self
    }

    /// Reads revert data from `handleOps`, an op's validation or its execution.
    pub fn decode(data: &[u8]) -> Self {
        if let Ok(e) = IEntryPointErrors::abi_decode(data) {
            return match e {
                IEntryPointErrors::FailedOpWithRevert(f) => Self {
                    entry_point: Some(f.reason),
                    ..Self::decode(&f.inner)
                },
                IEntryPointErrors::FailedOp(f) => {
                    let (kind, meaning) = entry_point_meaning(&f.reason);
                    Self {
                        kind,
                        error: None,
                        detail: match meaning {
                            Some(m) => format!("EntryPoint {}: {m}", f.reason),
                            None => format!("EntryPoint {}", f.reason),
                        },
                        entry_point: None,
                    }
                }
                other => Self::new(RefusalKind::Other, "EntryPoint", format!("{other:?}")),
            };
        }
        if let Ok(e) = TradingAccountErrors::abi_decode(data) {
            return account_refusal(e);
        }
        if let Ok(e) = PerpVenueErrors::abi_decode(data) {
            return venue_refusal(e);
        }
        if let Ok(e) = SignedPriceOracleErrors::abi_decode(data) {
            return match e {
                SignedPriceOracleErrors::StalePrice(x) => Self::new(
                    RefusalKind::StalePrice,
                    "StalePrice",
                    format!(
                        "market {} price was published at {}, too old at {}",
                        x.marketId, x.publishTime, x.now_
                    ),
                ),
                other => Self::new(RefusalKind::Other, "oracle", format!("oracle: {other:?}")),
            };
        }
        if let Ok(TestUSDErrors::ERC20InsufficientBalance(x)) = TestUSDErrors::abi_decode(data) {
            return Self::new(
                RefusalKind::InsufficientBalance,
                "ERC20InsufficientBalance",
                format!(
                    "ERC20InsufficientBalance: {} holds {} of the token (6 decimals, as tUSD) but the call moves {}",
                    x.sender,
                    usd(x.balance),
                    usd(x.needed)
                ),
            );
        }
        if data.len() >= 4 && data[..4] == [0x59, 0x17, 0x0b, 0xf0] {
            return Self::new(
                RefusalKind::ScopeViolation,
                "MalformedCalldata",
                "MalformedCalldata: the op's calldata is not canonical ABI".into(),
            );
        }
        if data.len() >= 4 && data[..4] == [0x08, 0xc3, 0x79, 0xa0] {
            if let Ok(reason) = <String as alloy::sol_types::SolValue>::abi_decode(&data[4..]) {
                return Self {
                    kind: RefusalKind::Other,
                    error: Some("Error".into()),
                    detail: reason,
                    entry_point: None,
                };
            }
        }
        Self {
            kind: RefusalKind::Other,
            error: None,
            detail: format!("revert data 0x{}", alloy_primitives::hex::encode(data)),
            entry_point: None,
        }
    }

    /// What the sender should do about it.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            RefusalKind::InsufficientMargin
                if self.error.as_deref() == Some("InsufficientCollateral") =>
            {
                "ask for at most the margin the venue holds (`keyscope account info` shows it)"
            }
            RefusalKind::InsufficientMargin => {
                "deposit margin or reduce the order size; a withdrawal must leave that margin: withdraw less or \
                 close positions first"
            }
            RefusalKind::InsufficientBalance => {
                "move less, or fund the address first (`keyscope account info` shows the account's tUSD)"
            }
            RefusalKind::StalePrice => "wait for a fresh oracle price",
            RefusalKind::OutsideLimitPrice => "re-price the order nearer the oracle price",
            RefusalKind::ScopeViolation => {
                "the session key may not do this; ask the owner for a wider grant"
            }
            RefusalKind::FeeLimit => {
                "lower the op's gas limits or fee, or ask the owner for a larger fee budget"
            }
            RefusalKind::RiskLimit => {
                "reduce the order, add margin, or (after a breaker trip) ask the owner to re-arm the key"
            }
            RefusalKind::SessionUnusable => {
                "use an active session key within its rate and lifetime"
            }
            RefusalKind::Other => "fix the call",
        }
    }

    /// The JSON a bundler puts in an error's `data`: `{reason, error, detail, hint}`.
    pub fn to_json(&self) -> Value {
        json!({
            "reason": self.kind,
            "error": self.error,
            "detail": self.detail,
            "hint": self.hint(),
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry_point {
            Some(aa) => write!(f, "{} ({aa})", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

impl std::error::Error for Refusal {}

/// What the EntryPoint's own refusal codes mean for a Keyscope account, and what to do about them.
fn entry_point_meaning(reason: &str) -> (RefusalKind, Option<&'static str>) {
    let code = reason.get(..4).unwrap_or_default();
    match code {
        "AA21" => (
            RefusalKind::InsufficientBalance,
            Some(
                "the account cannot pay this op's gas: send it ETH (`keyscope account info` shows what \
                 it holds)",
            ),
        ),
        "AA22" => (
            RefusalKind::SessionUnusable,
            Some(
                "outside its time window: the session key's grant has expired or is not valid yet, or \
                 the op's own expiry passed (`keyscope session list` shows the key's state; grant the key \
                 again or sign with an active one)",
            ),
        ),
        "AA24" => (
            RefusalKind::Other,
            Some(
                "the signature is not this account's: another owner key or account (--salt), or a \
                 session key signing for an account that never granted it",
            ),
        ),
        "AA25" => (
            RefusalKind::Other,
            Some(
                "the op's nonce is not the account's next: another op of this account was mined or is \
                 waiting; build the op again",
            ),
        ),
        _ => (RefusalKind::Other, None),
    }
}

/// Readable reason for revert data (the `Display` of [`Refusal::decode`]).
pub fn describe_revert(data: &[u8]) -> String {
    Refusal::decode(data).to_string()
}

fn eth(wei: U256) -> String {
    format!("{} ETH", format_units(wei, 18))
}

/// An amount of the venue's collateral (6 decimals) as people write it: "9,994 tUSD".
fn usd(v: U256) -> String {
    format!("{} tUSD", format_amount(v, 6))
}

/// A signed venue value (account value, collateral), 6 decimals.
fn signed_usd(v: alloy_primitives::I256) -> String {
    format!("{} tUSD", format_signed_amount(v, 6))
}

/// An 18-decimal price or notional in USD: "$60,000".
fn dollars(v: U256) -> String {
    format!("${}", format_amount(v, 18))
}

/// An 18-decimal order size.
fn size(v: U256) -> String {
    format_amount(v, 18)
}

/// The account's own errors as reasons. One arm per error the account defines — a table, so it runs past
/// 100 lines; splitting it would only scatter the table.
fn account_refusal(e: TradingAccountErrors) -> Refusal {
    use RefusalKind as K;
    use TradingAccountErrors as E;
    let (kind, name, detail): (K, &str, String) = match e {
        E::SessionMarketNotAllowed(x) => (
            K::ScopeViolation,
            "SessionMarketNotAllowed",
            format!("market {} is not in the session's scope", x.marketId),
        ),
        E::SessionOrderTooLarge(x) => (
            K::ScopeViolation,
            "SessionOrderTooLarge",
            format!(
                "size {} is over the scope's max {}",
                size(x.size),
                size(x.maxSize)
            ),
        ),
        E::SessionNotionalTooHigh(x) => (
            K::ScopeViolation,
            "SessionNotionalTooHigh",
            format!(
                "notional {} is over the scope's max {}",
                dollars(x.notional),
                dollars(x.maxNotional)
            ),
        ),
        E::SessionReduceOnlyRequired(_) => (
            K::ScopeViolation,
            "SessionReduceOnlyRequired",
            "this key may only place reduce-only orders".into(),
        ),
        E::SessionCallNotPermitted(x) => (
            K::ScopeViolation,
            "SessionCallNotPermitted",
            format!("the key may not call {} on {}", x.selector, x.target),
        ),
        E::SessionSelectorNotAllowed(x) => (
            K::ScopeViolation,
            "SessionSelectorNotAllowed",
            format!(
                "a session op's callData must be executeSession(key, execute or executeBatch), not {}",
                x.selector
            ),
        ),
        E::SessionKeyMismatch(x) => (
            K::ScopeViolation,
            "SessionKeyMismatch",
            format!(
                "executeSession names {} but {} signs the op",
                x.declared, x.signer
            ),
        ),
        E::SessionValueTooHigh(x) => (
            K::ScopeViolation,
            "SessionValueTooHigh",
            format!(
                "the call sends {} wei, over its permission's {} wei",
                x.value, x.limit
            ),
        ),
        E::SessionTooManyCalls(x) => (
            K::ScopeViolation,
            "SessionTooManyCalls",
            format!("the op makes {} calls; the key allows {}", x.calls, x.max),
        ),
        E::SessionMixedVenues(x) => (
            K::ScopeViolation,
            "SessionMixedVenues",
            format!(
                "the op trades on {} and {}: one venue per op under risk limits",
                x.first, x.second
            ),
        ),
        E::SessionOpCostTooHigh(x) => (
            K::FeeLimit,
            "SessionOpCostTooHigh",
            if x.cost == U256::MAX {
                format!(
                    "the op's gas fields overflow; the key's per-op cap is {}",
                    eth(x.maxOpCost)
                )
            } else {
                format!(
                    "the op may cost up to {}, over the key's per-op cap of {}",
                    eth(x.cost),
                    eth(x.maxOpCost)
                )
            },
        ),
        E::SessionFeeBudgetExceeded(x) => (
            K::FeeLimit,
            "SessionFeeBudgetExceeded",
            format!(
                "the op may cost up to {} and the key's fee budget has {} left",
                eth(x.cost),
                eth(x.feeLeft)
            ),
        ),
        E::SessionPaymasterNotAllowed(x) => (
            K::FeeLimit,
            "SessionPaymasterNotAllowed",
            format!(
                "paymaster {} is not one the owner listed for this key",
                x.paymaster
            ),
        ),
        E::SessionPaymasterOpCostTooHigh(x) => (
            K::FeeLimit,
            "SessionPaymasterOpCostTooHigh",
            if x.cost == U256::MAX {
                format!(
                    "the op's gas fields overflow; paymaster {} may be charged at most {} for one of the key's ops",
                    x.paymaster,
                    eth(x.maxOpCost)
                )
            } else {
                format!(
                    "the op may cost paymaster {} up to {}, over the {} the owner lets it be charged for one \
                     of the key's ops",
                    x.paymaster,
                    eth(x.cost),
                    eth(x.maxOpCost)
                )
            },
        ),
        E::SessionPaymasterBudgetExceeded(x) => (
            K::FeeLimit,
            "SessionPaymasterBudgetExceeded",
            format!(
                "the op may cost paymaster {} up to {} and the key's budget there has {} left",
                x.paymaster,
                eth(x.cost),
                eth(x.left)
            ),
        ),
        E::SessionValueBudgetExceeded(x) => (
            K::FeeLimit,
            "SessionValueBudgetExceeded",
            format!(
                "the op sends {} and the key's value budget has {} left",
                eth(x.value),
                eth(x.left)
            ),
        ),
        E::SessionLeverageTooHigh(x) => (
            K::RiskLimit,
            "SessionLeverageTooHigh",
            format!(
                "leverage would be {}x, over the key's {}x",
                format_units(x.leverage, 2),
                format_units(x.maxLeverage, 2)
            ),
        ),
        E::SessionPositionTooLarge(x) => (
            K::RiskLimit,
            "SessionPositionTooLarge",
            format!(
                "a position's notional would be {}, over the key's {}",
                usd(x.notional),
                usd(x.maxNotional)
            ),
        ),
        E::SessionHeadroomTooLow(x) => (
            K::RiskLimit,
            "SessionHeadroomTooLow",
            format!(
                "account value would be {}, below the {} the key's headroom over maintenance needs",
                signed_usd(x.accountValue),
                usd(x.required)
            ),
        ),
        E::SessionDrawdownBreached(x) => (
            K::RiskLimit,
            "SessionDrawdownBreached",
            format!(
                "account value {} is below the breaker's threshold {}",
                signed_usd(x.accountValue),
                usd(x.threshold)
            ),
        ),
        E::SessionProtectiveOnly(x) => (
            K::RiskLimit,
            "SessionProtectiveOnly",
            format!(
                "{}'s drawdown breaker tripped: it may only deposit, cancel and reduce until the owner re-arms it",
                x.key
            ),
        ),
        E::SessionVenueUnreadable(x) => (
            K::Other,
            "SessionVenueUnreadable",
            format!(
                "venue {} did not report a fill price or the account's risk",
                x.venue
            ),
        ),
        E::SessionNotActive(x) => (
            K::SessionUnusable,
            "SessionNotActive",
            format!(
                "{} is not an active session key (revoked or never granted)",
                x.key
            ),
        ),
        E::SessionRateLimited(x) => (
            K::SessionUnusable,
            "SessionRateLimited",
            format!("the key's rate window is full until {}", x.nextWindow),
        ),
        E::SessionExhausted(_) => (
            K::SessionUnusable,
            "SessionExhausted",
            "the key has used all its calls".into(),
        ),
        E::InvalidOpExpiry(x) => (
            K::SessionUnusable,
            "InvalidOpExpiry",
            format!(
                "op expiry {} is zero or does not fit 40 bits",
                x.opValidUntil
            ),
        ),
        E::InvalidScope(x) => (
            K::Other,
            "InvalidScope",
            format!("the scope is refused: {:?}", x.fault),
        ),
        E::InvalidPermission(x) => (
            K::Other,
            "InvalidPermission",
            format!("permission {} is refused: {:?}", x.index, x.fault),
        ),
        E::MissingPrecompile(x) => (
            K::Other,
            "MissingPrecompile",
            format!(
                "this chain has no P-256 verification precompile at {} (EIP-7951, from the Osaka hardfork): \
                 P-256 keys cannot sign here; use a secp256k1 key",
                x.0
            ),
        ),
        E::NoSuccessor(x) => (
            K::ScopeViolation,
            "NoSuccessor",
            format!(
                "the owner committed no successor for key {} under its current grant",
                x.key
            ),
        ),
        E::InvalidHeartbeatInterval(x) => (
            K::ScopeViolation,
            "InvalidHeartbeatInterval",
            format!(
                "heartbeat interval {} s is not between 1 s and 7 days",
                x.interval
            ),
        ),
        E::ExecuteError(x) => {
            let inner = Refusal::decode(&x.error);
            return Refusal {
                detail: format!("call {} of the batch: {}", x.index, inner.detail),
                ..inner
            };
        }
        other => {
            let text = format!("{other:?}");
            let name = text
                .split(['(', ' '])
                .next()
                .unwrap_or("TradingAccount")
                .to_string();
            return Refusal {
                kind: K::Other,
                error: Some(name),
                detail: text,
                entry_point: None,
            };
        }
    };
    Refusal::new(kind, name, format!("{name}: {detail}"))
}

fn venue_refusal(e: PerpVenueErrors) -> Refusal {
    use PerpVenueErrors as E;
    use RefusalKind as K;
    match e {
        E::InsufficientMargin(x) => Refusal::new(
            K::InsufficientMargin,
            "InsufficientMargin",
            format!(
                "InsufficientMargin: account value {} would be below the initial margin {} its positions and orders need",
                signed_usd(x.accountValue),
                usd(x.initialMargin)
            ),
        ),
        E::InsufficientCollateral(x) => Refusal::new(
            K::InsufficientMargin,
            "InsufficientCollateral",
            format!(
                "InsufficientCollateral: the venue holds {} of the account's margin, less than the {} asked for",
                signed_usd(x.collateral),
                usd(x.amount)
            ),
        ),
        E::LimitPriceNotMet(x) => Refusal::new(
            K::OutsideLimitPrice,
            "LimitPriceNotMet",
            format!(
                "LimitPriceNotMet: the oracle price {} does not meet the limit price {}",
                dollars(x.oraclePrice),
                dollars(x.limitPrice)
            ),
        ),
        E::LimitPriceOutsideBand(x) => Refusal::new(
            K::OutsideLimitPrice,
            "LimitPriceOutsideBand",
            format!(
                "LimitPriceOutsideBand: the limit price {} is outside the venue's band around the oracle price {}",
                dollars(x.limitPrice),
                dollars(x.oraclePrice)
            ),
        ),
        E::ZeroAmount(_) => Refusal::new(
            K::Other,
            "ZeroAmount",
            "ZeroAmount: the amount is zero; give an amount above zero".into(),
        ),
        E::ZeroSize(_) => Refusal::new(
            K::Other,
            "ZeroSize",
            "ZeroSize: the order's size is zero; give a size above zero (negative to sell)".into(),
        ),
        other => {
            let text = format!("venue: {other:?}");
            Refusal {
                kind: K::Other,
                error: Some("PerpVenue".into()),
                detail: text,
                entry_point: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{IEntryPoint, PerpVenue, SignedPriceOracle, TradingAccount};
    use alloy::sol_types::SolError;
    use alloy_primitives::{Address, I256};

    #[test]
    fn the_entry_points_own_codes_read_as_what_to_do() {
        let failed = |reason: &str| {
            Refusal::decode(
                &IEntryPoint::FailedOp {
                    opIndex: U256::ZERO,
                    reason: reason.into(),
                }
                .abi_encode(),
            )
        };
        let expired = failed("AA22 expired or not due");
        assert_eq!(expired.kind, RefusalKind::SessionUnusable);
        assert!(
            expired
                .detail
                .starts_with("EntryPoint AA22 expired or not due: ")
                && expired.detail.contains("keyscope session list"),
            "{expired}"
        );
        assert_eq!(
            failed("AA21 didn't pay prefund").kind,
            RefusalKind::InsufficientBalance
        );
        assert!(
            failed("AA25 invalid account nonce")
                .detail
                .contains("build the op again")
        );
        // A code without a sentence stays as the EntryPoint gave it.
        assert_eq!(failed("AA33 reverted").detail, "EntryPoint AA33 reverted");
    }

    fn wrapped(inner: Vec<u8>) -> Vec<u8> {
        IEntryPoint::FailedOpWithRevert {
            opIndex: U256::ZERO,
            reason: "AA23 reverted".into(),
            inner: inner.into(),
        }
        .abi_encode()
    }

    #[test]
    fn markets_are_named_as_the_deployment_lists_them() {
        let markets: std::collections::BTreeMap<String, u32> =
            [("BTC".to_string(), 0), ("ETH".to_string(), 1)].into();
        let r = Refusal::decode(&wrapped(
            TradingAccount::SessionMarketNotAllowed { marketId: 1 }.abi_encode(),
        ))
        .naming_markets(&markets);
        assert_eq!(
            r.to_string(),
            "SessionMarketNotAllowed: ETH (market 1) is not in the session's scope (AA23 reverted)"
        );
        // An id the deployment does not list stays a number; market 10 is not market 1.
        let far = Refusal::decode(&wrapped(
            TradingAccount::SessionMarketNotAllowed { marketId: 10 }.abi_encode(),
        ))
        .naming_markets(&markets);
        assert!(far.to_string().contains(": market 10 is not"), "{far}");
    }

    #[test]
    fn scope_reverts_read_as_reasons() {
        let r = Refusal::decode(&wrapped(
            TradingAccount::SessionMarketNotAllowed { marketId: 1 }.abi_encode(),
        ));
        assert_eq!(r.kind, RefusalKind::ScopeViolation);
        assert_eq!(r.error.as_deref(), Some("SessionMarketNotAllowed"));
        assert_eq!(
            r.to_string(),
            "SessionMarketNotAllowed: market 1 is not in the session's scope (AA23 reverted)"
        );
        assert_eq!(r.to_json()["reason"], "scopeViolation");
        assert!(
            r.to_json()["hint"]
                .as_str()
                .unwrap()
                .contains("session key")
        );
    }

    #[test]
    fn money_limits_read_as_fee_and_risk_reasons() {
        let fee = Refusal::decode(&wrapped(
            TradingAccount::SessionFeeBudgetExceeded {
                cost: U256::from(2_000_000_000_000_000u64),
                feeLeft: U256::from(1_000_000_000_000_000u64),
            }
            .abi_encode(),
        ));
        assert_eq!(fee.kind, RefusalKind::FeeLimit);
        assert!(fee.detail.contains("0.002 ETH"), "{}", fee.detail);
        let risk = Refusal::decode(
            &TradingAccount::SessionLeverageTooHigh {
                leverage: U256::from(612),
                maxLeverage: U256::from(300),
            }
            .abi_encode(),
        );
        assert_eq!(risk.kind, RefusalKind::RiskLimit);
        assert_eq!(
            risk.detail,
            "SessionLeverageTooHigh: leverage would be 6.12x, over the key's 3x"
        );
        assert_eq!(risk.to_json()["reason"], "riskLimit");
        let tripped = Refusal::decode(
            &TradingAccount::SessionProtectiveOnly {
                key: Address::repeat_byte(1),
            }
            .abi_encode(),
        );
        assert_eq!(tripped.kind, RefusalKind::RiskLimit);
    }

    #[test]
    fn paymaster_caps_read_in_eth_with_the_paymaster() {
        let pm = Address::repeat_byte(0x9a);
        let cap = Refusal::decode(&wrapped(
            TradingAccount::SessionPaymasterOpCostTooHigh {
                paymaster: pm,
                cost: U256::from(6_600_000_000_000_000_000u128),
                maxOpCost: U256::from(20_600_000_000_000_000u128),
            }
            .abi_encode(),
        ));
        assert_eq!(cap.kind, RefusalKind::FeeLimit);
        assert_eq!(cap.error.as_deref(), Some("SessionPaymasterOpCostTooHigh"));
        assert!(
            cap.detail.contains(&format!(
                "may cost paymaster {pm} up to 6.6 ETH, over the 0.0206 ETH"
            )),
            "{}",
            cap.detail
        );
        let budget = Refusal::decode(&wrapped(
            TradingAccount::SessionPaymasterBudgetExceeded {
                paymaster: pm,
                cost: U256::from(20_600_000_000_000_000u128),
                left: U256::from(10_000_000_000_000_000u128),
            }
            .abi_encode(),
        ));
        assert_eq!(
            budget.error.as_deref(),
            Some("SessionPaymasterBudgetExceeded")
        );
        assert!(
            budget
                .detail
                .contains("up to 0.0206 ETH and the key's budget there has 0.01 ETH left"),
            "{}",
            budget.detail
        );
        let overflow = Refusal::decode(
            &TradingAccount::SessionPaymasterOpCostTooHigh {
                paymaster: pm,
                cost: U256::MAX,
                maxOpCost: U256::ZERO,
            }
            .abi_encode(),
        );
        assert!(
            overflow.detail.contains("gas fields overflow"),
            "{}",
            overflow.detail
        );
    }

    #[test]
    fn venue_oracle_and_batch_reverts_read_as_reasons() {
        let margin = PerpVenue::InsufficientMargin {
            accountValue: I256::ONE,
            initialMargin: U256::from(5),
        }
        .abi_encode();
        assert_eq!(
            Refusal::decode(&margin).kind,
            RefusalKind::InsufficientMargin
        );
        let stale = SignedPriceOracle::StalePrice {
            marketId: 0,
            publishTime: 1,
            now_: U256::from(999),
        }
        .abi_encode();
        assert_eq!(Refusal::decode(&stale).kind, RefusalKind::StalePrice);
        let band = PerpVenue::LimitPriceOutsideBand {
            oraclePrice: U256::from(1),
            limitPrice: U256::from(2),
        }
        .abi_encode();
        let batch = TradingAccount::ExecuteError {
            index: U256::from(1),
            error: band.into(),
        }
        .abi_encode();
        let r = Refusal::decode(&batch);
        assert_eq!(r.kind, RefusalKind::OutsideLimitPrice);
        assert!(
            r.detail.starts_with("call 1 of the batch: "),
            "{}",
            r.detail
        );
        let text = alloy::sol_types::Revert::from("nope").abi_encode();
        assert_eq!(Refusal::decode(&text).detail, "nope");
    }

    #[test]
    fn amounts_read_in_the_users_units() {
        let e6 = |v: u64| U256::from(v) * U256::from(1_000_000u64);
        let e18 = |v: u64| U256::from(v) * U256::from(10u64).pow(U256::from(18));
        let r = Refusal::decode(
            &PerpVenue::InsufficientCollateral {
                collateral: I256::try_from(9_994_000_000i64).unwrap(),
                amount: e6(10_000),
            }
            .abi_encode(),
        );
        assert_eq!(
            r.detail,
            "InsufficientCollateral: the venue holds 9,994 tUSD of the account's margin, less than the 10,000 tUSD asked for"
        );
        assert!(
            r.hint().contains("at most the margin the venue holds"),
            "{}",
            r.hint()
        );
        let r = Refusal::decode(
            &PerpVenue::LimitPriceNotMet {
                oraclePrice: e18(60_000),
                limitPrice: e18(59_000),
            }
            .abi_encode(),
        );
        assert_eq!(
            r.detail,
            "LimitPriceNotMet: the oracle price $60,000 does not meet the limit price $59,000"
        );
        let r = Refusal::decode(
            &TradingAccount::SessionOrderTooLarge {
                size: e18(1),
                maxSize: e18(1) / U256::from(2),
            }
            .abi_encode(),
        );
        assert_eq!(
            r.detail,
            "SessionOrderTooLarge: size 1 is over the scope's max 0.5"
        );
        // OpenZeppelin's ERC20InsufficientBalance (0xe450d38c), not left as a custom error's hex.
        let data = crate::bindings::TestUSD::ERC20InsufficientBalance {
            sender: Address::repeat_byte(0xaa),
            balance: e6(5),
            needed: e6(20_000),
        }
        .abi_encode();
        assert_eq!(data[..4], [0xe4, 0x50, 0xd3, 0x8c]);
        let r = Refusal::decode(&data);
        assert_eq!(r.kind, RefusalKind::InsufficientBalance);
        assert!(
            r.detail.contains("holds 5 tUSD") && r.detail.contains("moves 20,000 tUSD"),
            "{}",
            r.detail
        );
        let r = Refusal::decode(&PerpVenue::ZeroAmount {}.abi_encode());
        assert_eq!(
            r.detail,
            "ZeroAmount: the amount is zero; give an amount above zero"
        );
    }
}
