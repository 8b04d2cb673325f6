//! Selectors known to move value out of an account, so the tools refuse to grant them to a session key.
//!
//! The account refuses a short deny list on-chain (`SessionManager.isForbiddenSelector`): the ERC-20,
//! ERC-721 and ERC-1155 transfers and approvals and the venue's withdrawal and funding calls. Code is
//! bounded; this list is not: it adds what the chain cannot afford to check but a key must still not be
//! handed — signed approvals (EIP-2612 and DAI `permit`, Permit2's transfers), transfer-and-call tokens,
//! ERC-777 operators, burns, vault withdrawals and redemptions, the venue's `liquidate`, and forwarders
//! (`multicall`, `execute`) that would call any of them on the key's behalf. A selector on this list is
//! granted only when the owner names it in an explicit override; one on the on-chain deny list never is,
//! since the account would refuse the grant anyway.
//!
//! Entries are written as signatures, so each selector is computed rather than copied, and a test holds
//! the on-chain half equal to the contract's own list.

use alloy_primitives::{FixedBytes, keccak256};

/// One selector that moves value out, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutflowSelector {
    /// The function's canonical signature, e.g. `burn(uint256)`.
    pub signature: &'static str,
    /// What it does to the account's value, in words.
    pub why: &'static str,
    /// True if the account itself refuses to grant it (`isForbiddenSelector`): no override helps.
    pub denied_on_chain: bool,
}

impl OutflowSelector {
    /// The 4-byte selector of [`Self::signature`].
    pub fn selector(&self) -> FixedBytes<4> {
        selector_of(self.signature)
    }
}

/// The 4-byte selector of a canonical function signature.
pub fn selector_of(signature: &str) -> FixedBytes<4> {
    FixedBytes::from_slice(&keccak256(signature.as_bytes())[..4])
}

const fn on_chain(signature: &'static str, why: &'static str) -> OutflowSelector {
    OutflowSelector {
        signature,
        why,
        denied_on_chain: true,
    }
}

const fn tools(signature: &'static str, why: &'static str) -> OutflowSelector {
    OutflowSelector {
        signature,
        why,
        denied_on_chain: false,
    }
}

