//! Scenario files (TOML): markets and their price paths, the traders and how they trade and answer
//! margin calls, and the liquidator bots. Every field is checked on load; a bad file gets an error
//! that names the field and says what is allowed.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors from loading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The scenario file is not valid TOML for a scenario.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A field's value is out of range or inconsistent with another.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as a dotted path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A bad cell (or row) of a CSV price file.
    #[error("{file}, line {line}, column {column}: {message}")]
    Csv {
        /// The CSV file.
        file: String,
        /// The line, from 1.
        line: usize,
        /// The column's name.
        column: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(field: &str, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name, used in reports.
    pub name: String,
    /// Seeds the price paths, the traders' choices and keys: same seed, same run.
    pub seed: u64,
    /// Number of price steps.
    pub steps: u32,
    /// Seconds between steps.
    pub step_seconds: u32,
    /// The markets traded.
    pub markets: Vec<MarketSpec>,
    /// How prices move.
    pub price: PriceSpec,
    /// The traders drawn for the book (unless `book` is given).
    #[serde(default)]
    pub traders: TraderSpec,
    /// A book given position by position (a desk's own book) instead of drawn from `[traders]`' ranges:
    /// trader `i` opens `book[i]` at step 0's price.
    #[serde(default)]
    pub book: Vec<BookEntry>,
    /// How traders answer margin calls.
    #[serde(default)]
    pub margin_calls: MarginCallSpec,
    /// The liquidator bots.
    #[serde(default)]
    pub liquidators: LiquidatorSpec,
    /// Venue-wide settings.
    #[serde(default)]
    pub venue: VenueSpec,
    /// Funding-rate changes: from a step on, a market's rate is set (by the venue's owner).
    #[serde(default)]
    pub funding: Vec<FundingSpec>,
    /// Price gaps on top of the path: at a step, a market's price jumps by a percentage and the path goes
    /// on from there.
    #[serde(default)]
    pub gaps: Vec<GapSpec>,
    /// An oracle outage: no price is published for a while (past the oracle's 120 s maximum age the venue
    /// refuses trades and liquidations), then publishing resumes at the path's price.
    #[serde(default)]
    pub oracle: OracleSpec,
    /// The correlation of the markets' price shocks, one row and column per market in `[[markets]]`'s order
    /// (symmetric, unit diagonal, positive semi-definite); unset: independent.
    #[serde(default)]
    pub correlation: Option<Vec<Vec<f64>>>,
    /// Price impact of the keepers' liquidation flow (a model in the harness, not the venue's); unset: none.
    #[serde(default)]
    pub impact: Option<ImpactSpec>,
    /// Calm and stressed volatility regimes the generated paths switch between; unset: one regime.
    #[serde(default)]
    pub regime: Option<RegimeSpec>,
    /// The keepers' gas cost moving with the market (a model in the harness); unset: it never moves.
    #[serde(default)]
    pub gas: GasSpec,
    /// How `sim mc` runs this scenario (ignored by `sim run`).
    #[serde(default)]
    pub monte_carlo: MonteCarloSpec,
}

/// A harness-only price-impact model: the notional the keepers liquidate in a step is sold (a long closed)
/// or bought (a short closed) into a market of `depth_usd`, and moves that market's price from the next
/// step on, for good, by `coefficient x flow / depth` (`linear`) or `coefficient x sqrt(|flow| / depth)`
/// (`sqrt`, the square-root law), against the flow. The venue has no such book: its oracle price is the
/// path's price times the impact so far, published as the path's would be, on either backend.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImpactSpec {
    /// Which law the impact follows.
    pub model: ImpactModel,
    /// Market depth in USD notional (the same for every market).
    pub depth_usd: f64,
    /// The impact's scale (1 by default).
    #[serde(default = "one")]
    pub coefficient: f64,
}

fn one() -> f64 {
    1.0
}

/// How the keepers' flow moves the price: linearly or by the square-root law.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImpactModel {
    /// `coefficient x flow / depth`.
    Linear,
    /// `coefficient x sqrt(|flow| / depth)`, the square-root law.
    Sqrt,
}

impl ImpactSpec {
    /// The fractional price move (positive: up) that `flow` USD of net selling (negative: buying) causes.
    pub fn price_move(&self, flow: f64) -> f64 {
        let x = flow / self.depth_usd;
        -self.coefficient
            * match self.model {
                ImpactModel::Linear => x,
                ImpactModel::Sqrt => x.signum() * x.abs().sqrt(),
            }
    }
}

/// Monte Carlo options.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonteCarloSpec {
    /// Which book the paths share: `fixed` (the default) or `random`.
    #[serde(default)]
    pub book: BookMode,
    /// Paths are added (doubling) until the 95 % intervals of bad debt's and peak loss's VaR and ES are
    /// all narrower than ± this many USD, or `max_paths` is reached; unset: the paths asked for only.
    #[serde(default)]
    pub target_error: Option<f64>,
    /// The most paths `target_error` may run.
    #[serde(default = "default_max_paths")]
    pub max_paths: u32,
}

impl Default for MonteCarloSpec {
    fn default() -> Self {
        Self {
            book: BookMode::Fixed,
            target_error: None,
            max_paths: default_max_paths(),
        }
    }
}

fn default_max_paths() -> u32 {
    20_000
}

/// The risk question a Monte Carlo run answers.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BookMode {
    /// "What does this book lose across market moves": the traders (their collateral, leverage, side,
    /// market, keys and answers to margin calls) are drawn once from the scenario's seed, and only the
    /// prices change from path to path.
    #[default]
    Fixed,
    /// "What does a book like this lose": each path draws new traders as well as new prices, so the spread
    /// mixes who the traders are with how the market moves.
    Random,
}

/// From `from_step` on, `market`'s funding rate is `rate_per_hour` (a fraction of notional per hour, paid by
/// longs when positive; the venue allows at most ±0.0001 = 0.01 %/h).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FundingSpec {
    /// The market whose rate is set.
    pub market: String,
    /// The step from which the rate applies.
    pub from_step: u32,
    /// The rate, a fraction of notional per hour (paid by longs when positive).
    pub rate_per_hour: f64,
}

