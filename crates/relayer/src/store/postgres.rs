//! The shared backend: one Postgres database for every instance of a relayer deployment.
//!
//! Each write is one transaction that first takes a shared lock on the lease rows it depends on — the
//! shard of every op it writes, and the bundle key when it claims ops for a bundle — and checks that this
//! instance still holds them at the epoch it took them ([`Fence`]). A lease taken over by another
//! instance has a higher epoch, so the write is refused ([`StoreError::Fenced`]) and nothing commits; the
//! takeover itself (an `UPDATE` of the lease row) waits for the shared lock, so a write either commits
//! before the takeover or is refused after it. Audit entries are appended under a lock on the log's head
//! row: one hash chain for the whole deployment.
//!
//! Migrations live in `crates/relayer/migrations/` and are applied at start, once, under an advisory lock.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{Address, B256};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{AuditEntry, Backend, OpRecord, StoreError, read_err, write_err};
use crate::{
    metrics::Metrics,
    records::{Fence, ReputationEntry},
};

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/0001_cluster.sql"))];

/// How long one store call may take before it fails (a database that stopped answering).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The Postgres backend.
#[derive(Debug)]
pub struct PgStore {
    pool: Pool,
    fence: Arc<Fence>,
    url: String,
    metrics: Arc<Metrics>,
}

