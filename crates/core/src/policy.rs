//! The account's session rules, checked off-chain before a key signs: the same checks `TradingAccount`
//! runs in validation (`_checkCalls`, `_checkCall`, `_chargeFee`, the windows and the uses and value
//! counters), over the session as `getSession` reports it. `keyscope signer` runs them so that a key held
//! for a strategy never signs an op the account would refuse — a compromised or buggy strategy cannot even
//! obtain the signature. The chain stays the authority: what it alone knows (the fill price of a sell, the
//! post-trade risk limits, the dead-man switch's deadline) is still checked there. The rate window is
//! mirrored from the counters `getSession` reports (stale if another op of the key lands in between).
//! `crates/sim/tests/policy_differential.rs` holds the two together: random scopes, ops and venue states
//! through the account on revm and through [`check_session_op`], the same verdict and reason required.

use alloy::sol_types::SolCall;
use alloy_primitives::{Address, FixedBytes, U256};

use crate::{
    bindings::{
        ISessionManager,
        ITradingAccount::{CallPermission, SessionInfo},
        PerpVenue,
    },
    fees::{FeeBreach, PaymasterEntry, charge, max_op_cost, max_sponsored_cost, sponsor},
    ops::AccountCalls,
    order::Order,
    user_op::PackedUserOperation,
};

/// Why an op is refused before signing; each names the rule, as the account's error would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// The key has no active session on the account.
    #[error("session of {0} is not active (never granted, revoked, or rotated away)")]
    NotActive(Address),
    /// The session has not started yet.
    #[error("the session starts at {valid_after}; it is {now}")]
    NotYetValid {
        /// When it starts (unix seconds).
        valid_after: u64,
        /// The time checked at (unix seconds).
        now: u64,
    },
    /// The session has ended.
    #[error("the session ended at {valid_until}; it is {now}")]
    Expired {
        /// When it ended (unix seconds).
        valid_until: u64,
        /// The time checked at (unix seconds).
        now: u64,
    },
    /// The op's own expiry is further ahead than the key's max op lifetime allows.
    #[error(
        "op expiry {op_valid_until} is more than the key's max op ttl ({ttl} s) from now ({now})"
    )]
    OpTtlTooLong {
        /// The op's expiry (unix seconds).
        op_valid_until: u64,
        /// The key's max op lifetime (seconds).
        ttl: u64,
        /// The time checked at (unix seconds).
        now: u64,
    },
    /// The op names another key than the one signing it.
    #[error("the op names key {named}, not the signing key {key}")]
    KeyMismatch {
        /// The key the op's callData names.
        named: Address,
        /// The key that signs.
        key: Address,
    },
    /// The callData's selector is not a call a session key may make.
    #[error("callData is not one of the calls a session key may make (selector {0})")]
    SelectorNotAllowed(FixedBytes<4>),
    /// The callData does not decode.
    #[error("the op's callData does not decode: {0}")]
    Malformed(String),
    /// The heartbeat interval is out of range.
    #[error("heartbeat interval {0} s is not between 1 s and 7 days")]
    BadHeartbeatInterval(u32),
    /// A call's target and selector are not in the key's permissions.
    #[error("call to {target} selector {selector} is not in the key's permissions")]
    CallNotPermitted {
        /// The call's target.
        target: Address,
        /// The call's selector.
        selector: FixedBytes<4>,
    },
    /// The op makes more calls than the key may per op.
    #[error("the op makes {calls} calls; the key may make {max} per op")]
    TooManyCalls {
        /// The calls the op makes.
        calls: usize,
        /// The most the key may make.
        max: usize,
    },
    /// A call sends more value than the key's per-call limit.
    #[error("call sends {value} wei; the key's limit is {limit}")]
    ValueTooHigh {
        /// The value sent (wei).
        value: U256,
        /// The key's limit (wei).
        limit: U256,
    },
    /// The order's market is not one of the key's.
    #[error("market {0} is not in the key's markets")]
    MarketNotAllowed(u32),
    /// The order is bigger than the key's max size.
    #[error("order size {size} is over the key's max {max}")]
    OrderTooLarge {
        /// The order's size.
        size: U256,
        /// The key's max size.
        max: U256,
    },
    /// The order's notional at its limit price is over the key's max.
    #[error("order notional {notional} at its limit price is over the key's max {max}")]
    NotionalTooHigh {
        /// The order's notional.
        notional: U256,
        /// The key's max notional.
        max: U256,
    },
    /// The key may only place reduce-only orders.
    #[error("the key may only place reduce-only orders")]
    ReduceOnlyRequired,
    /// The key's drawdown breaker tripped: only protective calls pass.
    #[error("the key's drawdown breaker tripped: only deposits, cancels and reduce-only orders")]
    ProtectiveOnly,
    /// No rate window opens before the op expires.
    #[error(
        "the key's rate window that could take the op's calls starts at {window_start}, at or after the op's \
         expiry"
    )]
    RateLimited {
        /// When the first window that could take the op's calls starts (unix seconds).
        window_start: u64,
    },
    /// The key has fewer uses left than the op's calls.
    #[error("the key has {left} uses left; the op makes {calls} calls")]
    Exhausted {
        /// The calls the op makes.
        calls: usize,
        /// The uses the key has left.
        left: u32,
    },
    /// The op sends more value than the key's value budget has left.
    #[error("the op sends {value} wei; the key's value budget has {left} left")]
    ValueBudgetExceeded {
        /// The value the op sends (wei).
        value: U256,
        /// What the budget has left (wei).
        left: U256,
    },
    /// The op may cost more than the key's per-op fee cap.
    #[error("the op may cost {cost} wei; the key's per-op cap is {max}")]
    OpCostTooHigh {
        /// What the op may cost (wei).
        cost: U256,
        /// The key's per-op cap (wei).
        max: U256,
    },
    /// The op may cost more than the key's fee budget has left.
    #[error("the op may cost {cost} wei; the key's fee budget has {left} left")]
    FeeBudgetExceeded {
        /// What the op may cost (wei).
        cost: U256,
        /// What the budget has left (wei).
        left: U256,
    },
    /// The op's paymaster is not one the key may use.
    #[error("paymaster {0} is not one the key may use")]
    PaymasterNotAllowed(Address),
    /// The op may cost its paymaster more than the key's per-op cap there.
    #[error(
        "the op may cost paymaster {paymaster} {cost} wei; the key's per-op cap there is {max}"
    )]
    PaymasterOpCostTooHigh {
        /// The paymaster.
        paymaster: Address,
        /// What the op may cost it (wei).
        cost: U256,
        /// The key's per-op cap at that paymaster (wei).
        max: U256,
    },
    /// The op may cost its paymaster more than the key's budget there has left.
    #[error(
        "the op may cost paymaster {paymaster} {cost} wei; the key's budget there has {left} left"
    )]
    PaymasterBudgetExceeded {
        /// The paymaster.
        paymaster: Address,
        /// What the op may cost it (wei).
        cost: U256,
        /// What the key's budget at that paymaster has left (wei).
        left: U256,
    },
    /// The order was signed under another grant than the key's current one.
    #[error("the order was signed under grant {order}; the key's grant is {current}")]
    OrderGrantMismatch {
        /// The grant the order names.
        order: u32,
        /// The key's current grant.
        current: u32,
    },
    /// The order was signed under an old order epoch.
    #[error("the order was signed under order epoch {order}; the key's epoch is {current}")]
    OrderEpochMismatch {
        /// The epoch the order names.
        order: u32,
        /// The key's current order epoch.
        current: u32,
    },
}

