//! Start-up: from a checked config to a serving relayer. The bundle key ([`keys`]), the store and with
//! Postgres this instance's part in the deployment, the pool, the bundler and the chain follower put
//! together ([`assemble`]), the chain checked ([`node`]), the JSON-RPC and metrics listeners ([`listen`]),
//! and the background tasks (the service's rounds, reputation decay, the cluster, the venue feed).

mod assemble;
mod keys;
mod listen;
mod node;

use std::{sync::Arc, time::Duration};

use alloy::network::EthereumWallet;
use tokio::sync::watch;

use crate::{
    Config, Relayer, RelayerError, feed, matcher, metrics::Metrics, pool::Pool, rpc, store,
};

/// Connects to the chain, opens the store, resumes unfinished ops and starts serving.
pub(crate) async fn start(config: Config) -> Result<Relayer, RelayerError> {
    config.check()?;
    let metrics = Arc::new(Metrics::default());
    let (store, cluster, key) = assemble::open_store(&config, &metrics).await?;
    let (provider, identity) = node::connect(&config, key.address()).await?;
    let wallet = EthereumWallet::from(key);
    let (service, resumed) = assemble::assemble(
        &config,
        provider.clone(),
        identity,
        wallet,
        store,
        metrics.clone(),
    )
    .await?;
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let matcher = match (&config.matcher.settler_key, identity.venue) {
        (Some(_), Some(venue)) => {
            let (m, t) = matcher::Matcher::start(
                config.matcher.clone(),
                provider.clone(),
                venue,
                identity.chain_id,
                keyscope_core::deploy::account_implementation(config.entry_point),
                config.bundler.reorg_depth,
                &config.data_dir,
                rx.clone(),
            )
            .await?;
            tracing::info!(settler = %m.settler(), %venue, "matcher for signed orders running");
            tasks.extend(t);
            Some(m)
        }
        _ => None,
    };
    let feed = tokio::sync::broadcast::channel(4096).0;
    // API keys live beside the redb store; a Postgres deployment serves none (config.check refuses
    // requiring them there).
    let api_keys = match (config.api_keys.enabled, &config.store) {
        (true, None) => Some(Arc::new(rpc::api_keys::ApiKeys::new(
            store::api_keys::ApiKeyTable::open(&config.data_dir.join("api_keys.redb"))?,
            provider.clone(),
            identity.chain_id,
            config.api_keys.clone(),
        ))),
        _ => None,
    };
    let access = Arc::new(rpc::AccessPolicy {
        admin_token: config.admin_token.clone(),
        loopback: config.listen.ip().is_loopback(),
        allowed_origins: config.allowed_origins.clone(),
        api_keys: api_keys.clone(),
    });
    let (rpc_addr, server) = listen::serve_rpc(
        &config,
        rpc::RpcContext {
            service: service.clone(),
            metrics: metrics.clone(),
            feed: feed.clone(),
            min_stake: (config.min_stake_wei, config.min_unstake_delay_secs),
            access: access.clone(),
            cluster: cluster.clone(),
            matcher,
            api_keys: api_keys.clone(),
        },
        access,
        api_keys,
        cluster.as_deref(),
    )
    .await?;

    tasks.extend([
        tokio::spawn(service.clone().run(rx.clone())),
        tokio::spawn(decay_reputation(service.pool.clone(), rx.clone())),
    ]);
    if let Some(cluster) = cluster {
        tasks.push(tokio::spawn(cluster.run(service.clone(), rx.clone())));
    }
    if let Some(venue) = identity.venue {
        let every = Duration::from_millis(config.bundler.interval_ms.max(50));
        tasks.push(tokio::spawn(feed::run(
            provider,
            venue,
            every,
            feed,
            rx.clone(),
        )));
    }
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let (addr, task) = listen::serve_metrics(metrics, addr, rx).await?;
            tasks.push(task);
            Some(addr)
        }
        None => None,
    };
    tracing::info!(%rpc_addr, relayer = %identity.relayer, chain_id = identity.chain_id, "relayer serving");
    Ok(Relayer {
        rpc_addr,
        metrics_addr,
        service,
        resumed,
        tls: config.tls.is_some(),
        server,
        shutdown,
        tasks,
    })
}

async fn decay_reputation(pool: Pool, mut shutdown: watch::Receiver<bool>) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    hourly.tick().await;
    loop {
        tokio::select! {
            _ = hourly.tick() => pool.decay_reputation(),
            _ = shutdown.changed() => break,
        }
    }
}
