//! The deploy plan for a fresh chain: EntryPoint v0.8 at its canonical address, then Keyscope's contracts,
//! as a list of plain transactions from one deployer. The contracts' creation code is embedded at build time
//! (the forge artifacts the bindings come from, and the EntryPoint's published npm artifact), so a `keyscope`
//! binary deploys from any directory. The devnet sends the plan to anvil; the harness runs it on revm; both
//! land every contract at the same address, through the deterministic CREATE2 deployer.
//!
//! `script/Deploy.s.sol` does the same for real chains (idempotently, with forge); a test deploys both on
//! two anvils and compares the results, so the two cannot drift apart.

use std::sync::OnceLock;

use alloy::sol_types::{SolCall, SolConstructor};
use alloy_primitives::{Address, B256, Bytes, U256, address, b256, keccak256};

use crate::{
    bindings::{AccountFactory, PerpVenue, SignedPriceOracle, TestUSD},
    deployment::Deployment,
};

/// Arachnid's deterministic deployment proxy (on anvil and most chains): `salt ++ initCode` → CREATE2.
pub const CREATE2_DEPLOYER: Address = address!("4e59b44847b379578588920cA78FbF26c0B4956C");

/// The salt EntryPoint v0.8 was deployed with on every chain.
pub const ENTRY_POINT_SALT: B256 =
    b256!("0a59dbff790c23c976a548690c27297883cc66b4c67024f9117b0238995e35e9");

/// The oracle's maximum price age, in seconds.
pub const ORACLE_MAX_AGE: u64 = 120;

/// The pool the deployer funds (6 decimals: 10,000,000 tUSD).
pub const POOL_FUNDING: u64 = 10_000_000_000_000;

/// The insurance fund the deployer funds unless told otherwise (6 decimals: 50,000 tUSD).
pub const DEFAULT_INSURANCE: u64 = 50_000_000_000;

const ENTRY_POINT_ARTIFACT: &str =
    include_str!("../../../node_modules/@account-abstraction/contracts/artifacts/EntryPoint.json");

/// keccak256 of the deployed code of solady's ERC-1967 proxy (`LibClone.ERC1967_CODE_HASH`): the code of every
/// Keyscope account (the factory deploys one per account, pointing at the shared implementation).
pub const ACCOUNT_PROXY_CODE_HASH: B256 =
    b256!("aaa52c8cc8a0e3fd27ce756cc6b4e70c51423e9b597b11f32d3e49f8b1fc890d");

/// The ERC-1967 implementation slot: where an account's proxy keeps its implementation.
pub const ERC1967_IMPLEMENTATION_SLOT: B256 =
    b256!("360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc");

/// Where the AccountFactory for `entry_point` lands on every chain (its only constructor argument is the
/// EntryPoint, so the address does not depend on who deploys it).
pub fn account_factory_address(entry_point: Address) -> Address {
    let init = [
        AccountFactory::BYTECODE.as_ref(),
        &AccountFactory::constructorCall {
            entryPoint: entry_point,
        }
        .abi_encode(),
    ]
    .concat();
    create2_address(keyscope_salt(), &init)
}

/// The TradingAccount implementation that factory deploys (its first CREATE): an account is Keyscope's when
/// its code is the proxy ([`ACCOUNT_PROXY_CODE_HASH`]) and its implementation slot names this address.
pub fn account_implementation(entry_point: Address) -> Address {
    account_factory_address(entry_point).create(1)
}

/// Keyscope's CREATE2 salt (`keccak256("keyscope.v1")`).
pub fn keyscope_salt() -> B256 {
    keccak256("keyscope.v1")
}

fn entry_point_artifact_code(field: &str) -> Bytes {
    let artifact: serde_json::Value =
        serde_json::from_str(ENTRY_POINT_ARTIFACT).expect("the EntryPoint artifact is JSON");
    artifact[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("the EntryPoint artifact has its code")
}

/// EntryPoint v0.8's published creation code.
pub fn entry_point_init_code() -> &'static Bytes {
    static CODE: OnceLock<Bytes> = OnceLock::new();
    CODE.get_or_init(|| entry_point_artifact_code("bytecode"))
}