/// Longest dead-man switch interval (`AccountStorage.MAX_HEARTBEAT_INTERVAL`, seconds).
pub const MAX_HEARTBEAT_INTERVAL: u32 = 7 * 24 * 3600;

/// The key a session op's nonce names (its upper 160 bits).
pub fn nonce_key(op: &PackedUserOperation) -> Address {
    Address::from_slice(&op.nonce.to_be_bytes::<32>()[..20])
}

/// Checks that `key` may sign `op` (expiring at `op_valid_until`) under `session` at time `now`, in the
/// account's order: the session live, the op's calls (`_checkCalls`) and their count, the rate window, uses and
/// value budget (`_count`), the fee (`_chargeFee`); then the time window the EntryPoint applies to what
/// validation returned — validAfter exclusive (the session's start, the op's ttl before its expiry, or the
/// rate window the calls fit in), validUntil inclusive (the session's end or the op's own expiry).
pub fn check_session_op(
    session: &SessionInfo,
    key: Address,
    op: &PackedUserOperation,
    op_valid_until: u64,
    now: u64,
) -> Result<(), PolicyRefusal> {
    check_op(session, None, key, op, op_valid_until, now)
}

/// [`check_session_op`] for an op a paymaster may sponsor, with `entry` what that paymaster may still be
/// charged for the key's ops (`paymasterAllowance(key, paymaster)`): the charge to the entry is checked where
/// the account checks it, after the rest of validation and before the time window. A self-paid op ignores it.
pub fn check_sponsored_session_op(
    session: &SessionInfo,
    entry: &PaymasterEntry,
    key: Address,
    op: &PackedUserOperation,
    op_valid_until: u64,
    now: u64,
) -> Result<(), PolicyRefusal> {
    check_op(session, Some(entry), key, op, op_valid_until, now)
}

fn check_op(
    session: &SessionInfo,
    entry: Option<&PaymasterEntry>,
    key: Address,
    op: &PackedUserOperation,
    op_valid_until: u64,
    now: u64,
) -> Result<(), PolicyRefusal> {
    if !session.active {
        return Err(PolicyRefusal::NotActive(key));
    }
    let named = nonce_key(op);
    if named != key {
        return Err(PolicyRefusal::KeyMismatch { named, key });
    }
    let (calls, value) = check_calls(session, key, &op.callData)?;
    let ttl = u64::from(session.maxOpTtl);
    // validAfter is exclusive: the earliest block time is op_valid_until - ttl.
    let earliest = op_valid_until.saturating_sub(ttl + 1);
    let window_start = check_rate(session, calls, op_valid_until, earliest)?;
    if session.usesLeft != u32::MAX && calls > session.usesLeft as usize {
        return Err(PolicyRefusal::Exhausted {
            calls,
            left: session.usesLeft,
        });
    }
    if value > session.valueLeft {
        return Err(PolicyRefusal::ValueBudgetExceeded {
            value,
            left: session.valueLeft,
        });
    }
    check_fee(session, op)?;
    if let Some(entry) = entry {
        check_paymaster_charge(entry, op)?;
    }
    if now <= earliest {
        return Err(PolicyRefusal::OpTtlTooLong {
            op_valid_until,
            ttl,
            now,
        });
    }
    let valid_after = session.validAfter.to::<u64>().max(window_start);
    if now <= valid_after {
        return Err(PolicyRefusal::NotYetValid { valid_after, now });
    }
    let valid_until = session.validUntil.to::<u64>().min(op_valid_until);
    if now > valid_until {
        return Err(PolicyRefusal::Expired { valid_until, now });
    }
    Ok(())
}

/// The key's rate window as the account's `_rate` applies it to an op of `calls` calls, its own expiry as
/// the clock: a window that lags more than the ttl behind (`earliest`) restarts there, one that cannot take
/// the calls gives way to the next, and one starting at or after the op's expiry refuses it. Returns the
/// start of the window the op counts in (the op is valid only after it); zero without a rate limit.
fn check_rate(
    session: &SessionInfo,
    calls: usize,
    op_valid_until: u64,
    earliest: u64,
) -> Result<u64, PolicyRefusal> {
    let count = usize::from(session.rateCount);
    if count == 0 {
        return Ok(0);
    }
    if calls > count {
        return Err(PolicyRefusal::TooManyCalls { calls, max: count });
    }
    let period = session.ratePeriod.to::<u64>();
    let (mut start, mut used) = (
        session.windowStart.to::<u64>(),
        usize::from(session.windowUsed),
    );
    if start + period <= earliest {
        (start, used) = (earliest, 0);
    }
    if used + calls > count {
        start += period;
    }
    if start >= op_valid_until {
        return Err(PolicyRefusal::RateLimited {
            window_start: start,
        });
    }
    Ok(start)
}

