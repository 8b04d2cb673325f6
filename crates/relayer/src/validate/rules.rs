//! The ERC-7562 rules that protect a bundler, checked by a revm inspector while `handleOps` runs an
//! op's validation: what the factory, the account and the paymaster may do before the op is paid for.
//! An op whose validation could read something a later block changes (TIMESTAMP, another account's
//! storage, …) could pass here and fail in the bundle, at the relayer's expense; these rules make the
//! validation result hold until the op's own state changes.
//!
//! Enforced: OP-011 banned opcodes, OP-012 GAS only before a call, OP-020 out of gas, OP-031/032 CREATE only
//! by the factory (once, CREATE2) or, for the sender being deployed, by a staked factory, OP-041 EXTCODE* and
//! calls only to addresses with code (the sender and precompiles excepted), OP-052/053/054 the EntryPoint only
//! through `depositTo` or a plain transfer, never read as code, OP-061 value only to the EntryPoint, OP-070
//! transient storage under the storage rules, OP-080 BALANCE/SELFBALANCE only when staked, STO-010 the sender's
//! storage, STO-021/022 slots associated with the sender (only once it exists or its factory is staked),
//! STO-031/032/033 a staked entity's own storage, its associated slots, and reads anywhere. Not enforced:
//! OP-062's precompile allow-list (every precompile is allowed). Validation code run through DELEGATECALL is
//! still the entity's validation.

use std::collections::HashSet;

use alloy::sol_types::{SolCall, SolValue};
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use keyscope_core::bindings::IEntryPoint;
use revm::{
    Database, Inspector,
    context_interface::{ContextTr, CreateScheme, JournalTr},
    interpreter::{
        CallInputs, CallOutcome, CallScheme, CreateInputs, CreateOutcome, InstructionResult,
        Interpreter,
        interpreter::EthInterpreter,
        interpreter_types::{InputsTr, Jumps, MemoryTr},
    },
    primitives::KECCAK_EMPTY,
    state::EvmState,
};

/// The entity whose validation code is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entity {
    Factory,
    Account,
    Paymaster,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Factory => "factory",
            Entity::Account => "account",
            Entity::Paymaster => "paymaster",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// EntryPoint bookkeeping: not validation code.
    EntryPoint,
    /// Validation code of an entity; `root` is the EntryPoint's call into it.
    Validation { entity: Entity, root: bool },
    /// The op's execution (the EntryPoint calling the account with its callData).
    Execution { root: bool },
}

/// Records what the op's validation did and which rules it broke.
#[derive(Debug)]
pub(crate) struct Erc7562Inspector {
    entry_point: Address,
    sender: Address,
    factory: Option<Address>,
    paymaster: Option<Address>,
    staked: HashSet<Address>,
    /// Clear the signature-failure flag the account returns (gas estimation with stub signatures).
    tolerate_signature_failure: bool,
    frames: Vec<Phase>,
    /// Keccak results whose preimage starts with an entity's address: that entity's associated slots
    /// (the result and the 128 after it).
    associated: Vec<(Address, U256)>,
    /// The sender has code already (else the factory deploys it in this op).
    sender_exists: bool,
    /// The entity whose last opcode was EXTCODESIZE of the EntryPoint (allowed only before ISZERO).
    ep_code_size: Option<Entity>,
    gas_then_call: bool,
    creates: u32,
    /// `validateUserOp`'s return value.
    pub validation_data: Option<U256>,
    /// `validatePaymasterUserOp`'s return: (context, validationData).
    pub paymaster_result: Option<(Bytes, U256)>,
    /// Broken rules, in the order they happened.
    pub violations: Vec<String>,
    /// Gas used by the factory and account validation calls, by the paymaster's, and by execution.
    pub validation_gas: u64,
    pub paymaster_gas: u64,
    pub execution_gas: u64,
}

fn selector(call: &[u8]) -> Option<[u8; 4]> {
    call.get(..4).map(|s| s.try_into().expect("4 bytes"))
}

