//! Monte Carlo: one scenario over many seeded price paths, on revm, on every core. Path `i` moves prices with
//! seed `seed + i` (path 0 is the scenario itself, as `keyscope sim run` runs it). Its book — the traders'
//! draws, keys and answers — is the scenario's own on every path (`book = "fixed"`, the default: what this
//! book loses across market moves) or drawn anew with seed `seed + i` (`book = "random"`: what a book like
//! it loses, trader draw and market mixed). Each path's losses are collected and the distribution is summarised as a
//! risk desk reads one: value-at-risk and expected shortfall at 95 and 99 %, liquidations-at-risk, the
//! probability that the insurance fund runs out. The same scenario and path count give the same report on
//! any number of threads.

use std::{
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Instant,
};

use alloy_primitives::U256;
use serde::Serialize;

use crate::{
    backend::{BackendError, RevmBackend, Roles},
    prices::PricePath,
    runner::{Outcome, RunError, SetUp, liquidator_keys, run, run_from, set_up},
    scenario::{BookMode, PriceSpec, Scenario, ScenarioError},
};

/// Errors from a Monte Carlo run.
#[derive(Debug, thiserror::Error)]
pub enum McError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A path's run failed.
    #[error("path {path} (seed {seed}): {source}")]
    Path {
        /// The path's index.
        path: u32,
        /// The path's price seed.
        seed: u64,
        /// Why its run failed.
        source: RunError,
    },
    /// A path's prices could not be drawn.
    #[error("path {path} (seed {seed}): {source}")]
    PathPrices {
        /// The path's index.
        path: u32,
        /// The path's price seed.
        seed: u64,
        /// Why its prices could not be drawn.
        source: ScenarioError,
    },
    /// The chain backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The number of paths asked for is out of range, or a path did not finish.
    #[error("paths: {0}")]
    Paths(String),
}

/// The most paths one run takes.
pub const MAX_PATHS: u32 = 1_000_000;

/// What one path ended with, USD unless said otherwise.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathResult {
    /// The path's index.
    pub path: u32,
    /// The seed of the path's prices, and of its book (the scenario's on a fixed book).
    pub seed: u64,
    /// The seed its book was drawn with: the scenario's on a fixed book, the path's own on a random one.
    pub book_seed: u64,
    /// Booked bad debt plus what accounts still open end below zero.
    pub bad_debt: f64,
    /// The bad debt booked by the venue alone.
    pub bad_debt_booked: f64,
    /// The loss at its worst over the run (booked bad debt + open shortfall at the step it was largest),
    /// and that step: a crash that recovers shows here, not in `bad_debt`.
    pub peak_loss: f64,
    /// The step of the peak loss.
    pub peak_loss_step: u32,
    /// Insurance fund at the start less its lowest point.
    pub insurance_drawdown: f64,
    /// The insurance fund reached zero.
    pub insurance_exhausted: bool,
    /// How many liquidations went through.
    pub liquidations: u32,
    /// The notional closed by liquidations.
    pub liquidated_notional: f64,
    /// The pool's loss, marked to market (its negative PnL; a profit is a negative loss).
    pub pool_loss: f64,
    /// The share of the winners' open profit the socialised loss would take (a harness model of
    /// auto-deleveraging; see `Outcome::adl_haircut`).
    pub adl_haircut: f64,
    /// How many margin calls were raised.
    pub margin_calls: u32,
    /// The first market's price each step (for the fan chart).
    #[serde(skip)]
    pub prices: Vec<f64>,
    /// The insurance fund each step (for the fan chart).
    #[serde(skip)]
    pub insurance: Vec<f64>,
}