/// The calls of the op and the value they send; the key's own hand-over, heartbeat and cancels make none.
fn check_calls(
    session: &SessionInfo,
    key: Address,
    call_data: &[u8],
) -> Result<(usize, U256), PolicyRefusal> {
    // The key's own hand-over, heartbeat and cancels: exactly the call, in canonical ABI, naming the key
    // itself. None makes a counted call: never refused by the key's uses or rate window, and (as protective
    // ops) not by its breaker; the chain does not hold the hand-over, the heartbeat or the cancels to the
    // dead-man deadline either.
    let selector = selector_of(call_data);
    if selector == ISessionManager::rotateToSuccessorCall::SELECTOR {
        own_call::<ISessionManager::rotateToSuccessorCall>(call_data, 36, key)?;
        return Ok((0, U256::ZERO));
    }
    if selector == ISessionManager::bumpOrderEpochCall::SELECTOR {
        own_call::<ISessionManager::bumpOrderEpochCall>(call_data, 36, key)?;
        return Ok((0, U256::ZERO));
    }
    if selector == ISessionManager::heartbeatCall::SELECTOR {
        let c = own_call::<ISessionManager::heartbeatCall>(call_data, 68, key)?;
        if c.interval == 0 || c.interval > MAX_HEARTBEAT_INTERVAL {
            return Err(PolicyRefusal::BadHeartbeatInterval(c.interval));
        }
        return Ok((0, U256::ZERO));
    }
    if selector == ISessionManager::cancelSignedOrdersCall::SELECTOR {
        let c = own_call::<ISessionManager::cancelSignedOrdersCall>(call_data, 132, key)?;
        // Only at a venue one of the key's order permissions names: the account makes that venue's call.
        let orders_there = session
            .permissions
            .iter()
            .any(|p| p.target == c.venue && p.selector == PerpVenue::placeOrderCall::SELECTOR);
        if !orders_there {
            return Err(PolicyRefusal::CallNotPermitted {
                target: c.venue,
                selector,
            });
        }
        return Ok((0, U256::ZERO));
    }
    let decoded =
        AccountCalls::decode(call_data).map_err(|e| PolicyRefusal::Malformed(e.to_string()))?;
    match decoded.session_key {
        None => return Err(PolicyRefusal::SelectorNotAllowed(selector_of(call_data))),
        Some(named) => own_key(named, key)?,
    }
    let mut value = U256::ZERO;
    for call in &decoded.calls {
        check_call(session, call.target, call.value, &call.data)?;
        value += call.value;
    }
    // As the account: every call checked first, then their number.
    let max = usize::from(session.maxCallsPerOp);
    if max != 0 && decoded.calls.len() > max {
        return Err(PolicyRefusal::TooManyCalls {
            calls: decoded.calls.len(),
            max,
        });
    }
    Ok((decoded.calls.len(), value))
}

/// `call_data` decoded as `C`, a call of the key's own whose first argument names the key, in the account's
/// order of checks (`_checkKeyCall`): exactly `len` bytes, the named key a clean address, the op's own key,
/// then every other argument clean for its type (an address or a uint32 with upper bits set is malformed).
fn own_call<C: SolCall>(call_data: &[u8], len: usize, key: Address) -> Result<C, PolicyRefusal> {
    if call_data.len() != len {
        return Err(PolicyRefusal::Malformed(format!(
            "{} callData must be {len} bytes, not {}",
            C::SIGNATURE,
            call_data.len()
        )));
    }
    if call_data[4..16].iter().any(|b| *b != 0) {
        return Err(PolicyRefusal::Malformed(format!(
            "{}'s key is not a clean address",
            C::SIGNATURE
        )));
    }
    own_key(Address::from_slice(&call_data[16..36]), key)?;
    C::abi_decode_validate(call_data).map_err(|e| PolicyRefusal::Malformed(e.to_string()))
}

fn selector_of(data: &[u8]) -> FixedBytes<4> {
    if data.len() < 4 {
        FixedBytes::ZERO
    } else {
        FixedBytes::from_slice(&data[..4])
    }
}

fn own_key(named: Address, key: Address) -> Result<(), PolicyRefusal> {
    if named != key {
        return Err(PolicyRefusal::KeyMismatch { named, key });
    }
    Ok(())
}

fn check_call(
    session: &SessionInfo,
    target: Address,
    value: U256,
    data: &[u8],
) -> Result<(), PolicyRefusal> {
    let selector = selector_of(data);
    let rule = session
        .permissions
        .iter()
        .find(|p| p.target == target && p.selector == selector && data.len() >= 4)
        .ok_or(PolicyRefusal::CallNotPermitted { target, selector })?;
    if selector != PerpVenue::placeOrderCall::SELECTOR {
        let limit = U256::from(rule.valueLimit);
        if value > limit {
            return Err(PolicyRefusal::ValueTooHigh { value, limit });
        }
        let protective = selector == PerpVenue::depositMarginCall::SELECTOR
            || selector == PerpVenue::cancelOrderCall::SELECTOR;
        if session.tripped && !protective {
            return Err(PolicyRefusal::ProtectiveOnly);
        }
        return Ok(());
    }
    if !value.is_zero() {
        return Err(PolicyRefusal::ValueTooHigh {
            value,
            limit: U256::ZERO,
        });
    }
    let order = PerpVenue::placeOrderCall::abi_decode(data)
        .map_err(|e| PolicyRefusal::Malformed(e.to_string()))?;
    check_order_rule(
        rule,
        order.marketId,
        order.sizeDelta.unsigned_abs(),
        order.limitPrice,
        order.reduceOnly,
    )?;
    if session.tripped && !order.reduceOnly {
        return Err(PolicyRefusal::ProtectiveOnly);
    }
    Ok(())
}

