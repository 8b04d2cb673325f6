//! The bundle profit rule on anvil: a bundle whose ops would not repay its gas is not sent; its ops wait
//! for company that makes it pay, and are dropped with the reason if none comes in time. An op that would
//! lose the relayer money whatever its company (calldata the EIP-7623 floor prices above what it pays) is
//! dropped alone, its sender charged, and the ops bundled with it go on.

mod common;

use alloy::{providers::Provider, signers::Signer};
use alloy_primitives::U256;
use common::*;
use keyscope_core::{
    client::rpc_user_op,
    ops::OpKind,
    rpc_op::RpcUserOperation,
    user_op::{PackedUserOperation, pack_u128s},
};
use keyscope_relayer::{
    Relayer,
    config::BundlingMode,
    min_pre_verification_gas,
    store::{OpRecord, OpStatus, Store},
};
use serde_json::{Value, json};

/// A session order on `lane`/`seq` with gas limits from the relayer's estimate (the call limit trimmed so
/// no unused-gas penalty pays for it) and `extra_pvg` over the door's minimum preVerificationGas: an op
/// that pays its share of a shared bundle and no more.
async fn tight_order(
    s: &Setup,
    t: &Trader,
    lane: u32,
    seq: u64,
    extra_pvg: u64,
) -> PackedUserOperation {
    let mut op = s.order_op(t, lane, seq, "0.01", "60500", false).await;
    let gas = estimate(s, &op).await;
    // The estimate is used gas x 1.5 + 20,000: two thirds of it is within ~14,000 of what the call uses.
    op.accountGasLimits = pack_u128s(gas["verificationGasLimit"], gas["callGasLimit"] * 2 / 3);
    // The minimum depends on the signature's bytes: leave room for the new signature's (at most 65 x 12).
    op.preVerificationGas = U256::from(min_pre_verification_gas(&op) + 800 + extra_pvg);
    s.re_sign_session_op(t, op).await
}

/// The relayer's gas estimate for `op`, by field.
async fn estimate(s: &Setup, op: &PackedUserOperation) -> std::collections::HashMap<String, u128> {
    let est = s
        .call(
            "eth_estimateUserOperationGas",
            json!([rpc_user_op(op), s.d.entry_point]),
        )
        .await
        .unwrap();
    est.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let hex = v.as_str().unwrap().trim_start_matches("0x");
            (k.clone(), u128::from_str_radix(hex, 16).unwrap())
        })
        .collect()
}

async fn status(s: &Setup, hash: &Value) -> Value {
    s.call("keyscope_userOperationStatus", json!([hash]))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_bundle_that_would_lose_money_waits_for_company() {
    let s = setup("economics", 42_020, BundlingMode::Manual, |c| {
        c.bundler.profit_wait_ms = 60_000;
    })
    .await;
    let t = s.trader(20, "20000").await;
    let relayer = s.relayer.identity().relayer;
    let sent_before = s.provider.get_transaction_count(relayer).await.unwrap();

    // Alone, an op paying only its share of a four-op bundle would cost the relayer more than it repays.
    let lone = s.send(&tight_order(&s, &t, 0, 0, 0).await).await.unwrap();
    let answer = s
        .call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    assert_eq!(answer, "ok", "nothing sent");
    assert_eq!(
        s.provider.get_transaction_count(relayer).await.unwrap(),
        sent_before
    );
    assert_eq!(status(&s, &lone).await["status"], "pending");
    assert!(s.metrics().await.contains("keyscope_bundles_held_total 1"));

    // With an op that pays more than its share, the bundle repays its gas: both are sent and mined.
    let generous = s
        .send(&tight_order(&s, &t, 0, 1, 40_000).await)
        .await
        .unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    for h in [&lone, &generous] {
        assert_eq!(s.receipt(h).await["success"], true);
    }
    // The metrics show what the mined bundle cost and what its ops repaid: no loss.
    let text = s.metrics().await;
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .parse()
            .unwrap()
    };
    let (cost, repaid) = (
        value("keyscope_bundle_cost_gwei_total"),
        value("keyscope_bundle_repaid_gwei_total"),
    );
    assert!(
        cost > 0 && repaid >= cost,
        "cost {cost} gwei, repaid {repaid} gwei"
    );
    s.relayer.stop().await;
}

