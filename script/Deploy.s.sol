// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Script, console} from "forge-std/Script.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";

import {AccountFactory} from "../contracts/account/AccountFactory.sol";
import {PerpVenue} from "../contracts/venue/PerpVenue.sol";
import {SignedPriceOracle} from "../contracts/venue/SignedPriceOracle.sol";
import {TestUSD} from "../contracts/venue/TestUSD.sol";
import {CanonicalEntryPoint} from "./CanonicalEntryPoint.sol";

/// @title Deploy
/// @notice The one source of deployment truth: EntryPoint v0.8 (canonical address), the account factory,
/// the collateral token, the signed-price oracle and the venue with BTC (0) and ETH (1) listed. Every
/// contract goes through the deterministic CREATE2 deployer, so running it again on a chain where it ran
/// finds everything in place and changes nothing. Writes deployments/<chainId>.json (addresses and
/// market ids by name).
/// @dev Environment: PRIVATE_KEY (deployer, owner of token, oracle and venue; anvil's first key by
/// default), ORACLE_SIGNER (default: the deployer), INSURANCE_FUND (6 decimals; default 50,000 tUSD).
///   forge script script/Deploy.s.sol --rpc-url $RPC --broadcast
contract Deploy is Script {
    bytes32 internal constant SALT = keccak256("keyscope.v1");
    uint256 internal constant ANVIL_KEY_0 = 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80;
    uint64 internal constant ORACLE_MAX_AGE = 120;

    struct Deployment {
        IEntryPoint entryPoint;
        AccountFactory factory;
        TestUSD usd;
        SignedPriceOracle oracle;
        PerpVenue venue;
    }

    function run() external returns (Deployment memory d) {
        uint256 pk = vm.envOr("PRIVATE_KEY", ANVIL_KEY_0);
        address deployer = vm.addr(pk);
        address signer = vm.envOr("ORACLE_SIGNER", deployer);
        uint256 startBlock = block.number;

        vm.startBroadcast(pk);
        d.entryPoint = CanonicalEntryPoint.deploy();
        d.factory =
            AccountFactory(_create2(abi.encodePacked(type(AccountFactory).creationCode, abi.encode(d.entryPoint))));
        d.usd = TestUSD(_create2(abi.encodePacked(type(TestUSD).creationCode, abi.encode(deployer))));
        d.oracle = SignedPriceOracle(
            _create2(abi.encodePacked(type(SignedPriceOracle).creationCode, abi.encode(deployer, ORACLE_MAX_AGE)))
        );
        d.venue =
            PerpVenue(_create2(abi.encodePacked(type(PerpVenue).creationCode, abi.encode(deployer, d.usd, d.oracle))));
        if (!d.oracle.isSigner(signer)) d.oracle.setSigner(signer, true);
        if (!d.venue.market(0).listed) d.venue.listMarket(0, _params(100_000e6));
        if (!d.venue.market(1).listed) d.venue.listMarket(1, _params(50_000e6));
        if (d.venue.pool() == 0) {
            uint256 insurance = vm.envOr("INSURANCE_FUND", uint256(50_000e6));
            d.usd.mint(deployer, 10_000_000e6 + insurance);
            d.usd.approve(address(d.venue), type(uint256).max);
            d.venue.fundPool(10_000_000e6);
            if (insurance != 0) d.venue.fundInsurance(insurance);
        }
        vm.stopBroadcast();

        _write(d, startBlock);
    }

    /// @dev BTC and ETH: IMF 5 %, MMF 3 %, taker fee 0.05 %, penalty 1 %, price band 10 %.
    function _params(uint128 partialNotional) internal pure returns (PerpVenue.MarketParams memory p) {
        p.imf = 0.05e18;
        p.mmf = 0.03e18;
        p.takerFee = 0.0005e18;
        p.liquidationPenalty = 0.01e18;
        p.maxLimitDeviation = 0.1e18;
        p.maxPosition = 10_000e18;
        p.partialLiquidationNotional = partialNotional;
    }

    /// @dev Deploys through the CREATE2 deployer unless the code is there already.
    function _create2(bytes memory initCode) internal returns (address addr) {
        addr = vm.computeCreate2Address(SALT, keccak256(initCode), CanonicalEntryPoint.CREATE2_DEPLOYER);
        if (addr.code.length != 0) return addr;
        (bool ok,) = CanonicalEntryPoint.CREATE2_DEPLOYER.call(abi.encodePacked(SALT, initCode));
        require(ok && addr.code.length != 0, "CREATE2 deployment failed");
    }

    function _write(Deployment memory d, uint256 startBlock) internal {
        string memory k = "deployment";
        vm.serializeUint(k, "chainId", block.chainid);
        vm.serializeUint(k, "block", startBlock);
        vm.serializeAddress(k, "entryPoint", address(d.entryPoint));
        vm.serializeAddress(k, "accountFactory", address(d.factory));
        vm.serializeAddress(k, "collateral", address(d.usd));
        vm.serializeAddress(k, "oracle", address(d.oracle));
        vm.serializeAddress(k, "venue", address(d.venue));
        vm.serializeUint("markets", "BTC", 0);
        string memory markets = vm.serializeUint("markets", "ETH", 1);
        string memory json = vm.serializeString(k, "markets", markets);
        string memory path = string.concat("deployments/", vm.toString(block.chainid), ".json");
        vm.writeJson(json, path);
        console.log("deployment written to", path);
    }
}
