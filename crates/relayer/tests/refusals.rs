//! Every ERC-7769 error code, each from a real bad op against a real chain: wrong fields, an
//! EntryPoint refusal, a paymaster refusal, broken ERC-7562 rules, an op outside its window, a key
//! over its rate, an unstaked paymaster with a context, an aggregator, a bad signature, a paymaster
//! that cannot pay, and an order that would revert — with the typed reason a trader can act on.
//! A refused op changes nothing: the pool stays empty and nothing is mined.

mod common;

use alloy::{
    network::EthereumWallet,
    providers::{Provider, ProviderBuilder},
    signers::Signer,
    sol_types::SolCall,
};
use alloy_primitives::{Address, Bytes, U256};
use common::*;
use keyscope_core::{
    bindings::IEntryPoint,
    client::rpc_user_op,
    units::parse_units,
    user_op::{OpGas, PackedUserOperation, unsigned},
};
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};

alloy::sol!(
    #[sol(rpc)]
    RuleBreakingAccount,
    "../../out/RuleBreakingAccount.sol/RuleBreakingAccount.json"
);
alloy::sol!(
    #[sol(rpc)]
    TestPaymaster,
    "../../out/TestPaymaster.sol/TestPaymaster.json"
);

fn code(e: &Value) -> i64 {
    e["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error object: {e}"))
}

fn message(e: &Value) -> &str {
    e["message"].as_str().unwrap()
}

fn with_paymaster(op: &mut PackedUserOperation, paymaster: Address, mode: u8) {
    op.paymasterAndData = [
        paymaster.as_slice(),
        &100_000u128.to_be_bytes(),
        &50_000u128.to_be_bytes(),
        &[mode],
    ]
    .concat()
    .into();
}

