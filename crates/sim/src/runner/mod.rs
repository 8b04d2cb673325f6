//! The scenario runner: one loop, any backend. Each step the oracle publishes the path's prices, traders
//! who were margin-called answer (with a key scoped to add margin and reduce only), liquidator bots
//! sweep, and the step's numbers are recorded. Every trader action is a signed UserOp through
//! `EntryPoint.handleOps`.

use std::time::Instant;

use alloy::{signers::local::PrivateKeySigner, sol_types::SolCall};
use alloy_primitives::{Address, I256, U256, keccak256};
use keyscope_core::bindings::PerpVenue;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

mod book;
mod keeper;
mod open;

pub use book::LadderRung;
mod ops;

use crate::{
    backend::{Addresses, Backend, BackendError, OpResult},
    prices::{PricePath, wad_to_usd},
    scenario::Scenario,
};

const WAD: u128 = 1_000_000_000_000_000_000;

/// A trader: a trading key, and a margin key (deposit and reduce-only orders only); the owner key
/// signed only the first op.
#[derive(Clone)]
struct Trader {
    account: Address,
    trading: PrivateKeySigner,
    margin: PrivateKeySigner,
    reserve: U256,
    margin_called: bool,
    answer_at: Option<u32>,
    /// The opening order's market and size (adds repeat a share of it).
    market: u32,
    market_ix: usize,
    open_size: I256,
    /// The trading key's breaker has tripped.
    tripped: bool,
    /// Chain time of the margin call the account is in (cleared when healthy again or liquidated).
    called_at: Option<u64>,
    /// The keepers have liquidated the account at least once.
    liquidated: bool,
    /// Position sizes per scenario market as last read (None: read at the end of the next turn).
    sizes: Option<Vec<I256>>,
    /// Health (state, account value) read in a turn that ended flat with nothing done: it holds until the
    /// account acts, since a flat account's value is its collateral and only its own ops or a liquidation
    /// move that (none of which happens to a flat account that does nothing). Saves the read a closed-out
    /// account would repeat every step; debug builds re-read and check it.
    idle_health: Option<(usize, I256)>,
}

/// One step of the time series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepRecord {
    /// The step's index (0 is the opening prices).
    pub step: u32,
    /// Chain time at the step (unix seconds).
    pub time: u64,
    /// Each market's price at the step, USD, in scenario order.
    pub prices: Vec<f64>,
    /// Accounts by state after the step's liquidations; `healthy` holds only accounts with a position, and
    /// accounts with none are `closed`.
    pub healthy: u32,
    /// Accounts in margin call: below initial margin, at or above maintenance.
    pub margin_call: u32,
    /// Accounts below maintenance but not below zero: open to liquidation.
    pub liquidatable: u32,
    /// Accounts whose value is below zero.
    pub bankrupt: u32,
    /// Accounts with no position.
    pub closed: u32,
    /// Liquidatable and bankrupt accounts before the keepers' sweep (a gap shows here).
    pub liquidatable_before: u32,
    /// Bankrupt accounts before the keepers' sweep.
    pub bankrupt_before: u32,
    /// Open interest (USD notional) long and short; the pool holds the other side.
    pub long_oi: f64,
    /// Open interest (USD notional) short.
    pub short_oi: f64,
    /// Margin calls raised so far.
    pub margin_calls: u32,
    /// Liquidations so far.
    pub liquidations: u32,
    /// Notional liquidated so far, USD.
    pub liquidated_notional: f64,
    /// The venue's insurance fund, USD.
    pub insurance_fund: f64,
    /// Bad debt the venue has booked (liquidations that left an account below zero), USD.
    pub bad_debt: f64,
    /// Loss not yet booked: what accounts still open stand below zero after the step's liquidations, USD.
    /// `bad_debt + open_shortfall` is the step's loss.
    pub open_shortfall: f64,
    /// The venue's pool (the house: counterparty of every fill), USD; may be negative.
    pub pool: f64,
    /// No price was published this step (an oracle outage).
    pub oracle_stale: bool,
    /// What a liquidation cost a keeper in gas this step, USD (`liquidators.gas_cost_usd` moved by `[gas]`).
    pub keeper_gas_usd: f64,
}

