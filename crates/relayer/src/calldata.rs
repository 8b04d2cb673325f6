//! What calldata costs on chain, in one place for the door (an op's preVerificationGas) and the bundler (a
//! bundle's gas limit and who pays for it): EIP-2028's standard price and EIP-7623's floor (Prague on), both
//! counted in the same tokens — one a zero byte, four any other.

/// Gas a transaction pays in any case.
pub(crate) const TX_BASE_GAS: u64 = 21_000;
/// Gas a calldata token costs at the standard rate (4 a zero byte, 16 any other).
pub(crate) const STANDARD_TOKEN_GAS: u64 = 4;
/// Gas a calldata token costs at the floor (EIP-7623 `TOTAL_COST_FLOOR_PER_TOKEN`).
pub(crate) const FLOOR_TOKEN_GAS: u64 = 10;

/// Calldata tokens of `data` (EIP-7623: zero bytes count one, the others four).
pub(crate) fn tokens(data: &[u8]) -> u64 {
    data.iter().map(|b| if *b == 0 { 1 } else { 4 }).sum()
}

/// The least gas a transaction carrying `data` is charged under EIP-7623: its gas limit must be at least
/// this much, however little it executes.
pub(crate) fn floor_gas(data: &[u8]) -> u64 {
    TX_BASE_GAS + FLOOR_TOKEN_GAS * tokens(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_counts_ten_gas_a_token_and_a_token_is_four_for_a_nonzero_byte() {
        assert_eq!(tokens(&[0, 0, 1, 0xff]), 1 + 1 + 4 + 4);
        assert_eq!(floor_gas(&[]), 21_000);
        // The poison op: 40 kB of non-zero calldata floors its transaction at 1.6 M gas.
        assert_eq!(floor_gas(&[1; 40_000]), 21_000 + 1_600_000);
    }
}
