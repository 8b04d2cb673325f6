//! P-256 keys on a real chain (anvil, whose default hardfork has the EIP-7951 precompile): an account
//! owned by a P-256 key, deployed and administered by P-256 owner ops; a P-256 session key trading within
//! its scope; a foreign P-256 signature refused; and on a chain without the precompile, a clear refusal.

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::U256;
use keyscope_core::{
    KeySigner, P256Key,
    bindings::{PerpVenue, TradingAccount},
    client::{Client, ClientError},
    devnet::{Devnet, repo_root},
    ops,
    units::parse_units,
};

fn client(devnet: &Devnet) -> Client<impl alloy::providers::Provider + Clone> {
    devnet.self_bundling(5).1
}

fn btc_order(devnet: &Devnet, size: &str) -> ops::Call {
    let size = parse_units(size, 18).unwrap();
    ops::place_order(
        devnet.deployment.venue,
        0,
        alloy_primitives::I256::try_from(size).unwrap(),
        parse_units("61000", 18).unwrap(),
        false,
    )
}

#[tokio::test]
async fn p256_owner_and_session_key_on_anvil() {
    let devnet = Devnet::start(&repo_root(), 0, 41_032).await.unwrap();
    let client = client(&devnet);
    let owner = P256Key::random();
    let session = P256Key::random();
    // The first op — deploying the account, depositing, granting the P-256 session key — is signed by the
    // P-256 owner.
    let account = devnet
        .open_btc_account(&owner, parse_units("10000", 6).unwrap(), &[session.id()])
        .await
        .unwrap();
    let provider = client.provider().clone();
    assert_eq!(
        TradingAccount::new(account, &provider)
            .owner()
            .call()
            .await
            .unwrap(),
        owner.id()
    );

    let op = client
        .session_op(&session, account, 0, vec![btc_order(&devnet, "0.01")], 30)
        .await
        .unwrap();
    assert_eq!(
        op.signature.len(),
        135,
        "mode 0x03: r, s and the public key"
    );
    assert!(client.send(&op).await.unwrap().success);
    let venue = PerpVenue::new(devnet.deployment.venue, &provider);
    assert_eq!(
        venue.position(account, 0).call().await.unwrap().size,
        alloy_primitives::I256::try_from(parse_units("0.01", 18).unwrap()).unwrap()
    );

    // Out of scope for the P-256 key exactly as for a secp256k1 key.
    let op = client
        .session_op(&session, account, 0, vec![btc_order(&devnet, "0.6")], 30)
        .await
        .unwrap();
    match client.simulate(&op).await {
        Err(ClientError::Refused(r)) => {
            assert_eq!(r.error.as_deref(), Some("SessionOrderTooLarge"), "{r:?}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Another P-256 key's signature over the same op (its own public key inside) is refused.
    let mut forged = client
        .session_op(&session, account, 0, vec![btc_order(&devnet, "0.01")], 30)
        .await
        .unwrap();
    let hash = client.hash(&forged).unwrap();
    let digest = keyscope_core::session::session_op_digest(
        hash,
        U256::from_be_slice(&forged.signature[1..7]).to::<u64>(),
        keyscope_core::session::grant_binding(1),
    );
    let other = P256Key::random().sign_digest(digest).await.unwrap();
    forged.signature = [&forged.signature[..7], &other[..]].concat().into();
    match client.simulate(&forged).await {
        Err(ClientError::Refused(r)) => assert!(r.detail.contains("AA24"), "{r:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The P-256 owner trades directly too.
    let op = client
        .owner_op(&owner, U256::ZERO, vec![btc_order(&devnet, "0.02")])
        .await
        .unwrap();
    assert_eq!((op.signature.len(), op.signature[0]), (129, 0x10));
    assert!(client.send(&op).await.unwrap().success);
}

#[tokio::test]
async fn without_the_precompile_p256_keys_are_refused_by_name() {
    let devnet = Devnet::start_with_args(
        &repo_root(),
        0,
        41_033,
        U256::from(keyscope_core::deploy::DEFAULT_INSURANCE),
        &["--hardfork", "prague"],
    )
    .await
    .unwrap();
    let client = client(&devnet);
    let owner = PrivateKeySigner::random();
    let session = P256Key::random();
    let account = devnet
        .open_btc_account(&owner, parse_units("10000", 6).unwrap(), &[session.id()])
        .await
        .unwrap();
    // Positive control: the secp256k1 owner trades on this chain.
    let op = client
        .owner_op(&owner, U256::ZERO, vec![btc_order(&devnet, "0.01")])
        .await
        .unwrap();
    assert!(client.send(&op).await.unwrap().success);
    let op = client
        .session_op(&session, account, 0, vec![btc_order(&devnet, "0.01")], 30)
        .await
        .unwrap();
    match client.simulate(&op).await {
        Err(ClientError::Refused(r)) => {
            assert_eq!(r.error.as_deref(), Some("MissingPrecompile"), "{r:?}");
            assert!(r.detail.contains("EIP-7951"), "{}", r.detail);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