/// At `step`, `market`'s price (every market's if unset) moves by `percent` (-12 = a 12 % gap down).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GapSpec {
    /// The step at which the price gaps.
    pub step: u32,
    /// The move in percent (-12 = a 12 % gap down).
    pub percent: f64,
    /// The market that gaps; every market if unset.
    #[serde(default)]
    pub market: Option<String>,
}

/// An oracle outage of `stale_steps` steps from `stale_from_step` (none if unset).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OracleSpec {
    /// The first step with no price published; no outage if unset.
    #[serde(default)]
    pub stale_from_step: Option<u32>,
    /// How many steps the outage lasts.
    #[serde(default)]
    pub stale_steps: u32,
}

impl OracleSpec {
    /// True if no price is published at `step`.
    pub fn is_stale(&self, step: u32) -> bool {
        self.stale_from_step
            .is_some_and(|from| step >= from && step < from + self.stale_steps)
    }
}

/// The venue's largest funding rate, per hour (PerpVenue.MAX_FUNDING_RATE x 3600).
pub const MAX_FUNDING_RATE_PER_HOUR: f64 = 0.0001;

/// A market the traders use; `name` must be listed by the deployment (BTC, ETH).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MarketSpec {
    /// The market's name, as the deployment lists it.
    pub name: String,
    /// Starting price in USD.
    pub start_price: f64,
    /// Annualised volatility of the GBM (0.6 = 60 %).
    pub volatility: f64,
    /// Annualised drift of the GBM.
    #[serde(default)]
    pub drift: f64,
    /// Venue risk parameters for this market, as fractions (0.05 = 5 %); unset ones keep the
    /// deployment's (IMF 5 %, MMF 3 %, taker fee 0.05 %, liquidation penalty 1 %).
    #[serde(default)]
    pub imf: Option<f64>,
    /// Maintenance margin fraction (deployment's 3 % if unset).
    #[serde(default)]
    pub mmf: Option<f64>,
    /// Taker fee fraction (deployment's 0.05 % if unset).
    #[serde(default)]
    pub taker_fee: Option<f64>,
    /// Liquidation penalty fraction (deployment's 1 % if unset).
    #[serde(default)]
    pub liquidation_penalty: Option<f64>,
}

impl MarketSpec {
    /// IMF, MMF, taker fee and liquidation penalty, with the deployment's defaults filled in.
    pub fn risk(&self) -> (f64, f64, f64, f64) {
        (
            self.imf.unwrap_or(0.05),
            self.mmf.unwrap_or(0.03),
            self.taker_fee.unwrap_or(0.0005),
            self.liquidation_penalty.unwrap_or(0.01),
        )
    }

    /// True if the scenario sets any risk parameter.
    pub fn overrides_risk(&self) -> bool {
        self.imf.is_some()
            || self.mmf.is_some()
            || self.taker_fee.is_some()
            || self.liquidation_penalty.is_some()
    }
}

/// How prices move.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PriceSpec {
    /// Geometric Brownian motion only.
    Gbm,
    /// GBM plus a fall of `percent` spread evenly over `over_steps` steps from `start_step`.
    Crash {
        /// The fall, in percent.
        percent: f64,
        /// The step the fall starts at.
        start_step: u32,
        /// How many steps it is spread over.
        over_steps: u32,
    },
    /// GBM plus jumps: each step, with probability `probability`, a move of ±`percent`.
    /// With `common_probability`, a step may also move every market at once by ±`percent` (one draw for
    /// all: a market-wide shock).
    Jumps {
        /// The chance of a jump in a market at each step.
        probability: f64,
        /// The jump's size, in percent either way.
        percent: f64,
        /// The chance of a market-wide jump at each step (0 for none).
        #[serde(default)]
        common_probability: f64,
    },
    /// Prices from a CSV file: one row per step, one column per market (header with market names).
    /// In Monte Carlo, path 0 is the file itself and every other path a block bootstrap of its returns
    /// (blocks of `block_steps` consecutive steps, every market's return of a step kept together, so the
    /// file's volatility clustering and cross-market correlation carry over).
    Csv {
        /// The CSV file, relative to the scenario file.
        path: String,
        /// How many consecutive steps each resampled block keeps together (10 by default).
        #[serde(default = "default_block_steps")]
        block_steps: u32,
    },
}

/// The traders. Drawn from the ranges below, or listed one by one in `[[book]]` (then the count is the
/// book's and the ranges are left out).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraderSpec {
    /// How many traders.
    #[serde(default)]
    pub count: u32,
    /// Margin per trader in USD, drawn uniformly from [min, max].
    #[serde(default)]
    pub collateral_min: f64,
    /// Upper bound of the margin per trader, USD.
    #[serde(default)]
    pub collateral_max: f64,
    /// Leverage (notional / margin), drawn uniformly from [min, max]; at most 1 / IMF = 20.
    #[serde(default)]
    pub leverage_min: f64,
    /// Upper bound of the leverage.
    #[serde(default)]
    pub leverage_max: f64,
    /// Share of traders who go long (the rest go short).
    #[serde(default = "half")]
    pub long_fraction: f64,
    /// The trading key's post-execution leverage limit (10 = 10x); unset for none.
    #[serde(default)]
    pub key_max_leverage: Option<f64>,
    /// The trading key's drawdown breaker: the fall from its high-water mark that degrades it (0.1 =
    /// 10 %); unset for none.
    #[serde(default)]
    pub key_max_drawdown: Option<f64>,
    /// Every this many steps each trader adds to its position with the trading key (averaging down or
    /// chasing); 0 for never.
    #[serde(default)]
    pub add_every_steps: u32,
    /// Size of each add, as a share of the opening order.
    #[serde(default = "quarter")]
    pub add_fraction: f64,
}