impl PathResult {
    /// Path `path`'s result from its run, whose prices were drawn with `price_seed`.
    pub fn from_outcome(path: u32, price_seed: u64, out: &Outcome) -> Self {
        Self {
            path,
            seed: price_seed,
            book_seed: out.seed,
            bad_debt: out.bad_debt + out.open_shortfall,
            bad_debt_booked: out.bad_debt,
            peak_loss: out.peak_loss,
            peak_loss_step: out.peak_loss_step,
            insurance_drawdown: out.insurance_fund_start - out.insurance_fund_min,
            insurance_exhausted: out.insurance_fund_min <= 0.0,
            liquidations: out.liquidations,
            liquidated_notional: out.liquidated_notional,
            pool_loss: -out.pool_pnl,
            adl_haircut: out.adl_haircut,
            margin_calls: out.margin_calls,
            prices: out.series.iter().map(|r| r.prices[0]).collect(),
            insurance: out.series.iter().map(|r| r.insurance_fund).collect(),
        }
    }
}

/// A loss distribution summarised.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Risk {
    /// The mean loss over the paths.
    pub mean: f64,
    /// The largest loss of any path.
    pub max: f64,
    /// Value-at-risk: the loss not exceeded on 95 % (99 %) of paths.
    pub var_95: f64,
    /// Value-at-risk at 99 %.
    pub var_99: f64,
    /// Expected shortfall: the mean loss on the worst 5 % (1 %) of paths (at least one path).
    pub es_95: f64,
    /// Expected shortfall at 99 %.
    pub es_99: f64,
    /// The sampling error of each: a 95 % interval, [low, high].
    pub ci: Intervals,
}

/// 95 % intervals of VaR and ES: a percentile bootstrap (the paths resampled with replacement, seeded, so
/// the same losses always give the same intervals). With few paths the 99 % tail is a path or two and its
/// interval is wide — that is the point of showing it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Intervals {
    /// The interval of the 95 % VaR.
    pub var_95: [f64; 2],
    /// The interval of the 99 % VaR.
    pub var_99: [f64; 2],
    /// The interval of the 95 % ES.
    pub es_95: [f64; 2],
    /// The interval of the 99 % ES.
    pub es_99: [f64; 2],
}

impl Intervals {
    /// The widest half-width of the four.
    pub fn max_half_width(&self) -> f64 {
        [self.var_95, self.var_99, self.es_95, self.es_99]
            .iter()
            .map(|[lo, hi]| (hi - lo) / 2.0)
            .fold(0.0, f64::max)
    }
}

/// Resamples the bootstrap draws: 1,000, fewer past 20,000 paths (at least 200) so that summarising a
/// million paths stays seconds, not minutes.
fn resamples(n: usize) -> usize {
    (20_000_000 / n.max(1)).clamp(200, 1_000)
}

/// The seed of the bootstrap's draws (fixed: the intervals are a function of the losses alone).
const BOOTSTRAP_SEED: u64 = 0xB007_5724;

/// VaR 95/99 and ES 95/99 of ascending `v` (not empty).
fn tail(v: &[f64]) -> [f64; 4] {
    let n = v.len();
    let var = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    let es = |q: f64| {
        let tail = (((1.0 - q) * n as f64).round() as usize).max(1);
        v[n - tail..].iter().sum::<f64>() / tail as f64
    };
    [var(0.95), var(0.99), es(0.95), es(0.99)]
}

/// 95 % percentile-bootstrap intervals of [`tail`] over `draws` resamples of ascending `v`.
pub fn bootstrap(v: &[f64], draws: usize, seed: u64) -> Intervals {
    use rand::{Rng, SeedableRng};
    let n = v.len();
    if n == 0 || draws == 0 {
        return Intervals::default();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut stats: [Vec<f64>; 4] = Default::default();
    let mut sample = vec![0.0; n];
    for _ in 0..draws {
        for x in sample.iter_mut() {
            *x = v[rng.gen_range(0..n)];
        }
        sample.sort_by(f64::total_cmp);
        for (k, t) in tail(&sample).into_iter().enumerate() {
            stats[k].push(t);
        }
    }
    let ci = |s: &mut Vec<f64>| {
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)];
        [at(0.025), at(0.975)]
    };
    let [a, b, c, d] = &mut stats;
    Intervals {
        var_95: ci(a),
        var_99: ci(b),
        es_95: ci(c),
        es_99: ci(d),
    }
}

