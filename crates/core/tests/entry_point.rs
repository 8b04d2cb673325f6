//! The Rust userOpHash against the real EntryPoint v0.8 on anvil: the published artifact is deployed at
//! its canonical address through the CREATE2 deployer, then asked to hash the same ops.

use std::path::PathBuf;

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    node_bindings::{Anvil, AnvilInstance},
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use alloy_primitives::{Address, Bytes, U256, address, b256, keccak256};
use keyscope_core::{
    ENTRY_POINT_V08, PackedUserOperation, SessionLane, bindings::IEntryPoint, devnet::foundry_tool,
    user_op::pack_u128s, user_op_hash,
};

const CREATE2_DEPLOYER: Address = address!("4e59b44847b379578588920cA78FbF26c0B4956C");

fn workspace_root() -> PathBuf {
    keyscope_core::devnet::repo_root()
}

fn anvil() -> AnvilInstance {
    let bin = foundry_tool(&workspace_root(), "anvil").expect("the pinned anvil (run `make test`)");
    Anvil::new().path(bin).try_spawn().expect("anvil starts")
}

#[tokio::test]
async fn user_op_hash_matches_entry_point_v08() {
    let anvil = anvil();
    let signer: PrivateKeySigner = anvil.keys()[0].clone().into();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(anvil.endpoint_url());

    let artifact: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            workspace_root()
                .join("node_modules/@account-abstraction/contracts/artifacts/EntryPoint.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let init_code: Bytes = artifact["bytecode"].as_str().unwrap().parse().unwrap();
    let salt = b256!("0a59dbff790c23c976a548690c27297883cc66b4c67024f9117b0238995e35e9");
    let mut data = salt.to_vec();
    data.extend_from_slice(&init_code);
    let tx = TransactionRequest::default()
        .with_to(CREATE2_DEPLOYER)
        .with_input(data);
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "EntryPoint deployment succeeded");
    assert!(
        !provider
            .get_code_at(ENTRY_POINT_V08)
            .await
            .unwrap()
            .is_empty(),
        "EntryPoint at its canonical address"
    );

    let entry_point = IEntryPoint::new(ENTRY_POINT_V08, &provider);
    let chain_id = provider.get_chain_id().await.unwrap();
    let session = SessionLane::new(address!("87110f79f69670eE8dEd56E2231882D06b2873F2"), 3);
    let ops = [
        PackedUserOperation::default(),
        PackedUserOperation {
            sender: address!("490fA987FA3d58898120E03aba9a18fE3Ace4a28"),
            nonce: session.nonce(7),
            initCode: Bytes::from(vec![0xab; 57]),
            callData: Bytes::from(keccak256("calldata").to_vec()),
            accountGasLimits: pack_u128s(400_000, 300_000),
            preVerificationGas: U256::from(60_000),
            gasFees: pack_u128s(1_000_000_000, 10_000_000_000),
            paymasterAndData: Bytes::from(vec![1, 2, 3]),
            signature: Bytes::from(vec![9; 72]),
        },
    ];
    for op in ops {
        let on_chain = entry_point.getUserOpHash(op.clone()).call().await.unwrap();
        assert_eq!(
            user_op_hash(&op, ENTRY_POINT_V08, chain_id).unwrap(),
            on_chain
        );
        // The signature is not part of the hash; the chain id is.
        let mut resigned = op.clone();
        resigned.signature = Bytes::from(vec![1; 65]);
        assert_eq!(
            user_op_hash(&resigned, ENTRY_POINT_V08, chain_id).unwrap(),
            on_chain
        );
        assert_ne!(
            user_op_hash(&op, ENTRY_POINT_V08, chain_id + 1).unwrap(),
            on_chain
        );
    }
}
