//! Everything a command needs, resolved once from the global options: the chain, the deployment that
//! matches it, the owner key, the client and the account address — with errors that say what to do.

use std::path::PathBuf;

use alloy::{
    network::EthereumWallet,
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use alloy_primitives::{Address, U256};
use anyhow::{Context, bail};
use keyscope_core::{
    client::{Client, OpOutcome, Submission},
    deployment::Deployment,
    signer,
    user_op::PackedUserOperation,
};

use crate::Global;

pub struct Ctx {
    pub provider: DynProvider,
    pub client: Client<DynProvider>,
    pub deployment: Deployment,
    pub owner: PrivateKeySigner,
    pub account: Address,
    pub json: bool,
}

/// The owner key from --key or --keystore.
pub fn owner_key(g: &Global) -> anyhow::Result<PrivateKeySigner> {
    if let Some(k) = &g.owner_key {
        return Ok(signer::from_hex(k)?);
    }
    if let Some(path) = &g.keystore {
        let password = std::env::var("KEYSCOPE_PASSWORD")
            .context("the keystore needs its password in KEYSCOPE_PASSWORD")?;
        return Ok(signer::from_keystore(path, &password)?);
    }
    bail!("no owner key: pass --key <hex> or --keystore <file> (or set KEYSCOPE_KEY)")
}

/// The deployment file for `chain_id`: --deployment, else <project>/deployments/<chainId>.json.
fn deployment_path(g: &Global, chain_id: u64) -> PathBuf {
    match &g.deployment {
        Some(p) => p.clone(),
        None => g
            .project
            .join("deployments")
            .join(format!("{chain_id}.json")),
    }
}

impl Ctx {
    pub async fn connect(g: &Global) -> anyhow::Result<Self> {
        let owner = owner_key(g)?;
        let relayer = match &g.relayer_key {
            Some(k) => signer::from_hex(k)?,
            None => owner.clone(),
        };
        let url = g
            .rpc
            .parse()
            .with_context(|| format!("--rpc {:?} is not a URL", g.rpc))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(relayer.clone()))
            .connect_http(url)
            .erased();
        let chain_id = provider.get_chain_id().await.with_context(|| {
            format!(
                "cannot reach {} (is the chain running? `keyscope devnet` starts one)",
                g.rpc
            )
        })?;
        let path = deployment_path(g, chain_id);
        let deployment = Deployment::load(&path)?;
        if deployment.chain_id != chain_id {
            bail!(
                "wrong chain: {} is for chain {} but {} serves chain {chain_id}; pass the right --rpc or --deployment",
                path.display(),
                deployment.chain_id,
                g.rpc
            );
        }
        let submission = match &g.bundler {
            Some(url) => Submission::Bundler { url: url.clone() },
            None => Submission::SelfBundle {
                beneficiary: relayer.address(),
            },
        };
        let client = Client::new(
            provider.clone(),
            deployment.clone(),
            submission,
            relayer.address(),
        );
        let account = client
            .account_address(alloy::signers::Signer::address(&owner), U256::from(g.salt))
            .await?;
        Ok(Self {
            provider,
            client,
            deployment,
            owner,
            account,
            json: g.json,
        })
    }

    pub fn salt(g: &Global) -> U256 {
        U256::from(g.salt)
    }

    /// Fails unless the account is deployed.
    pub async fn require_account(&self) -> anyhow::Result<()> {
        if !self.client.is_deployed(self.account).await? {
            bail!(
                "unknown account: nothing is deployed at {} for owner {} yet; run `keyscope account create`",
                self.account,
                alloy::signers::Signer::address(&self.owner)
            );
        }
        Ok(())
    }

    /// Submits `op` (simulated first) and fails if its execution reverted.
    pub async fn send(&self, op: &PackedUserOperation) -> anyhow::Result<OpOutcome> {
        let outcome = self.client.send(op).await.map_err(|e| match e {
            keyscope_core::client::ClientError::Refused(reason) => {
                anyhow::anyhow!("refused before sending: {reason}")
            }
            other => other.into(),
        })?;
        if !outcome.success {
            bail!(
                "op {} was included in {} but its call reverted: {}",
                outcome.user_op_hash,
                outcome.tx_hash,
                outcome
                    .revert_reason
                    .as_ref()
                    .map_or("no reason given".to_string(), |r| r.to_string())
            );
        }
        Ok(outcome)
    }
}
