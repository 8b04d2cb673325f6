//! `keyscope relayer` with its matcher, killed with SIGKILL while orders rest and matched fills wait for
//! settlement, restarted on the same data directory: every acknowledged order rests again in its place, every
//! matched fill settles, and none settles twice.

mod common;
#[path = "../../relayer/tests/common/mod.rs"]
mod fixture;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy_primitives::{B256, Bytes, I256};
use keyscope_core::{
    bindings::PerpVenue,
    order::{OrderBuilder, OrderJson, TimeInForce, key_order_grant, order_hash, sign_order},
    units::parse_units,
};
use serde_json::{Value, json};

struct MatcherProcess {
    child: Child,
    ready: Value,
}

impl MatcherProcess {
    /// The relayer with its matcher settling every `settle_interval_ms`.
    fn spawn(chain: &fixture::Chain, data_dir: &Path, settle_interval_ms: u64) -> Self {
        std::fs::create_dir_all(data_dir).unwrap();
        let config = data_dir.with_extension("toml");
        std::fs::write(
            &config,
            format!("[matcher]\nsettle_interval_ms = {settle_interval_ms}\n"),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyscope"))
            .args(["relayer", "--json", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--rpc")
            .arg(chain.devnet.endpoint())
            .arg("--relayer-key")
            .arg(chain.devnet.keys()[1].to_string())
            .arg("--deployment")
            .arg(&chain.devnet.deployment_file)
            .arg("--data-dir")
            .arg(data_dir)
            .env(
                "KEYSCOPE_RELAYER_SETTLER_KEY",
                chain.devnet.keys()[keyscope_core::devnet::SETTLER_KEY_INDEX].to_string(),
            )
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data_dir.with_extension("log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let ready = common::ready(&mut child, "relayer");
        Self { child, ready }
    }

    fn url(&self) -> String {
        self.ready["rpc"].as_str().unwrap().to_string()
    }
}

impl Drop for MatcherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn signed(
    chain: &fixture::Chain,
    t: &fixture::Trader,
    is_buy: bool,
    size: &str,
    price: &str,
    tif: TimeInForce,
    nonce: u64,
) -> (Value, Bytes, B256) {
    let key = alloy::signers::Signer::address(&t.session);
    let (grant, epoch) = key_order_grant(&chain.provider, t.account, key)
        .await
        .unwrap();
    let order = OrderBuilder::new(
        t.account,
        key,
        0,
        is_buy,
        parse_units(size, 18).unwrap(),
        parse_units(price, 18).unwrap(),
    )
    .grant(grant, epoch)
    .time_in_force(tif as u8)
    .expiry_ms(now_ms() + 300_000)
    .nonce(nonce)
    .build(now_ms())
    .unwrap();
    let chain_id = chain.devnet.deployment.chain_id;
    let sig = sign_order(&t.session, chain.d.venue, chain_id, &order)
        .await
        .unwrap();
    (
        json!(OrderJson::from(&order)),
        sig,
        order_hash(chain.d.venue, chain_id, &order),
    )
}

async fn position(chain: &fixture::Chain, account: alloy_primitives::Address) -> I256 {
    PerpVenue::new(chain.d.venue, &chain.provider)
        .position(account, 0)
        .call()
        .await
        .unwrap()
        .size
}

#[tokio::test]
async fn kill_9_with_orders_resting_and_fills_unsettled_loses_and_doubles_nothing() {
    let chain = fixture::Chain::start(42_262).await;
    let maker = chain.trader(2620, "100000").await;
    let taker = chain.trader(2621, "100000").await;
    let data_dir = fixture::data_dir("matcher-kill9");

    // Settlement once a minute: fills are matched and acknowledged, and wait.
    let mut first = MatcherProcess::spawn(&chain, &data_dir, 60_000);
    let asks = [
        signed(&chain, &maker, false, "0.1", "60100", TimeInForce::Gtt, 1).await,
        signed(&chain, &maker, false, "0.1", "60150", TimeInForce::Gtt, 2).await,
        signed(&chain, &maker, false, "0.2", "60200", TimeInForce::Gtt, 3).await,
    ];
    for a in &asks {
        let ack = fixture::rpc(&first.url(), "keyscope_placeOrder", json!([a.0, a.1]))
            .await
            .unwrap();
        assert_eq!(ack["status"], "resting");
    }
    // Two fills: the whole first ask and half the second… the taker's 0.15 sweep.
    let lift = signed(&chain, &taker, true, "0.15", "60150", TimeInForce::Ioc, 1).await;
    let ack = fixture::rpc(&first.url(), "keyscope_placeOrder", json!([lift.0, lift.1]))
        .await
        .unwrap();
    assert_eq!(ack["fills"].as_array().unwrap().len(), 2, "{ack}");
    let book_before = fixture::rpc(&first.url(), "keyscope_getBook", json!([0]))
        .await
        .unwrap();
    assert_eq!(
        position(&chain, taker.account).await,
        I256::ZERO,
        "not settled yet"
    );

    // SIGKILL: no shutdown code runs.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    // Restarted, settling every 200 ms.
    let second = MatcherProcess::spawn(&chain, &data_dir, 200);
    let book_after = fixture::rpc(&second.url(), "keyscope_getBook", json!([0]))
        .await
        .unwrap();
    assert_eq!(book_before, book_after, "the book comes back as it was");
    // Both fills settle, once: the taker is long 0.15 and the maker short 0.15.
    let want = I256::try_from(parse_units("0.15", 18).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while position(&chain, taker.account).await != want {
        assert!(
            Instant::now() < deadline,
            "the matched fills settle after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(position(&chain, maker.account).await, -want);
    // The order placed before the kill is still placed: the same one again is a duplicate.
    let e = fixture::rpc(
        &second.url(),
        "keyscope_placeOrder",
        json!([asks[2].0, asks[2].1]),
    )
    .await
    .unwrap_err();
    assert_eq!(e["code"], -32622, "{e}");
    // And a taker after the restart meets the rest of the second ask first (time priority kept).
    let lift = signed(&chain, &taker, true, "0.05", "60200", TimeInForce::Ioc, 2).await;
    fixture::rpc(
        &second.url(),
        "keyscope_placeOrder",
        json!([lift.0, lift.1]),
    )
    .await
    .unwrap();
    let second_ask = fixture::rpc(&second.url(), "keyscope_getOrder", json!([asks[1].2]))
        .await
        .unwrap();
    assert!(
        second_ask.is_null() || second_ask["resting"] == "0x0",
        "the second ask filled in full: {second_ask}"
    );
    let want = I256::try_from(parse_units("0.2", 18).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while position(&chain, taker.account).await != want {
        assert!(Instant::now() < deadline, "the new fill settles");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing settles twice: give the loop time, then the positions are unchanged.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(position(&chain, taker.account).await, want);
    assert_eq!(position(&chain, maker.account).await, -want);
}
