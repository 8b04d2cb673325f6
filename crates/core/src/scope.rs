//! Session scopes built from what a trader says ("BTC and ETH, at most 0.5 per order and $50,000
//! notional, 20 orders a second, for 8 hours, at most 0.1 ETH of gas, never over 3x"), checked before
//! anything is encoded or sent.

use std::{str::FromStr, time::Duration};

use alloy_primitives::{Address, FixedBytes, U256};

use alloy::sol_types::SolCall;

use crate::{
    bindings::{
        ITradingAccount::{CallPermission, RiskLimits, SessionScope},
        PerpVenue::{depositMarginCall, placeOrderCall},
    },
    outflow::outflow,
    units::format_units,
};

/// The longest session the tools grant: a key is a credential to rotate, not a second owner.
pub const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// How long an op must stay valid after it reaches a relayer (`keyscope relayer`'s default
/// `min_valid_for_secs`): an op that expires sooner is refused before it is bundled.
pub const RELAYER_MIN_VALID_FOR: Duration = Duration::from_secs(10);

/// Time an op spends between its signature and the relayer's check (a block or two of chain time), on
/// top of [`RELAYER_MIN_VALID_FOR`], that a key's op ttl must leave room for.
pub const OP_TRAVEL: Duration = Duration::from_secs(5);

