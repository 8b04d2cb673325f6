//! A client for TradingAccounts: builds, signs, simulates and submits UserOps.
//!
//! Submission goes either to an ERC-4337 bundler (`eth_sendUserOperation`, ours or any other) or, when
//! no bundler is given, straight to `EntryPoint.handleOps` from the provider's own EOA (self-bundling,
//! for devnets and tests). Either way an op is simulated against the chain first, so a scope violation
//! is refused with a typed reason before anything is sent or paid for.

use std::time::Duration;

use alloy::{
    network::TransactionBuilder,
    providers::Provider,
    rpc::types::{BlockNumberOrTag, TransactionRequest},
    sol_types::{SolCall, SolValue},
};
use alloy_primitives::{Address, B256, Bytes, U256};

use crate::{
    bindings::{AccountFactory, IEntryPoint, ISessionManager, ITradingAccount, TradingAccount},
    deployment::Deployment,
    grant::{GrantContext, grant_digest},
    key::KeySigner,
    nonce::SessionLane,
    ops::{Call, init_code, owner_call_data, session_call_data},
    refusal::Refusal,
    rpc_op::RpcUserOperation,
    session::{SessionSignError, sign_enable_op, sign_session_op},
    user_op::{OpGas, PackedUserOperation, UserOpError, unsigned, user_op_hash},
};

/// Where ops go.
#[derive(Debug, Clone)]
pub enum Submission {
    /// `handleOps` from the provider's wallet; fees refunded to `beneficiary`.
    SelfBundle {
        /// The address the EntryPoint pays the ops' gas refund to.
        beneficiary: Address,
    },
    /// An ERC-4337 bundler's JSON-RPC endpoint.
    Bundler {
        /// The bundler's JSON-RPC URL.
        url: String,
    },
}

/// What happened to a submitted op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpOutcome {
    /// The op's ERC-4337 hash (what `eth_getUserOperationReceipt` is asked about).
    pub user_op_hash: B256,
    /// The hash of the transaction that included the op.
    pub tx_hash: B256,
    /// False when the op was included but its calls reverted (the gas is paid all the same).
    pub success: bool,
    /// The typed reason of a reverted execution.
    pub revert_reason: Option<Refusal>,
    /// What the op cost the account in wei (gas used times the effective gas price).
    pub actual_gas_cost: U256,
}

/// Errors from the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The chain refuses the op (simulated before sending): the typed reason says why.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The chain's node failed or answered something unreadable.
    #[error("rpc error: {0}")]
    Rpc(String),
    /// The bundler refused the op or failed.
    #[error("bundler error: {0}")]
    Bundler(String),
    /// The session signature could not be built.
    #[error(transparent)]
    Sign(#[from] SessionSignError),
    /// The op could not be assembled or hashed.
    #[error(transparent)]
    UserOp(#[from] UserOpError),
    /// The op was not included in time.
    #[error("the op was not included within {0:?}")]
    Timeout(Duration),
}

fn rpc<E: std::fmt::Display>(e: E) -> ClientError {
    ClientError::Rpc(e.to_string())
}

/// How long a refusal the bundler marks retryable (`data.retry = true`: a relayer cluster's shard changing
/// hands) is ridden out: attempts after 250 ms, doubling to at most 2 s each, for up to this long in all
/// — long enough for a failover (a lease, 5 s by default, plus a renewal round).
pub const RETRY_FOR: Duration = Duration::from_secs(20);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether a bundler's error answer asks the client to send the same request again (`data.retry`).
pub fn is_retryable<E>(e: &alloy::transports::RpcError<E>) -> bool {
    e.as_error_resp()
        .and_then(|p| p.try_data_as::<serde_json::Value>())
        .and_then(|d| d.ok())
        .is_some_and(|d| d["retry"] == serde_json::Value::Bool(true))
}

/// A bundler's refusal as a sentence: its message and code, and the hint its `data` carries (Keyscope's
/// relayer sends `{reason, error, detail, hint}`), not the transport's wrapping and raw JSON.
fn bundler_refusal<E: std::fmt::Display>(e: &alloy::transports::RpcError<E>) -> String {
    let Some(p) = e.as_error_resp() else {
        return e.to_string();
    };
    let hint = p
        .try_data_as::<serde_json::Value>()
        .and_then(|d| d.ok())
        .and_then(|d| d["hint"].as_str().map(str::to_string))
        .filter(|h| !p.message.contains(h.as_str()));
    match hint {
        Some(h) => format!("{} (bundler code {}) — {h}", p.message, p.code),
        None => format!("{} (bundler code {})", p.message, p.code),
    }
}

/// The wait before the next attempt after `attempt` retryable refusals (0-based): 250 ms, doubling, at most 2 s.
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF)
}