/// The URL with its password (if any) hidden, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connects to `url`, applies the migrations not yet applied and checks that the deployment has
    /// `fence.shards` shards (its first instance fixes the number; every later one must agree).
    pub async fn open(
        url: &str,
        fence: Arc<Fence>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let open = |reason: String| StoreError::Open {
            path: redacted(url),
            reason,
        };
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| open(format!("{e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(3));
        }
        // A cut network shows as an error within seconds, not a call that hangs.
        pg.keepalives_idle(Duration::from_secs(5));
        pg.tcp_user_timeout(Duration::from_secs(5));
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CALL_TIMEOUT))
            .recycle_timeout(Some(CALL_TIMEOUT))
            .build()
            .map_err(|e| open(e.to_string()))?;
        let store = Self {
            pool,
            fence,
            url: redacted(url),
            metrics,
        };
        store.migrate().await.map_err(|e| open(e.to_string()))?;
        Ok(store)
    }

    /// The connection pool (the cluster's lease statements share it).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Read(format!("no connection to Postgres: {e}")))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let t = c.transaction().await.map_err(write_err)?;
        // One instance migrates; the others wait here, then find nothing left to do.
        t.execute("SELECT pg_advisory_xact_lock(4337)", &[])
            .await
            .map_err(write_err)?;
        t.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
        )
        .await
        .map_err(write_err)?;
        for (version, sql) in MIGRATIONS {
            let done = t
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await
                .map_err(write_err)?
                .is_some();
            if !done {
                t.batch_execute(sql).await.map_err(write_err)?;
                t.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await
                .map_err(write_err)?;
            }
        }
        let shards = i32::from(self.fence.shards);
        t.execute(
            "INSERT INTO cluster (shards) VALUES ($1) ON CONFLICT (id) DO NOTHING",
            &[&shards],
        )
        .await
        .map_err(write_err)?;
        let fixed: i32 = t
            .query_one("SELECT shards FROM cluster", &[])
            .await
            .map_err(write_err)?
            .get(0);
        if fixed != shards {
            return Err(StoreError::Write(format!(
                "this deployment has {fixed} shards; the instance is configured with {shards} \
                 (cluster.shards must be the same on every instance)"
            )));
        }
        t.execute(
            "INSERT INTO shard_leases (shard) SELECT generate_series(0, $1 - 1) \
             ON CONFLICT (shard) DO NOTHING",
            &[&shards],
        )
        .await
        .map_err(write_err)?;
        t.commit().await.map_err(write_err)
    }

    async fn records(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<OpRecord>, StoreError> {
        let c = self.client().await?;
        let rows = timed(c.query(sql, params)).await?.map_err(read_err)?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(read_err))
            .collect()
    }

    /// Unfinished ops of `shard`, in acceptance order: what an instance that takes the shard over resumes.
    pub async fn unfinished_in(&self, shard: u16) -> Result<Vec<OpRecord>, StoreError> {
        self.records(
            "SELECT record FROM ops WHERE shard = $1 AND state NOT IN ('mined', 'dropped') ORDER BY ord",
            &[&i32::from(shard)],
        )
        .await
    }

    /// Ops of `shard` mined at or above block `from`: the bundles a new owner watches for reorgs.
    pub async fn included_since_in(
        &self,
        shard: u16,
        from: u64,
    ) -> Result<Vec<OpRecord>, StoreError> {
        self.records(
            "SELECT record FROM ops WHERE shard = $1 AND state = 'mined' AND block_number >= $2 ORDER BY ord",
            &[&i32::from(shard), &i64_of(from)],
        )
        .await
    }

    /// The write itself (see the module doc).
    async fn write_fenced(&self, ops: &[OpRecord], audit: &[AuditEntry]) -> Result<(), StoreError> {
        let fence = &self.fence;
        let me = fence.instance.as_str();
        let mut shards: Vec<(i32, i64)> = Vec::new();
        for rec in ops {
            let shard = fence.shard_of(rec.user_operation.sender);
            let Some(epoch) = fence.epoch(shard) else {
                return Err(StoreError::Fenced(format!(
                    "this instance ({me}) does not hold shard {shard} of sender {}",
                    rec.user_operation.sender
                )));
            };
            shards.push((i32::from(shard), i64_of(epoch)));
        }
        let claim = ops.iter().any(|r| r.status.in_bundle());
        let mut c = self.client().await?;
        let t = c.transaction().await.map_err(write_err)?;
        if !shards.is_empty() {
            let ids: Vec<i32> = shards.iter().map(|s| s.0).collect();
            let rows = t
                .query(
                    "SELECT shard, owner, epoch FROM shard_leases WHERE shard = ANY($1) FOR SHARE",
                    &[&ids],
                )
                .await
                .map_err(write_err)?;
            for (shard, epoch) in &shards {
                let held = rows.iter().any(|r| {
                    r.get::<_, i32>(0) == *shard
                        && r.get::<_, Option<&str>>(1) == Some(me)
                        && r.get::<_, i64>(2) == *epoch
                });
                if !held {
                    return Err(StoreError::Fenced(format!(
                        "shard {shard} was taken over: this instance ({me}) held it at epoch {epoch}"
                    )));
                }
            }
        }
        if claim {
            let Some((key, epoch)) = fence.key() else {
                return Err(StoreError::Fenced(format!(
                    "this instance ({me}) holds no bundle key"
                )));
            };
            let held = t
                .query_opt(
                    "SELECT 1 FROM key_leases WHERE address = $1 AND owner = $2 AND epoch = $3 FOR SHARE",
                    &[&key.as_slice(), &me, &i64_of(epoch)],
                )
                .await
                .map_err(write_err)?
                .is_some();
            if !held {
                return Err(StoreError::Fenced(format!(
                    "bundle key {key} was taken over: this instance ({me}) held it at epoch {epoch}"
                )));
            }
        }
        for (rec, (shard, epoch)) in ops.iter().zip(&shards) {
            let json = serde_json::to_string(rec).map_err(write_err)?;
            let order = i64_of(rec.order);
            let block = rec.block_number.map(i64_of);
            t.execute(
                "INSERT INTO ops (hash, sender, shard, state, ord, block_number, writer, epoch, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (hash) DO UPDATE SET shard = $3, state = $4, ord = $5, block_number = $6, \
                 writer = $7, epoch = $8, record = $9, updated_at = clock_timestamp()",
                &[
                    &rec.hash.as_slice(),
                    &rec.user_operation.sender.as_slice(),
                    shard,
                    &rec.status.lifecycle_name(),
                    &order,
                    &block,
                    &me,
                    epoch,
                    &json,
                ],
            )
            .await
            .map_err(write_err)?;
        }
        if !audit.is_empty() {
            let head = t
                .query_one("SELECT next_seq, hash FROM audit_head FOR UPDATE", &[])
                .await
                .map_err(write_err)?;
            let mut seq = head.get::<_, i64>(0) as u64;
            let mut prev = B256::from_slice(head.get::<_, &[u8]>(1));
            for entry in audit {
                let mut e = entry.clone();
                e.seq = seq;
                e.prev = prev;
                e.hash = e.chained_hash();
                let json = serde_json::to_string(&e).map_err(write_err)?;
                t.execute(
                    "INSERT INTO audit (seq, entry) VALUES ($1, $2)",
                    &[&i64_of(seq), &json],
                )
                .await
                .map_err(write_err)?;
                seq += 1;
                prev = e.hash;
            }
            t.execute(
                "UPDATE audit_head SET next_seq = $1, hash = $2",
                &[&i64_of(seq), &prev.as_slice()],
            )
            .await
            .map_err(write_err)?;
        }
        t.commit().await.map_err(write_err)
    }
}