/// Errors from building a scope: each names the field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The session would end before it starts.
    #[error("the session would already be over: valid for {0:?} from now")]
    Expired(Duration),
    /// The session lasts longer than the account's 40-bit times can hold.
    #[error("a session may last at most {max} seconds (40-bit times); asked for {asked}")]
    TooLong {
        /// The lifetime asked for (seconds).
        asked: u64,
        /// The longest possible (seconds).
        max: u64,
    },
    /// The scope names no market.
    #[error("no markets: name at least one market the key may trade")]
    NoMarkets,
    /// A market id outside the 64 a scope can name.
    #[error("market id {0} is out of range: scopes cover market ids 0..63")]
    MarketOutOfRange(u32),
    /// The max order size is zero or does not fit its field.
    #[error("max order size must be above zero and below 2^88 (18 decimals)")]
    BadMaxSize,
    /// The max order notional is zero or does not fit its field.
    #[error("max order notional must be above zero and below 2^96 (18-decimal USD)")]
    BadMaxNotional,
    /// The op ttl does not fit 16 bits of seconds (or is zero).
    #[error("op ttl must be 1..=65535 seconds; got {0}")]
    BadTtl(u64),
    /// A rate that does not parse or does not fit.
    #[error(
        "rate {0:?} is not COUNT/PERIOD with COUNT 1..=65535 and PERIOD like 1s, 30s, 1m (max 194 days)"
    )]
    BadRate(String),
    /// A duration that does not parse.
    #[error("duration {0:?} is not a number with a unit s, m, h or d (like 30s, 8h)")]
    BadDuration(String),
    /// The max uses does not fit its field.
    #[error("max uses must be below 4294967295")]
    BadMaxUses,
    /// A fee limit that is not whole gwei or does not fit.
    #[error("{field} must be whole gwei and below 2^56 gwei; got {wei} wei")]
    BadFee {
        /// Which limit.
        field: &'static str,
        /// The value given (wei).
        wei: U256,
    },
    /// The max leverage does not fit its field.
    #[error("max leverage must be at most 655.35x; got {0} hundredths")]
    BadLeverage(u32),
    /// A percentage at or over its bound.
    #[error("{field} must be a percentage below {max_bps} basis points; got {bps}")]
    BadPercent {
        /// Which limit.
        field: &'static str,
        /// The value given (basis points).
        bps: u32,
        /// The bound (basis points).
        max_bps: u32,
    },
    /// A quote amount that does not fit 64 bits.
    #[error("{field} must fit 64 bits of the venue's quote units; got {value}")]
    BadQuoteAmount {
        /// Which limit.
        field: &'static str,
        /// The value given.
        value: U256,
    },
    /// A paymaster listed twice, or the zero address.
    #[error("{0} is listed twice as a paymaster, or is the zero address")]
    BadPaymaster(Address),
    /// Paymasters are listed but their spending has no budget.
    #[error(
        "paymasters are listed with no paymaster budget: a listed paymaster's spending on the key's ops must \
         be bounded; give --paymaster-budget"
    )]
    NoPaymasterBudget,
    /// The paymaster per-op cap is over the whole paymaster budget.
    #[error(
        "the paymaster per-op cap ({} ETH) is above the whole paymaster budget ({} ETH): no op could ever cost \
         that much; lower --paymaster-max-op-cost or raise --paymaster-budget",
        format_units(*.max_op_cost, 18),
        format_units(*.budget, 18)
    )]
    PaymasterOpCostOverBudget {
        /// The per-op cap (wei).
        max_op_cost: U256,
        /// The whole budget (wei).
        budget: U256,
    },
    /// A call may send value but the key has no value budget to spend.
    #[error(
        "call {selector} on {target} may send {value_limit} wei but the key has no value budget: no call \
         could ever send it; give a value budget or a value limit of zero"
    )]
    ValueWithoutBudget {
        /// The call's target.
        target: Address,
        /// The call's selector.
        selector: FixedBytes<4>,
        /// The most it may send per call (wei).
        value_limit: U256,
    },
    /// The session lasts longer than a year.
    #[error(
        "a session may last at most 365 days ({max_days}d); asked for {asked_days} days — grant a shorter \
         --expires and rotate the key"
    )]
    LifetimeOverMax {
        /// The lifetime asked for (days).
        asked_days: u64,
        /// The longest allowed (days).
        max_days: u64,
    },
    /// The op ttl is too short for ops to get through a relayer.
    #[error(
        "an op ttl of {ttl} s leaves a key that can never trade through a relayer: each op must stay valid \
         {relay} s after it arrives, plus a few seconds to get there; the minimum op ttl is {min} s"
    )]
    TtlTooShort {
        /// The op ttl asked for (seconds).
        ttl: u64,
        /// The validity the relayer needs left on arrival (seconds).
        relay: u64,
        /// The shortest op ttl that works (seconds).
        min: u64,
    },
    /// The session is too short to send one full-ttl op through a relayer.
    #[error(
        "a key that lives {valid_for} s cannot send a full {ttl} s op through a relayer that needs {relay} s \
         of validity left; the minimum lifetime is {min} s (op ttl + {relay} s) — grant a longer --expires or \
         a shorter --ttl"
    )]
    LifetimeTooShort {
        /// The session's lifetime (seconds).
        valid_for: u64,
        /// The op ttl (seconds).
        ttl: u64,
        /// The validity the relayer needs left on arrival (seconds).
        relay: u64,
        /// The shortest lifetime that works (seconds).
        min: u64,
    },
    /// Max uses of zero: a key that can never make a call.
    #[error(
        "max uses 0 would be a key that can never make a call; leave it out for no limit, or give at least 1"
    )]
    ZeroMaxUses,
    /// The per-op fee cap is over the whole fee budget.
    #[error(
        "the per-op cost cap ({} ETH) is above the whole fee budget ({} ETH): no op could ever cost that \
         much; lower --max-op-cost or raise --fee-budget",
        format_units(*.max_op_cost, 18),
        format_units(*.fee_budget, 18)
    )]
    OpCostOverBudget {
        /// The per-op cap (wei).
        max_op_cost: U256,
        /// The whole fee budget (wei).
        fee_budget: U256,
    },
    /// A selector that moves value out of the account, not named in an override.
    #[error(
        "selector {selector} ({signature}) moves value out of the account: {why}; a session key is never \
         granted it unless the owner names it in an override (--allow-outflow-selector {selector})"
    )]
    OutflowSelector {
        /// The selector.
        selector: FixedBytes<4>,
        /// Its function signature.
        signature: &'static str,
        /// How it moves value out.
        why: &'static str,
    },
    /// A selector the account never grants to a session key.
    #[error(
        "selector {selector} ({signature}) {why}: the account refuses to grant it to any session key, \
         whatever the override"
    )]
    DeniedSelector {
        /// The selector.
        selector: FixedBytes<4>,
        /// Its function signature.
        signature: &'static str,
        /// Why the account denies it.
        why: &'static str,
    },
    /// A plain call that is really the venue's `placeOrder`, which the order fields scope.
    #[error(
        "call {selector} on {target} is not a plain call: use the scope's order fields for placeOrder"
    )]
    NotPlainCall {
        /// The call's target.
        target: Address,
        /// The call's selector.
        selector: FixedBytes<4>,
    },
}

