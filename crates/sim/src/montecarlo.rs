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
    runner::{Outcome, RunError, liquidator_keys, run},
    scenario::{BookMode, Scenario, ScenarioError},
};

/// Errors from a Monte Carlo run.
#[derive(Debug, thiserror::Error)]
pub enum McError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("path {path} (seed {seed}): {source}")]
    Path {
        path: u32,
        seed: u64,
        source: RunError,
    },
    #[error("path {path} (seed {seed}): {source}")]
    PathPrices {
        path: u32,
        seed: u64,
        source: ScenarioError,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("paths: {0}")]
    Paths(String),
}

/// The most paths one run takes.
pub const MAX_PATHS: u32 = 1_000_000;

/// What one path ended with, USD unless said otherwise.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathResult {
    pub path: u32,
    /// The seed of the path's prices, and of its book (the scenario's on a fixed book).
    pub seed: u64,
    pub book_seed: u64,
    /// Booked bad debt plus what accounts still open end below zero.
    pub bad_debt: f64,
    pub bad_debt_booked: f64,
    /// The loss at its worst over the run (booked bad debt + open shortfall at the step it was largest),
    /// and that step: a crash that recovers shows here, not in `bad_debt`.
    pub peak_loss: f64,
    pub peak_loss_step: u32,
    /// Insurance fund at the start less its lowest point.
    pub insurance_drawdown: f64,
    /// The insurance fund reached zero.
    pub insurance_exhausted: bool,
    pub liquidations: u32,
    pub liquidated_notional: f64,
    /// The pool's loss, marked to market (its negative PnL; a profit is a negative loss).
    pub pool_loss: f64,
    pub margin_calls: u32,
    /// The first market's price each step (for the fan chart).
    #[serde(skip)]
    pub prices: Vec<f64>,
    /// The insurance fund each step (for the fan chart).
    #[serde(skip)]
    pub insurance: Vec<f64>,
}

impl PathResult {
    fn from_outcome(path: u32, price_seed: u64, out: &Outcome) -> Self {
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
            margin_calls: out.margin_calls,
            prices: out.series.iter().map(|r| r.prices[0]).collect(),
            insurance: out.series.iter().map(|r| r.insurance_fund).collect(),
        }
    }
}

/// A loss distribution summarised.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Risk {
    pub mean: f64,
    pub max: f64,
    /// Value-at-risk: the loss not exceeded on 95 % (99 %) of paths.
    pub var_95: f64,
    pub var_99: f64,
    /// Expected shortfall: the mean loss on the worst 5 % (1 %) of paths (at least one path).
    pub es_95: f64,
    pub es_99: f64,
}

impl Risk {
    /// The summary of `losses` (any order; empty gives zeros).
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
            };
        }
        let var = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        let es = |q: f64| {
            let tail = (((1.0 - q) * n as f64).round() as usize).max(1);
            v[n - tail..].iter().sum::<f64>() / tail as f64
        };
        Self {
            mean: v.iter().sum::<f64>() / n as f64,
            max: v[n - 1],
            var_95: var(0.95),
            var_99: var(0.99),
            es_95: es(0.95),
            es_99: es(0.99),
        }
    }
}

/// Percentile bands of a per-step series across paths: 5, 25, 50, 75, 95 %.
pub type Fan = Vec<[f64; 5]>;

/// The whole Monte Carlo run.
#[derive(Debug, Clone, Serialize)]
pub struct McReport {
    pub scenario: String,
    pub base_seed: u64,
    /// The book the paths share (fixed) or draw anew (random).
    pub book: BookMode,
    pub paths: u32,
    pub steps: u32,
    pub traders: u32,
    pub threads: usize,
    /// Total bad debt (booked + open) at the end.
    pub bad_debt: Risk,
    /// The loss at its worst step of each path (booked + open).
    pub peak_loss: Risk,
    pub insurance_drawdown: Risk,
    /// Liquidations-at-risk: liquidated notional's distribution.
    pub liquidated_notional: Risk,
    pub pool_loss: Risk,
    pub p_insurance_exhausted: f64,
    pub p_bad_debt: f64,
    pub wall_seconds: f64,
    pub paths_per_second: f64,
    #[serde(skip)]
    pub price_fan: Fan,
    #[serde(skip)]
    pub insurance_fan: Fan,
    pub results: Vec<PathResult>,
}