impl Risk {
    /// The summary of `losses` (any order; empty gives zeros), with bootstrap intervals.
    pub fn of(losses: &[f64]) -> Self {
        let mut v: Vec<f64> = losses.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self {
                mean: 0.0,
                max: 0.0,
                var_95: 0.0,
                var_99: 0.0,
                es_95: 0.0,
                es_99: 0.0,
                ci: Intervals::default(),
            };
        }
        let [var_95, var_99, es_95, es_99] = tail(&v);
        Self {
            mean: v.iter().sum::<f64>() / n as f64,
            max: v[n - 1],
            var_95,
            var_99,
            es_95,
            es_99,
            ci: bootstrap(&v, resamples(n), BOOTSTRAP_SEED),
        }
    }
}

/// Percentile bands of a per-step series across paths: 5, 25, 50, 75, 95 %.
pub type Fan = Vec<[f64; 5]>;

/// The whole Monte Carlo run.
#[derive(Debug, Clone, Serialize)]
pub struct McReport {
    /// The scenario's name.
    pub scenario: String,
    /// The scenario's seed: path `i` runs with seed `base_seed + i`.
    pub base_seed: u64,
    /// The book the paths share (fixed) or draw anew (random).
    pub book: BookMode,
    /// How many paths ran.
    pub paths: u32,
    /// Steps per path.
    pub steps: u32,
    /// Chain seconds per step.
    pub step_seconds: u32,
    /// Traders per path.
    pub traders: u32,
    /// Worker threads used.
    pub threads: usize,
    /// Total bad debt (booked + open) at the end.
    pub bad_debt: Risk,
    /// The loss at its worst step of each path (booked + open).
    pub peak_loss: Risk,
    /// The insurance fund's drawdown's distribution.
    pub insurance_drawdown: Risk,
    /// Liquidations-at-risk: liquidated notional's distribution.
    pub liquidated_notional: Risk,
    /// The pool's marked-to-market loss's distribution.
    pub pool_loss: Risk,
    /// The share of paths on which the insurance fund reached zero.
    pub p_insurance_exhausted: f64,
    /// The share of paths that end with bad debt.
    pub p_bad_debt: f64,
    /// The probability that winners are deleveraged (a haircut above zero), and the haircut's mean and
    /// 99th percentile across paths (harness model).
    pub p_adl: f64,
    /// The ADL haircut's mean across paths.
    pub adl_haircut_mean: f64,
    /// The ADL haircut's 99th percentile across paths.
    pub adl_haircut_99: f64,
    /// The half-width asked for (`monte_carlo.target_error`), and the widest half-width of the 95 %
    /// intervals of bad debt's and peak loss's VaR and ES reached, USD.
    pub target_error: Option<f64>,
    /// The widest half-width reached, USD.
    pub achieved_error: f64,
    /// Wall-clock time of the run, seconds.
    pub wall_seconds: f64,
    /// Paths run per wall-clock second.
    pub paths_per_second: f64,
    /// The first market's price bands per step (for the fan chart).
    #[serde(skip)]
    pub price_fan: Fan,
    /// The insurance fund's bands per step (for the fan chart).
    #[serde(skip)]
    pub insurance_fan: Fan,
    /// Each path's result.
    pub results: Vec<PathResult>,
}

/// The scenario whose seed draws path `i`'s prices.
pub fn path_scenario(base: &Scenario, i: u32) -> Scenario {
    let mut s = base.clone();
    s.seed = base.seed.wrapping_add(i as u64);
    s
}

