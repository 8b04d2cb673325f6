//! Several relayer instances on one Postgres store.
//!
//! Senders are split into shards ([`shard_of`]). Each shard is leased to one instance, which alone holds
//! its senders' ops in its pool, validates them on its pending state, bundles and records them; an op
//! sent to another instance is forwarded to the owner. Each instance also leases one bundle key, so no
//! two instances sign with the same key and nonce. Leases are renewed every `renew_ms`; one not renewed
//! for `lease_ms` may be taken over, which raises its epoch: the store refuses a write made under the old
//! epoch ([`Fence`]), so an instance that stalled past its lease cannot change anything after it wakes.
//!
//! Every `renew_ms` an instance ([`Cluster::run`]): announces itself; renews its bundle key and shards
//! (forgetting the ops of any shard it lost); takes free or expired shards up to its fair share
//! (shards ÷ live instances, rounded up), resuming each one's unfinished ops from the store — bundles the
//! previous owner sent are followed to their receipts, ops it had not sent are bundled again; and gives
//! shards above its share back. On a clean stop it gives everything back at once.

pub mod leases;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use alloy::{rpc::client::RpcClient, signers::local::PrivateKeySigner};
use alloy_primitives::Address;
use serde_json::{Value, json};
use tokio::sync::watch;

pub use crate::records::{Fence, shard_of};
use leases::Leases;

use crate::{
    config::ClusterConfig,
    error::{RpcError, code},
    metrics::Metrics,
    records::OpRecord,
    store::{StoreError, postgres::PgStore},
};

/// What the cluster asks of the instance it runs in when shards move: the head it is at, adopting a
/// taken shard's unfinished ops, and forgetting the pooled ops of senders it no longer holds. The service
/// implements it; the cluster does not know the pool or the chain follower.
#[async_trait::async_trait]
pub trait ShardHolder: Send + Sync {
    /// The block number the pool is at.
    fn head_number(&self) -> u64;
    /// Takes over a shard's unfinished ops and those it recently saw included.
    async fn adopt(&self, records: Vec<OpRecord>, mined: Vec<OpRecord>) -> Result<usize, String>;
    /// Forgets the pooled ops of every sender for which `lost` holds.
    async fn forget_senders(
        &self,
        lost: &(dyn Fn(alloy_primitives::Address) -> bool + Send + Sync),
    );
}

/// The method an instance forwards an op to its shard's owner with (the owner does not forward it again).
pub const FORWARD_METHOD: &str = "keyscope_clusterSendUserOperation";

/// Errors from joining the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every bundle key this instance may use is leased by another live instance.
    #[error(
        "every bundle key this instance may use ({keys}) is leased by another live instance: give it \
         another key (cluster.bundle_keys), or stop the instance holding it"
    )]
    NoFreeKey {
        /// The keys tried.
        keys: String,
    },
    /// Another live instance announces itself under this instance's name.
    #[error(
        "another live instance of this deployment is named {name:?}: give this one its own name \
         (cluster.instance), or stop the other — two instances under one name would take each other's \
         leases"
    )]
    DuplicateName {
        /// The name.
        name: String,
    },
}

/// One instance's part in the cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The leases held.
    pub fence: Arc<Fence>,
    store: Arc<PgStore>,
    leases: Leases,
    cfg: ClusterConfig,
    /// Where this instance serves JSON-RPC (set once it listens).
    url: OnceLock<String>,
    /// The bundle key this instance signs with (set once leased).
    key: OnceLock<Address>,
    /// Shards taken and still being resumed: their senders' new ops wait until it is done.
    adopting: Mutex<BTreeSet<u16>>,
    /// A client per instance forwarded to (its connections kept alive between ops).
    peers: Mutex<HashMap<String, RpcClient>>,
    reorg_depth: u64,
    metrics: Arc<Metrics>,
}

impl Cluster {
    /// This instance, named `instance`, on `store`.
    pub fn new(
        store: Arc<PgStore>,
        fence: Arc<Fence>,
        cfg: ClusterConfig,
        reorg_depth: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        let leases = Leases {
            pool: store.pool().clone(),
            instance: fence.instance.clone(),
            lease: Duration::from_millis(cfg.lease_ms),
        };
        Self {
            fence,
            store,
            leases,
            cfg,
            url: OnceLock::new(),
            key: OnceLock::new(),
            adopting: Mutex::new(BTreeSet::new()),
            peers: Mutex::new(HashMap::new()),
            reorg_depth,
            metrics,
        }
    }

    /// Records where this instance serves, once it listens (other instances forward ops there).
    pub fn set_url(&self, url: String) {
        let _ = self.url.set(url);
    }

    fn url(&self) -> &str {
        self.url.get().map(String::as_str).unwrap_or_default()
    }

    /// Joins the deployment under this instance's name, refusing a name another live instance answers to
    /// (waiting at most a lease and a renewal to tell a live holder from a predecessor that stopped).
    pub async fn join(&self) -> Result<(), ClusterError> {
        let wait = Duration::from_millis(self.cfg.lease_ms + self.cfg.renew_ms);
        match self.leases.name_free(wait).await? {
            true => Ok(()),
            false => Err(ClusterError::DuplicateName {
                name: self.fence.instance.clone(),
            }),
        }
    }