/// An order permission's rule (`TradingAccount._checkOrderRule`): the market in its mask, the size and the
/// notional at `price` within its caps, reduce-only if it requires it.
fn check_order_rule(
    rule: &CallPermission,
    market_id: u32,
    size: U256,
    price: U256,
    reduce_only: bool,
) -> Result<(), PolicyRefusal> {
    if market_id >= 64 || (rule.marketMask >> market_id) & 1 == 0 {
        return Err(PolicyRefusal::MarketNotAllowed(market_id));
    }
    let max = U256::from(rule.maxOrderSize);
    if size > max {
        return Err(PolicyRefusal::OrderTooLarge { size, max });
    }
    // As the account: |size| x price / 1e18, saturating for absurd prices.
    let notional = if price >> 168 == U256::ZERO {
        size * price / U256::from(10u64).pow(U256::from(18))
    } else {
        U256::MAX
    };
    let max = U256::from(rule.maxOrderNotional);
    if notional > max {
        return Err(PolicyRefusal::NotionalTooHigh { notional, max });
    }
    if rule.reduceOnly && !reduce_only {
        return Err(PolicyRefusal::ReduceOnlyRequired);
    }
    Ok(())
}

/// Checks that `order`'s key may sign it for `venue` under `session` (its account's, as `getSession(order.key)`
/// reports it) with the key's order epoch `epoch` at unix time `now` — what `TradingAccount.checkOrderFill`
/// checks of a fill that the chain's state already decides, in its order: a live session, the order's grant
/// and epoch the key's current ones, the session's window, an order permission at `venue`, its rule (the
/// notional at the limit price: a buy never fills above it; a sell's fill price, which may be higher, is
/// the chain's to check), the breaker (only reduce-only orders while tripped) and a use left. The rate window
/// (never for reduce-only), the dead-man deadline and the post-fill limits are checked at settlement.
pub fn check_signed_order(
    session: &SessionInfo,
    venue: Address,
    order: &Order,
    epoch: u32,
    now: u64,
) -> Result<(), PolicyRefusal> {
    if !session.active {
        return Err(PolicyRefusal::NotActive(order.key));
    }
    if order.grantId != session.grantId {
        return Err(PolicyRefusal::OrderGrantMismatch {
            order: order.grantId,
            current: session.grantId,
        });
    }
    if order.epoch != epoch {
        return Err(PolicyRefusal::OrderEpochMismatch {
            order: order.epoch,
            current: epoch,
        });
    }
    // The window as the account applies it to fills: validAfter exclusive, validUntil inclusive.
    let (valid_after, valid_until) = (
        session.validAfter.to::<u64>(),
        session.validUntil.to::<u64>(),
    );
    if now <= valid_after {
        return Err(PolicyRefusal::NotYetValid { valid_after, now });
    }
    if now > valid_until {
        return Err(PolicyRefusal::Expired { valid_until, now });
    }
    let selector = PerpVenue::placeOrderCall::SELECTOR.into();
    let rule = session
        .permissions
        .iter()
        .find(|p| p.target == venue && p.selector == selector)
        .ok_or(PolicyRefusal::CallNotPermitted {
            target: venue,
            selector,
        })?;
    check_order_rule(
        rule,
        order.marketId,
        U256::from(order.size),
        U256::from(order.limitPrice),
        order.reduceOnly,
    )?;
    if session.tripped && !order.reduceOnly {
        return Err(PolicyRefusal::ProtectiveOnly);
    }
    if session.usesLeft == 0 {
        return Err(PolicyRefusal::Exhausted { calls: 1, left: 0 });
    }
    Ok(())
}

fn check_fee(session: &SessionInfo, op: &PackedUserOperation) -> Result<(), PolicyRefusal> {
    if let Some(paymaster) = sponsor(op) {
        if !session.paymasters.contains(&paymaster) {
            return Err(PolicyRefusal::PaymasterNotAllowed(paymaster));
        }
        return Ok(());
    }
    charge(max_op_cost(op), session.maxOpCost, session.feeLeft)
        .map(|_| ())
        .map_err(|breach| match breach {
            FeeBreach::OpCost { cost, cap } => PolicyRefusal::OpCostTooHigh { cost, max: cap },
            FeeBreach::Budget { cost, left } => PolicyRefusal::FeeBudgetExceeded { cost, left },
        })
}

