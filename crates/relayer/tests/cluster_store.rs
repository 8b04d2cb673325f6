//! The Postgres store on a throwaway cluster: the store contract both backends keep (records, the
//! unfinished ones in order, the audit hash chain), migrations, and the fences — a write made under a
//! shard or bundle-key lease another instance has since taken over is refused and changes nothing,
//! while the same write by the lease's holder commits.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{Address, B256};
use keyscope_core::{ops::OpKind, rpc_op::RpcUserOperation};
use keyscope_relayer::{
    cluster::{Fence, leases::Leases},
    local_postgres::LocalPostgres,
    store::{
        AuditEntry, Backend, OpEvent, OpRecord, OpStatus, StoreError, Timings, postgres::PgStore,
        redb::RedbStore, verify_audit,
    },
};

const SHARDS: u16 = 4;
const LEASE: Duration = Duration::from_millis(300);

fn record(n: u8, sender: Address, status: OpStatus) -> OpRecord {
    let mut user_operation = RpcUserOperation::from_packed(&Default::default());
    user_operation.sender = sender;
    OpRecord {
        hash: B256::repeat_byte(n),
        user_operation,
        kind: OpKind::Other,
        session_key: None,
        keyscope: false,
        status,
        order: n as u64,
        valid_until: u64::MAX,
        timings: Timings::default(),
        tx_hash: (status.in_bundle() || status == OpStatus::Included)
            .then(|| B256::repeat_byte(0xee)),
        block_number: None,
        block_hash: None,
        success: None,
        reason: None,
        replaced_txs: Vec::new(),
        health: None,
    }
}

/// A sender in `shard`.
fn sender_in(shard: u16) -> Address {
    (0u64..)
        .map(|i| Address::left_padding_from(&i.to_be_bytes()))
        .find(|a| keyscope_relayer::cluster::shard_of(*a, SHARDS) == shard)
        .unwrap()
}

/// What both backends must do alike.
async fn keeps_the_contract(store: &dyn Backend, sender: Address) {
    let a = record(1, sender, OpStatus::Pending);
    let b = record(2, sender, OpStatus::Included);
    let c = record(3, sender, OpStatus::Pending);
    store
        .write(
            vec![c.clone(), a.clone(), b.clone()],
            vec![
                AuditEntry::about(&a, OpEvent::Accepted, 1),
                AuditEntry::about(&b, OpEvent::Accepted, 2),
            ],
        )
        .await
        .unwrap();
    store
        .write(vec![], vec![AuditEntry::about(&b, OpEvent::Included, 3)])
        .await
        .unwrap();
    assert_eq!(store.op(a.hash).await.unwrap(), Some(a.clone()));
    assert_eq!(store.op(B256::repeat_byte(9)).await.unwrap(), None);
    let unfinished: Vec<B256> = store
        .unfinished()
        .await
        .unwrap()
        .iter()
        .map(|r| r.hash)
        .collect();
    assert_eq!(unfinished, vec![a.hash, c.hash], "acceptance order");
    assert_eq!(store.op_count().await.unwrap(), 3);
    assert_eq!(store.max_order().await.unwrap(), 3);
    let log = store.audit(0, 100).await.unwrap();
    assert_eq!(log.len(), 3);
    verify_audit(&log).unwrap();
    assert_eq!(store.audit(1, 1).await.unwrap(), vec![log[1].clone()]);
}

async fn pg_store(pg: &LocalPostgres, name: &str) -> (Arc<PgStore>, Arc<Fence>, Leases) {
    let fence = Arc::new(Fence::new(name.into(), SHARDS));
    let store = Arc::new(
        PgStore::open(&pg.url(), fence.clone(), Default::default())
            .await
            .unwrap(),
    );
    let leases = Leases {
        pool: store.pool().clone(),
        instance: name.into(),
        lease: LEASE,
    };
    (store, fence, leases)
}

