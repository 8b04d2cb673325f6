//! Build, hash and sign one session UserOp, as a strategy engine does for every order.
//! `cargo bench -p keyscope-core --bench session_op` (figures in the README).

use std::hint::black_box;

use alloy::{signers::local::PrivateKeySigner, sol_types::SolCall};
use alloy_primitives::{Address, I256, U256, address};
use criterion::{Criterion, criterion_group, criterion_main};
use keyscope_core::{
    ENTRY_POINT_V08, PackedUserOperation, SessionLane,
    bindings::{PerpVenue, TradingAccount},
    session::sign_session_op_sync,
    user_op::{OpGas, unsigned},
    user_op_hash,
};

const ACCOUNT: Address = address!("303da809Fe62d597296B33c4B63D3954c745D493");
const VENUE: Address = address!("06fc7e14FFA0FEbd1A04A55dafF24BF156750237");

fn build_hash_sign(key: &PrivateKeySigner, seq: u64) -> PackedUserOperation {
    let order = PerpVenue::placeOrderCall {
        marketId: 0,
        sizeDelta: I256::try_from(100_000_000_000_000_000u64).unwrap(),
        limitPrice: U256::from(60_500u64) * U256::from(10u64).pow(U256::from(18)),
        reduceOnly: false,
    };
    let call = TradingAccount::executeCall {
        target: VENUE,
        value: U256::ZERO,
        data: order.abi_encode().into(),
    };
    let nonce = SessionLane::new(key.address(), 0).nonce(seq);
    let mut op = unsigned(
        ACCOUNT,
        nonce,
        call.abi_encode().into(),
        Default::default(),
        OpGas::default_for(false),
        1_000_000_000,
        10_000_000_000,
    );
    let hash = user_op_hash(&op, ENTRY_POINT_V08, 31_337).unwrap();
    op.signature = sign_session_op_sync(key, hash, 1_800_000_060, 1).unwrap();
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