mod selectors {
    use super::*;
    use keyscope_core::bindings::TradingAccount;
    pub(super) const VALIDATE_USER_OP: [u8; 4] = TradingAccount::validateUserOpCall::SELECTOR;
    pub(super) const DEPOSIT_TO: [u8; 4] = IEntryPoint::depositToCall::SELECTOR;
    /// `SenderCreator.createSender(bytes)`: the EntryPoint deploying an account through its factory.
    pub(super) const CREATE_SENDER: [u8; 4] = [0x57, 0x0e, 0x1a, 0x36];
    /// `IPaymaster.validatePaymasterUserOp(PackedUserOperation,bytes32,uint256)`.
    pub(super) const VALIDATE_PAYMASTER_USER_OP: [u8; 4] = [0x52, 0xb7, 0x51, 0x2c];
}

impl Erc7562Inspector {
    /// KECCAK256 of (entity ‖ x): its result and the 128 slots after it are associated with that entity.
    fn note_keccak(&mut self, interp: &mut Interpreter<EthInterpreter>) {
        let (Ok(offset), Ok(len)) = (interp.stack.peek(0), interp.stack.peek(1)) else {
            return;
        };
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return;
        };
        if len < 32 || offset.saturating_add(len) > interp.memory.size() {
            return;
        }
        let data = interp.memory.slice(offset..offset + len);
        let head = &data[..32];
        if head[..12] != [0u8; 12] {
            return;
        }
        let who = Address::from_slice(&head[12..]);
        let entities = [Some(self.sender), self.factory, self.paymaster];
        if entities.contains(&Some(who)) {
            let slot = U256::from_be_bytes(keccak256(&*data).0);
            self.associated.push((who, slot));
        }
    }

    pub(crate) fn new(
        entry_point: Address,
        sender: Address,
        factory: Option<Address>,
        paymaster: Option<Address>,
        staked: HashSet<Address>,
        tolerate_signature_failure: bool,
    ) -> Self {
        Self {
            entry_point,
            sender,
            factory,
            paymaster,
            staked,
            tolerate_signature_failure,
            frames: Vec::new(),
            associated: Vec::new(),
            sender_exists: factory.is_none(),
            ep_code_size: None,
            gas_then_call: false,
            creates: 0,
            validation_data: None,
            paymaster_result: None,
            violations: Vec::new(),
            validation_gas: 0,
            paymaster_gas: 0,
            execution_gas: 0,
        }
    }

    fn phase(&self) -> Phase {
        self.frames.last().copied().unwrap_or(Phase::EntryPoint)
    }

    fn entity_address(&self, e: Entity) -> Option<Address> {
        match e {
            Entity::Factory => self.factory,
            Entity::Account => Some(self.sender),
            Entity::Paymaster => self.paymaster,
        }
    }

    fn is_staked(&self, e: Entity) -> bool {
        self.entity_address(e)
            .is_some_and(|a| self.staked.contains(&a))
    }

    fn violate(&mut self, rule: &str, what: String) {
        if self.violations.len() < 16 {
            self.violations.push(format!("{rule}: {what}"));
        }
    }

    /// True if `slot` is associated with `who` (a keccak of `who ‖ x`, plus up to 127, or `who` itself).
    fn associated_with(&self, who: Address, slot: U256) -> bool {
        slot == U256::from_be_slice(who.as_slice())
            || self
                .associated
                .iter()
                .any(|(a, base)| *a == who && slot >= *base && slot - *base < U256::from(128))
    }

    fn check_storage(&mut self, entity: Entity, address: Address, slot: U256, write: bool) {
        if address == self.entry_point || address == self.sender {
            return; // the EntryPoint's own bookkeeping (a deposit); STO-010: the sender's own storage
        }
        let access = if write { "wrote" } else { "read" };
        let sender_slot = self.associated_with(self.sender, slot);
        let factory_staked = self.factory.is_some_and(|f| self.staked.contains(&f));
        if sender_slot && (self.sender_exists || factory_staked) {
            return; // STO-021/022: associated with a sender that exists, or that a staked factory deploys
        }
        let own = self.entity_address(entity) == Some(address);
        if self.is_staked(entity) {
            if own || !write {
                return; // STO-031: a staked entity's own storage; STO-033: reads anywhere
            }
            if self
                .entity_address(entity)
                .is_some_and(|e| self.associated_with(e, slot))
            {
                return; // STO-032: slots associated with a staked entity
            }
        }
        if sender_slot {
            return self.violate(
                "STO-022",
                format!(
                    "{entity} {access} slot {slot:#x} of {address}, associated with a sender its unstaked factory deploys"
                ),
            );
        }
        let (rule, what) = match (own, self.is_staked(entity)) {
            (true, _) => (
                "STO-031",
                format!("unstaked {entity} {access} its own storage, slot {slot:#x}"),
            ),
            (false, true) => (
                "STO-033",
                format!("staked {entity} wrote slot {slot:#x} of {address}, which is not its own"),
            ),
            (false, false) => (
                "STO-021",
                format!(
                    "unstaked {entity} {access} slot {slot:#x} of {address}, which is not associated with the sender"
                ),
            ),
        };
        self.violate(rule, what);
    }

    /// OP-041/054: `address` read as code (EXTCODE*) or called during validation.
    fn check_code_access<CTX: Ctx>(
        &mut self,
        context: &mut CTX,
        entity: Entity,
        address: Address,
        what: &str,
    ) {
        if address == self.entry_point {
            match what {
                // Solidity checks a contract has code before calling it (EXTCODESIZE, then ISZERO): judged
                // at the next opcode.
                "EXTCODESIZE" => self.ep_code_size = Some(entity),
                w if w.starts_with("EXTCODE") => {
                    self.violate("OP-054", format!("{entity} used {what} on the EntryPoint"));
                }
                _ => {}
            }
            return;
        }
        if address == self.sender
            || context
                .journal_ref()
                .precompile_addresses()
                .contains(&address)
        {
            return;
        }
        if !has_code(context, address) {
            self.violate(
                "OP-041",
                format!("{entity} used {what} on {address}, which has no code"),
            );
        }
    }
}

