//! UserOperations as clients send them (the v0.7/v0.8 JSON-RPC form, fields unpacked) and as the
//! EntryPoint takes them (packed), plus what the relayer reads out of an op before simulating it: its
//! nonce lane, its session key, and whether it adds margin or reduces risk (which bundles first).

use alloy_primitives::{Address, B256, Bytes, U256};
use keyscope_core::user_op::{PackedUserOperation, pack_u128s};
use serde::{Deserialize, Serialize};

use crate::error::RpcError;

/// A UserOperation in the JSON-RPC form ERC-7769 defines for EntryPoint v0.7 and v0.8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcUserOperation {
    pub sender: Address,
    pub nonce: U256,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory_data: Option<Bytes>,
    pub call_data: Bytes,
    #[serde(default)]
    pub call_gas_limit: U256,
    #[serde(default)]
    pub verification_gas_limit: U256,
    #[serde(default)]
    pub pre_verification_gas: U256,
    #[serde(default)]
    pub max_fee_per_gas: U256,
    #[serde(default)]
    pub max_priority_fee_per_gas: U256,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_verification_gas_limit: Option<U256>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_post_op_gas_limit: Option<U256>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_data: Option<Bytes>,
    #[serde(default)]
    pub signature: Bytes,
}

fn u128_field(name: &str, v: U256) -> Result<u128, RpcError> {
    u128::try_from(v)
        .map_err(|_| RpcError::invalid_fields(format!("{name} does not fit in 128 bits")))
}

impl RpcUserOperation {
    /// Parses a JSON value, naming the field that is wrong.
    pub fn from_json(v: serde_json::Value) -> Result<Self, RpcError> {
        serde_json::from_value(v)
            .map_err(|e| RpcError::invalid_fields(format!("not a v0.8 UserOperation: {e}")))
    }

    /// The packed form the EntryPoint hashes and executes.
    pub fn to_packed(&self) -> Result<PackedUserOperation, RpcError> {
        if self.factory.is_none() && self.factory_data.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(RpcError::invalid_fields(
                "factoryData is set but factory is not",
            ));
        }
        let init_code: Bytes = match self.factory {
            Some(f) => [
                f.as_slice(),
                self.factory_data.as_ref().map_or(&[][..], |b| &b[..]),
            ]
            .concat()
            .into(),
            None => Bytes::new(),
        };
        let paymaster_and_data: Bytes = match self.paymaster {
            Some(p) => {
                let v = u128_field(
                    "paymasterVerificationGasLimit",
                    self.paymaster_verification_gas_limit.unwrap_or_default(),
                )?;
                let post = u128_field(
                    "paymasterPostOpGasLimit",
                    self.paymaster_post_op_gas_limit.unwrap_or_default(),
                )?;
                [
                    p.as_slice(),
                    &v.to_be_bytes(),
                    &post.to_be_bytes(),
                    self.paymaster_data.as_ref().map_or(&[][..], |b| &b[..]),
                ]
                .concat()
                .into()
            }
            None => Bytes::new(),
        };
        Ok(PackedUserOperation {
            sender: self.sender,
            nonce: self.nonce,
            initCode: init_code,
            callData: self.call_data.clone(),
            accountGasLimits: pack_u128s(
                u128_field("verificationGasLimit", self.verification_gas_limit)?,
                u128_field("callGasLimit", self.call_gas_limit)?,
            ),
            preVerificationGas: self.pre_verification_gas,
            gasFees: pack_u128s(
                u128_field("maxPriorityFeePerGas", self.max_priority_fee_per_gas)?,
                u128_field("maxFeePerGas", self.max_fee_per_gas)?,
            ),
            paymasterAndData: paymaster_and_data,
            signature: self.signature.clone(),
        })
    }

    /// The JSON-RPC form of a packed op.
    pub fn from_packed(op: &PackedUserOperation) -> Self {
        let (verification, call) = unpack(op.accountGasLimits);
        let (priority, max_fee) = unpack(op.gasFees);
        let (factory, factory_data) = if op.initCode.len() >= 20 {
            (
                Some(Address::from_slice(&op.initCode[..20])),
                Some(Bytes::copy_from_slice(&op.initCode[20..])),
            )
        } else {
            (None, None)
        };
        let pm = &op.paymasterAndData;
        let (paymaster, pm_v, pm_post, pm_data) = if pm.len() >= 52 {
            (
                Some(Address::from_slice(&pm[..20])),
                Some(U256::from_be_slice(&pm[20..36])),
                Some(U256::from_be_slice(&pm[36..52])),
                Some(Bytes::copy_from_slice(&pm[52..])),
            )
        } else {
            (None, None, None, None)
        };
        Self {
            sender: op.sender,
            nonce: op.nonce,
            factory,
            factory_data,
            call_data: op.callData.clone(),
            call_gas_limit: U256::from(call),
            verification_gas_limit: U256::from(verification),
            pre_verification_gas: op.preVerificationGas,
            max_fee_per_gas: U256::from(max_fee),
            max_priority_fee_per_gas: U256::from(priority),
            paymaster,
            paymaster_verification_gas_limit: pm_v,
            paymaster_post_op_gas_limit: pm_post,
            paymaster_data: pm_data,
            signature: op.signature.clone(),
        }
    }
}

