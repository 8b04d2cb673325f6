//! The deployment file `script/Deploy.s.sol` writes (`deployments/<chainId>.json`).

use std::{collections::BTreeMap, path::Path};

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// Errors from loading a deployment file.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The file could not be read.
    #[error(
        "cannot read deployment file {path}: {source} (run `forge script script/Deploy.s.sol` or `keyscope devnet` first)"
    )]
    Read {
        /// The file's path.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file is not a deployment.
    #[error("deployment file {path} is not valid: {source}")]
    Parse {
        /// The file's path.
        path: String,
        /// Why its JSON is not a deployment.
        source: serde_json::Error,
    },
    /// A market name the deployment does not list.
    #[error("unknown market {name:?}; this deployment lists {known}")]
    UnknownMarket {
        /// The market asked for.
        name: String,
        /// The markets the deployment lists, comma-separated.
        known: String,
    },
}

/// Addresses of one Keyscope deployment, and its markets by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The chain the contracts are deployed on.
    pub chain_id: u64,
    /// The block the contracts were deployed in (0 when unknown): log scans start there.
    pub block: u64,
    /// The ERC-4337 EntryPoint (v0.8).
    pub entry_point: Address,
    /// The factory that deploys TradingAccounts at CREATE2 addresses.
    pub account_factory: Address,
    /// The collateral token (an ERC-20).
    pub collateral: Address,
    /// The signed price oracle the venue reads.
    pub oracle: Address,
    /// The perpetuals venue.
    pub venue: Address,
    /// Market names to the venue's market ids.
    pub markets: BTreeMap<String, u32>,
}

impl Deployment {
    /// Writes the deployment file (creating its folder), in the form `script/Deploy.s.sol` writes.
    pub fn save(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self).expect("a deployment serializes");
        std::fs::write(path, text + "\n")
    }

    /// Reads a deployment file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DeploymentError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| DeploymentError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// The id of market `name` (case-insensitive, e.g. "btc").
    pub fn market_id(&self, name: &str) -> Result<u32, DeploymentError> {
        self.markets
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, id)| *id)
            .ok_or_else(|| DeploymentError::UnknownMarket {
                name: name.to_string(),
                known: self.markets.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The name of market `id`, if listed.
    pub fn market_name(&self, id: u32) -> Option<&str> {
        self.markets
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"accountFactory":"0xE58AC03982866c3C1e98C0d2b76629A85e98F6BA","block":0,"chainId":31337,
        "collateral":"0x43A6dFDf841E9E2bBd0047A0f4811d177bF5eb71","entryPoint":"0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108",
        "markets":{"BTC":0,"ETH":1},"oracle":"0xb73C2eBfc0B76De5feFe70Cf3aCc90c39EF8FB5C",
        "venue":"0x06fc7e14FFA0FEbd1A04A55dafF24BF156750237"}"#;

    #[test]
    fn reads_what_the_deploy_script_writes() {
        let d: Deployment = serde_json::from_str(JSON).unwrap();
        assert_eq!(d.chain_id, 31337);
        assert_eq!(d.market_id("btc").unwrap(), 0);
        assert_eq!(d.market_name(1), Some("ETH"));
        let err = d.market_id("SOL").unwrap_err().to_string();
        assert!(err.contains("BTC, ETH"), "{err}");
    }
}
