//! Price paths: seeded GBM with an optional crash or jumps and gaps, or prices from a CSV file. The path is
//! computed once, up front, and handed to every backend, so the same seed means the same prices.
//! Floats are used here only to draw the path; each price is rounded to whole cents and carried as
//! an 18-decimal integer from then on.

use std::path::Path;

use alloy_primitives::U256;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{PriceSpec, Scenario, ScenarioError};

const SECONDS_PER_YEAR: f64 = 365.0 * 86_400.0;

/// `prices[step][market]` for steps 0..=steps, 18 decimals; markets in scenario order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricePath {
    /// The markets' names, in scenario order.
    pub markets: Vec<String>,
    /// The prices, by step then market.
    pub prices: Vec<Vec<U256>>,
}

/// The lower-triangular `L` with `L Lᵀ = c`: `c` must be square, symmetric, with a unit diagonal and
/// positive semi-definite (a correlation matrix); otherwise what is wrong with it.
pub fn cholesky(c: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, String> {
    let n = c.len();
    if c.iter().any(|row| row.len() != n) {
        return Err(format!(
            "must be a {n} x {n} matrix (one row and column per market)"
        ));
    }
    for (i, row) in c.iter().enumerate() {
        if row[i] != 1.0 {
            return Err(format!("the diagonal must be 1 (row {i} has {})", row[i]));
        }
        for (j, x) in row.iter().enumerate().take(i) {
            if !x.is_finite() || *x != c[j][i] {
                return Err(format!(
                    "must be symmetric with finite entries ([{i}][{j}] = {x}, [{j}][{i}] = {})",
                    c[j][i]
                ));
            }
        }
    }
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = c[i][i] - dot;
                if d < -1e-9 {
                    return Err(format!(
                        "is not positive semi-definite (no Cholesky factor: pivot {i} is {d:.3}); \
                         correlations must be consistent with each other and within [-1, 1]"
                    ));
                }
                l[i][i] = d.max(0.0).sqrt();
            } else {
                l[i][j] = match l[j][j] {
                    0.0 => 0.0,
                    pivot => (c[i][j] - dot) / pivot,
                };
            }
        }
    }
    Ok(l)
}

fn identity(n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect()
}

/// USD as an 18-decimal integer, rounded to whole cents.
pub fn usd_to_wad(usd: f64) -> U256 {
    U256::from((usd * 100.0).round().max(1.0) as u128) * U256::from(10u64).pow(U256::from(16))
}

/// An 18-decimal price as USD (for reports).
pub fn wad_to_usd(wad: U256) -> f64 {
    let cents: u128 = (wad / U256::from(10u64).pow(U256::from(16))).to::<u128>();
    cents as f64 / 100.0
}

/// Standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.r#gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Whether each step (0 to `steps`) of the scenario's generated paths is in the stressed regime
/// ([`crate::scenario::RegimeSpec`]); all calm without a regime. Step 0 is the start price: calm unless
/// `start_stressed`. Drawn from its own stream of the scenario's seed.
pub fn regimes(scenario: &Scenario) -> Vec<bool> {
    let Some(r) = &scenario.regime else {
        return vec![false; scenario.steps as usize + 1];
    };
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x4E61_3E5E_ED00);
    let mut now = r.start_stressed;
    let mut out = vec![now];
    for _ in 1..=scenario.steps {
        let u = rng.r#gen::<f64>();
        now = match now {
            false => u < r.enter,
            true => u >= r.exit,
        };
        out.push(now);
    }
    out
}