/// No `[traders]` section (a `[[book]]` gives them): the same defaults as an empty one.
impl Default for TraderSpec {
    fn default() -> Self {
        Self {
            count: 0,
            collateral_min: 0.0,
            collateral_max: 0.0,
            leverage_min: 0.0,
            leverage_max: 0.0,
            long_fraction: half(),
            key_max_leverage: None,
            key_max_drawdown: None,
            add_every_steps: 0,
            add_fraction: quarter(),
        }
    }
}

fn default_block_steps() -> u32 {
    10
}

fn quarter() -> f64 {
    0.25
}

fn half() -> f64 {
    0.5
}

/// How traders answer a margin call, with a key scoped to do only that.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MarginCallSpec {
    /// Probability that a trader answers at all.
    pub answer_probability: f64,
    /// Steps between the margin call and the answer.
    pub delay_steps: u32,
    /// How a trader answers.
    pub answer: Answer,
    /// Collateral added (as a share of the starting margin), or position closed (share), when answering.
    pub fraction: f64,
}

impl Default for MarginCallSpec {
    fn default() -> Self {
        Self {
            answer_probability: 0.0,
            delay_steps: 0,
            answer: Answer::AddCollateral,
            fraction: 0.5,
        }
    }
}

/// How a trader answers a margin call.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Adds collateral (a share of the starting margin).
    AddCollateral,
    /// Closes part of the position.
    Reduce,
}

/// Liquidator bots: they scan every step and liquidate what pays.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LiquidatorSpec {
    /// How many liquidator bots.
    pub count: u32,
    /// What a liquidation transaction costs a keeper in gas, in USD: a keeper passes up a liquidation whose
    /// reward (the penalty clamped to the venue's bounds, paid from the account and then the insurance
    /// fund) is below it.
    #[serde(default = "keeper_gas_usd")]
    pub gas_cost_usd: f64,
}

/// ~300k gas at 1 gwei and ETH at $3,000 (an L2 costs less, mainnet at busy times more).
fn keeper_gas_usd() -> f64 {
    0.9
}

impl Default for LiquidatorSpec {
    fn default() -> Self {
        Self {
            count: 1,
            gas_cost_usd: keeper_gas_usd(),
        }
    }
}

/// A two-state (Markov-switching) volatility regime over generated paths: each step the market goes from
/// calm to stressed with probability `enter` and back with probability `exit` (so a stress lasts `1 / exit`
/// steps on average, and `enter / (enter + exit)` of the steps are stressed in the long run). While stressed,
/// every market's volatility is `volatility_multiplier` times its own and `stressed_drift` (annualised, e.g.
/// -2 = -200 %/year) is added to its drift — every market at once, as stress comes to a whole market. The
/// regime is drawn from its own seeded stream: the markets' shocks are the same draws with or without it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegimeSpec {
    /// The chance per step of going from calm to stressed.
    pub enter: f64,
    /// The chance per step of going from stressed back to calm.
    pub exit: f64,
    /// Each market's volatility is multiplied by this while stressed.
    pub volatility_multiplier: f64,
    /// Added to each market's annualised drift while stressed (-2 = -200 %/year).
    #[serde(default)]
    pub stressed_drift: f64,
    /// Start in the stressed regime.
    #[serde(default)]
    pub start_stressed: bool,
}

impl RegimeSpec {
    fn validate(&self, price: &PriceSpec) -> Result<(), ScenarioError> {
        for (field, p) in [("regime.enter", self.enter), ("regime.exit", self.exit)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(
                    field,
                    "must be a probability per step, between 0 and 1",
                ));
            }
        }
        if !(0.1..=20.0).contains(&self.volatility_multiplier) {
            return Err(invalid(
                "regime.volatility_multiplier",
                "must be between 0.1 and 20 (3 = stressed volatility three times the calm one)",
            ));
        }
        if !(-50.0..=50.0).contains(&self.stressed_drift) {
            return Err(invalid(
                "regime.stressed_drift",
                "must be between -50 and 50 (annualised: -2 = -200 %/year)",
            ));
        }
        if matches!(price, PriceSpec::Csv { .. }) {
            return Err(invalid(
                "regime",
                "applies to generated paths; a CSV path carries its own regimes (its block bootstrap keeps them)",
            ));
        }
        Ok(())
    }
}

/// One trader of a given book: its margin and the position it opens at step 0's price.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BookEntry {
    /// A market of the scenario's `[[markets]]`.
    pub market: String,
    /// Long or short.
    pub side: Side,
    /// Margin in USD.
    pub collateral: f64,
    /// Notional / margin.
    pub leverage: f64,
}

/// A position's side.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Profits when the price rises.
    Long,
    /// Profits when the price falls.
    Short,
}

/// What a liquidation costs a keeper in gas, step by step — a model in the harness of what keepers pay (the
/// venue has no gas rule). At a step the cost is `liquidators.gas_cost_usd` times
/// `1 + move_sensitivity × m` (m: the step's largest price move across markets, in percent — gas prices
/// rise with volatility, as they do on a chain during a crash) times the multiplier of every spike window
/// the step is in. A keeper passes up a liquidation whose reward is below the step's cost, so a spike over
/// a crash holds liquidations back while losses grow. Unset: the cost is `gas_cost_usd` at every step.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GasSpec {
    /// Cost multiplier per percent of the step's largest price move (0: none).
    #[serde(default)]
    pub move_sensitivity: f64,
    /// Windows of a fixed multiplier (congestion, an airdrop, a mempool war).
    #[serde(default)]
    pub spikes: Vec<GasSpike>,
}

/// A gas spike: from `from_step`, for `steps` steps, the keepers' cost is `multiplier` times higher.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GasSpike {
    /// The first step of the spike.
    pub from_step: u32,
    /// How many steps it lasts.
    pub steps: u32,
    /// How many times higher the keepers' gas cost is during it.
    pub multiplier: f64,
}

impl GasSpec {
    /// The cost multiplier at `step`, whose largest price move is `move_percent` (of either sign).
    pub fn multiplier(&self, step: u32, move_percent: f64) -> f64 {
        let windows: f64 = self
            .spikes
            .iter()
            .filter(|s| step >= s.from_step && (step - s.from_step) < s.steps)
            .map(|s| s.multiplier)
            .product();
        (1.0 + self.move_sensitivity * move_percent.abs()) * windows
    }

