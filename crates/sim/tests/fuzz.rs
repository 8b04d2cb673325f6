//! Fuzz-style checks of the two readers of user input, the scenario parser and the CSV price reader: a
//! seeded random loop over mutated inputs (the same inputs every run). Whatever the input, the answer is
//! a scenario (whose price path then generates or is refused) or a typed error naming what is wrong —
//! never a panic.

use std::path::Path;

use keyscope_sim::{
    prices::PricePath,
    scenario::{Scenario, ScenarioError},
};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

const BASE: &str = r#"name = "fuzz"
seed = 7
steps = 40
step_seconds = 30
correlation = [[1, 0.3], [0.3, 1]]
[[markets]]
name = "BTC"
start_price = 60000
volatility = 0.6
drift = 0.1
[[markets]]
name = "ETH"
start_price = 3000
volatility = 0.8
imf = 0.06
mmf = 0.04
[price]
kind = "jumps"
probability = 0.2
percent = 5
common_probability = 0.1
[traders]
count = 3
collateral_min = 1000
collateral_max = 2000
leverage_min = 2
leverage_max = 10
add_every_steps = 4
[margin_calls]
answer_probability = 0.5
delay_steps = 2
answer = "reduce"
fraction = 0.5
[liquidators]
count = 2
gas_cost_usd = 1
[venue]
insurance_fund = 5000
[[funding]]
market = "BTC"
from_step = 3
rate_per_hour = 0.00005
[[gaps]]
step = 10
percent = -20
[oracle]
stale_from_step = 5
stale_steps = 3
[impact]
model = "sqrt"
depth_usd = 1000000
coefficient = 0.5
[monte_carlo]
book = "fixed"
target_error = 1000
max_paths = 100
"#;

/// Values that have broken parsers: non-finite, negative, huge, past u32 and i64, empty, odd types.
const NASTY: &[&str] = &[
    "inf",
    "-inf",
    "nan",
    "-1",
    "0",
    "1e30",
    "1e308",
    "-1e308",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "-9223372036854775808",
    "0.0000001",
    "-99.99999",
    "\"\"",
    "\"x\"",
    "true",
    "[]",
    "{}",
    "1_000",
    "0x10",
    "99999999999",
];

/// `text` with one random mutation: a value swapped for a nasty one, a line dropped or doubled, a
/// character replaced, or a kind / market / answer renamed.
fn mutate(rng: &mut ChaCha8Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = rng.gen_range(0..lines.len());
    match rng.gen_range(0..6) {
        0 | 1 => {
            if let Some((key, _)) = lines[i].split_once(" = ") {
                lines[i] = format!("{key} = {}", NASTY.choose(rng).unwrap());
            }
        }
        2 => {
            lines.remove(i);
        }
        3 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        4 => {
            let mut bytes: Vec<char> = lines[i].chars().collect();
            if !bytes.is_empty() {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = *[' ', '=', '"', '[', ']', '9', '-', '.', '\n', 'é']
                    .choose(rng)
                    .unwrap();
            }
            lines[i] = bytes.into_iter().collect();
        }
        _ => {
            let swap = [
                ("\"jumps\"", "\"crash\""),
                ("\"jumps\"", "\"gbm\""),
                ("\"jumps\"", "\"csv\""),
                ("\"BTC\"", "\"SOL\""),
                ("\"ETH\"", "\"BTC\""),
                ("\"reduce\"", "\"add_collateral\""),
            ];
            let (from, to) = swap.choose(rng).unwrap();
            lines[i] = lines[i].replace(from, to);
        }
    }
    lines.join("\n")
}

/// An error is a typed variant with something to say.
fn assert_typed(e: &ScenarioError) {
    match e {
        ScenarioError::Invalid { field, message } => {
            assert!(!field.is_empty() && !message.is_empty(), "{e:?}")
        }
        ScenarioError::Parse { message, .. } => assert!(!message.is_empty(), "{e:?}"),
        ScenarioError::Csv { file, message, .. } => {
            assert!(!file.is_empty() && !message.is_empty(), "{e:?}")
        }
        ScenarioError::Read { .. } => {}
    }
}

#[test]
fn mutated_scenarios_parse_or_are_refused_and_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xF022);
    let (mut parsed, mut refused, mut paths) = (0, 0, 0);
    for _ in 0..4_000 {
        let mut text = BASE.to_string();
        for _ in 0..rng.gen_range(1..4) {
            text = mutate(&mut rng, &text);
        }
        match Scenario::parse(&text) {
            Ok(s) => {
                parsed += 1;
                // A scenario that parses gives a path or a typed refusal (a CSV file that is not there, a
                // price the path cannot carry), never a panic.
                match PricePath::generate(&s, Path::new("/nonexistent")) {
                    Ok(p) => {
                        paths += 1;
                        assert_eq!(p.prices.len(), s.steps as usize + 1);
                    }
                    Err(e) => assert_typed(&e),
                }
            }
            Err(e) => {
                refused += 1;
                assert_typed(&e);
            }
        }
    }
    // The loop reached both sides (a fuzz that only ever refused would prove little).
    assert!(
        parsed > 200 && refused > 200 && paths > 200,
        "{parsed} {refused} {paths}"
    );
}

#[test]
fn random_csv_files_are_read_or_refused_and_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xC5F);
    let markets = ["BTC".to_string(), "ETH".to_string()];
    let cells: Vec<String> = NASTY
        .iter()
        .map(|s| s.to_string())
        .chain(["60000", "3000.5", "0.01", "1e12", " 42 ", "BTC", ""].map(String::from))
        .collect();
    let (mut read, mut refused) = (0, 0);
    for _ in 0..4_000 {
        let steps = rng.gen_range(0..4u32);
        let mut csv = String::new();
        let header = match rng.gen_range(0..4) {
            0 => "ETH,BTC",
            1 => "BTC",
            2 => "",
            _ => "BTC,ETH",
        };
        csv.push_str(header);
        csv.push('\n');
        for _ in 0..rng.gen_range(0..6) {
            let row: Vec<String> = (0..rng.gen_range(0..4))
                .map(|_| match rng.gen_bool(0.8) {
                    true => format!("{:.2}", rng.gen_range(0.01..1e6)),
                    false => cells.choose(&mut rng).unwrap().clone(),
                })
                .collect();
            csv.push_str(&row.join(if rng.gen_bool(0.9) { "," } else { ";" }));
            csv.push_str(if rng.gen_bool(0.9) { "\n" } else { "\r\n" });
        }
        match PricePath::parse_csv(&csv, "fuzz.csv", &markets, steps) {
            Ok(p) => {
                read += 1;
                assert_eq!(p.prices.len(), steps as usize + 1);
            }
            Err(e) => {
                refused += 1;
                assert_typed(&e);
            }
        }
    }
    assert!(read > 20 && refused > 200, "{read} {refused}");
}
