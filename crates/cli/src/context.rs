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

use crate::global::Global;

pub(crate) struct Ctx {
    pub provider: DynProvider,
    pub client: Client<DynProvider>,
    pub deployment: Deployment,
    pub owner: PrivateKeySigner,
    pub account: Address,
    /// The address that sends this machine's transactions (handleOps, gas funding): --relayer-key's, else
    /// the owner's.
    pub relayer: Address,
    pub json: bool,
    /// --bundler and --rpc, to name them when the bundler fails.
    bundler: Option<String>,
    rpc: String,
}

/// The owner key from --key or --keystore. When both are set, the one typed on the command line wins over
/// the one from the environment (KEYSCOPE_KEY, KEYSCOPE_KEYSTORE); both typed is an error.
pub(crate) fn owner_key(g: &Global) -> anyhow::Result<PrivateKeySigner> {
    let from_env =
        |var: &str, value: &std::ffi::OsStr| std::env::var_os(var).is_some_and(|v| v == value);
    let use_keystore = match (&g.owner_key, &g.keystore) {
        (Some(k), Some(p)) => {
            let key_env = from_env("KEYSCOPE_KEY", k.as_ref());
            let keystore_env = from_env("KEYSCOPE_KEYSTORE", p.as_os_str());
            if key_env == keystore_env {
                bail!(
                    "both an owner key and a keystore are given: use --key or --keystore, not both (unset \
                     KEYSCOPE_KEY or KEYSCOPE_KEYSTORE)"
                );
            }
            key_env
        }
        (_, keystore) => keystore.is_some(),
    };
    if let (Some(path), true) = (&g.keystore, use_keystore) {
        let password = std::env::var("KEYSCOPE_PASSWORD")
            .context("the keystore needs its password in KEYSCOPE_PASSWORD")?;
        return Ok(signer::from_keystore(path, &password)?);
    }
    if let Some(k) = &g.owner_key {
        return Ok(signer::from_hex(k)?);
    }
    bail!("no owner key: pass --key <hex> or --keystore <file> (or set KEYSCOPE_KEY)")
}

/// Fails, naming the fix, unless the deployment's contracts are on the chain: a fresh anvil under an old
/// deployment file, or `--rpc` pointed at something that is not a node.
async fn check_deployed(
    provider: &DynProvider,
    deployment: &Deployment,
    path: &std::path::Path,
    rpc: &str,
) -> anyhow::Result<()> {
    let code = provider
        .get_code_at(deployment.account_factory)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{rpc} answers eth_chainId but not eth_getCode ({e}): it is not a chain node — is it the bundler's \
                 URL? --rpc (KEYSCOPE_RPC) takes the node's, --bundler (KEYSCOPE_BUNDLER) the relayer's"
            )
        })?;
    if code.is_empty() {
        bail!(
            "stale deployment file: {} names an account factory at {} but the chain at {rpc} has no code there \
             (a fresh anvil under an old file?); run `keyscope devnet` again, which deploys and rewrites it, or \
             pass --deployment with this chain's file",
            path.display(),
            deployment.account_factory
        );
    }
    Ok(())
}

/// Fails, naming the fix, unless `url` is an ERC-4337 bundler serving `entry_point`.
async fn check_bundler(url: &str, rpc: &str, entry_point: Address) -> anyhow::Result<()> {
    let parsed = url
        .parse()
        .with_context(|| format!("--bundler {url:?} is not a URL"))?;
    let bundler = ProviderBuilder::new().connect_http(parsed);
    let supported: Vec<Address> = match bundler
        .raw_request("eth_supportedEntryPoints".into(), ())
        .await
    {
        Ok(list) => list,
        Err(e) if e.is_error_resp() => bail!(
            "{url} answers JSON-RPC but is not an ERC-4337 bundler (eth_supportedEntryPoints: {e}); is it the \
             node's URL? --bundler (KEYSCOPE_BUNDLER) takes the relayer's, --rpc (KEYSCOPE_RPC) the node's ({rpc})"
        ),
        Err(e) => bail!(
            "cannot reach the bundler at {url} ({e}); start it (`keyscope devnet` runs one, `keyscope relayer` \
             is one), fix --bundler / KEYSCOPE_BUNDLER, or unset it to send handleOps from your own key"
        ),
    };
    if !supported.contains(&entry_point) {
        bail!(
            "the bundler at {url} serves EntryPoints {supported:?}, not this deployment's {entry_point}; point \
             --bundler at a relayer for this chain"
        );
    }
    Ok(())
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
    pub(crate) async fn connect(g: &Global) -> anyhow::Result<Self> {
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
        check_deployed(&provider, &deployment, &path, &g.rpc).await?;
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
            relayer: relayer.address(),
            json: g.json,
            bundler: g.bundler.clone(),
            rpc: g.rpc.clone(),
        })
    }

    /// The owner key's address (the account's owner, and the sender of its own token transfers).
    pub(crate) fn owner_address(&self) -> Address {
        alloy::signers::Signer::address(&self.owner)
    }

    pub(crate) fn salt(g: &Global) -> U256 {
        U256::from(g.salt)
    }

    /// Fails unless the account is deployed.
    pub(crate) async fn require_account(&self) -> anyhow::Result<()> {
        if !self.client.is_deployed(self.account).await? {
            bail!(
                "unknown account: nothing is deployed at {} for owner {} yet; run `keyscope account create`",
                self.account,
                self.owner_address()
            );
        }
        Ok(())
    }

    /// Submits `op` (simulated first; through a bundler checked to be one) and fails if its execution reverted.
    pub(crate) async fn send(&self, op: &PackedUserOperation) -> anyhow::Result<OpOutcome> {
        if let Some(url) = &self.bundler {
            check_bundler(url, &self.rpc, self.deployment.entry_point).await?;
        }
        let outcome = self.client.send(op).await.map_err(|e| match e {
            keyscope_core::client::ClientError::Refused(reason) => anyhow::anyhow!(
                "refused before sending: {}",
                reason.naming_markets(&self.deployment.markets)
            ),
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
                    .map_or("no reason given".to_string(), |r| r
                        .clone()
                        .naming_markets(&self.deployment.markets)
                        .to_string())
            );
        }
        Ok(outcome)
    }
}
