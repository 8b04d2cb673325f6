//! The account's session rules against their Rust mirror, `core::policy`: the same randomly generated scopes,
//! ops and venue states through the real `TradingAccount` (forge artifacts, EntryPoint v0.8 `handleOps`, on
//! an in-process revm chain) and through `policy::check_session_op`, requiring the same verdict and the same
//! reason (the account's custom error, or the EntryPoint's AA code for the time window).
//!
//! Every case is its own seed (`KEYSCOPE_DIFF_SEED=<seed>` replays one; `KEYSCOPE_DIFF_CASES=<n>` runs more
//! per curve), on a fork of a set-up chain: a funded account with margin and, by venue state, positions long
//! and short. Each case grants a random scope to a fresh key (secp256k1 or P-256), moves the clock, republishes
//! prices, then sends one random session op signed by the key.
//!
//! What the mirror does not know by design (its module says so) is accepted only as a named chain-only
//! verdict, and only when the mirror passed: the post-trade limits (leverage, position, headroom, drawdown),
//! a sell's notional at its fill, the rate window's time, and the venue's own refusals during execution.
//! A positive control runs the same comparison against a mirror with one rule flipped and requires it to
//! be caught.

use std::collections::BTreeMap;

use alloy::{
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::{SolCall, SolError, SolEvent, SolInterface, SolValue},
};
use alloy_primitives::{Address, Bytes, I256, U256};
use keyscope_core::{
    PackedUserOperation, SessionLane,
    bindings::{
        IEntryPoint, ISessionManager, ITradingAccount::SessionInfo, PerpVenue, TestUSD,
        TradingAccount,
    },
    fees::PaymasterEntry,
    key::{Curve, KeySigner, P256Key},
    ops::{self, Call},
    policy::{PolicyRefusal, check_sponsored_session_op},
    refusal::Refusal,
    scope::{MoneyLimits, PlainCall, Rate, TradingScope},
    session::{grant_binding, session_op_digest, session_signature_from},
    user_op::{OpGas, pack_u128s, unsigned},
    user_op_hash,
};
use keyscope_sim::{
    chain::{ChainError, RevmChain},
    fixture::Fixture,
};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

alloy::sol!(
    #[sol(rpc)]
    TestPaymaster,
    "../../out/TestPaymaster.sol/TestPaymaster.json"
);

const E18: u64 = 1_000_000_000_000_000_000;
const GWEI: u64 = 1_000_000_000;
const START: u64 = 1_800_000_000;
/// Cases per curve by default: with both curves, thousands in all.
const DEFAULT_CASES: usize = 800;
const BTC_PRICE: u64 = 60_000;
const ETH_PRICE: u64 = 3_000;
/// A breaker floor over the account's equity (1,000,000 tUSD).
const TRIP_FLOOR: u64 = 1_000_000_000_000;
/// Plain-call targets (no code: a call there succeeds with any value) and selectors a scope may grant.
const PLAIN_TARGETS: [Address; 2] = [Address::repeat_byte(0x51), Address::repeat_byte(0x52)];
const PLAIN_SELECTORS: [[u8; 4]; 2] = [[0xde, 0xad, 0xbe, 0xef], [0x12, 0x34, 0x56, 0x78]];

fn e18(v: u64) -> U256 {
    U256::from(v) * U256::from(E18)
}

/// A session key on either curve.
enum Key {
    K1(PrivateKeySigner),
    R1(P256Key),
}

impl Key {
    fn random(curve: Curve, rng: &mut ChaCha8Rng) -> Self {
        loop {
            let bytes: [u8; 32] = rng.r#gen();
            let b = bytes.into();
            match curve {
                Curve::Secp256k1 => {
                    if let Ok(k) = PrivateKeySigner::from_bytes(&b) {
                        return Key::K1(k);
                    }
                }
                Curve::P256 => {
                    if let Ok(k) = P256Key::from_bytes(&b) {
                        return Key::R1(k);
                    }
                }
            }
        }
    }

    fn address(&self) -> Address {
        match self {
            Key::K1(k) => k.address(),
            Key::R1(k) => k.id(),
        }
    }

    fn curve(&self) -> Curve {
        match self {
            Key::K1(_) => Curve::Secp256k1,
            Key::R1(_) => Curve::P256,
        }
    }

    fn sign(&self, digest: alloy_primitives::B256) -> Vec<u8> {
        match self {
            Key::K1(k) => k.sign_hash_sync(&digest).unwrap().as_bytes().to_vec(),
            Key::R1(k) => k.sign_digest_sync(digest).unwrap().to_vec(),
        }
    }
}

