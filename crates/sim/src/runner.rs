//! The scenario runner: one loop, any backend. Each step the oracle publishes the path's prices, traders
//! who were margin-called answer (with a key scoped to add margin and reduce only), liquidator bots
//! sweep, and the step's numbers are recorded. Every trader action is a signed UserOp through
//! `EntryPoint.handleOps`.

use std::time::Instant;

use alloy::{
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::SolCall,
};
use alloy_primitives::{Address, Bytes, I256, U256, keccak256};
use keyscope_core::{
    PackedUserOperation, SessionLane,
    bindings::{AccountFactory, IEntryPoint, ISessionManager, PerpVenue, TestUSD},
    ops::{self, Call},
    scope::{MoneyLimits, TradingScope},
    session::sign_session_op_sync,
    user_op::{OpGas, unsigned},
    user_op_hash,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{
    backend::{Backend, BackendError},
    prices::{PricePath, wad_to_usd},
    scenario::{Answer, Scenario},
};

const WAD: u128 = 1_000_000_000_000_000_000;

/// A trader: a trading key, and a margin key (deposit and reduce-only orders only); the owner key
/// signed only the first op.
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
}

/// One step of the time series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepRecord {
    pub step: u32,
    pub time: u64,
    pub prices: Vec<f64>,
    pub healthy: u32,
    pub margin_call: u32,
    pub liquidatable: u32,
    pub bankrupt: u32,
    pub margin_calls: u32,
    pub liquidations: u32,
    pub liquidated_notional: f64,
    pub insurance_fund: f64,
    pub bad_debt: f64,
}

/// Where one account ended: for comparing backends.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccountState {
    pub account: Address,
    pub collateral: String,
    pub positions: Vec<(u32, String)>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub backend: String,
    pub seed: u64,
    pub steps: u32,
    pub traders: u32,
    pub margin_calls: u32,
    pub margin_calls_answered: u32,
    pub liquidations: u32,
    pub liquidated_notional: f64,
    pub bad_debt: f64,
    pub insurance_fund_start: f64,
    pub insurance_fund_end: f64,
    pub insurance_fund_min: f64,
    /// Adds the traders' trading keys sent (`add_every_steps`), those the keys' limits undid or refused,
    /// and the breakers that tripped.
    pub adds: u32,
    pub adds_stopped: u32,
    pub breaker_trips: u32,
    pub ops_executed: u64,
    pub ops_failed: u64,
    pub gas_used: u64,
    pub wall_seconds: f64,
    pub ops_per_second: f64,
    pub series: Vec<StepRecord>,
    pub accounts: Vec<AccountState>,
}

