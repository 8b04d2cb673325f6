//! The calls a TradingAccount op makes, built and read in one place.
//!
//! Owner ops carry `execute(target, value, data)` or `executeBatch(calls)`; session ops carry
//! `executeSession(key, <execute or executeBatch calldata>)`, naming the key that signs them so that the
//! account's execution can apply that key's post-execution limits. The CLI, the harness, the relayer and the
//! tests build every account call here, and the relayer reads ops back with [`AccountCalls::decode`], so a
//! change to the account's calldata is made once.

use alloy::sol_types::SolCall;
use alloy_primitives::{Address, Bytes, I256, U256};

use crate::bindings::{
    AccountFactory, ISessionManager, ITradingAccount::SessionScope, PerpVenue, TestUSD,
    TradingAccount,
};

pub use crate::bindings::BaseAccount::Call;

/// Errors from reading an op's callData.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallDataError {
    /// Not `execute`, `executeBatch` or `executeSession` calldata.
    #[error("callData is not execute, executeBatch or executeSession of a TradingAccount")]
    NotAccountCalls,
    /// `executeSession` wrapping something other than `execute` or `executeBatch`.
    #[error("executeSession carries calls that are not execute or executeBatch")]
    BadSessionCalls,
}

/// A call of the account to `target` with no value.
pub fn call(target: Address, data: impl SolCall) -> Call {
    Call {
        target,
        value: U256::ZERO,
        data: data.abi_encode().into(),
    }
}

/// `placeOrder(market, size, limit, reduceOnly)` on `venue`.
pub fn place_order(
    venue: Address,
    market: u32,
    size: I256,
    limit: U256,
    reduce_only: bool,
) -> Call {
    call(
        venue,
        PerpVenue::placeOrderCall {
            marketId: market,
            sizeDelta: size,
            limitPrice: limit,
            reduceOnly: reduce_only,
        },
    )
}

/// `depositMargin(amount)` on `venue`.
pub fn deposit_margin(venue: Address, amount: U256) -> Call {
    call(venue, PerpVenue::depositMarginCall { amount })
}

/// `withdrawMargin(amount)` on `venue` (owner ops only: session keys can never be granted it).
pub fn withdraw_margin(venue: Address, amount: U256) -> Call {
    call(venue, PerpVenue::withdrawMarginCall { amount })
}

/// ERC-20 `approve(spender, amount)` on `token`.
pub fn approve(token: Address, spender: Address, amount: U256) -> Call {
    call(
        token,
        TestUSD::approveCall {
            spender,
            value: amount,
        },
    )
}

/// `grantSession(key, scope)` on the account itself (an owner op's call).
pub fn grant_session(account: Address, key: Address, scope: SessionScope) -> Call {
    call(account, ISessionManager::grantSessionCall { key, scope })
}

/// `revokeSession(key)` on the account itself.
pub fn revoke_session(account: Address, key: Address) -> Call {
    call(account, ISessionManager::revokeSessionCall { key })
}

/// `rearmSession(key)` on the account itself.
pub fn rearm_session(account: Address, key: Address) -> Call {
    call(account, ISessionManager::rearmSessionCall { key })
}

/// `commitSuccessor(key, successor)` on the account itself: the key may later hand over to `successor`.
pub fn commit_successor(account: Address, key: Address, successor: Address) -> Call {
    call(
        account,
        ISessionManager::commitSuccessorCall { key, successor },
    )
}

/// `rotateSession(key, successor)` on the account itself: the owner moves `key`'s session in one call.
pub fn rotate_session(account: Address, key: Address, successor: Address) -> Call {
    call(
        account,
        ISessionManager::rotateSessionCall { key, successor },
    )
}

/// `disarmHeartbeat(key)` on the account itself.
pub fn disarm_heartbeat(account: Address, key: Address) -> Call {
    call(account, ISessionManager::disarmHeartbeatCall { key })
}

/// The callData of `key`'s own op handing its session to its committed successor.
pub fn hand_over_call_data(key: Address) -> Bytes {
    ISessionManager::rotateToSuccessorCall { key }
        .abi_encode()
        .into()
}

/// The callData of `key`'s own op arming or renewing its dead-man switch for `interval` seconds.
pub fn heartbeat_call_data(key: Address, interval: u32) -> Bytes {
    ISessionManager::heartbeatCall { key, interval }
        .abi_encode()
        .into()
}

