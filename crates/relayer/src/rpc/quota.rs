//! Quotas and behaviour per API key, not per address: a key spreading its requests over many client
//! addresses spends one budget. Each key has token buckets for requests, for orders and ops, and a floor
//! of cancels it always gets (however throttled or banned: a market maker must be able to pull its quotes),
//! a cap on the requests and WebSocket connections it holds at once, and a behaviour score — the share of
//! its orders/ops refused and its invalid signatures — whose counts halve every `forget_ms`. Above
//! `slow_ratio` the key's rates halve; above `ban_ratio` it is banned for `ban_base_ms`, doubled for each
//! ban it had since it last went `forget_ms` without one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy_primitives::B256;

use crate::config::ApiKeysConfig;

/// What a method does, for permissions and quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Reads nothing changes.
    Read,
    /// Cancels resting orders (or schedules a cancel).
    Cancel,
    /// Places or replaces an order, sends an op, registers or revokes a key.
    Trade,
}

/// Why a request of a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Throttle {
    /// The key is banned.
    #[error(
        "API key banned for {remaining_ms} ms more (ban {strikes}: too many refused orders or invalid signatures); cancels still pass at the floor rate"
    )]
    Banned {
        /// How long the ban still runs.
        remaining_ms: u64,
        /// Bans since the key last behaved.
        strikes: u32,
    },
    /// Over a rate.
    #[error("API key over its {what} rate{slowed}; retry shortly")]
    Rate {
        /// Which budget.
        what: &'static str,
        /// Whether the key was slowed by its behaviour.
        slowed: &'static str,
    },
    /// Holds too many requests or connections at once.
    #[error("API key holds {0} requests or connections at once (its limit)")]
    Connections(usize),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct KeyState {
    requests: Bucket,
    orders: Bucket,
    cancels: Bucket,
    good: f64,
    bad: f64,
    counted_at: Instant,
    strikes: u32,
    last_ban: Option<Instant>,
    banned_until: Option<Instant>,
    held: usize,
}

/// A key's behaviour, for its status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Behaviour {
    /// Share of refused orders/ops and invalid signatures (decayed counts).
    pub score: f64,
    /// Whether its rates are halved for it.
    pub slowed: bool,
    /// Bans since it last behaved.
    pub strikes: u32,
    /// Whether a ban runs now.
    pub banned: bool,
}

/// Whether `n` decayed outcomes reach `min`: counts decay continuously, so four outcomes a few
/// milliseconds apart sum to a hair under four; a hundredth of slack counts them as four.
fn enough(n: f64, min: u64) -> bool {
    n + 0.01 >= min as f64
}

/// Every key's quotas and behaviour.
#[derive(Debug)]
pub(crate) struct Quotas {
    cfg: ApiKeysConfig,
    keys: Mutex<HashMap<B256, KeyState>>,
}

/// One request or connection a key holds, released when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    quotas: Arc<Quotas>,
    key: B256,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(s) = self.quotas.lock().get_mut(&self.key) {
            s.held = s.held.saturating_sub(1);
        }
    }
}

impl Quotas {
    /// Quotas as `cfg` sets them.
    pub(crate) fn new(cfg: ApiKeysConfig) -> Self {
        Self {
            cfg,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<B256, KeyState>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state<'a>(
        cfg: &ApiKeysConfig,
        keys: &'a mut HashMap<B256, KeyState>,
        key: B256,
        now: Instant,
    ) -> &'a mut KeyState {
        let s = keys.entry(key).or_insert_with(|| KeyState {
            requests: Bucket::full(cfg.requests_burst, now),
            orders: Bucket::full(cfg.orders_burst, now),
            cancels: Bucket::full(cfg.cancel_floor_per_sec.max(1.0), now),
            good: 0.0,
            bad: 0.0,
            counted_at: now,
            strikes: 0,
            last_ban: None,
            banned_until: None,
            held: 0,
        });
        // Counts halve every forget_ms; one strike is forgotten per forget_ms without a ban.
        let forget = cfg.forget_ms.max(1) as f64;
        let dt = now.saturating_duration_since(s.counted_at).as_millis() as f64;
        let f = 0.5f64.powf(dt / forget);
        s.good *= f;
        s.bad *= f;
        s.counted_at = now;
        if let Some(last) = s.last_ban {
            let quiet =
                now.saturating_duration_since(last).as_millis() as u64 / cfg.forget_ms.max(1);
            if quiet > 0 && s.banned_until.is_none_or(|u| u <= now) {
                s.strikes = s.strikes.saturating_sub(quiet as u32);
                s.last_ban = (s.strikes > 0).then_some(now);
            }
        }
        s
    }

