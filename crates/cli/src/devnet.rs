//! `keyscope devnet`: anvil + the deployment + funded traders + an oracle publishing prices + the
//! relayer, for hand use, until Ctrl-C or SIGTERM.

use std::time::Duration;

use alloy::{
    network::EthereumWallet,
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use alloy_primitives::hex;
use anyhow::Context;
use keyscope_core::{
    bindings::TestUSD,
    deployment::Deployment,
    devnet::{Devnet, publish_price},
    units::parse_units,
};
use serde_json::json;

use crate::{global::Global, output::emit};

#[derive(Debug, clap::Args)]
pub(crate) struct DevnetArgs {
    /// Port for anvil's JSON-RPC.
    #[arg(long, default_value_t = 8545)]
    port: u16,
    /// Chain id.
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// Seconds between oracle price updates (prices go stale after 120 s).
    #[arg(long, default_value_t = 5)]
    price_interval: u64,
    /// Port for the relayer's JSON-RPC (HTTP and WebSocket); 0 picks a free one.
    #[arg(long, default_value_t = 4337)]
    relayer_port: u16,
}

/// Devnet prices: BTC and ETH, republished so they stay fresh.
const PRICES: [(&str, &str); 2] = [("BTC", "60000"), ("ETH", "3000")];

pub(crate) async fn run(g: &Global, args: DevnetArgs) -> anyhow::Result<()> {
    let devnet = Devnet::start(&g.project, args.port, args.chain_id).await?;
    let d = devnet.deployment.clone();
    let deployer = devnet.signer(0);
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer.clone()))
        .connect_http(devnet.endpoint_url());

    // Traders 2 and 3 get test dollars to deposit.
    let usd = TestUSD::new(d.collateral, &provider);
    let traders = [devnet.signer(2), devnet.signer(3)];
    for t in &traders {
        usd.mint(t.address(), parse_units("100000", 6)?)
            .send()
            .await?
            .get_receipt()
            .await?;
    }
    publish(&provider, &d, &deployer).await?;

    // The relayer, in-process, with its own store: a fresh chain must not inherit another chain's pool.
    let keys = devnet.keys();
    let data_dir = std::path::PathBuf::from(".keyscope")
        .join(format!("devnet-{}", d.chain_id))
        .join("relayer");
    let _ = std::fs::remove_dir_all(&data_dir);
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], args.relayer_port));
    let config = keyscope_relayer::Config::for_devnet(&devnet, listen, data_dir);
    let relayer = keyscope_relayer::Relayer::start(config)
        .await
        .context("starting the relayer")?;

    let info = json!({
        "rpc": devnet.endpoint(),
        "chainId": d.chain_id,
        "deployment": devnet.deployment_file,
        "entryPoint": d.entry_point,
        "accountFactory": d.account_factory,
        "venue": d.venue,
        "oracle": d.oracle,
        "collateral": d.collateral,
        "traderKeys": [format!("0x{}", hex::encode(keys[2])), format!("0x{}", hex::encode(keys[3]))],
        "relayerKey": format!("0x{}", hex::encode(keys[1])),
        "bundler": relayer.url(),
        "bundlerWs": relayer.ws_url(),
    });
    let saved = devnet
        .deployment_file
        .with_file_name(format!("devnet-{}.keys.json", d.chain_id));
    std::fs::write(&saved, serde_json::to_string_pretty(&info)?)
        .with_context(|| format!("writing {}", saved.display()))?;
    emit(g.json, json!({ "ready": true, "devnet": info }), || {
        format!(
            "devnet ready on {rpc} (chain {chain}); deployment {dep}; keys saved to {saved}\n\
             relayer (ERC-4337 bundler, debug methods on) at {bundler}\n\
             traders (100,000 tUSD each): {t0} and {t1}; prices: BTC 60000, ETH 3000 (republished every {int}s)\n\
             next:\n  export KEYSCOPE_RPC={rpc} KEYSCOPE_KEY={t0} KEYSCOPE_BUNDLER={bundler}\n  keyscope account create --collateral 20000 && keyscope deposit 10000\n  \
             keyscope session grant --session-key <ADDR> --markets BTC --max-size 0.5 --max-notional 40000 --rate 20/1s --expires 8h\n  \
             keyscope order place --market BTC --size 0.1 --limit 60500 --session-key <HEX>\n  keyscope portfolio\n\
             Ctrl-C stops it.",
            rpc = devnet.endpoint(),
            chain = d.chain_id,
            dep = devnet.deployment_file.display(),
            saved = saved.display(),
            t0 = info["traderKeys"][0].as_str().unwrap_or_default(),
            t1 = info["traderKeys"][1].as_str().unwrap_or_default(),
            int = args.price_interval,
            bundler = relayer.url(),
        )
    });

    let mut tick = tokio::time::interval(Duration::from_secs(args.price_interval.max(1)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = crate::shutdown::requested() => break,
            _ = tick.tick() => {
                if let Err(e) = publish(&provider, &d, &deployer).await {
                    eprintln!("price update failed: {e:#}");
                }
            }
        }
    }
    relayer.stop().await;
    drop(devnet);
    if !g.json {
        println!("devnet stopped");
    }
    Ok(())
}

/// Signs and submits the devnet prices with the deployer (the registered oracle key).
async fn publish<P: Provider>(
    provider: &P,
    d: &Deployment,
    oracle_key: &PrivateKeySigner,
) -> anyhow::Result<()> {
    for (name, price) in PRICES {
        let market = d.market_id(name)?;
        publish_price(provider, d, oracle_key, market, parse_units(price, 18)?)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}
