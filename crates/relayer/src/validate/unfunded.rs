//! The state as an op's validation finds it at its dearest: its sender with no EntryPoint deposit, so the
//! account pays its whole prefund while validating (a value transfer to the EntryPoint, whose deposit slot
//! is written from zero). The deposit an op will find on chain is not known when it is estimated — earlier
//! ops' refunds depend on the base fee they are mined at, and the client may sign at another fee than it
//! estimated at — so an estimate that must hold whatever the deposit is simulates this view.

use alloy::sol_types::SolValue;
use alloy_primitives::{Address, B256, U256, keccak256};
use keyscope_core::user_op::PackedUserOperation;
use revm::{Database, state::AccountInfo, state::Bytecode};

use super::{
    SimBlock, SimConfig, SimError, Simulated, StateReadError, deposit_info, simulate_op,
    staked_entities,
};

/// The EntryPoint's `deposits` mapping (StakeManager's first state variable): slot 0 of v0.8's layout.
const DEPOSITS_SLOT: u64 = 0;

/// The storage slot of `account`'s deposit (the first word of its `DepositInfo`) in the EntryPoint.
pub(crate) fn deposit_slot(account: Address) -> U256 {
    U256::from_be_bytes(keccak256((account, U256::from(DEPOSITS_SLOT)).abi_encode()).0)
}

/// `inner` with one EntryPoint deposit read as zero.
#[derive(Debug)]
pub(crate) struct Unfunded<DB> {
    inner: DB,
    entry_point: Address,
    slot: U256,
}

impl<DB> Unfunded<DB> {
    /// `inner` where `account` has no deposit in `entry_point`.
    pub(crate) fn new(inner: DB, entry_point: Address, account: Address) -> Self {
        Self {
            inner,
            entry_point,
            slot: deposit_slot(account),
        }
    }
}

impl<DB: Database> Database for Unfunded<DB> {
    type Error = DB::Error;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.inner.basic(address)
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.inner.code_by_hash(code_hash)
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        if address == self.entry_point && index == self.slot {
            return Ok(U256::ZERO);
        }
        self.inner.storage(address, index)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.inner.block_hash(number)
    }
}

/// Simulates `op` (estimation mode: a stub signature's failure is tolerated) on `db` with its sender's
/// EntryPoint deposit at zero. Nothing is committed.
pub(crate) fn simulate_unfunded<DB: Database<Error = StateReadError>>(
    db: DB,
    cfg: &SimConfig,
    block: SimBlock,
    op: &PackedUserOperation,
) -> Result<Simulated, SimError> {
    let mut db = Unfunded::new(db, cfg.entry_point, op.sender);
    // The layout is the EntryPoint's, not ours: make sure the view hides the deposit it means to.
    let left = deposit_info(&mut db, cfg, block, op.sender)?.deposit;
    if !left.is_zero() {
        return Err(SimError::Internal(format!(
            "the EntryPoint at {} does not keep deposits where v0.8 does (read {left})",
            cfg.entry_point
        )));
    }
    let staked = staked_entities(&mut db, cfg, block, op)?;
    simulate_op(&mut db, cfg, block, op, staked, true).map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_slot_is_the_mappings_first_word() {
        let account = Address::repeat_byte(0x11);
        let mut preimage = [0u8; 64];
        preimage[12..32].copy_from_slice(account.as_slice());
        assert_eq!(
            deposit_slot(account),
            U256::from_be_bytes(keccak256(preimage).0)
        );
    }
}
