//! A local chain with Keyscope deployed: anvil — from a project's `node_modules` (the pinned npm package) or
//! from PATH — and the deploy plan ([`crate::deploy`]) sent from anvil's first key. Nothing is read from the
//! source tree: the creation code is embedded, so `keyscope devnet` runs from any directory. Used by
//! `keyscope devnet`, `keyscope demo`, the harness's anvil backend and the tests (behind the `devnet`
//! feature).

use std::path::{Path, PathBuf};

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    node_bindings::{Anvil, AnvilInstance},
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::{Signer, local::PrivateKeySigner},
};
use alloy_primitives::{B256, U256};

use crate::{
    bindings::{PerpVenue, SignedPriceOracle},
    deploy::{self, PlanParams},
    deployment::Deployment,
};

/// Errors from starting a devnet.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// No anvil binary where it was looked for.
    #[error(
        "anvil not found (looked in {searched}): install Foundry so `anvil` is on PATH, or pass --project <dir> \
         for a directory with the pinned npm package (`npm install` in the Keyscope repository)"
    )]
    MissingAnvil {
        /// The places looked in.
        searched: String,
    },
    /// anvil did not start.
    #[error("anvil did not start: {0}")]
    Anvil(String),
    /// A step of the deploy plan failed.
    #[error("deploying Keyscope failed at \"{step}\": {reason}")]
    Deploy {
        /// The step.
        step: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The deployment file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The source tree this crate was built in (the workspace root). For tests and benchmarks only: binaries
/// take a project directory (`--project`) instead, so an installed `keyscope` never depends on it.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(".").into())
}

/// The native binary of a Foundry tool npm installed in `project` (`anvil`, `forge`, `cast`). The native
/// one, not the node wrapper: stopping it must stop the tool itself.
pub fn foundry_tool(project: &Path, tool: &str) -> Option<PathBuf> {
    let dir = project.join("node_modules/@foundry-rs");
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{tool}-"))
        })
        .map(|e| e.path().join("bin").join(tool))
        .find(|p| p.is_file())
}

/// The native binary behind an npm wrapper on PATH (`…/node_modules/.bin/anvil` links to
/// `…/node_modules/@foundry-rs/anvil/bin.mjs`, a node script that spawns the binary): stopping the
/// wrapper would leave the real anvil running.
fn native_behind_npm_wrapper(found: &Path) -> Option<PathBuf> {
    let script = found.canonicalize().ok()?;
    let project = script.ancestors().nth(4)?;
    (script.extension()? == "mjs" && script.ancestors().nth(3)?.ends_with("node_modules"))
        .then(|| foundry_tool(project, "anvil"))
        .flatten()
}

/// `anvil`: the project's pinned npm package if it has one, else the first on PATH (the native binary
/// if that is an npm wrapper).
pub fn find_anvil(project: &Path) -> Result<PathBuf, DevnetError> {
    if let Some(p) = foundry_tool(project, "anvil") {
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("anvil"))
        .find(|p| p.is_file())
        .map(|p| native_behind_npm_wrapper(&p).unwrap_or(p))
        .ok_or_else(|| DevnetError::MissingAnvil {
            searched: format!("{}/node_modules/@foundry-rs and PATH", project.display()),
        })
}

/// A running anvil with Keyscope deployed. Dropping it stops anvil.
#[derive(Debug)]
pub struct Devnet {
    anvil: AnvilInstance,
    /// Where everything is.
    pub deployment: Deployment,
    /// `<project>/deployments/<chainId>.json`, written at start for other commands to find.
    pub deployment_file: PathBuf,
}

/// The dev key the devnet's venue lets settle signed orders (`PerpVenue.setSettler`), which
/// `keyscope devnet` and the demo give the relayer's matcher.
pub const SETTLER_KEY_INDEX: usize = 9;

impl Devnet {
    /// Starts anvil (`port` 0: any free port) with `chain_id`, deploys with the default insurance fund and
    /// writes `<project>/deployments/<chainId>.json`.
    pub async fn start(project: &Path, port: u16, chain_id: u64) -> Result<Self, DevnetError> {
        Self::start_with(
            project,
            port,
            chain_id,
            U256::from(deploy::DEFAULT_INSURANCE),
        )
        .await
    }

