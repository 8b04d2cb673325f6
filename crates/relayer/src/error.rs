//! Errors as clients see them: ERC-7769's JSON-RPC codes, the reference bundler's wording where it
//! has one, and — for a refusal the contracts explain — a typed reason in `data` (insufficient
//! margin, stale price, outside the limit price, outside the session's scope, over the key's fee or risk
//! limits), read by `keyscope_core::refusal` instead of a raw AA code.

use jsonrpsee::types::ErrorObjectOwned;
use serde_json::Value;

/// ERC-7769 error codes.
pub(crate) mod code {
    /// Invalid UserOperation struct or fields.
    pub(crate) const INVALID_FIELDS: i32 = -32602;
    /// Rejected by the EntryPoint's validation (account creation or validation).
    pub(crate) const SIMULATE_VALIDATION: i32 = -32500;
    /// Rejected by the paymaster's validatePaymasterUserOp.
    pub(crate) const SIMULATE_PAYMASTER_VALIDATION: i32 = -32501;
    /// Rejected by opcode / storage validation (ERC-7562).
    pub(crate) const OPCODE_VALIDATION: i32 = -32502;
    /// Out of time range: expired or expiring too soon, or not valid yet.
    pub(crate) const EXPIRES_SHORTLY: i32 = -32503;
    /// An entity (paymaster, factory, sender or session key) is throttled or banned.
    pub(crate) const REPUTATION: i32 = -32504;
    /// The account asked for a signature aggregator this relayer does not support.
    pub(crate) const UNSUPPORTED_AGGREGATOR: i32 = -32506;
    /// The account's (or paymaster's) signature check failed.
    pub(crate) const INVALID_SIGNATURE: i32 = -32507;
    /// The paymaster's deposit cannot cover all its pending ops.
    pub(crate) const PAYMASTER_DEPOSIT_TOO_LOW: i32 = -32508;
    /// The op would revert in its execution phase.
    pub(crate) const EXECUTION_REVERTED: i32 = -32521;
    /// JSON-RPC internal error.
    pub(crate) const INTERNAL: i32 = -32603;
    /// An admin method called without the admin token (not an ERC-7769 code: no standard one exists).
    pub(crate) const UNAUTHORIZED: i32 = -32001;
    /// A signed order outside its key's scope as its account holds it (Keyscope's matcher).
    pub(crate) const ORDER_OUT_OF_SCOPE: i32 = -32620;
    /// A signed order the account's free margin cannot carry (Keyscope's matcher).
    pub(crate) const ORDER_MARGIN: i32 = -32621;
    /// A signed order or cancel the book refuses: a post-only that would take, a duplicate, an order not
    /// resting or another key's (Keyscope's matcher).
    pub(crate) const ORDER_BOOK: i32 = -32622;
    /// A matcher request that is stale or was already taken (Keyscope's matcher).
    pub(crate) const REQUEST_STALE: i32 = -32623;
    /// A method the operator serves only to requests signed with an API key, called without one.
    pub(crate) const API_KEY_REQUIRED: i32 = -32630;
    /// A signed request that does not authenticate: malformed headers, an unknown key, or a signature that
    /// does not verify (wrong key, or the method, path, body, timestamp or window changed on the way).
    pub(crate) const API_KEY_INVALID: i32 = -32631;
    /// A signed request that is stale, from the future, or a replay of one already taken.
    pub(crate) const API_KEY_STALE: i32 = -32632;
    /// An API key that no longer acts for its account: revoked, expired, used from an address outside its
    /// allow-list, or its registration no longer valid under the account's ERC-1271 (its owner changed).
    pub(crate) const API_KEY_REVOKED: i32 = -32633;
    /// A request beyond its API key's permission (read-only, cancel-only) or for another account.
    pub(crate) const API_KEY_PERMISSION: i32 = -32634;
    /// An API key over its quota or banned for its behaviour; cancels pass at a floor rate.
    pub(crate) const API_KEY_THROTTLED: i32 = -32635;