    fn validate(&self, steps: u32) -> Result<(), ScenarioError> {
        if !(0.0..=1000.0).contains(&self.move_sensitivity) {
            return Err(invalid(
                "gas.move_sensitivity",
                "must be between 0 and 1000 (the cost's rise per percent of price move)",
            ));
        }
        for (i, s) in self.spikes.iter().enumerate() {
            if !(1.0..=1e6).contains(&s.multiplier) {
                return Err(invalid(
                    &format!("gas.spikes[{i}].multiplier"),
                    "must be between 1 and 1e6 (50 = fifty times the usual cost)",
                ));
            }
            if s.steps == 0 || s.from_step as u64 + s.steps as u64 > steps as u64 + 1 {
                return Err(invalid(
                    &format!("gas.spikes[{i}].steps"),
                    "the spike must last at least a step and end within the run",
                ));
            }
        }
        Ok(())
    }
}

/// Venue funds at the start.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VenueSpec {
    /// Insurance fund in USD.
    pub insurance_fund: f64,
}

impl Default for VenueSpec {
    fn default() -> Self {
        Self {
            insurance_fund: 50_000.0,
        }
    }
}

/// Microseconds one trader-step takes on revm, for the size warning (measured: `keyscope sim run
/// scenarios/crash-30pct.toml`, 60 traders x 121 steps in 0.19–0.25 s on the README's 2-core machine).
const MICROS_PER_TRADER_STEP: f64 = 30.0;
/// Trader-steps past which a run is worth a warning (~5 minutes on revm).
const LARGE_RUN_TRADER_STEPS: u64 = 10_000_000;

impl Scenario {
    /// A warning with an estimate of the run's time, if it is large (traders x steps past ~5 minutes on
    /// revm; anvil is two orders of magnitude slower).
    pub fn size_warning(&self) -> Option<String> {
        let trader_steps = self.traders.count as u64 * (self.steps as u64 + 1);
        (trader_steps > LARGE_RUN_TRADER_STEPS).then(|| {
            let secs = trader_steps as f64 * MICROS_PER_TRADER_STEP / 1e6;
            format!(
                "{} traders x {} steps = {trader_steps} trader-steps: about {} on revm at {MICROS_PER_TRADER_STEP} µs \
                 each, far longer on anvil; fewer traders or steps give the same shape sooner",
                self.traders.count,
                self.steps,
                human_duration(secs)
            )
        })
    }