/// Where one account ended: for comparing backends.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccountState {
    /// The account.
    pub account: Address,
    /// Its collateral at the venue, quote units.
    pub collateral: String,
    /// Its position size in each market, as (market id, size).
    pub positions: Vec<(u32, String)>,
    /// Account value at the last prices (collateral plus open PnL), quote units.
    pub account_value: String,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: String,
    /// The backend it ran on (`revm` or `anvil`).
    pub backend: String,
    /// The seed the run drew with.
    pub seed: u64,
    /// How many steps ran.
    pub steps: u32,
    /// How many traders took part.
    pub traders: u32,
    /// Margin calls raised.
    pub margin_calls: u32,
    /// Margin calls the traders answered.
    pub margin_calls_answered: u32,
    /// Liquidations that went through.
    pub liquidations: u32,
    /// Notional closed by liquidations, USD.
    pub liquidated_notional: f64,
    /// Bad debt the venue booked, USD.
    pub bad_debt: f64,
    /// The insurance fund at the start, USD.
    pub insurance_fund_start: f64,
    /// The insurance fund at the end, USD.
    pub insurance_fund_end: f64,
    /// The insurance fund at its lowest, USD.
    pub insurance_fund_min: f64,
    /// Adds the traders' trading keys sent (`add_every_steps`), those the keys' limits undid or refused,
    /// and the breakers that tripped.
    pub adds: u32,
    /// Adds the keys' limits undid or refused.
    pub adds_stopped: u32,
    /// Drawdown breakers that tripped.
    pub breaker_trips: u32,
    /// Liquidations keepers passed up because the reward would not cover their gas
    /// (`liquidators.gas_cost_usd`), counted per account, market and step.
    pub liquidations_unprofitable: u32,
    /// Bad debt not yet booked: what accounts still open end below zero (keepers left them, the reward not
    /// worth their gas), USD.
    pub open_shortfall: f64,
    /// The loss at its worst: the largest step loss (booked bad debt + open shortfall) over the run, USD,
    /// and the first step it was reached (the end value is `bad_debt + open_shortfall`).
    pub peak_loss: f64,
    /// The first step the peak loss was reached.
    pub peak_loss_step: u32,
    /// The pool's (the house's) profit from step 0 to the end, marked to market: its balance's change less
    /// the traders' open PnL (which the pool owes them, or is owed), less what accounts below zero cannot
    /// pay (the open shortfall), USD.
    pub pool_pnl: f64,
    /// Rewards the keepers were paid, and what they kept after their gas (each liquidation at its step's
    /// cost: `liquidators.gas_cost_usd` moved by `[gas]`), USD.
    pub keeper_rewards: f64,
    /// None where the keepers' gas is not modelled (the demo's keeper).
    pub keeper_profit: Option<f64>,
    /// Socialised loss, a harness-only model of auto-deleveraging (the venue books bad debt and
    /// deleverages no one): what the insurance fund cannot cover at the end — booked bad debt plus the
    /// open shortfall beyond the fund left — clawed back from the accounts in profit, pro rata to their open
    /// profit. `adl_haircut` is the share of that profit taken (0 to 1), `adl_uncovered` what their profit
    /// cannot cover (left to the pool), USD. See [`socialise`].
    pub socialised_loss: f64,
    /// The share of the winners' profit taken (0 to 1).
    pub adl_haircut: f64,
    /// What the winners' profit cannot cover (left to the pool), USD.
    pub adl_uncovered: f64,
    /// Seconds from each liquidated account's margin call to its first liquidation (mean, median, max;
    /// None if no liquidated account had a margin call), and accounts whose first liquidation came with no
    /// margin call before it (a gap through maintenance).
    pub margin_call_to_liquidation_secs: Option<(f64, f64, f64)>,
    /// Liquidated accounts with no margin call before their first liquidation.
    pub liquidated_unwarned: u32,
    /// Leverage of each opening position (notional / collateral), in trader order.
    pub leverage_at_open: Vec<f64>,
    /// Every opening position's liquidation price, nearest the start price first.
    pub liquidation_ladder: Vec<LadderRung>,
    /// Ops that executed successfully.
    pub ops_executed: u64,
    /// Ops whose execution failed.
    pub ops_failed: u64,
    /// Gas used by all ops.
    pub gas_used: u64,
    /// Wall-clock time of the run, seconds.
    pub wall_seconds: f64,
    /// Ops run per wall-clock second.
    pub ops_per_second: f64,
    /// The time series, one record per step.
    pub series: Vec<StepRecord>,
    /// Where each account ended.
    pub accounts: Vec<AccountState>,
}