/// What a key may spend and risk: gas, native value, and the account's exposure after its ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyLimits {
    /// Most one op may cost (wei): (every gas limit + preVerificationGas) x maxFeePerGas. Zero: no per-op cap.
    pub max_op_cost: U256,
    /// Gas all the key's ops may cost together (wei), charged at each op's maximum cost.
    pub fee_budget: U256,
    /// Calls one op may make (0: no cap).
    pub max_calls_per_op: u8,
    /// Native value all the key's calls may send together (wei).
    pub value_budget: U256,
    /// Paymasters that may sponsor the key's ops.
    pub paymasters: Vec<Address>,
    /// Most each listed paymaster may be charged for one of the key's ops (wei): its prefund, (every gas
    /// limit, the paymaster's included, + preVerificationGas) x maxFeePerGas. Zero: no per-op cap.
    pub paymaster_max_op_cost: U256,
    /// What each listed paymaster may be charged for all the key's ops (wei), at each op's maximum cost;
    /// needed whenever paymasters are listed.
    pub paymaster_budget: U256,
    /// Gross notional / account value after a risk-raising op, in hundredths (300 = 3x; 0: none).
    pub max_leverage: u32,
    /// Largest notional of one market's position, venue quote units (0: none).
    pub max_position_notional: U256,
    /// Account value at least maintenance x (1 + bps / 10,000) after a risk-raising op (0: none).
    pub min_headroom_bps: u32,
    /// The breaker trips when account value falls this far below its high-water mark (bps; 0: none).
    pub max_drawdown_bps: u32,
    /// The breaker trips below this account value, venue quote units (0: none).
    pub drawdown_floor: U256,
}

impl MoneyLimits {
    /// What a cautious trader grants a trading engine: at most 0.01 ETH of gas an op and 0.1 ETH in all
    /// (from the account, and from each paymaster it may list), 8 calls an op, no native value, never over
    /// 3x, at least 1.5x maintenance margin, and a breaker at 15 % below the high-water mark.
    pub fn cautious() -> Self {
        Self {
            max_op_cost: U256::from(10_000_000_000_000_000u64),
            fee_budget: U256::from(100_000_000_000_000_000u64),
            max_calls_per_op: 8,
            value_budget: U256::ZERO,
            paymasters: Vec::new(),
            paymaster_max_op_cost: U256::from(10_000_000_000_000_000u64),
            paymaster_budget: U256::from(100_000_000_000_000_000u64),
            max_leverage: 300,
            max_position_notional: U256::ZERO,
            min_headroom_bps: 5_000,
            max_drawdown_bps: 1_500,
            drawdown_floor: U256::ZERO,
        }
    }

    /// No post-execution limits and no breaker; the gas limits of `cautious`.
    pub fn gas_only() -> Self {
        Self {
            max_leverage: 0,
            min_headroom_bps: 0,
            max_drawdown_bps: 0,
            ..Self::cautious()
        }
    }

    fn risk(&self) -> Result<RiskLimits, ScopeError> {
        if self.max_leverage > u16::MAX as u32 {
            return Err(ScopeError::BadLeverage(self.max_leverage));
        }
        if self.min_headroom_bps > u16::MAX as u32 {
            return Err(ScopeError::BadPercent {
                field: "min headroom",
                bps: self.min_headroom_bps,
                max_bps: u16::MAX as u32 + 1,
            });
        }
        if self.max_drawdown_bps >= 10_000 {
            return Err(ScopeError::BadPercent {
                field: "max drawdown",
                bps: self.max_drawdown_bps,
                max_bps: 10_000,
            });
        }
        let quote = |field: &'static str, value: U256| {
            u64::try_from(value).map_err(|_| ScopeError::BadQuoteAmount { field, value })
        };
        Ok(RiskLimits {
            maxLeverage: self.max_leverage as u16,
            maxPositionNotional: quote("max position notional", self.max_position_notional)?,
            minHeadroomBps: self.min_headroom_bps as u16,
            maxDrawdownBps: self.max_drawdown_bps as u16,
            drawdownFloor: quote("drawdown floor", self.drawdown_floor)?,
        })
    }

    fn fee(field: &'static str, wei: U256) -> Result<u128, ScopeError> {
        let gwei = U256::from(1_000_000_000u64);
        let bad = || ScopeError::BadFee { field, wei };
        if wei % gwei != U256::ZERO || wei / gwei >= U256::from(1u64 << 56) {
            return Err(bad());
        }
        u128::try_from(wei).map_err(|_| bad())
    }
}

