//! A devnet (anvil + script/Deploy.s.sol) with a relayer in front of it, and traders with deployed
//! accounts, collateral on the venue and a scoped session key: what every relayer test starts from.

#![allow(dead_code)]

pub mod orders;

use std::{path::PathBuf, time::Duration};

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::{Signer, local::PrivateKeySigner},
    sol_types::SolCall,
};
use alloy_primitives::{Address, Bytes, I256, U256};
use keyscope_core::{
    bindings::{IEntryPoint, ISessionManager, PerpVenue, TestUSD},
    client::{Client, Submission, rpc_user_op},
    deployment::Deployment,
    devnet::{Devnet, publish_price, repo_root},
    nonce::SessionLane,
    ops::{self, Call},
    scope::TradingScope,
    session::sign_session_op,
    units::parse_units,
    user_op::{OpGas, PackedUserOperation, unsigned, user_op_hash},
};
use keyscope_relayer::{Config, Relayer, config::BundlingMode};
use serde_json::{Value, json};

/// A devnet with fresh prices, and helpers to make traders and their ops.
pub struct Chain {
    pub devnet: Devnet,
    pub d: Deployment,
    /// Signs setup transactions (anvil key 4), never the relayer's key.
    pub provider: DynProvider,
    /// Self-bundling client for setup ops.
    pub direct: Client<DynProvider>,
}

/// A chain with an in-process relayer in front of it.
pub struct Setup {
    pub chain: Chain,
    pub relayer: Relayer,
    pub data_dir: PathBuf,
    pub config: Config,
}

impl std::ops::Deref for Setup {
    type Target = Chain;
    fn deref(&self) -> &Chain {
        &self.chain
    }
}

pub struct Trader {
    pub owner: PrivateKeySigner,
    pub account: Address,
    pub session: PrivateKeySigner,
}

/// A fresh data directory for a relayer store.
pub fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-relayer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The relayer configuration tests use: any free port, the devnet's key 1, debug methods on.
pub fn config_for(devnet: &Devnet, data_dir: PathBuf, mode: BundlingMode) -> Config {
    let mut c = Config::for_devnet(devnet, "127.0.0.1:0".parse().unwrap(), data_dir);
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    c.bundler.mode = mode;
    c
}

pub async fn setup(
    name: &str,
    chain_id: u64,
    mode: BundlingMode,
    tweak: impl FnOnce(&mut Config),
) -> Setup {
    let chain = Chain::start(chain_id).await;
    let data_dir = data_dir(name);
    let mut config = config_for(&chain.devnet, data_dir.clone(), mode);
    tweak(&mut config);
    let relayer = Relayer::start(config.clone())
        .await
        .expect("relayer starts");
    Setup {
        chain,
        relayer,
        data_dir,
        config,
    }
}

impl Setup {
    /// A client that sends ops through the relayer.
    pub fn via_relayer(&self) -> Client<DynProvider> {
        Client::new(
            self.provider.clone(),
            self.d.clone(),
            Submission::Bundler {
                url: self.relayer.url(),
            },
            self.devnet.signer(4).address(),
        )
    }

    /// A raw JSON-RPC call to the relayer: Ok(result) or Err(error object).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        rpc(&self.relayer.url(), method, params).await
    }

    pub async fn send(&self, op: &PackedUserOperation) -> Result<Value, Value> {
        self.call(
            "eth_sendUserOperation",
            json!([rpc_user_op(op), self.d.entry_point]),
        )
        .await
    }

    /// The relayer's Prometheus metrics, as text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.relayer.metrics_addr.unwrap());
        alloy::transports::http::reqwest::get(&url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits for the relayer's receipt of `hash`.
    pub async fn receipt(&self, hash: &Value) -> Value {
        receipt_at(&self.relayer.url(), hash).await
    }

    /// A positive control: `t`'s first order (nonce 0 on lane 0), bundled at once and mined successfully.
    pub async fn first_order_mined(&self, t: &Trader) {
        let first = self
            .send(&self.order_op(t, 0, 0, "0.01", "60500", false).await)
            .await
            .unwrap();
        self.call("debug_bundler_sendBundleNow", json!([]))
            .await
            .unwrap();
        assert_eq!(self.receipt(&first).await["success"], true);
    }
}

