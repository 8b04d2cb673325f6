//! UserOperations in the JSON-RPC form ERC-7769 defines for EntryPoint v0.7 and v0.8 (fields unpacked),
//! and their conversion to and from the packed form the EntryPoint hashes and executes. The client sends
//! ops to bundlers in this form and the relayer reads them from clients in it: one implementation for both.

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};

use crate::user_op::{PackedUserOperation, pack_u128s};

/// Why a JSON op cannot be read or packed; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcOpError {
    /// Not a UserOperation object (a field is missing, mistyped or unknown).
    #[error("not a v0.8 UserOperation: {0}")]
    Malformed(String),
    /// A gas field does not fit the 128 bits the packed form gives it.
    #[error("{0} does not fit in 128 bits")]
    TooLarge(&'static str),
    /// `factoryData` without `factory`.
    #[error("factoryData is set but factory is not")]
    FactoryDataWithoutFactory,
    /// Paymaster gas limits or data without `paymaster`.
    #[error("{0} is set but paymaster is not")]
    PaymasterFieldWithoutPaymaster(&'static str),
}

/// A UserOperation in its JSON-RPC form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcUserOperation {
    /// The account the op is for.
    pub sender: Address,
    /// The op's nonce (lane key in the upper 192 bits, sequence below).
    pub nonce: U256,
    /// The factory that deploys the account in this op, if it is not deployed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory: Option<Address>,
    /// The factory's calldata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory_data: Option<Bytes>,
    /// The account's calldata.
    pub call_data: Bytes,
    /// Gas for the execution phase.
    #[serde(default)]
    pub call_gas_limit: U256,
    /// Gas for the account's validation.
    #[serde(default)]
    pub verification_gas_limit: U256,
    /// Gas paid to the bundler for overhead outside the two phases.
    #[serde(default)]
    pub pre_verification_gas: U256,
    /// The most the op pays per gas (wei).
    #[serde(default)]
    pub max_fee_per_gas: U256,
    /// The most of that which goes to the block producer (wei).
    #[serde(default)]
    pub max_priority_fee_per_gas: U256,
    /// The paymaster paying for the op, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster: Option<Address>,
    /// Gas for the paymaster's validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_verification_gas_limit: Option<U256>,
    /// Gas for the paymaster's postOp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_post_op_gas_limit: Option<U256>,
    /// The paymaster's own data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paymaster_data: Option<Bytes>,
    /// The account's signature (owner or session mode byte first).
    #[serde(default)]
    pub signature: Bytes,
}

fn u128_field(name: &'static str, v: U256) -> Result<u128, RpcOpError> {
    u128::try_from(v).map_err(|_| RpcOpError::TooLarge(name))
}

/// (high, low) halves of a packed `bytes32` gas field.
pub fn unpack(packed: B256) -> (u128, u128) {
    let v = U256::from_be_bytes(packed.0);
    let (high, low): (U256, U256) = (v >> 128usize, v & U256::from(u128::MAX));
    (high.to::<u128>(), low.to::<u128>())
}

impl RpcUserOperation {
    /// Parses a JSON value, naming the field that is wrong.
    pub fn from_json(v: serde_json::Value) -> Result<Self, RpcOpError> {
        serde_json::from_value(v).map_err(|e| RpcOpError::Malformed(e.to_string()))
    }

    /// The JSON value of this op.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an op serializes")
    }

    /// The packed form the EntryPoint hashes and executes.
    pub fn to_packed(&self) -> Result<PackedUserOperation, RpcOpError> {
        if self.factory.is_none() && self.factory_data.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(RpcOpError::FactoryDataWithoutFactory);
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
            paymasterAndData: self.paymaster_and_data()?,
            signature: self.signature.clone(),
        })
    }

    fn paymaster_and_data(&self) -> Result<Bytes, RpcOpError> {
        let Some(p) = self.paymaster else {
            for (name, set) in [
                (
                    "paymasterVerificationGasLimit",
                    self.paymaster_verification_gas_limit
                        .is_some_and(|v| !v.is_zero()),
                ),
                (
                    "paymasterPostOpGasLimit",
                    self.paymaster_post_op_gas_limit
                        .is_some_and(|v| !v.is_zero()),
                ),
                (
                    "paymasterData",
                    self.paymaster_data.as_ref().is_some_and(|d| !d.is_empty()),
                ),
            ] {
                if set {
                    return Err(RpcOpError::PaymasterFieldWithoutPaymaster(name));
                }
            }
            return Ok(Bytes::new());
        };
        let v = u128_field(
            "paymasterVerificationGasLimit",
            self.paymaster_verification_gas_limit.unwrap_or_default(),
        )?;
        let post = u128_field(
            "paymasterPostOpGasLimit",
            self.paymaster_post_op_gas_limit.unwrap_or_default(),
        )?;
        Ok([
            p.as_slice(),
            &v.to_be_bytes(),
            &post.to_be_bytes(),
            self.paymaster_data.as_ref().map_or(&[][..], |b| &b[..]),
        ]
        .concat()
        .into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let v = op.to_json();
        assert_eq!(v["verificationGasLimit"], "0x493e0");
        assert_eq!(v["callGasLimit"], "0x61a80");
        assert_eq!(v["paymasterVerificationGasLimit"], "0xc350");
        assert_eq!(v["factoryData"], "0xaa");
        assert_eq!(RpcUserOperation::from_json(v).unwrap(), op);
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let mut op = sample();
        op.call_gas_limit = U256::MAX;
        assert_eq!(
            op.to_packed().unwrap_err(),
            RpcOpError::TooLarge("callGasLimit")
        );
        let mut op = sample();
        op.factory = None;
        assert_eq!(
            op.to_packed().unwrap_err(),
            RpcOpError::FactoryDataWithoutFactory
        );
        let mut op = sample();
        op.paymaster = None;
        assert_eq!(
            op.to_packed().unwrap_err(),
            RpcOpError::PaymasterFieldWithoutPaymaster("paymasterVerificationGasLimit")
        );
        let e = RpcUserOperation::from_json(json!({ "sender": "0x12" })).unwrap_err();
        assert!(matches!(e, RpcOpError::Malformed(_)), "{e}");
    }
}
