//! Three `keyscope signer` sidecars form a 2-of-3 quorum on anvil: the quorum's key (generated with no
//! dealer) is granted as a session key, an order it signs through any member settles on the venue and an
//! op it signs is included; with one member down it still signs, with two down it refuses at once; each
//! member restarts from its encrypted share; a compromised member (its own checks gone) gets no
//! co-signature for an out-of-scope order, while an in-scope one is co-signed; every member's audit trail
//! records its part.

mod common;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use alloy::{
    network::EthereumWallet, providers::ProviderBuilder, signers::local::PrivateKeySigner,
};
use alloy_primitives::{Address, B256, I256};
use common::*;
use futures::future::BoxFuture;
use keyscope_core::{
    bindings::PerpVenue,
    key::verify_digest,
    order::{Fill, Order, OrderBuilder, OrderJson, key_order_grant, order_digest, sign_order},
    units::parse_units,
};
use keyscope_signer::{audit, keys, quorum};
use keyscope_threshold::{
    Approver, KeyCurve, Member, MemberConfig, QuorumKeyInfo, tls::dev_identities,
};
use serde_json::{Value, json};

/// Refuses everything: the members' policy while they only generate the key.
struct Nothing;

impl Approver for Nothing {
    fn approve<'a>(&'a self, _: u16, _: B256, _: &'a Value) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("no signing during key generation".into()) })
    }
}

/// A compromised member's policy: anything.
struct Anything;

impl Approver for Anything {
    fn approve<'a>(&'a self, _: u16, _: B256, _: &'a Value) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

fn free_addresses(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn member_config(dir: &Path, i: usize, addresses: &[SocketAddr]) -> MemberConfig {
    let identity = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("member-{i}/identity.json"))).unwrap(),
    )
    .unwrap();
    MemberConfig {
        identity,
        addresses: addresses.to_vec(),
        share_file: dir.join(format!("member-{i}/share.json")),
        password: PASSWORD.into(),
        connect_timeout: Duration::from_secs(2),
        session_timeout: Duration::from_secs(120),
    }
}

/// Identities for three members in `dir/member-<i>/`, and a 2-of-3 key generated among them with the
/// threshold crate's test primes; the members stop afterwards.
async fn generate(dir: &Path, addresses: &[SocketAddr], curve: KeyCurve) -> QuorumKeyInfo {
    for id in dev_identities(3).unwrap() {
        let at = dir.join(format!("member-{}", id.index));
        std::fs::create_dir_all(&at).unwrap();
        std::fs::write(at.join("identity.json"), serde_json::to_vec(&id).unwrap()).unwrap();
    }
    let primes: Vec<keyscope_threshold::PregeneratedPrimes> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../threshold/tests/data/primes.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut members = Vec::new();
    for (i, p) in primes.into_iter().enumerate() {
        let config = member_config(dir, i, addresses);
        members.push(
            Member::start(config, Some(p), Arc::new(Nothing))
                .await
                .unwrap(),
        );
    }
    let info = members[0].keygen(curve, 2).await.unwrap();
    for m in &members {
        // A member that joined may still be saving its share when the coordinator's call returns.
        assert_eq!(m.key_within(Duration::from_secs(60)).await.unwrap(), info);
        m.shutdown();
    }
    info
}

/// Member `i`'s sidecar config in `dir/member-<i>/`.
fn write_sidecar_config(
    setup: &Setup,
    dir: &Path,
    i: usize,
    addresses: &[SocketAddr],
) -> (std::path::PathBuf, Address) {
    let at = dir.join(format!("member-{i}"));
    let audit_key = at.join("audit-key.json");
    if !audit_key.exists() {
        keys::new_keystore(&audit_key, keyscope_core::key::Curve::Secp256k1, PASSWORD).unwrap();
    }
    let auditor = keyscope_core::signer::from_keystore(&audit_key, PASSWORD)
        .unwrap()
        .address();
    let members = addresses
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "socket = \"signer.sock\"\nrpc_url = \"{}\"\ndeployment = \"{}\"\naccount = \"{}\"\naudit_log = \"audit.jsonl\"\naudit_keystore = \"audit-key.json\"\nrefresh_secs = 1\n\n[quorum]\nname = \"mm-quorum\"\nrate = \"100/1s\"\nidentity = \"identity.json\"\nshare = \"share.json\"\nmembers = [{members}]\npresignatures = 1\n",
        setup.devnet.endpoint(),
        setup.devnet.deployment_file.display(),
        setup.account,
    );
    let path = at.join("signer.toml");
    std::fs::write(&path, text).unwrap();
    (path, auditor)
}