    /// The code of an EntryPoint refusal, from the AA code its reason starts with ("AA25 invalid account
    /// nonce"). `aggregator`: the account named a signature aggregator (its AA24 is then an unsupported
    /// aggregator, not a bad signature).
    pub(crate) fn of_entry_point_reason(reason: &str, aggregator: bool) -> i32 {
        match reason.get(..4).unwrap_or_default() {
            "AA22" | "AA32" => EXPIRES_SHORTLY,
            "AA24" if aggregator => UNSUPPORTED_AGGREGATOR,
            "AA24" | "AA34" => INVALID_SIGNATURE,
            "AA31" => PAYMASTER_DEPOSIT_TOO_LOW,
            a if a.starts_with("AA3") => SIMULATE_PAYMASTER_VALIDATION,
            _ => SIMULATE_VALIDATION,
        }
    }
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

    /// A refusal for a passing reason on the relayer's side (its store or node did not answer): nothing was
    /// kept, and the client should send the same request again in a moment (`data.retry`, which the CLI and
    /// the SDK follow with back-off). `message` is for the client; `detail` — which may name hosts, ports
    /// and the store — goes to the log only.
    pub fn retry_later(message: &str, detail: impl std::fmt::Display) -> Self {
        tracing::warn!("refused for a passing reason: {message}: {detail}");
        Self::new(
            code::INTERNAL,
            format!("{message}; nothing was kept: send it again in a moment"),
        )
        .with_data(serde_json::json!({ "retry": true }))
    }

    /// How the by-hash methods answer for an op the relayer accepted and then dropped (`null` would leave
    /// a standard client polling for a receipt that never comes): the code a refusal at the door would
    /// have carried — from the EntryPoint reason the drop names, if it names one — and in `data` the
    /// status and the reason.
    pub fn dropped(hash: alloy_primitives::B256, reason: Option<&str>) -> Self {
        let reason = reason.unwrap_or("no reason recorded");
        let entry_point_reason = reason.match_indices("AA").find_map(|(i, _)| {
            let r = &reason[i..];
            r.as_bytes()
                .get(2..4)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
                .then_some(r)
        });
        let code = match entry_point_reason {
            Some(r) => code::of_entry_point_reason(r, false),
            None if reason.starts_with("expired") => code::EXPIRES_SHORTLY,
            None => code::SIMULATE_VALIDATION,
        };
        Self::new(
            code,
            format!("user operation {hash} was dropped and will not be mined: {reason}"),
        )
        .with_data(serde_json::json!({
            "status": "dropped",
            "userOpHash": hash,
            "reason": reason,
        }))
    }
}

impl From<keyscope_core::rpc_op::RpcOpError> for RpcError {
    fn from(e: keyscope_core::rpc_op::RpcOpError) -> Self {
        Self::invalid_fields(e.to_string())
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        ErrorObjectOwned::owned(e.code, e.message, e.data)
    }
}

pub(crate) use keyscope_core::refusal::Refusal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_op_reads_as_the_refusal_it_names() {
        let hash = alloy_primitives::B256::repeat_byte(7);
        let e = RpcError::dropped(hash, Some("op 2 refused: AA26 over verificationGasLimit"));
        assert_eq!(e.code, code::SIMULATE_VALIDATION);
        assert!(
            e.message.contains("AA26 over verificationGasLimit"),
            "{}",
            e.message
        );
        let data = e.data.unwrap();
        assert_eq!(data["status"], "dropped");
        assert_eq!(
            data["reason"],
            "op 2 refused: AA26 over verificationGasLimit"
        );
        let e = RpcError::dropped(hash, Some("no longer valid: AA34 signature error"));
        assert_eq!(e.code, code::INVALID_SIGNATURE);
        let e = RpcError::dropped(hash, Some("expired: valid until 5"));
        assert_eq!(e.code, code::EXPIRES_SHORTLY);
        // "AAVE" is no AA code.
        let e = RpcError::dropped(hash, Some("replaced by an AAVE order"));
        assert_eq!(e.code, code::SIMULATE_VALIDATION);
        assert_eq!(
            RpcError::dropped(hash, None).data.unwrap()["reason"],
            "no reason recorded"
        );
    }
}