/// Every selector the tools treat as an outflow, the on-chain deny list first.
pub const OUTFLOW_SELECTORS: &[OutflowSelector] = &[
    on_chain(
        "withdrawMargin(uint256)",
        "takes collateral out of the venue",
    ),
    on_chain(
        "fundPool(uint256)",
        "gives the account's tokens to the venue's pool",
    ),
    on_chain(
        "fundInsurance(uint256)",
        "gives the account's tokens to the insurance fund",
    ),
    on_chain("transfer(address,uint256)", "sends tokens to any address"),
    on_chain(
        "transferFrom(address,address,uint256)",
        "moves tokens between any addresses",
    ),
    on_chain(
        "approve(address,uint256)",
        "lets any address take the account's tokens",
    ),
    on_chain(
        "increaseAllowance(address,uint256)",
        "lets any address take the account's tokens",
    ),
    on_chain(
        "approve(address,address,uint160,uint48)",
        "a Permit2 allowance: lets any address take the account's tokens",
    ),
    on_chain(
        "setApprovalForAll(address,bool)",
        "lets any address take every NFT or ERC-1155 token of the account",
    ),
    on_chain(
        "safeTransferFrom(address,address,uint256)",
        "sends an NFT to any address",
    ),
    on_chain(
        "safeTransferFrom(address,address,uint256,bytes)",
        "sends an NFT to any address",
    ),
    on_chain(
        "safeTransferFrom(address,address,uint256,uint256,bytes)",
        "sends ERC-1155 tokens to any address",
    ),
    on_chain(
        "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)",
        "sends ERC-1155 tokens to any address",
    ),
    tools(
        "transferFrom(address,address,uint160,address)",
        "a Permit2 transfer: moves tokens the account approved to Permit2 to any address",
    ),
    tools(
        "permitTransferFrom(((address,uint256),uint256,uint256),(address,uint256),address,bytes)",
        "a Permit2 signature transfer: moves the account's tokens to any address",
    ),
    tools(
        "permit(address,((address,uint160,uint48,uint48),address,uint256),bytes)",
        "a Permit2 signed allowance: lets any address take the account's tokens",
    ),
    tools(
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
        "an EIP-2612 signed allowance: lets any address take the account's tokens",
    ),
    tools(
        "permit(address,address,uint256,uint256,bool,uint8,bytes32,bytes32)",
        "a DAI-style signed allowance: lets any address take the account's tokens",
    ),
    tools(
        "increaseApproval(address,uint256)",
        "lets any address take the account's tokens",
    ),
    tools(
        "approveAndCall(address,uint256,bytes)",
        "approves any address and calls it",
    ),
    tools(
        "transferAndCall(address,uint256)",
        "an ERC-677/ERC-1363 transfer: sends tokens to any address",
    ),
    tools(
        "transferAndCall(address,uint256,bytes)",
        "an ERC-677/ERC-1363 transfer: sends tokens to any address",
    ),
    tools(
        "transferFromAndCall(address,address,uint256,bytes)",
        "an ERC-1363 transfer: moves tokens to any address",
    ),
    tools(
        "send(address,uint256,bytes)",
        "an ERC-777 send: sends tokens to any address",
    ),
    tools(
        "operatorSend(address,address,uint256,bytes,bytes)",
        "an ERC-777 operator send: moves tokens to any address",
    ),
    tools(
        "authorizeOperator(address)",
        "an ERC-777 operator: lets any address move every token of the account",
    ),
    tools("burn(uint256)", "destroys the account's tokens"),
    tools("burn(address,uint256)", "destroys tokens"),
    tools(
        "burn(uint256,bytes)",
        "an ERC-777 burn: destroys the account's tokens",
    ),
    tools("burnFrom(address,uint256)", "destroys tokens of any holder"),
    tools(
        "liquidate(address,uint32)",
        "the venue's liquidation: closes a position at a penalty, with the fee to the caller",
    ),
    tools("withdraw(uint256)", "takes funds out (WETH, vaults, pools)"),
    tools("withdraw(address,uint256)", "takes funds out to an address"),
    tools(
        "withdraw(uint256,address,address)",
        "an ERC-4626 withdrawal: takes assets out to any address",
    ),
    tools(
        "redeem(uint256,address,address)",
        "an ERC-4626 redemption: takes assets out to any address",
    ),
    tools(
        "withdrawTo(address,uint256)",
        "takes funds out to any address",
    ),
    tools("withdrawAll()", "takes every fund out"),
    tools(
        "multicall(bytes[])",
        "a forwarder: makes any calls, outflows included",
    ),
    tools(
        "multicall(uint256,bytes[])",
        "a forwarder: makes any calls, outflows included",
    ),
    tools(
        "aggregate((address,bytes)[])",
        "a forwarder: makes any calls, outflows included",
    ),
    tools(
        "aggregate3((address,bool,bytes)[])",
        "a forwarder: makes any calls, outflows included",
    ),
    tools(
        "execute(address,uint256,bytes)",
        "a forwarder: makes any call with value, outflows included",
    ),
    tools(
        "executeBatch((address,uint256,bytes)[])",
        "a forwarder: makes any calls with value, outflows included",
    ),
];

/// The entry for `selector`, if it moves value out.
pub fn outflow(selector: FixedBytes<4>) -> Option<&'static OutflowSelector> {
    OUTFLOW_SELECTORS.iter().find(|o| o.selector() == selector)
}

/// Errors reading a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a selector: give 4 bytes in hex (0x42966c68) or a signature (burn(uint256))")]
pub struct BadSelector(pub String);