    /// `start`, with the venue's insurance fund (6 decimals; zero: none).
    pub async fn start_with(
        project: &Path,
        port: u16,
        chain_id: u64,
        insurance_fund: U256,
    ) -> Result<Self, DevnetError> {
        Self::start_with_args(project, port, chain_id, insurance_fund, &[]).await
    }

    /// `start_with`, passing `args` to anvil (e.g. `["--hardfork", "prague"]`).
    pub async fn start_with_args(
        project: &Path,
        port: u16,
        chain_id: u64,
        insurance_fund: U256,
        args: &[&str],
    ) -> Result<Self, DevnetError> {
        let anvil = Anvil::new()
            .path(find_anvil(project)?)
            .port(port)
            .chain_id(chain_id)
            .args(args.iter().copied())
            .try_spawn()
            .map_err(|e| DevnetError::Anvil(e.to_string()))?;
        let deployer: PrivateKeySigner = anvil.keys()[0].clone().into();
        let mut deployment = deploy_plan(&anvil, &deployer, insurance_fund).await?;
        // The devnet relayer's matcher settles signed orders from dev key SETTLER_KEY_INDEX.
        let settler: PrivateKeySigner = anvil.keys()[SETTLER_KEY_INDEX].clone().into();
        PerpVenue::new(
            deployment.venue,
            ProviderBuilder::new()
                .wallet(EthereumWallet::from(deployer.clone()))
                .connect_http(anvil.endpoint_url()),
        )
        .setSettler(settler.address(), true)
        .send()
        .await
        .map_err(|e| DevnetError::Deploy {
            step: "allow the devnet settler",
            reason: e.to_string(),
        })?
        .get_receipt()
        .await
        .map_err(|e| DevnetError::Deploy {
            step: "allow the devnet settler",
            reason: e.to_string(),
        })?;
        deployment.chain_id = chain_id;
        let deployment_file = project.join("deployments").join(format!("{chain_id}.json"));
        deployment
            .save(&deployment_file)
            .map_err(|e| DevnetError::Write {
                path: deployment_file.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            anvil,
            deployment,
            deployment_file,
        })
    }

    /// The JSON-RPC endpoint.
    pub fn endpoint(&self) -> String {
        self.anvil.endpoint()
    }

    /// The JSON-RPC endpoint as a URL.
    pub fn endpoint_url(&self) -> alloy::transports::http::reqwest::Url {
        self.anvil.endpoint_url()
    }

    /// Anvil's funded dev keys; key 0 deployed everything and signs oracle prices.
    pub fn keys(&self) -> Vec<B256> {
        self.anvil
            .keys()
            .iter()
            .map(|k| B256::from_slice(&k.to_bytes()))
            .collect()
    }

    /// Anvil's dev key `index` as a signer.
    pub fn signer(&self, index: usize) -> PrivateKeySigner {
        self.anvil.keys()[index].clone().into()
    }

