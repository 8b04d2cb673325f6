//! The two chains a scenario runs on, behind one trait: revm in-process (fast, thousands of accounts)
//! and anvil (the real node, over JSON-RPC). The runner only builds and signs; a backend moves the
//! clock, funds addresses, sends `handleOps` and liquidations, and answers reads.

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::SolCall,
};
use alloy_primitives::{Address, Bytes, U256};
use keyscope_core::{
    PackedUserOperation,
    bindings::{IEntryPoint, PerpVenue, SignedPriceOracle, TestUSD},
    devnet::Devnet,
};

use crate::chain::{ChainError, RevmChain, RevmDeployment, TX_GAS_LIMIT};

/// Addresses a scenario needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// The ERC-4337 EntryPoint.
    pub entry_point: Address,
    /// The factory that deploys TradingAccounts.
    pub account_factory: Address,
    /// The collateral token.
    pub collateral: Address,
    /// The signed price oracle.
    pub oracle: Address,
    /// The perpetuals venue.
    pub venue: Address,
}

/// What happened to one op sent through `handleOps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpResult {
    /// The bundle went through and the op's calls succeeded.
    pub success: bool,
    /// Gas the bundle's transaction used.
    pub gas_used: u64,
}

/// Errors from a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The in-process chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The node's JSON-RPC failed.
    #[error("{0}")]
    Rpc(String),
    /// A harness transaction used its whole gas limit: the harness's fault, never a venue refusal.
    #[error("{what} ran out of gas ({limit} gas): the harness's gas limit is too low for it")]
    OutOfGas {
        /// The transaction.
        what: String,
        /// Its gas limit.
        limit: u64,
    },
    /// A harness transaction that must succeed (a price, a mint, a transfer, venue administration)
    /// reverted.
    #[error("{what} reverted")]
    Reverted {
        /// The transaction.
        what: String,
    },
}

/// A revm failure of `what`, with an out-of-gas halt told apart.
fn halted(what: &str, e: ChainError) -> BackendError {
    match e {
        ChainError::Halted(reason) if reason.contains("OutOfGas") => BackendError::OutOfGas {
            what: what.to_string(),
            limit: TX_GAS_LIMIT,
        },
        e => e.into(),
    }
}

fn rpc<E: std::fmt::Display>(e: E) -> BackendError {
    BackendError::Rpc(e.to_string())
}

/// A chain with Keyscope deployed.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// The backend's name (`revm` or `anvil`).
    fn name(&self) -> &'static str;
    /// Where Keyscope is deployed on it.
    fn addresses(&self) -> &Addresses;
    /// The chain's id.
    fn chain_id(&self) -> u64;
    /// The chain's current time.
    async fn now(&mut self) -> Result<u64, BackendError>;
    /// Moves the chain's clock forward.
    async fn advance(&mut self, seconds: u64) -> Result<(), BackendError>;
    /// Gives `to` ETH for gas.
    async fn fund_eth(&mut self, to: Address, wei: U256) -> Result<(), BackendError>;
    /// Mints collateral to `to` (the deployer owns the token).
    async fn mint(&mut self, to: Address, amount: U256) -> Result<(), BackendError>;
    /// Publishes a price signed by the oracle key, at the chain's time.
    async fn publish(&mut self, market: u32, price: U256) -> Result<(), BackendError>;
    /// Sends `handleOps([op])` from the bundler.
    async fn handle_op(&mut self, op: PackedUserOperation) -> Result<OpResult, BackendError>;
    /// Calls `venue.liquidate(account, market)` from liquidator `who`; false if the venue refused.
    async fn liquidate(
        &mut self,
        who: usize,
        account: Address,
        market: u32,
    ) -> Result<bool, BackendError>;
    /// A read-only call.
    async fn view<C: SolCall>(&mut self, to: Address, call: &C) -> Result<C::Return, BackendError>;
    /// A transaction from the deployer (owner of the venue): venue administration.
    async fn owner_call(&mut self, to: Address, data: Vec<u8>) -> Result<(), BackendError>;
}

