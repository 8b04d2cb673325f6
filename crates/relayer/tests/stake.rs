//! What counts as staked (ERC-7562 MIN_STAKE_VALUE): by default a stake an attacker must lock up, 1 ETH
//! for a day — not 1 wei.

mod common;

use alloy_primitives::U256;
use common::*;
use keyscope_core::bindings::IEntryPoint;
use keyscope_relayer::config::BundlingMode;
use serde_json::json;

#[tokio::test]
async fn a_one_wei_stake_is_not_staked_and_one_ether_is() {
    let s = setup("stake", 42_051, BundlingMode::Manual, |_| {}).await;
    let ether = U256::from(10u64).pow(U256::from(18u64));
    // The setup key stakes 1 wei for a day, then tops it up to 1 ETH (and a wei).
    let entity = s.devnet.signer(4).address();
    let entry_point = IEntryPoint::new(s.d.entry_point, &s.provider);
    for (add, staked) in [(U256::from(1), false), (ether, true)] {
        entry_point
            .addStake(86_400)
            .value(add)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let info = entry_point.getDepositInfo(entity).call().await.unwrap();
        assert!(info.staked, "staked on chain");
        let status = s
            .call(
                "debug_bundler_getStakeStatus",
                json!([entity, s.d.entry_point]),
            )
            .await
            .unwrap();
        assert_eq!(status["isStaked"], staked, "{} wei: {status}", info.stake);
    }
    s.relayer.stop().await;
}