/// True if `address` has code: as this transaction left it (a contract it created), else as the state holds it.
fn has_code<CTX: Ctx>(context: &mut CTX, address: Address) -> bool {
    let code = |hash: B256| hash != KECCAK_EMPTY && !hash.is_zero();
    if let Some(a) = context.journal_ref().evm_state().get(&address) {
        return code(a.info.code_hash);
    }
    context
        .db_mut()
        .basic(address)
        .ok()
        .flatten()
        .is_some_and(|a| code(a.code_hash))
}

/// The contexts the inspector runs in: any whose journal keeps the state as revm's mainnet one does.
pub(crate) trait Ctx: ContextTr<Journal: JournalTr<State = EvmState>> {}
impl<T: ContextTr<Journal: JournalTr<State = EvmState>>> Ctx for T {}

fn opcode_name(op: u8) -> &'static str {
    match op {
        0x31 => "BALANCE",
        0x32 => "ORIGIN",
        0x3a => "GASPRICE",
        0x3b => "EXTCODESIZE",
        0x3c => "EXTCODECOPY",
        0x3f => "EXTCODEHASH",
        0x40 => "BLOCKHASH",
        0x41 => "COINBASE",
        0x42 => "TIMESTAMP",
        0x43 => "NUMBER",
        // PREVRANDAO since the Merge; the rules (and the suite) still call it DIFFICULTY.
        0x44 => "DIFFICULTY",
        0x45 => "GASLIMIT",
        0x47 => "SELFBALANCE",
        0x48 => "BASEFEE",
        0x49 => "BLOBHASH",
        0x4a => "BLOBBASEFEE",
        0x5a => "GAS",
        0xfe => "INVALID",
        0xff => "SELFDESTRUCT",
        _ => "",
    }
}