#[tokio::test]
async fn both_backends_keep_the_store_contract() {
    let dir = std::env::temp_dir().join(format!("keyscope-contract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("relayer.redb");
    keeps_the_contract(&RedbStore::open(&path).unwrap(), Address::repeat_byte(1)).await;
    // The file survives closing and reopening, and the audit chain continues across it.
    let redb = RedbStore::open(&path).unwrap();
    assert_eq!(redb.op_count().await.unwrap(), 3);
    let next = record(4, Address::repeat_byte(1), OpStatus::Pending);
    redb.write(vec![], vec![AuditEntry::about(&next, OpEvent::Accepted, 4)])
        .await
        .unwrap();
    let log = redb.audit(0, 100).await.unwrap();
    assert_eq!(log.len(), 4);
    verify_audit(&log).unwrap();
    assert!(log[0].user_operation.is_some() && log[2].user_operation.is_none());
    drop(redb);

    let Some(pg) = LocalPostgres::for_test("both_backends_keep_the_store_contract") else {
        return;
    };
    let (store, fence, leases) = pg_store(&pg, "a").await;
    let sender = sender_in(2);
    // No lease on the sender's shard: refused before anything is written.
    let e = store
        .write(vec![record(7, sender, OpStatus::Pending)], vec![])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Fenced(_)), "{e}");
    assert_eq!(store.op_count().await.unwrap(), 0);
    let epoch = leases.take_shard(2).await.unwrap().unwrap();
    fence.hold(2, epoch);
    keeps_the_contract(&*store, sender).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_stale_owner_cannot_write_after_a_takeover() {
    let Some(pg) = LocalPostgres::for_test("a_stale_owner_cannot_write_after_a_takeover") else {
        return;
    };
    let (a, fence_a, leases_a) = pg_store(&pg, "a").await;
    let (b, fence_b, leases_b) = pg_store(&pg, "b").await;
    let sender = sender_in(1);

    let e1 = leases_a.take_shard(1).await.unwrap().unwrap();
    fence_a.hold(1, e1);
    // A live lease cannot be taken.
    assert_eq!(leases_b.take_shard(1).await.unwrap(), None);
    a.write(
        vec![record(1, sender, OpStatus::Pending)],
        vec![AuditEntry::about(
            &record(1, sender, OpStatus::Pending),
            OpEvent::Accepted,
            1,
        )],
    )
    .await
    .unwrap();

    // A stalls past its lease; B takes the shard over at a higher epoch.
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    let e2 = leases_b.take_shard(1).await.unwrap().unwrap();
    assert!(e2 > e1);
    fence_b.hold(1, e2);
    // A's renewal finds it gone.
    assert!(
        leases_a
            .renew_shards(&fence_a.owned())
            .await
            .unwrap()
            .is_empty()
    );

    // A wakes and writes as if it still held the shard: refused, nothing changes.
    let stale = record(1, sender, OpStatus::Dropped);
    let e = a
        .write(
            vec![stale.clone()],
            vec![AuditEntry::about(&stale, OpEvent::Dropped, 2)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Fenced(m) if m.contains("taken over")),
        "{e}"
    );
    assert_eq!(
        b.op(stale.hash).await.unwrap().unwrap().status,
        OpStatus::Pending
    );
    assert_eq!(b.audit(0, 10).await.unwrap().len(), 1);

    // The new owner's write of the same op commits.
    let claimed = record(1, sender, OpStatus::Claimed);
    let key = Address::repeat_byte(0x4b);
    let k1 = leases_b.take_key(key).await.unwrap().unwrap();
    fence_b.set_key(Some((key, k1)));
    b.write(
        vec![claimed.clone()],
        vec![AuditEntry::about(&claimed, OpEvent::Bundled, 3)],
    )
    .await
    .unwrap();
    assert_eq!(a.op(claimed.hash).await.unwrap(), Some(claimed.clone()));

    // The bundle key fences claims the same way: once another instance holds the key, B's claim is
    // refused (its writes of received ops, which need no key, still commit).
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    let k2 = leases_a.take_key(key).await.unwrap().unwrap();
    assert!(k2 > k1);
    assert!(!leases_b.renew_key(key, k1).await.unwrap());
    let sent = record(1, sender, OpStatus::Submitted);
    let e = b.write(vec![sent], vec![]).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Fenced(m) if m.contains("bundle key")),
        "{e}"
    );
    assert_eq!(a.op(claimed.hash).await.unwrap(), Some(claimed));
    b.write(vec![record(2, sender, OpStatus::Pending)], vec![])
        .await
        .unwrap();

    let log = a.audit(0, 10).await.unwrap();
    assert_eq!(log.len(), 2, "one chain for both instances");
    verify_audit(&log).unwrap();
}

#[tokio::test]
async fn migrations_apply_once_and_the_shard_count_is_fixed() {
    let Some(pg) = LocalPostgres::for_test("migrations_apply_once_and_the_shard_count_is_fixed")
    else {
        return;
    };
    // Two instances opening at once: one migrates, the other finds it done.
    let (one, two) = tokio::join!(pg_store(&pg, "a"), pg_store(&pg, "b"));
    drop((one, two));
    let other = PgStore::open(
        &pg.url(),
        Arc::new(Fence::new("c".into(), SHARDS * 2)),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        other.to_string().contains("this deployment has 4 shards"),
        "{other}"
    );
    let unreachable = PgStore::open(
        "postgres://postgres@127.0.0.1:1/postgres",
        Arc::new(Fence::new("d".into(), SHARDS)),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(unreachable, StoreError::Open { .. }),
        "{unreachable}"
    );
}
