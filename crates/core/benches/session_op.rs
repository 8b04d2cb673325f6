//! Build, hash and sign one session UserOp, as a strategy engine does for every order.
//! `cargo bench -p keyscope-core --bench session_op` (figures in the README).

use std::hint::black_box;

use alloy::{signers::local::PrivateKeySigner, sol_types::SolCall};
use alloy_primitives::{Address, I256, U256, address};
use criterion::{Criterion, criterion_group, criterion_main};
use keyscope_core::{
    ENTRY_POINT_V08, PackedUserOperation, SessionLane,
    bindings::{PerpVenue, TradingAccount},
    session::{grant_binding, session_op_digest, session_signature},
    user_op::pack_u128s,
    user_op_hash,
};

const ACCOUNT: Address = address!("303da809Fe62d597296B33c4B63D3954c745D493");
const VENUE: Address = address!("06fc7e14FFA0FEbd1A04A55dafF24BF156750237");

fn build_hash_sign(key: &PrivateKeySigner, seq: u64) -> PackedUserOperation {
    use alloy::signers::SignerSync;
    let order = PerpVenue::placeOrderCall {
        marketId: 0,
        sizeDelta: I256::try_from(100_000_000_000_000_000u64).unwrap(),
        limitPrice: U256::from(60_500u64) * U256::from(10u64).pow(U256::from(18)),
        reduceOnly: false,
    };
    let call = TradingAccount::executeCall { target: VENUE, value: U256::ZERO, data: order.abi_encode().into() };
    let mut op = PackedUserOperation {
        sender: ACCOUNT,
        nonce: SessionLane::new(key.address(), 0).nonce(seq),
        initCode: Default::default(),
        callData: call.abi_encode().into(),
        accountGasLimits: pack_u128s(300_000, 400_000),
        preVerificationGas: U256::from(60_000),
        gasFees: pack_u128s(1_000_000_000, 10_000_000_000),
        paymasterAndData: Default::default(),
        signature: Default::default(),
    };
    let hash = user_op_hash(&op, ENTRY_POINT_V08, 31_337).unwrap();
    let until = 1_800_000_060u64;
    let sig = key.sign_hash_sync(&session_op_digest(hash, until, grant_binding(1))).unwrap();
    op.signature = session_signature(until, &sig).unwrap();
    op
}

fn bench(c: &mut Criterion) {
    let key = PrivateKeySigner::random();
    let mut seq = 0u64;
    c.bench_function("session order op: build + userOpHash + sign", |b| {
        b.iter(|| {
            seq += 1;
            black_box(build_hash_sign(&key, black_box(seq)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
