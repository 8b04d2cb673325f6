//! Errors as clients see them: ERC-7769's JSON-RPC codes, the reference bundler's wording where it
//! has one, and — for a refusal the contracts explain — a typed reason in `data` (insufficient
//! margin, stale price, outside the limit price, outside the session's scope, over the key's fee or risk
//! limits), read by `keyscope_core::refusal` instead of a raw AA code.

use jsonrpsee::types::ErrorObjectOwned;
use serde_json::Value;

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
    /// An admin method called without the admin token (not an ERC-7769 code: no standard one exists).
    pub const UNAUTHORIZED: i32 = -32001;
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

pub use keyscope_core::refusal::Refusal;