/// `count` ops per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many ops per period (at least 1).
    pub count: u16,
    /// The period's length.
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = ScopeError;

    /// "20/1s", "100/1m".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ScopeError::BadRate(s.to_string());
        let (count, period) = s.split_once('/').ok_or_else(bad)?;
        let count: u16 = count.trim().parse().map_err(|_| bad())?;
        let period = parse_duration(period).map_err(|_| bad())?;
        if count == 0 || period.as_secs() == 0 || period.as_secs() > 0xff_ffff {
            return Err(bad());
        }
        Ok(Rate { count, period })
    }
}

/// "30s", "15m", "8h", "2d" (whole units).
pub fn parse_duration(s: &str) -> Result<Duration, ScopeError> {
    let s = s.trim();
    let bad = || ScopeError::BadDuration(s.to_string());
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60).ok_or_else(bad)?,
        'h' => n.checked_mul(3600).ok_or_else(bad)?,
        'd' => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// One more call a key may make: `selector` on `target`, sending at most `value_limit` wei per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainCall {
    /// The contract called.
    pub target: Address,
    /// The function selector called.
    pub selector: FixedBytes<4>,
    /// The most each call may send (wei).
    pub value_limit: U256,
}

/// A trading scope on one venue: orders in some markets, optionally deposits, never withdrawals.
#[derive(Debug, Clone)]
pub struct TradingScope {
    /// The venue the key trades on.
    pub venue: Address,
    /// The market ids the key may trade.
    pub markets: Vec<u32>,
    /// |sizeDelta| per order, 18 decimals.
    pub max_order_size: U256,
    /// |sizeDelta| x limitPrice per order, 18-decimal USD.
    pub max_order_notional: U256,
    /// Only orders that shrink a position.
    pub reduce_only: bool,
    /// Also allow `depositMargin` (answering a margin call with the account's own tokens).
    pub allow_deposit: bool,
    /// How long the session lasts from its grant.
    pub valid_for: Duration,
    /// How far ahead of now an op's own expiry may be.
    pub op_ttl: Duration,
    /// At most this many ops per period, or no rate limit.
    pub rate: Option<Rate>,
    /// Calls (each order of a batch) the key may ever make.
    pub max_uses: Option<u32>,
    /// Gas, value and exposure limits.
    pub limits: MoneyLimits,
    /// Other calls the key may make (a keeper's `poke`, a strategy's own contract). A selector known to
    /// move value out ([`crate::outflow`]) is refused unless listed in `allow_outflow`.
    pub calls: Vec<PlainCall>,
    /// Outflow selectors the owner grants on purpose (never one on the account's own deny list).
    pub allow_outflow: Vec<FixedBytes<4>>,
    /// How long the relayer the key's ops go through needs each op to stay valid after it arrives
    /// ([`RELAYER_MIN_VALID_FOR`] by default; zero when ops go straight to `handleOps`).
    pub relay_min_valid_for: Duration,
}

impl TradingScope {
    /// A scope for `venue` with the usual defaults: 8 hours, 60 s op ttl, no rate limit, no uses cap, and
    /// `MoneyLimits::cautious()`.
    pub fn new(
        venue: Address,
        markets: Vec<u32>,
        max_order_size: U256,
        max_order_notional: U256,
    ) -> Self {
        Self {
            venue,
            markets,
            max_order_size,
            max_order_notional,
            reduce_only: false,
            allow_deposit: false,
            valid_for: Duration::from_secs(8 * 3600),
            op_ttl: Duration::from_secs(60),
            rate: None,
            max_uses: None,
            limits: MoneyLimits::cautious(),
            calls: Vec::new(),
            allow_outflow: Vec::new(),
            relay_min_valid_for: RELAYER_MIN_VALID_FOR,
        }
    }