    /// Reads and checks a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let s = Self::parse(&text).map_err(|e| match e {
            ScenarioError::Parse { message, .. } => ScenarioError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        Ok(s)
    }

    /// Parses and checks scenario TOML.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: "scenario".into(),
            message: e.to_string(),
        })?;
        s.count_the_book()?;
        s.validate()?;
        Ok(s)
    }

    /// With a `[[book]]`, the traders are its entries: the count is the book's (a different count given is
    /// refused) and drawing ranges are refused (they would be ignored).
    fn count_the_book(&mut self) -> Result<(), ScenarioError> {
        if self.book.is_empty() {
            return Ok(());
        }
        let t = &self.traders;
        let listed = self.book.len() as u32;
        if t.count != 0 && t.count != listed {
            return Err(invalid(
                "traders.count",
                format!(
                    "is {} but [[book]] lists {listed} traders (leave count out with a book)",
                    t.count
                ),
            ));
        }
        if [
            t.collateral_min,
            t.collateral_max,
            t.leverage_min,
            t.leverage_max,
        ] != [0.0; 4]
        {
            return Err(invalid(
                "traders.collateral_min",
                "the traders come from [[book]]: leave the drawing ranges (collateral_min/max, \
                 leverage_min/max) out",
            ));
        }
        self.traders.count = listed;
        Ok(())
    }

    /// Each `[[book]]` entry on a listed market, with margin and leverage the venue can open.
    fn validate_book(&self) -> Result<(), ScenarioError> {
        if self.book.len() > 10_000 {
            return Err(invalid("book", "must list at most 10000 traders"));
        }
        if !self.book.is_empty() && self.monte_carlo.book == BookMode::Random {
            return Err(invalid(
                "monte_carlo.book",
                "a [[book]] is given position by position: there is nothing to draw at random (use fixed)",
            ));
        }
        for (i, e) in self.book.iter().enumerate() {
            let Some(m) = self.markets.iter().find(|m| m.name == e.market) else {
                return Err(invalid(
                    &format!("book[{i}].market"),
                    format!("{:?} is not one of the scenario's markets", e.market),
                ));
            };
            if !(10.0..=1e9).contains(&e.collateral) {
                return Err(invalid(
                    &format!("book[{i}].collateral"),
                    "must be between 10 and 1e9 (USD)",
                ));
            }
            let most = (1.0 / m.risk().0).min(19.0);
            if !(e.leverage >= 0.1 && e.leverage < most) {
                return Err(invalid(
                    &format!("book[{i}].leverage"),
                    format!("must be at least 0.1 and below {most:.1} for {}", m.name),
                ));
            }
        }
        Ok(())
    }

    /// Checks the scenario again after a caller changed it (a CLI flag over a file's option, e.g.
    /// `monte_carlo.target_error`): the same refusals, by field, as loading it.
    pub fn check(&self) -> Result<(), ScenarioError> {
        self.validate()
    }

    /// Every field's range, each refused by name. One check per field — a list, so it runs past 100 lines.
    fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if !(1..=100_000).contains(&self.steps) {
            return Err(invalid("steps", "must be between 1 and 100000"));
        }
        if !(1..=86_400).contains(&self.step_seconds) {
            return Err(invalid(
                "step_seconds",
                "must be between 1 and 86400 (prices go stale after 120 s of chain time between updates, which the runner publishes every step)",
            ));
        }
        if self.markets.is_empty() || self.markets.len() > 2 {
            return Err(invalid("markets", "list one or two markets (BTC, ETH)"));
        }
        for (i, m) in self.markets.iter().enumerate() {
            let f = |name: &str| format!("markets[{i}].{name}");
            if !["BTC", "ETH"].contains(&m.name.as_str()) {
                return Err(invalid(
                    &f("name"),
                    format!("{:?} is not a listed market; allowed: BTC, ETH", m.name),
                ));
            }
            if self.markets[..i].iter().any(|o| o.name == m.name) {
                return Err(invalid(
                    &f("name"),
                    format!("{} is listed twice; list each market once", m.name),
                ));
            }
            for (name, value) in [
                ("imf", m.imf),
                ("mmf", m.mmf),
                ("taker_fee", m.taker_fee),
                ("liquidation_penalty", m.liquidation_penalty),
            ] {
                if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
                    return Err(invalid(
                        &f(name),
                        format!("must be a fraction between 0 and 1 (0.05 = 5 %), not {v}"),
                    ));
                }
            }
            if !(m.start_price >= 0.01 && m.start_price < 1e12) {
                return Err(invalid(
                    &f("start_price"),
                    "must be a USD price from 0.01 (a cent, the path's resolution) to below 1e12",
                ));
            }
            if !(0.0..=10.0).contains(&m.volatility) {
                return Err(invalid(
                    &f("volatility"),
                    "must be between 0 and 10 (annualised, 0.6 = 60 %)",
                ));
            }
            if !(-10.0..=10.0).contains(&m.drift) {
                return Err(invalid(
                    &f("drift"),
                    "must be between -10 and 10 (annualised)",
                ));
            }
            let (imf, mmf, fee, penalty) = m.risk();
            if !(mmf > 0.0 && mmf < imf && imf <= 1.0) {
                return Err(invalid(&f("mmf"), "need 0 < mmf < imf <= 1"));
            }
            if !(0.0..mmf).contains(&penalty) {
                return Err(invalid(
                    &f("liquidation_penalty"),
                    "must be at least 0 and below mmf",
                ));
            }
            if !(0.0..mmf).contains(&fee) {
                return Err(invalid(&f("taker_fee"), "must be at least 0 and below mmf"));
            }
            if m.imf.is_some() && self.traders.leverage_max >= 1.0 / imf {
                return Err(invalid(
                    "traders.leverage_max",
                    format!("must stay below 1 / imf = {:.1} for {}", 1.0 / imf, m.name),
                ));
            }
        }
        match &self.price {
            PriceSpec::Gbm => {}
            PriceSpec::Crash {
                percent,
                start_step,
                over_steps,
            } => {
                if !(0.0..100.0).contains(percent) {
                    return Err(invalid("price.percent", "must be between 0 and 100"));
                }
                if *over_steps == 0 || *start_step as u64 + *over_steps as u64 > self.steps as u64 {
                    return Err(invalid(
                        "price.over_steps",
                        "must be at least 1 and end within the run (start_step + over_steps <= steps)",
                    ));
                }
            }
            PriceSpec::Jumps {
                probability,
                percent,
                common_probability,
            } => {
                if !(0.0..=1.0).contains(probability) {
                    return Err(invalid("price.probability", "must be between 0 and 1"));
                }
                if !(0.0..=1.0).contains(common_probability) {
                    return Err(invalid(
                        "price.common_probability",
                        "must be between 0 and 1",
                    ));
                }
                if !(0.0..100.0).contains(percent) {
                    return Err(invalid("price.percent", "must be between 0 and 100"));
                }
            }
            PriceSpec::Csv { path, block_steps } => {
                if path.is_empty() {
                    return Err(invalid("price.path", "name a CSV file"));
                }
                if !(1..=self.steps).contains(block_steps) {
                    return Err(invalid(
                        "price.block_steps",
                        "must be between 1 and steps (the length of the blocks Monte Carlo resamples)",
                    ));
                }
            }
        }
        if let Some(c) = &self.correlation {
            if c.len() != self.markets.len() {
                return Err(invalid(
                    "correlation",
                    format!(
                        "must have one row per market ({}), in the order of [[markets]]",
                        self.markets.len()
                    ),
                ));
            }
            crate::prices::cholesky(c).map_err(|m| invalid("correlation", m))?;
        }
        self.validate_events()?;
        self.validate_book()?;
        let t = &self.traders;
        if !(1..=10_000).contains(&t.count) {
            return Err(invalid("traders.count", "must be between 1 and 10000"));
        }
        if self.book.is_empty()
            && !(t.collateral_min >= 10.0
                && t.collateral_min <= t.collateral_max
                && t.collateral_max <= 1e9)
        {
            return Err(invalid(
                "traders.collateral_min",
                "need 10 <= collateral_min <= collateral_max <= 1e9 (USD)",
            ));
        }
        if self.book.is_empty()
            && !(t.leverage_min >= 0.1
                && t.leverage_min <= t.leverage_max
                && t.leverage_max <= 19.0)
        {
            return Err(invalid(
                "traders.leverage_min",
                "need 0.1 <= leverage_min <= leverage_max <= 19 (IMF is 5 %, and opening keeps a reserve)",
            ));
        }
        if !(0.0..=1.0).contains(&t.long_fraction) {
            return Err(invalid("traders.long_fraction", "must be between 0 and 1"));
        }
        if let Some(l) = t.key_max_leverage {
            if !(l > 0.0 && l <= 655.0) {
                return Err(invalid(
                    "traders.key_max_leverage",
                    "must be above 0 and at most 655 (10 = 10x)",
                ));
            }
        }
        if let Some(d) = t.key_max_drawdown {
            if !(d > 0.0 && d < 1.0) {
                return Err(invalid(
                    "traders.key_max_drawdown",
                    "must be a fraction between 0 and 1 (0.1 = 10 % below the high-water mark)",
                ));
            }
        }
        if !(t.add_fraction > 0.0 && t.add_fraction <= 1.0) {
            return Err(invalid(
                "traders.add_fraction",
                "must be above 0 and at most 1 (a share of the opening order)",
            ));
        }
        let m = &self.margin_calls;
        if !(0.0..=1.0).contains(&m.answer_probability) {
            return Err(invalid(
                "margin_calls.answer_probability",
                "must be between 0 and 1",
            ));
        }
        if m.delay_steps > self.steps {
            return Err(invalid(
                "margin_calls.delay_steps",
                "must be at most steps (an answer later than the run never comes)",
            ));
        }
        if !(m.fraction > 0.0 && m.fraction <= 1.0) {
            return Err(invalid(
                "margin_calls.fraction",
                "must be above 0 and at most 1",
            ));
        }
        if !(1..=100).contains(&self.liquidators.count) {
            return Err(invalid("liquidators.count", "must be between 1 and 100"));
        }
        if !(0.0..=10_000.0).contains(&self.liquidators.gas_cost_usd) {
            return Err(invalid(
                "liquidators.gas_cost_usd",
                "must be between 0 and 10000 (USD per liquidation transaction)",
            ));
        }
        self.gas.validate(self.steps)?;
        if let Some(r) = &self.regime {
            r.validate(&self.price)?;
        }
        if let Some(i) = &self.impact {
            if !(i.depth_usd >= 1.0 && i.depth_usd <= 1e15) {
                return Err(invalid(
                    "impact.depth_usd",
                    "must be between 1 and 1e15 (USD notional)",
                ));
            }
            if !(0.0..=10.0).contains(&i.coefficient) {
                return Err(invalid("impact.coefficient", "must be between 0 and 10"));
            }
        }
        let mc = &self.monte_carlo;
        if let Some(t) = mc.target_error.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(invalid(
                "monte_carlo.target_error",
                format!("must be a positive USD half-width (1000 = ±$1,000), not {t}"),
            ));
        }
        if !(1..=1_000_000).contains(&mc.max_paths) {
            return Err(invalid(
                "monte_carlo.max_paths",
                "must be between 1 and 1000000",
            ));
        }
        if !(self.venue.insurance_fund >= 0.0 && self.venue.insurance_fund <= 1e9) {
            return Err(invalid(
                "venue.insurance_fund",
                "must be between 0 and 1e9 (USD)",
            ));
        }
        Ok(())
    }
}