/// Checks a sponsored `op` against `entry`, what the paymaster it names may still be charged for the key's ops
/// (`paymasterAllowance(key, paymaster)`, or the entry's storage word): the account's `_chargePaymaster`
/// after [`check_session_op`] has checked the rest. A self-paid op passes.
pub fn check_paymaster_charge(
    entry: &PaymasterEntry,
    op: &PackedUserOperation,
) -> Result<(), PolicyRefusal> {
    let Some(paymaster) = sponsor(op) else {
        return Ok(());
    };
    if !entry.listed || op.paymasterAndData.len() < 52 {
        return Err(PolicyRefusal::PaymasterNotAllowed(paymaster));
    }
    charge(max_sponsored_cost(op), entry.max_op_cost, entry.left)
        .map(|_| ())
        .map_err(|breach| match breach {
            FeeBreach::OpCost { cost, cap } => PolicyRefusal::PaymasterOpCostTooHigh {
                paymaster,
                cost,
                max: cap,
            },
            FeeBreach::Budget { cost, left } => PolicyRefusal::PaymasterBudgetExceeded {
                paymaster,
                cost,
                left,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bindings::ITradingAccount::CallPermission,
        ops::{Call, call, deposit_margin, place_order, session_call_data, withdraw_margin},
        user_op::pack_u128s,
    };
    use alloy_primitives::{I256, U256};

    const VENUE: Address = Address::repeat_byte(0x77);
    const KEY: Address = Address::repeat_byte(0x5e);
    const NOW: u64 = 1_800_000_000;

    fn e18(v: u64) -> U256 {
        U256::from(v) * U256::from(10u64).pow(U256::from(18))
    }

    fn session() -> SessionInfo {
        SessionInfo {
            active: true,
            grantId: 3,
            validAfter: alloy_primitives::aliases::U40::from(NOW - 10),
            validUntil: alloy_primitives::aliases::U40::from(NOW + 3600),
            maxOpTtl: 60,
            maxCallsPerOp: 2,
            usesLeft: u32::MAX,
            maxOpCost: U256::from(10u64).pow(U256::from(16)),
            feeLeft: U256::from(10u64).pow(U256::from(17)),
            permissions: vec![
                CallPermission {
                    target: VENUE,
                    selector: PerpVenue::placeOrderCall::SELECTOR.into(),
                    marketMask: 0b11,
                    maxOrderSize: e18(1).to(),
                    maxOrderNotional: e18(100_000).to(),
                    ..Default::default()
                },
                CallPermission {
                    target: VENUE,
                    selector: PerpVenue::depositMarginCall::SELECTOR.into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn op(calls: Vec<Call>) -> PackedUserOperation {
        PackedUserOperation {
            nonce: U256::from_be_slice(KEY.as_slice()) << 96,
            callData: session_call_data(KEY, calls),
            accountGasLimits: pack_u128s(200_000, 300_000),
            preVerificationGas: U256::from(50_000),
            gasFees: pack_u128s(1_000_000_000, 2_000_000_000),
            ..Default::default()
        }
    }

    fn order(market: u32, size: &str, limit: u64, reduce_only: bool) -> Call {
        let size: I256 = size.parse::<I256>().unwrap() * I256::try_from(10u64.pow(17)).unwrap();
        place_order(VENUE, market, size, e18(limit), reduce_only)
    }

    fn check(op: &PackedUserOperation) -> Result<(), PolicyRefusal> {
        check_session_op(&session(), KEY, op, NOW + 30, NOW)
    }

    #[test]
    fn in_scope_ops_pass() {
        // 0.5 BTC at 60,000: 30,000 notional, under every limit.
        check(&op(vec![order(1, "5", 60_000, false)])).unwrap();
        check(&op(vec![
            order(0, "-5", 60_000, false),
            deposit_margin(VENUE, U256::from(5)),
        ]))
        .unwrap();
        let beat = ISessionManager::heartbeatCall {
            key: KEY,
            interval: 60,
        }
        .abi_encode();
        check(&PackedUserOperation {
            callData: beat.into(),
            ..op(vec![])
        })
        .unwrap();
    }

    #[test]
    fn the_keys_own_calls_are_checked_as_the_account_checks_them() {
        let with = |call_data: Vec<u8>| PackedUserOperation {
            callData: call_data.into(),
            ..op(vec![])
        };
        let beat = |key, interval| ISessionManager::heartbeatCall { key, interval }.abi_encode();
        check(&with(beat(KEY, 60))).unwrap();
        check(&with(beat(KEY, MAX_HEARTBEAT_INTERVAL))).unwrap();
        check(&with(crate::ops::hand_over_call_data(KEY).to_vec())).unwrap();
        for bad in [0, MAX_HEARTBEAT_INTERVAL + 1] {
            assert_eq!(
                check(&with(beat(KEY, bad))),
                Err(PolicyRefusal::BadHeartbeatInterval(bad))
            );
        }
        let other = Address::repeat_byte(1);
        assert!(matches!(
            check(&with(beat(other, 60))),
            Err(PolicyRefusal::KeyMismatch { .. })
        ));
        let mut long = crate::ops::hand_over_call_data(KEY).to_vec();
        long.push(0);
        assert!(matches!(
            check(&with(long)),
            Err(PolicyRefusal::Malformed(_))
        ));
    }

    /// An op whose callData is `call_data`, otherwise `op(vec![])`.
    fn key_op(call_data: Vec<u8>) -> PackedUserOperation {
        PackedUserOperation {
            callData: call_data.into(),
            ..op(vec![])
        }
    }

    fn cancel(key: Address, venue: Address) -> Vec<u8> {
        ISessionManager::cancelSignedOrdersCall {
            key,
            venue,
            wordIndex: U256::from(3),
            mask: U256::MAX,
        }
        .abi_encode()
    }

    fn bump(key: Address) -> Vec<u8> {
        ISessionManager::bumpOrderEpochCall { key }.abi_encode()
    }

    #[test]
    fn the_keys_order_cancels_pass_even_when_nothing_else_would() {
        check(&key_op(bump(KEY))).unwrap();
        check(&key_op(cancel(KEY, VENUE))).unwrap();
        // A tripped breaker, no uses left and a full rate window: an order is refused, the cancels pass.
        let cornered = SessionInfo {
            tripped: true,
            usesLeft: 0,
            rateCount: 2,
            windowUsed: 2,
            ..session()
        };
        assert!(
            check_session_op(
                &cornered,
                KEY,
                &op(vec![order(0, "1", 1, false)]),
                NOW + 30,
                NOW
            )
            .is_err()
        );
        for call_data in [bump(KEY), cancel(KEY, VENUE)] {
            check_session_op(&cornered, KEY, &key_op(call_data), NOW + 30, NOW).unwrap();
        }
        // Still the key's window and fee budget, as for any op.
        assert!(matches!(
            check_session_op(&session(), KEY, &key_op(bump(KEY)), NOW + 3630, NOW + 3601),
            Err(PolicyRefusal::Expired { .. })
        ));
        let broke = SessionInfo {
            feeLeft: U256::from(1),
            ..session()
        };
        assert!(matches!(
            check_session_op(&broke, KEY, &key_op(cancel(KEY, VENUE)), NOW + 30, NOW),
            Err(PolicyRefusal::FeeBudgetExceeded { .. })
        ));
    }

    #[test]
    fn the_keys_order_cancels_are_refused_as_the_account_refuses_them() {
        let other = Address::repeat_byte(1);
        let selector: FixedBytes<4> = ISessionManager::cancelSignedOrdersCall::SELECTOR.into();
        // Only at a venue where the key may place orders: a venue it may only deposit at is not one.
        let deposit_only = Address::repeat_byte(0x78);
        let mut s = session();
        s.permissions.push(CallPermission {
            target: deposit_only,
            selector: PerpVenue::depositMarginCall::SELECTOR.into(),
            ..Default::default()
        });
        for venue in [deposit_only, other] {
            assert_eq!(
                check_session_op(&s, KEY, &key_op(cancel(KEY, venue)), NOW + 30, NOW),
                Err(PolicyRefusal::CallNotPermitted {
                    target: venue,
                    selector
                })
            );
        }
        // Another key's orders.
        for call_data in [bump(other), cancel(other, VENUE)] {
            assert_eq!(
                check(&key_op(call_data)),
                Err(PolicyRefusal::KeyMismatch {
                    named: other,
                    key: KEY
                })
            );
        }
        // Not exactly the call: a byte more or less, or an address word with its upper bits set.
        let malformed = |call_data: Vec<u8>| {
            assert!(
                matches!(
                    check(&key_op(call_data.clone())),
                    Err(PolicyRefusal::Malformed(_))
                ),
                "{call_data:?}"
            )
        };
        for good in [bump(KEY), cancel(KEY, VENUE)] {
            let mut long = good.clone();
            long.push(0);
            malformed(long);
            malformed(good[..good.len() - 1].to_vec());
            let mut dirty_key = good.clone();
            dirty_key[4] = 1;
            malformed(dirty_key);
        }
        let mut dirty_venue = cancel(KEY, VENUE);
        dirty_venue[36] = 1;
        malformed(dirty_venue.clone());
        let mut dirty_interval = ISessionManager::heartbeatCall {
            key: KEY,
            interval: 60,
        }
        .abi_encode();
        dirty_interval[36] = 1;
        malformed(dirty_interval);
        // The account's order of checks: the named key before the venue word.
        dirty_venue[16..36].copy_from_slice(other.as_slice());
        assert!(matches!(
            check(&key_op(dirty_venue)),
            Err(PolicyRefusal::KeyMismatch { .. })
        ));
    }

    /// A BTC (market 0) order of KEY, `size` tenths at `limit`, under session()'s grant and epoch 4.
    fn signed(size: u64, limit: u64, reduce_only: bool) -> Order {
        crate::order::OrderBuilder::new(
            Address::repeat_byte(0xac),
            KEY,
            0,
            false,
            U256::from(size) * U256::from(10u64).pow(U256::from(17)),
            e18(limit),
        )
        .grant(3, 4)
        .reduce_only(reduce_only)
        .expiry_ms((NOW + 60) * 1000)
        .build(NOW * 1000)
        .unwrap()
    }

    fn check_order(order: &Order) -> Result<(), PolicyRefusal> {
        check_signed_order(&session(), VENUE, order, 4, NOW)
    }

    #[test]
    fn signed_orders_are_checked_as_the_account_checks_their_fills() {
        check_order(&signed(5, 60_000, false)).unwrap();
        // The key's grant, epoch and window.
        assert_eq!(
            check_order(&Order {
                grantId: 2,
                ..signed(5, 60_000, false)
            }),
            Err(PolicyRefusal::OrderGrantMismatch {
                order: 2,
                current: 3
            })
        );
        assert_eq!(
            check_signed_order(&session(), VENUE, &signed(5, 60_000, false), 5, NOW),
            Err(PolicyRefusal::OrderEpochMismatch {
                order: 4,
                current: 5
            })
        );
        let s = session();
        // validAfter exclusive, validUntil inclusive, as for fills.
        assert!(matches!(
            check_signed_order(&s, VENUE, &signed(5, 60_000, false), 4, NOW - 10),
            Err(PolicyRefusal::NotYetValid { .. })
        ));
        check_signed_order(&s, VENUE, &signed(5, 60_000, false), 4, NOW + 3600).unwrap();
        assert!(matches!(
            check_signed_order(&s, VENUE, &signed(5, 60_000, false), 4, NOW + 3601),
            Err(PolicyRefusal::Expired { .. })
        ));
        let inactive = SessionInfo {
            active: false,
            ..session()
        };
        assert_eq!(
            check_signed_order(&inactive, VENUE, &signed(5, 60_000, false), 4, NOW),
            Err(PolicyRefusal::NotActive(KEY))
        );
        // The venue's order rule: only a venue with an order permission, its market, size and notional.
        let other = Address::repeat_byte(1);
        assert!(matches!(
            check_signed_order(&s, other, &signed(5, 60_000, false), 4, NOW),
            Err(PolicyRefusal::CallNotPermitted { target, .. }) if target == other
        ));
        assert_eq!(
            check_order(&Order {
                marketId: 2,
                ..signed(5, 60_000, false)
            }),
            Err(PolicyRefusal::MarketNotAllowed(2))
        );
        assert!(matches!(
            check_order(&signed(11, 1, false)),
            Err(PolicyRefusal::OrderTooLarge { .. })
        ));
        assert!(matches!(
            check_order(&signed(10, 100_001, false)),
            Err(PolicyRefusal::NotionalTooHigh { .. })
        ));
        let mut reduce_rule = session();
        reduce_rule.permissions[0].reduceOnly = true;
        assert_eq!(
            check_signed_order(&reduce_rule, VENUE, &signed(5, 60_000, false), 4, NOW),
            Err(PolicyRefusal::ReduceOnlyRequired)
        );
        check_signed_order(&reduce_rule, VENUE, &signed(5, 60_000, true), 4, NOW).unwrap();
        // The breaker lets reduce-only orders through; a spent key signs none.
        let tripped = SessionInfo {
            tripped: true,
            ..session()
        };
        assert_eq!(
            check_signed_order(&tripped, VENUE, &signed(5, 60_000, false), 4, NOW),
            Err(PolicyRefusal::ProtectiveOnly)
        );
        check_signed_order(&tripped, VENUE, &signed(5, 60_000, true), 4, NOW).unwrap();
        let spent = SessionInfo {
            usesLeft: 0,
            ..session()
        };
        assert_eq!(
            check_signed_order(&spent, VENUE, &signed(5, 60_000, true), 4, NOW),
            Err(PolicyRefusal::Exhausted { calls: 1, left: 0 })
        );
    }

    #[test]
    fn out_of_scope_ops_are_refused_by_rule() {
        assert_eq!(
            check(&op(vec![order(2, "1", 60_000, false)])),
            Err(PolicyRefusal::MarketNotAllowed(2))
        );
        assert!(matches!(
            check(&op(vec![order(0, "11", 1, false)])),
            Err(PolicyRefusal::OrderTooLarge { .. })
        ));
        assert!(matches!(
            check(&op(vec![order(0, "10", 100_001, false)])),
            Err(PolicyRefusal::NotionalTooHigh { .. })
        ));
        assert!(matches!(
            check(&op(vec![withdraw_margin(VENUE, U256::from(1))])),
            Err(PolicyRefusal::CallNotPermitted { .. })
        ));
        assert!(matches!(
            check(&op(vec![order(0, "1", 1, false); 3])),
            Err(PolicyRefusal::TooManyCalls { calls: 3, max: 2 })
        ));
        let mut value = deposit_margin(VENUE, U256::from(5));
        value.value = U256::from(1);
        assert!(matches!(
            check(&op(vec![value])),
            Err(PolicyRefusal::ValueTooHigh { .. })
        ));
        let other = call(
            Address::repeat_byte(1),
            PerpVenue::depositMarginCall {
                amount: U256::from(1),
            },
        );
        assert!(matches!(
            check(&op(vec![other])),
            Err(PolicyRefusal::CallNotPermitted { .. })
        ));
    }

    /// A sponsored op: listed in the session, then charged to the paymaster's entry as the account does (the
    /// paymaster's gas limits counted), with the entry's own refusals.
    #[test]
    fn a_sponsored_op_is_charged_to_the_paymasters_entry() {
        let pm = Address::repeat_byte(0x9a);
        let mut sponsored = op(vec![order(0, "1", 60_000, false)]);
        // 550,000 gas of the op's own + 50,000 of the paymaster's, at 2 gwei: 0.0012 ETH.
        let mut pnd = pm.to_vec();
        pnd.extend_from_slice(&40_000u128.to_be_bytes());
        pnd.extend_from_slice(&10_000u128.to_be_bytes());
        sponsored.paymasterAndData = pnd.into();
        let listed = SessionInfo {
            paymasters: vec![pm],
            ..session()
        };
        check_session_op(&listed, KEY, &sponsored, NOW + 30, NOW).unwrap();
        let cost = U256::from(1_200_000_000_000_000u64);
        let entry = PaymasterEntry {
            listed: true,
            max_op_cost: cost,
            left: cost,
        };
        check_paymaster_charge(&entry, &sponsored).unwrap();
        let tight = PaymasterEntry {
            max_op_cost: cost - U256::from(1),
            ..entry
        };
        assert_eq!(
            check_paymaster_charge(&tight, &sponsored),
            Err(PolicyRefusal::PaymasterOpCostTooHigh {
                paymaster: pm,
                cost,
                max: cost - U256::from(1)
            })
        );
        let spent = PaymasterEntry {
            left: cost - U256::from(1_000_000_000u64),
            ..entry
        };
        assert!(matches!(
            check_paymaster_charge(&spent, &sponsored),
            Err(PolicyRefusal::PaymasterBudgetExceeded { .. })
        ));
        assert_eq!(
            check_paymaster_charge(&PaymasterEntry::default(), &sponsored),
            Err(PolicyRefusal::PaymasterNotAllowed(pm))
        );
        // A self-paid op is not the paymaster entry's business.
        check_paymaster_charge(&PaymasterEntry::default(), &op(vec![])).unwrap();
    }

    #[test]
    fn keys_windows_fees_and_breaker_are_checked() {
        let good = op(vec![order(0, "1", 60_000, false)]);
        let s = session();
        assert!(matches!(
            check_session_op(&s, Address::repeat_byte(1), &good, NOW + 30, NOW),
            Err(PolicyRefusal::KeyMismatch { .. })
        ));
        assert!(matches!(
            check_session_op(&s, KEY, &good, NOW + 61, NOW),
            Err(PolicyRefusal::OpTtlTooLong { .. })
        ));
        // The EntryPoint's window: the session's end inclusive, its start exclusive, the op's own expiry too.
        check_session_op(&s, KEY, &good, NOW + 3630, NOW + 3600).unwrap();
        assert!(matches!(
            check_session_op(&s, KEY, &good, NOW + 3630, NOW + 3601),
            Err(PolicyRefusal::Expired { .. })
        ));
        assert!(matches!(
            check_session_op(&s, KEY, &good, NOW - 11, NOW - 10),
            Err(PolicyRefusal::NotYetValid { .. })
        ));
        assert_eq!(
            check_session_op(&s, KEY, &good, NOW + 29, NOW + 30),
            Err(PolicyRefusal::Expired {
                valid_until: NOW + 29,
                now: NOW + 30
            })
        );
        check_session_op(&s, KEY, &good, NOW + 30, NOW + 30).unwrap();
        assert!(matches!(
            check_session_op(&s, KEY, &good, NOW - 20, NOW - 50),
            Err(PolicyRefusal::NotYetValid { .. })
        ));
        let inactive = SessionInfo {
            active: false,
            ..session()
        };
        assert_eq!(
            check_session_op(&inactive, KEY, &good, NOW + 30, NOW),
            Err(PolicyRefusal::NotActive(KEY))
        );
        let pricey = PackedUserOperation {
            gasFees: pack_u128s(1, 100_000_000_000),
            ..good.clone()
        };
        assert!(matches!(
            check(&pricey),
            Err(PolicyRefusal::OpCostTooHigh { .. })
        ));
        let broke = SessionInfo {
            feeLeft: U256::from(1),
            ..session()
        };
        assert!(matches!(
            check_session_op(&broke, KEY, &good, NOW + 30, NOW),
            Err(PolicyRefusal::FeeBudgetExceeded { .. })
        ));
        let sponsored = PackedUserOperation {
            paymasterAndData: vec![9u8; 52].into(),
            ..good.clone()
        };
        assert!(matches!(
            check(&sponsored),
            Err(PolicyRefusal::PaymasterNotAllowed(_))
        ));
        let tripped = SessionInfo {
            tripped: true,
            ..session()
        };
        assert_eq!(
            check_session_op(&tripped, KEY, &good, NOW + 30, NOW),
            Err(PolicyRefusal::ProtectiveOnly)
        );
        let reduce = op(vec![order(0, "-1", 60_000, true)]);
        check_session_op(&tripped, KEY, &reduce, NOW + 30, NOW).unwrap();
        let spent = SessionInfo {
            usesLeft: 1,
            ..session()
        };
        assert!(matches!(
            check_session_op(
                &spent,
                KEY,
                &op(vec![order(0, "1", 1, false); 2]),
                NOW + 30,
                NOW
            ),
            Err(PolicyRefusal::Exhausted { calls: 2, left: 1 })
        ));
        let owner_style = PackedUserOperation {
            callData: crate::ops::owner_call_data(vec![order(0, "1", 1, false)]),
            ..good.clone()
        };
        assert!(matches!(
            check(&owner_style),
            Err(PolicyRefusal::SelectorNotAllowed(_))
        ));
    }

    /// The account's order of checks: every call against its rule before the number of calls; then the rate
    /// window (`_rate`, the op's own expiry as the clock), uses, value and fee; the time window last, as the
    /// EntryPoint applies it to what validation returned.
    #[test]
    fn checks_run_in_the_accounts_order_and_the_rate_window_is_the_accounts() {
        // Three calls over a cap of two, one of them out of scope: the account names the call.
        assert!(matches!(
            check(&op(vec![
                order(0, "1", 1, false),
                order(2, "1", 1, false),
                order(0, "1", 1, false)
            ])),
            Err(PolicyRefusal::MarketNotAllowed(2))
        ));
        // Out of scope and expired: the call, not the clock.
        assert!(matches!(
            check_session_op(
                &session(),
                KEY,
                &op(vec![order(2, "1", 1, false)]),
                NOW + 3630,
                NOW + 3601
            ),
            Err(PolicyRefusal::MarketNotAllowed(2))
        ));
        let u40 = alloy_primitives::aliases::U40::from;
        let u24 = alloy_primitives::aliases::U24::from;
        let rated = |window_start: u64, window_used: u16| SessionInfo {
            rateCount: 2,
            ratePeriod: u24(100),
            windowStart: u40(window_start),
            windowUsed: window_used,
            ..session()
        };
        let one = op(vec![order(0, "1", 1, false)]);
        // More calls than a window holds.
        let two = op(vec![order(0, "1", 1, false); 2]);
        assert_eq!(
            check_session_op(
                &SessionInfo {
                    rateCount: 1,
                    ..rated(NOW, 0)
                },
                KEY,
                &two,
                NOW + 30,
                NOW
            ),
            Err(PolicyRefusal::TooManyCalls { calls: 2, max: 1 })
        );
        // Room in the current window.
        check_session_op(&rated(NOW - 5, 1), KEY, &one, NOW + 30, NOW).unwrap();
        // A full window: the op counts in the next one, from NOW + 95 — past its expiry, refused.
        assert_eq!(
            check_session_op(&rated(NOW - 5, 2), KEY, &one, NOW + 30, NOW),
            Err(PolicyRefusal::RateLimited {
                window_start: NOW + 95
            })
        );
        // An op valid past the next window's start waits for it (not due yet), then passes.
        let session = SessionInfo {
            maxOpTtl: 200,
            ..rated(NOW - 5, 2)
        };
        assert_eq!(
            check_session_op(&session, KEY, &one, NOW + 150, NOW),
            Err(PolicyRefusal::NotYetValid {
                valid_after: NOW + 95,
                now: NOW
            })
        );
        check_session_op(&session, KEY, &one, NOW + 150, NOW + 96).unwrap();
        // A window lagging more than the ttl behind the op restarts: room again.
        check_session_op(&rated(NOW - 500, 2), KEY, &one, NOW + 30, NOW).unwrap();
    }

    /// A sponsored op's charge to its paymaster's entry is checked where the account checks it: after the
    /// session's own fee rules, before the time window.
    #[test]
    fn a_sponsored_op_is_charged_before_the_clock_is_read() {
        let pm = Address::repeat_byte(0x9a);
        let mut sponsored = op(vec![order(0, "1", 60_000, false)]);
        let mut pnd = pm.to_vec();
        pnd.extend_from_slice(&pack_u128s(40_000, 10_000).0);
        sponsored.paymasterAndData = pnd.into();
        let listed = SessionInfo {
            paymasters: vec![pm],
            ..session()
        };
        let entry = PaymasterEntry {
            listed: true,
            max_op_cost: U256::from(1_000_000_000u64),
            left: U256::from(10u64).pow(U256::from(18)),
        };
        // Expired and over the paymaster's cap: the cap.
        assert!(matches!(
            check_sponsored_session_op(&listed, &entry, KEY, &sponsored, NOW + 3630, NOW + 3601),
            Err(PolicyRefusal::PaymasterOpCostTooHigh { .. })
        ));
        let roomy = PaymasterEntry {
            max_op_cost: U256::ZERO,
            ..entry
        };
        assert!(matches!(
            check_sponsored_session_op(&listed, &roomy, KEY, &sponsored, NOW + 3630, NOW + 3601),
            Err(PolicyRefusal::Expired { .. })
        ));
        check_sponsored_session_op(&listed, &roomy, KEY, &sponsored, NOW + 30, NOW).unwrap();
        // A self-paid op ignores the entry.
        check_sponsored_session_op(
            &session(),
            &PaymasterEntry::default(),
            KEY,
            &op(vec![]),
            NOW + 30,
            NOW,
        )
        .unwrap();
    }
}
