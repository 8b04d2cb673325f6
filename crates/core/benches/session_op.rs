//! Build, hash and sign one session UserOp, as a strategy engine does for every order.
//! `cargo bench -p keyscope-core --bench session_op` (figures in the README).

use std::hint::black_box;

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, I256, U256, address};
use criterion::{Criterion, criterion_group, criterion_main};
use keyscope_core::{
    ENTRY_POINT_V08, PackedUserOperation, SessionLane,
    ops::{place_order, session_call_data},
    session::sign_session_op_sync,
    user_op::{OpGas, unsigned},
    user_op_hash,
};

const ACCOUNT: Address = address!("303da809Fe62d597296B33c4B63D3954c745D493");
const VENUE: Address = address!("E11685FE470bd39c7fB26fDB7e3145900Ee8d12f");

fn build_hash_sign(key: &PrivateKeySigner, seq: u64) -> PackedUserOperation {
    let order = place_order(
        VENUE,
        0,
        I256::try_from(100_000_000_000_000_000u64).unwrap(),
        U256::from(60_500u64) * U256::from(10u64).pow(U256::from(18)),
        false,
    );
    let nonce = SessionLane::new(key.address(), 0).nonce(seq);
    let mut op = unsigned(
        ACCOUNT,
        nonce,
        session_call_data(key.address(), vec![order]),
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
