//! What the relayer reads out of an op's calls before simulating it: whether it adds margin or reduces risk
//! (which bundles first), and whether it can move another account's venue health.

use alloy_primitives::Address;
use keyscope_core::ops::{AccountCalls, OpKind};

/// Classifies `call_data` of a TradingAccount op (owner or session): protective when every call to `venue` is
/// a deposit, a reduce-only order or a cancel.
pub(crate) fn classify(call_data: &[u8], venue: Option<Address>) -> OpKind {
    match (venue, AccountCalls::decode(call_data)) {
        (Some(venue), Ok(calls)) => calls.kind(venue),
        _ => OpKind::Other,
    }
}

/// True when every call of `call_data` is the account trading or moving margin on `venue` for itself
/// (orders, cancels, deposits, withdrawals): such an op changes no other account's venue health. Anything
/// else (an oracle update, a liquidation, a call elsewhere) may.
pub(crate) fn moves_only_own_health(call_data: &[u8], venue: Option<Address>) -> bool {
    match (venue, AccountCalls::decode(call_data)) {
        (Some(venue), Ok(calls)) => calls.moves_only_own_health(venue),
        _ => false,
    }
}