/// An owner op's callData: `execute` for one call, `executeBatch` for several (or none).
pub fn owner_call_data(calls: Vec<Call>) -> Bytes {
    match <[Call; 1]>::try_from(calls) {
        Ok([c]) => TradingAccount::executeCall {
            target: c.target,
            value: c.value,
            data: c.data,
        }
        .abi_encode()
        .into(),
        Err(calls) => TradingAccount::executeBatchCall { calls }
            .abi_encode()
            .into(),
    }
}

/// A session op's callData for `key`: `executeSession(key, owner_call_data(calls))`.
pub fn session_call_data(key: Address, calls: Vec<Call>) -> Bytes {
    TradingAccount::executeSessionCall {
        key,
        calls: owner_call_data(calls),
    }
    .abi_encode()
    .into()
}

/// The `initCode` of an account's first op: the factory, then `createAccount(owner, salt)`.
pub fn init_code(factory: Address, owner: Address, salt: U256) -> Bytes {
    [
        factory.as_slice(),
        &AccountFactory::createAccountCall { owner, salt }.abi_encode(),
    ]
    .concat()
    .into()
}

/// The calls of a trader's first owner op: let the venue pull the collateral, deposit `deposit` of it as
/// margin (if any), and grant each `(key, scope)`.
pub fn first_op_calls(
    account: Address,
    collateral: Address,
    venue: Address,
    deposit: U256,
    grants: Vec<(Address, SessionScope)>,
) -> Vec<Call> {
    let mut calls = vec![approve(collateral, venue, U256::MAX)];
    if !deposit.is_zero() {
        calls.push(deposit_margin(venue, deposit));
    }
    calls.extend(
        grants
            .into_iter()
            .map(|(key, scope)| grant_session(account, key, scope)),
    );
    calls
}

/// The calls an op's callData makes, and the session key it names if it is a session op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCalls {
    /// The key `executeSession` names; None for `execute` / `executeBatch`.
    pub session_key: Option<Address>,
    /// The calls, in order.
    pub calls: Vec<Call>,
}

impl AccountCalls {
    /// Reads `execute`, `executeBatch` or `executeSession` callData.
    pub fn decode(call_data: &[u8]) -> Result<Self, CallDataError> {
        if let Ok(s) = TradingAccount::executeSessionCall::abi_decode(call_data) {
            let inner = Self::decode_plain(&s.calls).ok_or(CallDataError::BadSessionCalls)?;
            return Ok(Self {
                session_key: Some(s.key),
                calls: inner,
            });
        }
        Self::decode_plain(call_data)
            .map(|calls| Self {
                session_key: None,
                calls,
            })
            .ok_or(CallDataError::NotAccountCalls)
    }

    fn decode_plain(call_data: &[u8]) -> Option<Vec<Call>> {
        if let Ok(c) = TradingAccount::executeCall::abi_decode(call_data) {
            Some(vec![Call {
                target: c.target,
                value: c.value,
                data: c.data,
            }])
        } else {
            TradingAccount::executeBatchCall::abi_decode(call_data)
                .ok()
                .map(|c| c.calls)
        }
    }

    /// What the op does to risk on `venue`: protective when every call is a deposit (`AddsMargin`) or a
    /// reduce-only order or cancel (`ReducesRisk`) there.
    pub fn kind(&self, venue: Address) -> OpKind {
        let kinds: Vec<OpKind> = self
            .calls
            .iter()
            .map(|c| {
                if c.target != venue {
                    OpKind::Other
                } else if PerpVenue::depositMarginCall::abi_decode(&c.data).is_ok() {
                    OpKind::AddsMargin
                } else if PerpVenue::placeOrderCall::abi_decode(&c.data).is_ok_and(|o| o.reduceOnly)
                    || PerpVenue::cancelOrderCall::abi_decode(&c.data).is_ok()
                {
                    OpKind::ReducesRisk
                } else {
                    OpKind::Other
                }
            })
            .collect();
        if kinds.is_empty() || kinds.contains(&OpKind::Other) {
            OpKind::Other
        } else if kinds.contains(&OpKind::AddsMargin) {
            OpKind::AddsMargin
        } else {
            OpKind::ReducesRisk
        }
    }

