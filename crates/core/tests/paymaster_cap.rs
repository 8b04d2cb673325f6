//! The per-key paymaster cap on a devnet (anvil + script/Deploy.s.sol, chain 42,310): a key granted through
//! `TradingScope` with a listed paymaster, its ops sponsored by a real paymaster contract, and core's mirror
//! (`fees::PaymasterEntry`, `policy::check_paymaster_charge`, read from the account's storage word) predicting
//! every verdict the account gives — the sponsored op charged exactly, the attacker's drain refused with the
//! same reason, the budget's end refused with the same reason — while the paymaster pays no more than the cap.

use alloy::{
    network::TransactionBuilder, providers::Provider, rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use alloy_primitives::{Address, U256};
use keyscope_core::{
    bindings::{IEntryPoint, ISessionManager},
    client::ClientError,
    devnet::{Devnet, repo_root},
    fees::{PaymasterEntry, max_sponsored_cost, paymaster_entry_slot},
    grant::{GrantContext, grant_digest},
    ops,
    policy::{PolicyRefusal, check_paymaster_charge},
    scope::TradingScope,
    units::parse_units,
    user_op::{PackedUserOperation, pack_u128s},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

alloy::sol!(
    #[sol(rpc)]
    TestPaymaster,
    "../../out/TestPaymaster.sol/TestPaymaster.json"
);

const GWEI: u64 = 1_000_000_000;

fn eth(v: &str) -> U256 {
    parse_units(v, 18).unwrap()
}

#[tokio::test]
async fn a_listed_paymaster_pays_within_the_keys_cap_and_core_predicts_every_verdict() {
    let devnet = Devnet::start(&repo_root(), 0, 42_310)
        .await
        .expect("devnet starts");
    let d = devnet.deployment.clone();
    let (provider, client) = devnet.self_bundling(1);
    let owner = devnet.signer(2);
    let session = PrivateKeySigner::random();
    let key = session.address();
    let account = client
        .account_address(owner.address(), U256::ZERO)
        .await
        .unwrap();
    provider
        .send_transaction(
            TransactionRequest::default()
                .with_to(account)
                .with_value(eth("1")),
        )
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    let pm = TestPaymaster::deploy(&provider, d.entry_point)
        .await
        .unwrap();
    pm.deposit()
        .value(eth("1"))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let paymaster = *pm.address();

    // The grant: the paymaster may be charged 0.01 ETH an op and 0.015 ETH in all for this key.
    let mut trading = TradingScope::new(
        d.venue,
        vec![d.market_id("BTC").unwrap()],
        parse_units("0.5", 18).unwrap(),
        parse_units("40000", 18).unwrap(),
    );
    trading.limits.paymasters = vec![paymaster];
    trading.limits.paymaster_max_op_cost = eth("0.01");
    trading.limits.paymaster_budget = eth("0.015");
    let scope = trading.build(client.chain_time().await.unwrap()).unwrap();
    let op = client
        .owner_op(
            &owner,
            U256::ZERO,
            vec![ops::grant_session(account, key, scope.clone())],
        )
        .await
        .unwrap();
    assert!(client.send(&op).await.unwrap().success);
    let sessions = ISessionManager::new(account, &provider);
    let grant_id = sessions.getSession(key).call().await.unwrap().grantId;

    // The Rust grant digest (with the two new fields) is the account's own.
    let acct = keyscope_core::bindings::TradingAccount::new(account, &provider);
    let ctx = GrantContext {
        chain_id: d.chain_id,
        account,
        entry_point: d.entry_point,
        epoch: acct.epoch().call().await.unwrap(),
        key_nonce: acct.keyNonce(key).call().await.unwrap(),
    };
    assert_eq!(
        grant_digest(&ctx, key, &scope),
        sessions
            .grantDigest(key, scope.clone())
            .call()
            .await
            .unwrap()
    );

    // The entry as core reads it from the account's storage is what the account reports.
    let entry = || async {
        let word = provider
            .get_storage_at(account, paymaster_entry_slot(key, grant_id, paymaster))
            .await
            .unwrap();
        let stored = PaymasterEntry::decode(word);
        let reported: PaymasterEntry = sessions
            .paymasterAllowance(key, paymaster)
            .call()
            .await
            .unwrap()
            .into();
        assert_eq!(
            stored, reported,
            "the storage word and paymasterAllowance agree"
        );
        stored
    };
    let start = entry().await;
    assert!(start.listed);
    assert_eq!(start.max_op_cost, eth("0.01"));
    assert_eq!(start.left, eth("0.015"));

    let entry_point = IEntryPoint::new(d.entry_point, &provider);
    let deposit = || async { entry_point.balanceOf(paymaster).call().await.unwrap() };
    let account_eth = || async {
        provider.get_balance(account).await.unwrap()
            + entry_point.balanceOf(account).call().await.unwrap()
    };
    // A sponsored heartbeat of the key (a session op like any other), with the gas fields and fee the
    // attacker chooses, signed by the key.
    let sponsored = |pvg: u128, max_fee: u128| {
        let client = &client;
        let session = &session;
        async move {
            let mut op: PackedUserOperation = client
                .unsigned_key_op(key, account, 0, ops::heartbeat_call_data(key, 3600))
                .await
                .unwrap();
            op.preVerificationGas = U256::from(pvg);
            op.gasFees = pack_u128s(max_fee, max_fee);
            let mut pnd = paymaster.to_vec();
            pnd.extend_from_slice(&100_000u128.to_be_bytes());
            pnd.extend_from_slice(&0u128.to_be_bytes());
            op.paymasterAndData = pnd.into();
            client.sign_key_op(session, account, op, 60).await.unwrap()
        }
    };
    let charged = |op: &PackedUserOperation| {
        let g = U256::from(GWEI);
        max_sponsored_cost(op).unwrap().div_ceil(g) * g
    };

    // 0. Differential: random gas fields and fee prices on both sides of the per-op cap, each op signed by the
    //    key and simulated through the real EntryPoint: the account's verdict and reason are core's.
    let mut rng = StdRng::seed_from_u64(42_310);
    let (mut passed, mut refused) = (0, 0);
    for _ in 0..60 {
        let mut op = sponsored(
            rng.gen_range(0..2_000_000),
            rng.gen_range(1..=20) * GWEI as u128,
        )
        .await;
        op.accountGasLimits = pack_u128s(
            rng.gen_range(200_000..1_000_000),
            rng.gen_range(100_000..1_000_000),
        );
        let mut pnd = paymaster.to_vec();
        pnd.extend_from_slice(&rng.gen_range(50_000u128..300_000).to_be_bytes());
        pnd.extend_from_slice(&rng.gen_range(0u128..100_000).to_be_bytes());
        op.paymasterAndData = pnd.into();
        let op = client.sign_key_op(&session, account, op, 60).await.unwrap();
        let predicted = start.check(&op);
        assert_eq!(
            predicted.is_ok(),
            check_paymaster_charge(&start, &op).is_ok(),
            "fees and policy agree"
        );
        match (predicted, client.simulate(&op).await) {
            (Ok(()), Ok(())) => passed += 1,
            (Err(p), Err(ClientError::Refused(r))) => {
                assert_eq!(r.detail, p.detail, "the same reason");
                refused += 1;
            }
            (p, chain) => panic!("core says {p:?}, the chain {chain:?} for {op:?}"),
        }
    }
    assert!(
        passed > 5 && refused > 5,
        "{passed} passed, {refused} refused"
    );

    // 1. An ordinary sponsored op: predicted to pass, passes, charged exactly its prefund in whole gwei.
    let op = sponsored(60_000, 5 * GWEI as u128).await;
    check_paymaster_charge(&start, &op).unwrap();
    start.check(&op).unwrap();
    let (eth_before, deposit_before) = (account_eth().await, deposit().await);
    let outcome = client.send(&op).await.unwrap();
    assert!(outcome.success, "{outcome:?}");
    let after_one = entry().await;
    assert_eq!(after_one.left, start.left - charged(&op));
    assert_eq!(account_eth().await, eth_before, "the account paid no gas");
    let paid = deposit_before - deposit().await;
    assert!(paid > U256::ZERO && paid <= charged(&op), "{paid}");

    // 2. The drain: 1.2M gas of preVerificationGas at 10,000 gwei, the attacker's own beneficiary. Core
    //    predicts the account's refusal, word for word; the chain refuses it; nothing is paid or charged.
    let drain = sponsored(1_200_000, 10_000 * GWEI as u128).await;
    let predicted = after_one.check(&drain).unwrap_err();
    assert!(matches!(
        check_paymaster_charge(&after_one, &drain),
        Err(PolicyRefusal::PaymasterOpCostTooHigh { .. })
    ));
    let deposit_before = deposit().await;
    match client.send(&drain).await {
        Err(ClientError::Refused(r)) => {
            assert_eq!(r.error.as_deref(), Some("SessionPaymasterOpCostTooHigh"));
            assert_eq!(r.detail, predicted.detail, "core's reason is the account's");
        }
        other => panic!("the drain went through: {other:?}"),
    }
    assert_eq!(
        deposit().await,
        deposit_before,
        "the paymaster paid nothing"
    );
    assert_eq!(entry().await, after_one);

    // 3. Ops at the per-op cap until the budget ends: the first fits, the next is refused with the reason
    //    core predicted from the storage word.
    let gas = {
        let probe = sponsored(60_000, 1).await;
        max_sponsored_cost(&probe).unwrap().to::<u128>()
    };
    let at_cap = (eth("0.01").to::<u128>() / gas) / GWEI as u128 * GWEI as u128;
    let op = sponsored(60_000, at_cap).await;
    assert!(charged(&op) <= eth("0.01"));
    check_paymaster_charge(&after_one, &op).unwrap();
    assert!(client.send(&op).await.unwrap().success);
    let after_two = entry().await;
    assert_eq!(after_two.left, after_one.left - charged(&op));
    let over = sponsored(60_000, at_cap).await;
    let predicted = after_two.check(&over).unwrap_err();
    assert!(matches!(
        check_paymaster_charge(&after_two, &over),
        Err(PolicyRefusal::PaymasterBudgetExceeded { .. })
    ));
    match client.send(&over).await {
        Err(ClientError::Refused(r)) => {
            assert_eq!(r.error.as_deref(), Some("SessionPaymasterBudgetExceeded"));
            assert_eq!(r.detail, predicted.detail);
        }
        other => panic!("an op over the budget went through: {other:?}"),
    }
    // In all, the paymaster paid no more than the budget for this key.
    assert!(eth("1") - deposit().await <= eth("0.015"));
    let other = sessions
        .paymasterAllowance(Address::repeat_byte(1), paymaster)
        .call()
        .await
        .unwrap();
    assert!(!other.listed, "another key lists nothing");
}
