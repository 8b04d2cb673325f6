//! Errors as clients see them: ERC-7769's JSON-RPC codes, the reference bundler's wording where it
//! has one, and — for a refusal the contracts explain — a typed reason in `data` (insufficient
//! margin, stale price, outside the limit price, outside the session's scope) instead of a raw AA code.

use alloy::sol_types::SolInterface;
use jsonrpsee::types::ErrorObjectOwned;
use keyscope_core::bindings::{
    IEntryPoint::IEntryPointErrors, PerpVenue::PerpVenueErrors,
    SignedPriceOracle::SignedPriceOracleErrors, TradingAccount::TradingAccountErrors,
};
use serde::Serialize;
use serde_json::{Value, json};

/// ERC-7769 error codes.
pub mod code {
    /// Invalid UserOperation struct or fields.
    pub const INVALID_FIELDS: i32 = -32602;
    /// Rejected by the EntryPoint's validation (account creation or validation).
    pub const SIMULATE_VALIDATION: i32 = -32500;
    /// Rejected by the paymaster's validatePaymasterUserOp.
    pub const SIMULATE_PAYMASTER_VALIDATION: i32 = -32501;
    /// Rejected by opcode / storage validation (ERC-7562).
    pub const OPCODE_VALIDATION: i32 = -32502;
    /// Out of time range: expired or expiring too soon, or not valid yet.
    pub const EXPIRES_SHORTLY: i32 = -32503;
    /// An entity (paymaster, factory, sender or session key) is throttled or banned.
    pub const REPUTATION: i32 = -32504;
    /// An entity's stake is too low for what it did.
    pub const INSUFFICIENT_STAKE: i32 = -32505;
    /// The account asked for a signature aggregator this relayer does not support.
    pub const UNSUPPORTED_AGGREGATOR: i32 = -32506;
    /// The account's (or paymaster's) signature check failed.
    pub const INVALID_SIGNATURE: i32 = -32507;
    /// The paymaster's deposit cannot cover all its pending ops.
    pub const PAYMASTER_DEPOSIT_TOO_LOW: i32 = -32508;
    /// The op would revert in its execution phase.
    pub const EXECUTION_REVERTED: i32 = -32521;
    /// JSON-RPC internal error.
    pub const INTERNAL: i32 = -32603;
    /// Method not found (debug methods when they are off).
    pub const METHOD_NOT_FOUND: i32 = -32601;
}

/// An error returned over JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn invalid_fields(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_FIELDS, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(code::INTERNAL, format!("internal error: {message}"))
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        ErrorObjectOwned::owned(e.code, e.message, e.data)
    }
}

/// Why the contracts refuse an op, read from revert data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Refusal {
    /// The venue's initial-margin check failed.
    InsufficientMargin { detail: String },
    /// The oracle's price is older than its maximum age.
    StalePrice { detail: String },
    /// The order's limit price is not met or is outside the venue's band.
    OutsideLimitPrice { detail: String },
    /// The session key's scope does not allow the op.
    ScopeViolation { detail: String },
    /// The session key is revoked, expired, rate-limited or used up.
    SessionUnusable { detail: String },
    /// Any other revert the contracts explain.
    Other { detail: String },
}

impl Refusal {
    /// The human explanation.
    pub fn detail(&self) -> &str {
        match self {
            Refusal::InsufficientMargin { detail }
            | Refusal::StalePrice { detail }
            | Refusal::OutsideLimitPrice { detail }
            | Refusal::ScopeViolation { detail }
            | Refusal::SessionUnusable { detail }
            | Refusal::Other { detail } => detail,
        }
    }

    /// What the sender should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Refusal::InsufficientMargin { .. } => "deposit margin or reduce the order size",
            Refusal::StalePrice { .. } => "wait for a fresh oracle price",
            Refusal::OutsideLimitPrice { .. } => "re-price the order nearer the oracle price",
            Refusal::ScopeViolation { .. } => {
                "the session key may not do this; ask the owner for a wider grant"
            }
            Refusal::SessionUnusable { .. } => {
                "use an active session key within its rate and lifetime"
            }
            Refusal::Other { .. } => "fix the call",
        }
    }

    /// `data` for the JSON-RPC error.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        v["hint"] = json!(self.hint());
        v
    }
}