/// Errors from a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The chain backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The run could not be set up as the scenario asks.
    #[error("{0}")]
    Setup(String),
}

fn key(seed: u64, i: u32, role: &str) -> PrivateKeySigner {
    let secret = keccak256(format!("keyscope-sim/{seed}/{i}/{role}"));
    PrivateKeySigner::from_bytes(&secret)
        .expect("a keccak output is a valid key with overwhelming probability")
}

/// Liquidator keys of a scenario (funded by the runner on either backend).
pub fn liquidator_keys(s: &Scenario) -> Vec<PrivateKeySigner> {
    (0..s.liquidators.count)
        .map(|i| key(s.seed, i, "liquidator"))
        .collect()
}

fn usd(amount: f64) -> U256 {
    U256::from((amount * 1e6).round() as u128)
}

fn quote_to_usd(v: I256) -> f64 {
    let abs = v.unsigned_abs().to::<u128>() as f64 / 1e6;
    if v.is_negative() { -abs } else { abs }
}

/// Runs the scenario with `path` on `backend`; `progress` is called after every step.
pub async fn run<B: Backend>(
    scenario: &Scenario,
    path: &PricePath,
    backend: &mut B,
    progress: impl FnMut(u32, u32),
) -> Result<Outcome, RunError> {
    let setup = set_up(scenario, path, backend).await?;
    run_from(scenario, path, backend, setup, progress).await
}

/// A run after its set-up: the risk parameters applied, step 0's prices published and every trader's
/// account deployed and its position opened. Nothing in it depends on the path past step 0, so on a fixed
/// book many paths that start at the same prices run from one set-up (on a forked chain).
#[derive(Clone)]
pub struct SetUp {
    traders: Vec<Trader>,
    tally: Tally,
    insurance_start: f64,
    /// The runner's draws so far (margin-call answers continue them).
    rng: ChaCha8Rng,
    ops: (u64, u64, u64),
    ladder: Vec<LadderRung>,
    /// Step 0's prices, as published.
    start_prices: Vec<U256>,
    setup_seconds: f64,
}

impl SetUp {
    /// Step 0's prices the set-up published: only a path that starts at them can run from it.
    pub fn start_prices(&self) -> &[U256] {
        &self.start_prices
    }
}

