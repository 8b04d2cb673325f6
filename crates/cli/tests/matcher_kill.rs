//! `keyscope relayer` with its matcher, killed with SIGKILL while orders rest and matched fills wait for
//! settlement, restarted on the same data directory: every acknowledged order rests again in its place, every
//! matched fill settles, and none settles twice.

mod common;
#[path = "../../relayer/tests/common/mod.rs"]
mod fixture;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use alloy_primitives::I256;
use common::RelayerProcess;
use fixture::orders::{Signed, order_for, place_at, position, sign};
use keyscope_core::{order::TimeInForce, units::parse_units};
use serde_json::json;

/// The relayer with its matcher settling every `settle_interval_ms`, as a process.
fn spawn(chain: &fixture::Chain, data_dir: &Path, settle_interval_ms: u64) -> RelayerProcess {
    std::fs::create_dir_all(data_dir).unwrap();
    let config = data_dir.with_extension("toml");
    std::fs::write(
        &config,
        format!("[matcher]\nsettle_interval_ms = {settle_interval_ms}\n"),
    )
    .unwrap();
    RelayerProcess::spawn(
        &chain.devnet.endpoint(),
        &chain.devnet.keys()[1].to_string(),
        &chain.devnet.deployment_file,
        data_dir,
        &["--config", config.to_str().unwrap()],
        &[(
            "KEYSCOPE_RELAYER_SETTLER_KEY",
            chain.devnet.keys()[keyscope_core::devnet::SETTLER_KEY_INDEX].to_string(),
        )],
    )
}

/// `t`'s signed BTC order, expiring in five minutes (the test outlives the usual two).
async fn signed(
    chain: &fixture::Chain,
    t: &fixture::Trader,
    is_buy: bool,
    size: &str,
    price: &str,
    tif: TimeInForce,
    nonce: u64,
) -> Signed {
    let o = order_for(chain, t, is_buy, size, price, tif, nonce, 300_000).await;
    sign(chain, &t.session, o).await
}

#[tokio::test]
async fn kill_9_with_orders_resting_and_fills_unsettled_loses_and_doubles_nothing() {
    let chain = fixture::Chain::start(42_262).await;
    let maker = chain.trader(2620, "100000").await;
    let taker = chain.trader(2621, "100000").await;
    let data_dir = fixture::data_dir("matcher-kill9");

    // Settlement once a minute: fills are matched and acknowledged, and wait.
    let mut first = spawn(&chain, &data_dir, 60_000);
    let asks = [
        signed(&chain, &maker, false, "0.1", "60100", TimeInForce::Gtt, 1).await,
        signed(&chain, &maker, false, "0.1", "60150", TimeInForce::Gtt, 2).await,
        signed(&chain, &maker, false, "0.2", "60200", TimeInForce::Gtt, 3).await,
    ];
    for a in &asks {
        let ack = place_at(&first.url(), a).await.unwrap();
        assert_eq!(ack["status"], "resting");
    }
    // Two fills: the whole first ask and half the second… the taker's 0.15 sweep.
    let lift = signed(&chain, &taker, true, "0.15", "60150", TimeInForce::Ioc, 1).await;
    let ack = place_at(&first.url(), &lift).await.unwrap();
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
    let second = spawn(&chain, &data_dir, 200);
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
    let e = place_at(&second.url(), &asks[2]).await.unwrap_err();
    assert_eq!(e["code"], -32622, "{e}");
    // And a taker after the restart meets the rest of the second ask first (time priority kept).
    let lift = signed(&chain, &taker, true, "0.05", "60200", TimeInForce::Ioc, 2).await;
    place_at(&second.url(), &lift).await.unwrap();
    let second_ask = fixture::rpc(&second.url(), "keyscope_getOrder", json!([asks[1].hash]))
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
