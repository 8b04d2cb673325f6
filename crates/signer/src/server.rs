//! The socket protocol: newline-delimited JSON over a Unix socket (created mode 0600, so only the
//! strategy's user can connect). Requests and answers:
//!
//! ```text
//! {"id":1,"method":"keys"}
//!   -> {"id":1,"result":[{"name":"mm-hot","id":"0x…","curve":"p256"}]}
//! {"id":2,"method":"sign","params":{"userOp":{…ERC-7769 JSON…},"validUntil":1800000030}}
//!   -> {"id":2,"result":{"signature":"0x…","userOpHash":"0x…","validUntil":1800000030,"key":"0x…"}}
//!   -> {"id":2,"error":{"code":4001,"message":"out of scope: market 2 is not in the key's markets"}}
//! {"id":3,"method":"sign_order","params":{"venue":"0x…","order":{"account":"0x…","key":"0x…","grantId":1,
//!   "epoch":0,"marketId":0,"isBuy":true,"size":"0x…","limitPrice":"0x…","reduceOnly":false,
//!   "timeInForce":0,"expiry":1800000060000,"nonce":7}}}
//!   -> {"id":3,"result":{"signature":"0x…","orderHash":"0x…","key":"0x…"}}
//! {"id":4,"method":"sign_request","params":{"venue":"0x…","account":"0x…","key":"0x…","action":"cancel",
//!   "orderHashes":["0x…"],"timestampMs":1800000000000}}
//!   -> {"id":4,"result":{"signature":"0x…","digest":"0x…","key":"0x…"}}
//! ```
//!
//! `sign_order` signs an off-chain order (`keyscope_core::order`) after the same scope check a fill of it
//! meets on chain (`keyscope_core::policy::check_signed_order`); a malformed or expired order is -32602.
//!
//! `sign_request` signs a matcher request (`keyscope_core::order_request`): `action` is `cancel` (with
//! `orderHashes`), `cancelAll`, `scheduleCancel` (with `atMs`; 0 clears) or `subscribe` (with
//! `cancelOnDisconnect`). The key must be held and the request for this signer's account (else 4004); a
//! request that makes no sense (a cancel of no order, a schedule less than 5 s ahead) is -32602. Requests
//! skip the rate limit (they take risk off, or read) and are recorded in the audit trail under their digest.
//!
//! Error codes: -32700 not JSON, -32601 unknown method, -32602 bad params (an op with no userOpHash
//! included, like an EIP-7702 op), 4001 out of scope, 4004 key
//! not held or op for another account, 4029 rate limited, 4500 signing failed.

use std::{
    io::ErrorKind,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
    sync::Arc,
    time::Duration,
};

