//! The JSON-RPC server's accept loop: connection limits per client address, per subnet (an IPv4 /24, an
//! IPv6 /64) and in total, with the last slots kept for clients holding none, so neither one client nor a
//! few dozen addresses holding idle connections (HTTP keep-alive or WebSocket) can lock everyone else
//! out; and a deadline on each request's head and body, so a slow sender holds no slot for long. A
//! connection over a limit is answered `429 Too Many Requests` and closed; a request past its deadline
//! `408 Request Timeout`.
//!
//! With TLS ([`super::tls::Tls`]), a connection is counted against the limits first, then its handshake
//! runs within the handshake timeout, then HTTP (or a WebSocket upgrade) is served inside it. A
//! connection over a limit on a TLS listener is closed without an answer: a `429` would cost the server a
//! handshake for a client it is turning away.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use jsonrpsee::server::{
    HttpRequest, Methods, StopHandle, TowerServiceBuilder, http::response,
    serve_with_graceful_shutdown,
};
use tokio::net::TcpListener;
use tower::Service;

/// The address a request came from (a request extension, set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub IpAddr);

/// How many connections the server holds, and how long it waits for a request's headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// In total.
    pub total: usize,
    /// From one client address.
    pub per_client: usize,
    /// From one subnet: an IPv4 /24, an IPv6 /64 (one host's or one LAN's addresses).
    pub per_subnet: usize,
    /// Of `total`, the last this many slots take only clients holding no connection: however many
    /// addresses fill the rest, a new client still gets in.
    pub reserved: usize,
    /// A connection that does not send a whole request head in this long (a slow client, or an idle
    /// keep-alive connection) is closed. WebSockets, once upgraded, are not affected.
    pub header_timeout: Duration,
    /// A request whose head and body do not arrive in this long is answered 408 and its connection closed
    /// (the head is held to the shorter of this and `header_timeout`, the body to this from the head).
    pub request_timeout: Duration,
    /// A larger request body gets HTTP 413.
    pub max_request_bytes: u32,
}

/// Open connections, in total, per client address and per subnet.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    per_subnet: HashMap<IpAddr, usize>,
}

/// The subnet `ip` is counted in: its IPv4 /24, or its IPv6 /64 (an IPv4-mapped address as IPv4).
fn subnet(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => subnet(IpAddr::V4(v4)),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Takes one from `map[key]`, forgetting it at zero.
fn release(map: &mut HashMap<IpAddr, usize>, key: IpAddr) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

/// A connection counted in [`Open`] until it is dropped.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        release(&mut open.per_client, self.ip);
        release(&mut open.per_subnet, subnet(self.ip));
    }
}