/// Waits for the receipt of `hash` from the relayer at `url`.
pub async fn receipt_at(url: &str, hash: &Value) -> Value {
    for _ in 0..300 {
        let r = rpc(url, "eth_getUserOperationReceipt", json!([hash]))
            .await
            .unwrap();
        if !r.is_null() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no receipt for {hash}");
}

impl Chain {
    pub async fn start(chain_id: u64) -> Self {
        let devnet = Devnet::start(&repo_root(), 0, chain_id)
            .await
            .expect("devnet starts");
        let d = devnet.deployment.clone();
        let funder = devnet.signer(4);
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(funder.clone()))
            .connect_http(devnet.endpoint_url())
            .erased();
        let direct = Client::new(
            provider.clone(),
            d.clone(),
            Submission::SelfBundle {
                beneficiary: funder.address(),
            },
            funder.address(),
        );
        let oracle = devnet.signer(0);
        let deployer = ProviderBuilder::new()
            .wallet(EthereumWallet::from(oracle.clone()))
            .connect_http(devnet.endpoint_url());
        for (m, p) in [(0, "60000"), (1, "3000")] {
            publish_price(&deployer, &d, &oracle, m, parse_units(p, 18).unwrap())
                .await
                .unwrap();
        }
        Self {
            devnet,
            d,
            provider,
            direct,
        }
    }

    /// A trader with a deployed account holding `collateral` tUSD on the venue and a session key for
    /// BTC (0.5 max, 40,000 notional), deployed by a self-bundled owner op.
    pub async fn trader(&self, seed: u64, collateral: &str) -> Trader {
        let owner =
            PrivateKeySigner::from_bytes(&alloy_primitives::keccak256(format!("trader-{seed}")))
                .unwrap();
        let session =
            PrivateKeySigner::from_bytes(&alloy_primitives::keccak256(format!("session-{seed}")))
                .unwrap();
        let account = self
            .direct
            .account_address(owner.address(), U256::ZERO)
            .await
            .unwrap();
        self.provider
            .send_transaction(
                TransactionRequest::default()
                    .with_to(account)
                    .with_value(parse_units("1", 18).unwrap()),
            )
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let deployer = ProviderBuilder::new()
            .wallet(EthereumWallet::from(self.devnet.signer(0)))
            .connect_http(self.devnet.endpoint_url());
        let amount = parse_units(collateral, 6).unwrap();
        TestUSD::new(self.d.collateral, &deployer)
            .mint(account, amount)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let now = self.direct.chain_time().await.unwrap();
        let scope = self.trader_scope().build(now).unwrap();
        let calls = ops::first_op_calls(
            account,
            self.d.collateral,
            self.d.venue,
            amount / U256::from(2),
            vec![(session.address(), scope)],
        );
        let op = self
            .direct
            .owner_op(&owner, U256::ZERO, calls)
            .await
            .unwrap();
        assert!(self.direct.send(&op).await.unwrap().success);
        Trader {
            owner,
            account,
            session,
        }
    }

    /// The scope test traders' session keys get: BTC, 0.5 max and 40,000 notional an order, the cautious
    /// money limits with room for the load bench's hundreds of orders per key and for the fee-bump tests'
    /// high prices.
    pub fn trader_scope(&self) -> TradingScope {
        let mut scope = TradingScope::new(
            self.d.venue,
            vec![0],
            parse_units("0.5", 18).unwrap(),
            parse_units("40000", 18).unwrap(),
        );
        scope.limits.fee_budget = parse_units("5", 18).unwrap();
        scope.limits.max_op_cost = parse_units("1", 18).unwrap();
        scope
    }

    /// Grants `t`'s session key its scope again, now listing `paymasters` as ones that may sponsor it.
    pub async fn allow_paymasters(&self, t: &Trader, paymasters: &[Address]) {
        let mut scope = self.trader_scope();
        scope.limits.paymasters = paymasters.to_vec();
        let scope = scope
            .build(self.direct.chain_time().await.unwrap())
            .unwrap();
        let grant = ops::grant_session(t.account, t.session.address(), scope);
        let op = self
            .direct
            .owner_op(&t.owner, U256::ZERO, vec![grant])
            .await
            .unwrap();
        assert!(self.direct.send(&op).await.unwrap().success);
    }

    /// A session order op on `lane` at sequence `seq` (several can wait in the pool per lane).
    pub async fn order_op(
        &self,
        t: &Trader,
        lane: u32,
        seq: u64,
        size: &str,
        limit: &str,
        reduce_only: bool,
    ) -> PackedUserOperation {
        let calls = execute(self.d.venue, order_call(size, limit, reduce_only));
        self.session_op(t, lane, seq, calls, 60).await
    }

    pub async fn session_op(
        &self,
        t: &Trader,
        lane: u32,
        seq: u64,
        calls: Vec<Call>,
        ttl: u64,
    ) -> PackedUserOperation {
        let nonce = SessionLane::new(t.session.address(), lane).nonce(seq);
        let fees = self.provider.estimate_eip1559_fees().await.unwrap();
        let mut op = unsigned(
            t.account,
            nonce,
            ops::session_call_data(t.session.address(), calls),
            Bytes::new(),
            OpGas::default_for(false),
            fees.max_priority_fee_per_gas,
            fees.max_fee_per_gas,
        );
        let grant = self.grant_of(t).await;
        let until = self.direct.chain_time().await.unwrap() + ttl;
        op.signature = sign_session_op(&t.session, self.hash(&op), until, grant)
            .await
            .unwrap();
        op
    }

    /// The grant id of `t`'s session key (part of what a session signature covers).
    pub async fn grant_of(&self, t: &Trader) -> u32 {
        ISessionManager::new(t.account, &self.provider)
            .getSession(t.session.address())
            .call()
            .await
            .unwrap()
            .grantId
    }

    /// Re-signs a session op after its fields were changed (fees, paymaster).
    pub async fn re_sign_session_op(
        &self,
        t: &Trader,
        mut op: PackedUserOperation,
    ) -> PackedUserOperation {
        let grant = self.grant_of(t).await;
        let until = self.direct.chain_time().await.unwrap() + 60;
        op.signature = sign_session_op(&t.session, self.hash(&op), until, grant)
            .await
            .unwrap();
        op
    }

    /// An owner op at the owner lane's sequence `seq`.
    pub async fn owner_op(&self, t: &Trader, seq: u64, calls: Vec<Call>) -> PackedUserOperation {
        let fees = self.provider.estimate_eip1559_fees().await.unwrap();
        let mut op = unsigned(
            t.account,
            U256::from(seq),
            ops::owner_call_data(calls),
            Bytes::new(),
            OpGas::default_for(false),
            fees.max_priority_fee_per_gas,
            fees.max_fee_per_gas,
        );
        op.signature = t
            .owner
            .sign_hash(&self.hash(&op))
            .await
            .unwrap()
            .as_bytes()
            .to_vec()
            .into();
        op
    }

    pub fn hash(&self, op: &PackedUserOperation) -> alloy_primitives::B256 {
        user_op_hash(op, self.d.entry_point, self.d.chain_id).unwrap()
    }

    pub async fn nonce(&self, account: Address, key: alloy_primitives::aliases::U192) -> U256 {
        IEntryPoint::new(self.d.entry_point, &self.provider)
            .getNonce(account, key)
            .call()
            .await
            .unwrap()
    }
}

