//! The ops a trader sends during the run, each a signed UserOp through `handleOps`: session ops with
//! fixed gas (the same bytes on every backend), adds to a position with the trading key, and answers to a
//! margin call with the margin key.

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, Bytes, I256, U256};
use keyscope_core::{
    PackedUserOperation, SessionLane,
    bindings::{IEntryPoint, ISessionManager, TestUSD},
    ops::{self, Call},
    session::sign_session_op_sync,
    user_op::{OpGas, unsigned},
    user_op_hash,
};

use super::{Run, RunError, Trader};
use crate::{
    backend::{Backend, OpResult},
    scenario::Answer,
};

/// An op with fixed gas fields: deterministic, so both backends hash and sign the same bytes.
/// Verification covers a first op that deploys the account and grants two keys.
pub(super) fn build(
    sender: Address,
    nonce: U256,
    call_data: Bytes,
    init_code: Bytes,
) -> PackedUserOperation {
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

/// A limit `slack` percent away from `price` on the side that lets an order of `size` fill.
fn limit_for(size: I256, price: U256, slack: u64) -> U256 {
    let pct = if size.is_positive() {
        100 + slack
    } else {
        100 - slack
    };
    price * U256::from(pct) / U256::from(100)
}

impl<B: Backend> Run<'_, B> {
    /// Signs and sends a session op by `key` on `trader`'s account, lane `lane`.
    pub(super) async fn session_op(
        &mut self,
        trader: &Trader,
        key: &PrivateKeySigner,
        lane: u32,
        calls: Vec<Call>,
    ) -> Result<OpResult, RunError> {
        let lane = SessionLane::new(key.address(), lane);
        let nonce_call = IEntryPoint::getNonceCall {
            sender: trader.account,
            key: lane.nonce_key(),
        };
        let nonce = self.backend.view(self.a.entry_point, &nonce_call).await?;
        let session = ISessionManager::getSessionCall { key: key.address() };
        let grant_id = self.backend.view(trader.account, &session).await?.grantId;
        let call_data = ops::session_call_data(key.address(), calls);
        let mut op = build(trader.account, nonce, call_data, Bytes::new());
        let hash = user_op_hash(&op, self.a.entry_point, self.chain_id)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        let until = self.backend.now().await? + 300;
        op.signature = sign_session_op_sync(key, hash, until, grant_id)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        Ok(self.backend.handle_op(op).await?)
    }

    /// An order of `size` at `limit` in the trader's market, sent with its trading key on `lane`.
    pub(super) async fn trade(
        &mut self,
        trader: &Trader,
        lane: u32,
        size: I256,
        limit: U256,
    ) -> Result<OpResult, RunError> {
        let order = vec![ops::place_order(
            self.a.venue,
            trader.market,
            size,
            limit,
            false,
        )];
        let key = trader.trading.clone();
        self.session_op(trader, &key, lane, order).await
    }

    /// The trader adds the scenario's `add_fraction` of its opening order with the trading key (lane 2).
    /// Returns whether the key's limits stopped it (refused in validation, or undone after execution) and
    /// whether its breaker tripped; with no position to add to it sends nothing.
    pub(super) async fn add_to_position(
        &mut self,
        step: u32,
        trader: &mut Trader,
    ) -> Result<(bool, bool), RunError> {
        let before = self.position(trader.account, trader.market).await?;
        if before.is_zero() {
            return Ok((false, false));
        }
        let fraction = self.scenario.traders.add_fraction;
        let size = trader.open_size
            * I256::try_from((fraction * 1000.0) as u64).unwrap_or_default()
            / I256::try_from(1000).unwrap();
        let limit = limit_for(size, self.path.prices[step as usize][trader.market_ix], 2);
        let result = self.trade(trader, 2, size, limit).await?;
        let key = trader.trading.clone();
        self.count(result);
        let after = self.position(trader.account, trader.market).await?;
        let session = ISessionManager::getSessionCall { key: key.address() };
        let tripped = self.backend.view(trader.account, &session).await?.tripped;
        let newly = tripped && !trader.tripped;
        trader.tripped = tripped;
        Ok((after == before, newly))
    }

    /// The trader answers its margin call with the margin key: adds what is left of its reserve, or reduces
    /// every position by the scenario's fraction. None when there is nothing to send.
    pub(super) async fn answer_margin_call(
        &mut self,
        step: u32,
        t: &Trader,
    ) -> Result<Option<OpResult>, RunError> {
        let account = t.account;
        match self.scenario.margin_calls.answer {
            Answer::AddCollateral => {
                // What is left of the reserve (a second margin call may find it spent).
                let held = self
                    .backend
                    .view(self.a.collateral, &TestUSD::balanceOfCall { account })
                    .await?;
                let amount = held.min(t.reserve);
                if amount.is_zero() {
                    return Ok(None);
                }
                let deposit = vec![ops::deposit_margin(self.a.venue, amount)];
                Ok(Some(self.session_op(t, &t.margin, 1, deposit).await?))
            }
            Answer::Reduce => {
                let mut last = None;
                for (mi, m) in self.markets.clone().into_iter().enumerate() {
                    let size = self.position(account, m).await?;
                    if size.is_zero() {
                        continue;
                    }
                    let part = size
                        * I256::try_from((self.scenario.margin_calls.fraction * 1000.0) as u64)
                            .unwrap()
                        / I256::try_from(1000).unwrap();
                    // Selling `part` back: the limit sits on the side that lets `-part` fill.
                    let limit = limit_for(-part, self.path.prices[step as usize][mi], 2);
                    let order = vec![ops::place_order(self.a.venue, m, -part, limit, true)];
                    last = Some(self.session_op(t, &t.margin, 1, order).await?);
                }
                Ok(last)
            }
        }
    }
}
