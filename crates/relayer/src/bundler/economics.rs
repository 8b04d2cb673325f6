//! What a bundle costs the relayer and what its ops repay, as the chain counts them: the EIP-7623 calldata
//! floor included (a bundle carrying much calldata pays 10 gas a token however little it executes), so one
//! op with a large calldata neither makes the bundle's gas limit too small nor lets its cost fall on the
//! ops bundled with it.

use alloy::{eips::eip1559::Eip1559Estimation, sol_types::SolValue};
use alloy_primitives::U256;
use keyscope_core::rpc_op::unpack;

use crate::{
    calldata::{FLOOR_TOKEN_GAS, STANDARD_TOKEN_GAS, tokens as calldata_tokens},
    pool::PoolOp,
};

/// Gas a simulated bundle used, and the gas the EntryPoint charged each of its ops.
#[derive(Debug)]
pub(crate) struct Charged {
    /// Gas the bundle transaction used (the calldata floor included, when it applies).
    pub bundle_gas: u64,
    /// The calldata floor of the bundle transaction.
    pub floor_gas: u64,
    /// `actualGasUsed` of each op, in bundle order.
    pub ops: Vec<U256>,
}

impl Charged {
    /// True if the bundle pays the calldata floor rather than its execution and standard calldata cost.
    fn at_floor(&self) -> bool {
        self.bundle_gas <= self.floor_gas
    }
}

/// What `ops` repay (each op's charged gas at its own price: `min(maxFeePerGas, base fee + its tip)`) and
/// what their bundle costs (its gas at the bundle transaction's price), in wei, at `base_fee`.
pub(crate) fn economics(
    ops: &[PoolOp],
    charged: &Charged,
    base_fee: u128,
    fees: &Eip1559Estimation,
) -> (U256, U256) {
    let repaid = ops
        .iter()
        .zip(&charged.ops)
        .map(|(o, gas)| *gas * U256::from(op_price(o, base_fee)))
        .sum();
    (
        repaid,
        U256::from(charged.bundle_gas) * U256::from(bundle_price(base_fee, fees)),
    )
}

/// Whether `repaid` covers `cost` plus `margin_percent` of it (a negative margin accepts that share of loss).
pub(crate) fn repays(repaid: U256, cost: U256, margin_percent: i64) -> bool {
    let needed_percent = U256::from((100 + margin_percent).max(0) as u64);
    repaid * U256::from(100u64) >= cost * needed_percent
}

/// An op that would not repay what it alone adds to its bundle's cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loser {
    /// Its place in the bundle.
    pub index: usize,
    /// What it would repay and what it adds, in wei.
    pub repaid: U256,
    pub cost: U256,
    /// The gas it is charged does not even cover the gas it adds (whatever the prices): its
    /// preVerificationGas is short of its calldata as the chain prices it — what an op the door priced
    /// right never is. Otherwise only its fees are too low.
    pub short_of_gas: bool,
}

/// The ops of a bundle that do not repay what they alone add to its cost — whatever company they find, the
/// relayer would lose on them. An op adds the gas it executes (what the EntryPoint charged it less its
/// preVerificationGas) and its calldata: at the standard rate, or, when the bundle pays the EIP-7623
/// floor, at the floor's rate if that is more. It repays its charged gas at its own price. The bundle's
/// fixed overhead is not counted: ops share it, and the bundle-wide rule judges that. With
/// `margin_percent` -100 no op is a loser (the relayer sends whatever a bundle costs).
pub(crate) fn losers(
    ops: &[PoolOp],
    charged: &Charged,
    base_fee: u128,
    fees: &Eip1559Estimation,
    margin_percent: i64,
) -> Vec<Loser> {
    let price = U256::from(bundle_price(base_fee, fees));
    ops.iter()
        .zip(&charged.ops)
        .enumerate()
        .map(|(index, (o, gas))| {
            let added = U256::from(added_gas(o, *gas, charged.at_floor()));
            Loser {
                index,
                repaid: *gas * U256::from(op_price(o, base_fee)),
                cost: added * price,
                short_of_gas: *gas < added,
            }
        })
        .filter(|l| !repays(l.repaid, l.cost, margin_percent.min(0)))
        .collect()
}

/// The gas `op`, charged `charged` by the EntryPoint, adds to a bundle's transaction.
fn added_gas(op: &PoolOp, charged: U256, at_floor: bool) -> u64 {
    let charged: u64 = charged.try_into().unwrap_or(u64::MAX);
    let pvg: u64 = op.op.preVerificationGas.try_into().unwrap_or(u64::MAX);
    let tokens = calldata_tokens(&op.op.abi_encode());
    let standard = charged
        .saturating_sub(pvg)
        .saturating_add(STANDARD_TOKEN_GAS * tokens);
    match at_floor {
        true => standard.max(FLOOR_TOKEN_GAS * tokens),
        false => standard,
    }
}