/// Did the op in this receipt's logs succeed? (`UserOperationEvent.success`)
fn op_succeeded<'a>(logs: impl IntoIterator<Item = &'a alloy_primitives::Log>) -> bool {
    logs.into_iter().any(|l| {
        IEntryPoint::UserOperationEvent::decode_log(l)
            .map(|e| e.data.success)
            .unwrap_or(false)
    })
}

use alloy::sol_types::SolEvent;

/// Keys of the scenario's fixed roles: the deployer (anvil's first dev key, as script/Deploy.s.sol uses,
/// so CREATE2 puts every contract at the same address on both backends; it owns token, oracle and venue
/// and signs prices), the bundler (anvil's second dev key) and the liquidator bots (derived from the
/// scenario seed and funded by the runner).
#[derive(Clone)]
pub struct Roles {
    /// Deploys the contracts, owns token, oracle and venue, and signs prices.
    pub deployer: PrivateKeySigner,
    /// Sends the bundles' handleOps transactions.
    pub bundler: PrivateKeySigner,
    /// The liquidator bots' keys.
    pub liquidators: Vec<PrivateKeySigner>,
}

const ANVIL_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ANVIL_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

impl Roles {
    /// The fixed deployer and bundler keys, with these liquidators.
    pub fn new(liquidators: Vec<PrivateKeySigner>) -> Self {
        Self {
            deployer: ANVIL_KEY_0.parse().expect("anvil key"),
            bundler: ANVIL_KEY_1.parse().expect("anvil key"),
            liquidators,
        }
    }
}

/// The oracle's key (the deployer's) as libsecp256k1 holds it: the same RFC 6979 signatures alloy's k256
/// signer makes (tested), at a fraction of the cost — the oracle signs every market's price every step of
/// every path.
#[derive(Clone)]
struct PriceKey(secp256k1::SecretKey);

impl PriceKey {
    fn of(signer: &PrivateKeySigner) -> Self {
        Self(
            secp256k1::SecretKey::from_byte_array(signer.to_bytes().0)
                .expect("a signer's key is a valid secret key"),
        )
    }

    /// `digest` signed: r, s (low) and v (27 or 28), as the oracle takes it.
    fn sign(&self, digest: alloy_primitives::B256) -> [u8; 65] {
        let (id, rs) = secp256k1::SECP256K1
            .sign_ecdsa_recoverable(secp256k1::Message::from_digest(digest.0), &self.0)
            .serialize_compact();
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&rs);
        out[64] = 27 + i32::from(id) as u8;
        out
    }
}

/// The in-process backend.
pub struct RevmBackend {
    chain: RevmChain,
    roles: Roles,
    price_key: PriceKey,
    addresses: Addresses,
    reader: Address,
}

impl RevmBackend {
    /// A fresh chain at `timestamp` with Keyscope deployed as Deploy.s.sol deploys it.
    pub fn new(
        chain_id: u64,
        timestamp: u64,
        roles: Roles,
        insurance_fund: U256,
    ) -> Result<Self, BackendError> {
        let mut chain = RevmChain::new(chain_id, timestamp);
        let rich = U256::from(10u64).pow(U256::from(24));
        chain.fund(roles.deployer.address(), rich);
        chain.fund(roles.bundler.address(), rich);
        let d = RevmDeployment::deploy(
            &mut chain,
            roles.deployer.address(),
            roles.deployer.address(),
            insurance_fund,
        )?;
        let addresses = Addresses {
            entry_point: d.entry_point,
            account_factory: d.account_factory,
            collateral: d.collateral,
            oracle: d.oracle,
            venue: d.venue,
        };
        Ok(Self {
            chain,
            price_key: PriceKey::of(&roles.deployer),
            roles,
            addresses,
            reader: Address::repeat_byte(0xee),
        })
    }
}

impl RevmBackend {
    /// An independent copy: the same chain state and clock, going its own way after.
    pub fn fork(&self) -> Self {
        Self {
            chain: self.chain.fork(),
            price_key: self.price_key.clone(),
            roles: self.roles.clone(),
            addresses: self.addresses.clone(),
            reader: self.reader,
        }
    }
}

