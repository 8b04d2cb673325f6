//! An account whose EntryPoint deposit no longer covers its op's prefund pays the rest while it validates,
//! which costs verification gas. The relayer validates each op on the deposit the chain will really leave
//! it: after its own bundle is mined the pending state reads the chain again (what a bundle's ops are
//! charged depends on the base fee of the block that mines it), and simulations charge ops at the chain's
//! base fee. So an op whose verificationGasLimit cannot cover paying its prefund is refused at the door,
//! not accepted and dropped later for AA26, and ops whose limits cover it are all mined.

mod common;

use alloy::{providers::Provider, sol_types::SolCall};
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use common::*;
use keyscope_core::{
    bindings::IEntryPoint,
    nonce::SessionLane,
    ops,
    session::sign_session_op,
    user_op::{OpGas, PackedUserOperation, unsigned},
};
use keyscope_relayer::config::BundlingMode;
use serde_json::{Value, json};

const GWEI: u128 = 1_000_000_000;
const TIP: u128 = GWEI;
const CALL_GAS: u128 = 400_000;
const PRE_VERIFICATION_GAS: u128 = 60_000;

/// `t`'s order at sequence `seq` of lane 0 with verification limit `verification`, its max fee set so its
/// prefund is `prefund` (less than one gas unit's fee under it).
async fn order(
    s: &Setup,
    t: &Trader,
    seq: u64,
    verification: u128,
    prefund: U256,
) -> PackedUserOperation {
    let gas = OpGas {
        verification,
        call: CALL_GAS,
        pre_verification: PRE_VERIFICATION_GAS,
    };
    let max_fee =
        (prefund / U256::from(verification + CALL_GAS + PRE_VERIFICATION_GAS)).to::<u128>();
    let calls = execute(s.d.venue, order_call("0.01", "60500", false));
    let mut op = unsigned(
        t.account,
        SessionLane::new(t.session.address(), 0).nonce(seq),
        ops::session_call_data(t.session.address(), calls),
        Bytes::new(),
        gas,
        TIP,
        max_fee,
    );
    let grant = s.grant_of(t).await;
    let until = s.direct.chain_time().await.unwrap() + 60;
    op.signature = sign_session_op(&t.session, s.hash(&op), until, grant)
        .await
        .unwrap();
    op
}

/// True if `handleOps([op])` passes on the chain's latest state (an `eth_call`: nothing is sent), with
/// the account's EntryPoint deposit set to `deposit` if given.
async fn passes_on_chain(s: &Setup, op: &PackedUserOperation, deposit: Option<U256>) -> bool {
    let from = s.devnet.signer(4).address();
    let data = IEntryPoint::handleOpsCall {
        ops: vec![op.clone()],
        beneficiary: from,
    }
    .abi_encode();
    let call = json!({
        "from": from,
        "to": s.d.entry_point,
        "data": Bytes::from(data),
        "gas": "0x1c9c380",
    });
    let overrides = match deposit {
        Some(d) => json!({
            s.d.entry_point.to_string(): {
                "stateDiff": { deposit_slot(op.sender).to_string(): B256::from(d).to_string() }
            }
        }),
        None => json!({}),
    };
    s.provider
        .raw_request::<_, Value>("eth_call".into(), (call, "latest", overrides))
        .await
        .is_ok()
}

/// The slot of `account`'s deposit in the EntryPoint (`deposits`, its first state variable).
fn deposit_slot(account: Address) -> B256 {
    let mut preimage = [0u8; 64];
    preimage[12..32].copy_from_slice(account.as_slice());
    keccak256(preimage)
}

/// Sends `op`, bundles it and returns its receipt.
async fn mined(s: &Setup, op: &PackedUserOperation) -> Value {
    let hash = s.send(op).await.unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    s.receipt(&hash).await
}

fn number(v: &Value) -> U256 {
    serde_json::from_value(v.clone()).unwrap()
}

