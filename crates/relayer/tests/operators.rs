//! What an operator watches: `/health` (the process answers) and `/ready` (it can work: the node and the
//! store answer, the head is followed, the bundle key holds ETH), the op stages as Prometheus histograms, and the bundle key's
//! balance.

mod common;

use common::*;
use keyscope_relayer::config::BundlingMode;
use serde_json::Value;

async fn get(url: &str) -> (u16, String) {
    let r = alloy::transports::http::reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn health_and_readiness_probes_answer_and_ready_follows_the_node() {
    let s = setup("probes", 42_049, BundlingMode::Manual, |_| {}).await;
    let url = s.relayer.url();
    let (status, body) = get(&format!("{url}/health")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(&format!("{url}/ready")).await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    // A bundle key with no ETH cannot send a bundle: not ready, saying which key and what to do.
    let key = s.relayer.identity().relayer;
    let set_balance = |wei: &'static str| {
        let provider = s.provider.clone();
        async move {
            let _: Value = alloy::providers::Provider::raw_request(
                &provider,
                "anvil_setBalance".into(),
                (key, wei),
            )
            .await
            .unwrap();
        }
    };
    set_balance("0x0").await;
    let (status, body) = get(&format!("{url}/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("the bundle key {key} holds no ETH")),
        "{body}"
    );
    set_balance("0xde0b6b3a7640000").await;
    let (status, body) = get(&format!("{url}/ready")).await;
    assert_eq!(status, 200, "{body}");
    // The node goes away: the process is still healthy, no longer ready, and says why without a URL.
    let Setup { relayer, chain, .. } = s;
    drop(chain);
    let (status, _) = get(&format!("{url}/health")).await;
    assert_eq!(status, 200);
    let (status, body) = get(&format!("{url}/ready")).await;
    assert_eq!(status, 503, "{body}");
    let why: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(why["ready"], false);
    assert!(why["reason"].as_str().unwrap().contains("node"), "{why}");
    assert!(!body.contains("http://"), "no URL in {body}");
    relayer.stop().await;
}

#[tokio::test]
async fn op_stages_are_histograms_and_the_bundle_keys_balance_is_a_gauge() {
    let s = setup("operator-metrics", 42_050, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(50, "20000").await;
    s.first_order_mined(&t).await;
    let text = s.metrics().await;
    assert!(
        text.contains("# TYPE keyscope_op_stage_seconds histogram"),
        "{text}"
    );
    for stage in ["validate", "mine", "total"] {
        for series in [
            format!("keyscope_op_stage_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} 1"),
            format!("keyscope_op_stage_seconds_count{{stage=\"{stage}\"}} 1"),
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in {text}");
        }
        assert!(
            text.lines().any(|l| l.starts_with(&format!(
                "keyscope_op_stage_seconds_sum{{stage=\"{stage}\"}} "
            ))),
            "{stage} sum in {text}"
        );
    }
    // The relayer's key (anvil's key 1, 10,000 ETH less what it spent on the bundle).
    let balance: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("keyscope_bundle_key_balance_gwei "))
        .unwrap_or_else(|| panic!("no balance gauge in {text}"))
        .parse()
        .unwrap();
    assert!(
        balance > 9_000 * 1_000_000_000 && balance <= 10_000 * 1_000_000_000,
        "{balance} gwei"
    );
    s.relayer.stop().await;
}