/// A TestPaymaster deployed (by anvil key 7, so the setup client's key 4 keeps its own nonces) with
/// `deposit` ETH in the EntryPoint, if any.
async fn paymaster(s: &Chain, deposit: Option<&str>) -> Address {
    let funder = ProviderBuilder::new()
        .wallet(EthereumWallet::from(s.devnet.signer(7)))
        .connect_http(s.devnet.endpoint_url());
    let pm = TestPaymaster::deploy(&funder, s.d.entry_point)
        .await
        .unwrap();
    if let Some(eth) = deposit {
        pm.deposit()
            .value(parse_units(eth, 18).unwrap())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    *pm.address()
}

/// A session order on lane 2 at `seq` whose gas `paymaster` pays (TestPaymaster `mode`: 0 sponsors,
/// 1 refuses, 2 returns a context), signed after the paymaster fields are set.
async fn sponsored(
    s: &Chain,
    t: &Trader,
    seq: u64,
    mode: u8,
    paymaster: Address,
) -> PackedUserOperation {
    let mut op = s
        .session_op(
            t,
            2,
            seq,
            execute(s.d.venue, order_call("0.01", "60500", false)),
            60,
        )
        .await;
    with_paymaster(&mut op, paymaster, mode);
    s.re_sign_session_op(t, op).await
}

#[tokio::test]
async fn each_error_code_from_a_real_bad_op() {
    let s = setup("refusals", 42_002, BundlingMode::Manual, |c| {
        c.door.burst_per_key = 3.0;
        c.door.ops_per_second_per_key = 0.01;
    })
    .await;
    let t = s.trader(2, "20000").await;
    let other = s.trader(3, "2000").await;
    let ep = s.d.entry_point;
    let funder = ProviderBuilder::new()
        .wallet(EthereumWallet::from(s.devnet.signer(8)))
        .connect_http(s.devnet.endpoint_url());

    // -32602: fields. A wrong EntryPoint, an unparsable op, and too little preVerificationGas.
    let good = s.order_op(&other, 0, 0, "0.01", "60500", false).await;
    let e = s
        .call(
            "eth_sendUserOperation",
            json!([rpc_user_op(&good), Address::repeat_byte(1)]),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32602);
    assert!(message(&e).contains("unsupported entry point"), "{e}");
    let e = s
        .call("eth_sendUserOperation", json!([{ "sender": "0x12" }, ep]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32602, "{e}");
    let mut low_pvg = good.clone();
    low_pvg.preVerificationGas = U256::from(1000);
    let e = s.send(&low_pvg).await.unwrap_err();
    assert_eq!(code(&e), -32602);
    assert!(
        message(&e).contains("preVerificationGas 1000 is below"),
        "{e}"
    );

    // -32500: the EntryPoint refuses validation — a nonce from the future (AA25)...
    let skipped = s.order_op(&t, 0, 5, "0.01", "60500", false).await;
    let e = s.send(&skipped).await.unwrap_err();
    assert_eq!(code(&e), -32500);
    assert!(message(&e).starts_with("AA25 invalid account nonce"), "{e}");
    // ... and a session key outside its scope (ETH is not granted), with the typed reason.
    let eth_order = {
        let mut call = order_call("0.1", "3050", false);
        call[4 + 31] = 1; // marketId = 1 (ETH)
        s.session_op(&t, 0, 0, execute(s.d.venue, call), 60).await
    };
    let e = s.send(&eth_order).await.unwrap_err();
    assert_eq!(code(&e), -32500);
    assert_eq!(e["data"]["reason"], "scopeViolation", "{e}");
    assert!(message(&e).contains("SessionMarketNotAllowed"), "{e}");
    // A session key may never withdraw: refused in validation, before anything is paid.
    let withdraw = keyscope_core::bindings::PerpVenue::withdrawMarginCall {
        amount: U256::from(1),
    }
    .abi_encode();
    let e = s
        .send(
            &s.session_op(&t, 0, 0, execute(s.d.venue, withdraw), 60)
                .await,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32500);
    assert_eq!(e["data"]["reason"], "scopeViolation", "{e}");

    // -32507: an owner op signed by the wrong key.
    let mut forged = s
        .owner_op(
            &t,
            1,
            execute(s.d.venue, order_call("0.01", "60500", false)),
        )
        .await;
    forged.signature = s
        .devnet
        .signer(5)
        .sign_hash(&s.hash(&forged))
        .await
        .unwrap()
        .as_bytes()
        .to_vec()
        .into();
    let e = s.send(&forged).await.unwrap_err();
    assert_eq!(code(&e), -32507, "{e}");

    // -32503: an op that expires before it could be bundled (5 s left, the relayer wants 10).
    let short = s
        .session_op(
            &t,
            0,
            0,
            execute(s.d.venue, order_call("0.01", "60500", false)),
            5,
        )
        .await;
    let e = s.send(&short).await.unwrap_err();
    assert_eq!(code(&e), -32503, "{e}");
    assert!(
        message(&e).contains("must stay valid for at least 10s"),
        "{e}"
    );

    // -32521: orders that would revert in execution, with the venue's reason decoded.
    let far = s.order_op(&t, 0, 0, "0.1", "70000", false).await;
    let e = s.send(&far).await.unwrap_err();
    assert_eq!(code(&e), -32521);
    assert_eq!(e["data"]["reason"], "outsideLimitPrice", "{e}");
    // `other` has 1,000 on the venue: 0.5 BTC at 60,000 is within its scope but needs more margin.
    let big = s.order_op(&other, 1, 0, "0.5", "60500", false).await;
    let big_ok = s.send(&big).await;
    let err = big_ok.unwrap_err();
    assert_eq!(code(&err), -32521);
    assert_eq!(err["data"]["reason"], "insufficientMargin", "{err}");

    // A rule-breaking account, deployed and funded in the EntryPoint.
    let rb = RuleBreakingAccount::deploy(&funder, ep).await.unwrap();
    IEntryPoint::new(ep, &funder)
        .depositTo(*rb.address())
        .value(parse_units("1", 18).unwrap())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let fees = s.provider.estimate_eip1559_fees().await.unwrap();
    let rb_op = |mode: u8| {
        let mut op = unsigned(
            *rb.address(),
            U256::ZERO,
            RuleBreakingAccount::pingCall {}.abi_encode().into(),
            Bytes::new(),
            OpGas::default_for(false),
            fees.max_priority_fee_per_gas,
            fees.max_fee_per_gas,
        );
        op.signature = vec![mode; 65].into();
        op
    };
    // -32502: TIMESTAMP, and another contract's storage, in validation.
    let e = s.send(&rb_op(1)).await.unwrap_err();
    assert_eq!(code(&e), -32502);
    assert!(
        message(&e).contains("OP-011") && message(&e).contains("TIMESTAMP"),
        "{e}"
    );
    let e = s.send(&rb_op(2)).await.unwrap_err();
    assert_eq!(code(&e), -32502);
    assert!(message(&e).contains("STO-021"), "{e}");
    // More rules, each named in the message.
    // A DELEGATECALL runs in the account's frame, under its rules; code reads need code (or ISZERO after
    // EXTCODESIZE), and the EntryPoint's code is not the account's to inspect.
    for (mode, rule) in [
        (4u8, "OP-031"),
        (5, "OP-012"),
        (6, "OP-080"),
        (7, "banned opcode: NUMBER"),
        (8, "OP-041"),
        (9, "OP-054"),
    ] {
        let e = s.send(&rb_op(mode)).await.unwrap_err();
        assert_eq!(code(&e), -32502, "{e}");
        assert!(
            message(&e).contains(rule),
            "mode {mode} should break {rule}: {e}"
        );
    }
    // -32506: a signature aggregator.
    let e = s.send(&rb_op(3)).await.unwrap_err();
    assert_eq!(code(&e), -32506, "{e}");
    // Mode 0 is a clean op: accepted.
    s.send(&rb_op(0))
        .await
        .expect("a clean op from the same account is accepted");

    // Paymasters: one funded, one with no deposit.
    let pm = paymaster(&s, Some("1")).await;
    let broke = paymaster(&s, None).await;
    // A session key is sponsored only by paymasters its owner listed.
    let e = s
        .send(&sponsored(&s, &t, 0, 0, pm).await)
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32500, "{e}");
    assert_eq!(e["data"]["error"], "SessionPaymasterNotAllowed", "{e}");
    s.allow_paymasters(&t, &[pm, broke]).await;
    // -32501: the paymaster refuses.
    let e = s
        .send(&sponsored(&s, &t, 0, 1, pm).await)
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32501, "{e}");
    // -32502: an unstaked paymaster returning a context breaks ERC-7562's EREP-050 (the code the bundler
    // spec tests expect for it).
    let e = s
        .send(&sponsored(&s, &t, 0, 2, pm).await)
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32502, "{e}");
    assert!(
        message(&e).contains("postOp context but is not staked"),
        "{e}"
    );
    // -32508: a paymaster whose deposit cannot cover the op.
    let e = s
        .send(&sponsored(&s, &t, 0, 0, broke).await)
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32508, "{e}");

    // -32504: the session key's token bucket (burst 3 in this test) is empty: the good order, the
    // scope-refused ops and the rest gave their tokens back, so count what was accepted.
    let mut accepted = 0;
    let mut throttled = None;
    for lane in 10..20 {
        match s
            .send(&s.order_op(&other, lane, 0, "0.01", "60500", false).await)
            .await
        {
            Ok(_) => accepted += 1,
            Err(e) => {
                throttled = Some(e);
                break;
            }
        }
    }
    let e = throttled.expect("the bucket runs dry");
    assert_eq!(code(&e), -32504);
    assert!(message(&e).contains("retry in"), "{e}");
    assert_eq!(accepted, 3, "a full bucket of 3 is accepted first");

    // Refused ops changed nothing: only the four accepted ops wait, and no nonce moved.
    let pool = s
        .call("debug_bundler_dumpMempool", json!([ep]))
        .await
        .unwrap();
    assert_eq!(pool.as_array().unwrap().len(), 4, "{pool}");
    assert_eq!(
        s.nonce(t.account, Default::default()).await,
        U256::from(2),
        "only the setup op and the paymaster grant used the owner lane"
    );
    s.relayer.stop().await;
}