impl Backend for RevmBackend {
    fn name(&self) -> &'static str {
        "revm"
    }

    fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    fn chain_id(&self) -> u64 {
        self.chain.chain_id()
    }

    async fn now(&mut self) -> Result<u64, BackendError> {
        Ok(self.chain.timestamp())
    }

    async fn advance(&mut self, seconds: u64) -> Result<(), BackendError> {
        self.chain.advance(seconds);
        Ok(())
    }

    async fn fund_eth(&mut self, to: Address, wei: U256) -> Result<(), BackendError> {
        self.chain
            .transact(self.roles.deployer.address(), Some(to), Bytes::new(), wei)?;
        Ok(())
    }

    async fn mint(&mut self, to: Address, amount: U256) -> Result<(), BackendError> {
        let d = self.roles.deployer.address();
        self.chain.call(
            d,
            self.addresses.collateral,
            &TestUSD::mintCall { to, amount },
        )?;
        Ok(())
    }

    async fn publish(&mut self, market: u32, price: U256) -> Result<(), BackendError> {
        let u = SignedPriceOracle::PriceUpdate {
            marketId: market,
            price,
            publishTime: self.chain.timestamp(),
        };
        let digest = self.chain.view(
            self.reader,
            self.addresses.oracle,
            &SignedPriceOracle::updateDigestCall { u: u.clone() },
        )?;
        let signature = self.price_key.sign(digest);
        let bundler = self.roles.bundler.address();
        self.chain.call(
            bundler,
            self.addresses.oracle,
            &SignedPriceOracle::submitCall {
                u,
                signature: signature.to_vec().into(),
            },
        )?;
        Ok(())
    }

    async fn handle_op(&mut self, op: PackedUserOperation) -> Result<OpResult, BackendError> {
        let bundler = self.roles.bundler.address();
        let call = IEntryPoint::handleOpsCall {
            ops: vec![op],
            beneficiary: bundler,
        };
        match self.chain.transact(
            bundler,
            Some(self.addresses.entry_point),
            call.abi_encode().into(),
            U256::ZERO,
        ) {
            Ok(r) => Ok(OpResult {
                success: op_succeeded(&r.logs),
                gas_used: r.gas_used,
            }),
            Err(ChainError::Reverted { .. }) => Ok(OpResult {
                success: false,
                gas_used: 0,
            }),
            Err(e) => Err(halted("a handleOps bundle", e)),
        }
    }

    async fn liquidate(
        &mut self,
        who: usize,
        account: Address,
        market: u32,
    ) -> Result<bool, BackendError> {
        let from = self.roles.liquidators[who].address();
        match self.chain.call(
            from,
            self.addresses.venue,
            &PerpVenue::liquidateCall {
                account,
                marketId: market,
            },
        ) {
            Ok(_) => Ok(true),
            Err(ChainError::Reverted { .. }) => Ok(false),
            Err(e) => Err(halted("a liquidation", e)),
        }
    }

    async fn view<C: SolCall>(&mut self, to: Address, call: &C) -> Result<C::Return, BackendError> {
        Ok(self.chain.view(self.reader, to, call)?)
    }

    async fn owner_call(&mut self, to: Address, data: Vec<u8>) -> Result<(), BackendError> {
        self.chain.transact(
            self.roles.deployer.address(),
            Some(to),
            data.into(),
            U256::ZERO,
        )?;
        Ok(())
    }
}

/// The anvil backend: the real node, through JSON-RPC, deployed by script/Deploy.s.sol.
pub struct AnvilBackend {
    devnet: Devnet,
    roles: Roles,
    addresses: Addresses,
    deployer: DynProvider,
    bundler: DynProvider,
    liquidators: Vec<DynProvider>,
}

