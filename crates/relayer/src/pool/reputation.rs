//! What the pool knows of who sends: token buckets at the door, one per session key (or per account for
//! owner ops), and ERC-7562 reputation for factories and paymasters.

use std::{collections::HashMap, hash::Hash, time::Instant};

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// Buckets kept before the full ones are forgotten.
const MAX_BUCKETS: usize = 65_536;

/// Token buckets at the door, one per session key (or per account for owner ops): a runaway engine
/// is throttled before it costs a simulation, let alone gas.
#[derive(Debug)]
pub(crate) struct RateLimiter<K = Address> {
    per_second: f64,
    burst: f64,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    pub(crate) fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key`, or says how long until one is there.
    pub(crate) fn take(&mut self, key: K, now: Instant) -> Result<(), std::time::Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&key) {
            self.forget_full(now);
        }
        let (tokens, last) = self.buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.per_second)
            .min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64(
                (1.0 - *tokens) / self.per_second,
            ))
        }
    }

    /// Forgets the buckets that have refilled: a full bucket is the same as none, so a flood of fresh
    /// senders leaves no memory behind once they go quiet.
    fn forget_full(&mut self, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f64() * per_second < burst
        });
    }

    /// Buckets held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Gives back a token taken for an op that was then refused for another reason.
    pub(crate) fn refund(&mut self, key: K) {
        if let Some((tokens, _)) = self.buckets.get_mut(&key) {
            *tokens = (*tokens + 1.0).min(self.burst);
        }
    }
}

/// A factory's or paymaster's standing (ERC-7562 reputation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReputationStatus {
    Ok,
    Throttled,
    Banned,
}

pub(crate) use crate::records::ReputationEntry;

/// ERC-7562 reputation: an entity whose ops are seen far more often than they are included is
/// throttled, then banned. Constants from the ERC.
#[derive(Debug, Default)]
pub(crate) struct Reputation {
    entries: HashMap<Address, ReputationEntry>,
    /// Bumped by every change, so the owner knows when to persist.
    version: u64,
}

const MIN_INCLUSION_RATE_DENOMINATOR: u64 = 10;
const THROTTLING_SLACK: u64 = 10;
const BAN_SLACK: u64 = 50;
/// How many pooled ops a throttled entity may have (ERC-7562 THROTTLED_ENTITY_MEMPOOL_COUNT).
pub(crate) const THROTTLED_ENTITY_MEMPOOL_COUNT: usize = 4;

impl Reputation {
    pub(crate) fn status(&self, entity: Address) -> ReputationStatus {
        let Some(e) = self.entries.get(&entity) else {
            return ReputationStatus::Ok;
        };
        let max_seen = e.ops_seen / MIN_INCLUSION_RATE_DENOMINATOR;
        if max_seen > e.ops_included + BAN_SLACK {
            ReputationStatus::Banned
        } else if max_seen > e.ops_included + THROTTLING_SLACK {
            ReputationStatus::Throttled
        } else {
            ReputationStatus::Ok
        }
    }

    /// Reputation as persisted: `entries` from [`Reputation::entries`].
    pub(crate) fn from_entries(entries: Vec<(Address, ReputationEntry)>) -> Self {
        Self {
            entries: entries.into_iter().collect(),
            version: 0,
        }
    }

    /// Every entity's counters, by address.
    pub(crate) fn entries(&self) -> Vec<(Address, ReputationEntry)> {
        let mut v: Vec<_> = self.entries.iter().map(|(a, e)| (*a, *e)).collect();
        v.sort_by_key(|(a, _)| *a);
        v
    }

    /// Changes so far (compare with a saved value to know whether to persist).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn seen(&mut self, entity: Address) {
        self.version += 1;
        self.entries.entry(entity).or_default().ops_seen += 1;
    }

    pub(crate) fn included(&mut self, entity: Address) {
        self.version += 1;
        self.entries.entry(entity).or_default().ops_included += 1;
    }

    /// Takes back a sighting: the op it counted was not the entity's fault (EREP-015) or was replaced.
    pub(crate) fn unseen(&mut self, entity: Address) {
        self.version += 1;
        if let Some(e) = self.entries.get_mut(&entity) {
            e.ops_seen = e.ops_seen.saturating_sub(1);
        }
    }

    /// The entity made a bundle fail that passed validation before (a staked factory answering for its
    /// account, EREP-020): banned, as the reference bundler does (10,000 sightings, no inclusion).
    pub(crate) fn crashed(&mut self, entity: Address) {
        self.version += 1;
        self.entries.insert(
            entity,
            ReputationEntry {
                ops_seen: 10_000,
                ops_included: 0,
            },
        );
    }

    /// Hourly decay (ERC-7562: × 23/24).
    pub(crate) fn decay(&mut self) {
        self.version += 1;
        for e in self.entries.values_mut() {
            e.ops_seen = e.ops_seen * 23 / 24;
            e.ops_included = e.ops_included * 23 / 24;
        }
        self.entries
            .retain(|_, e| e.ops_seen > 0 || e.ops_included > 0);
    }

    pub(crate) fn set(&mut self, entity: Address, entry: ReputationEntry) {
        self.version += 1;
        self.entries.insert(entity, entry);
    }

    pub(crate) fn clear(&mut self) {
        self.version += 1;
        self.entries.clear();
    }

    pub(crate) fn dump(&self) -> Vec<(Address, ReputationEntry, ReputationStatus)> {
        self.entries()
            .into_iter()
            .map(|(a, e)| (a, e, self.status(a)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_fresh_keys_leaves_no_memory_once_quiet() {
        let mut rl = RateLimiter::new(10.0, 3.0);
        let t0 = Instant::now();
        let key = |i: usize| Address::left_padding_from(&(i as u64).to_be_bytes());
        for i in 0..MAX_BUCKETS {
            rl.take(key(i), t0).unwrap();
        }
        // While they are still refilling they are kept (each still limits its key).
        rl.take(key(MAX_BUCKETS), t0).unwrap();
        assert_eq!(rl.len(), MAX_BUCKETS + 1);
        // A second later each has refilled: the next new key forgets them, a busy one stays.
        let busy = Address::repeat_byte(0xbb);
        let t1 = t0 + std::time::Duration::from_millis(300);
        for _ in 0..3 {
            rl.take(busy, t1).unwrap();
        }
        let t2 = t0 + std::time::Duration::from_secs(1);
        rl.take(key(MAX_BUCKETS + 1), t2).unwrap();
        assert_eq!(rl.len(), 2, "the busy key and the new one");
        assert!(
            rl.take(busy, t2).is_ok(),
            "the busy key refilled 7 tokens' worth, capped at 3"
        );
    }

    #[test]
    fn token_bucket_allows_burst_then_refills() {
        let mut rl = RateLimiter::new(10.0, 3.0);
        let key = Address::repeat_byte(1);
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.take(key, t0).unwrap();
        }
        let wait = rl.take(key, t0).unwrap_err();
        assert!(wait.as_millis() > 0 && wait.as_millis() <= 100);
        rl.take(key, t0 + std::time::Duration::from_millis(150))
            .unwrap();
        rl.take(Address::repeat_byte(2), t0).unwrap();
    }

    #[test]
    fn reputation_throttles_then_bans() {
        let mut r = Reputation::default();
        let f = Address::repeat_byte(7);
        assert_eq!(r.status(f), ReputationStatus::Ok);
        // Seen 110 times, never included: 110 / 10 is over 0 + 10 slack.
        for _ in 0..110 {
            r.seen(f);
        }
        assert_eq!(r.status(f), ReputationStatus::Throttled);
        r.unseen(f);
        assert_eq!(
            r.status(f),
            ReputationStatus::Ok,
            "109 / 10 is not over 0 + 10"
        );
        r.crashed(f);
        assert_eq!(r.status(f), ReputationStatus::Banned);
        r.clear();
        assert_eq!(r.status(f), ReputationStatus::Ok);
    }
}