    fn slowed(&self, s: &KeyState) -> bool {
        let n = s.good + s.bad;
        enough(n, self.cfg.min_samples) && s.bad / n >= self.cfg.slow_ratio
    }

    /// Takes a request of class `class` from `key`'s budgets at `now`, or says why not.
    pub(crate) fn admit(&self, key: B256, class: Class, now: Instant) -> Result<(), Throttle> {
        let cfg = &self.cfg;
        let mut keys = self.lock();
        let s = Self::state(cfg, &mut keys, key, now);
        let banned = s.banned_until.filter(|u| *u > now);
        let floor = |s: &mut KeyState| {
            s.cancels.take(
                cfg.cancel_floor_per_sec,
                cfg.cancel_floor_per_sec.max(1.0),
                now,
            )
        };
        if let Some(until) = banned {
            if class == Class::Cancel && floor(s) {
                return Ok(());
            }
            return Err(Throttle::Banned {
                remaining_ms: until.duration_since(now).as_millis() as u64,
                strikes: s.strikes,
            });
        }
        let slowed = self.slowed(s);
        let (factor, slowed_note) = if slowed {
            (
                0.5,
                " (halved: too many refused orders or invalid signatures)",
            )
        } else {
            (1.0, "")
        };
        let rate = |what| Throttle::Rate {
            what,
            slowed: slowed_note,
        };
        let request = s
            .requests
            .take(cfg.requests_per_sec * factor, cfg.requests_burst, now);
        match class {
            Class::Read if request => Ok(()),
            Class::Read => Err(rate("request")),
            Class::Cancel if request || floor(s) => Ok(()),
            Class::Cancel => Err(rate("cancel floor")),
            Class::Trade if !request => Err(rate("request")),
            Class::Trade => {
                if s.orders
                    .take(cfg.orders_per_sec * factor, cfg.orders_burst, now)
                {
                    Ok(())
                } else {
                    Err(rate("order"))
                }
            }
        }
    }

    /// Counts an outcome of `key`'s at `now`: `good` (an order or op taken) or not (refused, or an
    /// invalid signature); true if it started a ban.
    pub(crate) fn record(&self, key: B256, good: bool, now: Instant) -> bool {
        let cfg = &self.cfg;
        let mut keys = self.lock();
        let s = Self::state(cfg, &mut keys, key, now);
        if good {
            s.good += 1.0;
        } else {
            s.bad += 1.0;
        }
        let n = s.good + s.bad;
        let ban = !good
            && enough(n, cfg.min_samples)
            && s.bad / n >= cfg.ban_ratio
            && s.banned_until.is_none_or(|u| u <= now);
        if ban {
            s.strikes = s.strikes.saturating_add(1);
            let ms = cfg
                .ban_base_ms
                .saturating_mul(1u64 << (s.strikes - 1).min(32))
                .min(cfg.ban_max_ms);
            s.banned_until = Some(now + Duration::from_millis(ms));
            s.last_ban = Some(now);
            // A fresh start after the ban: its counts are what it does next.
            s.good = 0.0;
            s.bad = 0.0;
        }
        ban
    }

    /// One more request or connection held by `key`, or the error if it holds its limit.
    pub(crate) fn hold(self: &Arc<Self>, key: B256) -> Result<Held, Throttle> {
        let now = Instant::now();
        let mut keys = self.lock();
        let s = Self::state(&self.cfg, &mut keys, key, now);
        if s.held >= self.cfg.max_connections_per_key {
            return Err(Throttle::Connections(s.held));
        }
        s.held += 1;
        Ok(Held {
            quotas: self.clone(),
            key,
        })
    }