/// The set-up of a run of `scenario` with `path` on `backend` (see [`SetUp`]).
pub async fn set_up<B: Backend>(
    scenario: &Scenario,
    path: &PricePath,
    backend: &mut B,
) -> Result<SetUp, RunError> {
    let started = Instant::now();
    let mut r = Run::new(scenario, path, backend);
    r.prepare().await?;
    let insurance_start = r.insurance().await?;
    let tally = Tally::new(insurance_start);
    let traders = r.open_traders().await?;
    Ok(SetUp {
        traders,
        tally,
        insurance_start,
        rng: r.rng,
        ops: r.ops,
        ladder: r.ladder,
        start_prices: path.prices[0].clone(),
        setup_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs the steps of `path` from `setup`, a set-up on this `backend`'s chain (or on the chain it was
/// forked from); `path` must start at the set-up's prices. The outcome equals [`run`]'s with this path.
pub async fn run_from<B: Backend>(
    scenario: &Scenario,
    path: &PricePath,
    backend: &mut B,
    setup: SetUp,
    mut progress: impl FnMut(u32, u32),
) -> Result<Outcome, RunError> {
    if path.prices.first() != Some(&setup.start_prices) {
        return Err(RunError::Setup(
            "this price path does not start at the prices the set-up opened at".into(),
        ));
    }
    let started = Instant::now();
    let SetUp {
        mut traders,
        mut tally,
        insurance_start,
        rng,
        ops,
        ladder,
        setup_seconds,
        ..
    } = setup;
    let mut r = Run::new(scenario, path, backend);
    (r.rng, r.ops, r.ladder) = (rng, ops, ladder);
    let mut series = Vec::new();
    for step in 0..=scenario.steps {
        series.push(r.step(step, &mut traders, &mut tally).await?);
        progress(step, scenario.steps);
    }
    let accounts = r.accounts(&traders).await?;
    let open_shortfall = accounts
        .iter()
        .filter_map(|a| a.account_value.parse::<I256>().ok())
        .filter(|v| v.is_negative())
        .map(|v| -quote_to_usd(v))
        .fold(0.0, |sum, v| sum + v);
    let last = series.last().cloned().expect("at least step 0");
    let (peak_loss_step, peak_loss) = peak_loss(&series);
    // Each account's open PnL (value less collateral), read once for the pool's PnL and the winners'.
    let pnls: Vec<f64> = accounts
        .iter()
        .filter_map(|a| {
            let value = a.account_value.parse::<I256>().ok()?;
            let collateral = a.collateral.parse::<I256>().ok()?;
            Some(quote_to_usd(value - collateral))
        })
        .collect();
    let open_pnl: f64 = pnls.iter().fold(0.0, |sum, v| sum + v);
    // Open PnL beyond an account's collateral (its shortfall) the pool cannot collect.
    let pool_pnl = last.pool - series[0].pool - open_pnl - open_shortfall;
    let winners_profit: f64 = pnls
        .iter()
        .filter(|pnl| **pnl > 0.0)
        .fold(0.0, |sum, v| sum + v);
    let socialised_loss = last.bad_debt + (open_shortfall - last.insurance_fund).max(0.0);
    let (adl_haircut, adl_uncovered) = socialise(socialised_loss, winners_profit);
    let keeper_rewards = r.keeper_rewards().await?;
    let keeper_profit = keeper_rewards - tally.keeper_gas_usd;
    let mut ladder = std::mem::take(&mut r.ladder);
    let leverage_at_open = ladder.iter().map(|l| l.leverage).collect();
    ladder.sort_by(|a, b| {
        let gap = |l: &LadderRung| (l.entry_price - l.liquidation_price).abs() / l.entry_price;
        gap(a).total_cmp(&gap(b))
    });
    let wall = setup_seconds + started.elapsed().as_secs_f64();
    let ops = r.ops;
    Ok(Outcome {
        scenario: scenario.name.clone(),
        backend: r.backend.name().to_string(),
        seed: scenario.seed,
        steps: scenario.steps,
        traders: scenario.traders.count,
        margin_calls: tally.margin_calls,
        margin_calls_answered: tally.answered,
        liquidations: tally.liquidations,
        liquidated_notional: tally.liquidated_notional,
        bad_debt: last.bad_debt,
        insurance_fund_start: insurance_start,
        insurance_fund_end: last.insurance_fund,
        insurance_fund_min: tally.insurance_min,
        adds: tally.adds,
        adds_stopped: tally.adds_stopped,
        breaker_trips: tally.breaker_trips,
        liquidations_unprofitable: tally.unprofitable,
        open_shortfall,
        peak_loss,
        peak_loss_step,
        pool_pnl,
        keeper_rewards,
        keeper_profit: Some(keeper_profit),
        socialised_loss,
        adl_haircut,
        adl_uncovered,
        margin_call_to_liquidation_secs: spread(&tally.warned_secs),
        liquidated_unwarned: tally.unwarned,
        leverage_at_open,
        liquidation_ladder: ladder,
        ops_executed: ops.0,
        ops_failed: ops.1,
        gas_used: ops.2,
        wall_seconds: wall,
        ops_per_second: if wall > 0.0 { ops.0 as f64 / wall } else { 0.0 },
        series,
        accounts,
    })
}

/// Running totals over the steps.
#[derive(Clone)]
struct Tally {
    margin_calls: u32,
    answered: u32,
    liquidations: u32,
    liquidated_notional: f64,
    insurance_min: f64,
    adds: u32,
    adds_stopped: u32,
    breaker_trips: u32,
    /// Liquidations keepers passed up: the reward would not cover their gas.
    unprofitable: u32,
    /// What the keepers' liquidations cost them in gas, USD.
    keeper_gas_usd: f64,
    /// Seconds from an account's margin call to its first liquidation, per liquidated account.
    warned_secs: Vec<u64>,
    /// Accounts liquidated with no margin call before (a gap through maintenance).
    unwarned: u32,
}

impl Tally {
    fn new(insurance_start: f64) -> Self {
        Self {
            margin_calls: 0,
            answered: 0,
            liquidations: 0,
            liquidated_notional: 0.0,
            insurance_min: insurance_start,
            adds: 0,
            adds_stopped: 0,
            breaker_trips: 0,
            unprofitable: 0,
            keeper_gas_usd: 0.0,
            warned_secs: Vec::new(),
            unwarned: 0,
        }
    }
}

/// One run in progress: the scenario, the backend and what the steps share.
struct Run<'a, B: Backend> {
    scenario: &'a Scenario,
    path: &'a PricePath,
    backend: &'a mut B,
    a: Addresses,
    chain_id: u64,
    /// The scenario's markets' ids, in its order.
    markets: Vec<u32>,
    rng: ChaCha8Rng,
    /// Ops executed, failed, and gas used.
    ops: (u64, u64, u64),
    /// Each opening position's liquidation price, as opened.
    ladder: Vec<LadderRung>,
    /// The oracle's prices: the last ones published (the path's, except in an outage).
    marks: Vec<U256>,
    /// Price impact so far, per market (a multiplier on the path; 1 without `[impact]`), and the step's
    /// liquidation flow (USD notional, positive when longs are sold).
    impact: Vec<f64>,
    flow: Vec<f64>,
    /// What a liquidation costs a keeper at the current step, USD.
    keeper_gas_usd: f64,
}

impl<'a, B: Backend> Run<'a, B> {
    fn new(scenario: &'a Scenario, path: &'a PricePath, backend: &'a mut B) -> Self {
        let markets = scenario
            .markets
            .iter()
            .map(|m| match m.name.as_str() {
                "BTC" => 0,
                _ => 1,
            })
            .collect();
        Self {
            a: backend.addresses().clone(),
            chain_id: backend.chain_id(),
            scenario,
            path,
            backend,
            markets,
            rng: ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x5EED),
            ops: (0, 0, 0),
            ladder: Vec::new(),
            marks: path.prices[0].clone(),
            impact: vec![1.0; path.markets.len()],
            flow: vec![0.0; path.markets.len()],
            keeper_gas_usd: scenario.liquidators.gas_cost_usd,
        }
    }

    fn count(&mut self, r: OpResult) {
        if r.success {
            self.ops.0 += 1;
        } else {
            self.ops.1 += 1;
        }
        self.ops.2 += r.gas_used;
    }

    async fn insurance(&mut self) -> Result<f64, RunError> {
        let v = self
            .backend
            .view(self.a.venue, &PerpVenue::insuranceFundCall {})
            .await?;
        Ok(wad_quote(v))
    }

    /// `account`'s health state and account value (collateral plus open PnL, quote units).
    async fn health_state(&mut self, account: Address) -> Result<(usize, I256), RunError> {
        let h = self
            .backend
            .view(self.a.venue, &PerpVenue::healthCall { account })
            .await?;
        Ok((h.state as usize, h.accountValue))
    }

    async fn position(&mut self, account: Address, market: u32) -> Result<I256, RunError> {
        let call = PerpVenue::positionCall {
            account,
            marketId: market,
        };
        Ok(self.backend.view(self.a.venue, &call).await?.size)
    }

    /// Sets the funding rates the scenario changes at `step`.
    async fn set_funding(&mut self, step: u32) -> Result<(), RunError> {
        for f in self.scenario.funding.iter().filter(|f| f.from_step == step) {
            let ix = self
                .scenario
                .markets
                .iter()
                .position(|m| m.name == f.market)
                .expect("validated: a scenario market");
            // Per second, WAD (PerpVenue.setFundingRate).
            // Truncated, as the venue's own limit is (0.0001e18 / 3600): the largest rate stays allowed.
            let per_second = (f.rate_per_hour / 3600.0 * 1e18).trunc() as i128;
            let call = PerpVenue::setFundingRateCall {
                marketId: self.markets[ix],
                ratePerSecond: I256::try_from(per_second).expect("bounded by validation"),
            };
            self.backend
                .owner_call(self.a.venue, call.abi_encode())
                .await?;
        }
        Ok(())
    }

    /// Funds the liquidators and applies the scenario's risk parameters, market by market.
    async fn prepare(&mut self) -> Result<(), RunError> {
        for l in liquidator_keys(self.scenario) {
            self.backend
                .fund_eth(l.address(), U256::from(10u64).pow(U256::from(18)))
                .await?;
        }
        for (spec, id) in self.scenario.markets.iter().zip(self.markets.clone()) {
            if !spec.overrides_risk() {
                continue;
            }
            let p = self
                .backend
                .view(self.a.venue, &PerpVenue::marketCall { marketId: id })
                .await?;
            let (imf, mmf, fee, penalty) = spec.risk();
            let wad = |x: f64| ((x * 1e9).round() as u64) * 1_000_000_000;
            let params = PerpVenue::MarketParams {
                imf: wad(imf),
                mmf: wad(mmf),
                takerFee: wad(fee),
                liquidationPenalty: wad(penalty),
                maxLimitDeviation: p.maxLimitDeviation,
                maxPosition: p.maxPosition,
                partialLiquidationNotional: p.partialLiquidationNotional,
            };
            let call = PerpVenue::listMarketCall {
                marketId: id,
                p: params,
            };
            self.backend
                .owner_call(self.a.venue, call.abi_encode())
                .await?;
        }
        self.set_funding(0).await
    }

    /// Step `step`: prices (after step 0), then each trader's margin call, add, answer and liquidations.
    async fn step(
        &mut self,
        step: u32,
        traders: &mut [Trader],
        tally: &mut Tally,
    ) -> Result<StepRecord, RunError> {
        let stale = self.scenario.oracle.is_stale(step);
        let prices = self.impacted(step)?;
        // The step's largest price move, in percent (none in an outage: nothing is published).
        let moved = match step > 0 && !stale {
            true => prices
                .iter()
                .zip(&self.marks)
                .map(|(p, m)| (wad_to_usd(*p) / wad_to_usd(*m) - 1.0) * 100.0)
                .fold(0.0, |a: f64, b| a.max(b.abs())),
            false => 0.0,
        };
        self.keeper_gas_usd =
            self.scenario.liquidators.gas_cost_usd * self.scenario.gas.multiplier(step, moved);
        if step > 0 {
            self.backend
                .advance(self.scenario.step_seconds as u64)
                .await?;
            self.set_funding(step).await?;
            if !stale {
                for (i, m) in self.markets.clone().iter().enumerate() {
                    self.backend.publish(*m, prices[i]).await?;
                }
                self.marks = prices.clone();
            }
        }
        let (mut counts, mut before, mut closed) = ([0u32; 4], [0u32; 4], 0);
        let (mut long_oi, mut short_oi, mut open_shortfall) = (0.0, 0.0, 0.0);
        let now = self.backend.now().await?;
        for trader in traders.iter_mut() {
            let (pre, book) = self.trader_step(step, now, trader, tally).await?;
            before[pre.min(3)] += 1;
            match book.flat {
                true => closed += 1,
                false => counts[book.state.min(3)] += 1,
            }
            long_oi += book.long_usd;
            short_oi += book.short_usd;
            open_shortfall += book.shortfall_usd;
        }
        self.apply_impact(step)?;
        let insurance = self.insurance().await?;
        tally.insurance_min = tally.insurance_min.min(insurance);
        let bad_debt = wad_quote(
            self.backend
                .view(self.a.venue, &PerpVenue::badDebtCall {})
                .await?,
        );
        let pool = quote_to_usd(
            self.backend
                .view(self.a.venue, &PerpVenue::poolCall {})
                .await?,
        );
        Ok(StepRecord {
            pool,
            oracle_stale: stale,
            keeper_gas_usd: self.keeper_gas_usd,
            step,
            time: now,
            prices: prices.iter().map(|p| wad_to_usd(*p)).collect(),
            healthy: counts[0],
            margin_call: counts[1],
            liquidatable: counts[2],
            bankrupt: counts[3],
            closed,
            liquidatable_before: before[2],
            bankrupt_before: before[3],
            long_oi,
            short_oi,
            margin_calls: tally.margin_calls,
            liquidations: tally.liquidations,
            liquidated_notional: tally.liquidated_notional,
            insurance_fund: insurance,
            bad_debt,
            open_shortfall,
        })
    }

    /// One trader's turn in a step at chain time `now`; returns its state before the keepers' sweep and its
    /// book after the turn.
    async fn trader_step(
        &mut self,
        step: u32,
        now: u64,
        trader: &mut Trader,
        tally: &mut Tally,
    ) -> Result<(usize, book::Book), RunError> {
        let account = trader.account;
        let (mut state, mut value) = match trader.idle_health.take() {
            Some(held) => {
                if cfg!(debug_assertions) {
                    let read = self.health_state(account).await?;
                    debug_assert_eq!(read, held, "a flat idle account's health moved: {account}");
                }
                held
            }
            None => self.health_state(account).await?,
        };
        let health_at_start = (state, value);
        // Margin calls: counted once per crossing; an answer is scheduled by chance.
        if state == 1 && !trader.margin_called {
            trader.margin_called = true;
            trader.called_at.get_or_insert(now);
            tally.margin_calls += 1;
            if self.rng.r#gen::<f64>() < self.scenario.margin_calls.answer_probability {
                trader.answer_at = Some(step + self.scenario.margin_calls.delay_steps);
            }
        } else if state == 0 {
            trader.margin_called = false;
            trader.called_at = None;
        }
        let every = self.scenario.traders.add_every_steps;
        let mut acted = false;
        if every > 0 && step > 0 && step % every == 0 && state < 2 {
            acted = true;
            let (stopped, tripped) = self.add_to_position(step, trader).await?;
            tally.adds += 1;
            tally.adds_stopped += u32::from(stopped);
            tally.breaker_trips += u32::from(tripped);
            (state, value) = self.health_state(account).await?;
        }
        if trader.answer_at.is_some_and(|at| at <= step) {
            trader.answer_at = None;
            // An answer with nothing to send (the reserve spent, no position left) sends nothing; the
            // trader is still swept and counted.
            if let Some(done) = self.answer_margin_call(step, trader).await? {
                acted = true;
                tally.answered += u32::from(done.success);
                self.count(done);
                (state, value) = self.health_state(account).await?;
            }
        }
        let liquidations = tally.liquidations;
        let value = self.liquidate(account, (state, value), tally).await?;
        acted |= tally.liquidations > liquidations;
        if tally.liquidations > liquidations && !trader.liquidated {
            // An account's first liquidation: warned (a margin call before) or not, and how long it had.
            trader.liquidated = true;
            match trader.called_at.take() {
                Some(at) => tally.warned_secs.push(now - at),
                None => tally.unwarned += 1,
            }
        }
        let mut book = match (&trader.sizes, acted) {
            // Nothing traded: the sizes stand, the state is the one read above, notional moves with the marks.
            (Some(sizes), false) => book::Book::of(state, sizes, &self.marks),
            _ => {
                let (book, sizes) = self.book(account).await?;
                trader.sizes = Some(sizes);
                book
            }
        };
        // The last health read is after every action of the turn: what the account cannot pay now.
        book.shortfall_usd = (-quote_to_usd(value)).max(0.0);
        if book.flat && !acted {
            trader.idle_health = Some(health_at_start);
        }
        Ok((state, book))
    }

    /// Step `step`'s prices: the path's, moved by the impact so far (the path's exactly without `[impact]`).
    fn impacted(&self, step: u32) -> Result<Vec<U256>, RunError> {
        let path = &self.path.prices[step as usize];
        if self.scenario.impact.is_none() {
            return Ok(path.clone());
        }
        path.iter()
            .zip(&self.impact)
            .zip(&self.path.markets)
            .map(|((p, k), market)| {
                crate::prices::checked_wad(wad_to_usd(*p) * k).map_err(|why| {
                    RunError::Setup(format!(
                        "impact: liquidations take {market}'s price to {why} at step {step}; a smaller \
                         impact.coefficient or a deeper impact.depth_usd"
                    ))
                })
            })
            .collect()
    }

    /// The step's liquidation flow moves each market's price from the next step on (`[impact]`).
    fn apply_impact(&mut self, step: u32) -> Result<(), RunError> {
        let Some(spec) = &self.scenario.impact else {
            return Ok(());
        };
        for (k, flow) in self.impact.iter_mut().zip(self.flow.iter_mut()) {
            let factor = 1.0 + spec.price_move(std::mem::take(flow));
            if factor <= 0.0 {
                return Err(RunError::Setup(format!(
                    "impact: step {step}'s liquidations would move a price by {:.0} %, through zero; a \
                     smaller impact.coefficient or a deeper impact.depth_usd",
                    (factor - 1.0) * 100.0
                )));
            }
            *k *= factor;
        }
        Ok(())
    }

    /// Liquidator bots sweep `account` (in `health`: its state and value) while it is liquidatable (at most
    /// 8 rounds); returns its account value after the sweep.
    async fn liquidate(
        &mut self,
        account: Address,
        health: (usize, I256),
        tally: &mut Tally,
    ) -> Result<I256, RunError> {
        let (mut state, mut value) = health;
        let mut rounds = 0;
        while state >= 2 && rounds < 8 {
            rounds += 1;
            let mut any = false;
            for (mi, m) in self.markets.clone().into_iter().enumerate() {
                let before = self.position(account, m).await?;
                if before.is_zero() {
                    continue;
                }
                // The venue prices at the oracle's last price (the path's, except in an outage).
                let price = self.marks[mi];
                let long = !before.is_negative();
                let reward = self.expected_reward(account, m, before, price).await?;
                if reward < self.keeper_gas_usd {
                    tally.unprofitable += 1;
                    continue;
                }
                let who = (tally.liquidations as usize) % self.scenario.liquidators.count as usize;
                if self.backend.liquidate(who, account, m).await? {
                    let after = self.position(account, m).await?;
                    tally.liquidations += 1;
                    tally.keeper_gas_usd += self.keeper_gas_usd;
                    any = true;
                    let closed = (before - after).unsigned_abs();
                    let usd = wad_to_usd(closed * price / U256::from(WAD));
                    tally.liquidated_notional += usd;
                    self.flow[mi] += if long { usd } else { -usd };
                }
            }
            if !any {
                break;
            }
            (state, value) = self.health_state(account).await?;
        }
        Ok(value)
    }

    /// What the keepers hold on the venue at the end: their rewards (they start with nothing there).
    async fn keeper_rewards(&mut self) -> Result<f64, RunError> {
        let mut total = 0.0;
        for k in liquidator_keys(self.scenario) {
            let held = self
                .backend
                .view(
                    self.a.venue,
                    &PerpVenue::collateralOfCall {
                        account: k.address(),
                    },
                )
                .await?;
            total += quote_to_usd(held);
        }
        Ok(total)
    }

    /// Every account's collateral and positions at the end, for comparing backends.
    async fn accounts(&mut self, traders: &[Trader]) -> Result<Vec<AccountState>, RunError> {
        let mut accounts = Vec::new();
        for t in traders {
            let collateral = self
                .backend
                .view(
                    self.a.venue,
                    &PerpVenue::collateralOfCall { account: t.account },
                )
                .await?;
            let mut positions = Vec::new();
            for m in self.markets.clone() {
                positions.push((m, self.position(t.account, m).await?.to_string()));
            }
            let health = self
                .backend
                .view(self.a.venue, &PerpVenue::healthCall { account: t.account })
                .await?;
            accounts.push(AccountState {
                account: t.account,
                collateral: collateral.to_string(),
                positions,
                account_value: health.accountValue.to_string(),
            });
        }
        Ok(accounts)
    }
}

