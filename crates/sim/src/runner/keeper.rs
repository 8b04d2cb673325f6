//! The liquidator bots' decision: a keeper liquidates only when the reward it expects covers its gas, as a
//! real keeper does — so an account the insurance fund can no longer pay a reward for, once its own
//! collateral is gone, is left open (and the bad debt it carries shows in the report).

use alloy_primitives::{Address, I256, U256};
use keyscope_core::bindings::PerpVenue;

use super::{Run, RunError, WAD};
use crate::backend::Backend;

/// Quote units per USD (6 decimals).
const QUOTE_PER_USD: f64 = 1e6;
/// size (18 decimals) x price (WAD) / this = quote units (PerpMath.TO_QUOTE).
const TO_QUOTE: u128 = 1_000_000_000_000_000_000_000_000_000_000;
/// PerpVenue.PARTIAL_LIQUIDATION_FRACTION.
const PARTIAL_FRACTION: u128 = 250_000_000_000_000_000;

impl<B: Backend> Run<'_, B> {
    /// The reward, in USD, a keeper expects for liquidating `size` of `account` in market `market` at
    /// `price`, read from the venue as the keeper would: the penalty on the part a call closes, clamped to
    /// the venue's reward bounds, paid from what the account has left (its account value) and then from the
    /// insurance fund.
    pub(super) async fn expected_reward(
        &mut self,
        account: Address,
        market: u32,
        size: I256,
        price: U256,
    ) -> Result<f64, RunError> {
        let venue = self.a.venue;
        let m = self
            .backend
            .view(venue, &PerpVenue::marketCall { marketId: market })
            .await?;
        let min = self
            .backend
            .view(venue, &PerpVenue::minLiquidationRewardCall {})
            .await?;
        let max = self
            .backend
            .view(venue, &PerpVenue::maxLiquidationRewardCall {})
            .await?;
        let insurance = self
            .backend
            .view(venue, &PerpVenue::insuranceFundCall {})
            .await?;
        let health = self
            .backend
            .view(venue, &PerpVenue::healthCall { account })
            .await?;
        let notional = size.unsigned_abs() * price / U256::from(TO_QUOTE);
        let closed = match notional > U256::from(m.partialLiquidationNotional) {
            true => notional * U256::from(PARTIAL_FRACTION) / U256::from(WAD),
            false => notional,
        };
        let penalty = closed * U256::from(m.liquidationPenalty) / U256::from(WAD);
        let reward = penalty.clamp(min, max);
        let left = U256::try_from(health.accountValue.max(I256::ZERO)).unwrap_or_default();
        let paid = reward.min(left.saturating_add(insurance));
        Ok(paid.to::<u128>() as f64 / QUOTE_PER_USD)
    }
}
