//! Writes the safe primes the tests use (`tests/data/primes.json`: one pair per member of a 3-member
//! quorum) and prints how long each pair took — the time a production member spends on its own before
//! its first auxiliary info. `cargo run --release -p keyscope-threshold --example test_primes [-- OUT]`.

use std::time::Instant;

use cggmp21::PregeneratedPrimes;

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "crates/threshold/tests/data/primes.json".into());
    let pairs: Vec<PregeneratedPrimes> = (0..3)
        .map(|i| {
            let t = Instant::now();
            let p = PregeneratedPrimes::generate(&mut rand::rngs::OsRng);
            println!(
                "member {i}: two 1536-bit safe primes in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            p
        })
        .collect();
    std::fs::write(&out, serde_json::to_string_pretty(&pairs).unwrap()).unwrap();
    println!("written to {out}");
}