/// The set-up every case forks: an account with margin and wallet collateral, prices, and a venue position.
struct World {
    chain: RevmChain,
    account: Address,
    owner: Address,
    bundler: Address,
    entry_point: Address,
    venue: Address,
    collateral: Address,
    oracle: Address,
    oracle_signer: PrivateKeySigner,
    /// A paymaster contract (the test one: it sponsors any op) with an EntryPoint deposit, which scopes may list.
    paymaster: Address,
}

/// The venue states the cases start from.
const VENUE_STATES: [&str; 4] = ["flat", "long BTC", "short ETH", "long BTC, short ETH"];

fn world(chain_id: u64, state: usize) -> World {
    let margin = U256::from(200_000_000_000u64); // 200,000 tUSD
    let mut f = Fixture::new(chain_id, START, margin).expect("fixture");
    let d = f.deployment.clone();
    f.publish(0, e18(BTC_PRICE)).unwrap();
    f.publish(1, e18(ETH_PRICE)).unwrap();
    // Collateral in the wallet, for deposits.
    f.chain
        .call(
            f.deployer.address(),
            d.collateral,
            &TestUSD::mintCall {
                to: f.account,
                amount: U256::from(50_000_000_000u64),
            },
        )
        .unwrap();
    let paymaster = f
        .chain
        .deploy(
            f.deployer.address(),
            [
                &TestPaymaster::BYTECODE[..],
                &d.entry_point.abi_encode()[..],
            ]
            .concat()
            .into(),
        )
        .expect("paymaster");
    f.chain
        .transact(
            f.bundler,
            Some(paymaster),
            TestPaymaster::depositCall {}.abi_encode().into(),
            e18(100),
        )
        .expect("paymaster deposit");
    let owner = f.owner.address();
    let mut owner_order = |market: u32, size: i64, limit: u64| {
        let data = PerpVenue::placeOrderCall {
            marketId: market,
            sizeDelta: I256::try_from(size).unwrap() * I256::try_from(E18 / 10).unwrap(),
            limitPrice: e18(limit),
            reduceOnly: false,
        };
        f.chain
            .transact(
                owner,
                Some(f.account),
                TradingAccount::executeCall {
                    target: d.venue,
                    value: U256::ZERO,
                    data: data.abi_encode().into(),
                }
                .abi_encode()
                .into(),
                U256::ZERO,
            )
            .expect("owner order");
    };
    if state == 1 || state == 3 {
        owner_order(0, 5, BTC_PRICE * 101 / 100); // 0.5 BTC long
    }
    if state == 2 || state == 3 {
        owner_order(1, -50, ETH_PRICE * 99 / 100); // 5 ETH short
    }
    World {
        account: f.account,
        owner,
        bundler: f.bundler,
        entry_point: d.entry_point,
        venue: d.venue,
        collateral: d.collateral,
        oracle: d.oracle,
        oracle_signer: f.deployer.clone(),
        paymaster,
        chain: f.chain,
    }
}

