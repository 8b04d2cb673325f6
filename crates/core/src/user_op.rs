//! ERC-4337 v0.8 UserOperations and their hash.
//!
//! EntryPoint v0.8 hashes a `PackedUserOperation` as EIP-712 typed data in the domain
//! ("ERC4337", "1", chain id, EntryPoint address). Computing it here lets signers work offline;
//! `tests/entry_point.rs` checks it against `EntryPoint.getUserOpHash` on anvil.

use alloy::sol_types::{SolValue, eip712_domain};
use alloy_primitives::{Address, B256, U256, address, b256, keccak256};

pub use crate::bindings::IEntryPoint::PackedUserOperation;

/// Where EntryPoint v0.8 lives on every chain (CREATE2 with the canonical salt).
pub const ENTRY_POINT_V08: Address = address!("4337084D9E255Ff0702461CF8895CE9E3b5Ff108");

/// keccak256 of the `PackedUserOperation(...)` EIP-712 type string of EntryPoint v0.8.
pub const PACKED_USEROP_TYPEHASH: B256 =
    b256!("29a0bca4af4be3421398da00295e58e6d7de38cb492214754cb6a47507dd6f8e");

/// Errors from hashing a UserOperation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserOpError {
    /// EIP-7702 ops (initCode starting with 0x7702) hash the sender's delegate; not supported here.
    #[error("EIP-7702 UserOperations (initCode starting with 0x7702) are not supported")]
    Eip7702Unsupported,
}

/// The userOpHash EntryPoint v0.8 at `entry_point` on `chain_id` computes for `op`.
pub fn user_op_hash(
    op: &PackedUserOperation,
    entry_point: Address,
    chain_id: u64,
) -> Result<B256, UserOpError> {
    if op.initCode.len() >= 2 && op.initCode[..2] == [0x77, 0x02] {
        return Err(UserOpError::Eip7702Unsupported);
    }
    let struct_hash = keccak256(
        (
            PACKED_USEROP_TYPEHASH,
            op.sender,
            op.nonce,
            keccak256(&op.initCode),
            keccak256(&op.callData),
            op.accountGasLimits,
            op.preVerificationGas,
            op.gasFees,
            keccak256(&op.paymasterAndData),
        )
            .abi_encode(),
    );
    let domain = eip712_domain! {
        name: "ERC4337",
        version: "1",
        chain_id: chain_id,
        verifying_contract: entry_point,
    };
    let mut buf = [0u8; 66];
    buf[..2].copy_from_slice(&[0x19, 0x01]);
    buf[2..34].copy_from_slice(domain.separator().as_slice());
    buf[34..].copy_from_slice(struct_hash.as_slice());
    Ok(keccak256(buf))
}

/// Gas limits of one op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpGas {
    /// Gas for the validation phase (`verificationGasLimit`).
    pub verification: u128,
    /// Gas for the execution phase (`callGasLimit`).
    pub call: u128,
    /// Gas the bundler is paid for overhead (`preVerificationGas`).
    pub pre_verification: u128,
}

impl OpGas {
    /// Limits that cover Keyscope's ops with room to spare (a first op that deploys the account needs
    /// the larger verification limit).
    pub fn default_for(deploys: bool) -> Self {
        Self {
            verification: if deploys { 600_000 } else { 300_000 },
            call: 400_000,
            pre_verification: 60_000,
        }
    }
}

/// An unsigned op (no paymaster): the fields a signer hashes, with the signature left empty.
pub fn unsigned(
    sender: Address,
    nonce: U256,
    call_data: alloy_primitives::Bytes,
    init_code: alloy_primitives::Bytes,
    gas: OpGas,
    max_priority_fee: u128,
    max_fee: u128,
) -> PackedUserOperation {
    PackedUserOperation {
        sender,
        nonce,
        initCode: init_code,
        callData: call_data,
        accountGasLimits: pack_u128s(gas.verification, gas.call),
        preVerificationGas: U256::from(gas.pre_verification),
        gasFees: pack_u128s(max_priority_fee, max_fee),
        paymasterAndData: Default::default(),
        signature: Default::default(),
    }
}

/// Packs two 128-bit values as v0.8 does (`accountGasLimits`, `gasFees`): `high << 128 | low`.
pub fn pack_u128s(high: u128, low: u128) -> B256 {
    B256::from((U256::from(high) << 128) | U256::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typehash_matches_type_string() {
        assert_eq!(
            keccak256(
                "PackedUserOperation(address sender,uint256 nonce,bytes initCode,bytes callData,bytes32 accountGasLimits,uint256 preVerificationGas,bytes32 gasFees,bytes paymasterAndData)"
            ),
            PACKED_USEROP_TYPEHASH
        );
    }

    #[test]
    fn gas_fields_pack_high_then_low() {
        let packed = pack_u128s(1, 2);
        assert_eq!(packed.0[15], 1);
        assert_eq!(packed.0[31], 2);
    }

    #[test]
    fn eip7702_ops_are_refused() {
        let op = PackedUserOperation {
            initCode: vec![0x77, 0x02, 0, 0].into(),
            ..Default::default()
        };
        assert_eq!(
            user_op_hash(&op, ENTRY_POINT_V08, 1),
            Err(UserOpError::Eip7702Unsupported)
        );
    }
}
