//! Who may call what: the admin methods need the token, a browser page from an unlisted origin is turned
//! away, and a relayer refuses to start with open debug methods beyond loopback or on a public chain.

mod common;

use alloy::transports::http::reqwest;
use common::*;
use keyscope_relayer::{Relayer, config::BundlingMode};
use serde_json::{Value, json};

const TOKEN: &str = "a-long-admin-token-for-tests";

/// A JSON-RPC call with optional bearer token and Origin: the HTTP status and the JSON body.
async fn call(url: &str, method: &str, token: Option<&str>, origin: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": [] }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn admin_methods_need_the_token_and_strange_origins_are_refused() {
    let s = setup("access", 42_016, BundlingMode::Manual, |c| {
        c.admin_token = Some(TOKEN.into());
        c.allowed_origins = vec!["https://desk.example".into()];
    })
    .await;
    let url = s.relayer.url();
    // Without the token, or with a wrong one: refused with the code, nothing done.
    for token in [None, Some("a-long-admin-token-for-tesTs")] {
        for method in [
            "debug_bundler_clearState",
            "debug_bundler_dumpMempool",
            "keyscope_auditLog",
        ] {
            let (status, body) = call(&url, method, token, None).await;
            assert_eq!(status, 200);
            assert_eq!(body["error"]["code"], -32001, "{method}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("admin token"),
                "{body}"
            );
        }
    }
    // With it: served.
    let (_, body) = call(&url, "debug_bundler_dumpMempool", Some(TOKEN), None).await;
    assert_eq!(body["result"], json!([]), "{body}");
    let (_, body) = call(&url, "keyscope_auditLog", Some(TOKEN), None).await;
    assert!(body["result"].is_array(), "{body}");
    // Public methods need nothing.
    let (_, body) = call(&url, "eth_chainId", None, None).await;
    assert_eq!(body["result"], "0xa420");
    // A page from an unlisted origin gets 403 — on HTTP and on the WebSocket upgrade; a listed one is served.
    let (status, _) = call(&url, "eth_chainId", None, Some("https://evil.example")).await;
    assert_eq!(status, 403);
    let (status, body) = call(&url, "eth_chainId", None, Some("https://desk.example")).await;
    assert_eq!((status, &body["result"]), (200, &json!("0xa420")));
    let ws = reqwest::Client::new()
        .get(&url)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(ws.status().as_u16(), 403);
    s.relayer.stop().await;
}

#[tokio::test]
async fn open_debug_methods_beyond_loopback_or_on_a_public_chain_refuse_to_start() {
    let chain = Chain::start(42_017).await;
    // Debug on every interface without a token: refused, naming the fix.
    let mut c = config_for(&chain.devnet, data_dir("access-open"), BundlingMode::Manual);
    c.listen = "0.0.0.0:0".parse().unwrap();
    let e = Relayer::start(c.clone()).await.unwrap_err().to_string();
    assert!(e.contains("loopback") && e.contains("admin_token"), "{e}");
    // With a token it starts (positive control).
    c.admin_token = Some(TOKEN.into());
    let relayer = Relayer::start(c).await.expect("starts with a token");
    relayer.stop().await;
    // A public chain id with debug on: refused unless forced.
    let mut c = config_for(
        &chain.devnet,
        data_dir("access-public"),
        BundlingMode::Manual,
    );
    assert!(c.check_chain(42_017).is_ok());
    let e = c.check_chain(1).unwrap_err().to_string();
    assert!(e.contains("public network"), "{e}");
    c.allow_debug_on_public_chain = true;
    assert!(c.check_chain(1).is_ok());
}