fn random_scope(rng: &mut ChaCha8Rng, w: &World) -> TradingScope {
    let mut markets: Vec<u32> = (0..4).filter(|_| rng.gen_bool(0.45)).collect();
    if markets.is_empty() || rng.gen_bool(0.3) {
        markets.push(rng.gen_range(0..2));
    }
    markets.dedup();
    let tenths = rng.gen_range(1u64..=100);
    let max_size = U256::from(tenths) * U256::from(E18 / 10);
    // On both sides of what a full-size order at the BTC price is worth.
    let full = tenths * BTC_PRICE / 10;
    let max_notional = e18(((full as f64) * rng.gen_range(0.02..1.5)).max(1.0) as u64);
    let mut s = TradingScope::new(w.venue, markets, max_size, max_notional);
    s.reduce_only = rng.gen_bool(0.15);
    s.allow_deposit = rng.gen_bool(0.6);
    s.valid_for = std::time::Duration::from_secs(rng.gen_range(120..=7_200));
    s.op_ttl = std::time::Duration::from_secs(rng.gen_range(30..=600));
    s.relay_min_valid_for = std::time::Duration::ZERO;
    if rng.gen_bool(0.3) {
        s.rate = Some(Rate {
            count: rng.gen_range(1..=4),
            period: std::time::Duration::from_secs(rng.gen_range(1..=120)),
        });
    }
    if rng.gen_bool(0.3) {
        s.max_uses = Some(rng.gen_range(1..=5));
    }
    let gwei = |n: u64| U256::from(n) * U256::from(GWEI);
    // An op costs 0.00055 to 0.046 ETH at most (see `random_op`): caps and budgets on both sides.
    let max_op_cost = if rng.gen_bool(0.3) {
        0
    } else {
        rng.gen_range(500_000..=30_000_000)
    };
    let fee_budget = max_op_cost.max(rng.gen_range(500_000..=80_000_000));
    let value_budget = match rng.gen_range(0..4) {
        0 | 1 => 0,
        2 => rng.gen_range(1u64..=300_000),
        _ => rng.gen_range(1u64..=2_000_000),
    };
    s.limits = MoneyLimits {
        max_op_cost: gwei(max_op_cost),
        fee_budget: gwei(fee_budget),
        max_calls_per_op: if rng.gen_bool(0.4) {
            0
        } else {
            rng.gen_range(1..=4)
        },
        value_budget: U256::from(value_budget),
        max_leverage: if rng.gen_bool(0.5) {
            0
        } else {
            rng.gen_range(50..=1_000)
        },
        max_position_notional: if rng.gen_bool(0.6) {
            U256::ZERO
        } else {
            U256::from(rng.gen_range(1_000u64..=300_000) * 1_000_000)
        },
        min_headroom_bps: if rng.gen_bool(0.6) {
            0
        } else {
            rng.gen_range(500..=30_000)
        },
        max_drawdown_bps: if rng.gen_bool(0.6) {
            0
        } else {
            rng.gen_range(100..=5_000)
        },
        drawdown_floor: match rng.gen_range(0..10) {
            0 => U256::from(rng.gen_range(100_000u64..=300_000) * 1_000_000),
            // Over the account's equity (about 250,000 tUSD): the key's first op at the venue trips the
            // breaker, and the ops after it meet a tripped key.
            1 => U256::from(TRIP_FLOOR),
            _ => U256::ZERO,
        },
        ..MoneyLimits::gas_only()
    };
    if rng.gen_bool(0.3) {
        s.limits.paymasters = vec![w.paymaster];
        let cap = if rng.gen_bool(0.3) {
            0
        } else {
            rng.gen_range(500_000..=30_000_000)
        };
        s.limits.paymaster_max_op_cost = gwei(cap);
        s.limits.paymaster_budget = gwei(cap.max(rng.gen_range(500_000..=80_000_000)));
    }
    if s.limits.drawdown_floor == U256::from(TRIP_FLOOR) {
        // The case's first op deposits (see `run_case`): allowed, and under any per-op cap.
        s.allow_deposit = true;
        s.limits.max_op_cost = U256::ZERO;
    }
    if rng.gen_bool(0.4) {
        let n = rng.gen_range(1..=2);
        for target in PLAIN_TARGETS.iter().take(n) {
            s.calls.push(PlainCall {
                target: *target,
                selector: PLAIN_SELECTORS[rng.gen_range(0..2)].into(),
                value_limit: if value_budget == 0 {
                    U256::ZERO
                } else {
                    U256::from(rng.gen_range(0u64..=1_000_000))
                },
            });
        }
    }
    s
}

