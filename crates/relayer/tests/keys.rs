//! P-256 keys through the relayer, as a strategy engine on an HSM or a passkey owner would use it: the
//! relayer's ERC-7562 checks accept the EIP-7951 precompile in validation (OP-062) and the dead-man
//! switch's storage read, and bundles P-256 owner and session ops, a heartbeat and a hand-over; a
//! foreign P-256 signature is refused with the signature code.

mod common;

use alloy_primitives::U256;
use common::*;
use keyscope_core::{KeySigner, P256Key, bindings::ISessionManager, ops, units::parse_units};
use keyscope_relayer::config::BundlingMode;

#[tokio::test]
async fn p256_owner_and_session_ops_heartbeat_and_hand_over_through_the_relayer() {
    let s = setup("p256", 42_030, BundlingMode::Auto, |_| {}).await;
    let owner = P256Key::random();
    let key = P256Key::random();
    let next = P256Key::random();
    let account = s
        .devnet
        .open_btc_account(&owner, parse_units("10000", 6).unwrap(), &[key.id()])
        .await
        .unwrap();
    let client = s.via_relayer();
    let order = |size: &str| {
        vec![ops::place_order(
            s.d.venue,
            0,
            alloy_primitives::I256::try_from(parse_units(size, 18).unwrap()).unwrap(),
            parse_units("61000", 18).unwrap(),
            false,
        )]
    };

    // The P-256 owner commits the successor through the relayer; the P-256 key trades.
    let commit = client
        .owner_op(
            &owner,
            U256::ZERO,
            vec![ops::commit_successor(account, key.id(), next.id())],
        )
        .await
        .unwrap();
    assert!(client.send(&commit).await.unwrap().success);
    let op = client
        .session_op(&key, account, 0, order("0.01"), 60)
        .await
        .unwrap();
    assert!(client.send(&op).await.unwrap().success);

    // A signature by another P-256 key over the same op: refused at the door with the signature code.
    let mut forged = client
        .session_op(&key, account, 0, order("0.01"), 60)
        .await
        .unwrap();
    let other = client
        .sign_key_op(&P256Key::random(), account, forged.clone(), 60)
        .await
        .unwrap();
    forged.signature = other.signature;
    let refused = s.send(&forged).await.unwrap_err();
    assert_eq!(refused["code"], -32507, "{refused}");

    // The key arms its dead-man switch and hands over, each in an op of its own.
    let beat = client
        .unsigned_key_op(
            key.id(),
            account,
            0,
            ops::heartbeat_call_data(key.id(), 300),
        )
        .await
        .unwrap();
    let beat = client.sign_key_op(&key, account, beat, 60).await.unwrap();
    assert!(client.send(&beat).await.unwrap().success);
    let armed = client
        .session_op(&key, account, 1, order("0.01"), 60)
        .await
        .unwrap();
    assert!(
        client.send(&armed).await.unwrap().success,
        "an armed key's order passes the relayer's checks"
    );
    let hand_over = client
        .unsigned_key_op(key.id(), account, 0, ops::hand_over_call_data(key.id()))
        .await
        .unwrap();
    let hand_over = client
        .sign_key_op(&key, account, hand_over, 60)
        .await
        .unwrap();
    assert!(client.send(&hand_over).await.unwrap().success);

    let sessions = ISessionManager::new(account, &s.provider);
    assert!(sessions.getSession(next.id()).call().await.unwrap().active);
    assert!(!sessions.getSession(key.id()).call().await.unwrap().active);
    let op = client
        .session_op(&next, account, 0, order("0.01"), 60)
        .await
        .unwrap();
    assert!(client.send(&op).await.unwrap().success);
}
