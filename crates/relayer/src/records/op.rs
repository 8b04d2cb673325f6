//! What the relayer records about an op: its record (status, timings, where it was mined, its health), and
//! the audit log's entries — a hash chain, each entry naming the hash of the one before, so an edited or
//! deleted entry breaks every hash after it.

use alloy_primitives::{Address, B256, U256, keccak256};
use keyscope_core::{ops::OpKind, rpc_op::RpcUserOperation};
use serde::{Deserialize, Serialize};

use super::HealthChange;

/// Where an op is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OpStatus {
    /// Received: in the pool, waiting for a bundle.
    Pending,
    /// Claimed: taken into a bundle transaction that is signed and recorded, and about to be sent (a
    /// relayer that stops here may or may not have handed it to the node).
    Claimed,
    /// Sent: in a bundle transaction the node took, not yet mined.
    Submitted,
    /// Mined.
    Included,
    /// Left the pool without being included (expired, invalidated, replaced).
    Dropped,
}

impl OpStatus {
    /// True once the op is included or dropped: nothing more happens to it (short of a reorg).
    pub fn is_final(self) -> bool {
        matches!(self, OpStatus::Included | OpStatus::Dropped)
    }

    /// True while the op is in a bundle transaction (claimed or sent) not yet seen mined.
    pub fn in_bundle(self) -> bool {
        matches!(self, OpStatus::Claimed | OpStatus::Submitted)
    }

    /// Its name in the lifecycle received → claimed → sent → mined (or dropped).
    pub fn lifecycle_name(self) -> &'static str {
        match self {
            OpStatus::Pending => "received",
            OpStatus::Claimed => "claimed",
            OpStatus::Submitted => "sent",
            OpStatus::Included => "mined",
            OpStatus::Dropped => "dropped",
        }
    }
}

/// What happened to an op: the audit log's event names, and what metrics count
/// (`keyscope_op_events_total{event}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpEvent {
    /// Validated and pooled.
    Accepted,
    /// Replaced in the pool by an op of the same sender and nonce paying more.
    Replaced,
    /// Taken into a bundle transaction that was sent.
    Bundled,
    /// Its bundle transaction was re-sent with higher fees.
    Bumped,
    /// A fee bump of its bundle was refused by the node; the bundle sent before stays.
    #[serde(rename = "bump refused")]
    BumpRefused,
    /// Seen mined.
    Included,
    /// Included, its block reorged away, and its bundle mined again in another block.
    Reincluded,
    /// Left the pool without being included (expired, invalidated, not paying).
    Dropped,
    /// Its bundle left the canonical chain: back in the pool.
    Reorged,
    /// Its bundle transaction was dropped or never mined: back in the pool to be sent again.
    Resubmit,
    /// Seen mined, then found not mined after all: back in the pool.
    Unincluded,
    /// Taken out of a bundle before it was sent: back in the pool.
    Unbundled,
}

impl OpEvent {
    /// Every event, in the order metrics list them.
    pub const ALL: [OpEvent; 12] = [
        OpEvent::Accepted,
        OpEvent::Replaced,
        OpEvent::Bundled,
        OpEvent::Bumped,
        OpEvent::BumpRefused,
        OpEvent::Included,
        OpEvent::Reincluded,
        OpEvent::Dropped,
        OpEvent::Reorged,
        OpEvent::Resubmit,
        OpEvent::Unincluded,
        OpEvent::Unbundled,
    ];

    /// Its name in the audit log and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OpEvent::Accepted => "accepted",
            OpEvent::Replaced => "replaced",
            OpEvent::Bundled => "bundled",
            OpEvent::Bumped => "bumped",
            OpEvent::BumpRefused => "bump refused",
            OpEvent::Included => "included",
            OpEvent::Reincluded => "reincluded",
            OpEvent::Dropped => "dropped",
            OpEvent::Reorged => "reorged",
            OpEvent::Resubmit => "resubmit",
            OpEvent::Unincluded => "unincluded",
            OpEvent::Unbundled => "unbundled",
        }
    }

    /// Its place in [`OpEvent::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for OpEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When an op passed each stage, in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// The request arrived.
    pub received_us: u64,
    /// It was validated and pooled.
    pub validated_us: Option<u64>,
    /// It was taken into a bundle.
    pub bundled_us: Option<u64>,
    /// Its bundle transaction was sent.
    pub sent_us: Option<u64>,
    /// Its bundle was seen mined.
    pub mined_us: Option<u64>,
}