/// Path `i`'s prices: drawn with [`path_scenario`]'s seed; from a CSV file, the file itself on path 0 and a
/// block bootstrap of its returns (seeded the same way) on every other path.
pub fn path_prices(base: &Scenario, base_dir: &Path, i: u32) -> Result<PricePath, ScenarioError> {
    let s = path_scenario(base, i);
    let prices = PricePath::generate(&s, base_dir)?;
    match &base.price {
        PriceSpec::Csv { block_steps, .. } if i > 0 => prices.block_bootstrap(*block_steps, s.seed),
        _ => Ok(prices),
    }
}

/// The scenario whose seed draws path `i`'s book: the base itself on a fixed book.
pub fn book_scenario(base: &Scenario, i: u32) -> Scenario {
    match base.monte_carlo.book {
        BookMode::Fixed => base.clone(),
        BookMode::Random => path_scenario(base, i),
    }
}

/// A thread's set-up of a fixed book, its chain kept to fork each path from.
type SharedSetup = (RevmBackend, SetUp);

/// A fresh revm chain with Keyscope deployed for `s` (a fixed start time: the same path gives the same run
/// wherever and whenever it runs).
fn fresh_backend(s: &Scenario) -> Result<RevmBackend, McError> {
    let insurance = U256::from((s.venue.insurance_fund * 1e6).round() as u128);
    Ok(RevmBackend::new(
        31_337,
        1_800_000_000,
        Roles::new(liquidator_keys(s)),
        insurance,
    )?)
}

/// Runs path `i`. On a fixed book the set-up (deployment, accounts opened at step 0's prices) is the same on
/// every path that starts at the same prices: it is made once per thread in `shared` and each path runs on
/// a fork of its chain, with the same result as a fresh chain (tested). A random book opens afresh.
async fn run_path(
    base: &Scenario,
    base_dir: &Path,
    i: u32,
    shared: &mut Option<SharedSetup>,
) -> Result<PathResult, McError> {
    let price_seed = path_scenario(base, i).seed;
    let s = book_scenario(base, i);
    let path_err = |source: RunError| McError::Path {
        path: i,
        seed: price_seed,
        source,
    };
    let prices = path_prices(base, base_dir, i).map_err(|source| McError::PathPrices {
        path: i,
        seed: price_seed,
        source,
    })?;
    let out = match base.monte_carlo.book {
        BookMode::Fixed => {
            let reusable = shared.as_ref().is_some_and(|(_, o)| {
                prices.prices.first().map(Vec::as_slice) == Some(o.start_prices())
            });
            if !reusable {
                let mut backend = fresh_backend(&s)?;
                let setup = set_up(&s, &prices, &mut backend).await.map_err(path_err)?;
                *shared = Some((backend, setup));
            }
            let (backend, setup) = shared.as_ref().expect("set just above");
            let mut fork = backend.fork();
            run_from(&s, &prices, &mut fork, setup.clone(), |_, _| {})
                .await
                .map_err(path_err)?
        }
        BookMode::Random => {
            let mut backend = fresh_backend(&s)?;
            run(&s, &prices, &mut backend, |_, _| {})
                .await
                .map_err(path_err)?
        }
    };
    Ok(PathResult::from_outcome(i, price_seed, &out))
}