/// One random call of a session op.
fn random_call(rng: &mut ChaCha8Rng, w: &World, scope: &TradingScope, prices: (u64, u64)) -> Call {
    let roll = rng.gen_range(0..100);
    let mut c = if roll < 68 {
        let market = if rng.gen_bool(0.9) {
            *scope.markets.choose(rng).unwrap()
        } else {
            rng.gen_range(0..5)
        };
        // Around the scope's size cap, either side.
        let cap = scope.max_order_size.to::<u128>();
        let size = (cap as f64 * rng.gen_range(0.01..1.15)) as u128;
        let size = I256::try_from(size.max(1)).unwrap();
        let size = if rng.gen_bool(0.5) { size } else { -size };
        let oracle = match market {
            0 => prices.0,
            1 => prices.1,
            _ => 1_000,
        };
        let limit = match rng.gen_range(0..20) {
            0 => U256::ZERO,
            1 => U256::MAX >> 80, // over 2^168: saturated notional
            _ => {
                U256::from((oracle as f64 * rng.gen_range(0.9..1.1) * 1e6) as u128)
                    * U256::from(1_000_000_000_000u64)
            }
        };
        let target = if rng.gen_bool(0.98) {
            w.venue
        } else {
            PLAIN_TARGETS[0]
        };
        let mut c = ops::place_order(target, market, size, limit, rng.gen_bool(0.3));
        c.target = target;
        c
    } else if roll < 80 {
        ops::deposit_margin(
            w.venue,
            U256::from(rng.gen_range(1u64..=20_000) * 1_000_000),
        )
    } else if roll < 82 {
        ops::withdraw_margin(w.venue, U256::from(rng.gen_range(1u64..=1_000) * 1_000_000))
    } else if roll < 84 {
        ops::call(
            w.venue,
            PerpVenue::cancelOrderCall {
                _0: rng.gen_range(0..2),
                orderId: U256::from(rng.gen_range(0u64..3)),
            },
        )
    } else if roll < 97 {
        let granted = scope.calls.choose(rng);
        let target = if rng.gen_bool(0.9) {
            granted.map_or(PLAIN_TARGETS[0], |c| c.target)
        } else {
            Address::repeat_byte(0x53)
        };
        let mut data = match granted {
            Some(c) if rng.gen_bool(0.85) => c.selector.to_vec(),
            _ => PLAIN_SELECTORS[rng.gen_range(0..2)].to_vec(),
        };
        if rng.gen_bool(0.1) {
            data = vec![0xde, 0xad]; // a short call
        }
        data.extend_from_slice(&[0u8; 32]);
        Call {
            target,
            value: U256::ZERO,
            data: data.into(),
        }
    } else {
        ops::call(
            w.collateral,
            TestUSD::transferCall {
                to: Address::repeat_byte(0xee),
                value: U256::from(1_000_000u64),
            },
        )
    };
    if (84..97).contains(&roll) && rng.gen_bool(0.6) {
        // Around the granted call's value limit.
        let limit = scope
            .calls
            .iter()
            .find(|p| p.target == c.target && c.data.starts_with(p.selector.as_slice()))
            .map_or(1_000, |p| p.value_limit.to::<u64>());
        c.value = U256::from(((limit as f64) * rng.gen_range(0.0..1.2)) as u64);
    } else if rng.gen_bool(0.04) {
        c.value = U256::from(rng.gen_range(1u64..=1_500_000));
    }
    c
}

/// The op's callData: mostly `executeSession(key, …)`, sometimes one of the key's own calls or something else.
fn random_call_data(
    rng: &mut ChaCha8Rng,
    w: &World,
    scope: &TradingScope,
    key: Address,
    prices: (u64, u64),
) -> (Bytes, String) {
    let other = Address::repeat_byte(0x0f);
    match rng.gen_range(0..100) {
        0..=79 => {
            let n = match rng.gen_range(0..10) {
                0..=5 => 1,
                6..=7 => 2,
                8 => 3,
                _ => rng.gen_range(4..=6),
            };
            let calls: Vec<Call> = (0..n).map(|_| random_call(rng, w, scope, prices)).collect();
            let text = format!("{calls:?}");
            let named = if rng.gen_bool(0.97) { key } else { other };
            (ops::session_call_data(named, calls), text)
        }
        80..=84 => {
            let interval = *[0u32, 60, 3_600, 7 * 86_400, 7 * 86_400 + 1]
                .choose(rng)
                .unwrap();
            (
                ops::heartbeat_call_data(key, interval),
                format!("heartbeat({interval})"),
            )
        }
        85..=88 => {
            let named = if rng.gen_bool(0.8) { key } else { other };
            (
                ISessionManager::bumpOrderEpochCall { key: named }
                    .abi_encode()
                    .into(),
                format!("bumpOrderEpoch({named})"),
            )
        }
        89..=93 => {
            let venue = if rng.gen_bool(0.7) { w.venue } else { other };
            (
                ISessionManager::cancelSignedOrdersCall {
                    key,
                    venue,
                    wordIndex: U256::from(1),
                    mask: U256::from(3),
                }
                .abi_encode()
                .into(),
                format!("cancelSignedOrders(venue {venue})"),
            )
        }
        _ => {
            let calls = vec![random_call(rng, w, scope, prices)];
            let text = format!("owner-style execute {calls:?}");
            (ops::owner_call_data(calls), text)
        }
    }
}

/// A verdict: passed, or refused with the reason's name (a contract error, or an EntryPoint AA code).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Pass,
    Refused { phase: Phase, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Validation,
    Execution,
}

