//! The parts put together: the store (and with Postgres this instance's place in the deployment and the
//! bundle key it leased), then the pool, the bundler and the chain follower over it, with the unfinished
//! ops the store holds resumed.

use std::{sync::Arc, time::Duration};

use alloy::{
    network::EthereumWallet,
    providers::{DynProvider, Provider},
    signers::local::PrivateKeySigner,
};

use super::keys::{bundle_keys, signer};
use crate::{
    Config, RelayerError,
    bundler::{Bundler, BundlerDeps},
    chain::Chain,
    cluster::{self, Cluster},
    in_flight::InFlight,
    metrics::Metrics,
    pool::{Pool, PoolConfig, PoolDeps},
    service::{Identity, Service},
    store::{Store, postgres::PgStore},
    validate::{Head, NodeError, SimConfig, layers::Commutative},
};

/// The store the config names, and with Postgres this instance's part in the deployment and the bundle
/// key it leased; with redb, the configured key.
pub(super) async fn open_store(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(Store, Option<Arc<Cluster>>, PrivateKeySigner), RelayerError> {
    let Some(url) = &config.store else {
        let store = Store::open(&config.data_dir.join("relayer.redb"))?;
        return Ok((store, None, signer(config)?));
    };
    let c = &config.cluster;
    let instance = c
        .instance
        .clone()
        .unwrap_or_else(|| config.listen.to_string());
    let fence = Arc::new(cluster::Fence::new(instance, c.shards));
    let pg = Arc::new(PgStore::open(url, fence.clone(), metrics.clone()).await?);
    let cluster = Arc::new(Cluster::new(
        pg.clone(),
        fence,
        c.clone(),
        config.bundler.reorg_depth,
        metrics.clone(),
    ));
    cluster.join().await?;
    let key = cluster.lease_key(bundle_keys(config)?).await?;
    Ok((Store::new(pg), Some(cluster), key))
}

/// The values that only change between EntryPoint and relayer as deltas, and the venue's accumulators.
fn commutative(
    entry_point: alloy_primitives::Address,
    relayer: alloy_primitives::Address,
    beneficiary: alloy_primitives::Address,
    venue: Option<alloy_primitives::Address>,
) -> Commutative {
    let mut c = Commutative::default();
    c.accounts.extend([entry_point, relayer, beneficiary]);
    if let Some(v) = venue {
        c.slots.extend(
            keyscope_core::layout::venue_accumulator_slots()
                .into_iter()
                .map(|s| (v, s)),
        );
    }
    c
}

/// The pool, the bundler and the chain follower over `store`, with the unfinished ops it holds resumed.
/// Returns the service and how many ops were resumed.
pub(super) async fn assemble(
    config: &Config,
    provider: DynProvider,
    identity: Identity,
    wallet: EthereumWallet,
    store: Store,
    metrics: Arc<Metrics>,
) -> Result<(Arc<Service>, usize), RelayerError> {
    let unfinished = store.unfinished().await?;
    let head = provider
        .get_block_number()
        .await
        .map_err(NodeError::from_display)?;
    let recently_included = store
        .included_since(head.saturating_sub(config.bundler.reorg_depth))
        .await?;
    // Keyscope's implementation sits at the same address on every chain with this EntryPoint.
    let implementation = keyscope_core::deploy::account_implementation(config.entry_point);
    let deployed = !provider
        .get_code_at(implementation)
        .await
        .map_err(NodeError::from_display)?
        .is_empty();
    let sim = Arc::new(SimConfig {
        entry_point: config.entry_point,
        chain_id: identity.chain_id,
        venue: identity.venue,
        relayer: identity.relayer,
        keyscope_implementation: deployed.then_some(implementation),
        min_stake: config.min_stake_wei,
        min_unstake_delay: config.min_unstake_delay_secs,
    });
    let head = Head::latest(&provider).await?;
    let pool = Pool::new(
        PoolConfig {
            door: config.door.clone(),
            limits: config.pool,
            mode: config.bundler.mode,
        },
        sim.clone(),
        commutative(
            config.entry_point,
            identity.relayer,
            identity.beneficiary,
            identity.venue,
        ),
        PoolDeps {
            provider: provider.clone(),
            handle: tokio::runtime::Handle::current(),
            store: store.clone(),
            metrics: metrics.clone(),
        },
        head,
    )
    .await?;
    let in_flight = Arc::new(InFlight::default());
    let sent = Arc::new(tokio::sync::Notify::new());
    let bundler = Bundler::new(
        BundlerDeps {
            pool: pool.clone(),
            in_flight: in_flight.clone(),
            provider: provider.clone(),
            wallet,
            sim,
            beneficiary: identity.beneficiary,
            metrics: metrics.clone(),
            sent: sent.clone(),
        },
        config.bundler.clone(),
    );
    let chain = Chain::new(
        pool.clone(),
        in_flight.clone(),
        provider.clone(),
        config.entry_point,
        identity.relayer,
        config.bundler.clone(),
        metrics,
    );
    let resumed = chain.recover(unfinished, recently_included).await?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed unfinished ops from the store");
    }
    let every = Duration::from_millis(config.bundler.interval_ms);
    let service = Service::new(
        identity, pool, chain, bundler, in_flight, provider, store, sent, every,
    );
    Ok((Arc::new(service), resumed))
}