/// True if `code` is EntryPoint v0.8's published runtime code, its immutables aside: the artifact leaves
/// each immutable as a zero `PUSH32` (the deployment fills in its own address, chain id and EIP-712
/// domain), and every other byte must match.
pub fn is_entry_point_v08_code(code: &[u8]) -> bool {
    static RUNTIME: OnceLock<Bytes> = OnceLock::new();
    let published = RUNTIME.get_or_init(|| entry_point_artifact_code("deployedBytecode"));
    if code.len() != published.len() {
        return false;
    }
    const PUSH1: u8 = 0x60;
    const PUSH32: u8 = 0x7f;
    let mut i = 0;
    while i < published.len() {
        let op = published[i];
        if code[i] != op {
            return false;
        }
        let immediate = match op {
            PUSH1..=PUSH32 => (op - PUSH1 + 1) as usize,
            _ => 0,
        };
        let end = (i + 1 + immediate).min(published.len());
        let placeholder = op == PUSH32 && published[i + 1..end].iter().all(|b| *b == 0);
        if !placeholder && code[i + 1..end] != published[i + 1..end] {
            return false;
        }
        i = end;
    }
    true
}

/// Where the CREATE2 deployer puts `init_code` with `salt`.
pub fn create2_address(salt: B256, init_code: &[u8]) -> Address {
    CREATE2_DEPLOYER.create2(salt, keccak256(init_code))
}

/// One transaction of the plan, from the deployer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it does, for errors and logs.
    pub what: &'static str,
    /// The contract called (the CREATE2 deployer for deployments).
    pub to: Address,
    /// The calldata.
    pub data: Bytes,
    /// The contract it deploys, if it deploys one: present afterwards, or the step failed.
    pub creates: Option<Address>,
}

/// Who deploys and how the venue starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanParams {
    /// Sends every step; owns the token, the oracle and the venue.
    pub deployer: Address,
    /// Registered as the oracle's price signer.
    pub oracle_signer: Address,
    /// The insurance fund (6 decimals); zero funds none.
    pub insurance_fund: U256,
}

/// The plan and the deployment it leaves.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The transactions, in order.
    pub steps: Vec<Step>,
    /// Where everything lands (its `block` is 0 until the plan has run).
    pub deployment: Deployment,
}

fn deploy_step(what: &'static str, salt: B256, init_code: Vec<u8>) -> Step {
    let creates = create2_address(salt, &init_code);
    Step {
        what,
        to: CREATE2_DEPLOYER,
        data: [salt.as_slice(), &init_code].concat().into(),
        creates: Some(creates),
    }
}

fn call_step(what: &'static str, to: Address, call: impl SolCall) -> Step {
    Step {
        what,
        to,
        data: call.abi_encode().into(),
        creates: None,
    }
}

/// BTC and ETH: IMF 5 %, MMF 3 %, taker fee 0.05 %, penalty 1 %, price band 10 %, at most 10,000 units,
/// partial liquidation above `partial` (quote units).
pub fn market_params(partial: u128) -> PerpVenue::MarketParams {
    const WAD: u64 = 1_000_000_000_000_000_000;
    PerpVenue::MarketParams {
        imf: WAD / 20,
        mmf: WAD / 100 * 3,
        takerFee: WAD / 10_000 * 5,
        liquidationPenalty: WAD / 100,
        maxLimitDeviation: WAD / 10,
        maxPosition: 10_000u128 * WAD as u128,
        partialLiquidationNotional: partial,
    }
}