impl AnvilBackend {
    /// The backend on `devnet`. Its clock is put under the harness's control as revm's is: blocks keep the
    /// time of the block before them (`anvil_setBlockTimestampInterval 0`) and only [`Backend::advance`]
    /// moves it, so a transaction mined a wall-clock second later accrues no extra funding.
    pub async fn new(devnet: Devnet, roles: Roles) -> Result<Self, BackendError> {
        let d = &devnet.deployment;
        let addresses = Addresses {
            entry_point: d.entry_point,
            account_factory: d.account_factory,
            collateral: d.collateral,
            oracle: d.oracle,
            venue: d.venue,
        };
        let connect = |k: &PrivateKeySigner| {
            ProviderBuilder::new()
                .wallet(EthereumWallet::from(k.clone()))
                .connect_http(devnet.endpoint_url())
                .erased()
        };
        let deployer = connect(&roles.deployer);
        let bundler = connect(&roles.bundler);
        let liquidators = roles.liquidators.iter().map(connect).collect();
        let _: serde_json::Value = bundler
            .raw_request("anvil_setBlockTimestampInterval".into(), (0,))
            .await
            .map_err(rpc)?;
        Ok(Self {
            devnet,
            roles,
            addresses,
            deployer,
            bundler,
            liquidators,
        })
    }

    /// Sends `tx` with the harness's fixed gas limit and waits for its receipt: an out-of-gas is an
    /// error, a revert is the receipt's status (false).
    async fn send(
        provider: &DynProvider,
        what: &str,
        tx: TransactionRequest,
    ) -> Result<alloy::rpc::types::TransactionReceipt, BackendError> {
        let receipt = provider
            .send_transaction(tx.with_gas_limit(TX_GAS_LIMIT))
            .await
            .map_err(rpc)?
            .get_receipt()
            .await
            .map_err(rpc)?;
        if !receipt.status() && receipt.gas_used >= TX_GAS_LIMIT {
            return Err(BackendError::OutOfGas {
                what: what.to_string(),
                limit: TX_GAS_LIMIT,
            });
        }
        Ok(receipt)
    }

    /// [`Self::send`] for a transaction that must succeed.
    async fn send_ok(
        provider: &DynProvider,
        what: &str,
        tx: TransactionRequest,
    ) -> Result<alloy::rpc::types::TransactionReceipt, BackendError> {
        let receipt = Self::send(provider, what, tx).await?;
        if !receipt.status() {
            return Err(BackendError::Reverted {
                what: what.to_string(),
            });
        }
        Ok(receipt)
    }
}