/// The account error or EntryPoint code each mirror refusal stands for.
fn policy_reason(r: &PolicyRefusal) -> &'static str {
    use PolicyRefusal as P;
    match r {
        P::NotActive(_) => "SessionNotActive",
        // The window and the op's ttl come back as validation data: the EntryPoint refuses with AA22.
        P::NotYetValid { .. } | P::Expired { .. } | P::OpTtlTooLong { .. } => "AA22",
        P::KeyMismatch { .. } => "SessionKeyMismatch",
        P::SelectorNotAllowed(_) => "SessionSelectorNotAllowed",
        P::Malformed(_) => "MalformedCalldata",
        P::BadHeartbeatInterval(_) => "InvalidHeartbeatInterval",
        P::CallNotPermitted { .. } => "SessionCallNotPermitted",
        P::TooManyCalls { .. } => "SessionTooManyCalls",
        P::ValueTooHigh { .. } => "SessionValueTooHigh",
        P::MarketNotAllowed(_) => "SessionMarketNotAllowed",
        P::OrderTooLarge { .. } => "SessionOrderTooLarge",
        P::NotionalTooHigh { .. } => "SessionNotionalTooHigh",
        P::ReduceOnlyRequired => "SessionReduceOnlyRequired",
        P::ProtectiveOnly => "SessionProtectiveOnly",
        P::RateLimited { .. } => "SessionRateLimited",
        P::Exhausted { .. } => "SessionExhausted",
        P::ValueBudgetExceeded { .. } => "SessionValueBudgetExceeded",
        P::OpCostTooHigh { .. } => "SessionOpCostTooHigh",
        P::FeeBudgetExceeded { .. } => "SessionFeeBudgetExceeded",
        P::PaymasterNotAllowed(_) => "SessionPaymasterNotAllowed",
        P::PaymasterOpCostTooHigh { .. } => "SessionPaymasterOpCostTooHigh",
        P::PaymasterBudgetExceeded { .. } => "SessionPaymasterBudgetExceeded",
        P::OrderGrantMismatch { .. } => "OrderGrantMismatch",
        P::OrderEpochMismatch { .. } => "OrderEpochMismatch",
    }
}

/// The name of the error in revert data: an account error (unwrapping a batch's `ExecuteError`), else what
/// `core::refusal` reads, else the raw selector.
fn error_name(data: &[u8]) -> String {
    if let Ok(e) = TradingAccount::ExecuteError::abi_decode(data) {
        return error_name(&e.error);
    }
    let name = |debug: String| debug.split(['(', ' ', '{']).next().unwrap().to_string();
    if let Ok(e) = TradingAccount::TradingAccountErrors::abi_decode(data) {
        return name(format!("{e:?}"));
    }
    if let Ok(e) = PerpVenue::PerpVenueErrors::abi_decode(data) {
        return name(format!("{e:?}"));
    }
    match Refusal::decode(data).error {
        Some(name) => name,
        None if data.len() >= 4 => format!("0x{}", alloy_primitives::hex::encode(&data[..4])),
        None => "empty revert".into(),
    }
}

/// The chain's verdict on `handleOps([op])`.
fn chain_verdict(result: Result<keyscope_sim::chain::Receipt, ChainError>) -> Verdict {
    match result {
        Err(ChainError::Reverted { data, .. }) => {
            let reason = match IEntryPoint::IEntryPointErrors::abi_decode(&data) {
                Ok(IEntryPoint::IEntryPointErrors::FailedOp(f)) => f.reason[..4].to_string(),
                Ok(IEntryPoint::IEntryPointErrors::FailedOpWithRevert(f)) => error_name(&f.inner),
                _ => error_name(&data),
            };
            Verdict::Refused {
                phase: Phase::Validation,
                reason,
            }
        }
        Err(e) => panic!("handleOps failed outside the op: {e}"),
        Ok(receipt) => {
            let mut success = None;
            let mut reason = None;
            for l in &receipt.logs {
                if let Ok(ev) = IEntryPoint::UserOperationEvent::decode_log(l) {
                    success = Some(ev.success);
                }
                if let Ok(ev) = IEntryPoint::UserOperationRevertReason::decode_log(l) {
                    reason = Some(error_name(&ev.revertReason));
                }
            }
            match success.expect("a UserOperationEvent") {
                true => Verdict::Pass,
                false => Verdict::Refused {
                    phase: Phase::Execution,
                    reason: reason.unwrap_or_else(|| "no revert reason".into()),
                },
            }
        }
    }
}

