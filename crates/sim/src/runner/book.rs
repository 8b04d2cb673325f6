//! What a risk desk reads of the book after each trader's turn: the account's state, whether it still holds
//! a position, and its long and short notional (for open interest, skew and the pool's exposure). An account
//! that traded (or was liquidated) in its turn is read from the venue (`portfolio`); one that did not keeps
//! its sizes, and its notional is computed from them at the oracle's prices exactly as the venue does.

use alloy_primitives::{Address, I256, U256};
use keyscope_core::bindings::PerpVenue;
use serde::Serialize;

use super::{Run, RunError};
use crate::backend::Backend;

/// Quote units per USD (6 decimals).
const QUOTE_PER_USD: f64 = 1e6;
/// size (18 decimals) x price (WAD) / this = quote units (PerpMath.TO_QUOTE).
const TO_QUOTE: u128 = 1_000_000_000_000_000_000_000_000_000_000;

impl Book {
    /// The book of an account in `state` holding `sizes` (one per scenario market) at `marks`.
    pub(super) fn of(state: usize, sizes: &[I256], marks: &[U256]) -> Self {
        let mut book = Self {
            state,
            flat: sizes.iter().all(|s| s.is_zero()),
            ..Self::default()
        };
        for (size, mark) in sizes.iter().zip(marks) {
            book.add(*size, size.unsigned_abs() * *mark / U256::from(TO_QUOTE));
        }
        book
    }

    fn add(&mut self, size: I256, notional: U256) {
        let usd = notional.to::<u128>() as f64 / QUOTE_PER_USD;
        match size.is_negative() {
            true => self.short_usd += usd,
            false => self.long_usd += usd,
        }
    }
}

/// One account after its turn.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Book {
    pub state: usize,
    /// No position left (closed out, or never reopened).
    pub flat: bool,
    pub long_usd: f64,
    pub short_usd: f64,
    /// What the account stands below zero after its turn (0 if it can pay), USD.
    pub shortfall_usd: f64,
}

/// A position's liquidation price as the account opened it (collateral, one position, the market's MMF).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LadderRung {
    /// The account.
    pub account: Address,
    /// The market of its position.
    pub market: String,
    /// True for a long position.
    pub long: bool,
    /// The position's leverage when opened (notional over collateral).
    pub leverage: f64,
    /// The market's price when the position was opened, USD.
    pub entry_price: f64,
    /// The oracle price at which the account falls below maintenance (ignoring funding and fees).
    pub liquidation_price: f64,
}

impl LadderRung {
    /// The rung of a position of `size` units entered at `entry` (USD) on `collateral` (USD), with
    /// maintenance fraction `mmf`: account value C + s·(P − E) meets the requirement |s|·P·mmf.
    pub fn new(
        account: Address,
        market: &str,
        collateral: f64,
        size: f64,
        entry: f64,
        mmf: f64,
    ) -> Self {
        let long = size > 0.0;
        let q = size.abs();
        let liquidation_price = match long {
            true => ((q * entry - collateral) / (q * (1.0 - mmf))).max(0.0),
            false => (collateral + q * entry) / (q * (1.0 + mmf)),
        };
        Self {
            account,
            market: market.to_string(),
            long,
            leverage: q * entry / collateral,
            entry_price: entry,
            liquidation_price,
        }
    }
}

impl<B: Backend> Run<'_, B> {
    /// `account`'s book read from the venue, with its sizes per scenario market.
    pub(super) async fn book(&mut self, account: Address) -> Result<(Book, Vec<I256>), RunError> {
        let pf = self
            .backend
            .view(self.a.venue, &PerpVenue::portfolioCall { account })
            .await?;
        let mut book = Book {
            state: pf.state as usize,
            flat: pf.positions.is_empty(),
            ..Book::default()
        };
        let mut sizes = vec![I256::ZERO; self.markets.len()];
        for p in &pf.positions {
            book.add(p.size, p.notional);
            if let Some(ix) = self.markets.iter().position(|m| *m == p.marketId) {
                sizes[ix] = p.size;
            }
        }
        Ok((book, sizes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_prices_sit_where_value_meets_maintenance() {
        let a = Address::ZERO;
        // 1 BTC long at 60,000 on 6,000 (10x), MMF 3 %: 6,000 + (P - 60,000) = 0.03 P.
        let long = LadderRung::new(a, "BTC", 6_000.0, 1.0, 60_000.0, 0.03);
        assert!((long.liquidation_price - 54_000.0 / 0.97).abs() < 1e-6);
        assert!((long.leverage - 10.0).abs() < 1e-12);
        let value = |p: f64| 6_000.0 + (p - 60_000.0);
        let p = long.liquidation_price;
        assert!((value(p) - 0.03 * p).abs() < 1e-6);
        // The short's mirror: 6,000 - (P - 60,000) = 0.03 P.
        let short = LadderRung::new(a, "BTC", 6_000.0, -1.0, 60_000.0, 0.03);
        assert!((short.liquidation_price - 66_000.0 / 1.03).abs() < 1e-6);
        assert!(!short.long);
    }
}
