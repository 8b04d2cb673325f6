//! What members say to each other over their TLS connections: length-prefixed JSON frames. A connection
//! opens with a [`Hello`]: either a protocol session (key generation, a presignature) the caller joins
//! this member to, or an online connection carrying partial-signature requests and answers.

use std::io;

use alloy_primitives::B256;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::share::KeyCurve;

/// The largest frame accepted (a key generation message with its proofs is far below it).
const MAX_FRAME: usize = 16 << 20;

/// The kind of a protocol session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionKind {
    /// Auxiliary info among all members: each one's Paillier key and its proofs.
    Aux,
    /// Distributed key generation with threshold `t` among all members (auxiliary info first).
    Keygen {
        /// The curve the key is on.
        curve: KeyCurve,
        /// How many members it takes to sign.
        t: u16,
    },
    /// A presignature among the session's parties, for a later online signature.
    Presign,
}

/// A connection's first frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Hello {
    /// Join session `eid`, started by member `coordinator`, among `parties` (member indices in protocol
    /// order).
    Session {
        /// The session's execution id, which binds its messages.
        eid: B256,
        /// Which protocol the session runs.
        kind: SessionKind,
        /// The member that started it.
        coordinator: u16,
        /// The parties, by member index, in protocol order.
        parties: Vec<u16>,
    },
    /// Partial-signature requests follow on this connection.
    Online,
}

/// A request for a partial signature with a presignature this member holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialRequest {
    /// The presignature's id (its session's execution id).
    pub presignature: B256,
    /// The digest to sign.
    pub digest: B256,
    /// What the digest is of, for this member's own policy check (the sidecar's order, op or request).
    pub context: serde_json::Value,
}

/// One protocol message inside a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProtocolFrame {
    /// True if the message is for every party, false if for one.
    pub broadcast: bool,
    /// The protocol's message as JSON.
    pub msg: serde_json::Value,
}

/// Writes `value` as one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> io::Result<()> {
    let body = serde_json::to_vec(value)?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one frame as a `T`.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