/// Reasons only the chain can give, by design of the mirror (its module's doc): accepted when the mirror
/// passed. Returns the class's name.
fn chain_only(verdict: &Verdict) -> Option<&'static str> {
    let Verdict::Refused { phase, reason } = verdict else {
        return None;
    };
    match (phase, reason.as_str()) {
        (Phase::Execution, "SessionLeverageTooHigh") => Some("post-trade leverage"),
        (Phase::Execution, "SessionPositionTooLarge") => Some("post-trade position"),
        (Phase::Execution, "SessionHeadroomTooLow") => Some("post-trade headroom"),
        (Phase::Execution, "SessionDrawdownBreached") => Some("post-trade drawdown"),
        (Phase::Execution, "SessionNotionalTooHigh") => Some("a sell's notional at its fill"),
        (Phase::Execution, r) if !r.starts_with("Session") => {
            Some("the venue's or callee's refusal")
        }
        _ => None,
    }
}

/// A mirror: `core::policy`, or a deliberately broken one.
type Mirror<'a> = &'a dyn Fn(&Outcome) -> Result<(), PolicyRefusal>;

/// `core::policy`'s verdict on the op of `o`.
fn policy_verdict(o: &Outcome, session: &SessionInfo) -> Result<(), PolicyRefusal> {
    check_sponsored_session_op(session, &o.entry, o.key, &o.op, o.op_valid_until, o.now)
}

/// How one op compares: `Ok(class)` for agreement (the shared reason, `pass`, or a chain-only class),
/// `Err(text)` otherwise.
fn compare(mirror: Mirror, o: &Outcome) -> Result<String, String> {
    let chain = &o.chain;
    let expected = mirror(o);
    match (&expected, chain) {
        (Ok(()), Verdict::Pass) => Ok("pass".into()),
        (Err(r), Verdict::Refused { phase, reason }) if policy_reason(r) == reason => {
            let _ = phase;
            Ok(reason.clone())
        }
        (Ok(()), v) => match chain_only(v) {
            Some(class) => Ok(match v {
                Verdict::Refused { reason, .. } => format!("chain-only: {class} ({reason})"),
                Verdict::Pass => unreachable!(),
            }),
            None => Err(format!("mirror passes, chain refuses: {v:?}")),
        },
        (Err(r), v) => Err(format!(
            "mirror refuses {} ({r}), chain: {v:?}",
            policy_reason(r)
        )),
    }
}

/// Everything about one op of a case that the comparison needs.
struct Outcome {
    case: String,
    session: SessionInfo,
    entry: PaymasterEntry,
    key: Address,
    op: PackedUserOperation,
    op_valid_until: u64,
    now: u64,
    chain: Verdict,
}

/// Ops per case: the first on a fresh grant, the rest on what the earlier ones left (uses, value, fees,
/// the rate window).
const OPS_PER_CASE: u64 = 3;

