//! A devnet trader whose session key the sidecar holds, and the sidecar started on a temporary socket —
//! shared by the sidecar tests, the HSM test and the latency bench.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{providers::DynProvider, signers::local::PrivateKeySigner};
use alloy_primitives::{Address, I256};
use keyscope_core::{
    client::Client,
    devnet::{Devnet, repo_root},
    key::Curve,
    ops,
    units::parse_units,
    user_op::PackedUserOperation,
};
use keyscope_signer::{SignerClient, SignerConfig, keys};

pub const PASSWORD: &str = "correct horse battery staple";

/// A trader on a fresh devnet: its account (owner: a secp256k1 key) and a client to send ops.
pub struct Setup {
    pub devnet: Devnet,
    pub client: Client<DynProvider>,
    pub provider: DynProvider,
    pub account: Address,
    pub owner: PrivateKeySigner,
    pub dir: PathBuf,
}

/// A fresh temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-signer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Setup {
    /// A devnet (chain `chain_id`) with an account granting `keys` the BTC scope; files go in `dir`.
    pub async fn start(chain_id: u64, dir: PathBuf, keys: &[Address]) -> Self {
        let devnet = Devnet::start(&repo_root(), 0, chain_id).await.unwrap();
        let (provider, client) = devnet.self_bundling(6);
        let owner = PrivateKeySigner::random();
        let account = devnet
            .open_btc_account(&owner, parse_units("20000", 6).unwrap(), keys)
            .await
            .unwrap();
        Self {
            devnet,
            client,
            provider,
            account,
            owner,
            dir,
        }
    }

    /// An unsigned session op of `key` on `lane` placing an order of `size` (a decimal string) on `market`.
    pub async fn order_op(
        &self,
        key: Address,
        lane: u32,
        market: u32,
        size: &str,
    ) -> PackedUserOperation {
        let size = I256::try_from(parse_units(size, 18).unwrap()).unwrap();
        let call = ops::place_order(
            self.devnet.deployment.venue,
            market,
            size,
            parse_units("61000", 18).unwrap(),
            false,
        );
        self.key_op(key, lane, ops::session_call_data(key, vec![call]))
            .await
    }

    /// An unsigned op of `key` on `lane` with `call_data`.
    pub async fn key_op(
        &self,
        key: Address,
        lane: u32,
        call_data: alloy_primitives::Bytes,
    ) -> PackedUserOperation {
        self.client
            .unsigned_key_op(key, self.account, lane, call_data)
            .await
            .unwrap()
    }

    /// Writes a sidecar config holding `keys` (their `[[keys]]` TOML) and an audit key, re-reading the
    /// chain every second; returns its path and the audit key's address.
    pub fn write_config(&self, keys_toml: &str) -> (PathBuf, Address) {
        self.write_config_refreshing(keys_toml, 1)
    }

    /// `write_config`, re-reading the chain every `refresh_secs`.
    pub fn write_config_refreshing(
        &self,
        keys_toml: &str,
        refresh_secs: u64,
    ) -> (PathBuf, Address) {
        let audit = self.dir.join("audit-key.json");
        if !audit.exists() {
            keys::new_keystore(&audit, Curve::Secp256k1, PASSWORD).unwrap();
        }
        let auditor = keyscope_core::signer::from_keystore(&audit, PASSWORD)
            .unwrap()
            .address();
        let text = format!(
            "socket = \"signer.sock\"\nrpc_url = \"{}\"\ndeployment = \"{}\"\naccount = \"{}\"\naudit_log = \"audit.jsonl\"\naudit_keystore = \"audit-key.json\"\nrefresh_secs = {refresh_secs}\n{keys_toml}",
            self.devnet.endpoint(),
            self.devnet.deployment_file.display(),
            self.account,
        );
        let path = self.dir.join("signer.toml");
        std::fs::write(&path, text).unwrap();
        (path, auditor)
    }
}

/// A keystore key on `curve` written to `dir/name.json`, and its TOML entry.
pub fn keystore_key(dir: &Path, name: &str, curve: Curve, rate: &str) -> (Address, String) {
    let path = dir.join(format!("{name}.json"));
    let id = keys::new_keystore(&path, curve, PASSWORD).unwrap();
    let toml = format!(
        "[[keys]]\nname = \"{name}\"\ncurve = \"{curve}\"\nkeystore = \"{}\"\nrate = \"{rate}\"\n",
        path.display()
    );
    (id, toml)
}

/// A sidecar running on its own thread and single-threaded runtime, as its own process would: stopping
/// it (or dropping it) ends its runtime, its connections and its refresher.
pub struct Sidecar {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sidecar {
    /// Stops the sidecar and waits until it is gone.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("the sidecar thread ends cleanly");
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the sidecar for the config at `path` and connects to it.
pub async fn start_sidecar(path: &Path, pin: Option<&str>) -> (Sidecar, SignerClient) {
    let config = SignerConfig::load(path).unwrap();
    let socket = config.socket.clone();
    let _ = std::fs::remove_file(&socket);
    let pin = pin.map(str::to_string);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                tokio::select! {
                    ran = keyscope_signer::server::run(&config, Some(PASSWORD), pin.as_deref()) => {
                        ran.expect("the sidecar runs");
                    }
                    _ = stopped => {}
                }
            });
    });
    let sidecar = Sidecar {
        stop: Some(stop),
        thread: Some(thread),
    };
    // Start-up decrypts every keystore (scrypt: seconds each in a debug build on a busy machine), so wait
    // for the socket as long as the sidecar is still starting, and fail at once if it stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if let Ok(c) = SignerClient::connect(&socket).await {
            return (sidecar, c);
        }
        assert!(
            !sidecar.thread.as_ref().is_some_and(|t| t.is_finished()),
            "the sidecar stopped before it opened {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the sidecar did not open {} in 120 s", socket.display());
}

/// The op with the sidecar's signature, sent; true if it was included and succeeded.
pub async fn sign_and_send(
    setup: &Setup,
    signer: &SignerClient,
    mut op: PackedUserOperation,
) -> bool {
    let signed = signer
        .sign(&op, None)
        .await
        .expect("the sidecar signs an in-scope op");
    assert_eq!(signed.user_op_hash, setup.client.hash(&op).unwrap());
    op.signature = signed.signature;
    setup.client.send(&op).await.unwrap().success
}

/// The account's BTC position.
pub async fn btc_position(setup: &Setup) -> I256 {
    keyscope_core::bindings::PerpVenue::new(setup.devnet.deployment.venue, &setup.provider)
        .position(setup.account, 0)
        .call()
        .await
        .unwrap()
        .size
}
