//! The real contracts on the in-process revm chain: EntryPoint v0.8 lands at its canonical address,
//! an account is deployed by its first UserOp, and a session key's order fills on the venue.

use alloy::{
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::SolCall,
};
use alloy_primitives::{Address, B256, Bytes, I256, U256, address};
use keyscope_core::{
    ENTRY_POINT_V08, PackedUserOperation, SessionLane,
    bindings::{AccountFactory, BaseAccount, IEntryPoint, PerpVenue, SignedPriceOracle, TestUSD, TradingAccount},
    scope::TradingScope,
    session::{grant_binding, session_op_digest, session_signature},
    units::parse_units,
    user_op::pack_u128s,
    user_op_hash,
};
use keyscope_sim::chain::{RevmChain, RevmDeployment};

const CHAIN_ID: u64 = 31_337;
const T0: u64 = 1_800_000_000;

fn op(sender: Address, nonce: U256, call_data: Vec<u8>, init_code: Bytes) -> PackedUserOperation {
    PackedUserOperation {
        sender,
        nonce,
        initCode: init_code,
        callData: call_data.into(),
        accountGasLimits: pack_u128s(600_000, 400_000),
        preVerificationGas: U256::from(60_000),
        gasFees: pack_u128s(1_000_000_000, 2_000_000_000),
        paymasterAndData: Bytes::new(),
        signature: Bytes::new(),
    }
}

fn handle(chain: &mut RevmChain, bundler: Address, op: PackedUserOperation) {
    let call = IEntryPoint::handleOpsCall { ops: vec![op], beneficiary: bundler };
    chain.transact(bundler, Some(ENTRY_POINT_V08), call.abi_encode().into(), U256::ZERO).expect("handleOps succeeds");
}

#[test]
fn session_order_through_handle_ops_on_revm() {
    let mut chain = RevmChain::new(CHAIN_ID, T0);
    // Anvil's first dev key, as script/Deploy.s.sol uses: CREATE2 then gives the anvil addresses.
    let deployer: PrivateKeySigner = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80".parse().unwrap();
    let bundler = address!("000000000000000000000000000000000000b0b0");
    chain.fund(deployer.address(), parse_units("100", 18).unwrap());
    chain.fund(bundler, parse_units("100", 18).unwrap());
    let d = RevmDeployment::deploy(&mut chain, deployer.address(), deployer.address(), parse_units("50000", 6).unwrap()).unwrap();
    assert_eq!(d.entry_point, ENTRY_POINT_V08, "EntryPoint v0.8 at its canonical address");
    assert!(!chain.code(ENTRY_POINT_V08).is_empty());
    assert_eq!(d.account_factory, address!("E58AC03982866c3C1e98C0d2b76629A85e98F6BA"), "same address as on anvil");
    assert_eq!(d.venue, address!("06fc7e14FFA0FEbd1A04A55dafF24BF156750237"), "same address as on anvil");

    // The trader's account, deployed by its first op, which also deposits margin and grants a key.
    let owner = PrivateKeySigner::random();
    let session = PrivateKeySigner::random();
    let account = chain
        .call(bundler, d.account_factory, &AccountFactory::getAddressCall { owner: owner.address(), salt: U256::ZERO })
        .unwrap();
    chain.fund(account, parse_units("1", 18).unwrap());
    chain.call(deployer.address(), d.collateral, &TestUSD::mintCall { to: account, amount: parse_units("5000", 6).unwrap() }).unwrap();
    let scope = TradingScope::new(d.venue, vec![0], parse_units("0.5", 18).unwrap(), parse_units("40000", 18).unwrap())
        .build(T0)
        .unwrap();
    let calls = vec![
        BaseAccount::Call { target: d.collateral, value: U256::ZERO, data: TestUSD::approveCall { spender: d.venue, value: U256::MAX }.abi_encode().into() },
        BaseAccount::Call { target: d.venue, value: U256::ZERO, data: PerpVenue::depositMarginCall { amount: parse_units("5000", 6).unwrap() }.abi_encode().into() },
        BaseAccount::Call { target: account, value: U256::ZERO, data: TradingAccount::grantSessionCall { key: session.address(), scope }.abi_encode().into() },
    ];
    let init: Bytes = [d.account_factory.as_slice(), &AccountFactory::createAccountCall { owner: owner.address(), salt: U256::ZERO }.abi_encode()].concat().into();
    let mut first = op(account, U256::ZERO, TradingAccount::executeBatchCall { calls }.abi_encode(), init);
    let hash = user_op_hash(&first, ENTRY_POINT_V08, CHAIN_ID).unwrap();
    // The Rust hash is the EntryPoint's own, on this chain too.
    assert_eq!(chain.call(bundler, ENTRY_POINT_V08, &IEntryPoint::getUserOpHashCall { userOp: first.clone() }).unwrap(), hash);
    first.signature = owner.sign_hash_sync(&hash).unwrap().as_bytes().to_vec().into();
    handle(&mut chain, bundler, first);
    assert!(!chain.code(account).is_empty(), "the first op deployed the account");

    // A signed oracle price, then the session key's order.
    chain.advance(1);
    let update = SignedPriceOracle::PriceUpdate { marketId: 0, price: parse_units("60000", 18).unwrap(), publishTime: chain.timestamp() };
    let digest: B256 = chain.call(bundler, d.oracle, &SignedPriceOracle::updateDigestCall { u: update.clone() }).unwrap();
    let sig = deployer.sign_hash_sync(&digest).unwrap();
    chain.call(bundler, d.oracle, &SignedPriceOracle::submitCall { u: update, signature: sig.as_bytes().to_vec().into() }).unwrap();

    let order = PerpVenue::placeOrderCall {
        marketId: 0,
        sizeDelta: I256::try_from(200_000_000_000_000_000u64).unwrap(),
        limitPrice: parse_units("60100", 18).unwrap(),
        reduceOnly: false,
    };
    let execute = TradingAccount::executeCall { target: d.venue, value: U256::ZERO, data: order.abi_encode().into() };
    let lane = SessionLane::new(session.address(), 0);
    let mut trade = op(account, lane.nonce(0), execute.abi_encode(), Bytes::new());
    let hash = user_op_hash(&trade, ENTRY_POINT_V08, CHAIN_ID).unwrap();
    let until = chain.timestamp() + 30;
    let sig = session.sign_hash_sync(&session_op_digest(hash, until, grant_binding(1))).unwrap();
    trade.signature = session_signature(until, &sig).unwrap();
    handle(&mut chain, bundler, trade);

    let position = chain.call(bundler, d.venue, &PerpVenue::positionCall { account, marketId: 0 }).unwrap();
    assert_eq!(position.size, I256::try_from(200_000_000_000_000_000u64).unwrap());
    assert_eq!(position.entryPrice, parse_units("60000", 18).unwrap());
}