    /// Refuses a lifetime or op ttl with which the key could never place an op through its relayer.
    fn check_tradable(&self) -> Result<(), ScopeError> {
        let (ttl, relay) = (self.op_ttl.as_secs(), self.relay_min_valid_for.as_secs());
        if relay == 0 {
            return Ok(());
        }
        let min_ttl = relay + OP_TRAVEL.as_secs();
        if ttl < min_ttl {
            return Err(ScopeError::TtlTooShort {
                ttl,
                relay,
                min: min_ttl,
            });
        }
        let min = ttl + relay;
        if self.valid_for.as_secs() < min {
            return Err(ScopeError::LifetimeTooShort {
                valid_for: self.valid_for.as_secs(),
                ttl,
                relay,
                min,
            });
        }
        Ok(())
    }

    /// The permission for one plain call, refused if it moves value out and is not overridden.
    fn plain_permission(&self, c: &PlainCall) -> Result<CallPermission, ScopeError> {
        if c.selector == FixedBytes::from(placeOrderCall::SELECTOR) {
            return Err(ScopeError::NotPlainCall {
                target: c.target,
                selector: c.selector,
            });
        }
        if let Some(o) = outflow(c.selector) {
            if o.denied_on_chain {
                return Err(ScopeError::DeniedSelector {
                    selector: c.selector,
                    signature: o.signature,
                    why: o.why,
                });
            }
            if !self.allow_outflow.contains(&c.selector) {
                return Err(ScopeError::OutflowSelector {
                    selector: c.selector,
                    signature: o.signature,
                    why: o.why,
                });
            }
        }
        let value_limit = u128::try_from(c.value_limit)
            .ok()
            .filter(|v| *v < 1 << 96)
            .ok_or(ScopeError::BadFee {
                field: "call value limit",
                wei: c.value_limit,
            })?;
        Ok(CallPermission {
            target: c.target,
            selector: c.selector,
            valueLimit: alloy_primitives::Uint::from(value_limit),
            ..Default::default()
        })
    }