    /// Leases the first of `keys` that is free (or expired, or this instance's from before a restart),
    /// waiting up to two lease times for one to come free.
    pub async fn lease_key(
        &self,
        keys: Vec<PrivateKeySigner>,
    ) -> Result<PrivateKeySigner, ClusterError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2 * self.cfg.lease_ms);
        loop {
            for key in &keys {
                if let Some(epoch) = self.leases.take_key(key.address()).await? {
                    self.fence.set_key(Some((key.address(), epoch)));
                    let _ = self.key.set(key.address());
                    tracing::info!(key = %key.address(), epoch, "bundle key leased");
                    return Ok(key.clone());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::NoFreeKey {
                    keys: keys
                        .iter()
                        .map(|k| k.address().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            tokio::time::sleep(Duration::from_millis(self.cfg.renew_ms)).await;
        }
    }

    /// True if this instance takes `sender`'s ops itself: it holds the shard and has resumed it.
    pub fn serves(&self, sender: Address) -> bool {
        let shard = self.fence.shard_of(sender);
        self.fence.epoch(shard).is_some()
            && !self
                .adopting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&shard)
    }

    /// Hands an op to the instance holding its sender's shard and returns that instance's answer
    /// (`with_health`: `keyscope_sendUserOperation`'s answer).
    pub async fn forward(
        &self,
        op: Value,
        entry_point: Address,
        with_health: bool,
        sender: Address,
    ) -> Result<Value, RpcError> {
        let shard = self.fence.shard_of(sender);
        let owner = self
            .leases
            .owner_of(shard)
            .await
            .map_err(|e| changing_hands(shard, &format!("reading its lease failed: {e}")))?;
        let Some((name, url)) = owner.filter(|(name, _)| *name != self.fence.instance) else {
            return Err(changing_hands(shard, "no live instance holds it"));
        };
        let peer = self
            .peer(&url)
            .map_err(|e| changing_hands(shard, &format!("{name} advertises {url:?}: {e}")))?;
        Metrics::inc(&self.metrics.ops_forwarded);
        let params = json!([op, entry_point, with_health]);
        // A holder that stalled answers nothing: past a lease (5 s at least) the client is told to send
        // again, by which time the shard has moved on.
        let patience = Duration::from_millis(self.cfg.lease_ms.max(5000));
        let answer =
            tokio::time::timeout(patience, peer.request::<_, Value>(FORWARD_METHOD, params))
                .await
                .map_err(|_| {
                    changing_hands(
                        shard,
                        &format!("its holder {name} did not answer within {patience:?}"),
                    )
                })?;
        match answer {
            Ok(v) => Ok(v),
            Err(e) => match e.as_error_resp() {
                Some(p) => Err(RpcError {
                    code: p.code as i32,
                    message: p.message.to_string(),
                    data: p
                        .data
                        .as_ref()
                        .and_then(|d| serde_json::from_str(d.get()).ok()),
                }),
                None => Err(changing_hands(
                    shard,
                    &format!("its holder {name} did not answer: {e}"),
                )),
            },
        }
    }

    /// The client for the instance serving at `url`.
    fn peer(&self, url: &str) -> Result<RpcClient, url::ParseError> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get(url) {
            return Ok(p.clone());
        }
        let client = RpcClient::new_http(url.parse()?);
        peers.insert(url.to_string(), client.clone());
        Ok(client)
    }

    /// Renews, rebalances and takes over every `renew_ms` until `shutdown`; then gives every lease back.
    pub async fn run(
        self: Arc<Self>,
        service: Arc<dyn ShardHolder>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut every = tokio::time::interval(Duration::from_millis(self.cfg.renew_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = self.tick(service.as_ref()).await {
                tracing::warn!(
                    "cluster round failed (tried again in {} ms): {e}",
                    self.cfg.renew_ms
                );
            }
        }
        self.release_all(service.as_ref()).await;
    }

    /// One round (see the module doc).
    async fn tick(&self, service: &dyn ShardHolder) -> Result<(), StoreError> {
        let live = self.leases.heartbeat(self.url()).await?;
        self.renew_key().await?;
        let held = self.fence.owned();
        let renewed = self.leases.renew_shards(&held).await?;
        let lost: BTreeSet<u16> = held
            .keys()
            .filter(|s| !renewed.contains_key(s))
            .copied()
            .collect();
        if !lost.is_empty() {
            for s in &lost {
                self.fence.release(*s);
                Metrics::inc(&self.metrics.shards_lost);
            }
            tracing::warn!(
                ?lost,
                "sender shards taken over by another instance: their ops are its now"
            );
        }
        // Any op of a sender this instance does not hold (lost just now, or let in by an admission that
        // raced a release) leaves its pool.
        self.forget_unheld(service).await;
        let share = usize::from(self.fence.shards.div_ceil(live));
        let owned = self.fence.owned();
        if self.fence.key().is_some() && owned.len() < share {
            for shard in self.leases.free_shards().await? {
                if self.fence.owned().len() >= share {
                    break;
                }
                if let Some(epoch) = self.leases.take_shard(shard).await? {
                    self.take(service, shard, epoch).await;
                }
            }
        } else if owned.len() > share {
            let extra: BTreeSet<u16> = owned
                .keys()
                .rev()
                .take(owned.len() - share)
                .copied()
                .collect();
            // Not served here any more first (new ops are forwarded, or refused as changing hands, and no
            // write of them commits), then out of the pool, then free for another instance.
            for s in &extra {
                self.fence.release(*s);
            }
            self.forget_unheld(service).await;
            for s in &extra {
                if let Some(epoch) = owned.get(s) {
                    self.leases.release_shard(*s, *epoch).await?;
                    Metrics::inc(&self.metrics.shards_released);
                }
            }
            tracing::info!(released = ?extra, live, "sender shards given up to even out the instances");
        }
        *self
            .metrics
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner()) =
            (self.fence.owned(), self.fence.key().map_or(0, |(_, e)| e));
        Ok(())
    }

    /// Renews the bundle key's lease; a key taken over is dropped (claims are then refused) and asked
    /// for again.
    async fn renew_key(&self) -> Result<(), StoreError> {
        if let Some((key, epoch)) = self.fence.key() {
            if !self.leases.renew_key(key, epoch).await? {
                tracing::error!(%key, "the bundle key's lease was taken over: no bundles until it is back");
                Metrics::inc(&self.metrics.key_leases_lost);
                self.fence.set_key(None);
            }
            return Ok(());
        }
        // Lost earlier: back once its lease lapses where it went (this instance's wallet is fixed).
        if let Some(key) = self.key.get().copied() {
            if let Some(epoch) = self.leases.take_key(key).await? {
                tracing::info!(%key, epoch, "bundle key leased again");
                self.fence.set_key(Some((key, epoch)));
            }
        }
        Ok(())
    }

    /// Takes `shard` at `epoch`: resumes its unfinished ops before its senders' new ops are taken.
    async fn take(&self, service: &dyn ShardHolder, shard: u16, epoch: u64) {
        self.adopting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(shard);
        self.fence.hold(shard, epoch);
        Metrics::inc(&self.metrics.shards_taken);
        let from = service.head_number().saturating_sub(self.reorg_depth);
        let resumed = async {
            let records = self.store.unfinished_in(shard).await?;
            let mined = self.store.included_since_in(shard, from).await?;
            let n = records.len();
            service
                .adopt(records, mined)
                .await
                .map_err(StoreError::Read)?;
            Ok::<_, StoreError>(n)
        }
        .await;
        match resumed {
            Ok(n) => {
                self.metrics
                    .ops_adopted
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(shard, epoch, resumed = n, "sender shard taken");
            }
            Err(e) => {
                // Given back: another instance (or this one, next round) takes it and tries again.
                tracing::warn!(shard, "resuming the shard failed, giving it back: {e}");
                self.fence.release(shard);
                self.forget_unheld(service).await;
                let _ = self.leases.release_shard(shard, epoch).await;
            }
        }
        self.adopting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&shard);
    }

    /// Forgets the pooled ops of senders whose shard this instance does not hold (another instance holds
    /// them now, or will).
    async fn forget_unheld(&self, service: &dyn ShardHolder) {
        let fence = &self.fence;
        service.forget_senders(&|sender| !fence.owns(sender)).await;
    }

    /// On a clean stop: gives every shard and the bundle key back, so the others take them at once
    /// instead of after a lease.
    async fn release_all(&self, service: &dyn ShardHolder) {
        let held = self.fence.owned();
        for shard in held.keys() {
            self.fence.release(*shard);
        }
        self.forget_unheld(service).await;
        for (shard, epoch) in held {
            let _ = self.leases.release_shard(shard, epoch).await;
        }
        if let Some((key, epoch)) = self.fence.key() {
            self.fence.set_key(None);
            let _ = self.leases.release_key(key, epoch).await;
        }
    }
}

/// An op whose shard has no instance to take it right now (a takeover in progress): the client sends it
/// again. `why` — which may name instances, their URLs and the store — goes to the log, not the client.
fn changing_hands(shard: u16, why: &str) -> RpcError {
    tracing::warn!(shard, "an op's shard is changing hands: {why}");
    RpcError::new(
        code::INTERNAL,
        format!("this sender's shard ({shard}) is changing hands; send the op again in a moment"),
    )
    .with_data(json!({ "shard": shard, "retry": true }))
}

/// The answer of an instance asked to take an op of a sender whose shard it does not serve.
pub fn not_served(shard: u16) -> RpcError {
    changing_hands(shard, "the instance it was forwarded to no longer holds it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_changing_hands_is_told_without_the_instances_names_or_urls() {
        let e = changing_hands(3, "relayer-b advertises \"http://10.0.0.7:4337\": refused");
        assert_eq!(
            e.message,
            "this sender's shard (3) is changing hands; send the op again in a moment"
        );
        assert_eq!(e.data, Some(json!({ "shard": 3, "retry": true })));
        assert!(
            !not_served(3)
                .message
                .contains("instance it was forwarded to")
        );
    }
}
