//! Bundles sent and not yet mined, shared by the bundler (which sends and bumps them) and the chain
//! follower (which settles them, or returns a dropped one's ops to the pool).
//!
//! Several bundles may be in flight at once, at consecutive nonces of the relayer's key; the next bundle
//! is simulated on the state they leave (the *sent state*: the head plus the bundles in flight, in nonce
//! order), kept here and rebuilt whenever the pending state moves to a head it does not hold.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use alloy_primitives::B256;

use crate::{pool::PoolOp, validate::layers::Layers};

/// A bundle transaction sent and not yet mined.
#[derive(Debug, Clone)]
pub(crate) struct Bundle {
    /// The transaction last sent.
    pub tx_hash: B256,
    /// Earlier transactions of this bundle at the same nonce, replaced by fee bumps: any of them may still
    /// be the one mined.
    pub replaced: Vec<B256>,
    /// The relayer's transaction nonce.
    pub nonce: u64,
    pub ops: Vec<PoolOp>,
    pub sent_at: Instant,
    /// Sent by another instance with its own key, and taken over with its ops' sender shard: followed to
    /// its receipt (or back to the pool if the node drops it), never bumped, and not at this relayer's
    /// nonces; its ops are in the sent state, before this relayer's own bundles.
    pub foreign: bool,
}

impl Bundle {
    /// Every transaction that may carry this bundle, the last sent first.
    pub(crate) fn transactions(&self) -> impl Iterator<Item = B256> + '_ {
        std::iter::once(self.tx_hash).chain(self.replaced.iter().rev().copied())
    }

    /// True if `tx` is one of this bundle's transactions.
    pub(crate) fn carried_by(&self, tx: B256) -> bool {
        self.transactions().any(|t| t == tx)
    }
}

/// The state bundles are simulated on: the head plus every bundle in flight.
#[derive(Debug, Clone)]
pub(crate) struct SentState {
    /// The pending state's layers when it was built: while the pending state keeps them (until the next
    /// head, when it is rebuilt from the chain) this state holds the chain plus every bundle in flight;
    /// after a rebuild it is stale.
    pub lineage: Arc<Layers>,
    /// The head's state plus the bundles in flight.
    pub layers: Arc<Layers>,
}

#[derive(Debug, Default)]
struct Tracker {
    bundles: Vec<Bundle>,
    /// The nonce the next bundle takes (None: ask the node).
    next_nonce: Option<u64>,
    /// A bundle failed or was dropped: send nothing new until every bundle in flight is settled, then
    /// start again from the node's nonce and a fresh sent state.
    draining: bool,
    sent: Option<SentState>,
}

/// The bundles in flight.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    tracker: Mutex<Tracker>,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bundles in flight: foreign ones first, then this relayer's in nonce order.
    pub(crate) fn bundles(&self) -> Vec<Bundle> {
        self.lock().bundles.clone()
    }

    /// How many bundles are in flight.
    pub(crate) fn len(&self) -> usize {
        self.lock().bundles.len()
    }

    /// True if no bundle is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the bundle that `tx` carries (or carried, before a fee bump) is still in flight.
    pub(crate) fn carries(&self, tx: B256) -> bool {
        self.lock().bundles.iter().any(|b| b.carried_by(tx))
    }

    /// Adds a bundle just signed; the next one takes the nonce after it. A foreign bundle leaves the nonce
    /// alone and the sent state is built again with it.
    pub(crate) fn push(&self, bundle: Bundle) {
        let mut t = self.lock();
        if bundle.foreign {
            t.sent = None;
        } else {
            t.next_nonce = Some(bundle.nonce + 1);
        }
        t.bundles.push(bundle);
        t.bundles.sort_by_key(|b| (!b.foreign, b.nonce));
    }

    /// Takes the bundle `tx` carries out of flight. With none left, the next bundle asks the node for its
    /// nonce (a reorg or a transaction sent elsewhere with the same key may have moved it).
    pub(crate) fn remove(&self, tx: B256) -> Option<Bundle> {
        let mut t = self.lock();
        let at = t.bundles.iter().position(|b| b.carried_by(tx))?;
        let b = t.bundles.remove(at);
        if t.bundles.is_empty() {
            t.next_nonce = None;
        }
        Some(b)
    }

    /// Applies `f` to the bundle `tx` carries, if it is still in flight.
    pub(crate) fn update(&self, tx: B256, f: impl FnOnce(&mut Bundle)) {
        if let Some(b) = self.lock().bundles.iter_mut().find(|b| b.carried_by(tx)) {
            f(b);
        }
    }

    /// The nonce the next bundle takes, if known.
    pub(crate) fn next_nonce(&self) -> Option<u64> {
        self.lock().next_nonce
    }

    /// Stops new bundles until those in flight are settled (a send failed, a bundle was dropped or did not
    /// include what it carried): the sent state and the nonce are no longer known.
    pub(crate) fn halt(&self) {
        let mut t = self.lock();
        t.draining = true;
        t.next_nonce = None;
        t.sent = None;
    }

    /// Forgets the sent state (it took in a bundle that was then not sent), keeping the bundles in flight and
    /// the nonce: the next bundle is simulated on a sent state built again, without a pause.
    pub(crate) fn forget_sent_state(&self) {
        self.lock().sent = None;
    }

    /// True if new bundles may be sent; clears a halt once nothing is in flight.
    pub(crate) fn may_send(&self) -> bool {
        let mut t = self.lock();
        if t.draining && t.bundles.is_empty() {
            t.draining = false;
        }
        !t.draining
    }

    /// The sent state, if it belongs to the pending state whose layers are `lineage`.
    pub(crate) fn sent_state(&self, lineage: &Arc<Layers>) -> Option<SentState> {
        self.lock()
            .sent
            .clone()
            .filter(|s| Arc::ptr_eq(&s.lineage, lineage))
    }

    /// Keeps `sent` as the state the next bundle is simulated on.
    pub(crate) fn set_sent_state(&self, sent: SentState) {
        self.lock().sent = Some(sent);
    }
}
