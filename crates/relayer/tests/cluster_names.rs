//! Instance names in a deployment on one Postgres store: a second live instance under a name already
//! taken is refused at start (two would take each other's leases back and forth), while the same name
//! after its holder stopped, and another name beside it, start.

mod common;

use common::*;
use keyscope_relayer::{Config, Relayer, config::BundlingMode, local_postgres::LocalPostgres};

fn instance(chain: &Chain, pg: &LocalPostgres, name: &str, key: usize) -> Config {
    let mut c = config_for(
        &chain.devnet,
        data_dir(&format!("names-{name}-{key}")),
        BundlingMode::Manual,
    );
    c.store = Some(pg.url());
    // The devnet config runs the matcher, which is not built for a deployment on Postgres (refused there).
    c.matcher.settler_key = None;
    c.cluster.instance = Some(name.into());
    c.cluster.lease_ms = 300;
    c.cluster.renew_ms = 100;
    c.relayer_key = Some(chain.devnet.keys()[key].to_string());
    c
}

#[tokio::test]
async fn a_second_live_instance_under_a_taken_name_is_refused_at_start() {
    let Some(pg) =
        LocalPostgres::for_test("a_second_live_instance_under_a_taken_name_is_refused_at_start")
    else {
        return;
    };
    let chain = Chain::start(42_052).await;
    let a = Relayer::start(instance(&chain, &pg, "a", 1))
        .await
        .expect("a starts");
    // Another process named "a", with a key of its own: refused, naming the fix.
    let e = Relayer::start(instance(&chain, &pg, "a", 2))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another live instance") && e.contains("cluster.instance"),
        "{e}"
    );
    assert!(
        !e.contains("  "),
        "the message reads as one sentence: {e:?}"
    );
    // Under another name it joins.
    let b = Relayer::start(instance(&chain, &pg, "b", 2))
        .await
        .expect("b starts");
    b.stop().await;
    // Once "a" stopped, the name is free again: a restart of "a" starts.
    a.stop().await;
    let a = Relayer::start(instance(&chain, &pg, "a", 1))
        .await
        .expect("a restarts under its name");
    a.stop().await;
}
