//! Several `keyscope relayer` processes on one Postgres (a throwaway cluster) in front of one anvil, as an
//! operator runs them: ops sent to any instance are mined exactly once; the instance owning a busy shard
//! is killed with SIGKILL while its bundle waits for a block and another takes its shards and finishes
//! its ops; an instance stalled past its lease (SIGSTOP) loses its shards and cannot act on them when it
//! wakes; an instance whose network to Postgres is cut is replaced and records and sends nothing until it
//! is mended; Postgres restarted under the instances, they carry on.

mod common;
#[path = "../../relayer/tests/common/mod.rs"]
mod fixture;
#[path = "common/cluster.rs"]
mod kit;

use std::{
    collections::BTreeSet,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::providers::Provider;
use alloy_primitives::U256;
use keyscope_core::client::rpc_user_op;
use keyscope_relayer::{
    cluster::{Fence, leases::Leases, shard_of},
    local_postgres::LocalPostgres,
    store::postgres::PgStore,
};
use kit::*;
use serde_json::{Value, json};

#[tokio::test]
async fn three_instances_on_one_postgres_survive_a_kill_and_a_stall() {
    let Some(pg) =
        LocalPostgres::for_test("three_instances_on_one_postgres_survive_a_kill_and_a_stall")
    else {
        return;
    };
    let chain = fixture::Chain::start(42_200).await;
    let mut traders = Vec::new();
    for seed in 0..4 {
        traders.push(chain.trader(4200 + seed, "20000").await);
    }
    let dir = scratch("three");
    let a = Instance::spawn(&chain, &pg.url(), "a", 1, &dir);
    let b = Instance::spawn(&chain, &pg.url(), "b", 2, &dir);
    let c = Instance::spawn(&chain, &pg.url(), "c", 3, &dir);
    let all = [&a, &b, &c];
    until(
        "the shards are spread over the three",
        Duration::from_secs(30),
        || async {
            let mut total = 0;
            for i in all {
                let n = i.shards().await.len();
                if n < 2 {
                    return false;
                }
                total += n;
            }
            total == usize::from(SHARDS)
        },
    )
    .await;

    // Ops sent round the three instances: each is forwarded to its sender's owner and mined exactly once.
    let every = urls(&all);
    let mut hashes = Vec::new();
    let mut sent = vec![0u64; traders.len()];
    for seq in 0..4u64 {
        for (n, t) in traders.iter().enumerate() {
            let op = chain.order_op(t, 0, seq, "0.01", "60500", false).await;
            hashes.push(send(&chain, &every, n + seq as usize, &op).await);
            sent[n] += 1;
        }
    }
    let signers = mined_once(&chain, &every, &hashes).await;
    assert!(signers.len() >= 2, "bundles came from {signers:?}");
    let mut forwarded = 0;
    for i in all {
        forwarded += i.counter("keyscope_ops_forwarded_total").await;
    }
    assert!(forwarded > 0);

    // A trader of the shard owner about to be killed that has sent nothing yet: its first order goes
    // through the Rust SDK's client during the failover (below).
    let victim_name = owner(&all, traders[0].account).await.name.clone();
    let mut seed = 4300;
    loop {
        let owner_key = alloy::signers::local::PrivateKeySigner::from_bytes(
            &alloy_primitives::keccak256(format!("trader-{seed}")),
        )
        .unwrap();
        let account = chain
            .direct
            .account_address(owner_key.address(), U256::ZERO)
            .await
            .unwrap();
        if owner(&all, account).await.name == victim_name {
            break;
        }
        seed += 1;
        assert!(
            seed < 4400,
            "no account of the victim's shards among 100 seeds"
        );
    }
    let patient = chain.trader(seed, "20000").await;

    // From here a block comes once a second: a bundle waits in the node's pool for up to a second.
    chain
        .provider
        .raw_request::<_, Value>("evm_setAutomine".into(), [false])
        .await
        .unwrap();
    chain
        .provider
        .raw_request::<_, Value>("evm_setIntervalMining".into(), [1])
        .await
        .unwrap();

    // SIGKILL the owner of trader 0's shard just after it took a burst of that trader's orders.
    let busy = &traders[0];
    let victim = owner(&all, busy.account).await;
    assert_eq!(
        owner(&all, patient.account).await.name,
        victim.name,
        "the SDK's trader is on the victim's shards"
    );
    let survivors: Vec<&Instance> = all.into_iter().filter(|i| i.name != victim.name).collect();
    let via = urls(&survivors);
    let mut burst = Vec::new();
    for _ in 0..3 {
        let op = chain
            .order_op(busy, 0, sent[0], "0.01", "60500", false)
            .await;
        burst.push(send(&chain, &via, 0, &op).await);
        sent[0] += 1;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let killed = victim.key();
    let mut victim_process = Command::new("kill")
        .args(["-KILL", &victim.child.id().to_string()])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    victim_process.wait().unwrap();
    // More orders of the same trader: refused as "changing hands" until a survivor takes the shard. At the
    // same time the other trader of that shard sends its first order with the SDK's client, which rides
    // the retryable refusals out with back-off instead of giving up (`keyscope order` does the same).
    let sdk = keyscope_core::client::Client::new(
        chain.provider.clone(),
        chain.d.clone(),
        keyscope_core::client::Submission::Bundler {
            url: via[0].clone(),
        },
        chain.devnet.signer(4).address(),
    );
    let patient_op = chain.order_op(&patient, 0, 0, "0.01", "60500", false).await;
    let burst_after_kill = async {
        for _ in 0..3 {
            let op = chain
                .order_op(busy, 0, sent[0], "0.01", "60500", false)
                .await;
            burst.push(send(&chain, &via, 1, &op).await);
            sent[0] += 1;
        }
    };
    let (_, through_sdk) = tokio::join!(burst_after_kill, sdk.send(&patient_op));
    let through_sdk = through_sdk.expect("the client rides a failover out");
    assert!(through_sdk.success, "{through_sdk:?}");
    assert_eq!(lane_nonce(&chain, &patient).await, U256::from(1));
    let signers = mined_once(&chain, &via, &burst).await;
    eprintln!(
        "kill -9 of the owner → its trader's last orders mined by a survivor in {:?} (lease 1.5 s)",
        t0.elapsed()
    );
    assert!(signers.iter().any(|s| *s != killed), "{signers:?}");
    assert_eq!(lane_nonce(&chain, busy).await, U256::from(sent[0]));
    until(
        "the survivors hold every shard",
        Duration::from_secs(20),
        || async {
            let mut held = BTreeSet::new();
            for i in &survivors {
                held.extend(i.shards().await);
            }
            held.len() == usize::from(SHARDS)
        },
    )
    .await;

    // SIGSTOP a survivor past its lease: the other takes its shards over; the stalled one, woken,
    // finds them gone and forwards their ops instead of acting on them.
    let (stalled, other) = (survivors[0], survivors[1]);
    until(
        "the two survivors share the shards",
        Duration::from_secs(20),
        || async { !stalled.shards().await.is_empty() && !other.shards().await.is_empty() },
    )
    .await;
    let held_by_stalled = stalled.shards().await;
    stalled.signal("-STOP");
    let mut late = Vec::new();
    // An order of a trader the stalled instance held, sent to the other at once: forwarded to the stalled
    // holder, which answers nothing; past the forward's patience the client is told to send it again, and
    // it is taken once the other holds the shard.
    if let Some(n) = traders
        .iter()
        .position(|t| held_by_stalled.contains(&shard_of(t.account, SHARDS)))
    {
        let op = chain
            .order_op(&traders[n], 0, sent[n], "0.01", "60500", false)
            .await;
        late.push(send(&chain, &[other.url()], 0, &op).await);
        sent[n] += 1;
    }
    until(
        "the other survivor takes every shard",
        Duration::from_secs(20),
        || async { other.shards().await.len() == usize::from(SHARDS) },
    )
    .await;
    for (n, tr) in traders.iter().enumerate() {
        let op = chain.order_op(tr, 0, sent[n], "0.01", "60500", false).await;
        late.push(send(&chain, &[other.url()], 0, &op).await);
        sent[n] += 1;
    }
    stalled.signal("-CONT");
    until(
        "the woken instance learns it lost its shards",
        Duration::from_secs(20),
        || async { stalled.counter("keyscope_shards_lost_total").await >= 1 },
    )
    .await;
    // Through the woken instance: forwarded, or taken once it holds a shard again; never twice.
    for (n, tr) in traders.iter().enumerate() {
        let op = chain.order_op(tr, 0, sent[n], "0.01", "60500", false).await;
        late.push(send(&chain, &[stalled.url(), other.url()], 0, &op).await);
        sent[n] += 1;
    }
    mined_once(&chain, &via, &late).await;
    for (n, tr) in traders.iter().enumerate() {
        assert_eq!(
            lane_nonce(&chain, tr).await,
            U256::from(sent[n]),
            "trader {n}"
        );
    }
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_instances_ride_out_a_postgres_restart() {
    let Some(pg) = LocalPostgres::for_test("the_instances_ride_out_a_postgres_restart") else {
        return;
    };
    let chain = fixture::Chain::start(42_201).await;
    let traders = [
        chain.trader(4210, "20000").await,
        chain.trader(4211, "20000").await,
    ];
    let dir = scratch("restart");
    let a = Instance::spawn(&chain, &pg.url(), "a", 1, &dir);
    let b = Instance::spawn(&chain, &pg.url(), "b", 2, &dir);
    let both = urls(&[&a, &b]);
    let mut hashes = Vec::new();
    for seq in 0..2u64 {
        for (n, t) in traders.iter().enumerate() {
            let op = chain.order_op(t, 0, seq, "0.01", "60500", false).await;
            hashes.push(send(&chain, &both, n, &op).await);
        }
    }
    mined_once(&chain, &both, &hashes).await;

    pg.stop("fast").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again().unwrap();

    for seq in 2..5u64 {
        for (n, t) in traders.iter().enumerate() {
            let op = chain.order_op(t, 0, seq, "0.01", "60500", false).await;
            hashes.push(send(&chain, &both, n + seq as usize, &op).await);
        }
    }
    mined_once(&chain, &both, &hashes).await;
    for t in &traders {
        assert_eq!(lane_nonce(&chain, t).await, U256::from(5));
    }
    until(
        "the two hold every shard again",
        Duration::from_secs(20),
        || async {
            let mut held = a.shards().await;
            held.extend(b.shards().await);
            held.len() == usize::from(SHARDS)
        },
    )
    .await;
    let mut a = a;
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "instance a is still running"
    );

    // A third instance given a bundle key another holds refuses to start, and names the key.
    let out = Instance::command(&chain, &pg.url(), "c", 1, &dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    // With --json the error is the JSON line on stdout.
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("is leased by another live instance") && err.contains(&a.key().to_string()),
        "{err}"
    );

    // SIGTERM: b stops cleanly and gives its shards back on the way out, not a lease later.
    let mut b = b;
    b.signal("-TERM");
    assert!(b.child.wait().unwrap().success());
    let probe = PgStore::open(
        &pg.url(),
        Arc::new(Fence::new("probe".into(), SHARDS)),
        Default::default(),
    )
    .await
    .unwrap();
    let leases = Leases {
        pool: probe.pool().clone(),
        instance: "probe".into(),
        lease: Duration::from_millis(1500),
    };
    for shard in 0..SHARDS {
        let owner = leases.owner_of(shard).await.unwrap();
        assert!(
            owner.as_ref().is_none_or(|(name, _)| name != "b"),
            "shard {shard} still leased to {owner:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ops submitted before Postgres goes down and mined while it is down end `included` in Postgres, with
/// one audit entry each, once it is back: the status writes the outage refused are kept and retried. (The
/// outage is shorter than the instance's lease, so it keeps its shards; past the lease, the shard's next
/// holder re-derives the records from the chain, as `three_instances_on_one_postgres_survive_a_kill_and_a_stall`
/// shows.)
#[tokio::test]
async fn statuses_written_during_a_postgres_outage_land_when_it_returns() {
    use keyscope_relayer::store::{Backend as _, OpStatus};
    let Some(pg) =
        LocalPostgres::for_test("statuses_written_during_a_postgres_outage_land_when_it_returns")
    else {
        return;
    };
    let chain = fixture::Chain::start(42_205).await;
    let trader = chain.trader(4250, "20000").await;
    let other = chain.trader(4251, "20000").await;
    let dir = scratch("outage-statuses");
    let a = Instance::spawn_with(
        &chain,
        &pg.url(),
        "a",
        1,
        &dir,
        "[cluster]\nshards = 8\nlease_ms = 30000\nrenew_ms = 250\n",
    );
    let url = urls(&[&a]);
    let warm = chain.order_op(&trader, 0, 0, "0.01", "60500", false).await;
    let warm = send(&chain, &url, 0, &warm).await;
    mined_once(&chain, &url, &[warm]).await;
    let probe = PgStore::open(
        &pg.url(),
        Arc::new(Fence::new("probe".into(), SHARDS)),
        Default::default(),
    )
    .await
    .unwrap();
    let status = |hash| {
        let probe = &probe;
        async move { probe.op(hash).await.ok().flatten().map(|r| r.status) }
    };

    // Blocks only when the test mines them: the bundle is sent, then Postgres stops, then it is mined.
    let mine = |auto: bool| {
        chain
            .provider
            .raw_request::<_, Value>("evm_setAutomine".into(), (auto,))
    };
    mine(false).await.unwrap();
    let mut hashes = Vec::new();
    for (t, seq) in [(&trader, 1u64), (&other, 0)] {
        let op = chain.order_op(t, 0, seq, "0.01", "60500", false).await;
        hashes.push(send(&chain, &url, 0, &op).await);
    }
    until("both ops are sent", Duration::from_secs(30), || async {
        for h in &hashes {
            if status(*h).await != Some(OpStatus::Submitted) {
                return false;
            }
        }
        true
    })
    .await;
    pg.stop("fast").unwrap();
    chain
        .provider
        .raw_request::<_, Value>("evm_mine".into(), ())
        .await
        .unwrap();
    // Mined on chain while Postgres is down; the instance follows the block (and fails to write) meanwhile.
    assert_eq!(lane_nonce(&chain, &trader).await, U256::from(2));
    assert_eq!(lane_nonce(&chain, &other).await, U256::from(1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        a.counter("keyscope_ops_included_total").await,
        3,
        "the instance saw both mined while the store was down"
    );
    // An op sent while the store is down is not acknowledged (it could not be made durable): the refusal
    // says to send it again (`data.retry`, which the CLI and SDK follow) and names no host or store.
    let late = chain.order_op(&other, 0, 1, "0.01", "60500", false).await;
    let refused = fixture::rpc(
        &url[0],
        "eth_sendUserOperation",
        json!([rpc_user_op(&late), chain.d.entry_point]),
    )
    .await
    .expect_err("no op is acknowledged while its record cannot be written");
    assert_eq!(refused["data"]["retry"], true, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("send it again")
            && !message.contains("127.0.0.1")
            && !message.to_lowercase().contains("postgres")
            && !message.contains("connect"),
        "{message}"
    );
    pg.start_again().unwrap();
    mine(true).await.unwrap();
    // Any next head retries what the outage kept.
    chain
        .provider
        .raw_request::<_, Value>("evm_mine".into(), ())
        .await
        .unwrap();
    until(
        "Postgres holds both ops as included",
        Duration::from_secs(30),
        || async {
            for h in &hashes {
                if status(*h).await != Some(OpStatus::Included) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    // Positive control: the same op sent again once the store is back is acknowledged and mined once.
    let late = send(&chain, &url, 0, &late).await;
    mined_once(&chain, &url, &[late]).await;
    let audit = probe.audit(0, 10_000).await.unwrap();
    for h in &hashes {
        assert_eq!(
            audit
                .iter()
                .filter(|e| e.user_op_hash == *h
                    && e.event == keyscope_relayer::store::OpEvent::Included)
                .count(),
            1,
            "one included entry for {h}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Faults combined the way machines fail: the owner of a busy shard is killed with SIGKILL while its
/// bundle waits for a block, and Postgres goes down at the same moment, for longer than a lease, so the
/// hand-over has to wait for the store. Orders keep coming through the survivor the whole time. Every
/// order an instance acknowledged is mined exactly once, and every trader's nonce is what it sent.
#[tokio::test]
async fn a_kill_during_a_postgres_outage_loses_no_acknowledged_order() {
    let Some(pg) =
        LocalPostgres::for_test("a_kill_during_a_postgres_outage_loses_no_acknowledged_order")
    else {
        return;
    };
    let chain = fixture::Chain::start(42_206).await;
    let mut traders = Vec::new();
    for seed in 0..3 {
        traders.push(chain.trader(4260 + seed, "20000").await);
    }
    let dir = scratch("kill-in-outage");
    let a = Instance::spawn(&chain, &pg.url(), "a", 1, &dir);
    let b = Instance::spawn(&chain, &pg.url(), "b", 2, &dir);
    let both = [&a, &b];
    until(
        "the two share the shards",
        Duration::from_secs(30),
        || async {
            let (x, y) = (a.shards().await.len(), b.shards().await.len());
            x > 0 && y > 0 && x + y == usize::from(SHARDS)
        },
    )
    .await;
    let every = urls(&both);
    let mut acked = Vec::new();
    let mut sent = vec![0u64; traders.len()];
    for (n, t) in traders.iter().enumerate() {
        let op = chain.order_op(t, 0, 0, "0.01", "60500", false).await;
        acked.push(send(&chain, &every, n, &op).await);
        sent[n] += 1;
    }
    mined_once(&chain, &every, &acked).await;

    // A block a second from here: the victim's bundle waits in the node's pool when it dies.
    for (method, arg) in [
        ("evm_setAutomine", json!(false)),
        ("evm_setIntervalMining", json!(1)),
    ] {
        chain
            .provider
            .raw_request::<_, Value>(method.into(), [arg])
            .await
            .unwrap();
    }
    let victim = owner(&both, traders[0].account).await;
    let survivor = both.into_iter().find(|i| i.name != victim.name).unwrap();
    let via = vec![survivor.url()];
    for _ in 0..2 {
        let op = chain
            .order_op(&traders[0], 0, sent[0], "0.01", "60500", false)
            .await;
        acked.push(send(&chain, &via, 0, &op).await);
        sent[0] += 1;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    Command::new("kill")
        .args(["-KILL", &victim.child.id().to_string()])
        .status()
        .unwrap();
    pg.stop("fast").unwrap();
    let down = Instant::now();
    // Orders of every trader through the survivor while the store is down and the shard has no owner:
    // each is retried by the client until an instance acknowledges it (none is acknowledged and lost).
    let outage_orders = async {
        let mut mine = Vec::new();
        let mut next = sent.clone();
        for round in 0..2 {
            for (n, t) in traders.iter().enumerate() {
                let op = chain.order_op(t, 0, next[n], "0.01", "60500", false).await;
                mine.push(send(&chain, &via, round, &op).await);
                next[n] += 1;
            }
        }
        (mine, next)
    };
    let restart = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        pg.start_again().unwrap();
    };
    let ((mine, next), ()) = tokio::join!(outage_orders, restart);
    acked.extend(mine);
    sent = next;
    eprintln!("Postgres down {:?} around the kill", down.elapsed());
    mined_once(&chain, &via, &acked).await;
    for (n, t) in traders.iter().enumerate() {
        assert_eq!(
            lane_nonce(&chain, t).await,
            U256::from(sent[n]),
            "trader {n}"
        );
    }
    until(
        "the survivor holds every shard",
        Duration::from_secs(30),
        || async { survivor.shards().await.len() == usize::from(SHARDS) },
    )
    .await;
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}

// Several threads: the link relays bytes while the test blocks on a child's ready line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_postgres_is_replaced_and_acts_on_nothing() {
    let Some(pg) = LocalPostgres::for_test(
        "an_instance_cut_off_from_postgres_is_replaced_and_acts_on_nothing",
    ) else {
        return;
    };
    let chain = fixture::Chain::start(42_203).await;
    let mut traders = Vec::new();
    for seed in 0..3 {
        traders.push(chain.trader(4220 + seed, "20000").await);
    }
    let dir = scratch("cut");
    let link = Link::to(pg.port).await;
    let a = Instance::spawn(&chain, &link.url(), "a", 1, &dir);
    let b = Instance::spawn(&chain, &pg.url(), "b", 2, &dir);
    until(
        "the two share the shards",
        Duration::from_secs(20),
        || async {
            let (x, y) = (a.shards().await.len(), b.shards().await.len());
            x > 0 && y > 0 && x + y == usize::from(SHARDS)
        },
    )
    .await;
    let both = urls(&[&a, &b]);
    let mut sent = vec![0u64; traders.len()];
    let mut hashes = Vec::new();
    for (n, t) in traders.iter().enumerate() {
        let op = chain.order_op(t, 0, sent[n], "0.01", "60500", false).await;
        hashes.push(send(&chain, &both, n, &op).await);
        sent[n] += 1;
    }
    mined_once(&chain, &both, &hashes).await;

    // Cut a off from Postgres: its calls hang. b takes every shard once a's leases lapse.
    let bundles_before = a.counter("keyscope_bundles_sent_total").await;
    link.cut();
    until("b takes every shard", Duration::from_secs(30), || async {
        b.shards().await.len() == usize::from(SHARDS)
    })
    .await;
    // An order sent to a now is not taken: a cannot record it (it still believes it holds the shard, or
    // cannot learn who does). The same order sent to b is.
    let t = &traders[0];
    let op = chain.order_op(t, 0, sent[0], "0.01", "60500", false).await;
    let refused = fixture::rpc(
        &a.url(),
        "eth_sendUserOperation",
        json!([keyscope_core::client::rpc_user_op(&op), chain.d.entry_point]),
    )
    .await
    .unwrap_err();
    assert_eq!(refused["code"], -32603, "{refused}");
    let mut late = vec![send(&chain, &[b.url()], 0, &op).await];
    sent[0] += 1;
    for (n, t) in traders.iter().enumerate() {
        let op = chain.order_op(t, 0, sent[n], "0.01", "60500", false).await;
        late.push(send(&chain, &[b.url()], 0, &op).await);
        sent[n] += 1;
    }
    mined_once(&chain, &[b.url()], &late).await;
    assert_eq!(
        a.counter("keyscope_bundles_sent_total").await,
        bundles_before,
        "a sent no bundle while cut off"
    );

    // Mended: a finds its shards gone, takes its share back over time, and every order is mined once.
    link.mend();
    until(
        "a learns it lost its shards",
        Duration::from_secs(30),
        || async { a.counter("keyscope_shards_lost_total").await >= 1 },
    )
    .await;
    let mut after = Vec::new();
    for (n, t) in traders.iter().enumerate() {
        let op = chain.order_op(t, 0, sent[n], "0.01", "60500", false).await;
        after.push(send(&chain, &both, n, &op).await);
        sent[n] += 1;
    }
    mined_once(&chain, &both, &after).await;
    for (n, t) in traders.iter().enumerate() {
        assert_eq!(
            lane_nonce(&chain, t).await,
            U256::from(sent[n]),
            "trader {n}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