/// Errors from a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Backend(#[from] BackendError),
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
    mut progress: impl FnMut(u32, u32),
) -> Result<Outcome, RunError> {
    let started = Instant::now();
    let a = backend.addresses().clone();
    let chain_id = backend.chain_id();
    let markets: Vec<u32> = scenario
        .markets
        .iter()
        .map(|m| match m.name.as_str() {
            "BTC" => 0,
            _ => 1,
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x5EED);
    let mut ops = (0u64, 0u64, 0u64); // executed, failed, gas

    for l in liquidator_keys(scenario) {
        backend
            .fund_eth(l.address(), U256::from(10u64).pow(U256::from(18)))
            .await?;
    }
    let insurance_start = wad_quote(
        backend
            .view(a.venue, &PerpVenue::insuranceFundCall {})
            .await?,
    );
    // Scenario risk parameters replace the deployment's, market by market.
    for (spec, id) in scenario.markets.iter().zip(&markets) {
        if spec.overrides_risk() {
            let p = backend
                .view(a.venue, &PerpVenue::marketCall { marketId: *id })
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
            backend
                .owner_call(
                    a.venue,
                    PerpVenue::listMarketCall {
                        marketId: *id,
                        p: params,
                    }
                    .abi_encode(),
                )
                .await?;
        }
    }

    // Step 0: prices, then every trader's account, keys and opening order.
    for (i, m) in markets.iter().enumerate() {
        backend.publish(*m, path.prices[0][i]).await?;
    }
    let now = backend.now().await?;
    let horizon =
        std::time::Duration::from_secs(scenario.steps as u64 * scenario.step_seconds as u64 + 3600);
    let mut traders = Vec::new();
    for i in 0..scenario.traders.count {
        let owner = key(scenario.seed, i, "owner");
        let trading = key(scenario.seed, i, "trading");
        let margin = key(scenario.seed, i, "margin");
        let account = backend
            .view(
                a.account_factory,
                &AccountFactory::getAddressCall {
                    owner: owner.address(),
                    salt: U256::ZERO,
                },
            )
            .await?;
        let t = &scenario.traders;
        let collateral =
            usd(t.collateral_min + rng.r#gen::<f64>() * (t.collateral_max - t.collateral_min));
        let leverage = t.leverage_min + rng.r#gen::<f64>() * (t.leverage_max - t.leverage_min);
        let long = rng.r#gen::<f64>() < t.long_fraction;
        let market_ix = rng.gen_range(0..markets.len());
        let reserve = collateral * U256::from((scenario.margin_calls.fraction * 1000.0) as u64)
            / U256::from(1000);
        backend
            .fund_eth(account, U256::from(10u64).pow(U256::from(18)))
            .await?;
        backend.mint(account, collateral + reserve).await?;

        let mut trading_scope = TradingScope::new(
            a.venue,
            markets.clone(),
            U256::from(1_000_000u128 * WAD),
            U256::from(10_000_000_000u128 * WAD),
        );
        trading_scope.valid_for = horizon;
        trading_scope.op_ttl = std::time::Duration::from_secs(600);
        // The harness's ops carry fixed generous gas (`build`): a budget for the whole run.
        trading_scope.limits = MoneyLimits {
            fee_budget: U256::from(10u64).pow(U256::from(18)),
            max_leverage: t.key_max_leverage.map_or(0, |l| (l * 100.0).round() as u32),
            max_drawdown_bps: t
                .key_max_drawdown
                .map_or(0, |d| (d * 10_000.0).round() as u32),
            ..MoneyLimits::gas_only()
        };
        let mut margin_scope = trading_scope.clone();
        margin_scope.reduce_only = true;
        margin_scope.allow_deposit = true;
        let scope = |s: &TradingScope| s.build(now).map_err(|e| RunError::Setup(e.to_string()));
        let calls = ops::first_op_calls(
            account,
            a.collateral,
            a.venue,
            collateral,
            vec![
                (trading.address(), scope(&trading_scope)?),
                (margin.address(), scope(&margin_scope)?),
            ],
        );
        let mut op = build(
            account,
            U256::ZERO,
            ops::owner_call_data(calls),
            ops::init_code(a.account_factory, owner.address(), U256::ZERO),
        );
        let hash = user_op_hash(&op, a.entry_point, chain_id)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        op.signature = owner
            .sign_hash_sync(&hash)
            .map_err(|e| RunError::Setup(e.to_string()))?
            .as_bytes()
            .to_vec()
            .into();
        count(&mut ops, backend.handle_op(op).await?);

        // The opening order: notional = margin x leverage, at the step-0 price, 2 % limit slack.
        let price = path.prices[0][market_ix];
        let notional_wad = collateral
            * U256::from(10u64).pow(U256::from(12))
            * U256::from((leverage * 1000.0) as u64)
            / U256::from(1000);
        let size = notional_wad * U256::from(WAD) / price;
        let size = if long {
            I256::try_from(size).unwrap_or_default()
        } else {
            -I256::try_from(size).unwrap_or_default()
        };
        let limit = if long {
            price * U256::from(102) / U256::from(100)
        } else {
            price * U256::from(98) / U256::from(100)
        };
        let trader = Trader {
            account,
            trading,
            margin,
            reserve,
            margin_called: false,
            answer_at: None,
            market: markets[market_ix],
            market_ix,
            open_size: size,
            tripped: false,
        };
        let order = vec![ops::place_order(
            a.venue,
            markets[market_ix],
            size,
            limit,
            false,
        )];
        let r = session_op(backend, &a, chain_id, &trader, &trader.trading, 0, order).await?;
        count(&mut ops, r);
        traders.push(trader);
    }

    let mut series = Vec::new();
    let (mut margin_calls, mut answered, mut liquidations, mut liquidated_notional) =
        (0u32, 0u32, 0u32, 0f64);
    let mut insurance_min = insurance_start;
    let (mut adds, mut adds_stopped, mut breaker_trips) = (0u32, 0u32, 0u32);
    for step in 0..=scenario.steps {
        if step > 0 {
            backend.advance(scenario.step_seconds as u64).await?;
            for (i, m) in markets.iter().enumerate() {
                backend.publish(*m, path.prices[step as usize][i]).await?;
            }
        }
        let mut counts = [0u32; 4];
        for trader in traders.iter_mut() {
            let account = trader.account;
            let health = backend
                .view(a.venue, &PerpVenue::healthCall { account })
                .await?;
            let mut state = health.state as usize;
            // Margin calls: counted once per crossing; an answer is scheduled by chance.
            if state == 1 && !trader.margin_called {
                trader.margin_called = true;
                margin_calls += 1;
                if rng.r#gen::<f64>() < scenario.margin_calls.answer_probability {
                    trader.answer_at = Some(step + scenario.margin_calls.delay_steps);
                }
            } else if state == 0 {
                trader.margin_called = false;
            }
            let every = scenario.traders.add_every_steps;
            if every > 0 && step > 0 && step % every == 0 && state < 2 {
                let prices = &path.prices[step as usize];
                let fraction = scenario.traders.add_fraction;
                let (stopped, tripped, result) =
                    add_to_position(backend, &a, chain_id, trader, prices, fraction).await?;
                if let Some(r) = result {
                    count(&mut ops, r);
                }
                adds += 1;
                adds_stopped += u32::from(stopped);
                breaker_trips += u32::from(tripped);
                state = backend
                    .view(a.venue, &PerpVenue::healthCall { account })
                    .await?
                    .state as usize;
            }
            if trader.answer_at.is_some_and(|at| at <= step) {
                trader.answer_at = None;
                let t = &*trader;
                let done = match scenario.margin_calls.answer {
                    Answer::AddCollateral => {
                        // What is left of the reserve (a second margin call may find it spent).
                        let held = backend
                            .view(a.collateral, &TestUSD::balanceOfCall { account })
                            .await?;
                        let amount = held.min(t.reserve);
                        if amount.is_zero() {
                            continue;
                        }
                        let deposit = vec![ops::deposit_margin(a.venue, amount)];
                        session_op(backend, &a, chain_id, t, &t.margin, 1, deposit).await?
                    }
                    Answer::Reduce => {
                        let mut last = None;
                        for (mi, m) in markets.iter().enumerate() {
                            let p = backend
                                .view(
                                    a.venue,
                                    &PerpVenue::positionCall {
                                        account,
                                        marketId: *m,
                                    },
                                )
                                .await?;
                            if p.size.is_zero() {
                                continue;
                            }
                            let part = p.size
                                * I256::try_from((scenario.margin_calls.fraction * 1000.0) as u64)
                                    .unwrap()
                                / I256::try_from(1000).unwrap();
                            let price = path.prices[step as usize][mi];
                            let limit = if part.is_positive() {
                                price * U256::from(98) / U256::from(100)
                            } else {
                                price * U256::from(102) / U256::from(100)
                            };
                            let order = vec![ops::place_order(a.venue, *m, -part, limit, true)];
                            last = Some(
                                session_op(backend, &a, chain_id, t, &t.margin, 1, order).await?,
                            );
                        }
                        match last {
                            Some(r) => r,
                            None => continue,
                        }
                    }
                };
                if done.success {
                    answered += 1;
                }
                count(&mut ops, done);
                state = backend
                    .view(a.venue, &PerpVenue::healthCall { account })
                    .await?
                    .state as usize;
            }
            // Liquidator bots.
            let mut rounds = 0;
            while state >= 2 && rounds < 8 {
                rounds += 1;
                let mut any = false;
                for (mi, m) in markets.iter().enumerate() {
                    let before = backend
                        .view(
                            a.venue,
                            &PerpVenue::positionCall {
                                account,
                                marketId: *m,
                            },
                        )
                        .await?
                        .size;
                    if before.is_zero() {
                        continue;
                    }
                    let who = (liquidations as usize) % scenario.liquidators.count as usize;
                    if backend.liquidate(who, account, *m).await? {
                        let after = backend
                            .view(
                                a.venue,
                                &PerpVenue::positionCall {
                                    account,
                                    marketId: *m,
                                },
                            )
                            .await?
                            .size;
                        liquidations += 1;
                        any = true;
                        let closed = (before - after).unsigned_abs();
                        liquidated_notional +=
                            wad_to_usd(closed * path.prices[step as usize][mi] / U256::from(WAD));
                    }
                }
                if !any {
                    break;
                }
                state = backend
                    .view(a.venue, &PerpVenue::healthCall { account })
                    .await?
                    .state as usize;
            }
            counts[state.min(3)] += 1;
        }
        let insurance = wad_quote(
            backend
                .view(a.venue, &PerpVenue::insuranceFundCall {})
                .await?,
        );
        insurance_min = insurance_min.min(insurance);
        let bad_debt = wad_quote(backend.view(a.venue, &PerpVenue::badDebtCall {}).await?);
        series.push(StepRecord {
            step,
            time: backend.now().await?,
            prices: path.prices[step as usize]
                .iter()
                .map(|p| wad_to_usd(*p))
                .collect(),
            healthy: counts[0],
            margin_call: counts[1],
            liquidatable: counts[2],
            bankrupt: counts[3],
            margin_calls,
            liquidations,
            liquidated_notional,
            insurance_fund: insurance,
            bad_debt,
        });
        progress(step, scenario.steps);
    }

    let mut accounts = Vec::new();
    for t in &traders {
        let collateral = backend
            .view(a.venue, &PerpVenue::collateralOfCall { account: t.account })
            .await?;
        let mut positions = Vec::new();
        for m in &markets {
            let p = backend
                .view(
                    a.venue,
                    &PerpVenue::positionCall {
                        account: t.account,
                        marketId: *m,
                    },
                )
                .await?;
            positions.push((*m, p.size.to_string()));
        }
        accounts.push(AccountState {
            account: t.account,
            collateral: collateral.to_string(),
            positions,
        });
    }
    let last = series.last().cloned().expect("at least step 0");
    let wall = started.elapsed().as_secs_f64();
    Ok(Outcome {
        scenario: scenario.name.clone(),
        backend: backend.name().to_string(),
        seed: scenario.seed,
        steps: scenario.steps,
        traders: scenario.traders.count,
        margin_calls,
        margin_calls_answered: answered,
        liquidations,
        liquidated_notional,
        bad_debt: last.bad_debt,
        insurance_fund_start: insurance_start,
        insurance_fund_end: last.insurance_fund,
        insurance_fund_min: insurance_min,
        adds,
        adds_stopped,
        breaker_trips,
        ops_executed: ops.0,
        ops_failed: ops.1,
        gas_used: ops.2,
        wall_seconds: wall,
        ops_per_second: if wall > 0.0 { ops.0 as f64 / wall } else { 0.0 },
        series,
        accounts,
    })
}

fn wad_quote(v: U256) -> f64 {
    quote_to_usd(I256::try_from(v).unwrap_or(I256::MAX))
}

fn count(ops: &mut (u64, u64, u64), r: crate::backend::OpResult) {
    if r.success {
        ops.0 += 1;
    } else {
        ops.1 += 1;
    }
    ops.2 += r.gas_used;
}

/// The trader adds `fraction` of its opening order with the trading key (lane 2). Returns whether the key's
/// limits stopped it (refused in validation, or undone after execution), whether its breaker tripped, and
/// the op's result (None when there is no position to add to).
async fn add_to_position<B: Backend>(
    backend: &mut B,
    a: &crate::backend::Addresses,
    chain_id: u64,
    trader: &mut Trader,
    prices: &[U256],
    fraction: f64,
) -> Result<(bool, bool, Option<crate::backend::OpResult>), RunError> {
    let call = PerpVenue::positionCall {
        account: trader.account,
        marketId: trader.market,
    };
    let before = backend.view(a.venue, &call).await?.size;
    if before.is_zero() {
        return Ok((false, false, None));
    }
    let size = trader.open_size * I256::try_from((fraction * 1000.0) as u64).unwrap_or_default()
        / I256::try_from(1000).unwrap();
    let price = prices[trader.market_ix];
    let limit = if size.is_positive() {
        price * U256::from(102) / U256::from(100)
    } else {
        price * U256::from(98) / U256::from(100)
    };
    let order = vec![ops::place_order(a.venue, trader.market, size, limit, false)];
    let key = trader.trading.clone();
    let result = session_op(backend, a, chain_id, trader, &key, 2, order).await?;
    let after = backend.view(a.venue, &call).await?.size;
    let tripped = backend
        .view(
            trader.account,
            &ISessionManager::getSessionCall { key: key.address() },
        )
        .await?
        .tripped;
    let newly = tripped && !trader.tripped;
    trader.tripped = tripped;
    Ok((after == before, newly, Some(result)))
}

/// An op with fixed gas fields: deterministic, so both backends hash and sign the same bytes.
/// Verification covers a first op that deploys the account and grants two keys.
fn build(sender: Address, nonce: U256, call_data: Bytes, init_code: Bytes) -> PackedUserOperation {
    let gas = OpGas {
        verification: 1_200_000,
        call: 600_000,
        pre_verification: 60_000,
    };
    unsigned(
        sender,
        nonce,
        call_data,
        init_code,
        gas,
        1_000_000_000,
        2_000_000_000,
    )
}

/// Signs and sends a session op by `key` on `trader`'s account, lane `lane`.
async fn session_op<B: Backend>(
    backend: &mut B,
    a: &crate::backend::Addresses,
    chain_id: u64,
    trader: &Trader,
    key: &PrivateKeySigner,
    lane: u32,
    calls: Vec<Call>,
) -> Result<crate::backend::OpResult, RunError> {
    let lane = SessionLane::new(key.address(), lane);
    let nonce = backend
        .view(
            a.entry_point,
            &IEntryPoint::getNonceCall {
                sender: trader.account,
                key: lane.nonce_key(),
            },
        )
        .await?;
    let grant_id = backend
        .view(
            trader.account,
            &ISessionManager::getSessionCall { key: key.address() },
        )
        .await?
        .grantId;
    let call_data = ops::session_call_data(key.address(), calls);
    let mut op = build(trader.account, nonce, call_data, Bytes::new());
    let hash =
        user_op_hash(&op, a.entry_point, chain_id).map_err(|e| RunError::Setup(e.to_string()))?;
    let until = backend.now().await? + 300;
    op.signature = sign_session_op_sync(key, hash, until, grant_id)
        .map_err(|e| RunError::Setup(e.to_string()))?;
    Ok(backend.handle_op(op).await?)
}
