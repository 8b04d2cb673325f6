//! Monte Carlo runs: deterministic for a seed on any number of threads, path 0 is the scenario itself, the
//! summary is computed from the paths it reports, and a failing path is named.

use std::path::Path;

use keyscope_sim::{
    backend::{RevmBackend, Roles},
    mc_report,
    montecarlo::{Risk, path_scenario, run_mc},
    prices::PricePath,
    runner::{liquidator_keys, run},
    scenario::Scenario,
};

const SMALL: &str = r#"
name = "mc-small"
seed = 21
steps = 10
step_seconds = 30
[[markets]]
name = "BTC"
start_price = 60000
volatility = 1.5
[price]
kind = "jumps"
probability = 0.3
percent = 6
[traders]
count = 6
collateral_min = 1000
collateral_max = 3000
leverage_min = 8
leverage_max = 18
[liquidators]
count = 1
[venue]
insurance_fund = 200
"#;

#[test]
fn the_same_paths_on_one_or_two_threads_give_the_same_report() {
    let s = Scenario::parse(SMALL).unwrap();
    let one = run_mc(&s, Path::new("."), 6, 1, |_, _| {}).unwrap();
    let two = run_mc(&s, Path::new("."), 6, 2, |_, _| {}).unwrap();
    assert_eq!(one.results, two.results);
    assert_eq!(one.bad_debt, two.bad_debt);
    assert_eq!(one.price_fan, two.price_fan);
    // The paths differ from each other (different seeds), and the summary is theirs.
    let seeds: Vec<u64> = one.results.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, (21..27).collect::<Vec<_>>());
    assert!(
        one.results
            .iter()
            .any(|r| r.liquidated_notional != one.results[0].liquidated_notional)
    );
    let notional: Vec<f64> = one.results.iter().map(|r| r.liquidated_notional).collect();
    assert_eq!(one.liquidated_notional, Risk::of(&notional));
    let exhausted = one.results.iter().filter(|r| r.insurance_exhausted).count();
    assert_eq!(one.p_insurance_exhausted, exhausted as f64 / 6.0);
    assert_eq!(one.price_fan.len(), 11, "a band per step");

    let dir = std::env::temp_dir().join(format!("keyscope-mc-{}", std::process::id()));
    let files = mc_report::write(&one, "BTC", &dir).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.summary).unwrap()).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 6);
    assert_eq!(
        std::fs::read_to_string(&files.paths)
            .unwrap()
            .lines()
            .count(),
        7
    );
    assert!(
        std::fs::read_to_string(&files.chart)
            .unwrap()
            .starts_with("<svg")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn path_zero_is_the_scenario_as_sim_run_runs_it() {
    let s = Scenario::parse(SMALL).unwrap();
    let mc = tokio::task::spawn_blocking({
        let s = s.clone();
        move || run_mc(&s, Path::new("."), 2, 2, |_, _| {}).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(path_scenario(&s, 0), s);
    let prices = PricePath::generate(&s, Path::new(".")).unwrap();
    let insurance = alloy_primitives::U256::from(200_000_000u64);
    let mut backend = RevmBackend::new(
        31_337,
        1_800_000_000,
        Roles::new(liquidator_keys(&s)),
        insurance,
    )
    .unwrap();
    let out = run(&s, &prices, &mut backend, |_, _| {}).await.unwrap();
    let p0 = &mc.results[0];
    assert_eq!(p0.liquidations, out.liquidations);
    assert_eq!(p0.liquidated_notional, out.liquidated_notional);
    assert_eq!(p0.bad_debt, out.bad_debt + out.open_shortfall);
    assert_eq!(p0.pool_loss, -out.pool_pnl);
}

#[test]
fn a_failing_path_is_named_and_no_paths_is_refused() {
    let bad =
        Scenario::parse(&SMALL.replace("start_price = 60000", "start_price = 0.001")).unwrap();
    let e = run_mc(&bad, Path::new("."), 3, 2, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("path ") && e.contains("(seed ") && e.contains("could not fill"),
        "{e}"
    );
    let s = Scenario::parse(SMALL).unwrap();
    let e = run_mc(&s, Path::new("."), 0, 1, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("paths: must be between 1"), "{e}");
}
