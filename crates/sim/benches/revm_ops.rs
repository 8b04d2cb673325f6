//! Signed session-key order ops executed per second on the in-process revm chain, signature checks
//! included: each iteration builds an op, hashes and signs it, and runs `handleOps` to commit.
//! `cargo bench -p keyscope-sim --bench revm_ops` (figures in the README).

use std::hint::black_box;

use alloy_primitives::I256;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyscope_core::units::parse_units;
use keyscope_sim::fixture::Fixture;

fn bench(c: &mut Criterion) {
    let mut f = Fixture::new(31_337, 1_800_000_000, parse_units("1000000", 6).unwrap()).unwrap();
    f.chain.advance(1);
    f.publish(0, parse_units("60000", 18).unwrap()).unwrap();
    let (buy, sell) = (
        I256::try_from(1_000_000_000_000_000u64).unwrap(),
        -I256::try_from(1_000_000_000_000_000u64).unwrap(),
    );
    let (up, down) = (
        parse_units("60500", 18).unwrap(),
        parse_units("59500", 18).unwrap(),
    );
    let mut seq = 0u64;
    let mut group = c.benchmark_group("revm");
    group.throughput(Throughput::Elements(1));
    group.bench_function("session order op: sign + handleOps", |b| {
        b.iter(|| {
            // Alternate buys and sells so the position (and its margin) stays small.
            let (size, limit) = if seq % 2 == 0 {
                (buy, up)
            } else {
                (sell, down)
            };
            let op = f.session_order(seq, 0, size, limit).unwrap();
            seq += 1;
            black_box(f.handle(op).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
