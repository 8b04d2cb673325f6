//! What this instance holds right now: the sender shards and the bundle key it leases, each with the
//! epoch it was taken at. The Postgres store checks every write against it, in the write's own
//! transaction, so a write made under a lease another instance has since taken is refused.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

use alloy_primitives::{Address, keccak256};

/// The shard of `sender` among `shards`: the first two bytes of keccak256(sender), modulo `shards`.
pub fn shard_of(sender: Address, shards: u16) -> u16 {
    let h = keccak256(sender);
    u16::from_be_bytes([h[0], h[1]]) % shards.max(1)
}

#[derive(Debug, Default)]
struct Held {
    shards: BTreeMap<u16, u64>,
    key: Option<(Address, u64)>,
}

/// The leases one instance holds.
#[derive(Debug)]
pub struct Fence {
    /// This instance's name (the lease owner in Postgres).
    pub instance: String,
    /// The deployment's number of shards.
    pub shards: u16,
    held: Mutex<Held>,
}

impl Fence {
    /// An instance named `instance` holding nothing yet.
    pub fn new(instance: String, shards: u16) -> Self {
        Self {
            instance,
            shards,
            held: Mutex::new(Held::default()),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard `sender` belongs to.
    pub fn shard_of(&self, sender: Address) -> u16 {
        shard_of(sender, self.shards)
    }

    /// The epoch this instance holds `shard` at, if it holds it.
    pub fn epoch(&self, shard: u16) -> Option<u64> {
        self.held().shards.get(&shard).copied()
    }

    /// True if this instance holds `sender`'s shard.
    pub fn owns(&self, sender: Address) -> bool {
        self.epoch(self.shard_of(sender)).is_some()
    }

    /// The shards held, with their epochs.
    pub fn owned(&self) -> BTreeMap<u16, u64> {
        self.held().shards.clone()
    }

    /// Records that `shard` is held at `epoch`.
    pub fn hold(&self, shard: u16, epoch: u64) {
        self.held().shards.insert(shard, epoch);
    }

    /// Records that `shard` is no longer held.
    pub fn release(&self, shard: u16) {
        self.held().shards.remove(&shard);
    }

    /// The bundle key held, with its epoch.
    pub fn key(&self) -> Option<(Address, u64)> {
        self.held().key
    }

    /// Records the bundle key held (None: none).
    pub fn set_key(&self, key: Option<(Address, u64)>) {
        self.held().key = key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_spread_over_every_shard() {
        let mut seen = [0u32; 8];
        for i in 0..4000u32 {
            let mut a = [0u8; 20];
            a[16..].copy_from_slice(&i.to_be_bytes());
            seen[shard_of(Address::from(a), 8) as usize] += 1;
        }
        // 500 expected in each; a hash far off that would be a bug, not chance.
        assert!(seen.iter().all(|&n| (400..600).contains(&n)), "{seen:?}");
    }
}
