//! TLS on the relayer's JSON-RPC listener, end to end against a devnet: a client trusting the development
//! CA (`tls-init`'s code) reads the chain id and the EntryPoints over HTTPS and WebSocket over TLS, and
//! sends an op that is mined; a client that does not trust the CA, plain HTTP to the TLS port and an
//! expired certificate are refused while the relayer keeps serving others; a certificate swapped on disk
//! is served without a restart, and a garbled one is not; mutual TLS turns away clients without a
//! certificate from the CA; refused configurations name what is wrong.

mod common;
mod tls_client;

use std::{path::Path, time::Duration};

use common::*;
use jsonrpsee::{core::client::ClientT, rpc_params, ws_client::WsClientBuilder};
use keyscope_core::client::rpc_user_op;
use keyscope_relayer::{
    Relayer,
    config::{BundlingMode, TlsConfig},
    tls::DevCa,
};
use serde_json::{Value, json};
use tls_client::{Client, call, client_tls, https};

fn tls_config(cert: &Path, key: &Path) -> TlsConfig {
    TlsConfig {
        reload_secs: 1,
        handshake_timeout_secs: 2,
        ..TlsConfig::new(cert.to_path_buf(), key.to_path_buf())
    }
}

/// Waits up to 10 s (the reload polls every second) for `ok` to hold.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut ok: impl FnMut() -> F) {
    for _ in 0..50 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test]
async fn json_rpc_over_tls_serves_trusting_clients_and_refuses_the_rest() {
    let certs = data_dir("tls-certs");
    let files = DevCa::write_dev_files(&certs, &[], 30).unwrap();
    let s = setup("tls-e2e", 42_270, BundlingMode::Auto, |c| {
        c.tls = Some(tls_config(&files.cert, &files.key));
    })
    .await;
    let url = s.relayer.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(s.relayer.ws_url().starts_with("wss://"));
    let ca = std::fs::read(&files.ca_cert).unwrap();
    let http = https(&ca, None);

    // HTTPS, by address and by name (the certificate names both).
    assert_eq!(
        call(&http, &url, "eth_chainId", json!([])).await.unwrap(),
        json!("0xa51e")
    );
    let by_name = format!("https://localhost:{}", s.relayer.rpc_addr.port());
    let eps = call(&http, &by_name, "eth_supportedEntryPoints", json!([]))
        .await
        .unwrap();
    assert_eq!(eps, json!([s.d.entry_point]));

    // An op sent over HTTPS is mined, its receipt read over HTTPS.
    let t = s.trader(1, "20000").await;
    let op = s.order_op(&t, 0, 0, "0.1", "60500", false).await;
    let hash = call(
        &http,
        &url,
        "eth_sendUserOperation",
        json!([rpc_user_op(&op), s.d.entry_point]),
    )
    .await
    .unwrap();
    assert_eq!(hash, json!(s.hash(&op)));
    let mut receipt = Value::Null;
    for _ in 0..100 {
        receipt = call(&http, &url, "eth_getUserOperationReceipt", json!([hash]))
            .await
            .unwrap();
        if !receipt.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receipt["success"], json!(true), "{receipt}");

    // WebSocket over TLS (jsonrpsee's client trusting the CA).
    let ws = WsClientBuilder::new()
        .with_custom_cert_store(client_tls(&ca, None))
        .build(s.relayer.ws_url())
        .await
        .unwrap();
    let id: String = ws.request("eth_chainId", rpc_params![]).await.unwrap();
    assert_eq!(id, "0xa51e");
    // The same WebSocket client without the CA: its handshake fails.
    let stranger = WsClientBuilder::new()
        .with_custom_cert_store(client_tls(
            DevCa::generate(1).unwrap().cert_pem().as_bytes(),
            None,
        ))
        .build(s.relayer.ws_url())
        .await;
    assert!(
        stranger.is_err(),
        "a wss client not trusting the CA connected"
    );

    // A client trusting another CA: refused at the handshake, naming the certificate.
    let other_ca = DevCa::generate(1).unwrap();
    let e = call(
        &https(other_ca.cert_pem().as_bytes(), None),
        &url,
        "eth_chainId",
        json!([]),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("TLS handshake") && e.contains("UnknownIssuer"),
        "{e}"
    );

    // Plain HTTP to the TLS port: no answer; the relayer keeps serving TLS clients.
    let plain = Client { tls: None };
    let plain_url = format!("http://{}", s.relayer.rpc_addr);
    let e = call(&plain, &plain_url, "eth_chainId", json!([]))
        .await
        .unwrap_err();
    assert!(!e.contains("0xa51e"), "{e}");
    // A client that connects and never starts its handshake is dropped after the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(s.relayer.rpc_addr)
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("a silent client is disconnected within the handshake timeout");
    assert_eq!(closed.ok(), Some(0), "closed, nothing sent");
    assert_eq!(
        call(&http, &url, "eth_chainId", json!([])).await.unwrap(),
        json!("0xa51e")
    );

    // A certificate swapped on disk (issued by another CA) is served without a restart: clients of
    // the new CA get in, new clients of the old one no longer do. (Each check below is a new client:
    // one that resumes a TLS session is not shown the certificate again.)
    let next_ca = DevCa::generate(1).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let next = next_ca
        .issue(
            &["localhost".into(), "127.0.0.1".into()],
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        )
        .unwrap();
    std::fs::write(&files.key, &next.key).unwrap();
    std::fs::write(&files.cert, &next.cert).unwrap();
    let next_http = || https(next_ca.cert_pem().as_bytes(), None);
    let first_http = || https(&ca, None);
    eventually("the swapped certificate served", || async {
        call(&next_http(), &url, "eth_chainId", json!([]))
            .await
            .is_ok()
    })
    .await;
    assert!(
        call(&first_http(), &url, "eth_chainId", json!([]))
            .await
            .is_err()
    );

    // A garbled certificate on disk: the reload is refused and the one in use stays.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        call(&next_http(), &url, "eth_chainId", json!([]))
            .await
            .unwrap(),
        json!("0xa51e"),
        "a failed reload kept the certificate"
    );

    // An expired certificate from the first CA: its clients refuse it, naming the expiry.
    let first = DevCa::load(&files.ca_cert, &files.ca_key).unwrap();
    let expired = first
        .issue(
            &["localhost".into(), "127.0.0.1".into()],
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap();
    std::fs::write(&files.key, &expired.key).unwrap();
    std::fs::write(&files.cert, &expired.cert).unwrap();
    eventually("the expired certificate served", || async {
        call(&next_http(), &url, "eth_chainId", json!([]))
            .await
            .is_err()
    })
    .await;
    let e = call(&first_http(), &url, "eth_chainId", json!([]))
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("expired"), "{e}");
    // tls-init again: a fresh certificate from the kept CA, picked up, the first clients are back.
    DevCa::write_dev_files(&certs, &[], 30).unwrap();
    eventually("the renewed certificate served", || async {
        call(&first_http(), &url, "eth_chainId", json!([]))
            .await
            .is_ok()
    })
    .await;
    s.relayer.stop().await;
    let _ = std::fs::remove_dir_all(&certs);
}