    /// True when every call is the account trading or moving margin on `venue` for itself (orders,
    /// cancels, deposits, withdrawals): such an op changes no other account's venue health.
    pub fn moves_only_own_health(&self, venue: Address) -> bool {
        self.calls.iter().all(|c| {
            c.target == venue
                && (PerpVenue::placeOrderCall::abi_decode(&c.data).is_ok()
                    || PerpVenue::cancelOrderCall::abi_decode(&c.data).is_ok()
                    || PerpVenue::depositMarginCall::abi_decode(&c.data).is_ok()
                    || PerpVenue::withdrawMarginCall::abi_decode(&c.data).is_ok())
        })
    }
}

/// What an op does to the account's risk: the relayer bundles risk-reducing ops first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum OpKind {
    /// Deposits margin into the venue.
    AddsMargin,
    /// Reduce-only orders and cancels: they can only shrink exposure.
    ReducesRisk,
    /// Anything else (new orders, withdrawals, admin calls).
    Other,
}

impl OpKind {
    /// True for the ops a trader needs in first when the market moves.
    pub fn is_protective(self) -> bool {
        self != OpKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_calls_round_trip_with_their_key() {
        let venue = Address::repeat_byte(9);
        let key = Address::repeat_byte(5);
        let order = place_order(venue, 1, I256::try_from(-3).unwrap(), U256::from(7), true);
        let data = session_call_data(key, vec![order.clone()]);
        let read = AccountCalls::decode(&data).unwrap();
        assert_eq!(read.session_key, Some(key));
        assert_eq!(read.calls, vec![order.clone()]);
        assert_eq!(read.kind(venue), OpKind::ReducesRisk);

        let batch = owner_call_data(vec![order.clone(), deposit_margin(venue, U256::from(1))]);
        let read = AccountCalls::decode(&batch).unwrap();
        assert_eq!(read.session_key, None);
        assert_eq!(read.calls.len(), 2);
        assert_eq!(read.kind(venue), OpKind::AddsMargin);
        assert!(read.moves_only_own_health(venue));
        assert!(!read.moves_only_own_health(Address::ZERO));
    }

    #[test]
    fn only_self_trading_keeps_other_accounts_health() {
        let venue = Address::repeat_byte(0x99);
        let order = place_order(venue, 0, I256::ONE, U256::from(1), false);
        let read = |calls: Vec<Call>| AccountCalls::decode(&owner_call_data(calls)).unwrap();
        assert!(
            read(vec![order.clone(), withdraw_margin(venue, U256::from(1))])
                .moves_only_own_health(venue)
        );
        let liquidate = call(
            venue,
            PerpVenue::liquidateCall {
                account: Address::repeat_byte(7),
                marketId: 0,
            },
        );
        assert!(!read(vec![order.clone(), liquidate]).moves_only_own_health(venue));
        // The same order bytes sent to another contract (an oracle, a router) prove nothing.
        let elsewhere = Call {
            target: Address::repeat_byte(1),
            ..order.clone()
        };
        assert!(!read(vec![elsewhere]).moves_only_own_health(venue));
        assert!(
            read(vec![]).moves_only_own_health(venue),
            "an empty batch changes nothing"
        );
        assert_eq!(
            read(vec![order]).kind(venue),
            OpKind::Other,
            "opening is not protective"
        );
    }

    #[test]
    fn other_call_data_is_refused_with_a_reason() {
        assert_eq!(
            AccountCalls::decode(&[1, 2, 3]),
            Err(CallDataError::NotAccountCalls)
        );
        let bad = TradingAccount::executeSessionCall {
            key: Address::ZERO,
            calls: vec![0xde, 0xad].into(),
        }
        .abi_encode();
        assert_eq!(
            AccountCalls::decode(&bad),
            Err(CallDataError::BadSessionCalls)
        );
    }

    #[test]
    fn first_op_approves_deposits_and_grants() {
        let calls = first_op_calls(
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
            U256::from(10),
            vec![(Address::repeat_byte(4), SessionScope::default())],
        );
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].target, Address::repeat_byte(2));
        assert_eq!(calls[1].target, Address::repeat_byte(3));
        assert_eq!(calls[2].target, Address::repeat_byte(1));
        assert_eq!(
            owner_call_data(calls.clone())[..4],
            TradingAccount::executeBatchCall::SELECTOR
        );
        assert_eq!(
            owner_call_data(vec![calls[0].clone()])[..4],
            TradingAccount::executeCall::SELECTOR
        );
    }
}