#[tokio::test]
async fn an_op_that_cannot_pay_its_prefund_in_validation_is_refused_at_the_door() {
    let s = setup("deposits", 42_071, BundlingMode::Manual, |_| {}).await;
    let t = s.trader(71, "20000").await;
    let entry_point = IEntryPoint::new(s.d.entry_point, &s.provider);
    // A base fee far from zero, so what an op is charged at the chain's base fee and at its tip alone differ.
    s.provider
        .raw_request::<_, Value>(
            "anvil_setNextBlockBaseFeePerGas".into(),
            (format!("{:#x}", 20 * GWEI),),
        )
        .await
        .unwrap();
    s.provider
        .raw_request::<_, Value>("evm_mine".into(), ())
        .await
        .unwrap();

    // Op 0: the deposit is exactly its prefund, so it pays nothing while validating.
    let gas = 300_000 + CALL_GAS + PRE_VERIFICATION_GAS;
    let prefund = U256::from(gas * 100 * GWEI);
    let held = entry_point.balanceOf(t.account).call().await.unwrap();
    assert!(held < prefund, "deposit {held} already covers {prefund}");
    entry_point
        .depositTo(t.account)
        .value(prefund - held)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let first = mined(&s, &order(&s, &t, 0, 300_000, prefund).await).await;
    assert_eq!(first["success"], true, "{first}");

    // What op 0 left of its deposit on chain, and what it would have left charged at its tip alone (a
    // simulation at base fee 0): op 1's prefund lies between the two.
    let deposit = entry_point.balanceOf(t.account).call().await.unwrap();
    let (cost, used) = (
        number(&first["actualGasCost"]),
        number(&first["actualGasUsed"]),
    );
    let at_tip = used * U256::from(TIP);
    assert!(cost > at_tip, "charged {cost}, {at_tip} at the tip alone");
    let prefund = deposit + (cost - at_tip) / U256::from(2);

    // The verification limits op 1 needs on chain, where its account pays the prefund the deposit lacks:
    // the largest one the chain refuses, found by bisection.
    let (mut refused, mut passes) = (20_000u128, 300_000u128);
    assert!(passes_on_chain(&s, &order(&s, &t, 1, passes, prefund).await, None).await);
    assert!(!passes_on_chain(&s, &order(&s, &t, 1, refused, prefund).await, None).await);
    while passes - refused > 1 {
        let mid = (passes + refused) / 2;
        match passes_on_chain(&s, &order(&s, &t, 1, mid, prefund).await, None).await {
            true => passes = mid,
            false => refused = mid,
        }
    }
    let tight = order(&s, &t, 1, refused, prefund).await;
    // The same op passes when the deposit covers its prefund: a pending state that kept the deposit a
    // base-fee-0 simulation left would admit it.
    assert!(passes_on_chain(&s, &tight, Some(prefund)).await);

    // Refused at the door with the EntryPoint's reason, and nothing pooled.
    let e = s.send(&tight).await.unwrap_err();
    assert_eq!(e["code"], -32500, "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("AA26") || message.contains("AA23"), "{e}");
    let tight_hash = json!(s.hash(&tight));
    for method in ["eth_getUserOperationByHash", "eth_getUserOperationReceipt"] {
        let r = s.call(method, json!([tight_hash])).await.unwrap();
        assert!(r.is_null(), "{method}: {r}");
    }

    // Ops whose limits cover paying in validation are all mined: op 1 at the limit the chain needs, then
    // three more whose deposit has run out, two of them bundled together.
    let covered = passes + 1_000;
    let second = mined(&s, &order(&s, &t, 1, covered, prefund).await).await;
    assert_eq!(second["success"], true, "{second}");
    let prefund = U256::from((covered + CALL_GAS + PRE_VERIFICATION_GAS) * 100 * GWEI);
    let third = s
        .send(&order(&s, &t, 2, covered, prefund).await)
        .await
        .unwrap();
    let fourth = s
        .send(&order(&s, &t, 3, covered, prefund).await)
        .await
        .unwrap();
    s.call("debug_bundler_sendBundleNow", json!([]))
        .await
        .unwrap();
    for hash in [&third, &fourth] {
        assert_eq!(s.receipt(hash).await["success"], true, "{hash}");
    }
    let fifth = mined(&s, &order(&s, &t, 4, covered, prefund).await).await;
    assert_eq!(fifth["success"], true, "{fifth}");
    let lane = SessionLane::new(t.session.address(), 0);
    assert_eq!(s.nonce(t.account, lane.nonce_key()).await, lane.nonce(5));
    s.relayer.stop().await;
}
