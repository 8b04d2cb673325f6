//! The client end to end on a devnet (anvil + script/Deploy.s.sol): an account deployed by its first
//! op, a session granted, an order filled, and scope violations refused before anything is sent.

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use alloy_primitives::U256;
use keyscope_core::{
    bindings::{IEntryPoint, ISessionManager, PerpVenue, TestUSD, TradingAccount},
    client::ClientError,
    devnet::{Devnet, publish_price, repo_root},
    grant::{GrantContext, grant_digest},
    ops,
    refusal::RefusalKind,
    scope::TradingScope,
    units::parse_units,
};

alloy::sol! {
    #[sol(rpc)]
    interface DenyList {
        function isForbiddenSelector(bytes4 s) external pure returns (bool);
    }
}

/// The README's deny list, between its `<!-- deny-list -->` markers.
fn readme_deny_list() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("<!-- deny-list -->")
        .nth(1)
        .and_then(|b| b.split("<!-- /deny-list -->").next())
        .expect("the README marks its deny list");
    block
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn account_session_and_order_on_devnet() {
    let devnet = Devnet::start(&repo_root(), 0, 41_001)
        .await
        .expect("devnet starts");
    let d = devnet.deployment.clone();
    let (provider, client) = devnet.self_bundling(1);

    let owner = devnet.signer(2);
    let session = PrivateKeySigner::random();
    let account = client
        .account_address(owner.address(), U256::ZERO)
        .await
        .unwrap();
    assert!(!client.is_deployed(account).await.unwrap());

    // Fund the counterfactual account: ETH for gas from the relayer, collateral from the token owner.
    provider
        .send_transaction(
            TransactionRequest::default()
                .with_to(account)
                .with_value(parse_units("1", 18).unwrap()),
        )
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let deployer = ProviderBuilder::new()
        .wallet(EthereumWallet::from(devnet.signer(0)))
        .connect_http(devnet.endpoint_url());
    TestUSD::new(d.collateral, &deployer)
        .mint(account, parse_units("5000", 6).unwrap())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    // First op: deploy, approve, deposit 5,000, grant the session key.
    let now = client.chain_time().await.unwrap();
    let scope = TradingScope::new(
        d.venue,
        vec![d.market_id("BTC").unwrap()],
        parse_units("0.5", 18).unwrap(),
        parse_units("40000", 18).unwrap(),
    )
    .build(now)
    .unwrap();
    let calls = ops::first_op_calls(
        account,
        d.collateral,
        d.venue,
        parse_units("5000", 6).unwrap(),
        vec![(session.address(), scope.clone())],
    );
    let op = client.owner_op(&owner, U256::ZERO, calls).await.unwrap();
    assert!(!op.initCode.is_empty(), "the first op deploys the account");
    let outcome = client.send(&op).await.unwrap();
    assert!(outcome.success, "{outcome:?}");
    let acct = TradingAccount::new(account, &provider);
    let sessions = ISessionManager::new(account, &provider);
    assert_eq!(acct.owner().call().await.unwrap(), owner.address());
    assert!(
        sessions
            .getSession(session.address())
            .call()
            .await
            .unwrap()
            .active
    );

    // The README's deny list is exactly what the deployed module refuses to grant.
    let module = DenyList::new(acct.sessionManager().call().await.unwrap(), &provider);
    let denied = readme_deny_list();
    // ... and nothing more: the module's function compares the selector against as many entries.
    let source =
        std::fs::read_to_string(repo_root().join("contracts/account/SessionManager.sol")).unwrap();
    let body = source
        .split("function isForbiddenSelector")
        .nth(1)
        .and_then(|b| b.split("\n    }").next())
        .unwrap();
    assert_eq!(body.matches("s == ").count(), denied.len(), "{denied:?}");
    for signature in &denied {
        let selector = alloy_primitives::FixedBytes::<4>::from_slice(
            &alloy_primitives::keccak256(signature)[..4],
        );
        assert!(
            module.isForbiddenSelector(selector).call().await.unwrap(),
            "{signature} is on the README's deny list but grantable"
        );
    }
    for allowed in [
        "placeOrder(uint32,int256,uint256,bool)",
        "depositMargin(uint256)",
        "decreaseAllowance(address,uint256)",
    ] {
        let selector = alloy_primitives::FixedBytes::<4>::from_slice(
            &alloy_primitives::keccak256(allowed)[..4],
        );
        assert!(
            !module.isForbiddenSelector(selector).call().await.unwrap(),
            "{allowed}"
        );
    }

    // The Rust grant digest is the account's own.
    let ctx = GrantContext {
        chain_id: d.chain_id,
        account,
        entry_point: d.entry_point,
        epoch: acct.epoch().call().await.unwrap(),
        key_nonce: acct.keyNonce(session.address()).call().await.unwrap(),
    };
    assert_eq!(
        grant_digest(&ctx, session.address(), &scope),
        sessions
            .grantDigest(session.address(), scope.clone())
            .call()
            .await
            .unwrap()
    );

    // The session key buys 0.2 BTC.
    publish_price(
        &deployer,
        &d,
        &devnet.signer(0),
        0,
        parse_units("60000", 18).unwrap(),
    )
    .await
    .unwrap();
    let order = |market: u32, size: &str, limit: &str| {
        vec![ops::place_order(
            d.venue,
            market,
            size.parse().unwrap(),
            parse_units(limit, 18).unwrap(),
            false,
        )]
    };
    let op = client
        .session_op(
            &session,
            account,
            0,
            order(0, "200000000000000000", "60100"),
            60,
        )
        .await
        .unwrap();
    let outcome = client.send(&op).await.unwrap();
    assert!(outcome.success, "{outcome:?}");
    let pos = PerpVenue::new(d.venue, &provider)
        .position(account, 0)
        .call()
        .await
        .unwrap();
    assert_eq!(pos.size.to_string(), "200000000000000000");

    // Out of scope: refused by simulation, and nothing is sent.
    let nonce_before = IEntryPoint::new(d.entry_point, &provider)
        .getNonce(
            account,
            keyscope_core::SessionLane::new(session.address(), 0).nonce_key(),
        )
        .call()
        .await
        .unwrap();
    let op = client
        .session_op(
            &session,
            account,
            0,
            order(1, "100000000000000000", "3010"),
            60,
        )
        .await
        .unwrap();
    match client.send(&op).await {
        Err(ClientError::Refused(reason)) => {
            assert_eq!(reason.kind, RefusalKind::ScopeViolation, "{reason}");
            assert_eq!(reason.error.as_deref(), Some("SessionMarketNotAllowed"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let withdraw = vec![ops::withdraw_margin(d.venue, U256::from(1))];
    let op = client
        .session_op(&session, account, 0, withdraw, 60)
        .await
        .unwrap();
    match client.simulate(&op).await {
        Err(ClientError::Refused(reason)) => {
            assert_eq!(
                reason.error.as_deref(),
                Some("SessionCallNotPermitted"),
                "{reason}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let nonce_after = IEntryPoint::new(d.entry_point, &provider)
        .getNonce(
            account,
            keyscope_core::SessionLane::new(session.address(), 0).nonce_key(),
        )
        .call()
        .await
        .unwrap();
    assert_eq!(nonce_before, nonce_after, "refused ops were never sent");

    // Enable mode: a second key trades in its very first op, the owner's grant riding inside it.
    let second = PrivateKeySigner::random();
    let scope2 = TradingScope::new(
        d.venue,
        vec![0],
        parse_units("0.1", 18).unwrap(),
        parse_units("10000", 18).unwrap(),
    )
    .build(client.chain_time().await.unwrap())
    .unwrap();
    let op = client
        .enable_op(
            &owner,
            &second,
            account,
            &scope2,
            order(0, "-50000000000000000", "59900"),
            60,
        )
        .await
        .unwrap();
    let outcome = client.send(&op).await.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert!(
        sessions
            .getSession(second.address())
            .call()
            .await
            .unwrap()
            .active
    );
    assert_eq!(
        PerpVenue::new(d.venue, &provider)
            .position(account, 0)
            .call()
            .await
            .unwrap()
            .size
            .to_string(),
        "150000000000000000"
    );
    // The grant consumed the key's grant nonce, so its signature cannot enable the key again (the
    // contract suite replays it in every way: test/account/EnableMode.t.sol).
    assert_eq!(acct.keyNonce(second.address()).call().await.unwrap(), 1);
}