    /// `key`'s behaviour at `now`.
    pub(crate) fn behaviour(&self, key: B256, now: Instant) -> Behaviour {
        let mut keys = self.lock();
        let s = Self::state(&self.cfg, &mut keys, key, now);
        let n = s.good + s.bad;
        let banned = s.banned_until.is_some_and(|u| u > now);
        let score = if n > 0.0 { s.bad / n } else { 0.0 };
        Behaviour {
            score,
            slowed: self.slowed(s),
            strikes: s.strikes,
            banned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ApiKeysConfig {
        ApiKeysConfig {
            requests_per_sec: 10.0,
            requests_burst: 10.0,
            orders_per_sec: 2.0,
            orders_burst: 2.0,
            cancel_floor_per_sec: 1.0,
            min_samples: 4,
            ban_base_ms: 1_000,
            ban_max_ms: 3_000,
            forget_ms: 10_000,
            ..ApiKeysConfig::default()
        }
    }

    #[test]
    fn rates_are_per_key_and_cancels_keep_a_floor() {
        let q = Quotas::new(cfg());
        let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
        let t = Instant::now();
        assert!(q.admit(a, Class::Trade, t).is_ok());
        assert!(q.admit(a, Class::Trade, t).is_ok());
        assert!(matches!(
            q.admit(a, Class::Trade, t),
            Err(Throttle::Rate { what: "order", .. })
        ));
        assert!(q.admit(b, Class::Trade, t).is_ok(), "another key's budget");
        for _ in 0..7 {
            q.admit(a, Class::Read, t).unwrap();
        }
        assert!(q.admit(a, Class::Read, t).is_err(), "requests spent");
        assert!(q.admit(a, Class::Cancel, t).is_ok(), "the cancel floor");
        assert!(q.admit(a, Class::Cancel, t).is_err(), "the floor spent too");
        let later = t + Duration::from_millis(1_000);
        assert!(q.admit(a, Class::Trade, later).is_ok(), "refilled");
    }

    #[test]
    fn bad_behaviour_bans_with_escalation_and_is_forgotten() {
        let q = Quotas::new(cfg());
        let k = B256::repeat_byte(1);
        let t = Instant::now();
        assert!(!q.record(k, false, t));
        assert!(!q.record(k, true, t));
        assert!(!q.record(k, false, t));
        assert!(q.record(k, false, t), "3 of 4 bad: banned");
        let e = q.admit(k, Class::Trade, t).unwrap_err();
        assert!(
            matches!(
                e,
                Throttle::Banned {
                    strikes: 1,
                    remaining_ms: 1_000
                }
            ),
            "{e}"
        );
        assert!(q.admit(k, Class::Cancel, t).is_ok(), "cancels pass a ban");
        let t2 = t + Duration::from_millis(1_001);
        assert!(q.admit(k, Class::Trade, t2).is_ok(), "ban over");
        for _ in 0..3 {
            q.record(k, false, t2);
        }
        assert!(q.record(k, false, t2), "second ban");
        assert!(matches!(
            q.admit(k, Class::Read, t2).unwrap_err(),
            Throttle::Banned {
                strikes: 2,
                remaining_ms: 2_000
            }
        ));
        // Long quiet: the strikes are forgotten, the next ban is the first again.
        let t3 = t2 + Duration::from_millis(25_000);
        assert_eq!(q.behaviour(k, t3).strikes, 0);
        for _ in 0..3 {
            q.record(k, false, t3);
        }
        assert!(q.record(k, false, t3));
        assert!(matches!(
            q.admit(k, Class::Read, t3).unwrap_err(),
            Throttle::Banned { strikes: 1, .. }
        ));
    }

    #[test]
    fn connections_are_capped_per_key() {
        let q = Arc::new(Quotas::new(ApiKeysConfig {
            max_connections_per_key: 2,
            ..cfg()
        }));
        let k = B256::repeat_byte(1);
        let a = q.hold(k).unwrap();
        let _b = q.hold(k).unwrap();
        assert_eq!(q.hold(k).unwrap_err(), Throttle::Connections(2));
        assert!(q.hold(B256::repeat_byte(2)).is_ok());
        drop(a);
        assert!(q.hold(k).is_ok());
    }
}
