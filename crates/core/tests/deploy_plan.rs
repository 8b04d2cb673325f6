//! The Rust deploy plan (what `keyscope devnet` and the harness run) and `script/Deploy.s.sol` (what an
//! operator runs on a real chain) leave the same chain: each deploys on its own anvil from the same key, and
//! every address, market parameter, balance and role must match.

use std::process::Command;

use alloy::{
    node_bindings::Anvil,
    providers::{Provider, ProviderBuilder},
};
use alloy_primitives::{Address, U256, keccak256};
use keyscope_core::{
    bindings::{AccountFactory, PerpVenue, SignedPriceOracle, TestUSD},
    deploy,
    deployment::Deployment,
    devnet::{Devnet, foundry_tool, repo_root},
};

/// What a deployment leaves on its chain, read back.
#[derive(Debug, PartialEq)]
struct OnChain {
    addresses: [Address; 5],
    markets: Vec<String>,
    pool: String,
    insurance: String,
    signer: bool,
    max_age: u64,
    deployer_usd: String,
    owner: Address,
}

async fn read(rpc: &str, d: &Deployment, deployer: Address) -> OnChain {
    let p = ProviderBuilder::new().connect_http(rpc.parse().unwrap());
    let venue = PerpVenue::new(d.venue, &p);
    let oracle = SignedPriceOracle::new(d.oracle, &p);
    let mut markets = Vec::new();
    for id in [0u32, 1, 2] {
        // Everything but the funding clock, which starts at each chain's own block time.
        let m = PerpVenue::Market {
            lastFundingTime: 0,
            ..venue.market(id).call().await.unwrap()
        };
        markets.push(format!("{m:?}"));
    }
    for a in [
        d.entry_point,
        d.account_factory,
        d.collateral,
        d.oracle,
        d.venue,
    ] {
        assert!(!p.get_code_at(a).await.unwrap().is_empty(), "code at {a}");
    }
    OnChain {
        addresses: [
            d.entry_point,
            d.account_factory,
            d.collateral,
            d.oracle,
            d.venue,
        ],
        markets,
        pool: venue.pool().call().await.unwrap().to_string(),
        insurance: venue.insuranceFund().call().await.unwrap().to_string(),
        signer: oracle.isSigner(deployer).call().await.unwrap(),
        max_age: oracle.maxAge().call().await.unwrap(),
        deployer_usd: TestUSD::new(d.collateral, &p)
            .balanceOf(deployer)
            .call()
            .await
            .unwrap()
            .to_string(),
        owner: venue.owner().call().await.unwrap(),
    }
}

#[tokio::test]
async fn the_rust_plan_and_the_forge_script_deploy_the_same_chain() {
    let root = repo_root();
    let planned = Devnet::start(&root, 0, 41_021)
        .await
        .expect("the plan deploys");
    let deployer = planned.signer(0).address();
    let rust = read(&planned.endpoint(), &planned.deployment, deployer).await;

    let anvil = Anvil::new()
        .path(foundry_tool(&root, "anvil").expect("the pinned anvil"))
        .chain_id(41_020)
        .spawn();
    let out = Command::new(foundry_tool(&root, "forge").expect("the pinned forge"))
        .current_dir(&root)
        .args([
            "script",
            "script/Deploy.s.sol",
            "--broadcast",
            "--slow",
            "--rpc-url",
        ])
        .arg(anvil.endpoint())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("Error"),
        "forge script failed:\n{text}"
    );
    let scripted = Deployment::load(root.join("deployments/41020.json")).unwrap();
    let forge = read(&anvil.endpoint(), &scripted, deployer).await;

    assert_eq!(rust, forge);
    assert_eq!(planned.deployment.markets, scripted.markets);
    assert_eq!(rust.owner, deployer);
    assert!(
        rust.markets[2].contains("listed: false"),
        "only BTC and ETH are listed: {}",
        rust.markets[2]
    );

    // What tells a Keyscope account from any other, on chain: the factory's implementation is the one
    // computed from the EntryPoint alone, and an account it deploys is solady's ERC-1967 proxy pointing at it.
    let p = ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(planned.signer(5)))
        .connect_http(planned.endpoint_url());
    let factory = AccountFactory::new(planned.deployment.account_factory, &p);
    let implementation = deploy::account_implementation(planned.deployment.entry_point);
    assert_eq!(
        factory.accountImplementation().call().await.unwrap(),
        implementation
    );
    let owner = planned.signer(6).address();
    factory
        .createAccount(owner, U256::ZERO)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let account = factory.getAddress(owner, U256::ZERO).call().await.unwrap();
    let code = p.get_code_at(account).await.unwrap();
    assert_eq!(keccak256(&code), deploy::ACCOUNT_PROXY_CODE_HASH);
    let slot = p
        .get_storage_at(account, deploy::ERC1967_IMPLEMENTATION_SLOT.into())
        .await
        .unwrap();
    assert_eq!(Address::from_word(slot.into()), implementation);
}
