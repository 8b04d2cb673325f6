// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title TestUSD
/// @notice The venue's collateral on devnets: a 6-decimal test dollar that only its owner can mint.
contract TestUSD is ERC20, Ownable {
    /// @param initialOwner The only address allowed to mint.
    constructor(address initialOwner) ERC20("Keyscope Test USD", "tUSD") Ownable(initialOwner) {}

    /// @notice 6 decimals, like USDC.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` to `to`. Owner only.
    /// @param to Receiver.
    /// @param amount Amount in 6-decimal units.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
