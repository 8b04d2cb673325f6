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
    // With a token it starts (positive control; plain HTTP beyond loopback is allowed explicitly, as behind a
    // proxy that terminates TLS).
    c.allow_plaintext = true;
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
    // Code at the configured EntryPoint that is not EntryPoint v0.8's (the venue's): refused, naming it.
    let mut c = config_for(
        &chain.devnet,
        data_dir("access-wrong-ep"),
        BundlingMode::Manual,
    );
    c.entry_point = chain.devnet.deployment.venue;
    let e = Relayer::start(c).await.unwrap_err().to_string();
    assert!(e.contains("not EntryPoint v0.8"), "{e}");
    // The real one at the same chain starts (positive control, above) — and no code at all is told apart.
    let mut c = config_for(
        &chain.devnet,
        data_dir("access-no-ep"),
        BundlingMode::Manual,
    );
    c.entry_point = alloy_primitives::Address::repeat_byte(0x77);
    let e = Relayer::start(c).await.unwrap_err().to_string();
    assert!(e.contains("no EntryPoint"), "{e}");
}

/// Opens a WebSocket to `addr` from `from` (a loopback address) and returns the handshake's status line
/// and the open stream.
async fn websocket_from(from: &str, addr: std::net::SocketAddr) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    (head.lines().next().unwrap_or_default().to_string(), stream)
}

#[tokio::test]
async fn idle_connections_from_one_client_cannot_lock_others_out() {
    let s = setup("connections", 42_022, BundlingMode::Manual, |c| {
        c.server.max_connections_per_client = 50;
    })
    .await;
    let addr = s.relayer.rpc_addr;
    // 200 idle WebSockets from one address: 50 are taken, the rest told 429 and closed.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let (status, stream) = websocket_from("127.0.0.2", addr).await;
        if status.contains(" 101 ") {
            held.push(stream);
        } else {
            assert!(status.contains(" 429 "), "{status}");
            refused += 1;
        }
    }
    assert_eq!((held.len(), refused), (50, 150));
    // Everyone else is served: over HTTP and over a WebSocket of their own.
    let (_, body) = call(&s.relayer.url(), "eth_chainId", None, None).await;
    assert_eq!(body["result"], "0xa426");
    let (status, _ws) = websocket_from("127.0.0.1", addr).await;
    assert!(status.contains(" 101 "), "{status}");
    // Closing them frees the slots.
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, _ws) = websocket_from("127.0.0.2", addr).await;
    assert!(status.contains(" 101 "), "{status}");
    s.relayer.stop().await;
}

#[tokio::test]
async fn an_oversized_request_or_a_subscription_over_http_gets_a_clear_refusal() {
    let s = setup("oversized", 42_023, BundlingMode::Manual, |c| {
        c.server.max_request_bytes = 64 * 1024;
    })
    .await;
    let op = json!({ "sender": "0x0000000000000000000000000000000000000001", "callData": format!("0x{}", "ab".repeat(100_000)) });
    let resp = reqwest::Client::new()
        .post(s.relayer.url())
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_estimateUserOperationGas", "params": [op, s.d.entry_point] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413, "payload too large");
    // A subscription over plain HTTP: told to use a WebSocket (the trading tests subscribe over one).
    let (_, body) = call(
        &s.relayer.url(),
        "keyscope_subscribeAccountEvents",
        None,
        None,
    )
    .await;
    assert_eq!(body["error"]["code"], -32601, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a WebSocket"),
        "{body}"
    );
    // The same inside a batch; the batch's other call is answered (positive control).
    let http = reqwest::Client::new();
    let batch = post_json(
        &http,
        &s.relayer.url(),
        &json!([
            { "jsonrpc": "2.0", "id": 1, "method": "keyscope_subscribeAccountEvents", "params": [] },
            { "jsonrpc": "2.0", "id": 2, "method": "eth_chainId", "params": [] },
        ]),
    )
    .await;
    let by_id = |id: u64| {
        batch
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(1)["error"]["code"], -32601, "{batch}");
    assert_eq!(by_id(2)["result"], "0xa427", "{batch}");
    // An id that is an object or a fraction makes the request invalid (JSON-RPC 2.0): -32600, id null.
    for id in [json!({ "a": 1 }), json!(1.5)] {
        let body = post_json(
            &http,
            &s.relayer.url(),
            &json!({ "jsonrpc": "2.0", "id": id, "method": "eth_chainId", "params": [] }),
        )
        .await;
        assert_eq!(body["error"]["code"], -32600, "{id}: {body}");
        assert_eq!(body["id"], Value::Null, "{body}");
    }
    // A normal request on the same relayer is served (positive control).
    let (_, body) = call(&s.relayer.url(), "eth_chainId", None, None).await;
    assert_eq!(body["result"], "0xa427");
    s.relayer.stop().await;
}