fn run_case(worlds: &[World], curve: Curve, seed: u64) -> Option<Vec<Outcome>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let state = rng.gen_range(0..worlds.len());
    let w = &worlds[state];
    let mut chain = w.chain.fork();
    let key = Key::random(curve, &mut rng);
    let scope = random_scope(&mut rng, w);
    let built = scope.build(chain.timestamp()).ok()?;
    chain
        .transact(
            w.owner,
            Some(w.account),
            ISessionManager::grantSessionCall {
                key: key.address(),
                scope: built,
            }
            .abi_encode()
            .into(),
            U256::ZERO,
        )
        .expect("grant");
    let valid_for = scope.valid_for.as_secs();
    let mut outcomes = Vec::new();
    let mut sequence = 0u64;
    let mut elapsed = 0u64;
    for step in 0..rng.gen_range(1..=OPS_PER_CASE) {
        // The clock: first anywhere in the session (or at or past its end), then a few seconds on.
        let advance = if step == 0 {
            match if scope.limits.drawdown_floor == U256::from(TRIP_FLOOR) {
                3
            } else {
                rng.gen_range(0..10)
            } {
                0 => 0,
                1 => valid_for + rng.gen_range(0..3),
                2 => valid_for - 1,
                _ => rng.gen_range(1..valid_for),
            }
        } else {
            rng.gen_range(0..=40)
        };
        chain.advance(advance);
        elapsed += advance;
        let now = chain.timestamp();
        let prices = if elapsed == 0 || advance == 0 {
            // The oracle takes only newer prices.
            (BTC_PRICE, ETH_PRICE)
        } else {
            let p = (
                (BTC_PRICE as f64 * rng.gen_range(0.7..1.3)) as u64,
                (ETH_PRICE as f64 * rng.gen_range(0.7..1.3)) as u64,
            );
            publish(&mut chain, w, 0, p.0);
            publish(&mut chain, w, 1, p.1);
            p
        };

        // A key whose breaker floor is over the account's equity first deposits a little, which trips it: the
        // ops after meet a tripped key.
        let trips = step == 0 && scope.limits.drawdown_floor == U256::from(TRIP_FLOOR);
        let (call_data, calls) = if trips {
            let deposit = ops::deposit_margin(w.venue, U256::from(1_000_000u64));
            let text = format!("{deposit:?}");
            (ops::session_call_data(key.address(), vec![deposit]), text)
        } else {
            random_call_data(&mut rng, w, &scope, key.address(), prices)
        };
        let gas = OpGas {
            verification: rng.gen_range(300_000..=1_200_000),
            call: rng.gen_range(200_000..=1_000_000),
            pre_verification: rng.gen_range(50_000..=100_000),
        };
        let max_fee =
            u128::from(if trips { 1 } else { rng.gen_range(1u64..=20) }) * u128::from(GWEI);
        let mut op = unsigned(
            w.account,
            SessionLane::new(key.address(), 0).nonce(sequence),
            call_data,
            Bytes::new(),
            gas,
            max_fee.min(u128::from(GWEI)),
            max_fee,
        );
        let sponsor = match rng.gen_range(0..100) {
            // A paymaster the key may not use.
            0..=3 => Some(Address::repeat_byte(0x9a)),
            4..=33 if !scope.limits.paymasters.is_empty() && !trips => Some(w.paymaster),
            _ => None,
        };
        if let Some(paymaster) = sponsor {
            let mut pnd = paymaster.to_vec();
            pnd.extend_from_slice(
                &pack_u128s(rng.gen_range(10_000..=300_000), rng.gen_range(0..=100_000)).0,
            );
            op.paymasterAndData = pnd.into();
        }
        let ttl = scope.op_ttl.as_secs() as i64;
        let offset = match if trips { 9 } else { rng.gen_range(0..10) } {
            0 => rng.gen_range(-5..=0),
            1 => ttl + rng.gen_range(0..=5),
            _ => rng.gen_range(1..=ttl),
        };
        let op_valid_until = (now as i64 + offset) as u64;

        let session: SessionInfo = chain
            .view(
                w.bundler,
                w.account,
                &ISessionManager::getSessionCall { key: key.address() },
            )
            .expect("getSession");
        let entry: PaymasterEntry = chain
            .view(
                w.bundler,
                w.account,
                &ISessionManager::paymasterAllowanceCall {
                    key: key.address(),
                    paymaster: sponsor.unwrap_or(w.paymaster),
                },
            )
            .expect("paymasterAllowance")
            .into();
        let hash = user_op_hash(&op, w.entry_point, chain.chain_id()).unwrap();
        let digest = session_op_digest(hash, op_valid_until, grant_binding(session.grantId));
        op.signature =
            session_signature_from(key.curve(), op_valid_until, &key.sign(digest)).unwrap();

        let result = chain.transact(
            w.bundler,
            Some(w.entry_point),
            IEntryPoint::handleOpsCall {
                ops: vec![op.clone()],
                beneficiary: w.bundler,
            }
            .abi_encode()
            .into(),
            U256::ZERO,
        );
        let verdict = chain_verdict(result);
        if !matches!(
            verdict,
            Verdict::Refused {
                phase: Phase::Validation,
                ..
            }
        ) {
            sequence += 1;
        }
        outcomes.push(Outcome {
            case: format!(
                "op {step} of seed {seed}: venue {}, {scope:?}, clock +{advance} (+{elapsed} since the grant), \
                 prices {prices:?}, op expiry now{offset:+}, calls {calls}",
                VENUE_STATES[state]
            ),
            key: key.address(),
            session,
            entry,
            op,
            op_valid_until,
            now,
            chain: verdict,
        });
    }
    Some(outcomes)
}

fn publish(chain: &mut RevmChain, w: &World, market: u32, price: u64) {
    let (oracle_key, d_oracle) = (&w.oracle_signer, w.oracle);
    let update = keyscope_core::bindings::SignedPriceOracle::PriceUpdate {
        marketId: market,
        price: e18(price),
        publishTime: chain.timestamp(),
    };
    let digest = chain
        .view(
            w.bundler,
            d_oracle,
            &keyscope_core::bindings::SignedPriceOracle::updateDigestCall { u: update.clone() },
        )
        .unwrap();
    let sig = oracle_key.sign_hash_sync(&digest).unwrap();
    chain
        .call(
            w.bundler,
            d_oracle,
            &keyscope_core::bindings::SignedPriceOracle::submitCall {
                u: update,
                signature: sig.as_bytes().to_vec().into(),
            },
        )
        .unwrap();
}