/// Runs `paths` paths of `scenario` on `threads` threads (0: every core); `progress(done, total)` is called
/// as paths finish, from the worker threads. With `monte_carlo.target_error` set, paths are then added
/// (doubling, up to `monte_carlo.max_paths`) until the intervals are that narrow; the paths run are the
/// same as asking for their number outright.
pub fn run_mc(
    scenario: &Scenario,
    base_dir: &Path,
    paths: u32,
    threads: usize,
    progress: impl Fn(u32, u32) + Sync,
) -> Result<McReport, McError> {
    if !(1..=MAX_PATHS).contains(&paths) {
        return Err(McError::Paths(format!(
            "must be between 1 and {MAX_PATHS}, not {paths}"
        )));
    }
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let started = Instant::now();
    let mut results = run_paths(scenario, base_dir, 0..paths, threads, &progress)?;
    let mc = &scenario.monte_carlo;
    let error = |r: &[PathResult]| {
        let col = |f: fn(&PathResult) -> f64| r.iter().map(f).collect::<Vec<_>>();
        Risk::of(&col(|p| p.bad_debt))
            .ci
            .max_half_width()
            .max(Risk::of(&col(|p| p.peak_loss)).ci.max_half_width())
    };
    if let Some(target) = mc.target_error {
        let cap = mc.max_paths.max(paths);
        while error(&results) > target && (results.len() as u32) < cap {
            let have = results.len() as u32;
            let more = have.min(cap - have);
            results.extend(run_paths(
                scenario,
                base_dir,
                have..have + more,
                threads,
                &progress,
            )?);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let mut report = summarise(scenario, results, threads.min(paths as usize), wall);
    report.target_error = mc.target_error;
    report.achieved_error = error(&report.results);
    Ok(report)
}

/// Runs paths `range` on up to `threads` threads, in path order.
fn run_paths(
    scenario: &Scenario,
    base_dir: &Path,
    range: std::ops::Range<u32>,
    threads: usize,
    progress: &(impl Fn(u32, u32) + Sync),
) -> Result<Vec<PathResult>, McError> {
    let (first, paths) = (range.start, range.end);
    let count = paths - first;
    let threads = threads.min(count as usize);
    let next = AtomicU32::new(first);
    let done = AtomicU32::new(first);
    let results: Mutex<Vec<Option<Result<PathResult, McError>>>> =
        Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a current-thread runtime needs no resources");
                let mut shared = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= paths {
                        break;
                    }
                    let r = rt.block_on(run_path(scenario, base_dir, i, &mut shared));
                    let failed = r.is_err();
                    results.lock().unwrap_or_else(|p| p.into_inner())[(i - first) as usize] =
                        Some(r);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, paths);
                    if failed {
                        next.store(paths, Ordering::Relaxed); // stop the others early
                    }
                }
            });
        }
    });
    let mut ordered = Vec::with_capacity(count as usize);
    for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match r {
            Some(r) => ordered.push(r?),
            None => continue, // not started after another path failed: that failure is returned
        }
    }
    if ordered.len() != count as usize {
        return Err(McError::Paths("a path failed before every path ran".into()));
    }
    Ok(ordered)
}

fn summarise(scenario: &Scenario, results: Vec<PathResult>, threads: usize, wall: f64) -> McReport {
    let n = results.len() as f64;
    let col = |f: fn(&PathResult) -> f64| results.iter().map(f).collect::<Vec<_>>();
    let share = |f: fn(&PathResult) -> bool| results.iter().filter(|r| f(r)).count() as f64 / n;
    // One summary (a sort and a bootstrap) serves the haircut's mean and its 99th percentile.
    let adl = Risk::of(&col(|r| r.adl_haircut));
    McReport {
        scenario: scenario.name.clone(),
        base_seed: scenario.seed,
        book: scenario.monte_carlo.book,
        paths: results.len() as u32,
        steps: scenario.steps,
        step_seconds: scenario.step_seconds,
        traders: scenario.traders.count,
        threads,
        bad_debt: Risk::of(&col(|r| r.bad_debt)),
        peak_loss: Risk::of(&col(|r| r.peak_loss)),
        insurance_drawdown: Risk::of(&col(|r| r.insurance_drawdown)),
        liquidated_notional: Risk::of(&col(|r| r.liquidated_notional)),
        pool_loss: Risk::of(&col(|r| r.pool_loss)),
        p_insurance_exhausted: share(|r| r.insurance_exhausted),
        p_bad_debt: share(|r| r.bad_debt > 0.0),
        p_adl: share(|r| r.adl_haircut > 0.0),
        adl_haircut_mean: adl.mean,
        adl_haircut_99: adl.var_99,
        target_error: None,
        achieved_error: 0.0,
        wall_seconds: wall,
        paths_per_second: n / wall.max(f64::EPSILON),
        price_fan: fan(results.iter().map(|r| r.prices.as_slice())),
        insurance_fan: fan(results.iter().map(|r| r.insurance.as_slice())),
        results,
    }
}

