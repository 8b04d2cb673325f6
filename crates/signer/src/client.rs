//! What a strategy engine links to use the sidecar: one connection, one request at a time.

use std::path::Path;

use alloy_primitives::Address;
use keyscope_core::{
    order::{Order, OrderJson},
    order_request::Request,
    rpc_op::RpcUserOperation,
    user_op::PackedUserOperation,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::Mutex,
};

use crate::service::{KeyInfo, RequestParams, Signed, SignedOrder, SignedRequest};

/// An answer the sidecar gave instead of a result, or a broken connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signer refused ({code}): {message}")]
pub struct ClientError {
    /// The protocol's code (4001 out of scope, 4029 rate limited, …; 0 for a transport failure).
    pub code: i64,
    /// The sidecar's (or the transport's) message.
    pub message: String,
}

/// A connection to `keyscope signer`.
pub struct SignerClient {
    io: Mutex<(Lines<BufReader<OwnedReadHalf>>, OwnedWriteHalf, u64)>,
}

fn transport(e: impl std::fmt::Display) -> ClientError {
    ClientError {
        code: 0,
        message: e.to_string(),
    }
}

impl SignerClient {
    /// Connects to the sidecar's socket.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path.as_ref()).await.map_err(|e| {
            transport(format!(
                "cannot connect to {}: {e} (is `keyscope signer serve` running?)",
                path.as_ref().display()
            ))
        })?;
        let (read, write) = stream.into_split();
        Ok(Self {
            io: Mutex::new((BufReader::new(read).lines(), write, 0)),
        })
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let mut io = self.io.lock().await;
        io.2 += 1;
        let mut line =
            serde_json::to_vec(&json!({ "id": io.2, "method": method, "params": params }))
                .map_err(transport)?;
        line.push(b'\n');
        io.1.write_all(&line).await.map_err(transport)?;
        let answer =
            io.0.next_line()
                .await
                .map_err(transport)?
                .ok_or_else(|| transport("the signer closed the connection"))?;
        let v: Value = serde_json::from_str(&answer).map_err(transport)?;
        if let Some(e) = v.get("error") {
            return Err(ClientError {
                code: e["code"].as_i64().unwrap_or(0),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(v["result"].clone())
    }

    /// The keys the sidecar holds.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, ClientError> {
        serde_json::from_value(self.call("keys", Value::Null).await?).map_err(transport)
    }

    /// Asks the sidecar to sign `op` (its nonce names the key), expiring at `valid_until` or by default
    /// the key's max op ttl from now.
    pub async fn sign(
        &self,
        op: &PackedUserOperation,
        valid_until: Option<u64>,
    ) -> Result<Signed, ClientError> {
        let params = json!({ "userOp": RpcUserOperation::from_packed(op).to_json(), "validUntil": valid_until });
        serde_json::from_value(self.call("sign", params).await?).map_err(transport)
    }

    /// Asks the sidecar to sign `order` (it names the key) for `venue`.
    pub async fn sign_order(
        &self,
        venue: Address,
        order: &Order,
    ) -> Result<SignedOrder, ClientError> {
        let params = json!({ "venue": venue, "order": OrderJson::from(order) });
        serde_json::from_value(self.call("sign_order", params).await?).map_err(transport)
    }

    /// Asks the sidecar to sign a matcher request (cancel, cancel-all, schedule a cancel-all, subscribe)
    /// with the key it names.
    pub async fn sign_request(&self, request: &Request) -> Result<SignedRequest, ClientError> {
        let params = serde_json::to_value(RequestParams::from(request)).map_err(transport)?;
        serde_json::from_value(self.call("sign_request", params).await?).map_err(transport)
    }
}