use alloy::providers::{Provider, ProviderBuilder};
use keyscope_core::{
    deployment::Deployment, order::OrderJson, rpc_op::RpcUserOperation, signer::from_keystore,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::{
    SignerError,
    audit::AuditLog,
    config::SignerConfig,
    quorum::{CosignCheck, QuorumKey},
    service::{Refused, RequestParams, SigningService},
};

/// Opens everything `config` names — the deployment, every key (keystores with `password`, HSM keys with
/// `pin`), the audit key and trail — reads the sessions once, binds the socket, and serves until the
/// listener fails, re-reading the sessions every `refresh_secs`. A socket a running sidecar answers on
/// is refused before anything is opened, so a second sidecar neither takes it over nor writes to the
/// first one's audit trail.
pub async fn run(
    config: &SignerConfig,
    password: Option<&str>,
    pin: Option<&str>,
) -> Result<(), SignerError> {
    check_free(&config.socket)?;
    let deployment = Deployment::load(&config.deployment).map_err(|e| SignerError::Config {
        path: config.deployment.display().to_string(),
        reason: e.to_string(),
    })?;
    let keys = config.open_keys(password, pin)?;
    let audit_key = from_keystore(
        &config.audit_keystore,
        password.ok_or_else(|| SignerError::Config {
            path: config.audit_keystore.display().to_string(),
            reason: "the audit key's keystore needs its password in KEYSCOPE_SIGNER_PASSWORD"
                .into(),
        })?,
    )
    .map_err(|e| SignerError::Keystore {
        path: config.audit_keystore.display().to_string(),
        reason: e.to_string(),
    })?;
    let audit = AuditLog::open(&config.audit_log, audit_key)?;
    let url = config.rpc_url.parse().map_err(|e| SignerError::Config {
        path: "rpc_url".into(),
        reason: format!("{e}"),
    })?;
    let provider = ProviderBuilder::new().connect_http(url);
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| SignerError::Chain(format!("{}: {e}", config.rpc_url)))?;
    if chain_id != deployment.chain_id {
        return Err(SignerError::Chain(format!(
            "{} is chain {chain_id}, but {} is for chain {}",
            config.rpc_url,
            config.deployment.display(),
            deployment.chain_id
        )));
    }
    let mut service = SigningService::new(
        config.account,
        chain_id,
        deployment.entry_point,
        keys,
        audit,
    );
    // A quorum member: it listens to the other members now, and co-signs through this service's checks.
    let cosign = Arc::new(CosignCheck::default());
    let quorum = match &config.quorum {
        Some(q) => {
            let password = password.ok_or_else(|| SignerError::Config {
                path: q.share.display().to_string(),
                reason: "the quorum share needs the keystore password in KEYSCOPE_SIGNER_PASSWORD"
                    .into(),
            })?;
            let key = Arc::new(QuorumKey::start(q, password, cosign.clone()).await?);
            let rate = q.rate.parse().expect("checked by load");
            service = service.with_quorum(q.name.clone(), key.clone(), rate);
            Some((key, q.presignatures))
        }
        None => None,
    };
    let service = Arc::new(service);
    cosign.bind(&service);
    service.refresh(&provider).await?;
    // Presignatures made ahead with each set of co-signers that answers, so signing is one round.
    let fill = async move {
        let Some((key, target)) = quorum else {
            return std::future::pending().await;
        };
        loop {
            let _ = key.member.fill_pool(target).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let listener = bind(&config.socket)?;
    let refresher = service.clone();
    let every = Duration::from_secs(config.refresh_secs.max(1));
    let refresh = async move {
        loop {
            tokio::time::sleep(every).await;
            // A failed read keeps the last view; the next tick tries again.
            let _ = refresher.refresh(&provider).await;
        }
    };
    // One task: stopping `run` stops the refresher and the presignature filler with the server.
    tokio::select! {
        served = serve(service, listener) => served.map_err(|e| SignerError::Socket {
            path: config.socket.display().to_string(),
            reason: e.to_string(),
        }),
        () = refresh => unreachable!("the refresher never returns"),
        () = fill => unreachable!("the filler never returns"),
    }
}

fn socket_error(path: &Path, reason: impl ToString) -> SignerError {
    SignerError::Socket {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Whether `path` may be bound: nothing there, or a stale socket file (one nobody listens on, left by
/// a sidecar that died). A socket something answers on is [`SignerError::SocketInUse`]; a file that is
/// not a socket is refused rather than deleted.
pub fn check_free(path: &Path) -> Result<(), SignerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(socket_error(path, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(socket_error(
            path,
            "exists and is not a socket; remove it or give the sidecar another `socket` in its config",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SignerError::SocketInUse {
            path: path.display().to_string(),
        }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(socket_error(path, e)),
    }
}

/// A bound sidecar socket and the lock that makes it this sidecar's, held while it serves.
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    _lock: std::fs::File,
}

impl std::ops::Deref for BoundSocket {
    type Target = UnixListener;

    fn deref(&self) -> &UnixListener {
        &self.listener
    }
}

/// Takes `<socket>.lock` (an exclusive `flock`, released when the sidecar exits however it exits), so two
/// sidecars started at the same instant — which may both find no live socket — cannot both bind: the
/// second is refused as [`SignerError::SocketInUse`]. The lock file stays behind, harmless.
fn lock_socket(path: &Path) -> Result<std::fs::File, SignerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(format!("{}.lock", path.display()))
        .map_err(|e| socket_error(path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(SignerError::SocketInUse {
            path: path.display().to_string(),
        }),
        Err(e) => Err(socket_error(path, e)),
    }
}

/// Binds `path` with mode 0600 under its lock ([`lock_socket`]), replacing a stale socket file and
/// refusing a live one ([`check_free`]).
pub fn bind(path: &Path) -> Result<BoundSocket, SignerError> {
    let fail = |e: std::io::Error| socket_error(path, e);
    let lock = lock_socket(path)?;
    check_free(path)?;
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path).map_err(fail)?;
    }
    let listener = UnixListener::bind(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok(BoundSocket {
        listener,
        _lock: lock,
    })
}

/// Serves connections until the listener fails.
pub async fn serve(service: Arc<SigningService>, listener: BoundSocket) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            // A connection that breaks ends only itself.
            let _ = connection(service, stream).await;
        });
    }
}

async fn connection(service: Arc<SigningService>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let mut answer = serde_json::to_vec(&handle(&service, &line).await)?;
        answer.push(b'\n');
        write.write_all(&answer).await?;
    }
    Ok(())
}

fn error(id: Value, code: i64, message: String) -> Value {
    json!({ "id": id, "error": { "code": code, "message": message } })
}

/// The answer for a refused request, with its protocol code.
fn refused(id: Value, e: Refused) -> Value {
    let code = match e {
        Refused::Policy(_) | Refused::NoSession => 4001,
        Refused::UnknownKey(_) | Refused::WrongAccount { .. } => 4004,
        Refused::RateLimited { .. } => 4029,
        Refused::Signing(_) => 4500,
        Refused::Unhashable(_)
        | Refused::BadOrder(_)
        | Refused::BadRequest(_)
        | Refused::NotCosignable(_) => -32602,
    };
    error(id, code, e.to_string())
}

