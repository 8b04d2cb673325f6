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
    // Peak loss is the worst step of the run, read from its series; the last step's open loss is the end's.
    let (mut worst_step, mut worst) = (0, 0.0);
    for r in &out.series {
        if r.bad_debt + r.open_shortfall > worst {
            (worst_step, worst) = (r.step, r.bad_debt + r.open_shortfall);
        }
    }
    assert!(worst > 0.0, "the small scenario loses money somewhere");
    assert_eq!((p0.peak_loss, p0.peak_loss_step), (worst, worst_step));
    assert_eq!(
        out.series.last().unwrap().open_shortfall,
        out.open_shortfall
    );
    assert!(p0.peak_loss >= p0.bad_debt);
}

#[tokio::test]
async fn a_crash_that_recovers_shows_its_loss_at_the_bottom_not_at_the_end() {
    // Longs at 8-18x; the price gaps 40 % down at step 3 and back up 80 % at step 6; keepers never
    // liquidate (their gas costs more than any reward), so the loss stays open and then heals.
    let s = Scenario::parse(
        &(SMALL
            .replace("volatility = 1.5", "volatility = 0")
            .replace(
                "kind = \"jumps\"\nprobability = 0.3\npercent = 6",
                "kind = \"gbm\"",
            )
            .replace("leverage_max = 18", "leverage_max = 18\nlong_fraction = 1")
            .replace("count = 1\n", "count = 1\ngas_cost_usd = 10000\n")
            + "[[gaps]]\nstep = 3\npercent = -40\n[[gaps]]\nstep = 6\npercent = 80\n"),
    )
    .unwrap();
    let mc = tokio::task::spawn_blocking({
        let s = s.clone();
        move || run_mc(&s, Path::new("."), 2, 1, |_, _| {}).unwrap()
    })
    .await
    .unwrap();
    let p0 = &mc.results[0];
    assert_eq!(p0.peak_loss_step, 3, "{p0:?}");
    assert!(p0.peak_loss > 1_000.0, "{p0:?}");
    assert_eq!(
        (p0.bad_debt, p0.liquidations),
        (0.0, 0),
        "healed by the end: {p0:?}"
    );
    let peaks: Vec<f64> = mc.results.iter().map(|r| r.peak_loss).collect();
    assert_eq!(mc.peak_loss, Risk::of(&peaks));
    assert_eq!(mc.bad_debt.max, 0.0);
}

#[test]
fn a_failing_path_is_named_and_no_paths_is_refused() {
    let bad = Scenario::parse(&SMALL.replace("start_price = 60000", "start_price = 0.05")).unwrap();
    let e = run_mc(&bad, Path::new("."), 3, 2, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("path ") && e.contains("(seed ") && e.contains("could not fill"),
        "{e}"
    );
    // A path that falls below a cent is refused by the field that took it there, naming the path.
    let cent = Scenario::parse(
        &SMALL
            .replace("start_price = 60000", "start_price = 0.01")
            .replace("volatility = 1.5", "volatility = 10"),
    )
    .unwrap();
    let e = run_mc(&cent, Path::new("."), 1, 1, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("path 0 (seed 21): markets[0].volatility") && e.contains("below one cent"),
        "{e}"
    );
    let s = Scenario::parse(SMALL).unwrap();
    let e = run_mc(&s, Path::new("."), 0, 1, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("paths: must be between 1"), "{e}");
}