/// `f` within [`CALL_TIMEOUT`].
async fn timed<T>(f: impl std::future::Future<Output = T>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| StoreError::Read(format!("Postgres did not answer within {CALL_TIMEOUT:?}")))
}

#[async_trait::async_trait]
impl Backend for PgStore {
    async fn write(&self, ops: Vec<OpRecord>, audit: Vec<AuditEntry>) -> Result<(), StoreError> {
        if ops.is_empty() && audit.is_empty() {
            return Ok(());
        }
        match timed(self.write_fenced(&ops, &audit)).await {
            Ok(Err(e @ StoreError::Fenced(_))) => {
                Metrics::inc(&self.metrics.writes_fenced);
                Err(e)
            }
            Ok(r) => r,
            // Not known whether it committed: the caller treats it as failed, and a later write of the
            // same records (the next transition) overwrites them either way.
            Err(_) => Err(StoreError::Write(format!(
                "Postgres did not confirm the write within {CALL_TIMEOUT:?}"
            ))),
        }
    }

    async fn save_reputation(
        &self,
        entries: Vec<(Address, ReputationEntry)>,
    ) -> Result<(), StoreError> {
        let me = self.fence.instance.clone();
        let work = async {
            let mut c = self.client().await?;
            let t = c.transaction().await.map_err(write_err)?;
            t.execute("DELETE FROM reputation WHERE instance = $1", &[&me])
                .await
                .map_err(write_err)?;
            for (a, e) in &entries {
                let json = serde_json::to_string(e).map_err(write_err)?;
                t.execute(
                    "INSERT INTO reputation (instance, address, entry) VALUES ($1, $2, $3)",
                    &[&me, &a.as_slice(), &json],
                )
                .await
                .map_err(write_err)?;
            }
            t.commit().await.map_err(write_err)
        };
        timed(work).await?
    }

    async fn reputation(&self) -> Result<Vec<(Address, ReputationEntry)>, StoreError> {
        let c = self.client().await?;
        let rows = timed(c.query(
            "SELECT address, entry FROM reputation WHERE instance = $1 ORDER BY address",
            &[&self.fence.instance],
        ))
        .await?
        .map_err(read_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    Address::from_slice(r.get::<_, &[u8]>(0)),
                    serde_json::from_str(r.get::<_, &str>(1)).map_err(read_err)?,
                ))
            })
            .collect()
    }

    async fn op(&self, hash: B256) -> Result<Option<OpRecord>, StoreError> {
        Ok(self
            .records(
                "SELECT record FROM ops WHERE hash = $1",
                &[&hash.as_slice()],
            )
            .await?
            .pop())
    }

    /// The unfinished ops of the shards this instance holds (none at start: an instance resumes a shard's
    /// ops when it takes the shard).
    async fn unfinished(&self) -> Result<Vec<OpRecord>, StoreError> {
        let mut out = Vec::new();
        for shard in self.fence.owned().into_keys() {
            out.extend(self.unfinished_in(shard).await?);
        }
        out.sort_by_key(|r| r.order);
        Ok(out)
    }

    async fn included_since(&self, from: u64) -> Result<Vec<OpRecord>, StoreError> {
        let mut out = Vec::new();
        for shard in self.fence.owned().into_keys() {
            out.extend(self.included_since_in(shard, from).await?);
        }
        out.sort_by_key(|r| r.order);
        Ok(out)
    }

    async fn op_count(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let row = timed(c.query_one("SELECT count(*) FROM ops", &[]))
            .await?
            .map_err(read_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn audit(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let c = self.client().await?;
        let rows = timed(c.query(
            "SELECT seq, entry FROM audit WHERE seq >= $1 ORDER BY seq LIMIT $2",
            &[&i64_of(from), &i64_of(limit as u64)],
        ))
        .await?
        .map_err(read_err)?;
        rows.iter()
            .map(|r| {
                let seq = r.get::<_, i64>(0) as u64;
                serde_json::from_str(r.get::<_, &str>(1)).map_err(|e| StoreError::Audit {
                    seq,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    async fn max_order(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let row = timed(c.query_one("SELECT coalesce(max(ord), 0) FROM ops", &[]))
            .await?
            .map_err(read_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}