/// A sell order of `key` on `account` on `market`, expiring in an hour of the chain's time.
async fn sell(setup: &Setup, key: Address, market: u32, limit: &str, nonce: u64) -> Order {
    order(setup, setup.account, key, false, market, limit, nonce).await
}

/// An order of 0.1 of `key` on `account`, expiring in an hour of the chain's time.
async fn order(
    setup: &Setup,
    account: Address,
    key: Address,
    is_buy: bool,
    market: u32,
    limit: &str,
    nonce: u64,
) -> Order {
    let now_ms = setup.client.chain_time().await.unwrap() * 1000;
    let (grant_id, epoch) = key_order_grant(&setup.provider, account, key)
        .await
        .unwrap();
    OrderBuilder::new(
        account,
        key,
        market,
        is_buy,
        parse_units("0.1", 18).unwrap(),
        parse_units(limit, 18).unwrap(),
    )
    .grant(grant_id, epoch)
    .expiry_ms(now_ms + 3_600_000)
    .nonce(nonce)
    .build(now_ms)
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_of_3_quorum_of_sidecars_trades_on_anvil_and_no_member_signs_alone() {
    let dir = temp_dir("quorum");
    let addresses = free_addresses(3);
    let info = generate(&dir, &addresses, KeyCurve::P256).await;
    let key = quorum::key_id(&info);

    // The owner grants the quorum's key id as a session key, like any P-256 key.
    let setup = Setup::start(42_300, dir.clone(), &[key]).await;
    let configs: Vec<_> = (0..3)
        .map(|i| write_sidecar_config(&setup, &dir, i, &addresses))
        .collect();
    let mut sidecars = Vec::new();
    let mut clients = Vec::new();
    for (config, _) in &configs {
        let (sidecar, client) = start_sidecar(config, None).await;
        sidecars.push(Some(sidecar));
        clients.push(client);
    }
    let listed = clients[0].keys().await.unwrap();
    assert_eq!((listed[0].name.as_str(), listed[0].id), ("mm-quorum", key));

    // A maker's ask signed through member 0 settles against a taker's bid on the venue.
    let venue_address = setup.devnet.deployment.venue;
    let ask = sell(&setup, key, 0, "60000", 1).await;
    let signed = clients[0].sign_order(venue_address, &ask).await.unwrap();
    assert_eq!(signed.signature.len(), 128);
    let digest = order_digest(
        setup.account,
        venue_address,
        setup.devnet.deployment.chain_id,
        &ask,
    );
    verify_digest(key, digest, &signed.signature).unwrap();
    let settler = ProviderBuilder::new()
        .wallet(EthereumWallet::from(setup.devnet.signer(0)))
        .connect_http(setup.devnet.endpoint_url());
    let venue = PerpVenue::new(venue_address, &settler);
    let taker_key = PrivateKeySigner::random();
    let taker = setup
        .devnet
        .open_btc_account(
            &setup.devnet.signer(3),
            parse_units("10000", 6).unwrap(),
            &[taker_key.address()],
        )
        .await
        .unwrap();
    let bid = order(&setup, taker, taker_key.address(), true, 0, "60000", 1).await;
    let bid_sig = sign_order(
        &taker_key,
        venue_address,
        setup.devnet.deployment.chain_id,
        &bid,
    )
    .await
    .unwrap();
    let fill = Fill {
        maker: ask.clone(),
        makerSignature: signed.signature.clone(),
        taker: bid,
        takerSignature: bid_sig,
        size: parse_units("0.1", 18).unwrap().to(),
    };
    let receipt = venue
        .settle(vec![fill])
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "{receipt:?}");
    assert_eq!(
        btc_position(&setup).await,
        -I256::try_from(parse_units("0.1", 18).unwrap()).unwrap()
    );

    // A UserOp signed by the quorum through member 2 is included and trades.
    let op = setup.order_op(key, 0, 0, "0.01").await;
    assert!(sign_and_send(&setup, &clients[2], op).await);

    // Out of scope (market 1): member 0 refuses before asking anyone.
    let eth = sell(&setup, key, 1, "3000", 2).await;
    let refused = clients[0]
        .sign_order(venue_address, &eth)
        .await
        .unwrap_err();
    assert_eq!(refused.code, 4001, "{refused}");

    // Member 1 down: members 0 and 2 still sign.
    sidecars[1].take().unwrap().stop();
    let next = sell(&setup, key, 0, "60000", 3).await;
    let signed = clients[0].sign_order(venue_address, &next).await.unwrap();
    let digest = order_digest(
        setup.account,
        venue_address,
        setup.devnet.deployment.chain_id,
        &next,
    );
    verify_digest(key, digest, &signed.signature).unwrap();

    // Members 1 and 2 down: refused at once, naming both.
    sidecars[2].take().unwrap().stop();
    let lone = sell(&setup, key, 0, "60000", 4).await;
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        clients[0].sign_order(venue_address, &lone),
    )
    .await
    .expect("no hang with two members down")
    .unwrap_err();
    assert_eq!(refused.code, 4500, "{refused}");
    assert!(
        refused.message.contains("member 1 is unreachable")
            && refused.message.contains("member 2 is unreachable"),
        "{refused}"
    );

    // Each member restarted from its encrypted share: the quorum signs again, through each.
    for i in [1, 2] {
        let (sidecar, client) = start_sidecar(&configs[i].0, None).await;
        sidecars[i] = Some(sidecar);
        clients[i] = client;
    }
    sidecars[0].take().unwrap().stop();
    let (sidecar, client) = start_sidecar(&configs[0].0, None).await;
    sidecars[0] = Some(sidecar);
    clients[0] = client;
    for (i, nonce) in [(0, 5), (1, 6), (2, 7)] {
        let o = sell(&setup, key, 0, "60000", nonce).await;
        let signed = clients[i].sign_order(venue_address, &o).await.unwrap();
        let digest = order_digest(
            setup.account,
            venue_address,
            setup.devnet.deployment.chain_id,
            &o,
        );
        verify_digest(key, digest, &signed.signature).unwrap();
    }

    // Member 0 compromised: its sidecar's checks are gone (a bare member with its share that signs
    // anything). The others refuse to co-sign the out-of-scope order: no signature.
    sidecars[0].take().unwrap().stop();
    let rogue = Member::start(member_config(&dir, 0, &addresses), None, Arc::new(Anything))
        .await
        .unwrap();
    let context =
        |o: &Order| json!({ "order": { "venue": venue_address, "order": OrderJson::from(o) } });
    let digest = order_digest(
        setup.account,
        venue_address,
        setup.devnet.deployment.chain_id,
        &eth,
    );
    let refused = rogue
        .sign(digest, &context(&eth))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("member 1 refused")
            && refused.contains("member 2 refused")
            && refused.contains("market 1"),
        "{refused}"
    );
    // Nor an in-scope order offered for another order's digest.
    let fine = sell(&setup, key, 0, "60000", 8).await;
    let refused = rogue
        .sign(digest, &context(&fine))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("is not the context's"), "{refused}");
    // Positive control: an in-scope order is co-signed for it, as for any member.
    let digest = order_digest(
        setup.account,
        venue_address,
        setup.devnet.deployment.chain_id,
        &fine,
    );
    rogue.sign(digest, &context(&fine)).await.unwrap();
    rogue.shutdown();

    // The trails: member 0's names the members of each signature; the co-signers' record each decision.
    for (i, (_, auditor)) in configs.iter().enumerate() {
        let log = dir.join(format!("member-{i}/audit.jsonl"));
        audit::verify(&log, *auditor).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        match i {
            0 => assert!(
                text.contains("quorum members [0, 1]") && text.contains("quorum members [0, 2]"),
                "{text}"
            ),
            _ => assert!(
                text.contains("co-signed for quorum member 0")
                    && text.contains("co-signing for quorum member 0 refused"),
                "member {i}: {text}"
            ),
        }
    }
}