    /// A provider that signs with dev key `index`, and a client on it that bundles its own ops (`handleOps`
    /// sent from that key, which takes the refunds): how tests and tools send ops without a bundler.
    pub fn self_bundling(
        &self,
        index: usize,
    ) -> (
        alloy::providers::DynProvider,
        crate::client::Client<alloy::providers::DynProvider>,
    ) {
        let key = self.signer(index);
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(key.clone()))
            .connect_http(self.endpoint_url())
            .erased();
        let client = crate::client::Client::new(
            provider.clone(),
            self.deployment.clone(),
            crate::client::Submission::SelfBundle {
                beneficiary: key.address(),
            },
            key.address(),
        );
        (provider, client)
    }

    /// The scope test traders' keys get: BTC only, at most 0.5 an order and 40,000 notional, the usual
    /// defaults (8 hours, cautious money limits).
    pub fn btc_scope(&self) -> crate::scope::TradingScope {
        let e18 = |v: u64| U256::from(v) * U256::from(10u64).pow(U256::from(18));
        crate::scope::TradingScope::new(
            self.deployment.venue,
            vec![0],
            e18(1) / U256::from(2),
            e18(40_000),
        )
    }

    /// `open_account` granting each of `keys` `btc_scope()` from the chain's current time.
    pub async fn open_btc_account<K: crate::key::KeySigner + ?Sized>(
        &self,
        owner: &K,
        collateral: U256,
        keys: &[alloy_primitives::Address],
    ) -> Result<alloy_primitives::Address, String> {
        let now =
            latest_timestamp(&ProviderBuilder::new().connect_http(self.endpoint_url())).await?;
        let scope = self.btc_scope().build(now).map_err(|e| e.to_string())?;
        let grants = keys.iter().map(|k| (*k, scope.clone())).collect();
        self.open_account(owner, collateral, grants).await
    }

    /// Opens a trader's account for `owner` (either curve; salt 0) the way a trader does: 1 ETH for gas and
    /// `collateral` test USD (6 decimals) sent to its address, then its first owner op — deploying it,
    /// depositing half the collateral on the venue and granting the first `(key, scope)` — and one owner
    /// op per further grant, self-bundled by dev key 4. Publishes a price for markets 0 and 1 (60,000 and 3,000) if none is live yet, so orders fill.
    pub async fn open_account<K: crate::key::KeySigner + ?Sized>(
        &self,
        owner: &K,
        collateral: U256,
        grants: Vec<(
            alloy_primitives::Address,
            crate::bindings::ITradingAccount::SessionScope,
        )>,
    ) -> Result<alloy_primitives::Address, String> {
        use crate::{bindings::TestUSD, ops::first_op_calls};
        let deployer = self.signer(0);
        let (provider, client) = self.self_bundling(4);
        let minter = ProviderBuilder::new()
            .wallet(EthereumWallet::from(deployer.clone()))
            .connect_http(self.endpoint_url());
        let d = &self.deployment;
        let oracle = SignedPriceOracle::new(d.oracle, &minter);
        for (market, price) in [(0u32, 60_000u64), (1, 3_000)] {
            if oracle
                .lastPrice(market)
                .call()
                .await
                .map_err(|e| e.to_string())?
                .price
                .is_zero()
            {
                let price = U256::from(price) * U256::from(10u64).pow(U256::from(18));
                publish_price(&minter, d, &deployer, market, price).await?;
            }
        }
        let account = client
            .account_address(owner.id(), U256::ZERO)
            .await
            .map_err(|e| e.to_string())?;
        let gas = TransactionRequest::default()
            .with_to(account)
            .with_value(U256::from(10u64).pow(U256::from(18)));
        provider
            .send_transaction(gas)
            .await
            .map_err(|e| e.to_string())?
            .get_receipt()
            .await
            .map_err(|e| e.to_string())?;
        TestUSD::new(d.collateral, &minter)
            .mint(account, collateral)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .get_receipt()
            .await
            .map_err(|e| e.to_string())?;
        // One grant per op: an op's default call gas fits the deposit and one grant.
        let mut grants = grants.into_iter();
        let mut calls = first_op_calls(
            account,
            d.collateral,
            d.venue,
            collateral / U256::from(2),
            grants.next().into_iter().collect(),
        );
        loop {
            let op = client
                .owner_op(owner, U256::ZERO, calls)
                .await
                .map_err(|e| e.to_string())?;
            let outcome = client.send(&op).await.map_err(|e| e.to_string())?;
            if !outcome.success {
                return Err(format!(
                    "an owner op opening the account reverted: {outcome:?}"
                ));
            }
            match grants.next() {
                Some((key, scope)) => calls = vec![crate::ops::grant_session(account, key, scope)],
                None => return Ok(account),
            }
        }
    }
}