/// Reads revert data from an op's validation or execution as a typed refusal.
pub fn refusal(data: &[u8]) -> Refusal {
    if let Ok(e) = IEntryPointErrors::abi_decode(data) {
        return match e {
            IEntryPointErrors::FailedOpWithRevert(f) => refusal(&f.inner),
            IEntryPointErrors::FailedOp(f) => Refusal::Other { detail: f.reason },
            other => Refusal::Other {
                detail: format!("{other:?}"),
            },
        };
    }
    let detail = keyscope_core::client::describe_revert(data);
    if let Ok(e) = TradingAccountErrors::abi_decode(data) {
        use TradingAccountErrors as E;
        return match e {
            E::SessionMarketNotAllowed(_)
            | E::SessionOrderTooLarge(_)
            | E::SessionNotionalTooHigh(_)
            | E::SessionReduceOnlyRequired(_)
            | E::SessionCallNotPermitted(_)
            | E::SessionSelectorNotAllowed(_)
            | E::SessionValueTooHigh(_) => Refusal::ScopeViolation { detail },
            E::SessionNotActive(_)
            | E::SessionRateLimited(_)
            | E::SessionExhausted(_)
            | E::InvalidOpExpiry(_) => Refusal::SessionUnusable { detail },
            _ => Refusal::Other { detail },
        };
    }
    if let Ok(e) = PerpVenueErrors::abi_decode(data) {
        use PerpVenueErrors as E;
        return match e {
            E::InsufficientMargin(x) => Refusal::InsufficientMargin {
                detail: format!(
                    "account value {} is below the initial margin {} the order needs",
                    x.accountValue, x.initialMargin
                ),
            },
            E::InsufficientCollateral(x) => Refusal::InsufficientMargin {
                detail: format!(
                    "collateral {} is less than the {} asked for",
                    x.collateral, x.amount
                ),
            },
            E::LimitPriceNotMet(x) => Refusal::OutsideLimitPrice {
                detail: format!(
                    "oracle price {} does not meet the limit price {}",
                    x.oraclePrice, x.limitPrice
                ),
            },
            E::LimitPriceOutsideBand(x) => Refusal::OutsideLimitPrice {
                detail: format!(
                    "limit price {} is outside the venue's band around {}",
                    x.limitPrice, x.oraclePrice
                ),
            },
            _ => Refusal::Other { detail },
        };
    }
    if let Ok(e) = SignedPriceOracleErrors::abi_decode(data) {
        return match e {
            SignedPriceOracleErrors::StalePrice(x) => Refusal::StalePrice {
                detail: format!(
                    "market {} price was published at {}, too old at {}",
                    x.marketId, x.publishTime, x.now_
                ),
            },
            _ => Refusal::Other {
                detail: format!("oracle: {e:?}"),
            },
        };
    }
    Refusal::Other { detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolError;
    use alloy_primitives::{I256, U256};
    use keyscope_core::bindings::{PerpVenue, SignedPriceOracle, TradingAccount};

    #[test]
    fn venue_and_scope_reverts_become_typed_reasons() {
        let margin = PerpVenue::InsufficientMargin {
            accountValue: I256::ONE,
            initialMargin: U256::from(5),
        }
        .abi_encode();
        assert!(matches!(
            refusal(&margin),
            Refusal::InsufficientMargin { .. }
        ));
        let stale = SignedPriceOracle::StalePrice {
            marketId: 0,
            publishTime: 1,
            now_: U256::from(999),
        }
        .abi_encode();
        assert!(matches!(refusal(&stale), Refusal::StalePrice { .. }));
        let band = PerpVenue::LimitPriceOutsideBand {
            oraclePrice: U256::from(1),
            limitPrice: U256::from(2),
        }
        .abi_encode();
        assert!(matches!(refusal(&band), Refusal::OutsideLimitPrice { .. }));
        let scope = TradingAccount::SessionMarketNotAllowed { marketId: 1 }.abi_encode();
        let wrapped = keyscope_core::bindings::IEntryPoint::FailedOpWithRevert {
            opIndex: U256::ZERO,
            reason: "AA23 reverted".into(),
            inner: scope.into(),
        }
        .abi_encode();
        let r = refusal(&wrapped);
        assert!(matches!(r, Refusal::ScopeViolation { .. }), "{r:?}");
        assert_eq!(r.to_json()["reason"], "scopeViolation");
        assert!(
            r.to_json()["hint"]
                .as_str()
                .unwrap()
                .contains("session key")
        );
    }
}