/// Percentile bands, step by step, of equally long series.
fn fan<'a>(series: impl Iterator<Item = &'a [f64]>) -> Fan {
    let series: Vec<&[f64]> = series.collect();
    let steps = series.iter().map(|s| s.len()).min().unwrap_or(0);
    (0..steps)
        .map(|t| {
            let mut v: Vec<f64> = series.iter().map(|s| s[t]).collect();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
            [at(0.05), at(0.25), at(0.5), at(0.75), at(0.95)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_and_expected_shortfall_of_a_known_distribution() {
        // Losses 1..=100: VaR 95 % is the 95th, ES 95 % the mean of the worst five (96..=100).
        let losses: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let r = Risk::of(&losses);
        assert_eq!((r.var_95, r.var_99), (95.0, 99.0));
        assert_eq!((r.es_95, r.es_99), (98.0, 100.0));
        assert_eq!((r.mean, r.max), (50.5, 100.0));
        // A few paths: the tail is at least the worst path.
        let r = Risk::of(&[0.0, 0.0, 7.0]);
        assert_eq!((r.var_99, r.es_99, r.es_95), (7.0, 7.0, 7.0));
        assert_eq!(Risk::of(&[]).var_95, 0.0);
    }

    #[test]
    fn bootstrap_intervals_cover_the_true_quantile_about_95_percent_of_the_time() {
        use rand::{Rng, SeedableRng};
        // Losses uniform on [0, 1): the true VaR 95 is 0.95 and ES 95 is 0.975. Over 60 seeded samples of
        // 400 paths, a 95 % interval should hold the truth on most (a bootstrap of a tail is a little short).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (mut var_in, mut es_in) = (0, 0);
        for _ in 0..60 {
            let mut v: Vec<f64> = (0..400).map(|_| rng.r#gen::<f64>()).collect();
            v.sort_by(f64::total_cmp);
            let ci = bootstrap(&v, 300, 1);
            var_in += u32::from(ci.var_95[0] <= 0.95 && 0.95 <= ci.var_95[1]);
            es_in += u32::from(ci.es_95[0] <= 0.975 && 0.975 <= ci.es_95[1]);
            let [var, _, es, _] = tail(&v);
            assert!(ci.var_95[0] <= var && var <= ci.var_95[1]);
            assert!(ci.es_95[0] <= es && es <= ci.es_95[1]);
        }
        assert!((48..=60).contains(&var_in), "VaR 95 covered {var_in}/60");
        assert!((48..=60).contains(&es_in), "ES 95 covered {es_in}/60");
    }

    #[test]
    fn intervals_narrow_with_more_paths_and_vanish_when_every_path_agrees() {
        let spread = |n: u32| {
            let v: Vec<f64> = (0..n).map(|i| f64::from((i * 7919) % n)).collect();
            let r = Risk::of(&v);
            (r.ci.var_95[1] - r.ci.var_95[0]) / f64::from(n)
        };
        assert!(spread(4_000) < spread(200) / 2.0);
        let flat = Risk::of(&[5.0; 50]);
        assert_eq!((flat.ci.es_99, flat.ci.max_half_width()), ([5.0, 5.0], 0.0));
        // Seeded: the same losses, the same intervals.
        let v: Vec<f64> = (0..300).map(|i| f64::from(i % 17)).collect();
        assert_eq!(Risk::of(&v), Risk::of(&v));
    }

    #[test]
    fn fans_are_percentiles_per_step() {
        let paths: Vec<Vec<f64>> = (0..=100).map(|i| vec![0.0, i as f64]).collect();
        let f = fan(paths.iter().map(|p| p.as_slice()));
        assert_eq!(f[0], [0.0; 5]);
        assert_eq!(f[1], [5.0, 25.0, 50.0, 75.0, 95.0]);
    }
}