#[tokio::test]
async fn a_flood_of_new_senders_is_held_to_its_clients_share() {
    let s = setup("fresh", 42_024, BundlingMode::Manual, |c| {
        c.door.fresh_senders_burst_per_client = 5.0;
        c.door.fresh_senders_per_second_per_client = 0.01;
    })
    .await;
    let t = s.trader(24, "20000").await;
    let code = |e: &Value| e["code"].as_i64().unwrap();
    // The trader's first op comes from a sender new to the relayer: one of the five; it is known after.
    let first = s.order_op(&t, 0, 0, "0.01", "60500", false).await;
    s.send(&first).await.unwrap();
    // Four more new senders (nothing deployed there): each costs a validation and a token.
    let junk = |seed: u8| {
        let mut op = first.clone();
        op.sender = alloy_primitives::Address::repeat_byte(seed);
        op
    };
    for seed in 1..=4 {
        let e = s.send(&junk(seed)).await.unwrap_err();
        assert_eq!(code(&e), -32500, "{e}");
    }
    // The sixth new sender from this client is refused at the door, before any simulation.
    let e = s.send(&junk(5)).await.unwrap_err();
    assert_eq!(code(&e), -32504, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("new senders"),
        "{e}"
    );
    // A known sender on the same client is not slowed by the flood.
    s.send(&s.order_op(&t, 0, 1, "0.01", "60500", false).await)
        .await
        .expect("a known sender's op");
    // Another client address has a budget of its own: its new sender is validated, not throttled.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let body = post_json(
        &other,
        &s.relayer.url(),
        &json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_sendUserOperation",
            "params": [keyscope_core::client::rpc_user_op(&junk(6)), s.d.entry_point] }),
    )
    .await;
    assert_eq!(body["error"]["code"], -32500, "{body}");
    s.relayer.stop().await;
}

#[tokio::test]
async fn a_silent_or_slow_connection_is_closed_but_a_websocket_stays() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup("slow", 42_025, BundlingMode::Manual, |c| {
        c.server.header_timeout_secs = 1;
    })
    .await;
    let addr = s.relayer.rpc_addr;
    let closed_within = |mut stream: tokio::net::TcpStream, secs: u64| async move {
        let mut buf = [0u8; 256];
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(secs), stream.read(&mut buf)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
            || matches!(read, Ok(Ok(n)) if String::from_utf8_lossy(&buf[..n]).contains(" 408 "))
    };
    // Silent: connected, never sends a byte.
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Slow: half a request head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    // An upgraded WebSocket is past its head: it stays.
    let (status, ws) = websocket_from("127.0.0.1", addr).await;
    assert!(status.contains(" 101 "), "{status}");
    assert!(
        closed_within(silent, 3).await,
        "a silent connection is closed"
    );
    assert!(closed_within(slow, 3).await, "a slow request is closed");
    assert!(!closed_within(ws, 2).await, "the WebSocket stays open");
    // A prompt client is served (positive control).
    let (_, body) = call(&s.relayer.url(), "eth_chainId", None, None).await;
    assert_eq!(body["result"], "0xa429");
    s.relayer.stop().await;
}

#[tokio::test]
async fn a_slow_request_body_is_closed_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup("slow-body", 42_047, BundlingMode::Manual, |c| {
        c.server.request_timeout_secs = 1;
    })
    .await;
    let addr = s.relayer.rpc_addr;
    // A whole head announcing 100 bytes of body, then 10 of them, then nothing.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"",
    )
    .await
    .unwrap();
    // Answered 408 and closed (the outer bound only keeps a broken server from hanging the test).
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        slow.read_to_end(&mut answer),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "the connection is closed: {read:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1s"), "{answer}");
    // A prompt client is served (positive control).
    let (_, body) = call(&s.relayer.url(), "eth_chainId", None, None).await;
    assert_eq!(body["result"], "0xa43f");
    s.relayer.stop().await;
}

#[tokio::test]
async fn sixty_four_addresses_holding_connections_do_not_lock_out_a_new_client() {
    let s = setup("many-clients", 42_048, BundlingMode::Manual, |c| {
        c.server.max_connections = 256;
        c.server.max_connections_per_client = 8;
        c.server.reserved_connections = Some(96);
    })
    .await;
    let addr = s.relayer.rpc_addr;
    // 64 loopback addresses, each in its own /24, each opening as many idle WebSockets as it may.
    let mut held = Vec::new();
    for i in 1..=64 {
        for _ in 0..8 {
            let (status, stream) = websocket_from(&format!("127.0.{i}.2"), addr).await;
            if status.contains(" 101 ") {
                held.push(stream);
            } else {
                assert!(status.contains(" 429 "), "{status}");
            }
        }
    }
    // They fill the unreserved 160 slots and one reserved slot each for the 44 that came late.
    assert_eq!(held.len(), 160 + 44);
    // A new client is served, over HTTP and over a WebSocket of its own.
    let (_, body) = call(&s.relayer.url(), "eth_chainId", None, None).await;
    assert_eq!(body["result"], "0xa440");
    let (status, _ws) = websocket_from("127.0.200.1", addr).await;
    assert!(status.contains(" 101 "), "{status}");
    s.relayer.stop().await;
}