impl Backend for AnvilBackend {
    fn name(&self) -> &'static str {
        "anvil"
    }

    fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    fn chain_id(&self) -> u64 {
        self.devnet.deployment.chain_id
    }

    async fn now(&mut self) -> Result<u64, BackendError> {
        let b = self
            .bundler
            .get_block_by_number(alloy::rpc::types::BlockNumberOrTag::Latest)
            .await
            .map_err(rpc)?;
        Ok(b.ok_or_else(|| BackendError::Rpc("no block".into()))?
            .header
            .timestamp)
    }

    async fn advance(&mut self, seconds: u64) -> Result<(), BackendError> {
        let next = self.now().await? + seconds;
        let _: serde_json::Value = self
            .bundler
            .raw_request("evm_setNextBlockTimestamp".into(), (next,))
            .await
            .map_err(rpc)?;
        let _: serde_json::Value = self
            .bundler
            .raw_request("evm_mine".into(), ())
            .await
            .map_err(rpc)?;
        Ok(())
    }

    async fn fund_eth(&mut self, to: Address, wei: U256) -> Result<(), BackendError> {
        Self::send_ok(
            &self.deployer,
            "an ETH transfer",
            TransactionRequest::default().with_to(to).with_value(wei),
        )
        .await?;
        Ok(())
    }

    async fn mint(&mut self, to: Address, amount: U256) -> Result<(), BackendError> {
        let data = TestUSD::mintCall { to, amount }.abi_encode();
        Self::send_ok(
            &self.deployer,
            "a collateral mint",
            TransactionRequest::default()
                .with_to(self.addresses.collateral)
                .with_input(data),
        )
        .await?;
        Ok(())
    }

    async fn publish(&mut self, market: u32, price: U256) -> Result<(), BackendError> {
        let now = self.now().await?;
        let u = SignedPriceOracle::PriceUpdate {
            marketId: market,
            price,
            publishTime: now,
        };
        let digest = self
            .view(
                self.addresses.oracle,
                &SignedPriceOracle::updateDigestCall { u: u.clone() },
            )
            .await?;
        let sig = self.roles.deployer.sign_hash_sync(&digest).map_err(rpc)?;
        let data = SignedPriceOracle::submitCall {
            u,
            signature: sig.as_bytes().to_vec().into(),
        }
        .abi_encode();
        Self::send_ok(
            &self.bundler,
            "a price publish",
            TransactionRequest::default()
                .with_to(self.addresses.oracle)
                .with_input(data),
        )
        .await?;
        Ok(())
    }

    async fn handle_op(&mut self, op: PackedUserOperation) -> Result<OpResult, BackendError> {
        let data = IEntryPoint::handleOpsCall {
            ops: vec![op],
            beneficiary: self.roles.bundler.address(),
        }
        .abi_encode();
        let tx = TransactionRequest::default()
            .with_to(self.addresses.entry_point)
            .with_input(data);
        // A refused op reverts the bundle: the receipt's status says so.
        let receipt = Self::send(&self.bundler, "a handleOps bundle", tx).await?;
        if !receipt.status() {
            return Ok(OpResult {
                success: false,
                gas_used: 0,
            });
        }
        let logs: Vec<alloy_primitives::Log> = receipt
            .inner
            .logs()
            .iter()
            .map(|l| l.inner.clone())
            .collect();
        Ok(OpResult {
            success: op_succeeded(&logs),
            gas_used: receipt.gas_used,
        })
    }

    async fn liquidate(
        &mut self,
        who: usize,
        account: Address,
        market: u32,
    ) -> Result<bool, BackendError> {
        let data = PerpVenue::liquidateCall {
            account,
            marketId: market,
        }
        .abi_encode();
        let tx = TransactionRequest::default()
            .with_to(self.addresses.venue)
            .with_input(data);
        let receipt = Self::send(&self.liquidators[who], "a liquidation", tx).await?;
        Ok(receipt.status())
    }

    async fn view<C: SolCall>(&mut self, to: Address, call: &C) -> Result<C::Return, BackendError> {
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(call.abi_encode());
        let out = self.bundler.call(tx).await.map_err(rpc)?;
        C::abi_decode_returns(&out).map_err(rpc)
    }

    async fn owner_call(&mut self, to: Address, data: Vec<u8>) -> Result<(), BackendError> {
        Self::send_ok(
            &self.deployer,
            &format!("the owner's transaction to {to}"),
            TransactionRequest::default().with_to(to).with_input(data),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle's fast key signs byte for byte as the alloy signer does (RFC 6979, low s, v 27/28).
    #[test]
    fn the_price_key_signs_as_the_alloy_signer_does() {
        let signer = Roles::new(Vec::new()).deployer;
        let fast = PriceKey::of(&signer);
        for i in 0..64u32 {
            let digest = alloy_primitives::keccak256(i.to_be_bytes());
            let slow = signer.sign_hash_sync(&digest).unwrap().as_bytes();
            assert_eq!(fast.sign(digest), slow, "digest {i}");
        }
    }

    /// An out-of-gas halt is its own error, naming what ran out; other failures stay what they were.
    #[test]
    fn out_of_gas_is_told_apart() {
        let e = halted(
            "a liquidation",
            ChainError::Halted("OutOfGas(Basic)".into()),
        );
        assert!(
            matches!(&e, BackendError::OutOfGas { what, limit } if what == "a liquidation" && *limit == TX_GAS_LIMIT),
            "{e}"
        );
        assert!(e.to_string().contains("ran out of gas"));
        let e = halted(
            "a liquidation",
            ChainError::Halted("InvalidFEOpcode".into()),
        );
        assert!(
            matches!(e, BackendError::Chain(ChainError::Halted(_))),
            "{e}"
        );
    }
}
