//! The listeners: JSON-RPC (HTTP and WebSocket on one port, TLS if configured, behind the access, API-key
//! and WebSocket-only layers and the connection limits) and Prometheus metrics.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use jsonrpsee::server::{PingConfig, Server, ServerConfig, ServerHandle, stop_channel};
use tokio::{sync::watch, task::JoinHandle};

use crate::{Config, RelayerError, cluster::Cluster, metrics::Metrics, rpc};

/// Binds `config.listen` and serves `context`'s JSON-RPC module on it; tells `cluster` (if any) the URL
/// other instances forward to. Returns the bound address and the server's handle.
pub(super) async fn serve_rpc(
    config: &Config,
    context: rpc::RpcContext,
    access: Arc<rpc::AccessPolicy>,
    api_keys: Option<Arc<rpc::api_keys::ApiKeys>>,
    cluster: Option<&Cluster>,
) -> Result<(SocketAddr, ServerHandle), RelayerError> {
    let service = context.service.clone();
    let metrics = context.metrics.clone();
    let module = rpc::module(context, config.debug_api).expect("method names are unique");
    let listen = config.listen;
    let listen_err = |e: std::io::Error| RelayerError::Listen {
        addr: listen,
        reason: e.to_string(),
    };
    let limits = &config.server;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(listen_err)?;
    let rpc_addr = listener.local_addr().map_err(listen_err)?;
    if let Some(cluster) = &cluster {
        cluster.set_url(
            config
                .cluster
                .advertise
                .clone()
                .unwrap_or_else(|| format!("http://{rpc_addr}")),
        );
    }
    let builder = Server::builder()
        .set_config(
            ServerConfig::builder()
                .max_connections(limits.max_connections as u32)
                .max_request_body_size(limits.max_request_bytes)
                .enable_ws_ping(
                    PingConfig::new()
                        .ping_interval(Duration::from_secs(
                            limits.ws_inactive_secs.div_ceil(3).max(1),
                        ))
                        .inactive_limit(Duration::from_secs(limits.ws_inactive_secs.max(1)))
                        .max_failures(3),
                )
                .build(),
        )
        .set_http_middleware(tower::ServiceBuilder::new().layer(rpc::AccessLayer(access)))
        .set_rpc_middleware(
            jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new()
                .layer(rpc::WsOnlyLayer)
                .layer(rpc::auth::GateLayer {
                    keys: api_keys,
                    require: config.api_keys.require,
                    metrics: metrics.clone(),
                }),
        )
        .to_service_builder();
    let tls = match &config.tls {
        Some(t) => Some(rpc::tls::Tls::load(t).map_err(|e| RelayerError::Listen {
            addr: listen,
            reason: e.to_string(),
        })?),
        None => None,
    };
    let (stop_handle, server) = stop_channel();
    tokio::spawn(rpc::serve(
        listener,
        builder,
        module.into(),
        stop_handle,
        rpc::ConnectionLimits {
            total: limits.max_connections,
            per_client: limits.max_connections_per_client,
            per_subnet: limits.max_connections_per_subnet,
            reserved: limits
                .reserved_connections
                .unwrap_or(limits.max_connections / 4),
            header_timeout: Duration::from_secs(limits.header_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(limits.request_timeout_secs),
            max_request_bytes: limits.max_request_bytes,
        },
        {
            let service = service.clone();
            Arc::new(move || {
                let service = service.clone();
                Box::pin(async move { service.ready().await })
            })
        },
        tls,
    ));
    Ok((rpc_addr, server))
}

pub(super) async fn serve_metrics(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), RelayerError> {
    use axum::{Router, http::header, routing::get};
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| RelayerError::Listen {
            addr,
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| RelayerError::Listen {
        addr,
        reason: e.to_string(),
    })?;
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!("metrics server failed: {e}");
        }
    });
    Ok((local, task))
}