/// A connection's socket (plain, or inside TLS) with its slot: the slot is freed when the socket is
/// dropped, also after a WebSocket upgrade took the socket over (the HTTP connection's task ends at the
/// upgrade).
struct Counted<T> {
    io: T,
    _slot: Slot,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Takes a slot for a connection from `ip`, or None if a limit is reached: its address's, its subnet's,
/// or the total — less the reserved slots unless `ip` holds no connection.
fn take_slot(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: ConnectionLimits) -> Option<Slot> {
    let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
    let from_ip = o.per_client.get(&ip).copied().unwrap_or(0);
    let from_subnet = o.per_subnet.get(&subnet(ip)).copied().unwrap_or(0);
    let total = match from_ip {
        0 => limits.total,
        _ => limits.total.saturating_sub(limits.reserved),
    };
    if o.total >= total || from_ip >= limits.per_client || from_subnet >= limits.per_subnet {
        return None;
    }
    o.total += 1;
    *o.per_client.entry(ip).or_default() += 1;
    *o.per_subnet.entry(subnet(ip)).or_default() += 1;
    Some(Slot {
        open: open.clone(),
        ip,
    })
}

/// One request's answer, boxed, that cannot fail (a boxed error type here would have to convert for every
/// lifetime inside `tokio::spawn`, which the compiler cannot prove).
type Reply = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<jsonrpsee::server::HttpResponse, std::convert::Infallible>,
            > + Send,
    >,
>;

/// The server's configuration with its HTTP middleware (the access layer).
pub(super) type ServiceBuilder = TowerServiceBuilder<
    tower::layer::util::Stack<
        super::auth::GateLayer,
        tower::layer::util::Stack<super::WsOnlyLayer, tower::layer::util::Identity>,
    >,
    tower::layer::util::Stack<super::AccessLayer, tower::layer::util::Identity>,
>;

/// The readiness probe behind `GET /ready`: Ok with a JSON summary, or why the relayer is not ready.
pub(super) type ReadyProbe = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<serde_json::Value, String>> + Send>,
        > + Send
        + Sync,
>;

/// Serves `methods` on `listener` until `stop`, with `builder`'s configuration and HTTP middleware, at
/// most `limits` connections at once; `GET /health` (the process answers) and `GET /ready` (`ready`
/// says it can work) for probes, outside the access layer. With `tls`, every connection speaks TLS, and
/// the certificate files are polled for a renewal while the server runs.
pub(crate) async fn serve(
    listener: TcpListener,
    builder: ServiceBuilder,
    methods: Methods,
    stop: StopHandle,
    limits: ConnectionLimits,
    ready: ReadyProbe,
    tls: Option<Arc<super::tls::Tls>>,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let reloader = tls.as_ref().map(|t| t.spawn_reloader());
    loop {
        let (socket, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!("accepting a connection failed: {e}");
                    continue;
                }
            },
            _ = stop.clone().shutdown() => break,
        };
        let Some(slot) = take_slot(&open, peer.ip(), limits) else {
            tracing::debug!(%peer, "connection refused: over the connection limits");
            if tls.is_some() {
                drop(socket);
                continue;
            }
            let busy = tower::service_fn(|_req: HttpRequest<hyper::body::Incoming>| async {
                Ok::<_, std::convert::Infallible>(response::too_many_requests())
            });
            tokio::spawn(serve_with_graceful_shutdown(
                socket,
                busy,
                stop.clone().shutdown(),
            ));
            continue;
        };
        let (builder, methods, stop2) = (builder.clone(), methods.clone(), stop.clone());
        let ready = ready.clone();
        let client = ClientAddr(peer.ip());
        let (max_request_bytes, request_timeout) =
            (limits.max_request_bytes, limits.request_timeout);
        let svc = tower::service_fn(
            move |mut req: HttpRequest<hyper::body::Incoming>| -> Reply {
                if !jsonrpsee::server::ws::is_upgrade_request(&req) {
                    req.extensions_mut().insert(super::OverHttp);
                }
                req.extensions_mut().insert(client);
                let mut svc = builder.clone().build(methods.clone(), stop2.clone());
                let ready = ready.clone();
                Box::pin(async move {
                    if let Some(answer) = probe(&req, ready).await {
                        return Ok(answer);
                    }
                    // A failure here is the server's own: answer 500, keep the connection's error type simple.
                    let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
                        tracing::warn!("request failed: {e}");
                        response::internal_error()
                    };
                    if jsonrpsee::server::ws::is_upgrade_request(&req) {
                        return Ok(svc.call(req).await.unwrap_or_else(failed));
                    }
                    let req = match checked_body(req, max_request_bytes, request_timeout).await {
                        Ok(req) => req,
                        Err(refusal) => return Ok(refusal),
                    };
                    Ok(svc.call(req).await.unwrap_or_else(failed))
                })
            },
        );
        let shutdown = stop.clone().shutdown();
        let header_timeout = limits.header_timeout.min(limits.request_timeout);
        let handshake = tls.as_ref().map(|t| (t.acceptor(), t.handshake_timeout));
        tokio::spawn(async move {
            let served = match handshake {
                None => {
                    let counted = Counted {
                        io: socket,
                        _slot: slot,
                    };
                    serve_connection(counted, svc, shutdown, header_timeout).await
                }
                Some((acceptor, timeout)) => {
                    let io = match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
                        Ok(Ok(io)) => io,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake not finished in {timeout:?}");
                            return;
                        }
                    };
                    let counted = Counted { io, _slot: slot };
                    serve_connection(counted, svc, shutdown, header_timeout).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    if let Some(r) = reloader {
        r.abort();
    }
}

/// The answer to a probe — `GET /health`: 200 while the process serves; `GET /ready`: 200 with the
/// probe's summary, or 503 with its reason — or None for any other request.
async fn probe(
    req: &HttpRequest<hyper::body::Incoming>,
    ready: ReadyProbe,
) -> Option<jsonrpsee::server::HttpResponse> {
    if req.method() != hyper::Method::GET {
        return None;
    }
    match req.uri().path() {
        "/health" => Some(response::ok_response(r#"{"status":"ok"}"#)),
        "/ready" => Some(match ready().await {
            Ok(summary) => response::ok_response(summary.to_string()),
            Err(why) => {
                let mut r = response::ok_response(
                    serde_json::json!({ "ready": false, "reason": why }).to_string(),
                );
                *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                r
            }
        }),
        _ => None,
    }
}

/// Reads a plain HTTP request's body (at most `limit` bytes: else 413; within `deadline`: else 408, and the
/// connection is closed) and refuses a single call whose `id`
/// JSON-RPC 2.0 does not allow (an object, an array, a fraction…) with -32600: jsonrpsee would take it for a
/// notification and answer `null`.
async fn checked_body(
    req: HttpRequest<hyper::body::Incoming>,
    limit: u32,
    deadline: Duration,
) -> Result<HttpRequest<jsonrpsee::server::HttpBody>, jsonrpsee::server::HttpResponse> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(
        deadline,
        http_body_util::Limited::new(body, limit as usize).collect(),
    )
    .await
    .map_err(|_| timed_out(deadline))?;
    let bytes = collected
        .map_err(|_| response::too_large(limit))?
        .to_bytes();
    let mut parts = parts;
    if parts
        .headers
        .contains_key(keyscope_core::api_key::HEADER_KEY)
    {
        parts
            .extensions
            .insert(super::auth::BodyHash(alloy_primitives::keccak256(&bytes)));
    }
    if !id_allowed(&bytes) {
        return Err(response::ok_response(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request: id must be a string, an integer or null"}}"#,
        ));
    }
    Ok(HttpRequest::from_parts(
        parts,
        jsonrpsee::server::HttpBody::from(bytes.to_vec()),
    ))
}

/// `408 Request Timeout`, closing the connection: the body did not arrive within `deadline`.
fn timed_out(deadline: Duration) -> jsonrpsee::server::HttpResponse {
    let mut r = response::ok_response(format!(
        r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32600,"message":"Invalid request: the request body did not arrive within {}s"}}}}"#,
        deadline.as_secs()
    ));
    *r.status_mut() = hyper::StatusCode::REQUEST_TIMEOUT;
    r.headers_mut().insert(
        "connection",
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

/// False if `body` is one JSON object whose `id` is there but is not a string, an unsigned integer or null.
fn id_allowed(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
    }
    // Only an object (serde would also read a batch array as the struct's fields in order).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return true;
    }
    let Ok(IdOnly { id: Some(id) }) = serde_json::from_slice::<IdOnly>(body) else {
        return true; // no id, null, a batch, or not JSON: jsonrpsee answers those
    };
    let id = id.get();
    // jsonrpsee answers string and unsigned integer ids (a negative one it could not echo either).
    id.starts_with('"') || id.parse::<u64>().is_ok()
}