/// Builds, signs, simulates and submits ops for TradingAccounts of one deployment.
#[derive(Debug, Clone)]
pub struct Client<P> {
    provider: P,
    deployment: Deployment,
    submission: Submission,
    /// The EOA that pays for self-bundled transactions and simulates.
    from: Address,
}

impl<P: Provider + Clone> Client<P> {
    /// A client on `provider` (which signs self-bundled transactions as `from`).
    pub fn new(provider: P, deployment: Deployment, submission: Submission, from: Address) -> Self {
        Self {
            provider,
            deployment,
            submission,
            from,
        }
    }

    /// The deployment this client talks to.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The provider this client reads and sends through.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// The counterfactual account of (`owner`, `salt`).
    pub async fn account_address(
        &self,
        owner: Address,
        salt: U256,
    ) -> Result<Address, ClientError> {
        AccountFactory::new(self.deployment.account_factory, &self.provider)
            .getAddress(owner, salt)
            .call()
            .await
            .map_err(rpc)
    }

    /// Whether `account` has code on-chain (is deployed).
    pub async fn is_deployed(&self, account: Address) -> Result<bool, ClientError> {
        Ok(!self
            .provider
            .get_code_at(account)
            .await
            .map_err(rpc)?
            .is_empty())
    }

    /// The chain's latest block time (ops expire against it, not the local clock).
    pub async fn chain_time(&self) -> Result<u64, ClientError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(rpc)?;
        Ok(block
            .ok_or_else(|| ClientError::Rpc("no latest block".into()))?
            .header
            .timestamp)
    }

    async fn unsigned(
        &self,
        sender: Address,
        nonce: U256,
        call_data: Bytes,
        init_code: Bytes,
    ) -> Result<PackedUserOperation, ClientError> {
        let fees = self.provider.estimate_eip1559_fees().await.map_err(rpc)?;
        let gas = OpGas::default_for(!init_code.is_empty());
        Ok(unsigned(
            sender,
            nonce,
            call_data,
            init_code,
            gas,
            fees.max_priority_fee_per_gas,
            fees.max_fee_per_gas,
        ))
    }

    /// The userOpHash of `op` on this deployment's chain.
    pub fn hash(&self, op: &PackedUserOperation) -> Result<B256, ClientError> {
        Ok(user_op_hash(
            op,
            self.deployment.entry_point,
            self.deployment.chain_id,
        )?)
    }

    /// An owner-signed op for account (`owner`, `salt`) making `calls`; deploys the account first if it is
    /// not there.
    pub async fn owner_op<S: KeySigner + ?Sized>(
        &self,
        owner: &S,
        salt: U256,
        calls: Vec<Call>,
    ) -> Result<PackedUserOperation, ClientError> {
        let account = self.account_address(owner.id(), salt).await?;
        let nonce = self.owner_nonce(account).await?;
        self.owner_op_at(owner, salt, calls, nonce).await
    }

    /// The account's next nonce on the owner's lane (key 0), as the chain has it now.
    pub async fn owner_nonce(&self, account: Address) -> Result<U256, ClientError> {
        IEntryPoint::new(self.deployment.entry_point, &self.provider)
            .getNonce(account, Default::default())
            .call()
            .await
            .map_err(rpc)
    }

    /// [`Client::owner_op`] at a nonce the caller read earlier: a command that checks the chain before it
    /// acts pins the nonce first, so an op of the same account mined between its check and its op makes
    /// this op stale (refused, never mined) instead of a second one.
    pub async fn owner_op_at<S: KeySigner + ?Sized>(
        &self,
        owner: &S,
        salt: U256,
        calls: Vec<Call>,
        nonce: U256,
    ) -> Result<PackedUserOperation, ClientError> {
        let account = self.account_address(owner.id(), salt).await?;
        let init = if self.is_deployed(account).await? {
            Bytes::new()
        } else {
            init_code(self.deployment.account_factory, owner.id(), salt)
        };
        let mut op = self
            .unsigned(account, nonce, owner_call_data(calls), init)
            .await?;
        op.signature = crate::session::sign_owner_op(owner, self.hash(&op)?).await?;
        Ok(op)
    }

    /// A session op by `key` on `account`'s lane `lane` making `calls`, expiring `ttl` seconds from the
    /// chain's time.
    pub async fn session_op<S: KeySigner + ?Sized>(
        &self,
        key: &S,
        account: Address,
        lane: u32,
        calls: Vec<Call>,
        ttl: u64,
    ) -> Result<PackedUserOperation, ClientError> {
        let op = self
            .unsigned_key_op(key.id(), account, lane, session_call_data(key.id(), calls))
            .await?;
        self.sign_key_op(key, account, op, ttl).await
    }

    /// An unsigned op of session key `key` on `account`'s lane `lane` with `call_data` (`executeSession`,
    /// or the key's own `heartbeat` / `rotateToSuccessor`): for signers elsewhere, like `keyscope signer`.
    pub async fn unsigned_key_op(
        &self,
        key: Address,
        account: Address,
        lane: u32,
        call_data: Bytes,
    ) -> Result<PackedUserOperation, ClientError> {
        let lane = SessionLane::new(key, lane);
        let nonce = IEntryPoint::new(self.deployment.entry_point, &self.provider)
            .getNonce(account, lane.nonce_key())
            .call()
            .await
            .map_err(rpc)?;
        self.unsigned(account, nonce, call_data, Bytes::new()).await
    }

    /// Signs `op` (an op of `key` on `account`) under the key's current grant, expiring `ttl` seconds from
    /// the chain's time.
    pub async fn sign_key_op<S: KeySigner + ?Sized>(
        &self,
        key: &S,
        account: Address,
        mut op: PackedUserOperation,
        ttl: u64,
    ) -> Result<PackedUserOperation, ClientError> {
        let grant_id = ISessionManager::new(account, &self.provider)
            .getSession(key.id())
            .call()
            .await
            .map_err(rpc)?
            .grantId;
        let until = self.chain_time().await? + ttl;
        op.signature = sign_session_op(key, self.hash(&op)?, until, grant_id).await?;
        Ok(op)
    }

    /// A session key's first op with the owner's grant inside it (enable mode): the owner signs the
    /// EIP-712 `SessionGrant` for `scope` (bound to this account, chain, EntryPoint, epoch and the key's
    /// grant nonce), and the key's signature covers that grant, so no separate grant transaction is needed.
    pub async fn enable_op<O: KeySigner + ?Sized, K: KeySigner + ?Sized>(
        &self,
        owner: &O,
        key: &K,
        account: Address,
        scope: &ITradingAccount::SessionScope,
        calls: Vec<Call>,
        ttl: u64,
    ) -> Result<PackedUserOperation, ClientError> {
        let acct = TradingAccount::new(account, &self.provider);
        let ctx = GrantContext {
            chain_id: self.deployment.chain_id,
            account,
            entry_point: self.deployment.entry_point,
            epoch: acct.epoch().call().await.map_err(rpc)?,
            key_nonce: acct.keyNonce(key.id()).call().await.map_err(rpc)?,
        };
        let digest = grant_digest(&ctx, key.id(), scope);
        let owner_sig = crate::session::sign_owner_op(owner, digest).await?;
        let payload = (scope.clone(), owner_sig).abi_encode_params();
        let lane = SessionLane::new(key.id(), 0);
        let nonce = IEntryPoint::new(self.deployment.entry_point, &self.provider)
            .getNonce(account, lane.nonce_key())
            .call()
            .await
            .map_err(rpc)?;
        let mut op = self
            .unsigned(
                account,
                nonce,
                session_call_data(key.id(), calls),
                Bytes::new(),
            )
            .await?;
        let until = self.chain_time().await? + ttl;
        op.signature = sign_enable_op(key, self.hash(&op)?, until, digest, &payload).await?;
        Ok(op)
    }

    fn handle_ops_call(&self, op: &PackedUserOperation) -> TransactionRequest {
        let data = IEntryPoint::handleOpsCall {
            ops: vec![op.clone()],
            beneficiary: self.beneficiary(),
        }
        .abi_encode();
        TransactionRequest::default()
            .with_from(self.from)
            .with_to(self.deployment.entry_point)
            .with_input(data)
    }

    fn beneficiary(&self) -> Address {
        match &self.submission {
            Submission::SelfBundle { beneficiary } => *beneficiary,
            Submission::Bundler { .. } => self.from,
        }
    }

    /// Runs `handleOps([op])` as a call against the latest state — and an owner op's own call too, which
    /// `handleOps` would not fail on: Ok if the chain would accept the op and its call would not revert.
    pub async fn simulate(&self, op: &PackedUserOperation) -> Result<(), ClientError> {
        let refused = |e: alloy::transports::TransportError| match e
            .as_error_resp()
            .and_then(|p| p.as_revert_data())
        {
            Some(data) => ClientError::Refused(Refusal::decode(&data)),
            None => rpc(e),
        };
        self.provider
            .call(self.handle_ops_call(op))
            .await
            .map_err(refused)?;
        // `handleOps` succeeds when an op's call reverts (the EntryPoint logs the reason and charges the
        // gas), so the call alone is run too: as the EntryPoint makes it, from the EntryPoint. Owner ops
        // of a deployed account only: a session op's call reads what its validation wrote.
        let owner_signed = op.signature.len() == 65
            || op.signature.first() == Some(&crate::session::OWNER_P256_PREFIX);
        if owner_signed && op.initCode.is_empty() {
            let call = TransactionRequest::default()
                .from(self.deployment.entry_point)
                .to(op.sender)
                .input(op.callData.clone().into());
            self.provider.call(call).await.map_err(refused)?;
        }
        Ok(())
    }

    /// Simulates `op`, then submits it and waits until it is included.
    pub async fn send(&self, op: &PackedUserOperation) -> Result<OpOutcome, ClientError> {
        self.simulate(op).await?;
        let hash = self.hash(op)?;
        let tx_hash = match &self.submission {
            Submission::SelfBundle { .. } => {
                let (v, c) = crate::rpc_op::unpack(op.accountGasLimits);
                // handleOps needs the ops' full limits available, not what they end up using.
                let limit = v + c + op.preVerificationGas.to::<u128>() + 200_000;
                let tx = self.handle_ops_call(op).with_gas_limit(limit as u64);
                let pending = self.provider.send_transaction(tx).await.map_err(rpc)?;
                let receipt = pending.get_receipt().await.map_err(rpc)?;
                receipt.transaction_hash
            }
            Submission::Bundler { url } => {
                let bundler = alloy::providers::ProviderBuilder::new()
                    .connect_http(url.parse().map_err(rpc)?);
                // A refusal the bundler marks retryable is sent again with back-off, for at most
                // RETRY_FOR; any other refusal, and the last retryable one, is returned.
                let retry_until = std::time::Instant::now() + RETRY_FOR;
                let mut attempt = 0;
                let sent: B256 = loop {
                    match bundler
                        .raw_request(
                            "eth_sendUserOperation".into(),
                            (rpc_user_op(op), self.deployment.entry_point),
                        )
                        .await
                    {
                        Ok(sent) => break sent,
                        Err(e)
                            if is_retryable(&e)
                                && std::time::Instant::now() + backoff(attempt) < retry_until =>
                        {
                            tokio::time::sleep(backoff(attempt)).await;
                            attempt += 1;
                        }
                        Err(e) => return Err(ClientError::Bundler(bundler_refusal(&e))),
                    }
                };
                if sent != hash {
                    return Err(ClientError::Bundler(format!(
                        "bundler returned hash {sent}, expected {hash}"
                    )));
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                loop {
                    let receipt: Option<serde_json::Value> = bundler
                        .raw_request("eth_getUserOperationReceipt".into(), (hash,))
                        .await
                        .map_err(|e| ClientError::Bundler(e.to_string()))?;
                    if let Some(r) = receipt {
                        let tx = r["receipt"]["transactionHash"].as_str().unwrap_or_default();
                        break tx.parse().map_err(rpc)?;
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(ClientError::Timeout(Duration::from_secs(120)));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        self.outcome(hash, tx_hash).await
    }

    async fn outcome(&self, user_op_hash: B256, tx_hash: B256) -> Result<OpOutcome, ClientError> {
        let receipt = self
            .provider
            .get_transaction_receipt(tx_hash)
            .await
            .map_err(rpc)?
            .ok_or_else(|| ClientError::Rpc(format!("no receipt for {tx_hash}")))?;
        let mut outcome = OpOutcome {
            user_op_hash,
            tx_hash,
            success: false,
            revert_reason: None,
            actual_gas_cost: U256::ZERO,
        };
        let mut seen = false;
        for log in receipt.inner.logs() {
            if let Ok(ev) = log.log_decode::<IEntryPoint::UserOperationEvent>() {
                if ev.inner.data.userOpHash == user_op_hash {
                    outcome.success = ev.inner.data.success;
                    outcome.actual_gas_cost = ev.inner.data.actualGasCost;
                    seen = true;
                }
            }
            if let Ok(ev) = log.log_decode::<IEntryPoint::UserOperationRevertReason>() {
                if ev.inner.data.userOpHash == user_op_hash {
                    outcome.revert_reason = Some(Refusal::decode(&ev.inner.data.revertReason));
                }
            }
        }
        if !seen {
            return Err(ClientError::Rpc(format!(
                "transaction {tx_hash} carries no UserOperationEvent for {user_op_hash}"
            )));
        }
        Ok(outcome)
    }
}

/// The v0.7/v0.8 JSON-RPC form of an op (unpacked fields), as bundlers take it.
pub fn rpc_user_op(op: &PackedUserOperation) -> serde_json::Value {
    RpcUserOperation::from_packed(op).to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::transports::RpcError;

    /// A bundler's error answer as it comes off the wire.
    fn answer(data: Option<&str>) -> RpcError<()> {
        let data = data.map_or(String::new(), |d| format!(r#", "data": {d}"#));
        RpcError::ErrorResp(
            serde_json::from_str(&format!(
                r#"{{"code": -32603, "message": "this sender's shard (3) is changing hands"{data}}}"#
            ))
            .unwrap(),
        )
    }

    #[test]
    fn a_bundler_refusal_reads_as_its_sentence_and_hint() {
        let read = |data: Option<&str>| {
            let RpcError::ErrorResp(payload) = answer(data) else {
                unreachable!()
            };
            bundler_refusal(&alloy::transports::TransportError::ErrorResp(payload))
        };
        assert_eq!(
            read(Some(
                r#"{"reason":"insufficientMargin","hint":"withdraw less"}"#
            )),
            "this sender's shard (3) is changing hands (bundler code -32603) — withdraw less"
        );
        assert_eq!(
            read(None),
            "this sender's shard (3) is changing hands (bundler code -32603)"
        );
        assert!(!read(Some(r#"{"hint":"x"}"#)).contains("data"));
    }

    #[test]
    fn only_an_answer_marked_retry_is_sent_again() {
        assert!(is_retryable(&answer(Some(r#"{"shard":3,"retry":true}"#))));
        assert!(!is_retryable(&answer(Some(r#"{"shard":3,"retry":false}"#))));
        assert!(!is_retryable(&answer(Some(
            r#"{"reason":"scopeViolation"}"#
        ))));
        assert!(!is_retryable(&answer(Some(r#""retry""#))));
        assert!(!is_retryable(&answer(None)));
        assert!(!is_retryable::<()>(&RpcError::NullResp));
    }

    #[test]
    fn back_off_doubles_to_its_cap_and_stays_within_the_retry_budget() {
        let waits: Vec<_> = (0..6).map(backoff).collect();
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 2000, 2000].map(Duration::from_millis)
        );
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        assert!(waits.iter().take(4).sum::<Duration>() < RETRY_FOR);
    }
}
