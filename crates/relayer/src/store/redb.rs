//! The embedded backend: a redb file (crash-safe, fsync'd commits) and one writer thread that owns its
//! write transactions. Commits are grouped: the writer drains every write that is waiting and commits
//! them in one transaction, so concurrent clients share the fsync.

use std::{path::Path, sync::Arc, thread};

use alloy_primitives::{Address, B256};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::{
    AuditEntry, Backend, OpRecord, OpStatus, StoreError, read_err, verify_audit, write_err,
};
use crate::records::ReputationEntry;

const OPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ops");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Factory and paymaster reputation (ERC-7562), address → counters: the last snapshot saved.
const REPUTATION: TableDefinition<&[u8], &[u8]> = TableDefinition::new("reputation");

struct Batch {
    ops: Vec<OpRecord>,
    audit: Vec<AuditEntry>,
    /// A whole new reputation snapshot, replacing the saved one.
    reputation: Option<Vec<(Address, ReputationEntry)>>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The redb backend. The file is closed when it is dropped (the writer finishes what is queued first).
pub struct RedbStore {
    db: Arc<Database>,
    writer: mpsc::UnboundedSender<Batch>,
    _closer: Arc<Closer>,
}

struct Closer(std::sync::Mutex<Option<thread::JoinHandle<()>>>);

impl Drop for Closer {
    fn drop(&mut self) {
        // Runs after every Store clone (and so every sender) is gone: the writer's loop has ended.
        if let Some(t) = self.0.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path` and starts its writer.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let db = open_database(path)?;
        let txn = db.begin_write().map_err(|e| open(e.to_string()))?;
        txn.open_table(OPS).map_err(|e| open(e.to_string()))?;
        txn.open_table(AUDIT).map_err(|e| open(e.to_string()))?;
        txn.open_table(REPUTATION)
            .map_err(|e| open(e.to_string()))?;
        txn.commit().map_err(|e| open(e.to_string()))?;
        let db = Arc::new(db);
        let (head_seq, head_hash) = last_audit(&db)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_db = db.clone();
        let thread = thread::Builder::new()
            .name("keyscope-store".into())
            .spawn(move || writer(writer_db, rx, head_seq, head_hash))
            .map_err(|e| open(e.to_string()))?;
        Ok(Self {
            db,
            writer: tx,
            _closer: Arc::new(Closer(std::sync::Mutex::new(Some(thread)))),
        })
    }

    /// Queues a batch for the writer and waits for its commit.
    async fn send(
        &self,
        ops: Vec<OpRecord>,
        audit: Vec<AuditEntry>,
        reputation: Option<Vec<(Address, ReputationEntry)>>,
    ) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(Batch {
                ops,
                audit,
                reputation,
                done,
            })
            .map_err(|_| StoreError::Write("the store writer has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Write("the store writer has stopped".into()))?
            .map_err(StoreError::Write)
    }
}

#[async_trait::async_trait]
impl Backend for RedbStore {
    /// Durably writes `ops` (replacing their earlier records) and appends `audit`; returns once
    /// committed.
    async fn write(&self, ops: Vec<OpRecord>, audit: Vec<AuditEntry>) -> Result<(), StoreError> {
        if ops.is_empty() && audit.is_empty() {
            return Ok(());
        }
        self.send(ops, audit, None).await
    }

    /// Durably replaces the saved reputation with `entries`.
    async fn save_reputation(
        &self,
        entries: Vec<(Address, ReputationEntry)>,
    ) -> Result<(), StoreError> {
        self.send(Vec::new(), Vec::new(), Some(entries)).await
    }

    /// The reputation last saved.
    async fn reputation(&self) -> Result<Vec<(Address, ReputationEntry)>, StoreError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(REPUTATION).map_err(read_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(read_err)? {
            let (k, v) = row.map_err(read_err)?;
            out.push((
                Address::from_slice(k.value()),
                serde_json::from_slice(v.value()).map_err(read_err)?,
            ));
        }
        Ok(out)
    }

    /// One op's record.
    async fn op(&self, hash: B256) -> Result<Option<OpRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(OPS).map_err(read_err)?;
        match table.get(hash.as_slice()).map_err(read_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    /// Every op not yet included or dropped, in acceptance order: what a restart resumes.
    async fn unfinished(&self) -> Result<Vec<OpRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(OPS).map_err(read_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(read_err)? {
            let (_, v) = row.map_err(read_err)?;
            let rec: OpRecord = serde_json::from_slice(v.value()).map_err(read_err)?;
            if !rec.status.is_final() {
                out.push(rec);
            }
        }
        out.sort_by_key(|r| r.order);
        Ok(out)
    }

    /// Ops included at or above block `from`: the bundles a restart must keep watching for reorgs.
    async fn included_since(&self, from: u64) -> Result<Vec<OpRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(OPS).map_err(read_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(read_err)? {
            let (_, v) = row.map_err(read_err)?;
            let rec: OpRecord = serde_json::from_slice(v.value()).map_err(read_err)?;
            if rec.status == OpStatus::Included && rec.block_number.is_some_and(|b| b >= from) {
                out.push(rec);
            }
        }
        out.sort_by_key(|r| r.order);
        Ok(out)
    }

    /// Number of op records.
    async fn op_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        txn.open_table(OPS)
            .map_err(read_err)?
            .len()
            .map_err(read_err)
    }

    /// Audit entries from `from` (inclusive), at most `limit`.
    async fn audit(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        read_audit(&*self.db, from, limit)
    }

    /// The highest order number stored (new ops continue after it).
    async fn max_order(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(OPS).map_err(read_err)?;
        let mut max = 0;
        for row in table.iter().map_err(read_err)? {
            let (_, v) = row.map_err(read_err)?;
            let rec: OpRecord = serde_json::from_slice(v.value()).map_err(read_err)?;
            max = max.max(rec.order);
        }
        Ok(max)
    }
}

fn read_audit<D: ReadableDatabase>(
    db: &D,
    from: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let txn = db.begin_read().map_err(read_err)?;
    let table = txn.open_table(AUDIT).map_err(read_err)?;
    let mut out = Vec::new();
    for row in table.range(from..).map_err(read_err)?.take(limit) {
        let (k, v) = row.map_err(read_err)?;
        let e: AuditEntry = serde_json::from_slice(v.value()).map_err(|e| StoreError::Audit {
            seq: k.value(),
            reason: e.to_string(),
        })?;
        out.push(e);
    }
    Ok(out)
}

/// Reads the whole audit log of a store file without opening it for writing (for export while the
/// relayer is stopped), and checks its hash chain.
pub fn export_audit(path: &Path) -> Result<Vec<AuditEntry>, StoreError> {
    let db = redb::ReadOnlyDatabase::open(path).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        reason: format!(
            "{e} (a running relayer holds the store: stop it, or use the keyscope_auditLog method)"
        ),
    })?;
    let entries = read_audit(&db, 0, usize::MAX)?;
    verify_audit(&entries)?;
    Ok(entries)
}

fn last_audit(db: &Database) -> Result<(u64, B256), StoreError> {
    let txn = db.begin_read().map_err(read_err)?;
    let table = txn.open_table(AUDIT).map_err(read_err)?;
    match table.last().map_err(read_err)? {
        Some((k, v)) => {
            let e: AuditEntry =
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Audit {
                    seq: k.value(),
                    reason: e.to_string(),
                })?;
            Ok((k.value() + 1, e.hash))
        }
        None => Ok((0, B256::ZERO)),
    }
}

fn writer(
    db: Arc<Database>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    mut next_seq: u64,
    mut prev: B256,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let (seq0, prev0) = (next_seq, prev);
        let result = (|| -> Result<(), StoreError> {
            let txn = db.begin_write().map_err(write_err)?;
            {
                let mut ops = txn.open_table(OPS).map_err(write_err)?;
                let mut audit = txn.open_table(AUDIT).map_err(write_err)?;
                let mut reputation = txn.open_table(REPUTATION).map_err(write_err)?;
                for batch in &batches {
                    if let Some(entries) = &batch.reputation {
                        reputation.retain(|_, _| false).map_err(write_err)?;
                        for (a, e) in entries {
                            let json = serde_json::to_vec(e).map_err(write_err)?;
                            reputation
                                .insert(a.as_slice(), json.as_slice())
                                .map_err(write_err)?;
                        }
                    }
                    for rec in &batch.ops {
                        let json = serde_json::to_vec(rec).map_err(write_err)?;
                        ops.insert(rec.hash.as_slice(), json.as_slice())
                            .map_err(write_err)?;
                    }
                    for entry in &batch.audit {
                        let mut e = entry.clone();
                        e.seq = next_seq;
                        e.prev = prev;
                        e.hash = e.chained_hash();
                        let json = serde_json::to_vec(&e).map_err(write_err)?;
                        audit.insert(next_seq, json.as_slice()).map_err(write_err)?;
                        next_seq += 1;
                        prev = e.hash;
                    }
                }
            }
            txn.commit().map_err(write_err)
        })();
        if result.is_err() {
            (next_seq, prev) = (seq0, prev0);
        }
        for batch in batches {
            let _ = batch
                .done
                .send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
    }
}

/// The redb database in the file at `path` (created, with its directory, if missing; 0600).
pub(super) fn open_database(path: &Path) -> Result<Database, StoreError> {
    let open = |reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| open(e.to_string()))?;
    }
    let file = open_private(path).map_err(|e| open(e.to_string()))?;
    let backend = redb::backends::FileBackend::new(file).map_err(|e| open(e.to_string()))?;
    Database::builder()
        .create_with_backend(backend)
        .map_err(|e| open(e.to_string()))
}

/// Opens `path` to read and write, creating it readable and writable by its owner only (0600 on Unix,
/// set as it is created): it holds every op and the audit log. An existing file keeps its mode.
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::OpEvent;
    use crate::store::Timings;
    use keyscope_core::{ops::OpKind, rpc_op::RpcUserOperation};

    fn record(n: u8, status: OpStatus) -> OpRecord {
        OpRecord {
            hash: B256::repeat_byte(n),
            user_operation: RpcUserOperation::from_packed(&Default::default()),
            kind: OpKind::Other,
            session_key: None,
            keyscope: false,
            status,
            order: n as u64,
            valid_until: u64::MAX,
            timings: Timings::default(),
            tx_hash: None,
            block_number: None,
            block_hash: None,
            success: None,
            reason: None,
            replaced_txs: Vec::new(),
            health: None,
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keyscope-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("relayer.redb")
    }

    #[tokio::test]
    async fn a_reputation_snapshot_replaces_the_last_and_survives_reopen() {
        let path = temp("reputation");
        let entry = |seen, included| ReputationEntry {
            ops_seen: seen,
            ops_included: included,
        };
        let (a, b) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb));
        {
            let store = RedbStore::open(&path).unwrap();
            assert!(store.reputation().await.unwrap().is_empty());
            store
                .save_reputation(vec![(a, entry(10, 1)), (b, entry(5, 5))])
                .await
                .unwrap();
            // The next snapshot no longer has `b` (cleared, or decayed to nothing).
            store
                .save_reputation(vec![(a, entry(900, 1))])
                .await
                .unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.reputation().await.unwrap(), vec![(a, entry(900, 1))]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_store_file_is_created_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp("mode");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        {
            let store = RedbStore::open(&path).unwrap();
            let a = record(1, OpStatus::Pending);
            store
                .write(
                    vec![a.clone()],
                    vec![AuditEntry::about(&a, OpEvent::Accepted, 1)],
                )
                .await
                .unwrap();
        }
        assert_eq!(
            mode(&path),
            0o600,
            "ops and the audit log: the owner's only"
        );
        // Reopened, it is the same store (and the same mode).
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.audit(0, 10).await.unwrap().len(), 1);
        assert_eq!(mode(&path), 0o600);
    }

    #[tokio::test]
    async fn an_altered_audit_entry_breaks_the_chain() {
        let path = temp("tamper");
        let store = RedbStore::open(&path).unwrap();
        let a = record(1, OpStatus::Pending);
        store
            .write(
                vec![],
                vec![
                    AuditEntry::about(&a, OpEvent::Accepted, 1),
                    AuditEntry::about(&a, OpEvent::Included, 2),
                ],
            )
            .await
            .unwrap();
        let mut log = store.audit(0, 10).await.unwrap();
        log[0].at_us = 999;
        let err = verify_audit(&log).unwrap_err();
        assert!(err.to_string().contains("hash chain broken"), "{err}");
    }
}