impl Scenario {
    /// Funding changes, gaps and the oracle outage: each within the run and on a listed market.
    fn validate_events(&self) -> Result<(), ScenarioError> {
        let listed = |m: &str| self.markets.iter().any(|x| x.name == m);
        for (i, f) in self.funding.iter().enumerate() {
            if !listed(&f.market) {
                return Err(invalid(
                    &format!("funding[{i}].market"),
                    format!("{:?} is not one of the scenario's markets", f.market),
                ));
            }
            if f.from_step > self.steps {
                return Err(invalid(
                    &format!("funding[{i}].from_step"),
                    "must be within the run (at most steps)",
                ));
            }
            if !(-MAX_FUNDING_RATE_PER_HOUR..=MAX_FUNDING_RATE_PER_HOUR).contains(&f.rate_per_hour)
            {
                return Err(invalid(
                    &format!("funding[{i}].rate_per_hour"),
                    format!(
                        "must be between -{MAX_FUNDING_RATE_PER_HOUR} and {MAX_FUNDING_RATE_PER_HOUR} (the venue's limit: 0.01 % an hour)"
                    ),
                ));
            }
        }
        for (i, g) in self.gaps.iter().enumerate() {
            if matches!(self.price, PriceSpec::Csv { .. }) {
                return Err(invalid(
                    &format!("gaps[{i}]"),
                    "a CSV price path carries its own gaps; put them in the file",
                ));
            }
            if !(1..=self.steps).contains(&g.step) {
                return Err(invalid(
                    &format!("gaps[{i}].step"),
                    "must be between 1 and steps",
                ));
            }
            if !(g.percent > -100.0 && g.percent <= 1000.0) {
                return Err(invalid(
                    &format!("gaps[{i}].percent"),
                    "must be above -100 and at most 1000 (-12 = a 12 % gap down)",
                ));
            }
            if let Some(m) = g.market.as_deref().filter(|m| !listed(m)) {
                return Err(invalid(
                    &format!("gaps[{i}].market"),
                    format!("{m:?} is not one of the scenario's markets"),
                ));
            }
        }
        if self.oracle.stale_from_step.is_none() && self.oracle.stale_steps > 0 {
            return Err(invalid(
                "oracle.stale_from_step",
                "must be set when oracle.stale_steps is (the step the outage starts, 1 or later)",
            ));
        }
        if let Some(from) = self.oracle.stale_from_step {
            if from == 0
                || self.oracle.stale_steps == 0
                || from as u64 + self.oracle.stale_steps as u64 > self.steps as u64 + 1
            {
                return Err(invalid(
                    "oracle.stale_steps",
                    "the outage must start at step 1 or later, last at least a step and end within the run",
                ));
            }
        }
        Ok(())
    }
}

