//! Scenarios end to end: a crash produces margin calls and liquidations on the revm backend, and the
//! same scenario and seed end in the same state on revm and on anvil.

use std::path::Path;

use keyscope_core::devnet::{Devnet, repo_root};
use keyscope_sim::{
    backend::{AnvilBackend, Backend, RevmBackend, Roles},
    prices::PricePath,
    runner::{liquidator_keys, run},
    scenario::Scenario,
};

const SMALL_CRASH: &str = r#"
name = "small-crash"
seed = 11
steps = 12
step_seconds = 30
[[markets]]
name = "BTC"
start_price = 60000
volatility = 0.4
[[markets]]
name = "ETH"
start_price = 3000
volatility = 0.5
imf = 0.06
mmf = 0.04
liquidation_penalty = 0.015
[price]
kind = "crash"
percent = 25
start_step = 2
over_steps = 6
[traders]
count = 8
collateral_min = 1000
collateral_max = 5000
leverage_min = 4
leverage_max = 15
long_fraction = 0.75
[margin_calls]
answer_probability = 0.5
delay_steps = 1
answer = "add_collateral"
fraction = 0.5
[liquidators]
count = 2
[venue]
insurance_fund = 20000
"#;

fn insurance(s: &Scenario) -> alloy_primitives::U256 {
    alloy_primitives::U256::from((s.venue.insurance_fund * 1e6) as u128)
}

#[tokio::test]
async fn crash_makes_margin_calls_and_liquidations_on_revm() {
    let s = Scenario::parse(SMALL_CRASH).unwrap();
    let path = PricePath::generate(&s, Path::new(".")).unwrap();
    let mut backend = RevmBackend::new(
        31_337,
        1_800_000_000,
        Roles::new(liquidator_keys(&s)),
        insurance(&s),
    )
    .unwrap();
    let out = run(&s, &path, &mut backend, |_, _| {}).await.unwrap();
    // The scenario's ETH risk parameters replaced the deployment's.
    let eth = backend
        .view(
            backend.addresses().venue,
            &keyscope_core::bindings::PerpVenue::marketCall { marketId: 1 },
        )
        .await
        .unwrap();
    assert_eq!(
        (eth.imf, eth.mmf, eth.liquidationPenalty),
        (
            60_000_000_000_000_000,
            40_000_000_000_000_000,
            15_000_000_000_000_000
        )
    );
    assert_eq!(out.series.len(), 13);
    assert_eq!(out.insurance_fund_start, 20_000.0);
    assert!(out.margin_calls > 0, "{out:#?}");
    assert!(out.liquidations > 0, "{out:#?}");
    assert!(out.liquidated_notional > 0.0);
    assert_eq!(out.ops_failed, 0, "every trader op went through");
    // 8 accounts opened, 8 opening orders, plus answers to margin calls.
    assert!(out.ops_executed >= 16);
    // Accounts liquidated in full hold no positions.
    let flat = out
        .accounts
        .iter()
        .filter(|a| a.positions.iter().all(|(_, s)| s == "0"))
        .count();
    assert!(flat > 0);

    // The report: a JSON summary, a CSV row per step and a chart.
    let dir = std::env::temp_dir().join(format!("keyscope-report-{}", std::process::id()));
    let files = keyscope_sim::report::write(&out, &path.markets, &dir).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.summary).unwrap()).unwrap();
    assert_eq!(summary["liquidations"], out.liquidations);
    assert_eq!(summary["accounts"].as_array().unwrap().len(), 8);
    let csv = std::fs::read_to_string(&files.series).unwrap();
    assert_eq!(csv.lines().count(), 14, "a header and one row per step");
    assert!(csv.starts_with("step,time,price_BTC,price_ETH,healthy"));
    let svg = std::fs::read_to_string(&files.chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("liquidations"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn same_scenario_same_state_on_revm_and_anvil() {
    let s = Scenario::parse(SMALL_CRASH).unwrap();
    let path = PricePath::generate(&s, Path::new(".")).unwrap();
    let mut revm = RevmBackend::new(
        41_010,
        1_800_000_000,
        Roles::new(liquidator_keys(&s)),
        insurance(&s),
    )
    .unwrap();
    let on_revm = run(&s, &path, &mut revm, |_, _| {}).await.unwrap();

    let devnet = Devnet::start_with(
        &repo_root(),
        0,
        41_010,
        alloy_primitives::U256::from(20_000_000_000u64),
    )
    .await
    .unwrap();
    let mut anvil = AnvilBackend::new(devnet, Roles::new(liquidator_keys(&s)));
    let on_anvil = run(&s, &path, &mut anvil, |_, _| {}).await.unwrap();

    assert!(
        on_revm.liquidations > 0,
        "the comparison covers liquidations"
    );
    assert_eq!(
        on_revm.accounts, on_anvil.accounts,
        "every account's collateral and positions match"
    );
    assert_eq!(on_revm.margin_calls, on_anvil.margin_calls);
    assert_eq!(on_revm.liquidations, on_anvil.liquidations);
    assert_eq!(on_revm.bad_debt, on_anvil.bad_debt);
    assert_eq!(on_revm.insurance_fund_end, on_anvil.insurance_fund_end);
}

/// The shipped breaker scenario: keys that average down through a slide trip their drawdown breakers, the
/// adds after a trip are stopped, and nothing is lost to bad debt. With the breaker off (the same file, no
/// `key_max_drawdown`) every add through the same slide goes through — the breaker is what stops them.
#[tokio::test]
async fn breaker_scenario_trips_the_keys_of_traders_who_average_down() {
    let file = repo_root().join("scenarios/breaker-drawdown.toml");
    let run_it = |s: Scenario| async move {
        let path = PricePath::generate(&s, &repo_root()).unwrap();
        let mut backend = RevmBackend::new(
            31_337,
            1_800_000_000,
            Roles::new(liquidator_keys(&s)),
            insurance(&s),
        )
        .unwrap();
        run(&s, &path, &mut backend, |_, _| {}).await.unwrap()
    };
    let s = Scenario::load(&file).unwrap();
    let out = run_it(s.clone()).await;
    assert!(out.breaker_trips > 0, "{out:#?}");
    assert!(out.breaker_trips <= s.traders.count);
    assert!(
        out.adds_stopped >= out.breaker_trips,
        "each trip undoes an add"
    );
    assert!(
        out.adds > out.adds_stopped,
        "adds before the drawdown go through"
    );

    let mut off = s.clone();
    off.traders.key_max_drawdown = None;
    let unbraked = run_it(off).await;
    assert_eq!(unbraked.breaker_trips, 0);
    assert!(
        unbraked.adds_stopped < out.adds_stopped,
        "without the breaker fewer adds are stopped: {} vs {}",
        unbraked.adds_stopped,
        out.adds_stopped
    );
}