/// A raw JSON-RPC call.
pub async fn rpc(url: &str, method: &str, params: Value) -> Result<Value, Value> {
    keyscope_core::devnet::json_rpc(url, method, params).await
}

/// One call to `target` with `data` (no value), as the only call of an op.
pub fn execute(target: Address, data: Vec<u8>) -> Vec<Call> {
    vec![Call {
        target,
        value: U256::ZERO,
        data: data.into(),
    }]
}

pub fn order_call(size: &str, limit: &str, reduce_only: bool) -> Vec<u8> {
    let (neg, abs) = size.strip_prefix('-').map_or((false, size), |s| (true, s));
    let mut size = I256::from_raw(parse_units(abs, 18).unwrap());
    if neg {
        size = -size;
    }
    PerpVenue::placeOrderCall {
        marketId: 0,
        sizeDelta: size,
        limitPrice: parse_units(limit, 18).unwrap(),
        reduceOnly: reduce_only,
    }
    .abi_encode()
}

impl Setup {
    /// Session orders for `t`, one per lane `0..lanes` at sequence 0, signed ahead of time (signing is the
    /// client's cost, measured by keyscope-core's own bench) with `gas`, as `eth_sendUserOperation` bodies.
    #[allow(dead_code)] // the benches use it; each test binary compiles this module on its own
    pub async fn presigned_orders(&self, t: &Trader, lanes: usize, gas: OpGas) -> Vec<Value> {
        let fees = self.provider.estimate_eip1559_fees().await.unwrap();
        // Within the scope's 60 s op lifetime; the relayer wants 10 s left when an op arrives.
        let until = self.direct.chain_time().await.unwrap() + 58;
        let grant = self.grant_of(t).await;
        let call = ops::session_call_data(
            t.session.address(),
            execute(self.d.venue, order_call("0.001", "60500", false)),
        );
        (0..lanes)
            .map(|lane| {
                let nonce = SessionLane::new(t.session.address(), lane as u32).nonce(0);
                let mut op = unsigned(
                    t.account,
                    nonce,
                    call.clone(),
                    Bytes::new(),
                    gas,
                    fees.max_priority_fee_per_gas,
                    fees.max_fee_per_gas,
                );
                let hash = user_op_hash(&op, self.d.entry_point, self.d.chain_id).unwrap();
                op.signature =
                    keyscope_core::session::sign_session_op_sync(&t.session, hash, until, grant)
                        .unwrap();
                json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendUserOperation", "params": [rpc_user_op(&op), self.d.entry_point] })
            })
            .collect()
    }
}