/// (high, low) halves of a packed `bytes32` gas field.
pub fn unpack(packed: B256) -> (u128, u128) {
    let v = U256::from_be_bytes(packed.0);
    let (high, low): (U256, U256) = (v >> 128usize, v & U256::from(u128::MAX));
    (high.to::<u128>(), low.to::<u128>())
}

use keyscope_core::ops::AccountCalls;
pub use keyscope_core::ops::OpKind;

/// Classifies `call_data` of a TradingAccount op (owner or session): protective when every call to
/// `venue` is a deposit, a reduce-only order or a cancel.
pub fn classify(call_data: &[u8], venue: Option<Address>) -> OpKind {
    match (venue, AccountCalls::decode(call_data)) {
        (Some(venue), Ok(calls)) => calls.kind(venue),
        _ => OpKind::Other,
    }
}

/// True when every call of `call_data` is the account trading or moving margin on `venue` for
/// itself (orders, cancels, deposits, withdrawals): such an op changes no other account's venue
/// health. Anything else (an oracle update, a liquidation, a call elsewhere) may.
pub fn moves_only_own_health(call_data: &[u8], venue: Option<Address>) -> bool {
    match (venue, AccountCalls::decode(call_data)) {
        (Some(venue), Ok(calls)) => calls.moves_only_own_health(venue),
        _ => false,
    }
}

/// The 192-bit nonce key and 64-bit sequence of an op's nonce.
pub fn nonce_parts(nonce: U256) -> (U256, u64) {
    (nonce >> 64, (nonce & U256::from(u64::MAX)).to::<u64>())
}

/// The EntryPoint v0.8 storage slot of `nonceSequenceNumber[sender][key]` (the mapping is its second
/// slot, after StakeManager's deposits): the one slot a new nonce lane touches for the first time.
pub fn nonce_slot(sender: Address, key: U256) -> U256 {
    use alloy::sol_types::SolValue;
    let outer = alloy_primitives::keccak256((sender, U256::from(1)).abi_encode());
    U256::from_be_bytes(alloy_primitives::keccak256((key, outer).abi_encode()).0)
}

/// The session key a TradingAccount reads from the nonce key (its upper 160 bits), if any.
pub fn session_key_of(nonce: U256) -> Option<Address> {
    let key: U256 = nonce >> 96;
    (!key.is_zero()).then(|| Address::from_word(B256::from(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyscope_core::nonce::SessionLane;

    fn sample() -> RpcUserOperation {
        RpcUserOperation {
            sender: Address::repeat_byte(1),
            nonce: U256::from(7),
            factory: Some(Address::repeat_byte(2)),
            factory_data: Some(Bytes::from(vec![0xaa])),
            call_data: Bytes::from(vec![1, 2, 3]),
            call_gas_limit: U256::from(400_000),
            verification_gas_limit: U256::from(300_000),
            pre_verification_gas: U256::from(60_000),
            max_fee_per_gas: U256::from(2_000_000_000u64),
            max_priority_fee_per_gas: U256::from(1_000_000_000u64),
            paymaster: Some(Address::repeat_byte(3)),
            paymaster_verification_gas_limit: Some(U256::from(50_000)),
            paymaster_post_op_gas_limit: Some(U256::from(10_000)),
            paymaster_data: Some(Bytes::from(vec![0xbb, 0xcc])),
            signature: Bytes::from(vec![9; 65]),
        }
    }

    #[test]
    fn packs_and_unpacks_losslessly() {
        let op = sample();
        let packed = op.to_packed().unwrap();
        assert_eq!(packed.initCode.len(), 21);
        assert_eq!(packed.paymasterAndData.len(), 54);
        assert_eq!(RpcUserOperation::from_packed(&packed), op);
    }

    #[test]
    fn oversized_gas_fields_are_refused_by_name() {
        let mut op = sample();
        op.call_gas_limit = U256::MAX;
        let err = op.to_packed().unwrap_err();
        assert_eq!(err.code, -32602);
        assert!(err.message.contains("callGasLimit"), "{}", err.message);
    }

    #[test]
    fn factory_data_without_factory_is_refused() {
        let mut op = sample();
        op.factory = None;
        assert_eq!(op.to_packed().unwrap_err().code, -32602);
    }

    #[test]
    fn session_key_is_read_from_the_nonce_key() {
        let key = Address::repeat_byte(0x42);
        let nonce = U256::from(SessionLane::new(key, 3).nonce_key()) << 64 | U256::from(5);
        assert_eq!(session_key_of(nonce), Some(key));
        assert_eq!(nonce_parts(nonce).1, 5);
        assert_eq!(session_key_of(U256::from(5)), None);
    }
}