/// Serves one connection (HTTP/1, or a WebSocket upgrade) until it ends or the server stops,
/// closing it if a request's head does not arrive within `header_timeout`.
async fn serve_connection<S, T>(
    io: Counted<T>,
    svc: S,
    stopped: impl std::future::Future<Output = ()>,
    header_timeout: Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: Service<
            HttpRequest<hyper::body::Incoming>,
            Response = jsonrpsee::server::HttpResponse,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        service::TowerToHyperService,
    };
    // HTTP/1 only (what JSON-RPC clients speak): the version-sniffing auto builder would wait for a silent
    // client's first bytes with no timeout at all.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
        .with_upgrades();
    tokio::pin!(conn, stopped);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = &mut stopped => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    result.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_json_rpc_allows_pass_and_others_do_not() {
        for ok in [
            r#"{"id":1,"method":"m"}"#,
            r#"{"id":"a","method":"m"}"#,
            r#"{"id":null,"method":"m"}"#,
            r#"{"method":"m"}"#,
            r#"[{"id":{}}]"#,
            "not json",
        ] {
            assert!(id_allowed(ok.as_bytes()), "{ok}");
        }
        for bad in [
            r#"{"id":{"a":1},"method":"m"}"#,
            r#"{"id":1.5}"#,
            r#"{"id":[1]}"#,
            r#"{"id":true}"#,
            r#"{"id":-1}"#,
        ] {
            assert!(!id_allowed(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn slots_are_limited_per_client_and_in_total_and_freed_on_drop() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = ConnectionLimits {
            total: 3,
            per_client: 2,
            per_subnet: 3,
            reserved: 0,
            header_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_request_bytes: 1 << 20,
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = take_slot(&open, a, limits).unwrap();
        let _a2 = take_slot(&open, a, limits).unwrap();
        assert!(
            take_slot(&open, a, limits).is_none(),
            "a third from one client"
        );
        let b1 = take_slot(&open, b, limits).unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert!(take_slot(&open, c, limits).is_none(), "a fourth in total");
        drop(a1);
        assert!(
            take_slot(&open, a, limits).is_some(),
            "freed when the connection ends"
        );
        drop(b1);
        assert_eq!(open.lock().unwrap().per_client.get(&b), None);
    }

    #[test]
    fn a_subnet_is_capped_and_the_reserve_takes_only_new_clients() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = ConnectionLimits {
            total: 6,
            per_client: 3,
            per_subnet: 4,
            reserved: 2,
            header_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_request_bytes: 1 << 20,
        };
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut held = Vec::new();
        // One /24: 3 from one address, the 4th from its neighbour, then its subnet is full.
        for a in ["10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"] {
            held.push(take_slot(&open, ip(a), limits).unwrap());
        }
        assert!(
            take_slot(&open, ip("10.0.0.3"), limits).is_none(),
            "its /24 is full"
        );
        // Another address fills the unreserved slots and may not take a reserved one.
        held.push(take_slot(&open, ip("10.0.1.1"), limits).unwrap());
        assert!(
            take_slot(&open, ip("10.0.1.1"), limits).is_none(),
            "the reserve is for new clients"
        );
        // A client holding none takes a reserved slot.
        held.push(take_slot(&open, ip("10.0.2.1"), limits).unwrap());
        assert!(
            take_slot(&open, ip("10.0.3.1"), limits).is_none(),
            "all six taken"
        );
        drop(held);
        let o = open.lock().unwrap();
        assert_eq!((o.total, o.per_client.len(), o.per_subnet.len()), (0, 0, 0));
        // IPv6 addresses of one /64 share a subnet; an IPv4-mapped address is its IPv4 /24.
        assert_eq!(subnet(ip("2001:db8::1")), subnet(ip("2001:db8::ffff:1")));
        assert_ne!(subnet(ip("2001:db8::1")), subnet(ip("2001:db8:0:1::1")));
        assert_eq!(subnet(ip("::ffff:10.0.0.9")), ip("10.0.0.0"));
    }
}