impl PricePath {
    /// The path of `scenario`; a CSV path is read relative to `base_dir` (the scenario file's folder).
    pub fn generate(scenario: &Scenario, base_dir: &Path) -> Result<Self, ScenarioError> {
        let markets: Vec<String> = scenario.markets.iter().map(|m| m.name.clone()).collect();
        if let PriceSpec::Csv { path, .. } = &scenario.price {
            return Self::from_csv(&base_dir.join(path), &markets, scenario.steps);
        }
        let dt = scenario.step_seconds as f64 / SECONDS_PER_YEAR;
        // One stream per market (its shocks and its own jumps), one for the jumps every market takes at once.
        let mut rngs: Vec<ChaCha8Rng> = (0..scenario.markets.len())
            .map(|i| {
                ChaCha8Rng::seed_from_u64(
                    scenario
                        .seed
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(i as u64),
                )
            })
            .collect();
        let mut common = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0xC0AA_0117_5EED);
        // Correlated shocks: z = L e, with L the Cholesky factor of the correlation (identity if unset, so the
        // shocks are each market's own draw, exactly).
        let factor = match &scenario.correlation {
            Some(c) => cholesky(c).map_err(|m| ScenarioError::Invalid {
                field: "correlation".into(),
                message: m,
            })?,
            None => identity(scenario.markets.len()),
        };
        let stressed = regimes(scenario);
        let mut p: Vec<f64> = scenario.markets.iter().map(|m| m.start_price).collect();
        let mut columns: Vec<Vec<U256>> = p.iter().map(|x| vec![usd_to_wad(*x)]).collect();
        for step in 1..=scenario.steps {
            let (vol_k, drift_add) = match (&scenario.regime, stressed[step as usize]) {
                (Some(r), true) => (r.volatility_multiplier, r.stressed_drift),
                _ => (1.0, 0.0),
            };
            let e: Vec<f64> = rngs.iter_mut().map(normal).collect();
            let all_jump = match &scenario.price {
                PriceSpec::Jumps {
                    percent,
                    common_probability,
                    ..
                } if *common_probability > 0.0 => (common.r#gen::<f64>() < *common_probability)
                    .then(|| match common.r#gen::<bool>() {
                        true => 1.0 + percent / 100.0,
                        false => 1.0 - percent / 100.0,
                    }),
                _ => None,
            };
            for (i, m) in scenario.markets.iter().enumerate() {
                let rng = &mut rngs[i];
                let z: f64 = factor[i].iter().zip(&e).map(|(l, x)| l * x).sum();
                let vol = m.volatility * vol_k;
                let shock = (m.drift + drift_add - vol * vol / 2.0) * dt + vol * dt.sqrt() * z;
                p[i] *= shock.exp();
                match &scenario.price {
                    PriceSpec::Crash {
                        percent,
                        start_step,
                        over_steps,
                    } => {
                        if step > *start_step && step <= start_step + over_steps {
                            p[i] *= (1.0 - percent / 100.0).powf(1.0 / *over_steps as f64);
                        }
                    }
                    PriceSpec::Jumps {
                        probability,
                        percent,
                        ..
                    } => {
                        if rng.r#gen::<f64>() < *probability {
                            let up = rng.r#gen::<bool>();
                            p[i] *= if up {
                                1.0 + percent / 100.0
                            } else {
                                1.0 - percent / 100.0
                            };
                        }
                        if let Some(factor) = all_jump {
                            p[i] *= factor;
                        }
                    }
                    PriceSpec::Gbm | PriceSpec::Csv { .. } => {}
                }
                let mut gapped = None;
                for (k, g) in scenario.gaps.iter().enumerate() {
                    if g.step == step && g.market.as_ref().is_none_or(|name| *name == m.name) {
                        p[i] *= 1.0 + g.percent / 100.0;
                        gapped = Some(k);
                    }
                }
                columns[i].push(checked_wad(p[i]).map_err(|why| {
                    // A price the path cannot carry is refused, never floored or wrapped: name what took it there.
                    let field = match gapped {
                        Some(k) => format!("gaps[{k}].percent"),
                        None => format!("markets[{i}].volatility"),
                    };
                    ScenarioError::Invalid {
                        field,
                        message: format!(
                            "takes {}'s path to {why} at step {step} (seed {}); a path must stay between \
                             ${MIN_PRICE_USD} and ${MAX_PRICE_USD:e}",
                            m.name, scenario.seed
                        ),
                    }
                })?);
            }
        }
        let prices = (0..=scenario.steps as usize)
            .map(|s| columns.iter().map(|c| c[s]).collect())
            .collect();
        Ok(Self { markets, prices })
    }

    /// A block bootstrap of this path's returns, seeded: from the same first prices, blocks of `block`
    /// consecutive steps' returns (every market's return of a step together) drawn with replacement and
    /// laid end to end, the last one cut to fit.
    pub fn block_bootstrap(&self, block: u32, seed: u64) -> Result<Self, ScenarioError> {
        let steps = self.prices.len() - 1;
        let block = (block as usize).clamp(1, steps.max(1));
        let usd: Vec<Vec<f64>> = self
            .prices
            .iter()
            .map(|row| row.iter().map(|p| wad_to_usd(*p)).collect())
            .collect();
        let returns: Vec<Vec<f64>> = (1..=steps)
            .map(|t| {
                (0..self.markets.len())
                    .map(|m| (usd[t][m] / usd[t - 1][m]).ln())
                    .collect()
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB10C_B007);
        let mut p = usd[0].clone();
        let mut prices = vec![self.prices[0].clone()];
        while prices.len() <= steps {
            let start = rng.gen_range(0..=steps - block);
            for r in returns[start..start + block]
                .iter()
                .take(steps + 1 - prices.len())
            {
                let row = p
                    .iter_mut()
                    .zip(r)
                    .map(|(x, r)| {
                        *x *= r.exp();
                        checked_wad(*x)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|why| ScenarioError::Invalid {
                        field: "price.path".into(),
                        message: format!(
                            "a block bootstrap of the file (seed {seed}) reaches {why}: the file's returns \
                             compound past what a path can carry"
                        ),
                    })?;
                prices.push(row);
            }
        }
        Ok(Self {
            markets: self.markets.clone(),
            prices,
        })
    }

    /// Reads the CSV file at `path` (see [`PricePath::parse_csv`]).
    fn from_csv(path: &Path, markets: &[String], steps: u32) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Invalid {
            field: "price.path".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse_csv(&text, &path.display().to_string(), markets, steps)
    }

    /// Prices from CSV `text` (named `file` in errors): a header naming the markets, then one row per step
    /// (blank lines skipped). Every cell is checked: a price that is not a number, not finite, not positive,
    /// below one cent or above [`MAX_PRICE_USD`] is refused with the file, line and column.
    pub fn parse_csv(
        text: &str,
        file: &str,
        markets: &[String],
        steps: u32,
    ) -> Result<Self, ScenarioError> {
        let csv_err = |line: usize, column: &str, message: String| ScenarioError::Csv {
            file: file.to_string(),
            line,
            column: column.to_string(),
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(n, l)| (n + 1, l))
            .filter(|(_, l)| !l.trim().is_empty());
        let (header_line, header) = lines
            .next()
            .ok_or_else(|| csv_err(1, "header", "the CSV is empty".into()))?;
        let header: Vec<&str> = header.split(',').map(str::trim).collect();
        let idx: Vec<usize> = markets
            .iter()
            .map(|m| {
                header.iter().position(|h| h == m).ok_or_else(|| {
                    csv_err(
                        header_line,
                        "header",
                        format!("the CSV has no column {m:?}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let mut prices = Vec::new();
        for (line, text) in lines {
            if prices.len() > steps as usize {
                return Err(csv_err(
                    line,
                    "row",
                    format!(
                        "more price rows than the scenario's steps + 1 = {}",
                        steps + 1
                    ),
                ));
            }
            let cells: Vec<&str> = text.split(',').map(str::trim).collect();
            let row = idx
                .iter()
                .map(|&i| {
                    let cell = cells.get(i).copied().unwrap_or("");
                    let usd = cell.parse::<f64>().map_err(|_| {
                        csv_err(line, header[i], format!("{cell:?} is not a number"))
                    })?;
                    checked_wad(usd).map_err(|m| csv_err(line, header[i], m))
                })
                .collect::<Result<Vec<_>, _>>()?;
            prices.push(row);
        }
        if prices.len() != steps as usize + 1 {
            return Err(ScenarioError::Invalid {
                field: "price.path".into(),
                message: format!(
                    "{file} has {} price rows; the scenario needs steps + 1 = {}",
                    prices.len(),
                    steps + 1
                ),
            });
        }
        Ok(Self {
            markets: markets.to_vec(),
            prices,
        })
    }
}

/// The highest price a path may carry, USD (the cap on `markets.start_price`): an 18-decimal price below
/// it keeps every size x price product the venue and the runner compute far inside 256 (and 128) bits.
pub const MAX_PRICE_USD: f64 = 1e12;
/// The lowest: one cent, the path's resolution.
pub const MIN_PRICE_USD: f64 = 0.01;

/// `usd` as an 18-decimal price, or why it cannot be one (not finite, below a cent, above the cap).
pub fn checked_wad(usd: f64) -> Result<U256, String> {
    if !usd.is_finite() {
        return Err(format!("{usd} is not a finite price"));
    }
    if usd < MIN_PRICE_USD {
        return Err(format!(
            "{usd} is below one cent (the lowest price a path carries)"
        ));
    }
    if usd > MAX_PRICE_USD {
        return Err(format!("{usd} is above the cap of {MAX_PRICE_USD:e} USD"));
    }
    Ok(usd_to_wad(usd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(price: &str) -> Scenario {
        Scenario::parse(&format!(
            "name = \"t\"\nseed = 42\nsteps = 120\nstep_seconds = 30\n[[markets]]\nname = \"BTC\"\nstart_price = 60000\nvolatility = 0.5\n[price]\n{price}\n[traders]\ncount = 1\ncollateral_min = 100\ncollateral_max = 100\nleverage_min = 1\nleverage_max = 1\n"
        ))
        .unwrap()
    }

    #[test]
    fn same_seed_same_path() {
        let s = scenario("kind = \"gbm\"");
        let a = PricePath::generate(&s, Path::new(".")).unwrap();
        let b = PricePath::generate(&s, Path::new(".")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.prices.len(), 121);
        assert_eq!(a.prices[0][0], usd_to_wad(60_000.0));
        let mut other = s.clone();
        other.seed = 43;
        assert_ne!(PricePath::generate(&other, Path::new(".")).unwrap(), a);
    }

    #[test]
    fn crash_takes_the_price_down_by_about_its_percent() {
        let s = scenario("kind = \"crash\"\npercent = 30\nstart_step = 10\nover_steps = 100");
        let p = PricePath::generate(&s, Path::new(".")).unwrap();
        let ratio = wad_to_usd(p.prices[110][0]) / wad_to_usd(p.prices[10][0]);
        // 30 % down, give or take an hour of 50 % volatility.
        assert!((0.6..0.8).contains(&ratio), "{ratio}");
    }

    #[test]
    fn a_gap_moves_the_path_once_and_it_goes_on_from_there() {
        let mut s = scenario("kind = \"gbm\"");
        s.markets[0].volatility = 0.0;
        s.gaps = vec![crate::scenario::GapSpec {
            step: 5,
            percent: -20.0,
            market: None,
        }];
        let p = PricePath::generate(&s, Path::new(".")).unwrap();
        let usd = |step: usize| wad_to_usd(p.prices[step][0]);
        assert_eq!((usd(4), usd(5), usd(6)), (60_000.0, 48_000.0, 48_000.0));
        // A gap on another market leaves this one alone.
        s.gaps[0].market = Some("ETH".into());
        let p = PricePath::generate(&s, Path::new(".")).unwrap();
        assert_eq!(wad_to_usd(p.prices[5][0]), 60_000.0);
    }

    #[test]
    fn a_price_the_path_cannot_carry_is_refused_by_the_field_that_made_it() {
        // A -99.99999 % gap took BTC to $0.006, which was floored at a cent without a word.
        let mut s = scenario("kind = \"gbm\"");
        s.markets[0].volatility = 0.0;
        s.gaps = vec![crate::scenario::GapSpec {
            step: 5,
            percent: -99.99999,
            market: None,
        }];
        let e = PricePath::generate(&s, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("gaps[0].percent")
                && e.contains("below one cent")
                && e.contains("step 5"),
            "{e}"
        );
        // A -99.9 % gap leaves $60: carried.
        s.gaps[0].percent = -99.9;
        let p = PricePath::generate(&s, Path::new(".")).unwrap();
        assert_eq!(wad_to_usd(p.prices[5][0]), 60.0);
        // A drift that runs the path past the cap (it overflowed the 18-decimal integer) is refused.
        let mut s = scenario("kind = \"gbm\"");
        s.steps = 100_000;
        s.step_seconds = 86_400;
        s.markets[0].drift = 10.0;
        let e = PricePath::generate(&s, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("markets[0].volatility") && e.contains("above the cap"),
            "{e}"
        );
    }

    fn two_markets(extra: &str) -> Scenario {
        Scenario::parse(&format!(
            "name = \"t\"\nseed = 42\nsteps = 20000\nstep_seconds = 30\n{extra}\n\
             [[markets]]\nname = \"BTC\"\nstart_price = 60000\nvolatility = 0.8\n\
             [[markets]]\nname = \"ETH\"\nstart_price = 3000\nvolatility = 0.8\n\
             [price]\nkind = \"gbm\"\n[traders]\ncount = 1\ncollateral_min = 100\ncollateral_max = 100\n\
             leverage_min = 1\nleverage_max = 1\n"
        ))
        .unwrap()
    }

    /// The sample correlation of the two markets' log returns.
    fn return_correlation(p: &PricePath) -> f64 {
        let r: Vec<(f64, f64)> = p
            .prices
            .windows(2)
            .map(|w| {
                let ret = |m: usize| (wad_to_usd(w[1][m]) / wad_to_usd(w[0][m])).ln();
                (ret(0), ret(1))
            })
            .collect();
        let n = r.len() as f64;
        let (ma, mb) = (
            r.iter().map(|x| x.0).sum::<f64>() / n,
            r.iter().map(|x| x.1).sum::<f64>() / n,
        );
        let cov: f64 = r.iter().map(|(a, b)| (a - ma) * (b - mb)).sum();
        let va: f64 = r.iter().map(|(a, _)| (a - ma).powi(2)).sum();
        let vb: f64 = r.iter().map(|(_, b)| (b - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    /// Each step's log return of market `m`.
    fn log_returns(p: &PricePath, m: usize) -> Vec<f64> {
        p.prices
            .windows(2)
            .map(|w| (wad_to_usd(w[1][m]) / wad_to_usd(w[0][m])).ln())
            .collect()
    }

    #[test]
    fn a_regime_switch_stresses_the_share_of_steps_its_probabilities_give_at_its_volatility() {
        // enter 0.02, exit 0.08: a fifth of the steps stressed in the long run, stresses 12.5 steps long on
        // average; stressed volatility three times the calm one, on both markets at once.
        let regime = "[regime]\nenter = 0.02\nexit = 0.08\nvolatility_multiplier = 3\n";
        let s = two_markets(regime);
        let stressed = regimes(&s);
        let share = stressed.iter().filter(|x| **x).count() as f64 / stressed.len() as f64;
        assert!((share - 0.2).abs() < 0.04, "stressed share {share}");
        let runs = stressed.windows(2).filter(|w| !w[0] && w[1]).count() as f64;
        let mean_run = stressed.iter().filter(|x| **x).count() as f64 / runs;
        assert!(
            (mean_run - 12.5).abs() < 2.5,
            "mean stress {mean_run} steps"
        );
        let path = PricePath::generate(&s, Path::new(".")).unwrap();
        for m in 0..2 {
            let r = log_returns(&path, m);
            let sd = |want: bool| {
                let x: Vec<f64> = r
                    .iter()
                    .zip(&stressed[1..])
                    .filter(|(_, st)| **st == want)
                    .map(|(x, _)| *x)
                    .collect();
                let mean = x.iter().sum::<f64>() / x.len() as f64;
                (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
            };
            let ratio = sd(true) / sd(false);
            assert!(
                (ratio - 3.0).abs() < 0.25,
                "market {m}: stressed/calm volatility {ratio}"
            );
        }
        // The regime draws from its own stream: at a multiplier of 1 and no drift, the path is the same
        // draw for draw as without a regime.
        let neutral = two_markets("[regime]\nenter = 0.5\nexit = 0.5\nvolatility_multiplier = 1\n");
        assert_eq!(
            PricePath::generate(&neutral, Path::new(".")).unwrap(),
            PricePath::generate(&two_markets(""), Path::new(".")).unwrap()
        );
        // Bad regimes are refused by field.
        for (bad, field) in [
            (
                "enter = 1.5\nexit = 0.1\nvolatility_multiplier = 2",
                "regime.enter",
            ),
            (
                "enter = 0.1\nexit = nan\nvolatility_multiplier = 2",
                "regime.exit",
            ),
            (
                "enter = 0.1\nexit = 0.1\nvolatility_multiplier = 0",
                "regime.volatility_multiplier",
            ),
            (
                "enter = 0.1\nexit = 0.1\nvolatility_multiplier = 2\nstressed_drift = inf",
                "regime.stressed_drift",
            ),
            ("enter = 0.1\nexit = 0.1", "volatility_multiplier"),
        ] {
            let text = format!(
                "name = \"t\"\nseed = 1\nsteps = 5\nstep_seconds = 30\n[[markets]]\nname = \"BTC\"\n\
                 start_price = 60000\nvolatility = 0.8\n[price]\nkind = \"gbm\"\n[traders]\ncount = 1\n\
                 collateral_min = 100\ncollateral_max = 100\nleverage_min = 1\nleverage_max = 1\n\
                 [regime]\n{bad}\n"
            );
            let e = Scenario::parse(&text).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn correlation_is_recovered_from_generated_paths_within_sampling_error() {
        // 20,000 steps: the sample correlation's standard error is about (1 - rho^2) / sqrt(n) < 0.007;
        // each check allows four of them.
        for rho in [0.7, -0.5, 0.0] {
            let s = two_markets(&format!("correlation = [[1, {rho}], [{rho}, 1]]"));
            let got = return_correlation(&PricePath::generate(&s, Path::new(".")).unwrap());
            let se = (1.0 - rho * rho) / 20_000f64.sqrt();
            assert!((got - rho).abs() < 4.0 * se, "rho {rho}: got {got}");
        }
        // Unset, the markets are independent; an identity matrix is the same path, draw for draw.
        let free = PricePath::generate(&two_markets(""), Path::new(".")).unwrap();
        assert!(return_correlation(&free).abs() < 0.03);
        let identity = two_markets("correlation = [[1, 0], [0, 1]]");
        assert_eq!(
            PricePath::generate(&identity, Path::new(".")).unwrap(),
            free
        );
    }

    #[test]
    fn a_correlation_that_is_not_one_is_refused() {
        let parse = |c: &str| {
            let text = format!(
                "name = \"t\"\nseed = 1\nsteps = 5\nstep_seconds = 30\ncorrelation = {c}\n\
                 [[markets]]\nname = \"BTC\"\nstart_price = 60000\nvolatility = 0.8\n\
                 [[markets]]\nname = \"ETH\"\nstart_price = 3000\nvolatility = 0.8\n\
                 [price]\nkind = \"gbm\"\n[traders]\ncount = 1\ncollateral_min = 100\ncollateral_max = 100\n\
                 leverage_min = 1\nleverage_max = 1\n"
            );
            Scenario::parse(&text)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse("[[1, 0.3], [0.3, 1]]"), Ok(()));
        assert_eq!(
            parse("[[1, 1], [1, 1]]"),
            Ok(()),
            "semi-definite is allowed"
        );
        for (c, why) in [
            ("[[1]]", "one row per market"),
            ("[[1, 0.3], [0.3]]", "2 x 2"),
            ("[[1, 0.3], [0.2, 1]]", "symmetric"),
            ("[[0.9, 0.3], [0.3, 1]]", "diagonal must be 1"),
            ("[[1, 1.5], [1.5, 1]]", "not positive semi-definite"),
            ("[[1, nan], [nan, 1]]", "finite"),
        ] {
            let e = parse(c).unwrap_err();
            assert!(
                e.starts_with("correlation: ") && e.contains(why),
                "{c}: {e}"
            );
        }
        // A 3 x 3 that is symmetric, in range, but inconsistent (a ~ b, a ~ c, b anti c).
        let bad = vec![
            vec![1.0, 0.9, 0.9],
            vec![0.9, 1.0, -0.9],
            vec![0.9, -0.9, 1.0],
        ];
        assert!(
            cholesky(&bad)
                .unwrap_err()
                .contains("not positive semi-definite")
        );
        let l = cholesky(&[vec![1.0, 0.6], vec![0.6, 1.0]]).unwrap();
        assert!((l[1][0] - 0.6).abs() < 1e-12 && (l[1][1] - 0.8).abs() < 1e-12);
    }

    #[test]
    fn a_common_jump_moves_every_market_at_once() {
        let mut s = two_markets("");
        s.steps = 200;
        s.markets.iter_mut().for_each(|m| m.volatility = 0.0);
        s.price = PriceSpec::Jumps {
            probability: 0.0,
            percent: 10.0,
            common_probability: 0.3,
        };
        let p = PricePath::generate(&s, Path::new(".")).unwrap();
        let mut jumps = 0;
        for w in p.prices.windows(2) {
            let ratio = |m: usize| wad_to_usd(w[1][m]) / wad_to_usd(w[0][m]);
            assert!(
                (ratio(0) - ratio(1)).abs() < 1e-5,
                "{} {}",
                ratio(0),
                ratio(1)
            );
            jumps += u32::from((ratio(0) - 1.0).abs() > 0.05);
        }
        assert!((30..=90).contains(&jumps), "{jumps} of 200 at 30 %");
        // Seeded: the same again.
        assert_eq!(PricePath::generate(&s, Path::new(".")).unwrap(), p);
    }

    #[test]
    fn a_block_bootstrap_reuses_the_files_returns_in_blocks() {
        let mut s = two_markets("correlation = [[1, 0.8], [0.8, 1]]");
        s.steps = 3000;
        let file = PricePath::generate(&s, Path::new(".")).unwrap();
        let a = file.block_bootstrap(1, 7).unwrap();
        assert_eq!(a, file.block_bootstrap(1, 7).unwrap(), "seeded");
        assert_ne!(a, file.block_bootstrap(1, 8).unwrap());
        assert_eq!((a.prices.len(), &a.prices[0]), (3001, &file.prices[0]));
        // Every resampled step's returns (both markets together) are a step of the file's.
        let rets = |p: &PricePath, t: usize| {
            let r = |m: usize| (wad_to_usd(p.prices[t][m]) / wad_to_usd(p.prices[t - 1][m])).ln();
            (r(0), r(1))
        };
        let originals: Vec<(f64, f64)> = (1..=3000).map(|t| rets(&file, t)).collect();
        for t in (1..=3000).step_by(97) {
            let (x, y) = rets(&a, t);
            assert!(
                originals
                    .iter()
                    .any(|(ox, oy)| (ox - x).abs() < 2e-5 && (oy - y).abs() < 2e-5),
                "step {t}"
            );
        }
        // So the cross-market correlation carries over, blocks of 10 or 1.
        for block in [1, 10] {
            let got = return_correlation(&file.block_bootstrap(block, 3).unwrap());
            assert!((got - 0.8).abs() < 0.05, "block {block}: {got}");
        }
    }

    #[test]
    fn bad_csv_cells_are_refused_with_file_line_and_column() {
        let markets = ["BTC".to_string(), "ETH".to_string()];
        let good = "BTC,ETH\n60000,3000\n\n59000,2900\n";
        let p = PricePath::parse_csv(good, "p.csv", &markets, 1).unwrap();
        assert_eq!(p.prices[1], vec![usd_to_wad(59_000.0), usd_to_wad(2_900.0)]);
        for (cell, why) in [
            ("inf", "not a finite price"),
            ("NaN", "not a finite price"),
            ("-5", "below one cent"),
            ("0", "below one cent"),
            ("1e30", "above the cap"),
            ("abc", "is not a number"),
            ("", "is not a number"),
        ] {
            let csv = good.replace("2900", cell);
            let e = PricePath::parse_csv(&csv, "p.csv", &markets, 1).unwrap_err();
            assert!(
                matches!(&e, ScenarioError::Csv { line: 4, column, .. } if column == "ETH"),
                "{cell}: {e:?}"
            );
            let e = e.to_string();
            assert!(
                e.starts_with("p.csv, line 4, column ETH: ") && e.contains(why),
                "{e}"
            );
        }
        let e = PricePath::parse_csv("BTC,ETH\n1,1\n2,2\n3,3\n", "p.csv", &markets, 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.csv, line 4, column row: more price rows"),
            "{e}"
        );
    }

    #[test]
    fn csv_paths_are_checked() {
        let dir = std::env::temp_dir().join(format!("keyscope-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.csv"), "BTC\n60000\n59000\n").unwrap();
        let mut s = scenario("kind = \"csv\"\npath = \"p.csv\"");
        s.steps = 1;
        let p = PricePath::generate(&s, &dir).unwrap();
        assert_eq!(p.prices[1][0], usd_to_wad(59_000.0));
        s.steps = 5;
        let e = PricePath::generate(&s, &dir).unwrap_err().to_string();
        assert!(e.contains("steps + 1 = 6"), "{e}");
        std::fs::write(dir.join("p.csv"), "ETH\n1\n2\n").unwrap();
        s.steps = 1;
        assert!(
            PricePath::generate(&s, &dir)
                .unwrap_err()
                .to_string()
                .contains("no column \"BTC\"")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