#[tokio::test]
async fn ops_no_bundle_pays_for_are_dropped_with_the_reason_after_the_wait() {
    let s = setup("economics-drop", 42_021, BundlingMode::Manual, |c| {
        c.bundler.profit_wait_ms = 300;
    })
    .await;
    let t = s.trader(21, "20000").await;
    let lone = s.send(&tight_order(&s, &t, 0, 0, 0).await).await.unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    assert_eq!(status(&s, &lone).await["status"], "pending");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    let st = status(&s, &lone).await;
    assert_eq!(st["status"], "dropped", "{st}");
    assert!(
        st["reason"]
            .as_str()
            .unwrap()
            .contains("no bundle repays its gas"),
        "{st}"
    );
    assert!(
        s.metrics()
            .await
            .contains("keyscope_ops_unpaid_dropped_total 1")
    );
    // A client following the relayer's estimate (a bundle of its own) is sent at once, alone.
    let mut op = s.order_op(&t, 0, 0, "0.01", "60500", false).await;
    let gas = estimate(&s, &op).await;
    op.accountGasLimits = pack_u128s(gas["verificationGasLimit"], gas["callGasLimit"]);
    op.preVerificationGas = U256::from(gas["preVerificationGas"]);
    let op = s.re_sign_session_op(&t, op).await;
    let h = s.send(&op).await.unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    assert_eq!(s.receipt(&h).await["success"], true);
    s.relayer.stop().await;
}

/// An op sent at the relayer's own estimate: it pays for a bundle of its own.
async fn paying_order(s: &Setup, t: &Trader) -> PackedUserOperation {
    let mut op = s.order_op(t, 0, 0, "0.01", "60500", false).await;
    let gas = estimate(s, &op).await;
    op.accountGasLimits = pack_u128s(gas["verificationGasLimit"], gas["callGasLimit"]);
    op.preVerificationGas = U256::from(gas["preVerificationGas"]);
    s.re_sign_session_op(t, op).await
}

#[tokio::test]
async fn a_poison_op_past_the_door_is_dropped_alone_and_charged() {
    let s = setup("economics-poison", 42_046, BundlingMode::Manual, |_| {}).await;
    // Five bystanders, each its own sender, each paying its way.
    let mut bystanders = Vec::new();
    for seed in 0..5 {
        let t = s.trader(30 + seed, "20000").await;
        bystanders.push(s.send(&paying_order(&s, &t).await).await.unwrap());
    }
    // The attacker: an owner op carrying 80 kB of calldata (to an address with no code), its
    // preVerificationGas paying 16 gas a byte as a door blind to EIP-7623 asked, not the 40 a byte the
    // chain's calldata floor charges. Whatever the door asks today, such an op may be in the pool (an
    // older door accepted it): it goes in through the store, as ops accepted before a restart do.
    let attacker = s.trader(40, "20000").await;
    let junk = execute(
        alloy_primitives::Address::repeat_byte(0x77),
        vec![1; 80_000],
    );
    let seq = s.nonce(attacker.account, Default::default()).await;
    let mut poison = s.owner_op(&attacker, seq.to(), junk).await;
    poison.accountGasLimits = pack_u128s(1_000_000, 1_000_000);
    poison.preVerificationGas = U256::from(16 * poison.callData.len() as u64 + 60_000);
    poison.signature = attacker
        .owner
        .sign_hash(&s.hash(&poison))
        .await
        .unwrap()
        .as_bytes()
        .to_vec()
        .into();
    let poison_hash = s.hash(&poison);
    let config = s.config.clone();
    let Setup { relayer, chain, .. } = s;
    relayer.stop().await;
    let store = Store::open(&config.data_dir.join("relayer.redb")).unwrap();
    store
        .write(
            vec![OpRecord {
                hash: poison_hash,
                user_operation: RpcUserOperation::from_packed(&poison),
                kind: OpKind::Other,
                session_key: None,
                keyscope: true,
                status: OpStatus::Pending,
                order: u64::MAX / 2,
                valid_until: u64::MAX,
                timings: Default::default(),
                tx_hash: None,
                replaced_txs: Vec::new(),
                block_number: None,
                block_hash: None,
                success: None,
                reason: None,
                health: None,
            }],
            Vec::new(),
        )
        .await
        .unwrap();
    drop(store);
    let relayer = Relayer::start(config).await.expect("restarts");
    assert_eq!(relayer.resumed, 6, "the bystanders and the poison op");
    let url = relayer.url();
    let call = |method: &'static str, params: Value| rpc(&url, method, params);

    // One bundle round: the poison op is dropped alone, the bystanders are mined.
    let _ = call("debug_bundler_sendBundleNow", json!([])).await;
    for h in &bystanders {
        assert_eq!(receipt_at(&url, h).await["success"], true, "{h}");
    }
    let st = call("keyscope_userOperationStatus", json!([poison_hash]))
        .await
        .unwrap();
    assert_eq!(st["status"], "dropped", "{st}");
    assert!(st["reason"].as_str().unwrap().contains("EIP-7623"), "{st}");
    // Its sender is charged: banned in the reputation (ERC-7562's treatment of an entity that crashed a
    // bundle), so the attack is not free to repeat.
    let reputation = call("debug_bundler_dumpReputation", json!([chain.d.entry_point]))
        .await
        .unwrap();
    let entry = reputation
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["address"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&attacker.account.to_string())
        })
        .unwrap_or_else(|| panic!("the attacker is not charged: {reputation}"));
    assert_eq!(entry["status"], "0x2", "banned: {entry}");
    relayer.stop().await;
}