impl<CTX: Ctx> Inspector<CTX, EthInterpreter> for Erc7562Inspector {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, context: &mut CTX) {
        let Phase::Validation { entity, .. } = self.phase() else {
            self.gas_then_call = false;
            return;
        };
        let op = interp.bytecode.opcode();
        if let Some(e) = self.ep_code_size.take() {
            if op != 0x15 {
                self.violate("OP-054", format!("{e} used EXTCODESIZE on the EntryPoint"));
            }
        }
        if self.gas_then_call && !matches!(op, 0xf1 | 0xf2 | 0xf4 | 0xfa) {
            self.violate(
                "OP-012",
                format!("{entity} uses banned opcode: GAS (other than right before a call)"),
            );
        }
        self.gas_then_call = op == 0x5a;
        match op {
            0x31 | 0x47 if !self.is_staked(entity) => {
                self.violate(
                    "OP-080",
                    format!(
                        "{entity} uses banned opcode: {} (unstaked)",
                        opcode_name(op)
                    ),
                );
            }
            0x32 | 0x3a | 0x40..=0x45 | 0x48 | 0x49 | 0x4a | 0xfe | 0xff => {
                self.violate(
                    "OP-011",
                    format!("{entity} uses banned opcode: {}", opcode_name(op)),
                );
            }
            0x54 | 0x55 | 0x5c | 0x5d => {
                // SLOAD, SSTORE and (OP-070) their transient twins, under the same rules.
                if let Ok(slot) = interp.stack.peek(0) {
                    let address = interp.input.target_address();
                    self.check_storage(entity, address, slot, op == 0x55 || op == 0x5d);
                }
            }
            0x3b | 0x3c | 0x3f => {
                if let Ok(word) = interp.stack.peek(0) {
                    let address = Address::from_word(B256::from(word));
                    self.check_code_access(context, entity, address, opcode_name(op));
                }
            }
            0x20 => self.note_keccak(interp),
            _ => {}
        }
    }

    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        let data = inputs.input.bytes(context);
        let sel = selector(&data);
        let parent = self.phase();
        // Only a plain CALL from the EntryPoint starts a phase: a DELEGATECALL keeps the EntryPoint as its
        // caller, but it runs inside the frame that made it.
        let from_entry_point =
            inputs.caller == self.entry_point && inputs.scheme == CallScheme::Call;
        let next = if from_entry_point
            && inputs.target_address == self.sender
            && sel == Some(selectors::VALIDATE_USER_OP)
        {
            Phase::Validation {
                entity: Entity::Account,
                root: true,
            }
        } else if from_entry_point
            && Some(inputs.target_address) == self.paymaster
            && sel == Some(selectors::VALIDATE_PAYMASTER_USER_OP)
        {
            Phase::Validation {
                entity: Entity::Paymaster,
                root: true,
            }
        } else if from_entry_point && sel == Some(selectors::CREATE_SENDER) {
            Phase::Validation {
                entity: Entity::Factory,
                root: true,
            }
        } else if from_entry_point && inputs.target_address == self.sender {
            Phase::Execution { root: true }
        } else {
            match parent {
                Phase::Validation { entity, .. } => Phase::Validation {
                    entity,
                    root: false,
                },
                Phase::Execution { .. } => Phase::Execution { root: false },
                Phase::EntryPoint => Phase::EntryPoint,
            }
        };
        if let Phase::Validation { entity, .. } = parent {
            let what = match inputs.scheme {
                CallScheme::Call => "CALL",
                CallScheme::CallCode => "CALLCODE",
                CallScheme::DelegateCall => "DELEGATECALL",
                CallScheme::StaticCall => "STATICCALL",
            };
            self.check_code_access(context, entity, inputs.bytecode_address, what);
            if inputs.target_address == self.entry_point
                && !data.is_empty()
                && sel != Some(selectors::DEPOSIT_TO)
            {
                self.violate(
                    "OP-052",
                    format!("{entity} called the EntryPoint with something other than depositTo"),
                );
            }
            if inputs.transfers_value() && inputs.target_address != self.entry_point {
                self.violate(
                    "OP-061",
                    format!(
                        "{entity} sent value to {} (only the EntryPoint may receive value)",
                        inputs.target_address
                    ),
                );
            }
        }
        self.frames.push(next);
        None
    }

    fn call_end(&mut self, _context: &mut CTX, inputs: &CallInputs, outcome: &mut CallOutcome) {
        let phase = self.frames.pop().unwrap_or(Phase::EntryPoint);
        let used = inputs
            .gas_limit
            .saturating_sub(outcome.result.gas.remaining());
        let oog = matches!(
            outcome.result.result,
            InstructionResult::OutOfGas
                | InstructionResult::MemoryOOG
                | InstructionResult::InvalidOperandOOG
                | InstructionResult::PrecompileOOG
        );
        match phase {
            Phase::Validation { entity, root } => {
                if oog {
                    self.violate(
                        "OP-020",
                        format!("{entity} ran out of gas during validation"),
                    );
                }
                if !root {
                    return;
                }
                match entity {
                    Entity::Account => {
                        self.validation_gas += used;
                        if outcome.result.result.is_ok() && outcome.result.output.len() == 32 {
                            let mut vd = U256::from_be_slice(&outcome.result.output);
                            let aggregator = vd & U256::from_be_slice(&[0xff; 20]);
                            if self.tolerate_signature_failure && aggregator == U256::from(1) {
                                vd ^= U256::from(1);
                                outcome.result.output =
                                    Bytes::from(vd.to_be_bytes::<32>().to_vec());
                            }
                            self.validation_data =
                                Some(U256::from_be_slice(&outcome.result.output));
                        }
                    }
                    Entity::Factory => self.validation_gas += used,
                    Entity::Paymaster => {
                        self.paymaster_gas += used;
                        if outcome.result.result.is_ok() {
                            if let Ok((context, vd)) =
                                <(Bytes, U256)>::abi_decode_params(&outcome.result.output)
                            {
                                self.paymaster_result = Some((context, vd));
                            }
                        }
                    }
                }
            }
            Phase::Execution { root: true } => self.execution_gas += used,
            _ => {}
        }
    }

    fn create(&mut self, _context: &mut CTX, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        let parent = self.phase();
        let next = match parent {
            Phase::Validation { entity, .. } => {
                let create2 = matches!(inputs.scheme(), CreateScheme::Create2 { .. });
                let factory_staked = self.factory.is_some_and(|f| self.staked.contains(&f));
                let caller = inputs.caller();
                // OP-031: the factory deploys the sender, once, with CREATE2. OP-032 / EREP-060: the sender
                // being deployed (its constructor or its validation) may CREATE, and CREATE2 if the factory is
                // staked. The paymaster may not create.
                let by_factory = entity == Entity::Factory
                    && Some(caller) == self.factory
                    && create2
                    && self.creates == 0;
                let by_sender = entity != Entity::Paymaster
                    && caller == self.sender
                    && self.factory.is_some()
                    && (!create2 || factory_staked);
                let allowed = by_factory || by_sender;
                if !allowed {
                    let op = if create2 { "CREATE2" } else { "CREATE" };
                    self.violate("OP-031", format!("{entity} uses banned opcode: {op}"));
                }
                if by_factory {
                    self.creates += 1;
                }
                Phase::Validation {
                    entity,
                    root: false,
                }
            }
            other => other,
        };
        self.frames.push(next);
        None
    }

    fn create_end(
        &mut self,
        _context: &mut CTX,
        _inputs: &CreateInputs,
        _outcome: &mut CreateOutcome,
    ) {
        self.frames.pop();
    }
}
