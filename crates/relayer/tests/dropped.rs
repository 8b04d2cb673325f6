//! An op the relayer accepted and then dropped is not left `null` for good: ERC-7769's by-hash methods
//! answer an error naming why (the code a refusal at the door would have carried, the reason in `data`),
//! so a standard client polling for the receipt — viem's `waitForUserOperationReceipt` stops at the first
//! error that is not "not found" — learns at once instead of timing out.

mod common;

use std::time::Duration;

use common::*;
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};

#[tokio::test]
async fn a_dropped_op_answers_the_by_hash_methods_with_its_reason() {
    let s = setup("dropped-visible", 42_032, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(32, "20000").await;
    let hash = s
        .send(&s.order_op(&t, 0, 0, "0.01", "60500", false).await)
        .await
        .unwrap();
    // Pooled: no receipt yet, the op by hash with no block.
    let r = s
        .call("eth_getUserOperationReceipt", json!([hash]))
        .await
        .unwrap();
    assert!(r.is_null(), "{r}");
    let by_hash = s
        .call("eth_getUserOperationByHash", json!([hash]))
        .await
        .unwrap();
    assert!(by_hash["blockNumber"].is_null(), "{by_hash}");

    // The trader's engine spends the same nonce another way (an order bundled by its own EOA): the pooled
    // op can never be mined, and the relayer drops it when it sees that block.
    let other = s.order_op(&t, 0, 0, "0.02", "60500", false).await;
    assert!(s.direct.send(&other).await.unwrap().success);
    let mut status = Value::Null;
    for _ in 0..300 {
        status = s
            .call("keyscope_userOperationStatus", json!([hash]))
            .await
            .unwrap();
        if status["status"] == "dropped" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "dropped", "{status}");
    let reason = status["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("AA25"), "{status}");

    // Both by-hash methods now answer with the drop: the EntryPoint's code for AA25, and the reason.
    for method in ["eth_getUserOperationReceipt", "eth_getUserOperationByHash"] {
        let e = s.call(method, json!([hash])).await.unwrap_err();
        assert_eq!(e["code"], -32500, "{method}: {e}");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains("dropped") && message.contains("AA25"),
            "{method}: {e}"
        );
        assert_eq!(e["data"]["status"], "dropped", "{method}: {e}");
        assert_eq!(e["data"]["reason"], reason.as_str(), "{method}: {e}");
        assert_eq!(e["data"]["userOpHash"], hash, "{method}: {e}");
    }
    // A hash the relayer never saw is still plain `null`, as ERC-7769 has it.
    let unknown = json!(format!("0x{}", "ab".repeat(32)));
    for method in ["eth_getUserOperationReceipt", "eth_getUserOperationByHash"] {
        let r = s.call(method, json!([unknown])).await.unwrap();
        assert!(r.is_null(), "{method}: {r}");
    }
    s.relayer.stop().await;
}
