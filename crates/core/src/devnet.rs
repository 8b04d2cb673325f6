//! A local chain with Keyscope deployed: anvil from the pinned npm package, then `script/Deploy.s.sol`
//! (the one source of deployment truth) run by the pinned forge. Used by `keyscope devnet` and by tests.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    providers::Provider,
    signers::{Signer, local::PrivateKeySigner},
};
use alloy_primitives::{B256, U256};

use crate::{
    bindings::SignedPriceOracle,
    deployment::{Deployment, DeploymentError},
};

/// Errors from starting a devnet.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error(
        "{0} not found: run `npm install --no-audit --no-fund` in the repository (or `make build`)"
    )]
    MissingTool(String),
    #[error("anvil did not start: {0}")]
    Anvil(String),
    #[error("the deploy script failed:\n{0}")]
    Deploy(String),
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
}

/// The repository root: where `node_modules`, `script` and `deployments` are.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(".").into())
}

/// The native binary of a Foundry tool npm installed (`anvil`, `forge`, `cast`). The native one, not
/// the node wrapper: stopping it must stop the tool itself.
pub fn foundry_tool(root: &Path, tool: &str) -> Result<PathBuf, DevnetError> {
    let dir = root.join("node_modules/@foundry-rs");
    std::fs::read_dir(&dir)
        .map_err(|_| DevnetError::MissingTool(format!("{}/{tool}-*", dir.display())))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{tool}-"))
        })
        .map(|e| e.path().join("bin").join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| DevnetError::MissingTool(format!("{}/{tool}-*/bin/{tool}", dir.display())))
}

/// A running anvil with Keyscope deployed. Dropping it stops anvil.
#[derive(Debug)]
pub struct Devnet {
    anvil: AnvilInstance,
    pub deployment: Deployment,
    pub deployment_file: PathBuf,
}

impl Devnet {
    /// Starts anvil (`port` 0: any free port) with `chain_id`, and deploys.
    pub fn start(root: &Path, port: u16, chain_id: u64) -> Result<Self, DevnetError> {
        Self::start_with(root, port, chain_id, &[])
    }

    /// `start`, with extra environment for the deploy script (e.g. `INSURANCE_FUND`).
    pub fn start_with(
        root: &Path,
        port: u16,
        chain_id: u64,
        env: &[(&str, String)],
    ) -> Result<Self, DevnetError> {
        let anvil = Anvil::new()
            .path(foundry_tool(root, "anvil")?)
            .port(port)
            .chain_id(chain_id)
            .try_spawn()
            .map_err(|e| DevnetError::Anvil(e.to_string()))?;
        let out = Command::new(foundry_tool(root, "forge")?)
            .current_dir(root)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args([
                "script",
                "script/Deploy.s.sol",
                "--broadcast",
                "--slow",
                "--rpc-url",
            ])
            .arg(anvil.endpoint())
            .output()
            .map_err(|e| DevnetError::Deploy(e.to_string()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // forge script can report a failed transaction and still exit 0.
        if !out.status.success() || text.contains("Error") {
            return Err(DevnetError::Deploy(text));
        }
        let deployment_file = root.join("deployments").join(format!("{chain_id}.json"));
        let deployment = Deployment::load(&deployment_file)?;
        Ok(Self {
            anvil,
            deployment,
            deployment_file,
        })
    }

    pub fn endpoint(&self) -> String {
        self.anvil.endpoint()
    }

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

    pub fn signer(&self, index: usize) -> PrivateKeySigner {
        self.anvil.keys()[index].clone().into()
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
    let now = provider
        .get_block_by_number(alloy::rpc::types::BlockNumberOrTag::Latest)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no latest block")?
        .header
        .timestamp;
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