/// The `q` quantile of `v` (sorted in place).
#[allow(dead_code)] // the benches use it
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// A bench's two sizes: from the environment (`a`, `b` with their defaults) under `cargo bench`, else
/// `smoke` (a small run when the bench runs as a test).
#[allow(dead_code)] // the benches use it
pub fn bench_sizes(a: (&str, usize), b: (&str, usize), smoke: (usize, usize)) -> (usize, usize) {
    if !std::env::args().any(|arg| arg == "--bench") {
        return smoke;
    }
    let env = |(k, d): (&str, usize)| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (env(a), env(b))
}

/// Sends `bodies` one at a time from `http`; each answer with its latency in ms.
#[allow(dead_code)] // the benches use it
pub async fn send_each(
    http: &alloy::transports::http::reqwest::Client,
    url: &str,
    bodies: Vec<Value>,
) -> Vec<(f64, Value)> {
    let mut out = Vec::new();
    for body in bodies {
        let t0 = std::time::Instant::now();
        let resp = post_json(http, url, &body).await;
        out.push((t0.elapsed().as_secs_f64() * 1e3, resp));
    }
    out
}

/// POSTs `body` to `url` and reads the answer as JSON (`null` if it is not JSON).
pub async fn post_json(
    http: &alloy::transports::http::reqwest::Client,
    url: &str,
    body: &Value,
) -> Value {
    let text = http
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
