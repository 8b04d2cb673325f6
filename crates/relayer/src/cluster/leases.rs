//! The lease statements: instances announce themselves, take, renew and release sender shards and bundle
//! keys. Time is Postgres's clock (`clock_timestamp()`), one clock for every instance, so lease expiry
//! does not depend on the instances' clocks agreeing.

use std::{collections::BTreeMap, time::Duration};

use alloy_primitives::Address;
use deadpool_postgres::Pool;

use crate::store::StoreError;

fn err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Write(format!("lease: {e}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The lease statements of one instance.
#[derive(Debug, Clone)]
pub struct Leases {
    /// The database.
    pub pool: Pool,
    /// This instance's name (the owner written in the lease rows).
    pub instance: String,
    /// How long a lease lasts unrenewed.
    pub lease: Duration,
}

impl Leases {
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(err)
    }

    /// `work` within one lease time: a statement Postgres has not answered by then (a cut network, a
    /// stuck server) fails, and the round is tried again.
    async fn timed<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.lease, work)
            .await
            .map_err(|_| err(format!("Postgres did not answer within {:?}", self.lease)))?
    }

    /// Whether this instance's name is free to take: no instance announced itself under it within a
    /// lease, or the one that did has stopped announcing (a predecessor that stopped or crashed). An
    /// instance still announcing itself under it after `wait` (at least one renewal) holds it.
    pub async fn name_free(&self, wait: Duration) -> Result<bool, StoreError> {
        let seen = || {
            self.timed(async {
                let c = self.client().await?;
                let row = c
                    .query_opt(
                        "SELECT (extract(epoch FROM seen_at) * 1000000)::int8, \
                         seen_at > clock_timestamp() - $2 * interval '1 millisecond' \
                         FROM instances WHERE name = $1",
                        &[&self.instance, &ms(self.lease)],
                    )
                    .await
                    .map_err(err)?;
                Ok(row.map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1))))
            })
        };
        let Some((at, true)) = seen().await? else {
            return Ok(true);
        };
        tokio::time::sleep(wait).await;
        Ok(seen().await?.is_none_or(|(again, _)| again == at))
    }

    /// Announces (or refreshes) this instance and where it serves; returns how many instances are live
    /// (seen within a lease), itself included.
    pub async fn heartbeat(&self, url: &str) -> Result<u16, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            c.execute(
                "INSERT INTO instances (name, url, started_at, seen_at) \
                 VALUES ($1, $2, clock_timestamp(), clock_timestamp()) \
                 ON CONFLICT (name) DO UPDATE SET url = $2, seen_at = clock_timestamp()",
                &[&self.instance, &url],
            )
            .await
            .map_err(err)?;
            let live: i64 = c
                .query_one(
                    "SELECT count(*) FROM instances \
                     WHERE seen_at > clock_timestamp() - $1 * interval '1 millisecond'",
                    &[&ms(self.lease)],
                )
                .await
                .map_err(err)?
                .get(0);
            Ok(live.clamp(1, i64::from(u16::MAX)) as u16)
        })
        .await
    }

    /// Takes `shard` if it is free or its lease expired, raising its epoch; returns the new epoch.
    pub async fn take_shard(&self, shard: u16) -> Result<Option<u64>, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "UPDATE shard_leases SET owner = $1, epoch = epoch + 1, \
                     expires_at = clock_timestamp() + $2 * interval '1 millisecond' \
                     WHERE shard = $3 AND (owner IS NULL OR expires_at < clock_timestamp()) RETURNING epoch",
                    &[&self.instance, &ms(self.lease), &i32::from(shard)],
                )
                .await
                .map_err(err)?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
        .await
    }

    /// Renews the shards held (shard → epoch); returns those still held (a shard taken over since has
    /// another owner or a higher epoch and is not renewed).
    pub async fn renew_shards(
        &self,
        held: &BTreeMap<u16, u64>,
    ) -> Result<BTreeMap<u16, u64>, StoreError> {
        self.timed(async {
            if held.is_empty() {
                return Ok(BTreeMap::new());
            }
            let shards: Vec<i32> = held.keys().map(|s| i32::from(*s)).collect();
            let epochs: Vec<i64> = held.values().map(|e| *e as i64).collect();
            let c = self.client().await?;
            let rows = c
                .query(
                    "UPDATE shard_leases s SET expires_at = clock_timestamp() + $2 * interval '1 millisecond' \
                     FROM unnest($3::int[], $4::bigint[]) AS h(shard, epoch) \
                     WHERE s.shard = h.shard AND s.epoch = h.epoch AND s.owner = $1 RETURNING s.shard, s.epoch",
                    &[&self.instance, &ms(self.lease), &shards, &epochs],
                )
                .await
                .map_err(err)?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i32>(0) as u16, r.get::<_, i64>(1) as u64))
                .collect())
        })
        .await
    }

    /// Gives `shard` up (held at `epoch`): it is free at once for another instance.
    pub async fn release_shard(&self, shard: u16, epoch: u64) -> Result<(), StoreError> {
        self.timed(async {
            let c = self.client().await?;
            c.execute(
                "UPDATE shard_leases SET owner = NULL, expires_at = 'epoch' \
                 WHERE shard = $1 AND owner = $2 AND epoch = $3",
                &[&i32::from(shard), &self.instance, &(epoch as i64)],
            )
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }

    /// Shards free or with an expired lease, lowest first.
    pub async fn free_shards(&self) -> Result<Vec<u16>, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT shard FROM shard_leases \
                     WHERE owner IS NULL OR expires_at < clock_timestamp() ORDER BY shard",
                    &[],
                )
                .await
                .map_err(err)?;
            Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u16).collect())
        })
        .await
    }

    /// Where the live owner of `shard` serves, if it has one.
    pub async fn owner_of(&self, shard: u16) -> Result<Option<(String, String)>, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT l.owner, i.url FROM shard_leases l JOIN instances i ON i.name = l.owner \
                     WHERE l.shard = $1 AND l.expires_at > clock_timestamp()",
                    &[&i32::from(shard)],
                )
                .await
                .map_err(err)?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
        .await
    }

    /// Takes bundle key `address` if it is free, expired, or already this instance's (a restart);
    /// returns the new epoch.
    pub async fn take_key(&self, address: Address) -> Result<Option<u64>, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            c.execute(
                "INSERT INTO key_leases (address) VALUES ($1) ON CONFLICT (address) DO NOTHING",
                &[&address.as_slice()],
            )
            .await
            .map_err(err)?;
            let row = c
                .query_opt(
                    "UPDATE key_leases SET owner = $1, epoch = epoch + 1, \
                     expires_at = clock_timestamp() + $2 * interval '1 millisecond' \
                     WHERE address = $3 AND (owner IS NULL OR owner = $1 OR expires_at < clock_timestamp()) \
                     RETURNING epoch",
                    &[&self.instance, &ms(self.lease), &address.as_slice()],
                )
                .await
                .map_err(err)?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
        .await
    }

    /// Renews bundle key `address` held at `epoch`; false if it was taken over.
    pub async fn renew_key(&self, address: Address, epoch: u64) -> Result<bool, StoreError> {
        self.timed(async {
            let c = self.client().await?;
            let n = c
                .execute(
                    "UPDATE key_leases SET expires_at = clock_timestamp() + $2 * interval '1 millisecond' \
                     WHERE address = $3 AND owner = $1 AND epoch = $4",
                    &[
                        &self.instance,
                        &ms(self.lease),
                        &address.as_slice(),
                        &(epoch as i64),
                    ],
                )
                .await
                .map_err(err)?;
            Ok(n == 1)
        })
        .await
    }

    /// Gives bundle key `address` (held at `epoch`) up.
    pub async fn release_key(&self, address: Address, epoch: u64) -> Result<(), StoreError> {
        self.timed(async {
            let c = self.client().await?;
            c.execute(
                "UPDATE key_leases SET owner = NULL, expires_at = 'epoch' \
                 WHERE address = $1 AND owner = $2 AND epoch = $3",
                &[&address.as_slice(), &self.instance, &(epoch as i64)],
            )
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }
}