/// Socialises `loss` over accounts whose open profit totals `winners_profit` (both USD, the loss the
/// insurance fund cannot cover): the share of that profit clawed back, pro rata (0 to 1), and what is left
/// once it is all taken.
pub fn socialise(loss: f64, winners_profit: f64) -> (f64, f64) {
    if loss <= 0.0 {
        return (0.0, 0.0);
    }
    if winners_profit <= 0.0 {
        return (0.0, loss);
    }
    (
        (loss / winners_profit).min(1.0),
        (loss - winners_profit).max(0.0),
    )
}

/// The first step where booked bad debt plus open shortfall is largest, and that loss.
pub fn peak_loss(series: &[StepRecord]) -> (u32, f64) {
    series.iter().fold((0, 0.0), |(at, worst), r| {
        let loss = r.bad_debt + r.open_shortfall;
        if loss > worst {
            (r.step, loss)
        } else {
            (at, worst)
        }
    })
}

/// Mean, median and max of `secs` (None if empty).
fn spread(secs: &[u64]) -> Option<(f64, f64, f64)> {
    let mut v = secs.to_vec();
    v.sort_unstable();
    let n = v.len();
    (n > 0).then(|| {
        (
            v.iter().sum::<u64>() as f64 / n as f64,
            v[n / 2] as f64,
            v[n - 1] as f64,
        )
    })
}

fn wad_quote(v: U256) -> f64 {
    quote_to_usd(I256::try_from(v).unwrap_or(I256::MAX))
}

#[cfg(test)]
mod tests {
    use super::socialise;

    #[test]
    fn a_loss_is_socialised_pro_rata_and_what_profit_cannot_cover_is_left() {
        assert_eq!(socialise(0.0, 500.0), (0.0, 0.0), "nothing to cover");
        assert_eq!(socialise(100.0, 400.0), (0.25, 0.0));
        assert_eq!(
            socialise(600.0, 400.0),
            (1.0, 200.0),
            "every winner's profit, and the rest"
        );
        assert_eq!(
            socialise(50.0, 0.0),
            (0.0, 50.0),
            "no winner: all of it left"
        );
    }
}