/// A selector from `0x` + 8 hex digits or from a function signature (`burn(uint256)`).
pub fn parse_selector(s: &str) -> Result<FixedBytes<4>, BadSelector> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x") {
        return hex
            .parse::<FixedBytes<4>>()
            .or_else(|_| s.parse())
            .map_err(|_| BadSelector(s.to_string()));
    }
    if s.contains('(') && s.ends_with(')') && !s.contains(' ') {
        return Ok(selector_of(s));
    }
    Err(BadSelector(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::PerpVenue;
    use alloy::sol_types::SolCall;

    #[test]
    fn the_issue_examples_are_outflows() {
        for (hex, name) in [
            (
                "0x36c78516",
                "transferFrom(address,address,uint160,address)",
            ),
            ("0x4000aea0", "transferAndCall(address,uint256,bytes)"),
            ("0x9bd9bbc6", "send(address,uint256,bytes)"),
            ("0x959b8c3f", "authorizeOperator(address)"),
            ("0xd505accf", "permit (EIP-2612)"),
            ("0x8fcbaf0c", "permit (DAI)"),
            ("0xd73dd623", "increaseApproval(address,uint256)"),
            ("0x79cc6790", "burnFrom(address,uint256)"),
            ("0x42966c68", "burn(uint256)"),
            ("0x2e1a7d4d", "withdraw(uint256)"),
            ("0xac9650d8", "multicall(bytes[])"),
            ("0xb61d27f6", "execute(address,uint256,bytes)"),
        ] {
            let sel = parse_selector(hex).unwrap();
            let found = outflow(sel).unwrap_or_else(|| panic!("{name} ({hex}) is listed"));
            assert!(!found.denied_on_chain, "{name}");
        }
        let liquidate: FixedBytes<4> = PerpVenue::liquidateCall::SELECTOR.into();
        assert!(outflow(liquidate).is_some());
    }

    #[test]
    fn the_on_chain_half_matches_the_account() {
        // Selectors the contract's `isForbiddenSelector` names (its comments give the signatures).
        for (hex, sig) in [
            ("0xa9059cbb", "transfer(address,uint256)"),
            ("0x23b872dd", "transferFrom(address,address,uint256)"),
            ("0x095ea7b3", "approve(address,uint256)"),
            ("0x39509351", "increaseAllowance(address,uint256)"),
            ("0x87517c45", "approve(address,address,uint160,uint48)"),
            ("0xa22cb465", "setApprovalForAll(address,bool)"),
            ("0x42842e0e", "safeTransferFrom(address,address,uint256)"),
            (
                "0xb88d4fde",
                "safeTransferFrom(address,address,uint256,bytes)",
            ),
            (
                "0xf242432a",
                "safeTransferFrom(address,address,uint256,uint256,bytes)",
            ),
            (
                "0x2eb2c2d6",
                "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)",
            ),
        ] {
            let entry = outflow(parse_selector(hex).unwrap()).unwrap();
            assert_eq!(entry.signature, sig);
            assert!(entry.denied_on_chain, "{sig}");
        }
        for sel in [
            PerpVenue::withdrawMarginCall::SELECTOR,
            PerpVenue::fundPoolCall::SELECTOR,
            PerpVenue::fundInsuranceCall::SELECTOR,
        ] {
            assert!(outflow(sel.into()).unwrap().denied_on_chain);
        }
        assert_eq!(
            OUTFLOW_SELECTORS
                .iter()
                .filter(|o| o.denied_on_chain)
                .count(),
            13,
            "the contract's deny list has 13 selectors"
        );
    }

    #[test]
    fn trading_calls_are_not_outflows() {
        for sel in [
            PerpVenue::placeOrderCall::SELECTOR,
            PerpVenue::depositMarginCall::SELECTOR,
            PerpVenue::pokeCall::SELECTOR,
        ] {
            assert!(outflow(sel.into()).is_none());
        }
    }

    #[test]
    fn selectors_read_from_hex_or_signature() {
        assert_eq!(
            parse_selector("burn(uint256)").unwrap(),
            parse_selector("0x42966c68").unwrap()
        );
        assert!(parse_selector("0x42966c").is_err());
        assert!(parse_selector("burn").is_err());
        assert!(parse_selector("").is_err());
    }
}