/// Everything the relayer knows about one op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpRecord {
    /// The op's ERC-4337 hash.
    pub hash: B256,
    /// The op as the client signed and sent it.
    pub user_operation: RpcUserOperation,
    /// Protective (bundled first) or not.
    pub kind: OpKind,
    /// The session key it spends, if any.
    pub session_key: Option<Address>,
    /// The sender is a Keyscope TradingAccount.
    #[serde(default)]
    pub keyscope: bool,
    /// Where it is in its life.
    pub status: OpStatus,
    /// Acceptance order (the pending state is rebuilt in it).
    pub order: u64,
    /// When its validity ends (Unix seconds; u64::MAX: never).
    pub valid_until: u64,
    /// When it passed each stage.
    pub timings: Timings,
    /// The bundle transaction that carries it (or carried it, once mined).
    pub tx_hash: Option<B256>,
    /// Earlier transactions of the op's bundle that a fee bump replaced (one of them may still be
    /// the one mined).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced_txs: Vec<B256>,
    /// The block that mined it.
    pub block_number: Option<u64>,
    /// That block's hash (a reorg changes it).
    pub block_hash: Option<B256>,
    /// Whether its execution succeeded, once mined.
    pub success: Option<bool>,
    /// Why it was dropped, sent again or returned to the pool.
    pub reason: Option<String>,
    /// The account's venue health around it, on the pending state (ops sent with
    /// `keyscope_sendUserOperation`).
    pub health: Option<HealthChange>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Its place in the log.
    pub seq: u64,
    /// When it happened (microseconds since the Unix epoch).
    pub at_us: u64,
    /// What happened.
    pub event: OpEvent,
    /// The op it is about.
    pub user_op_hash: B256,
    /// The op's account.
    pub sender: Address,
    /// The session key that signed it, if any.
    pub session_key: Option<Address>,
    /// The op's nonce.
    pub nonce: U256,
    /// The bundle transaction, once bundled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<B256>,
    /// The block that mined it, once included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
    /// Why (drops, returns to the pool, fee bumps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The signed op itself, on `accepted`: with it anyone can re-check the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_operation: Option<RpcUserOperation>,
    /// Hash of the previous entry (zero for the first).
    pub prev: B256,
    /// keccak256(prev ‖ this entry's JSON without `hash`).
    #[serde(default)]
    pub hash: B256,
}

impl AuditEntry {
    /// An entry about `record`, not yet numbered or chained.
    pub fn about(record: &OpRecord, event: OpEvent, at_us: u64) -> Self {
        Self {
            seq: 0,
            at_us,
            event,
            user_op_hash: record.hash,
            sender: record.user_operation.sender,
            session_key: record.session_key,
            nonce: record.user_operation.nonce,
            tx_hash: record.tx_hash,
            block_number: record.block_number,
            reason: record.reason.clone(),
            user_operation: (event == OpEvent::Accepted).then(|| record.user_operation.clone()),
            prev: B256::ZERO,
            hash: B256::ZERO,
        }
    }

    /// keccak256(prev ‖ this entry's JSON without `hash`): what `hash` must be.
    pub fn chained_hash(&self) -> B256 {
        let mut unhashed = self.clone();
        unhashed.hash = B256::ZERO;
        let json = serde_json::to_vec(&unhashed).expect("audit entries serialize");
        keccak256([self.prev.as_slice(), &json].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::OpEvent;

    #[test]
    fn each_event_has_its_place_and_its_audit_log_name() {
        for (i, event) in OpEvent::ALL.into_iter().enumerate() {
            assert_eq!(event.index(), i);
            // The audit log stores the name: old logs' entries read back as the same event.
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(json, format!("\"{}\"", event.as_str()));
            assert_eq!(serde_json::from_str::<OpEvent>(&json).unwrap(), event);
        }
        assert!(serde_json::from_str::<OpEvent>("\"mined\"").is_err());
    }
}
