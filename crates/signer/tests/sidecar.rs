//! `keyscope signer` end to end on anvil: a strategy holding no key material gets its in-scope orders
//! signed over the socket (a P-256 keystore key and a secp256k1 one) and mined; out-of-scope ops, ops of
//! keys it does not hold and ops over its rate are refused before anything is signed; the sidecar
//! survives a restart (same keys, the audit trail continued and verifiable); a key hands over to its
//! committed successor through the sidecar; a second sidecar refuses the first one's live socket.

mod common;

use alloy_primitives::{Address, I256};
use common::*;
use keyscope_core::{key::Curve, ops, units::parse_units, user_op::PackedUserOperation};
use keyscope_signer::audit;

fn size(s: &str) -> I256 {
    I256::try_from(parse_units(s, 18).unwrap()).unwrap()
}

#[tokio::test]
async fn the_sidecar_signs_in_scope_refuses_the_rest_and_survives_a_restart() {
    let dir = temp_dir("sidecar");
    let (p256, p256_toml) = keystore_key(&dir, "mm-p256", Curve::P256, "5/1m");
    let (k1, k1_toml) = keystore_key(&dir, "mm-k1", Curve::Secp256k1, "100/1s");
    let setup = Setup::start(41_040, dir, &[p256, k1]).await;
    let (config, auditor) = setup.write_config(&format!("{p256_toml}{k1_toml}"));
    let (task, signer) = start_sidecar(&config, None).await;

    let keys = signer.keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| (k.id, k.curve)).collect::<Vec<_>>(),
        vec![(k1, Curve::Secp256k1), (p256, Curve::P256)]
    );
    // Positive controls: each curve's key signs an in-scope order, and it is mined.
    assert!(sign_and_send(&setup, &signer, setup.order_op(p256, 0, 0, "0.01").await).await);
    assert!(sign_and_send(&setup, &signer, setup.order_op(k1, 0, 0, "0.02").await).await);
    assert_eq!(btc_position(&setup).await, size("0.03"));

    // Refused before signing, by the account's rules: a market outside the scope, an order too large.
    let refused = signer
        .sign(&setup.order_op(p256, 0, 1, "0.01").await, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code, 4001, "{refused}");
    assert!(refused.message.contains("market 1"), "{refused}");
    let refused = signer
        .sign(&setup.order_op(p256, 0, 0, "0.6").await, None)
        .await
        .unwrap_err();
    assert!(refused.message.contains("order size"), "{refused}");
    // An expiry past the key's max op ttl, and a withdrawal, are refused too.
    let far = setup.client.chain_time().await.unwrap() + 3600;
    let refused = signer
        .sign(&setup.order_op(p256, 0, 0, "0.01").await, Some(far))
        .await
        .unwrap_err();
    assert!(refused.message.contains("max op ttl"), "{refused}");
    let mut withdraw = setup.order_op(p256, 0, 0, "0.01").await;
    withdraw.callData = ops::session_call_data(
        p256,
        vec![ops::withdraw_margin(
            setup.devnet.deployment.venue,
            parse_units("1", 6).unwrap(),
        )],
    );
    assert_eq!(signer.sign(&withdraw, None).await.unwrap_err().code, 4001);
    // A key it does not hold, and an op for another account.
    let stranger = setup
        .order_op(Address::repeat_byte(0x42), 0, 0, "0.01")
        .await;
    assert_eq!(signer.sign(&stranger, None).await.unwrap_err().code, 4004);
    let other_account = PackedUserOperation {
        sender: Address::repeat_byte(7),
        ..setup.order_op(p256, 0, 0, "0.01").await
    };
    assert_eq!(
        signer.sign(&other_account, None).await.unwrap_err().code,
        4004
    );
    // An op whose hash this signer cannot compute (EIP-7702) is refused, never signed over a stand-in.
    let eip7702 = PackedUserOperation {
        initCode: [&[0x77u8, 0x02][..], &[0u8; 18]].concat().into(),
        ..setup.order_op(p256, 0, 0, "0.01").await
    };
    let refused = signer.sign(&eip7702, None).await.unwrap_err();
    assert_eq!(refused.code, -32602, "{refused}");
    assert_eq!(
        btc_position(&setup).await,
        size("0.03"),
        "nothing refused was signed, so nothing moved"
    );

    // Restart: a new process from the same files (the old one is stopped first).
    task.stop();
    drop(signer);
    let (task, signer) = start_sidecar(&config, None).await;
    assert!(sign_and_send(&setup, &signer, setup.order_op(p256, 0, 0, "0.01").await).await);
    assert_eq!(btc_position(&setup).await, size("0.04"));

    // The sidecar's own rate: 5 a minute for the P-256 key (one used since the restart).
    let op = setup.order_op(p256, 1, 0, "0.01").await;
    for _ in 0..4 {
        signer.sign(&op, None).await.unwrap();
    }
    let limited = signer.sign(&op, None).await.unwrap_err();
    assert_eq!(limited.code, 4029, "{limited}");
    // The other key has its own budget.
    signer
        .sign(&setup.order_op(k1, 0, 0, "0.01").await, None)
        .await
        .unwrap();
    task.stop();

    // Every decision, before and after the restart, is in one unbroken trail signed by the audit key.
    let log = setup.dir.join("audit.jsonl");
    let (entries, _) = audit::verify(&log, auditor).unwrap();
    assert_eq!(entries, 16);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"refused\"").count(), 8);
    assert!(audit::verify(&log, Address::repeat_byte(1)).is_err());
}

