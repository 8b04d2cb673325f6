//! A funded trading account with a session key on a `RevmChain`, built the way traders build it (one
//! owner-signed first op that deploys, deposits and grants), for tests and benchmarks.

use alloy::{
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::SolCall,
};
use alloy_primitives::{Address, Bytes, I256, U256};
use keyscope_core::{
    PackedUserOperation, SessionLane,
    bindings::{AccountFactory, IEntryPoint, SignedPriceOracle, TestUSD},
    ops,
    scope::{MoneyLimits, TradingScope},
    session::sign_session_op_sync,
    user_op::{OpGas, unsigned},
    user_op_hash,
};

use crate::chain::{ChainError, RevmChain, RevmDeployment};

/// A chain with Keyscope, one trading account with `margin` (6 decimals) deposited, and a session key
/// allowed to trade every market.
pub struct Fixture {
    /// The in-process chain.
    pub chain: RevmChain,
    /// Where Keyscope is deployed on it.
    pub deployment: RevmDeployment,
    /// The deployer's key (owns token, oracle and venue; signs prices).
    pub deployer: PrivateKeySigner,
    /// The funded address that sends handleOps and receives the fee refunds.
    pub bundler: Address,
    /// The trading account's owner key.
    pub owner: PrivateKeySigner,
    /// The session key allowed to trade every market.
    pub session: PrivateKeySigner,
    /// The trading account.
    pub account: Address,
}

fn op(sender: Address, nonce: U256, call_data: Bytes, init_code: Bytes) -> PackedUserOperation {
    unsigned(
        sender,
        nonce,
        call_data,
        init_code,
        OpGas {
            verification: 800_000,
            call: 400_000,
            pre_verification: 60_000,
        },
        1_000_000_000,
        2_000_000_000,
    )
}

impl Fixture {
    /// A fresh chain at `timestamp` with Keyscope deployed, the account created and `margin` deposited.
    pub fn new(chain_id: u64, timestamp: u64, margin: U256) -> Result<Self, ChainError> {
        let mut chain = RevmChain::new(chain_id, timestamp);
        let deployer = crate::backend::Roles::new(Vec::new()).deployer;
        let bundler = Address::repeat_byte(0xb0);
        let rich = U256::from(10u64).pow(U256::from(24));
        chain.fund(deployer.address(), rich);
        chain.fund(bundler, rich);
        let deployment = RevmDeployment::deploy(
            &mut chain,
            deployer.address(),
            deployer.address(),
            U256::from(50_000_000_000u64),
        )?;
        let d = deployment.clone();
        let owner = PrivateKeySigner::from_bytes(&alloy_primitives::keccak256("fixture owner"))
            .expect("key");
        let session = PrivateKeySigner::from_bytes(&alloy_primitives::keccak256("fixture session"))
            .expect("key");
        let account = chain.call(
            bundler,
            d.account_factory,
            &AccountFactory::getAddressCall {
                owner: owner.address(),
                salt: U256::ZERO,
            },
        )?;
        chain.fund(account, rich);
        chain.call(
            deployer.address(),
            d.collateral,
            &TestUSD::mintCall {
                to: account,
                amount: margin,
            },
        )?;
        let mut scope = TradingScope::new(
            d.venue,
            vec![0, 1],
            U256::from(10u64).pow(U256::from(24)),
            U256::from(10u64).pow(U256::from(28)),
        );
        // Benchmarks send thousands of orders with one key: a fee budget for all of them.
        scope.limits = MoneyLimits {
            fee_budget: U256::from(10u64).pow(U256::from(22)),
            max_op_cost: U256::ZERO,
            ..MoneyLimits::gas_only()
        };
        let scope = scope
            .build(timestamp)
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
        let calls = ops::first_op_calls(
            account,
            d.collateral,
            d.venue,
            margin,
            vec![(session.address(), scope)],
        );
        let mut first = op(
            account,
            U256::ZERO,
            ops::owner_call_data(calls),
            ops::init_code(d.account_factory, owner.address(), U256::ZERO),
        );
        let hash = user_op_hash(&first, d.entry_point, chain_id)
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
        first.signature = keyscope_core::session::sign_owner_op_sync(&owner, hash)
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
        let mut fixture = Self {
            chain,
            deployment,
            deployer,
            bundler,
            owner,
            session,
            account,
        };
        fixture.handle(first)?;
        Ok(fixture)
    }

    /// `handleOps([op])` from the bundler.
    pub fn handle(&mut self, op: PackedUserOperation) -> Result<crate::chain::Receipt, ChainError> {
        let call = IEntryPoint::handleOpsCall {
            ops: vec![op],
            beneficiary: self.bundler,
        };
        self.chain.transact(
            self.bundler,
            Some(self.deployment.entry_point),
            call.abi_encode().into(),
            U256::ZERO,
        )
    }

    /// Publishes `price` (18 decimals) for `market`, signed by the oracle key.
    pub fn publish(&mut self, market: u32, price: U256) -> Result<(), ChainError> {
        let d = self.deployment.clone();
        let update = SignedPriceOracle::PriceUpdate {
            marketId: market,
            price,
            publishTime: self.chain.timestamp(),
        };
        let digest = self.chain.call(
            self.bundler,
            d.oracle,
            &SignedPriceOracle::updateDigestCall { u: update.clone() },
        )?;
        let sig = self
            .deployer
            .sign_hash_sync(&digest)
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
        self.chain.call(
            self.bundler,
            d.oracle,
            &SignedPriceOracle::submitCall {
                u: update,
                signature: sig.as_bytes().to_vec().into(),
            },
        )?;
        Ok(())
    }

    /// A signed session op placing an order, `seq` on lane 0 (the caller tracks the sequence).
    pub fn session_order(
        &self,
        seq: u64,
        market: u32,
        size: I256,
        limit: U256,
    ) -> Result<PackedUserOperation, ChainError> {
        let order = ops::place_order(self.deployment.venue, market, size, limit, false);
        let mut op = op(
            self.account,
            SessionLane::new(self.session.address(), 0).nonce(seq),
            ops::session_call_data(self.session.address(), vec![order]),
            Bytes::new(),
        );
        let hash = user_op_hash(&op, self.deployment.entry_point, self.chain.chain_id())
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
        op.signature = sign_session_op_sync(&self.session, hash, self.chain.timestamp() + 60, 1)
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
        Ok(op)
    }
}