#[tokio::test]
async fn a_banned_paymaster_stays_banned_after_a_restart_and_a_throttled_one_is_capped() {
    let s = setup("banned", 42_013, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(13, "20000").await;
    let ep = s.d.entry_point;
    let pm = paymaster(&s, Some("1")).await;
    s.allow_paymasters(&t, &[pm]).await;
    // Seen 1,000 times, never included: far past ERC-7562's ban slack.
    s.call(
        "debug_bundler_setReputation",
        json!([[{ "address": pm, "opsSeen": 1000, "opsIncluded": 0 }], ep]),
    )
    .await
    .unwrap();
    let op = sponsored(&s, &t, 0, 0, pm).await;
    let e = s.send(&op).await.unwrap_err();
    assert_eq!(code(&e), -32504, "{e}");
    assert!(message(&e).contains("banned"), "{e}");

    // A graceful restart on the same store keeps the ban.
    let config = s.config.clone();
    let Setup { relayer, chain, .. } = s;
    relayer.stop().await;
    let relayer = keyscope_relayer::Relayer::start(config)
        .await
        .expect("restarts");
    let url = relayer.url();
    // Status 0x2: banned, in the number form the bundler spec reports it.
    let dump = rpc(&url, "debug_bundler_dumpReputation", json!([ep]))
        .await
        .unwrap();
    assert_eq!(
        dump,
        json!([{ "address": pm, "opsSeen": "0x3e8", "opsIncluded": "0x0", "status": "0x2" }])
    );
    let e = rpc(&url, "eth_sendUserOperation", json!([rpc_user_op(&op), ep]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32504, "{e}");
    // Cleared, the same op is accepted (the ban, not the op, refused it).
    rpc(&url, "debug_bundler_clearReputation", json!([]))
        .await
        .unwrap();
    rpc(&url, "eth_sendUserOperation", json!([rpc_user_op(&op), ep]))
        .await
        .expect("accepted once the ban is cleared");

    // Throttled (seen 150 times, never included): up to four pooled ops, then refused.
    rpc(
        &url,
        "debug_bundler_setReputation",
        json!([[{ "address": pm, "opsSeen": 150, "opsIncluded": 0 }], ep]),
    )
    .await
    .unwrap();
    let send = |seq: u64| {
        let (chain, t, url) = (&chain, &t, &url);
        async move {
            let op = sponsored(chain, t, seq, 0, pm).await;
            rpc(url, "eth_sendUserOperation", json!([rpc_user_op(&op), ep])).await
        }
    };
    for seq in 1..4 {
        send(seq)
            .await
            .expect("a throttled paymaster may have four ops pooled");
    }
    let e = send(4).await.unwrap_err();
    assert_eq!(code(&e), -32504, "{e}");
    assert!(message(&e).contains("throttled"), "{e}");
    relayer.stop().await;
}

/// `op` with the gas fields of a relayer estimate (`pvg` for preVerificationGas), signed by `t`'s owner.
async fn at_estimate(
    s: &Setup,
    t: &Trader,
    op: &PackedUserOperation,
    gas: &Value,
    pvg: u64,
) -> PackedUserOperation {
    let field = |k: &str| {
        u128::from_str_radix(gas[k].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let mut op = op.clone();
    op.accountGasLimits =
        keyscope_core::user_op::pack_u128s(field("verificationGasLimit"), field("callGasLimit"));
    op.preVerificationGas = U256::from(pvg);
    op.signature = t
        .owner
        .sign_hash(&s.hash(&op))
        .await
        .unwrap()
        .as_bytes()
        .to_vec()
        .into();
    op
}

#[tokio::test]
async fn a_large_calldata_op_pays_eip7623s_floor_at_the_door() {
    let s = setup("calldata-floor", 42_033, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(33, "20000").await;
    let ep = s.d.entry_point;
    // An owner op carrying 40 kB of non-zero calldata to an address with no code: its execution burns far
    // less gas than the chain's calldata floor (10 gas a token) charges the bundle for it.
    let seq = s.nonce(t.account, Default::default()).await;
    let junk = execute(Address::repeat_byte(0x77), vec![1; 40_000]);
    let mut op = s.owner_op(&t, seq.to(), junk).await;
    // Gas left to the relayer, as clients ask for an estimate.
    op.accountGasLimits = Default::default();
    op.preVerificationGas = U256::ZERO;
    let gas = s
        .call(
            "eth_estimateUserOperationGas",
            json!([rpc_user_op(&op), ep]),
        )
        .await
        .unwrap();
    let estimated = u64::from_str_radix(
        gas["preVerificationGas"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();

    // At the old estimate — a bundle of its own with calldata at 16/4 gas a byte, blind to the floor — it
    // is refused at the door, naming the preVerificationGas it needs; nothing is pooled.
    let old_pvg = keyscope_relayer::lone_pre_verification_gas(&op) * 11 / 10;
    let old = at_estimate(&s, &t, &op, &gas, old_pvg).await;
    let e = s.send(&old).await.unwrap_err();
    assert_eq!(code(&e), -32602, "{e}");
    assert!(message(&e).contains("EIP-7623"), "{e}");
    let needed: u64 = message(&e)
        .split("is below the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the refusal names the preVerificationGas needed: {e}"));
    assert!(needed > old_pvg + 500_000, "{needed} vs {old_pvg}");
    assert!(
        needed <= estimated,
        "the estimate covers it: {needed} vs {estimated}"
    );
    let pool = s
        .call("debug_bundler_dumpMempool", json!([ep]))
        .await
        .unwrap();
    assert_eq!(pool, json!([]), "a refused op is not pooled");

    // At the new estimate it is accepted, and mined alone it pays at least what its bundle cost the chain.
    let new = at_estimate(&s, &t, &op, &gas, estimated).await;
    let hash = s
        .send(&new)
        .await
        .expect("accepted at the relayer's estimate");
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    let r = s.receipt(&hash).await;
    assert_eq!(r["success"], true, "{r}");
    let hex =
        |v: &Value| u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    let charged = hex(&r["actualGasUsed"]);
    let bundle = hex(&r["receipt"]["gasUsed"]);
    assert!(
        charged >= bundle,
        "the op paid {charged} gas of its bundle's {bundle}"
    );
    s.relayer.stop().await;
}

#[tokio::test]
async fn an_eip7702_authorization_is_refused_not_ignored() {
    let s = setup("eip7702", 42_034, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(34, "20000").await;
    let ep = s.d.entry_point;
    let op = s.order_op(&t, 0, 0, "0.01", "60500", false).await;
    let authorization = json!({
        "chainId": "0x1", "address": Address::repeat_byte(0x70), "nonce": "0x0",
        "yParity": "0x0", "r": format!("0x{}", "11".repeat(32)), "s": format!("0x{}", "22".repeat(32)),
    });
    // Whatever form the authorization takes, sending and estimating are refused, and nothing is pooled.
    for auth in [authorization, json!("0x01"), json!([]), json!(false)] {
        let mut with_auth = rpc_user_op(&op);
        with_auth["eip7702Auth"] = auth.clone();
        for method in ["eth_sendUserOperation", "eth_estimateUserOperationGas"] {
            let e = s.call(method, json!([with_auth, ep])).await.unwrap_err();
            assert_eq!(code(&e), -32602, "{method} {auth}: {e}");
            assert_eq!(
                message(&e),
                "EIP-7702 authorizations are not supported by this relayer yet",
                "{method} {auth}"
            );
        }
    }
    // An EOA as sender (the delegation an authorization would give it is not applied): the EntryPoint's own
    // refusal, AA20 with its code, as for the same op without an authorization (the bundler spec tests'
    // `test_send_bad_eip_7702_drop_userop`).
    let mut from_eoa = rpc_user_op(&op);
    from_eoa["sender"] = json!(Address::repeat_byte(0xe0));
    from_eoa["eip7702Auth"] = json!({
        "chainId": "0x1", "address": Address::repeat_byte(0x70), "nonce": "0x2",
        "yParity": "0x0", "r": format!("0x{}", "11".repeat(32)), "s": format!("0x{}", "22".repeat(32)),
    });
    let e = s
        .call("eth_sendUserOperation", json!([from_eoa, ep]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), -32500, "{e}");
    assert!(message(&e).contains("AA20"), "{e}");
    let pool = s
        .call("debug_bundler_dumpMempool", json!([ep]))
        .await
        .unwrap();
    assert_eq!(pool, json!([]), "a refused op is not pooled");
    // `null` is no authorization: the same op is accepted.
    let mut plain = rpc_user_op(&op);
    plain["eip7702Auth"] = Value::Null;
    s.call("eth_sendUserOperation", json!([plain, ep]))
        .await
        .expect("an op without an authorization is accepted");
    s.relayer.stop().await;
}
