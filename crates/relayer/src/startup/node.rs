//! The chain's endpoint, checked before anything starts: it answers, it holds EntryPoint v0.8 at the
//! configured address, and the deployment file (if any) is its own.

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy_primitives::Address;
use keyscope_core::deployment::Deployment;

use crate::{Config, RelayerError, service::Identity};

/// The chain's endpoint, checked: it answers, it has the EntryPoint, and the deployment (if any) is its own.
pub(super) async fn connect(
    config: &Config,
    relayer: Address,
) -> Result<(DynProvider, Identity), RelayerError> {
    let node = |reason: String| RelayerError::Node {
        url: config.rpc_url.clone(),
        reason,
    };
    let url = config
        .rpc_url
        .parse()
        .map_err(|e: url::ParseError| node(e.to_string()))?;
    let provider = ProviderBuilder::new().connect_http(url).erased();
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| node(e.to_string()))?;
    config.check_chain(chain_id)?;
    let code = provider
        .get_code_at(config.entry_point)
        .await
        .map_err(|e| node(e.to_string()))?;
    if code.is_empty() {
        return Err(RelayerError::NoEntryPoint {
            address: config.entry_point,
            chain_id,
        });
    }
    if !keyscope_core::deploy::is_entry_point_v08_code(&code) {
        return Err(RelayerError::NotEntryPoint {
            address: config.entry_point,
            chain_id,
        });
    }
    let venue = match (&config.venue, &config.deployment) {
        (Some(v), _) => Some(*v),
        (None, Some(path)) => {
            let d = Deployment::load(path)?;
            if d.chain_id != chain_id {
                return Err(RelayerError::WrongChain {
                    file: d.chain_id,
                    node: chain_id,
                });
            }
            Some(d.venue)
        }
        (None, None) => None,
    };
    let identity = Identity {
        chain_id,
        entry_point: config.entry_point,
        venue,
        relayer,
        beneficiary: config.beneficiary.unwrap_or(relayer),
    };
    Ok((provider, identity))
}