    /// The on-chain scope, valid from `now` (unix seconds), or the first rule it breaks.
    pub fn build(&self, now: u64) -> Result<SessionScope, ScopeError> {
        if self.valid_for.as_secs() == 0 {
            return Err(ScopeError::Expired(self.valid_for));
        }
        if self.valid_for > MAX_SESSION_LIFETIME {
            return Err(ScopeError::LifetimeOverMax {
                asked_days: self.valid_for.as_secs() / 86_400,
                max_days: MAX_SESSION_LIFETIME.as_secs() / 86_400,
            });
        }
        let until = now.saturating_add(self.valid_for.as_secs());
        let max_time = (1u64 << 40) - 1;
        if until > max_time {
            return Err(ScopeError::TooLong {
                asked: self.valid_for.as_secs(),
                max: max_time - now,
            });
        }
        if self.markets.is_empty() {
            return Err(ScopeError::NoMarkets);
        }
        let mut mask = 0u64;
        for &m in &self.markets {
            if m >= 64 {
                return Err(ScopeError::MarketOutOfRange(m));
            }
            mask |= 1 << m;
        }
        let max_size: u128 = self
            .max_order_size
            .try_into()
            .map_err(|_| ScopeError::BadMaxSize)?;
        if max_size == 0 || max_size >= 1 << 88 {
            return Err(ScopeError::BadMaxSize);
        }
        let max_notional: u128 = self
            .max_order_notional
            .try_into()
            .map_err(|_| ScopeError::BadMaxNotional)?;
        if max_notional == 0 || max_notional >= 1 << 96 {
            return Err(ScopeError::BadMaxNotional);
        }
        let ttl = self.op_ttl.as_secs();
        if ttl == 0 || ttl > u16::MAX as u64 {
            return Err(ScopeError::BadTtl(ttl));
        }
        self.check_tradable()?;
        let max_uses = match self.max_uses {
            Some(0) => return Err(ScopeError::ZeroMaxUses),
            Some(u) if u == u32::MAX => return Err(ScopeError::BadMaxUses),
            Some(u) => u,
            None => 0,
        };
        let mut permissions = vec![CallPermission {
            target: self.venue,
            selector: placeOrderCall::SELECTOR.into(),
            valueLimit: Default::default(),
            marketMask: mask,
            maxOrderSize: alloy_primitives::Uint::from(max_size),
            maxOrderNotional: alloy_primitives::Uint::from(max_notional),
            reduceOnly: self.reduce_only,
        }];
        if self.allow_deposit {
            permissions.push(CallPermission {
                target: self.venue,
                selector: depositMarginCall::SELECTOR.into(),
                ..Default::default()
            });
        }
        for c in &self.calls {
            permissions.push(self.plain_permission(c)?);
        }
        let limits = &self.limits;
        let max_op_cost = MoneyLimits::fee("max op cost", limits.max_op_cost)?;
        let fee_budget = MoneyLimits::fee("fee budget", limits.fee_budget)?;
        if max_op_cost > fee_budget {
            return Err(ScopeError::OpCostOverBudget {
                max_op_cost: limits.max_op_cost,
                fee_budget: limits.fee_budget,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for p in &limits.paymasters {
            if p.is_zero() || !seen.insert(*p) {
                return Err(ScopeError::BadPaymaster(*p));
            }
        }
        let paymaster_max_op_cost =
            MoneyLimits::fee("paymaster max op cost", limits.paymaster_max_op_cost)?;
        let paymaster_budget = MoneyLimits::fee("paymaster budget", limits.paymaster_budget)?;
        if !limits.paymasters.is_empty() {
            if paymaster_budget == 0 {
                return Err(ScopeError::NoPaymasterBudget);
            }
            if paymaster_max_op_cost > paymaster_budget {
                return Err(ScopeError::PaymasterOpCostOverBudget {
                    max_op_cost: limits.paymaster_max_op_cost,
                    budget: limits.paymaster_budget,
                });
            }
        }
        let value_budget = u128::try_from(limits.value_budget).map_err(|_| ScopeError::BadFee {
            field: "value budget",
            wei: limits.value_budget,
        })?;
        // As the account's grant check (`ScopeFault.ValueWithoutBudget`): a value limit needs a budget.
        if value_budget == 0 {
            if let Some(p) = permissions.iter().find(|p| p.valueLimit != 0) {
                return Err(ScopeError::ValueWithoutBudget {
                    target: p.target,
                    selector: p.selector,
                    value_limit: U256::from(p.valueLimit),
                });
            }
        }
        Ok(SessionScope {
            validAfter: alloy_primitives::Uint::from(now.saturating_sub(1)),
            validUntil: alloy_primitives::Uint::from(until),
            maxOpTtl: ttl as u16,
            rateCount: self.rate.map_or(0, |r| r.count),
            ratePeriod: alloy_primitives::Uint::from(self.rate.map_or(0, |r| r.period.as_secs())),
            maxUses: max_uses,
            maxCallsPerOp: limits.max_calls_per_op,
            maxOpCost: max_op_cost,
            feeBudget: fee_budget,
            valueBudget: value_budget,
            risk: limits.risk()?,
            paymasterMaxOpCost: paymaster_max_op_cost,
            paymasterBudget: paymaster_budget,
            paymasters: limits.paymasters.clone(),
            permissions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> TradingScope {
        TradingScope::new(
            Address::repeat_byte(1),
            vec![0, 1],
            U256::from(5u64) * U256::from(10u64).pow(U256::from(17)),
            U256::from(50_000u64) * U256::from(10u64).pow(U256::from(18)),
        )
    }

    #[test]
    fn builds_the_on_chain_scope() {
        let mut s = scope();
        s.rate = Some("20/1s".parse().unwrap());
        s.reduce_only = true;
        let built = s.build(1_800_000_000).unwrap();
        assert_eq!(built.validUntil.to::<u64>(), 1_800_000_000 + 8 * 3600);
        assert_eq!(built.rateCount, 20);
        assert_eq!(built.ratePeriod.to::<u64>(), 1);
        assert_eq!(built.permissions.len(), 1);
        assert_eq!(built.permissions[0].marketMask, 0b11);
        assert!(built.permissions[0].reduceOnly);
        // The cautious money limits by default.
        assert_eq!(built.feeBudget, 100_000_000_000_000_000);
        assert_eq!(built.maxOpCost, 10_000_000_000_000_000);
        assert_eq!(built.maxCallsPerOp, 8);
        assert_eq!(built.risk.maxLeverage, 300);
        assert_eq!(built.risk.maxDrawdownBps, 1_500);
        assert_eq!(built.risk.minHeadroomBps, 5_000);
    }

    #[test]
    fn refuses_money_limits_the_account_would_refuse() {
        let mut s = scope();
        s.limits.fee_budget = U256::from(1_000_000_001u64);
        assert!(matches!(
            s.build(0),
            Err(ScopeError::BadFee {
                field: "fee budget",
                ..
            })
        ));
        let mut s = scope();
        s.limits.max_drawdown_bps = 10_000;
        assert!(matches!(
            s.build(0),
            Err(ScopeError::BadPercent {
                field: "max drawdown",
                ..
            })
        ));
        let mut s = scope();
        s.limits.max_leverage = 70_000;
        assert_eq!(s.build(0).unwrap_err(), ScopeError::BadLeverage(70_000));
        let mut s = scope();
        s.limits.max_position_notional = U256::MAX;
        assert!(matches!(s.build(0), Err(ScopeError::BadQuoteAmount { .. })));
        let mut s = scope();
        s.limits.paymasters = vec![Address::repeat_byte(7), Address::repeat_byte(7)];
        assert_eq!(
            s.build(0).unwrap_err(),
            ScopeError::BadPaymaster(Address::repeat_byte(7))
        );
    }

    #[test]
    fn a_listed_paymaster_is_always_bounded() {
        let pm = Address::repeat_byte(7);
        let mut s = scope();
        s.limits.paymasters = vec![pm];
        // The cautious defaults bound it: 0.01 ETH an op, 0.1 ETH in all.
        let built = s.build(0).unwrap();
        assert_eq!(built.paymasterMaxOpCost, 10_000_000_000_000_000);
        assert_eq!(built.paymasterBudget, 100_000_000_000_000_000);
        assert_eq!(built.paymasters, vec![pm]);
        // No budget: refused, as the account would.
        s.limits.paymaster_budget = U256::ZERO;
        let err = s.build(0).unwrap_err();
        assert_eq!(err, ScopeError::NoPaymasterBudget);
        assert!(err.to_string().contains("--paymaster-budget"), "{err}");
        // A cap above the budget, and amounts the account keeps only in whole gwei.
        s.limits.paymaster_budget = U256::from(1_000_000_000_000_000u64);
        assert!(matches!(
            s.build(0),
            Err(ScopeError::PaymasterOpCostOverBudget { .. })
        ));
        s.limits.paymaster_max_op_cost = U256::from(1_000_000_001u64);
        assert!(matches!(
            s.build(0),
            Err(ScopeError::BadFee {
                field: "paymaster max op cost",
                ..
            })
        ));
        // No paymaster: no budget is needed.
        let mut s = scope();
        s.limits.paymaster_budget = U256::ZERO;
        s.limits.paymaster_max_op_cost = U256::ZERO;
        assert_eq!(s.build(0).unwrap().paymasterBudget, 0);
    }

    #[test]
    fn refuses_nonsense_before_encoding() {
        let mut s = scope();
        s.markets.clear();
        assert_eq!(s.build(0).unwrap_err(), ScopeError::NoMarkets);
        let mut s = scope();
        s.markets = vec![64];
        assert_eq!(s.build(0).unwrap_err(), ScopeError::MarketOutOfRange(64));
        let mut s = scope();
        s.valid_for = Duration::ZERO;
        assert!(matches!(s.build(0), Err(ScopeError::Expired(_))));
        let mut s = scope();
        s.max_order_size = U256::ZERO;
        assert_eq!(s.build(0).unwrap_err(), ScopeError::BadMaxSize);
        assert!(matches!(
            "0/1s".parse::<Rate>(),
            Err(ScopeError::BadRate(_))
        ));
        assert!(matches!(
            "20/0s".parse::<Rate>(),
            Err(ScopeError::BadRate(_))
        ));
        assert!(matches!("20".parse::<Rate>(), Err(ScopeError::BadRate(_))));
        assert_eq!(parse_duration("8h").unwrap(), Duration::from_secs(28_800));
        assert!(matches!(
            parse_duration("8x"),
            Err(ScopeError::BadDuration(_))
        ));
    }

    #[test]
    fn refuses_grants_that_could_never_trade_or_make_no_sense() {
        // An op ttl the relayer's 10 s minimum leaves no room for.
        let mut s = scope();
        s.op_ttl = Duration::from_secs(10);
        assert_eq!(
            s.build(0).unwrap_err(),
            ScopeError::TtlTooShort {
                ttl: 10,
                relay: 10,
                min: 15
            }
        );
        s.op_ttl = Duration::from_secs(15);
        s.build(0).unwrap();
        // Self-bundled keys only need the EntryPoint's check.
        s.op_ttl = Duration::from_secs(5);
        s.relay_min_valid_for = Duration::ZERO;
        s.build(0).unwrap();
        // A lifetime shorter than one full op plus the relayer's margin.
        let mut s = scope();
        s.valid_for = Duration::from_secs(60);
        let err = s.build(0).unwrap_err();
        assert_eq!(
            err,
            ScopeError::LifetimeTooShort {
                valid_for: 60,
                ttl: 60,
                relay: 10,
                min: 70
            }
        );
        assert!(err.to_string().contains("the minimum lifetime is 70 s"));
        // 100,000 days.
        let mut s = scope();
        s.valid_for = parse_duration("100000d").unwrap();
        let err = s.build(0).unwrap_err();
        assert!(err.to_string().contains("at most 365 days"), "{err}");
        s.valid_for = parse_duration("365d").unwrap();
        s.build(0).unwrap();
        // Zero uses is not "unlimited".
        let mut s = scope();
        s.max_uses = Some(0);
        assert_eq!(s.build(0).unwrap_err(), ScopeError::ZeroMaxUses);
        // A per-op cap no op could reach under the budget.
        let mut s = scope();
        s.limits.max_op_cost = U256::from(200_000_000_000_000_000u64);
        let err = s.build(0).unwrap_err();
        assert!(
            err.to_string()
                .contains("cost cap (0.2 ETH) is above the whole fee budget (0.1 ETH)"),
            "{err}"
        );
    }

    #[test]
    fn refuses_outflow_selectors_without_an_override() {
        let burn = crate::outflow::parse_selector("burn(uint256)").unwrap();
        let token = Address::repeat_byte(9);
        let mut s = scope();
        s.calls.push(PlainCall {
            target: token,
            selector: burn,
            value_limit: U256::ZERO,
        });
        let err = s.build(0).unwrap_err();
        assert!(matches!(err, ScopeError::OutflowSelector { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("0x42966c68 (burn(uint256)) moves value out of the account"),
            "{err}"
        );
        // The owner's explicit override grants it.
        s.allow_outflow.push(burn);
        let built = s.build(0).unwrap();
        assert_eq!(built.permissions.len(), 2);
        assert_eq!(built.permissions[1].selector, burn);
        assert_eq!(built.permissions[1].target, token);
        // The account's own deny list: no override helps.
        let transfer = crate::outflow::parse_selector("transfer(address,uint256)").unwrap();
        s.calls[0].selector = transfer;
        s.allow_outflow.push(transfer);
        assert!(matches!(s.build(0), Err(ScopeError::DeniedSelector { .. })));
        // A harmless call needs no override.
        let poke: FixedBytes<4> = crate::bindings::PerpVenue::pokeCall::SELECTOR.into();
        let mut s = scope();
        s.calls.push(PlainCall {
            target: s.venue,
            selector: poke,
            value_limit: U256::ZERO,
        });
        assert_eq!(s.build(0).unwrap().permissions[1].selector, poke);
    }

    /// The account refuses a grant whose call may send value when the key has no value budget
    /// (`ScopeFault.ValueWithoutBudget`); the builder refuses it first, naming the call.
    #[test]
    fn refuses_a_value_limit_without_a_value_budget() {
        let target = Address::repeat_byte(0x51);
        let selector = FixedBytes::from([0xde, 0xad, 0xbe, 0xef]);
        let mut s = scope();
        s.limits.value_budget = U256::ZERO;
        s.calls.push(PlainCall {
            target,
            selector,
            value_limit: U256::from(5),
        });
        assert_eq!(
            s.build(0).unwrap_err(),
            ScopeError::ValueWithoutBudget {
                target,
                selector,
                value_limit: U256::from(5)
            }
        );
        s.limits.value_budget = U256::from(5);
        assert_eq!(s.build(0).unwrap().valueBudget, 5);
        s.limits.value_budget = U256::ZERO;
        s.calls[0].value_limit = U256::ZERO;
        s.build(0).unwrap();
    }
}
