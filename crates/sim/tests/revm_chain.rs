//! The real contracts on the in-process revm chain: EntryPoint v0.8 lands at its canonical address,
//! addresses match an anvil deployment, an account is deployed by its first UserOp, and a session
//! key's order fills on the venue.

use alloy_primitives::I256;
use keyscope_core::{
    ENTRY_POINT_V08,
    bindings::{IEntryPoint, PerpVenue, TradingAccount},
    units::parse_units,
    user_op_hash,
};
use keyscope_sim::fixture::Fixture;

#[test]
fn session_order_through_handle_ops_on_revm() {
    let mut f = Fixture::new(31_337, 1_800_000_000, parse_units("5000", 6).unwrap()).unwrap();
    let d = f.deployment.clone();
    assert_eq!(
        d.entry_point, ENTRY_POINT_V08,
        "EntryPoint v0.8 at its canonical address"
    );
    assert!(!f.chain.code(ENTRY_POINT_V08).is_empty());
    // The same plan the devnet sends to anvil (core's deploy_plan test checks it against Deploy.s.sol).
    assert!(!f.chain.code(d.account_factory).is_empty() && !f.chain.code(d.venue).is_empty());
    assert!(
        !f.chain.code(f.account).is_empty(),
        "the first op deployed the account"
    );
    let owner = f
        .chain
        .call(f.bundler, f.account, &TradingAccount::ownerCall {})
        .unwrap();
    assert_eq!(
        owner,
        alloy::signers::local::PrivateKeySigner::address(&f.owner)
    );

    f.chain.advance(1);
    f.publish(0, parse_units("60000", 18).unwrap()).unwrap();
    let op = f
        .session_order(
            0,
            0,
            I256::try_from(200_000_000_000_000_000u64).unwrap(),
            parse_units("60100", 18).unwrap(),
        )
        .unwrap();
    // The Rust hash is the EntryPoint's own, on this chain too.
    let on_chain = f
        .chain
        .call(
            f.bundler,
            ENTRY_POINT_V08,
            &IEntryPoint::getUserOpHashCall { userOp: op.clone() },
        )
        .unwrap();
    assert_eq!(
        on_chain,
        user_op_hash(&op, ENTRY_POINT_V08, 31_337).unwrap()
    );
    f.handle(op).unwrap();

    let position = f
        .chain
        .call(
            f.bundler,
            d.venue,
            &PerpVenue::positionCall {
                account: f.account,
                marketId: 0,
            },
        )
        .unwrap();
    assert_eq!(
        position.size,
        I256::try_from(200_000_000_000_000_000u64).unwrap()
    );
    assert_eq!(position.entryPrice, parse_units("60000", 18).unwrap());
}