#[tokio::test]
async fn tls_settings_are_checked_at_start_and_mutual_tls_needs_a_client_certificate() {
    let chain = Chain::start(42_271).await;
    let certs = data_dir("tls-certs-2");
    let files = DevCa::write_dev_files(&certs, &[], 30).unwrap();
    let config = |name: &str| config_for(&chain.devnet, data_dir(name), BundlingMode::Manual);

    // Plain HTTP on every interface: refused unless forced.
    let mut c = config("tls-plain-open");
    c.debug_api = false;
    c.listen = "0.0.0.0:0".parse().unwrap();
    let e = Relayer::start(c.clone()).await.unwrap_err().to_string();
    assert!(
        e.contains("TLS is off") && e.contains("allow_plaintext"),
        "{e}"
    );
    c.allow_plaintext = true;
    let r = Relayer::start(c.clone()).await.expect("starts when forced");
    assert!(r.url().starts_with("http://"));
    r.stop().await;
    // With TLS, on every interface, it starts without being forced.
    c.allow_plaintext = false;
    c.data_dir = data_dir("tls-open");
    c.tls = Some(tls_config(&files.cert, &files.key));
    let r = Relayer::start(c.clone()).await.expect("starts with TLS");
    let ca = std::fs::read(&files.ca_cert).unwrap();
    let local = format!("https://127.0.0.1:{}", r.rpc_addr.port());
    assert_eq!(
        call(&https(&ca, None), &local, "eth_chainId", json!([]))
            .await
            .unwrap(),
        json!("0xa51f")
    );
    r.stop().await;

    // Missing and garbled files: refused, naming the file.
    let mut c = config("tls-bad-files");
    let missing = certs.join("missing.pem");
    c.tls = Some(tls_config(&missing, &files.key));
    let e = Relayer::start(c.clone()).await.unwrap_err().to_string();
    assert!(
        e.contains("certificate") && e.contains("missing.pem"),
        "{e}"
    );
    let garbled = certs.join("garbled.key");
    std::fs::write(
        &garbled,
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    c.tls = Some(tls_config(&files.cert, &garbled));
    let e = Relayer::start(c.clone()).await.unwrap_err().to_string();
    assert!(e.contains("key") && e.contains("garbled.key"), "{e}");
    // The CA's key with the server's certificate: not its key.
    c.tls = Some(tls_config(&files.cert, &files.ca_key));
    let e = Relayer::start(c).await.unwrap_err().to_string();
    assert!(e.contains("does not go with"), "{e}");

    // Mutual TLS: only clients with a certificate from the client CA get an answer.
    let mut c = config("tls-mutual");
    c.tls = Some(TlsConfig {
        client_ca: Some(files.ca_cert.clone()),
        ..tls_config(&files.cert, &files.key)
    });
    let r = Relayer::start(c).await.expect("starts with a client CA");
    let url = r.url();
    let e = call(&https(&ca, None), &url, "eth_chainId", json!([]))
        .await
        .unwrap_err();
    assert!(!e.contains("0xa51f"), "{e}");
    let ca_issuer = DevCa::load(&files.ca_cert, &files.ca_key).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let client = ca_issuer
        .issue(&["trader-1".into()], now, now + time::Duration::days(1))
        .unwrap();
    let with_cert = https(&ca, Some((client.cert.as_bytes(), client.key.as_bytes())));
    assert_eq!(
        call(&with_cert, &url, "eth_chainId", json!([]))
            .await
            .unwrap(),
        json!("0xa51f")
    );
    // A certificate from another CA is not enough.
    let stranger = DevCa::generate(1)
        .unwrap()
        .issue(&["trader-2".into()], now, now + time::Duration::days(1))
        .unwrap();
    let e = call(
        &https(
            &ca,
            Some((stranger.cert.as_bytes(), stranger.key.as_bytes())),
        ),
        &url,
        "eth_chainId",
        json!([]),
    )
    .await
    .unwrap_err();
    assert!(!e.contains("0xa51f"), "{e}");
    r.stop().await;
    let _ = std::fs::remove_dir_all(&certs);
}
