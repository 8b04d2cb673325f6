//! Monte Carlo runs: deterministic for a seed on any number of threads, path 0 is the scenario itself, the
//! summary is computed from the paths it reports, and a failing path is named.

use std::path::Path;

use keyscope_sim::{
    backend::{RevmBackend, Roles},
    mc_report,
    montecarlo::{PathResult, Risk, path_prices, path_scenario, run_mc},
    prices::PricePath,
    runner::{liquidator_keys, run, run_from, set_up},
    scenario::{BookMode, Scenario},
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
    // Every VaR and ES carries its interval, in mc.json and in the text.
    let ci = &json["peak_loss"]["ci"]["var_99"];
    assert_eq!(ci[0].as_f64(), Some(one.peak_loss.ci.var_99[0]));
    assert!(
        one.bad_debt.ci.es_95[0] <= one.bad_debt.es_95
            && one.bad_debt.es_95 <= one.bad_debt.ci.es_95[1]
    );
    assert_eq!(
        mc_report::risk_json(&one.bad_debt)["es99Ci"][1].as_f64(),
        Some(one.bad_debt.ci.es_99[1])
    );
    let text = mc_report::text(&one);
    assert!(
        text.contains("fixed book") && text.contains("peak loss") && text.contains("bootstrap"),
        "{text}"
    );
    assert_eq!(
        text.matches(" – $").count(),
        20,
        "an interval on each VaR and ES: {text}"
    );
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

/// One trader, 1,000 USD at 10x long BTC from 60,000; keepers never liquidate (their gas costs more than any
/// reward), so what the trader loses is the account's value below zero, priced by hand from each path.
const ONE_TRADER: &str = r#"
name = "one-trader"
seed = 5
steps = 3
step_seconds = 30
[[markets]]
name = "BTC"
start_price = 60000
volatility = 0
[price]
kind = "jumps"
probability = 0.5
percent = 20
[traders]
count = 1
collateral_min = 1000
collateral_max = 1000
leverage_min = 10
leverage_max = 10
long_fraction = 1
[liquidators]
count = 1
gas_cost_usd = 10000
"#;

#[test]
fn a_fixed_book_loses_what_its_positions_lose_on_each_path_by_hand() {
    let s = Scenario::parse(ONE_TRADER).unwrap();
    let mc = run_mc(&s, Path::new("."), 12, 2, |_, _| {}).unwrap();
    // By hand: 10,000 notional at 60,000 is 1/6 BTC; the opening pays the 0.05 % taker fee (5 USD) from
    // the collateral; value = 995 + (P - 60,000) / 6, and the loss is what it stands below zero.
    let mut ends = Vec::new();
    for r in &mc.results {
        let prices = PricePath::generate(&path_scenario(&s, r.path), Path::new(".")).unwrap();
        let loss = |step: usize| {
            let p = keyscope_sim::prices::wad_to_usd(prices.prices[step][0]);
            (-(995.0 + (p - 60_000.0) / 6.0)).max(0.0)
        };
        let end = loss(3);
        let peak = (0..=3).map(loss).fold(0.0, f64::max);
        assert!((r.bad_debt - end).abs() < 0.02, "{r:?}: by hand {end}");
        assert!((r.peak_loss - peak).abs() < 0.02, "{r:?}: by hand {peak}");
        assert_eq!(r.book_seed, 5, "every path holds the scenario's book");
        ends.push(r.bad_debt);
    }
    assert_eq!(mc.bad_debt, Risk::of(&ends));
    assert!(
        ends.iter().any(|l| *l > 0.0) && ends.contains(&0.0),
        "the jumps split the paths: {ends:?}"
    );
}

#[test]
fn with_no_volatility_a_fixed_book_has_no_spread_and_a_random_book_does() {
    // Prices the same on every path (no volatility, a crash); only the book can differ.
    let s = Scenario::parse(
        &SMALL.replace("volatility = 1.5", "volatility = 0").replace(
            "kind = \"jumps\"\nprobability = 0.3\npercent = 6",
            "kind = \"crash\"\npercent = 30\nstart_step = 2\nover_steps = 4",
        ),
    )
    .unwrap();
    assert_eq!(s.monte_carlo.book, BookMode::Fixed, "the default");
    let fixed = run_mc(&s, Path::new("."), 6, 2, |_, _| {}).unwrap();
    let losses: Vec<f64> = fixed.results.iter().map(|r| r.bad_debt).collect();
    assert!(losses[0] > 0.0, "the crash costs the book: {losses:?}");
    assert!(losses.iter().all(|l| *l == losses[0]), "{losses:?}");
    assert_eq!(fixed.bad_debt.max, fixed.bad_debt.mean);

    let mut random = s.clone();
    random.monte_carlo.book = BookMode::Random;
    let random = run_mc(&random, Path::new("."), 6, 2, |_, _| {}).unwrap();
    let spread: Vec<f64> = random.results.iter().map(|r| r.bad_debt).collect();
    assert!(spread.iter().any(|l| *l != spread[0]), "{spread:?}");
    assert_eq!(random.results[3].book_seed, 24);
    // Path 0 is the scenario itself either way.
    assert_eq!(random.results[0], fixed.results[0]);
}

#[test]
fn the_book_option_is_read_from_the_scenario() {
    let s = Scenario::parse(&format!("{SMALL}\n[monte_carlo]\nbook = \"random\"\n")).unwrap();
    assert_eq!(s.monte_carlo.book, BookMode::Random);
    let e = Scenario::parse(&format!("{SMALL}\n[monte_carlo]\nbook = \"mixed\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("mixed") && e.contains("fixed"), "{e}");
}

#[test]
fn a_target_error_adds_paths_until_the_intervals_are_that_narrow() {
    let mut s = Scenario::parse(ONE_TRADER).unwrap();
    // Loose enough for four paths: none added.
    s.monte_carlo.target_error = Some(1e9);
    let r = run_mc(&s, Path::new("."), 4, 2, |_, _| {}).unwrap();
    assert_eq!((r.paths, r.target_error), (4, Some(1e9)));
    // Tight: paths double (4, 8, 16, ...) until the widest half-width is under it, or the cap.
    s.monte_carlo.target_error = Some(600.0);
    s.monte_carlo.max_paths = 64;
    let r = run_mc(&s, Path::new("."), 4, 2, |_, _| {}).unwrap();
    assert!(
        r.paths > 4 && r.paths <= 64 && r.paths.is_power_of_two(),
        "{}",
        r.paths
    );
    assert!(
        r.achieved_error <= 600.0 || r.paths == 64,
        "{}",
        r.achieved_error
    );
    // The paths run are the paths of asking for that many outright.
    let mut plain = s.clone();
    plain.monte_carlo.target_error = None;
    let direct = run_mc(&plain, Path::new("."), r.paths, 1, |_, _| {}).unwrap();
    assert_eq!(direct.results, r.results);
    assert_eq!(direct.bad_debt, r.bad_debt);
    // Impossible: stops at the cap, saying how far it got.
    s.monte_carlo.target_error = Some(1e-9);
    s.monte_carlo.max_paths = 10;
    let r = run_mc(&s, Path::new("."), 4, 2, |_, _| {}).unwrap();
    assert_eq!(r.paths, 10);
    assert!(r.achieved_error > 1e-9);
    // Refused by field.
    for (line, field) in [
        ("target_error = -1", "monte_carlo.target_error"),
        ("target_error = nan", "monte_carlo.target_error"),
        ("max_paths = 0", "monte_carlo.max_paths"),
    ] {
        let e = Scenario::parse(&format!("{ONE_TRADER}\n[monte_carlo]\n{line}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(field), "{e}");
    }
}

#[test]
fn a_csv_path_is_the_file_on_path_zero_and_a_block_bootstrap_after() {
    let dir = std::env::temp_dir().join(format!("keyscope-mc-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rows: Vec<String> = (0..=10)
        .map(|t| format!("{}", 60_000 + 500 * (t % 3) - 300 * t))
        .collect();
    std::fs::write(dir.join("p.csv"), format!("BTC\n{}\n", rows.join("\n"))).unwrap();
    let s = Scenario::parse(&SMALL.replace(
        "kind = \"jumps\"\nprobability = 0.3\npercent = 6",
        "kind = \"csv\"\npath = \"p.csv\"\nblock_steps = 3",
    ))
    .unwrap();
    let file = PricePath::generate(&s, &dir).unwrap();
    assert_eq!(
        keyscope_sim::montecarlo::path_prices(&s, &dir, 0).unwrap(),
        file
    );
    let one = keyscope_sim::montecarlo::path_prices(&s, &dir, 1).unwrap();
    let two = keyscope_sim::montecarlo::path_prices(&s, &dir, 2).unwrap();
    assert_ne!(
        one, file,
        "a CSV is no longer the same path on every Monte Carlo path"
    );
    assert_ne!(one, two);
    assert_eq!(
        one,
        keyscope_sim::montecarlo::path_prices(&s, &dir, 1).unwrap()
    );
    // And the paths run: the report's prices are the bootstrap's.
    let mc = run_mc(&s, &dir, 3, 2, |_, _| {}).unwrap();
    assert_eq!(
        mc.results[1].prices[10],
        keyscope_sim::prices::wad_to_usd(one.prices[10][0])
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fixed book's Monte Carlo opens the book once per thread and runs each path on a fork of that chain.
/// At the shipped crash scenario's size (60 traders, 120 steps, two markets), every path equals a run of
/// the same path on a fresh chain: every reported figure and the per-step price and insurance series.
#[tokio::test]
async fn each_fixed_book_path_run_on_a_fork_equals_a_fresh_run_of_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let s = Scenario::load(dir.join("crash-30pct.toml")).unwrap();
    assert_eq!(s.monte_carlo.book, BookMode::Fixed);
    let paths = 3;
    let mc = tokio::task::spawn_blocking({
        let (s, dir) = (s.clone(), dir.clone());
        move || run_mc(&s, &dir, paths, 1, |_, _| {}).unwrap()
    })
    .await
    .unwrap();
    for i in 0..paths {
        let prices = path_prices(&s, &dir, i).unwrap();
        let mut backend = RevmBackend::new(
            31_337,
            1_800_000_000,
            Roles::new(liquidator_keys(&s)),
            alloy_primitives::U256::from(50_000_000_000u64),
        )
        .unwrap();
        let out = run(&s, &prices, &mut backend, |_, _| {}).await.unwrap();
        let fresh = PathResult::from_outcome(i, path_scenario(&s, i).seed, &out);
        assert_eq!(mc.results[i as usize], fresh, "path {i}");
        assert_eq!(mc.results[i as usize].prices, fresh.prices, "path {i}");
        assert_eq!(
            mc.results[i as usize].insurance, fresh.insurance,
            "path {i}"
        );
    }
    // The paths differ (the fork is not one path replayed), and the scenario liquidates on them.
    assert_ne!(mc.results[0].prices, mc.results[1].prices);
    assert!(mc.results.iter().all(|r| r.liquidations > 0));
}

/// A set-up made at one path's start prices refuses a path that starts elsewhere, and the chain it was
/// made on is left as it was.
#[tokio::test]
async fn a_set_up_refuses_a_path_that_starts_at_other_prices() {
    let s = Scenario::parse(SMALL).unwrap();
    let prices = PricePath::generate(&s, Path::new(".")).unwrap();
    let mut backend = RevmBackend::new(
        31_337,
        1_800_000_000,
        Roles::new(liquidator_keys(&s)),
        alloy_primitives::U256::from(200_000_000u64),
    )
    .unwrap();
    let setup = set_up(&s, &prices, &mut backend).await.unwrap();
    let moved =
        Scenario::parse(&SMALL.replace("start_price = 60000", "start_price = 61000")).unwrap();
    let other = PricePath::generate(&moved, Path::new(".")).unwrap();
    let mut fork = backend.fork();
    let err = run_from(&s, &other, &mut fork, setup.clone(), |_, _| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("does not start at the prices"),
        "{err}"
    );
    // The same set-up still runs the path it was made for, on another fork, as a fresh run does.
    let mut fork = backend.fork();
    let from_setup = run_from(&s, &prices, &mut fork, setup, |_, _| {})
        .await
        .unwrap();
    let mut fresh_backend = RevmBackend::new(
        31_337,
        1_800_000_000,
        Roles::new(liquidator_keys(&s)),
        alloy_primitives::U256::from(200_000_000u64),
    )
    .unwrap();
    let fresh = run(&s, &prices, &mut fresh_backend, |_, _| {})
        .await
        .unwrap();
    assert_eq!(from_setup.series, fresh.series);
    assert_eq!(from_setup.accounts, fresh.accounts);
}