/// The answer to one request line.
pub async fn handle(service: &SigningService, line: &str) -> Value {
    let req: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return error(Value::Null, -32700, format!("not JSON: {e}")),
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    match req.get("method").and_then(Value::as_str) {
        Some("keys") => json!({ "id": id, "result": service.keys() }),
        Some("sign") => {
            let params = req.get("params").cloned().unwrap_or(Value::Null);
            let op = match RpcUserOperation::from_json(
                params.get("userOp").cloned().unwrap_or(Value::Null),
            )
            .and_then(|o| o.to_packed())
            {
                Ok(op) => op,
                Err(e) => return error(id, -32602, format!("params.userOp: {e}")),
            };
            let valid_until = match params.get("validUntil") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(t) => Some(t),
                    None => {
                        return error(id, -32602, "params.validUntil must be unix seconds".into());
                    }
                },
            };
            match service.sign(&op, valid_until).await {
                Ok(signed) => json!({ "id": id, "result": signed }),
                Err(e) => refused(id, e),
            }
        }
        Some("sign_order") => {
            let params = req.get("params").cloned().unwrap_or(Value::Null);
            let venue = match serde_json::from_value(params["venue"].clone()) {
                Ok(v) => v,
                Err(e) => return error(id, -32602, format!("params.venue: {e}")),
            };
            let order = serde_json::from_value::<OrderJson>(params["order"].clone())
                .map_err(|e| e.to_string())
                .and_then(|o| o.to_order(service.now() * 1000).map_err(|e| e.to_string()));
            let order = match order {
                Ok(o) => o,
                Err(e) => return error(id, -32602, format!("params.order: {e}")),
            };
            match service.sign_order(venue, &order).await {
                Ok(signed) => json!({ "id": id, "result": signed }),
                Err(e) => refused(id, e),
            }
        }
        Some("sign_request") => {
            let params = req.get("params").cloned().unwrap_or(Value::Null);
            let request = serde_json::from_value::<RequestParams>(params)
                .map_err(|e| e.to_string())
                .and_then(|p| p.to_request());
            let request = match request {
                Ok(r) => r,
                Err(e) => return error(id, -32602, format!("params: {e}")),
            };
            match service.sign_request(&request).await {
                Ok(signed) => json!({ "id": id, "result": signed }),
                Err(e) => refused(id, e),
            }
        }
        Some(m) => error(
            id,
            -32601,
            format!("unknown method {m:?}: use keys, sign, sign_order or sign_request"),
        ),
        None => error(id, -32600, "no method".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn temp_socket(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keyscope-socket-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signer.sock");
        let _ = std::fs::remove_file(&path);
        path
    }

    #[tokio::test]
    async fn a_live_socket_is_refused_and_keeps_answering() {
        let path = temp_socket("live");
        let first = bind(&path).unwrap();
        let err = bind(&path).unwrap_err();
        assert!(
            matches!(&err, SignerError::SocketInUse { path: p } if *p == path.display().to_string()),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("stop that sidecar"),
            "{message}"
        );
        // The refusal left the first listener's socket in place: it still accepts.
        let (accepted, connected) = tokio::join!(first.accept(), UnixStream::connect(&path));
        accepted.unwrap();
        connected.unwrap();
    }

    /// Sidecars started at the same instant on one socket: exactly one binds, every other is refused as
    /// in use, and the winner's socket answers (without the lock two could each remove the other's file).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sidecars_started_at_once_bind_one_socket() {
        for round in 0..10 {
            let path = temp_socket(&format!("race-{round}"));
            let start = Arc::new(std::sync::Barrier::new(6));
            let runtime = tokio::runtime::Handle::current();
            let racers: Vec<_> = (0..6)
                .map(|_| {
                    let (path, start, runtime) = (path.clone(), start.clone(), runtime.clone());
                    std::thread::spawn(move || {
                        let _in_runtime = runtime.enter();
                        start.wait();
                        bind(&path)
                    })
                })
                .collect();
            let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
            let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
            assert_eq!(won.len(), 1, "round {round}: {} bound", won.len());
            assert!(
                results
                    .iter()
                    .filter_map(|r| r.as_ref().err())
                    .all(|e| matches!(e, SignerError::SocketInUse { .. })),
                "round {round}"
            );
            let winner = results.into_iter().find_map(Result::ok).unwrap();
            let (accepted, connected) = tokio::join!(winner.accept(), UnixStream::connect(&path));
            accepted.unwrap();
            connected.unwrap();
        }
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced() {
        let path = temp_socket("stale");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(
            path.exists(),
            "a dropped listener leaves its socket file behind"
        );
        let listener = bind(&path).unwrap();
        let (accepted, connected) = tokio::join!(listener.accept(), UnixStream::connect(&path));
        accepted.unwrap();
        connected.unwrap();
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_left_alone() {
        let path = temp_socket("file");
        std::fs::write(&path, "notes").unwrap();
        let err = bind(&path).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "notes");
    }
}
