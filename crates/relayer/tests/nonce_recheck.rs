//! An op the pending state refuses for its nonce (AA25) on a new head is dropped only if the chain's nonce
//! says so: if the chain's nonce for its key is its own, or an earlier one that ops the relayer holds fill,
//! it stays pooled. Here a lane's second op comes before its first in acceptance order (as records merged
//! after a store outage or a shard hand-over can have them): replayed in that order the second op finds
//! the nonce too high, yet both are mined.

mod common;

use common::*;
use keyscope_core::nonce::SessionLane;
use keyscope_relayer::{
    Relayer,
    config::BundlingMode,
    store::{OpStatus, Store},
};
use serde_json::json;

#[tokio::test]
async fn an_op_replayed_before_the_earlier_op_of_its_lane_is_not_dropped() {
    let s = setup("aa25-recheck", 42_072, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(72, "20000").await;
    let first = s
        .send(&s.order_op(&t, 0, 0, "0.01", "60500", false).await)
        .await
        .unwrap();
    let second = s
        .send(&s.order_op(&t, 0, 1, "0.01", "60500", false).await)
        .await
        .unwrap();
    let Setup {
        chain,
        relayer,
        config,
        ..
    } = s;
    relayer.stop().await;

    // The second op is recorded as accepted before the first.
    let store = Store::open(&config.data_dir.join("relayer.redb")).unwrap();
    let mut records = store.unfinished().await.unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    records.sort_by_key(|r| r.order);
    assert_eq!(json!(records[0].hash), first);
    let (a, b) = (records[0].order, records[1].order);
    records[0].order = b;
    records[1].order = a;
    store.write(records, Vec::new()).await.unwrap();
    drop(store);

    let relayer = Relayer::start(config.clone())
        .await
        .expect("relayer starts");
    let url = relayer.url();
    for hash in [&first, &second] {
        let status = rpc(&url, "keyscope_userOperationStatus", json!([hash]))
            .await
            .unwrap();
        assert_eq!(status["status"], json!(OpStatus::Pending), "{status}");
    }
    rpc(&url, "debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    for hash in [&first, &second] {
        assert_eq!(receipt_at(&url, hash).await["success"], true, "{hash}");
    }
    let lane = SessionLane::new(t.session.address(), 0);
    assert_eq!(
        chain.nonce(t.account, lane.nonce_key()).await,
        lane.nonce(2)
    );
    relayer.stop().await;
}
