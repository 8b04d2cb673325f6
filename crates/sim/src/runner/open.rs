//! Step 0: each trader's account is deployed by its first op (deposit, a trading key and a margin key),
//! then opens its position with the trading key. Collateral, leverage, side and market are the scenario's
//! `[[book]]` entry, or drawn from its ranges in a fixed order, so a seed gives the same traders on every
//! backend.

use alloy_primitives::{I256, U256};
use keyscope_core::{
    bindings::{AccountFactory, ITradingAccount::SessionScope},
    ops,
    scope::{MoneyLimits, TradingScope},
    session::sign_owner_op_sync,
    user_op_hash,
};
use rand::Rng;

use super::{Run, RunError, Trader, WAD, key, usd};
use crate::{backend::Backend, scenario::Side};

impl<B: Backend> Run<'_, B> {
    /// Publishes step 0's prices and opens every trader.
    pub(super) async fn open_traders(&mut self) -> Result<Vec<Trader>, RunError> {
        for (i, m) in self.markets.clone().iter().enumerate() {
            self.backend.publish(*m, self.path.prices[0][i]).await?;
        }
        let now = self.backend.now().await?;
        let mut traders = Vec::new();
        for i in 0..self.scenario.traders.count {
            traders.push(self.open_trader(i, now).await?);
        }
        Ok(traders)
    }

    /// The scopes of a trader's keys: trading (every market, the scenario's key limits) and margin (deposit
    /// and reduce-only), both for the whole run.
    fn scopes(&self, now: u64) -> Result<(SessionScope, SessionScope), RunError> {
        let s = self.scenario;
        let t = &s.traders;
        let mut trading = TradingScope::new(
            self.a.venue,
            self.markets.clone(),
            U256::from(1_000_000u128 * WAD),
            U256::from(10_000_000_000u128 * WAD),
        );
        trading.valid_for =
            std::time::Duration::from_secs(s.steps as u64 * s.step_seconds as u64 + 3600);
        trading.op_ttl = std::time::Duration::from_secs(600);
        // The harness's ops carry fixed generous gas (`build`): a budget for the whole run.
        trading.limits = MoneyLimits {
            fee_budget: U256::from(10u64).pow(U256::from(18)),
            max_leverage: t.key_max_leverage.map_or(0, |l| (l * 100.0).round() as u32),
            max_drawdown_bps: t
                .key_max_drawdown
                .map_or(0, |d| (d * 10_000.0).round() as u32),
            ..MoneyLimits::gas_only()
        };
        let mut margin = trading.clone();
        margin.reduce_only = true;
        margin.allow_deposit = true;
        let build = |s: &TradingScope| s.build(now).map_err(|e| RunError::Setup(e.to_string()));
        Ok((build(&trading)?, build(&margin)?))
    }

    /// Trader `i`: its account deployed with its keys and collateral, then its opening order.
    async fn open_trader(&mut self, i: u32, now: u64) -> Result<Trader, RunError> {
        let s = self.scenario;
        let owner = key(s.seed, i, "owner");
        let trading = key(s.seed, i, "trading");
        let margin = key(s.seed, i, "margin");
        let factory = AccountFactory::getAddressCall {
            owner: owner.address(),
            salt: U256::ZERO,
        };
        let account = self.backend.view(self.a.account_factory, &factory).await?;
        let (collateral, leverage, long, market_ix) = match s.book.get(i as usize) {
            // A given book: trader i opens entry i (validated: a listed market).
            Some(e) => (
                usd(e.collateral),
                e.leverage,
                e.side == Side::Long,
                s.markets
                    .iter()
                    .position(|m| m.name == e.market)
                    .expect("validated: a scenario market"),
            ),
            None => {
                let t = &s.traders;
                let collateral = usd(t.collateral_min
                    + self.rng.r#gen::<f64>() * (t.collateral_max - t.collateral_min));
                let leverage =
                    t.leverage_min + self.rng.r#gen::<f64>() * (t.leverage_max - t.leverage_min);
                let long = self.rng.r#gen::<f64>() < t.long_fraction;
                (
                    collateral,
                    leverage,
                    long,
                    self.rng.gen_range(0..self.markets.len()),
                )
            }
        };
        let reserve =
            collateral * U256::from((s.margin_calls.fraction * 1000.0) as u64) / U256::from(1000);
        self.backend
            .fund_eth(account, U256::from(10u64).pow(U256::from(18)))
            .await?;
        self.backend.mint(account, collateral + reserve).await?;

        let (trading_scope, margin_scope) = self.scopes(now)?;
        let calls = ops::first_op_calls(
            account,
            self.a.collateral,
            self.a.venue,
            collateral,
            vec![
                (trading.address(), trading_scope),
                (margin.address(), margin_scope),
            ],
        );
        let mut op = super::ops::build(
            account,
            U256::ZERO,
            ops::owner_call_data(calls),
            ops::init_code(self.a.account_factory, owner.address(), U256::ZERO),
        );
        let hash = user_op_hash(&op, self.a.entry_point, self.chain_id)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        op.signature =
            sign_owner_op_sync(&owner, hash).map_err(|e| RunError::Setup(e.to_string()))?;
        let r = self.backend.handle_op(op).await?;
        self.count(r);
        if !r.success {
            return Err(RunError::Setup(format!(
                "trader {i}'s account could not be opened (its first op failed)"
            )));
        }

        // The opening order: notional = margin x leverage, at the step-0 price, 2 % limit slack.
        let price = self.path.prices[0][market_ix];
        let notional_wad = collateral
            * U256::from(10u64).pow(U256::from(12))
            * U256::from((leverage * 1000.0) as u64)
            / U256::from(1000);
        let size = I256::try_from(notional_wad * U256::from(WAD) / price).unwrap_or_default();
        let size = if long { size } else { -size };
        let slack = if long { 102 } else { 98 };
        let limit = price * U256::from(slack) / U256::from(100);
        let trader = Trader {
            account,
            trading,
            margin,
            reserve,
            margin_called: false,
            answer_at: None,
            market: self.markets[market_ix],
            market_ix,
            open_size: size,
            tripped: false,
            called_at: None,
            liquidated: false,
            sizes: None,
            idle_health: None,
        };
        let r = self.trade(&trader, 0, size, limit).await?;
        self.count(r);
        if !r.success {
            return Err(RunError::Setup(format!(
                "trader {i}'s opening order (size {size} at ${:.6}, {leverage:.1}x) could not fill: check \
                 markets.start_price and the traders' leverage and collateral against the venue's limits",
                crate::prices::wad_to_usd(price)
            )));
        }
        let spec = &s.markets[market_ix];
        let units = |v: I256| {
            let f = v.unsigned_abs().to::<u128>() as f64 / WAD as f64;
            if v.is_negative() { -f } else { f }
        };
        self.ladder.push(super::LadderRung::new(
            account,
            &spec.name,
            collateral.to::<u128>() as f64 / 1e6,
            units(size),
            crate::prices::wad_to_usd(price),
            spec.risk().1,
        ));
        Ok(trader)
    }
}