fn cases() -> usize {
    std::env::var("KEYSCOPE_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Runs the cases of one curve and compares them with the real mirror and with a broken one.
fn differential(curve: Curve, chain_id: u64, base_seed: u64) {
    let started = std::time::Instant::now();
    let worlds: Vec<World> = (0..VENUE_STATES.len())
        .map(|s| world(chain_id, s))
        .collect();
    let seeds: Vec<u64> = match std::env::var("KEYSCOPE_DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("KEYSCOPE_DIFF_SEED is a u64")],
        Err(_) => (0..cases() as u64).map(|i| base_seed + i).collect(),
    };
    let real: Mirror = &|o| policy_verdict(o, &o.session);
    // The positive control: a mirror that forgot the reduce-only rule of order permissions.
    let forgetful: Mirror = &|o| {
        let mut s = o.session.clone();
        for p in &mut s.permissions {
            p.reduceOnly = false;
        }
        policy_verdict(o, &s)
    };
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut control_caught = 0;
    let mut skipped = 0;
    let mut ops_run = 0;
    for &seed in &seeds {
        let Some(outcomes) = run_case(&worlds, curve, seed) else {
            skipped += 1;
            continue;
        };
        for o in outcomes {
            ops_run += 1;
            match compare(real, &o) {
                Ok(class) => *classes.entry(class).or_default() += 1,
                Err(why) => {
                    let class = why.split(['(', '{']).next().unwrap_or_default().to_string();
                    let entry = failures.entry(class).or_insert_with(|| {
                        (
                            0,
                            format!(
                                "KEYSCOPE_DIFF_SEED={seed}: {why}\n  {}\n  session: {:?}\n  now {} op valid until {}",
                                o.case, o.session, o.now, o.op_valid_until
                            ),
                        )
                    });
                    entry.0 += 1;
                }
            }
            if compare(forgetful, &o).is_err() {
                control_caught += 1;
            }
        }
    }
    let ran = seeds.len() - skipped;
    eprintln!(
        "{curve:?}: {ran} cases, {ops_run} ops ({skipped} scopes refused by the builder) in {:.1} s; \
         the mirror without the reduce-only rule disagreed on {control_caught}",
        started.elapsed().as_secs_f64()
    );
    for (class, n) in &classes {
        eprintln!("  {n:>5}  {class}");
    }
    for (class, (n, first)) in &failures {
        eprintln!("DISAGREEMENT x{n}: {class}\n  first: {first}");
    }
    assert!(
        failures.is_empty(),
        "{} kinds of disagreement between the account and core::policy (see above)",
        failures.len()
    );
    if seeds.len() > 1 {
        assert!(
            control_caught > 0,
            "a mirror without the reduce-only rule went unnoticed"
        );
        // Every rule the mirror checks was seen refusing on both sides.
        for reason in [
            "SessionCallNotPermitted",
            "SessionMarketNotAllowed",
            "SessionOrderTooLarge",
            "SessionNotionalTooHigh",
            "SessionReduceOnlyRequired",
            "SessionTooManyCalls",
            "SessionValueTooHigh",
            "SessionExhausted",
            "SessionValueBudgetExceeded",
            "SessionOpCostTooHigh",
            "SessionFeeBudgetExceeded",
            "SessionPaymasterNotAllowed",
            "SessionPaymasterOpCostTooHigh",
            "SessionPaymasterBudgetExceeded",
            "SessionSelectorNotAllowed",
            "SessionKeyMismatch",
            "SessionProtectiveOnly",
            "InvalidHeartbeatInterval",
            "AA22",
            "pass",
        ] {
            assert!(
                classes.contains_key(reason),
                "no case exercised {reason}: {classes:?}"
            );
        }
    }
}

#[test]
fn secp256k1_session_ops_get_the_accounts_verdict_from_core_policy() {
    differential(Curve::Secp256k1, 42_330, 0x5ec0_0000);
}

#[test]
fn p256_session_ops_get_the_accounts_verdict_from_core_policy() {
    differential(Curve::P256, 42_331, 0x9256_0000);
}