/// Sends the deploy plan from `deployer`, one transaction at a time, checking each landed.
async fn deploy_plan(
    anvil: &AnvilInstance,
    deployer: &PrivateKeySigner,
    insurance_fund: U256,
) -> Result<Deployment, DevnetError> {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer.clone()))
        .connect_http(anvil.endpoint_url());
    let failed = |step: &'static str| move |e: String| DevnetError::Deploy { step, reason: e };
    let start = provider
        .get_block_number()
        .await
        .map_err(|e| failed("read the head")(e.to_string()))?;
    let plan = deploy::plan(
        anvil.chain_id(),
        PlanParams {
            deployer: deployer.address(),
            oracle_signer: deployer.address(),
            insurance_fund,
        },
    );
    for step in &plan.steps {
        let tx = TransactionRequest::default()
            .with_to(step.to)
            .with_input(step.data.clone());
        let receipt = provider
            .send_transaction(tx)
            .await
            .map_err(|e| failed(step.what)(e.to_string()))?
            .get_receipt()
            .await
            .map_err(|e| failed(step.what)(e.to_string()))?;
        if !receipt.status() {
            return Err(failed(step.what)(format!(
                "transaction {} reverted",
                receipt.transaction_hash
            )));
        }
        if let Some(at) = step.creates {
            let code = provider
                .get_code_at(at)
                .await
                .map_err(|e| failed(step.what)(e.to_string()))?;
            if code.is_empty() {
                return Err(failed(step.what)(format!("nothing was deployed at {at}")));
            }
        }
    }
    Ok(Deployment {
        block: start,
        ..plan.deployment
    })
}

/// One JSON-RPC call over HTTP: the `result`, or the `error` object (a transport failure reads as an error
/// object with its `message`). For tools and tests talking to a relayer or a node by method name.
pub async fn json_rpc(
    url: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, serde_json::Value> {
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let failed = |e: alloy::transports::http::reqwest::Error| serde_json::json!({ "message": e.to_string() });
    let resp: serde_json::Value = alloy::transports::http::reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(failed)?
        .json()
        .await
        .map_err(failed)?;
    match resp.get("error") {
        Some(e) => Err(e.clone()),
        None => Ok(resp["result"].clone()),
    }
}

/// Signs and submits a price for `market` at the chain's current time (`oracle_key` must be a
/// registered oracle signer; anyone may relay, here the provider's wallet).
pub async fn publish_price<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    oracle_key: &PrivateKeySigner,
    market: u32,
    price: U256,
) -> Result<(), String> {
    let (update, sig) = sign_price(provider, deployment, oracle_key, market, price).await?;
    SignedPriceOracle::new(deployment.oracle, provider)
        .submit(update, sig)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .get_receipt()
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A price update for `market` at the chain's current time (after the last one), signed by
/// `oracle_key`: what `SignedPriceOracle.submit` takes, from whoever relays it.
pub async fn sign_price<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    oracle_key: &PrivateKeySigner,
    market: u32,
    price: U256,
) -> Result<(SignedPriceOracle::PriceUpdate, alloy::primitives::Bytes), String> {
    let oracle = SignedPriceOracle::new(deployment.oracle, provider);
    let now = latest_timestamp(provider).await?;
    let last = oracle
        .lastPrice(market)
        .call()
        .await
        .map_err(|e| e.to_string())?
        .publishTime;
    let update = SignedPriceOracle::PriceUpdate {
        marketId: market,
        price,
        publishTime: now.max(last + 1),
    };
    let digest = oracle
        .updateDigest(update.clone())
        .call()
        .await
        .map_err(|e| e.to_string())?;
    let sig = oracle_key
        .sign_hash(&digest)
        .await
        .map_err(|e| e.to_string())?;
    Ok((update, sig.as_bytes().to_vec().into()))
}

/// The latest block's timestamp: the chain's clock.
async fn latest_timestamp(provider: &impl Provider) -> Result<u64, String> {
    Ok(provider
        .get_block_by_number(alloy::rpc::types::BlockNumberOrTag::Latest)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no latest block")?
        .header
        .timestamp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_npm_wrapper_on_path_is_read_as_the_native_anvil_behind_it() {
        // `make test` installs the pinned npm packages first, wrapper included.
        let root = super::repo_root();
        let native = super::foundry_tool(&root, "anvil").expect("the pinned anvil");
        let wrapper = root.join("node_modules/.bin/anvil");
        assert_eq!(
            super::native_behind_npm_wrapper(&wrapper),
            Some(native.clone())
        );
        // The native binary is no wrapper.
        assert_eq!(super::native_behind_npm_wrapper(&native), None);
    }
}