/// What `op` pays a gas: `min(maxFeePerGas, base fee + its tip)`.
fn op_price(op: &PoolOp, base_fee: u128) -> u128 {
    let (tip, max_fee) = unpack(op.op.gasFees);
    max_fee.min(base_fee.saturating_add(tip))
}

/// What the bundle transaction pays a gas at `fees`.
fn bundle_price(base_fee: u128, fees: &Eip1559Estimation) -> u128 {
    fees.max_fee_per_gas
        .min(base_fee.saturating_add(fees.max_priority_fee_per_gas))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;
    use keyscope_core::user_op::{OpGas, pack_u128s, unsigned};

    fn op(tip: u128, max_fee: u128, call_data: Vec<u8>, pvg: u64) -> PoolOp {
        let mut op = unsigned(
            alloy_primitives::Address::ZERO,
            U256::ZERO,
            call_data.into(),
            Default::default(),
            OpGas::default_for(false),
            tip,
            max_fee,
        );
        op.gasFees = pack_u128s(tip, max_fee);
        op.preVerificationGas = U256::from(pvg);
        PoolOp {
            hash: B256::ZERO,
            op,
            kind: keyscope_core::ops::OpKind::Other,
            session_key: None,
            keyscope: false,
            sender_staked: false,
            factory_staked: false,
            valid_until: u64::MAX,
            order: 0,
        }
    }

    #[test]
    fn the_profit_rule_compares_repayment_with_cost_and_margin() {
        let w = U256::from;
        assert!(repays(w(100), w(100), 0));
        assert!(!repays(w(99), w(100), 0));
        assert!(repays(w(110), w(100), 10));
        assert!(!repays(w(109), w(100), 10));
        assert!(repays(w(90), w(100), -10));
        assert!(!repays(w(89), w(100), -10));
        assert!(repays(w(0), w(100), -100));
    }

    #[test]
    fn each_op_repays_at_its_own_price_and_the_bundle_costs_at_the_relayers() {
        // Base fee 10: the first op pays 10 + 2 = 12 a gas, the second is capped by its max fee at 11.
        let ops = [op(2, 100, vec![], 0), op(5, 11, vec![], 0)];
        let charged = Charged {
            bundle_gas: 1_000,
            floor_gas: 0,
            ops: vec![U256::from(400), U256::from(500)],
        };
        let fees = Eip1559Estimation {
            max_fee_per_gas: 50,
            max_priority_fee_per_gas: 3,
        };
        let (repaid, cost) = economics(&ops, &charged, 10, &fees);
        assert_eq!(repaid, U256::from(400 * 12 + 500 * 11));
        assert_eq!(cost, U256::from(1_000 * 13));
    }

    #[test]
    fn only_the_op_whose_calldata_the_floor_prices_above_its_payment_is_a_loser() {
        let fees = Eip1559Estimation {
            max_fee_per_gas: 100,
            max_priority_fee_per_gas: 1,
        };
        // Five ops of 600 bytes paying their standard calldata with room, and one of 40 kB whose
        // preVerificationGas covers it at 16 gas a byte, not at the floor's 40.
        let mut ops: Vec<_> = (0..5).map(|_| op(1, 100, vec![7; 600], 60_000)).collect();
        ops.push(op(1, 100, vec![7; 40_000], 700_000));
        let mut charged = Charged {
            bundle_gas: 0,
            floor_gas: 0,
            ops: [vec![U256::from(150_000); 5], vec![U256::from(760_000)]].concat(),
        };
        charged.floor_gas = 1_800_000;
        charged.bundle_gas = charged.floor_gas;
        let found: Vec<_> = losers(&ops, &charged, 10, &fees, 0)
            .iter()
            .map(|l| (l.index, l.short_of_gas))
            .collect();
        assert_eq!(found, vec![(5, true)]);
        // Off the floor (the bundle executes more than its calldata's floor) all of them pay.
        charged.bundle_gas = charged.floor_gas + 1;
        assert!(losers(&ops, &charged, 10, &fees, 0).is_empty());
        // An op tipping far less than the bundle pays loses on its own gas; a relayer sending whatever a bundle
        // costs has no losers.
        let stingy = [op(0, 100, vec![7; 600], 60_000)];
        let one = Charged {
            bundle_gas: 200_000,
            floor_gas: 0,
            ops: vec![U256::from(150_000)],
        };
        let dear = Eip1559Estimation {
            max_fee_per_gas: 100,
            max_priority_fee_per_gas: 50,
        };
        let found = losers(&stingy, &one, 10, &dear, 0);
        assert_eq!(
            (found.len(), found[0].short_of_gas),
            (1, false),
            "its fees, not its gas"
        );
        assert!(losers(&stingy, &one, 10, &dear, -100).is_empty());
    }
}