/// The plan for chain `chain_id`: one step per transaction, in order (a list, so it runs past 100 lines).
pub fn plan(chain_id: u64, p: PlanParams) -> Plan {
    let salt = keyscope_salt();
    let with = |code: &Bytes, args: Vec<u8>| [code.as_ref(), &args].concat();
    let ep = deploy_step(
        "EntryPoint v0.8",
        ENTRY_POINT_SALT,
        entry_point_init_code().to_vec(),
    );
    let entry_point = ep.creates.expect("a deploy step");
    let factory = deploy_step(
        "AccountFactory",
        salt,
        with(
            &AccountFactory::BYTECODE,
            AccountFactory::constructorCall {
                entryPoint: entry_point,
            }
            .abi_encode(),
        ),
    );
    let usd = deploy_step(
        "TestUSD",
        salt,
        with(
            &TestUSD::BYTECODE,
            TestUSD::constructorCall {
                initialOwner: p.deployer,
            }
            .abi_encode(),
        ),
    );
    let oracle = deploy_step(
        "SignedPriceOracle",
        salt,
        with(
            &SignedPriceOracle::BYTECODE,
            SignedPriceOracle::constructorCall {
                initialOwner: p.deployer,
                maxAge_: ORACLE_MAX_AGE,
            }
            .abi_encode(),
        ),
    );
    let (collateral, oracle_at) = (
        usd.creates.expect("a deploy step"),
        oracle.creates.expect("a deploy step"),
    );
    let venue = deploy_step(
        "PerpVenue",
        salt,
        with(
            &PerpVenue::BYTECODE,
            PerpVenue::constructorCall {
                initialOwner: p.deployer,
                collateral_: collateral,
                oracle_: oracle_at,
            }
            .abi_encode(),
        ),
    );
    let venue_at = venue.creates.expect("a deploy step");
    let deployment = Deployment {
        chain_id,
        block: 0,
        entry_point,
        account_factory: factory.creates.expect("a deploy step"),
        collateral,
        oracle: oracle_at,
        venue: venue_at,
        markets: [("BTC".to_string(), 0), ("ETH".to_string(), 1)].into(),
    };
    let pool = U256::from(POOL_FUNDING);
    let mut steps = vec![
        ep,
        factory,
        usd,
        oracle,
        venue,
        call_step(
            "register the oracle signer",
            oracle_at,
            SignedPriceOracle::setSignerCall {
                signer: p.oracle_signer,
                allowed: true,
            },
        ),
        call_step(
            "list BTC",
            venue_at,
            PerpVenue::listMarketCall {
                marketId: 0,
                p: market_params(100_000_000_000),
            },
        ),
        call_step(
            "list ETH",
            venue_at,
            PerpVenue::listMarketCall {
                marketId: 1,
                p: market_params(50_000_000_000),
            },
        ),
        call_step(
            "mint the pool and insurance funds",
            collateral,
            TestUSD::mintCall {
                to: p.deployer,
                amount: pool + p.insurance_fund,
            },
        ),
        call_step(
            "approve the venue",
            collateral,
            TestUSD::approveCall {
                spender: venue_at,
                value: U256::MAX,
            },
        ),
        call_step(
            "fund the pool",
            venue_at,
            PerpVenue::fundPoolCall { amount: pool },
        ),
    ];
    if !p.insurance_fund.is_zero() {
        steps.push(call_step(
            "fund the insurance fund",
            venue_at,
            PerpVenue::fundInsuranceCall {
                amount: p.insurance_fund,
            },
        ));
    }
    Plan { steps, deployment }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user_op::ENTRY_POINT_V08;

    #[test]
    fn entry_point_code_is_told_apart_from_other_code() {
        let artifact: serde_json::Value = serde_json::from_str(ENTRY_POINT_ARTIFACT).unwrap();
        let published: Bytes = artifact["deployedBytecode"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(is_entry_point_v08_code(&published));
        // The deployment fills its immutables (zero PUSH32s in the artifact): still EntryPoint v0.8.
        let placeholder = published
            .windows(33)
            .position(|w| w[0] == 0x7f && w[1..].iter().all(|b| *b == 0))
            .expect("the artifact has immutables");
        let mut deployed = published.to_vec();
        deployed[placeholder + 1..placeholder + 33].fill(0xab);
        assert!(is_entry_point_v08_code(&deployed));
        // One byte changed anywhere else, or another length: not.
        let mut patched = published.to_vec();
        patched[100] ^= 1;
        assert!(!is_entry_point_v08_code(&patched));
        assert!(!is_entry_point_v08_code(&published[..published.len() - 1]));
        assert!(!is_entry_point_v08_code(&[]));
        assert!(!is_entry_point_v08_code(
            AccountFactory::DEPLOYED_BYTECODE.as_ref()
        ));
    }

    #[test]
    fn the_entry_point_lands_at_its_canonical_address() {
        let p = plan(
            1,
            PlanParams {
                deployer: Address::repeat_byte(1),
                oracle_signer: Address::repeat_byte(1),
                insurance_fund: U256::ZERO,
            },
        );
        assert_eq!(p.deployment.entry_point, ENTRY_POINT_V08);
        // No insurance: no step funds it.
        assert!(p.steps.iter().all(|s| s.what != "fund the insurance fund"));
    }

    #[test]
    fn the_factory_address_is_the_plans() {
        let p = plan(
            1,
            PlanParams {
                deployer: Address::repeat_byte(1),
                oracle_signer: Address::repeat_byte(1),
                insurance_fund: U256::ZERO,
            },
        );
        assert_eq!(
            p.deployment.account_factory,
            account_factory_address(ENTRY_POINT_V08)
        );
    }

    #[test]
    fn addresses_depend_on_the_deployer_not_the_chain() {
        let params = |d: u8| PlanParams {
            deployer: Address::repeat_byte(d),
            oracle_signer: Address::repeat_byte(d),
            insurance_fund: U256::from(DEFAULT_INSURANCE),
        };
        let (a, b, c) = (
            plan(1, params(1)),
            plan(31337, params(1)),
            plan(1, params(2)),
        );
        assert_eq!(a.deployment.venue, b.deployment.venue);
        assert_ne!(
            a.deployment.venue, c.deployment.venue,
            "the venue's constructor names its owner"
        );
        assert_eq!(a.deployment.entry_point, c.deployment.entry_point);
        assert_eq!(
            a.steps.last().map(|s| s.what),
            Some("fund the insurance fund")
        );
    }
}