/// The scenario whose seed draws path `i`'s prices.
pub fn path_scenario(base: &Scenario, i: u32) -> Scenario {
    let mut s = base.clone();
    s.seed = base.seed.wrapping_add(i as u64);
    s
}

/// The scenario whose seed draws path `i`'s book: the base itself on a fixed book.
pub fn book_scenario(base: &Scenario, i: u32) -> Scenario {
    match base.monte_carlo.book {
        BookMode::Fixed => base.clone(),
        BookMode::Random => path_scenario(base, i),
    }
}

/// Runs path `i` on a fresh revm chain.
async fn run_path(base: &Scenario, base_dir: &Path, i: u32) -> Result<PathResult, McError> {
    let price_seed = path_scenario(base, i).seed;
    let s = book_scenario(base, i);
    let path_err = |source: RunError| McError::Path {
        path: i,
        seed: price_seed,
        source,
    };
    let prices = PricePath::generate(&path_scenario(base, i), base_dir).map_err(|source| {
        McError::PathPrices {
            path: i,
            seed: price_seed,
            source,
        }
    })?;
    let insurance = U256::from((s.venue.insurance_fund * 1e6).round() as u128);
    // A fixed start time: the same path gives the same run wherever and whenever it runs.
    let mut backend = RevmBackend::new(
        31_337,
        1_800_000_000,
        Roles::new(liquidator_keys(&s)),
        insurance,
    )?;
    let out = run(&s, &prices, &mut backend, |_, _| {})
        .await
        .map_err(path_err)?;
    Ok(PathResult::from_outcome(i, price_seed, &out))
}

/// Runs `paths` paths of `scenario` on `threads` threads (0: every core); `progress(done, total)` is called
/// as paths finish, from the worker threads.
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
    }
    .min(paths as usize);
    let started = Instant::now();
    let next = AtomicU32::new(0);
    let done = AtomicU32::new(0);
    let results: Mutex<Vec<Option<Result<PathResult, McError>>>> =
        Mutex::new((0..paths).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a current-thread runtime needs no resources");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= paths {
                        break;
                    }
                    let r = rt.block_on(run_path(scenario, base_dir, i));
                    let failed = r.is_err();
                    results.lock().unwrap_or_else(|p| p.into_inner())[i as usize] = Some(r);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, paths);
                    if failed {
                        next.store(paths, Ordering::Relaxed); // stop the others early
                    }
                }
            });
        }
    });
    let mut ordered = Vec::with_capacity(paths as usize);
    for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        match r {
            Some(r) => ordered.push(r?),
            None => continue, // not started after another path failed: that failure is returned
        }
    }
    if ordered.len() != paths as usize {
        return Err(McError::Paths("a path failed before every path ran".into()));
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(summarise(scenario, ordered, threads, wall))
}

fn summarise(scenario: &Scenario, results: Vec<PathResult>, threads: usize, wall: f64) -> McReport {
    let n = results.len() as f64;
    let col = |f: fn(&PathResult) -> f64| results.iter().map(f).collect::<Vec<_>>();
    let share = |f: fn(&PathResult) -> bool| results.iter().filter(|r| f(r)).count() as f64 / n;
    McReport {
        scenario: scenario.name.clone(),
        base_seed: scenario.seed,
        book: scenario.monte_carlo.book,
        paths: results.len() as u32,
        steps: scenario.steps,
        traders: scenario.traders.count,
        threads,
        bad_debt: Risk::of(&col(|r| r.bad_debt)),
        peak_loss: Risk::of(&col(|r| r.peak_loss)),
        insurance_drawdown: Risk::of(&col(|r| r.insurance_drawdown)),
        liquidated_notional: Risk::of(&col(|r| r.liquidated_notional)),
        pool_loss: Risk::of(&col(|r| r.pool_loss)),
        p_insurance_exhausted: share(|r| r.insurance_exhausted),
        p_bad_debt: share(|r| r.bad_debt > 0.0),
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
    fn fans_are_percentiles_per_step() {
        let paths: Vec<Vec<f64>> = (0..=100).map(|i| vec![0.0, i as f64]).collect();
        let f = fan(paths.iter().map(|p| p.as_slice()));
        assert_eq!(f[0], [0.0; 5]);
        assert_eq!(f[1], [5.0, 25.0, 50.0, 75.0, 95.0]);
    }
}
