//! Storage slots of the venue's state variables, read from the compiler's storage layout (forge's
//! `storageLayout` output, embedded at build time like the bindings): a reordered or renamed variable
//! changes the slot here, or fails the test below, instead of leaving a stale number in Rust.

use std::sync::OnceLock;

use alloy_primitives::U256;

const VENUE_ARTIFACT: &str = include_str!("../../../out/PerpVenue.sol/PerpVenue.json");

/// The venue's pure accumulators: every fill, deposit or withdrawal adds to them and nothing decides on
/// their value, so concurrent ops may change them in any order.
pub const VENUE_ACCUMULATORS: [&str; 5] = [
    "pool",
    "feesCollected",
    "totalDeposits",
    "totalWithdrawals",
    "nextOrderId",
];

/// (label, slot) of each of the venue's whole-slot state variables.
fn venue_slots() -> &'static Vec<(String, U256)> {
    static SLOTS: OnceLock<Vec<(String, U256)>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let artifact: serde_json::Value =
            serde_json::from_str(VENUE_ARTIFACT).expect("the venue artifact is JSON");
        artifact["storageLayout"]["storage"]
            .as_array()
            .expect("forge was run with extra_output = [\"storageLayout\"]")
            .iter()
            .filter(|v| v["offset"] == 0)
            .filter_map(|v| {
                Some((
                    v["label"].as_str()?.to_string(),
                    v["slot"].as_str()?.parse::<U256>().ok()?,
                ))
            })
            .collect()
    })
}

/// The slot of the venue's state variable `label`, if it has one of its own.
pub fn venue_slot(label: &str) -> Option<U256> {
    venue_slots()
        .iter()
        .find(|(l, _)| l == label)
        .map(|(_, s)| *s)
}

/// The slots of [`VENUE_ACCUMULATORS`].
pub fn venue_accumulator_slots() -> Vec<U256> {
    VENUE_ACCUMULATORS
        .iter()
        .map(|l| venue_slot(l).unwrap_or_else(|| panic!("PerpVenue has no state variable {l}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulators_have_distinct_slots_after_the_owner() {
        let slots = venue_accumulator_slots();
        assert_eq!(slots.len(), VENUE_ACCUMULATORS.len());
        let mut unique = slots.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), slots.len());
        // Ownable's owner sits in slot 0; nothing accumulates there.
        assert!(slots.iter().all(|s| *s > U256::ZERO));
        assert_eq!(venue_slot("no such variable"), None);
    }
}