#[tokio::test]
async fn a_key_hands_over_to_its_committed_successor_through_the_sidecar() {
    let dir = temp_dir("handover");
    let (old, old_toml) = keystore_key(&dir, "old", Curve::P256, "10/1s");
    let (next, next_toml) = keystore_key(&dir, "next", Curve::P256, "10/1s");
    let setup = Setup::start(41_041, dir, &[old]).await;
    // The owner commits `next` as `old`'s successor (an owner op: a call to the account itself).
    let commit = ops::commit_successor(setup.account, old, next);
    let op = setup
        .client
        .owner_op(&setup.owner, alloy_primitives::U256::ZERO, vec![commit])
        .await
        .unwrap();
    assert!(setup.client.send(&op).await.unwrap().success);
    let (config, _) = setup.write_config(&format!("{old_toml}{next_toml}"));
    let (task, signer) = start_sidecar(&config, None).await;

    // `next` has no session yet: the sidecar will not sign for it.
    assert_eq!(
        signer
            .sign(&setup.order_op(next, 0, 0, "0.01").await, None)
            .await
            .unwrap_err()
            .code,
        4001
    );
    // The hand-over: one op of `old` itself, signed by the sidecar, no owner involved.
    let hand_over = setup.key_op(old, 0, ops::hand_over_call_data(old)).await;
    assert!(sign_and_send(&setup, &signer, hand_over).await);
    // After its next read of the chain (every second), the sidecar signs for `next` and no longer for `old`.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(sign_and_send(&setup, &signer, setup.order_op(next, 0, 0, "0.01").await).await);
    let refused = signer
        .sign(&setup.order_op(old, 0, 0, "0.01").await, None)
        .await
        .unwrap_err();
    assert!(refused.message.contains("not active"), "{refused}");
    assert_eq!(btc_position(&setup).await, size("0.01"));
    task.stop();
}

#[tokio::test]
async fn a_second_sidecar_refuses_the_live_socket_and_the_first_keeps_serving() {
    let dir = temp_dir("second");
    let (key, key_toml) = keystore_key(&dir, "mm", Curve::P256, "10/1s");
    let setup = Setup::start(41_044, dir, &[key]).await;
    let (config, auditor) = setup.write_config(&key_toml);
    let (task, signer) = start_sidecar(&config, None).await;
    assert!(sign_and_send(&setup, &signer, setup.order_op(key, 0, 0, "0.01").await).await);
    let log = setup.dir.join("audit.jsonl");
    let trail = std::fs::read_to_string(&log).unwrap();

    // A second sidecar on the same config is refused, naming the socket, before it opens anything.
    let config = keyscope_signer::SignerConfig::load(&config).unwrap();
    let second = keyscope_signer::server::run(&config, Some(PASSWORD), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&second, keyscope_signer::SignerError::SocketInUse { .. }),
        "{second:?}"
    );
    let message = second.to_string();
    assert!(
        message.contains(&config.socket.display().to_string())
            && message.contains("stop that sidecar"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), trail);

    // The first still holds the socket: the same connection and a new one are both served.
    assert!(sign_and_send(&setup, &signer, setup.order_op(key, 0, 0, "0.01").await).await);
    let again = keyscope_signer::SignerClient::connect(&config.socket)
        .await
        .unwrap();
    assert_eq!(again.keys().await.unwrap().len(), 1);
    task.stop();
    assert_eq!(audit::verify(&log, auditor).unwrap().0, 2);
}
