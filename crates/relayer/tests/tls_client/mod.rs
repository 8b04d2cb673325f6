//! A JSON-RPC client over HTTPS for the TLS tests and bench: rustls (ring) trusting only the CAs it is
//! given, hyper's HTTP/1.1 inside; or plain HTTP. A [`Conn`] keeps one connection for many calls; [`call`]
//! opens one per call.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::{Value, json};

/// A rustls client configuration trusting only the CAs in `ca_pem`, presenting `identity` (certificate
/// chain and key, PEM) if given.
pub fn client_tls(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<_, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key).unwrap(),
            )
            .unwrap(),
    }
}

/// HTTPS with a rustls configuration, or plain HTTP with `tls` None.
#[derive(Clone)]
pub struct Client {
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// An HTTPS client trusting only `ca_pem`, presenting `identity` if given.
pub fn https(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> Client {
    Client {
        tls: Some(Arc::new(client_tls(ca_pem, identity))),
    }
}

/// One open connection to a JSON-RPC endpoint.
pub struct Conn {
    tx: SendRequest<Full<Bytes>>,
    host: String,
    path: String,
    /// Signs each request with this API key, if set.
    pub api_key: Option<keyscope_core::api_key::ApiKey>,
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e:?}"))?;
    tokio::spawn(conn);
    Ok(tx)
}

impl Client {
    /// Connects to `url` (TCP, then TLS if this client has it): Err names the step that failed.
    pub async fn connect(&self, url: &str) -> Result<Conn, String> {
        let u = url::Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
        let (host, port) = (
            u.host_str().unwrap_or("").to_string(),
            u.port().unwrap_or(443),
        );
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tx = match &self.tls {
            None => handshake(tcp).await?,
            Some(tls) => {
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|e| format!("bad server name {host}: {e}"))?;
                let tls = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                handshake(tls).await?
            }
        };
        Ok(Conn {
            tx,
            host: format!("{host}:{port}"),
            path: u.path().to_string(),
            api_key: None,
        })
    }
}

impl Conn {
    /// One JSON-RPC call on this connection: Ok(result), Err(why the exchange failed, or the JSON-RPC
    /// error object as text).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        // A fresh id per call, across connections: identical signed requests in one millisecond would be
        // one signature, the second refused as a replay.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let mut req = hyper::Request::post(self.path.as_str())
            .header("host", self.host.as_str())
            .header("content-type", "application/json");
        if let Some(key) = &self.api_key {
            let now = keyscope_core::api_key::now_ms();
            for (n, v) in key.sign_request("POST", &self.path, body.as_bytes(), now, 5_000) {
                req = req.header(n, v);
            }
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = self
            .tx
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP request: {e:?}"))?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("HTTP body: {e:?}"))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        match answer.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(answer["error"].to_string()),
        }
    }
}

/// One JSON-RPC call on a new connection, within 10 s.
pub async fn call(
    client: &Client,
    url: &str,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        client.connect(url).await?.call(method, params).await
    })
    .await
    .map_err(|_| "no answer in 10 s".to_string())?
}
