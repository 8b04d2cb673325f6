//! What counts as staked (ERC-7562 MIN_STAKE_VALUE): by default a stake an attacker must lock up, 1 ETH
//! for a day — not 1 wei.

mod common;

use alloy::{network::EthereumWallet, providers::ProviderBuilder};
use alloy_primitives::U256;
use common::*;
use keyscope_core::bindings::IEntryPoint;
use keyscope_relayer::config::BundlingMode;
use serde_json::json;

#[tokio::test]
async fn a_one_wei_stake_is_not_staked_and_one_ether_is() {
    let s = setup("stake", 42_051, BundlingMode::Manual, |_| {}).await;
    let ether = U256::from(10u64).pow(U256::from(18u64));
    // Two entities stake for a day, one 1 wei, one 1 ETH.
    for (key, stake, staked) in [(6, U256::from(1), false), (7, ether, true)] {
        let signer = s.devnet.signer(key);
        let entity = signer.address();
        let wallet = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(s.devnet.endpoint_url());
        IEntryPoint::new(s.d.entry_point, &wallet)
            .addStake(86_400)
            .value(stake)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let info = IEntryPoint::new(s.d.entry_point, &s.provider)
            .getDepositInfo(entity)
            .call()
            .await
            .unwrap();
        assert!(
            info.staked && U256::from(info.stake) == stake,
            "staked on chain"
        );
        let status = s
            .call(
                "debug_bundler_getStakeStatus",
                json!([entity, s.d.entry_point]),
            )
            .await
            .unwrap();
        assert_eq!(status["isStaked"], staked, "{stake} wei: {status}");
    }
    s.relayer.stop().await;
}