/// "7.0 h", "12 min", "40 s".
fn human_duration(secs: f64) -> String {
    match secs {
        s if s >= 3600.0 => format!("{:.1} h", s / 3600.0),
        s if s >= 60.0 => format!("{:.0} min", s / 60.0),
        s => format!("{s:.0} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "t"
        seed = 1
        steps = 10
        step_seconds = 30
        [[markets]]
        name = "BTC"
        start_price = 60000
        volatility = 0.6
        [price]
        kind = "crash"
        percent = 30
        start_step = 2
        over_steps = 5
        [traders]
        count = 3
        collateral_min = 1000
        collateral_max = 2000
        leverage_min = 2
        leverage_max = 10
    "#;

    #[test]
    fn parses_a_scenario() {
        let s = Scenario::parse(GOOD).unwrap();
        assert_eq!(
            s.price,
            PriceSpec::Crash {
                percent: 30.0,
                start_step: 2,
                over_steps: 5
            }
        );
        assert_eq!(s.traders.long_fraction, 0.5);
        assert_eq!(s.liquidators.count, 1);
    }

    #[test]
    fn market_risk_parameters() {
        let s = Scenario::parse(
            &GOOD
                .replace("volatility = 0.6", "volatility = 0.6\nimf = 0.2\nmmf = 0.1")
                .replace("leverage_max = 10", "leverage_max = 4"),
        )
        .unwrap();
        assert_eq!(s.markets[0].risk(), (0.2, 0.1, 0.0005, 0.01));
        assert!(s.markets[0].overrides_risk());
        let e = Scenario::parse(&GOOD.replace(
            "volatility = 0.6",
            "volatility = 0.6\nimf = 0.02\nmmf = 0.03",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("markets[0].mmf"), "{e}");
        let e = Scenario::parse(
            &GOOD
                .replace("volatility = 0.6", "volatility = 0.6\nimf = 0.2\nmmf = 0.1")
                .replace("leverage_max = 10", "leverage_max = 6"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("traders.leverage_max") && e.contains("5.0"),
            "{e}"
        );
    }

    #[test]
    fn bad_markets_and_keepers_are_named() {
        let twice = GOOD.replace(
            "[price]",
            "[[markets]]\nname = \"BTC\"\nstart_price = 1\nvolatility = 0.1\n[price]",
        );
        let e = Scenario::parse(&twice).unwrap_err().to_string();
        assert!(
            e.starts_with("markets[1].name") && e.contains("twice"),
            "{e}"
        );
        let nan = GOOD.replace("volatility = 0.6", "volatility = 0.6\nimf = nan");
        let e = Scenario::parse(&nan).unwrap_err().to_string();
        assert!(e.starts_with("markets[0].imf") && e.contains("NaN"), "{e}");
        let costly = GOOD.replace(
            "leverage_max = 10",
            "leverage_max = 10\n[liquidators]\ncount = 1\ngas_cost_usd = -1",
        );
        let e = Scenario::parse(&costly).unwrap_err().to_string();
        assert!(e.starts_with("liquidators.gas_cost_usd"), "{e}");
        // The same file with a keeper cost in range parses (positive control).
        let ok = costly.replace("gas_cost_usd = -1", "gas_cost_usd = 2.5");
        assert_eq!(Scenario::parse(&ok).unwrap().liquidators.gas_cost_usd, 2.5);
    }

    #[test]
    fn funding_gaps_and_outages_are_checked_by_field() {
        let with = |extra: &str| Scenario::parse(&format!("{GOOD}\n{extra}"));
        let ok = with(
            "[[funding]]\nmarket = \"BTC\"\nfrom_step = 2\nrate_per_hour = 0.0001\n\
             [[gaps]]\nstep = 4\npercent = -12\n[oracle]\nstale_from_step = 3\nstale_steps = 5",
        )
        .unwrap();
        assert!(!ok.oracle.is_stale(2) && ok.oracle.is_stale(3) && ok.oracle.is_stale(7));
        assert!(!ok.oracle.is_stale(8));
        for (extra, field) in [
            (
                "[[funding]]\nmarket = \"ETH\"\nfrom_step = 2\nrate_per_hour = 0",
                "funding[0].market",
            ),
            (
                "[[funding]]\nmarket = \"BTC\"\nfrom_step = 2\nrate_per_hour = 0.01",
                "funding[0].rate_per_hour",
            ),
            (
                "[[funding]]\nmarket = \"BTC\"\nfrom_step = 11\nrate_per_hour = 0",
                "funding[0].from_step",
            ),
            ("[[gaps]]\nstep = 0\npercent = -12", "gaps[0].step"),
            ("[[gaps]]\nstep = 3\npercent = -100", "gaps[0].percent"),
            (
                "[[gaps]]\nstep = 3\npercent = 5\nmarket = \"SOL\"",
                "gaps[0].market",
            ),
            (
                "[oracle]\nstale_from_step = 8\nstale_steps = 5",
                "oracle.stale_steps",
            ),
            // An outage with no start was silently ignored: now refused by the field it lacks.
            ("[oracle]\nstale_steps = 5", "oracle.stale_from_step"),
            // Past u32 when added: refused, not an overflow.
            (
                "[oracle]\nstale_from_step = 4294967295\nstale_steps = 5",
                "oracle.stale_steps",
            ),
        ] {
            let e = with(extra).unwrap_err().to_string();
            assert!(e.starts_with(field), "{extra}: {e}");
        }
    }

    #[test]
    fn steps_that_would_overflow_are_refused_by_field() {
        let e = Scenario::parse(&GOOD.replace("start_step = 2", "start_step = 4294967295"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("price.over_steps"), "{e}");
        let e = Scenario::parse(&format!(
            "{GOOD}\n[margin_calls]\nanswer_probability = 1\ndelay_steps = 4294967295\nanswer = \"reduce\"\nfraction = 0.5"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("margin_calls.delay_steps"), "{e}");
        let ok = format!(
            "{GOOD}\n[margin_calls]\nanswer_probability = 1\ndelay_steps = 10\nanswer = \"reduce\"\nfraction = 0.5"
        );
        assert_eq!(Scenario::parse(&ok).unwrap().margin_calls.delay_steps, 10);
    }

    #[test]
    fn a_changed_scenario_is_checked_again() {
        let mut s = Scenario::parse(GOOD).unwrap();
        s.monte_carlo.target_error = Some(0.0);
        let e = s.check().unwrap_err().to_string();
        assert!(e.starts_with("monte_carlo.target_error"), "{e}");
        s.monte_carlo.target_error = Some(500.0);
        assert!(s.check().is_ok());
    }

    #[test]
    fn a_very_large_run_is_warned_about_with_an_estimate() {
        let huge = GOOD
            .replace("steps = 10", "steps = 100000")
            .replace("count = 3", "count = 10000");
        let s = Scenario::parse(&huge).unwrap();
        let w = s.size_warning().expect("a warning");
        assert!(
            w.contains("1000010000 trader-steps") && w.contains("8.3 h"),
            "{w}"
        );
        assert_eq!(Scenario::parse(GOOD).unwrap().size_warning(), None);
    }

    #[test]
    fn errors_name_the_field() {
        let bad = GOOD.replace("leverage_max = 10", "leverage_max = 50");
        let e = Scenario::parse(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("traders.leverage_min:") && e.contains("<= 19"),
            "{e}"
        );
        let bad = GOOD.replace("name = \"BTC\"", "name = \"SOL\"");
        let e = Scenario::parse(&bad).unwrap_err().to_string();
        assert!(
            e.contains("markets[0].name") && e.contains("allowed: BTC, ETH"),
            "{e}"
        );
        let bad = GOOD.replace("over_steps = 5", "over_steps = 50");
        assert!(
            Scenario::parse(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("price.over_steps")
        );
        let bad = GOOD.replace("seed = 1", "seed = 1\nsede = 2");
        let e = Scenario::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("unknown field `sede`"), "{e}");
        for (field, line) in [
            ("traders.key_max_drawdown", "key_max_drawdown = 1.5"),
            ("traders.key_max_leverage", "key_max_leverage = 0"),
            ("traders.add_fraction", "add_fraction = 0"),
        ] {
            let bad = GOOD.replace("leverage_max = 10", &format!("leverage_max = 10\n{line}"));
            let e = Scenario::parse(&bad).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
        let good = GOOD.replace(
            "leverage_max = 10",
            "leverage_max = 10\nkey_max_drawdown = 0.1\nadd_every_steps = 3",
        );
        let s = Scenario::parse(&good).unwrap();
        assert_eq!(s.traders.key_max_drawdown, Some(0.1));
        assert_eq!(s.traders.add_fraction, 0.25);
        let bad = GOOD.replace("kind = \"crash\"", "kind = \"moon\"");
        assert!(
            Scenario::parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("moon")
        );
    }

    #[test]
    fn the_keepers_gas_moves_with_the_market_and_in_spikes_and_bad_gas_is_named() {
        let s = Scenario::parse(&format!(
            "{GOOD}\n[gas]\nmove_sensitivity = 0.5\n\
             spikes = [{{ from_step = 3, steps = 2, multiplier = 40 }}, \
             {{ from_step = 4, steps = 1, multiplier = 2 }}]\n"
        ))
        .unwrap();
        let g = &s.gas;
        assert_eq!(g.multiplier(0, 0.0), 1.0);
        assert_eq!(g.multiplier(1, -4.0), 3.0, "a 4 % fall: 1 + 0.5 x 4");
        assert_eq!(g.multiplier(3, 0.0), 40.0);
        assert_eq!(
            g.multiplier(4, 2.0),
            2.0 * 40.0 * 2.0,
            "windows overlap: both apply"
        );
        assert_eq!(
            g.multiplier(5, 0.0),
            1.0,
            "the first window is two steps long"
        );
        assert_eq!(Scenario::parse(GOOD).unwrap().gas.multiplier(7, 30.0), 1.0);
        for (gas, field) in [
            ("move_sensitivity = -1", "gas.move_sensitivity"),
            ("move_sensitivity = nan", "gas.move_sensitivity"),
            (
                "spikes = [{ from_step = 1, steps = 1, multiplier = 0.5 }]",
                "gas.spikes[0].multiplier",
            ),
            (
                "spikes = [{ from_step = 1, steps = 1, multiplier = inf }]",
                "gas.spikes[0].multiplier",
            ),
            (
                "spikes = [{ from_step = 1, steps = 0, multiplier = 2 }]",
                "gas.spikes[0].steps",
            ),
            (
                "spikes = [{ from_step = 9, steps = 5, multiplier = 2 }]",
                "gas.spikes[0].steps",
            ),
            ("spike = []", "unknown field `spike`"),
        ] {
            let e = Scenario::parse(&format!("{GOOD}\n[gas]\n{gas}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{gas}: {e}");
        }
    }

    #[test]
    fn a_book_given_position_by_position_sets_the_traders_and_bad_entries_are_named() {
        let head = GOOD.split("[traders]").next().unwrap();
        let book = "[[book]]\nmarket = \"BTC\"\nside = \"long\"\ncollateral = 5000\nleverage = 8\n\
                    [[book]]\nmarket = \"BTC\"\nside = \"short\"\ncollateral = 1200\nleverage = 2.5\n";
        let s = Scenario::parse(&format!("{head}{book}")).unwrap();
        assert_eq!(s.traders.count, 2, "the count is the book's");
        assert_eq!((s.book[1].side, s.book[1].leverage), (Side::Short, 2.5));
        let with_traders = format!("{head}[traders]\ncount = 2\nadd_every_steps = 3\n{book}");
        assert_eq!(
            Scenario::parse(&with_traders)
                .unwrap()
                .traders
                .add_every_steps,
            3
        );
        for (text, field) in [
            (
                format!("{head}[traders]\ncount = 3\n{book}"),
                "traders.count",
            ),
            (
                format!("{head}[traders]\nleverage_max = 4\n{book}"),
                "traders.collateral_min",
            ),
            (
                format!(
                    "{head}{}",
                    book.replace("\"BTC\"\nside = \"short", "\"SOL\"\nside = \"short")
                ),
                "book[1].market",
            ),
            (
                format!("{head}{}", book.replace("leverage = 8", "leverage = 20")),
                "book[0].leverage",
            ),
            (
                format!("{head}{}", book.replace("leverage = 8", "leverage = nan")),
                "book[0].leverage",
            ),
            (
                format!(
                    "{head}{}",
                    book.replace("collateral = 1200", "collateral = 5")
                ),
                "book[1].collateral",
            ),
            (
                format!("{head}{}", book.replace("side = \"long\"", "side = \"up\"")),
                "up",
            ),
            (
                format!("{head}{book}[monte_carlo]\nbook = \"random\"\n"),
                "monte_carlo.book",
            ),
            (head.to_string(), "traders.count"),
        ] {
            let e = Scenario::parse(&text).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }
}
