// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "solady/utils/EIP712.sol";

/// @title SignedPriceOracle
/// @notice Prices pushed as EIP-712 messages signed by registered oracle keys; anyone may relay a signed
/// update. Updates must be signed, non-zero, not older than `maxAge`, not from the future and strictly
/// newer than the last one. Readers get a price only while it is fresh.
contract SignedPriceOracle is Ownable, EIP712 {
    /// @notice One signed observation: `price` (18 decimals, USD per base unit) of `marketId` at `publishTime`.
    struct PriceUpdate {
        uint32 marketId;
        uint256 price;
        uint64 publishTime;
    }

    struct Observation {
        uint192 price;
        uint64 publishTime;
    }

    bytes32 public constant PRICE_UPDATE_TYPEHASH =
        keccak256("PriceUpdate(uint32 marketId,uint256 price,uint64 publishTime)");
    /// @notice How far ahead of the block a publish time may be (clock skew between signer and chain).
    uint64 public constant MAX_FUTURE_SKEW = 15;

    /// @notice Oldest acceptable age of a price, in seconds, both to submit and to read.
    uint64 public maxAge;
    mapping(address signer => bool) public isSigner;
    mapping(uint32 marketId => Observation) internal _latest;

    event SignerSet(address indexed signer, bool allowed);
    event MaxAgeSet(uint64 maxAge);
    event PriceUpdated(uint32 indexed marketId, uint256 price, uint64 publishTime, address indexed signer);

    error ZeroPrice();
    error PriceTooLarge(uint256 price);
    error UnknownSigner(address recovered);
    error StaleUpdate(uint64 publishTime, uint256 now_);
    error FutureUpdate(uint64 publishTime, uint256 now_);
    error NonMonotonicUpdate(uint64 publishTime, uint64 latest);
    error NoPrice(uint32 marketId);
    error StalePrice(uint32 marketId, uint64 publishTime, uint256 now_);
    error InvalidMaxAge();

    /// @param initialOwner Manages signers and `maxAge`.
    /// @param maxAge_ Oldest acceptable price age in seconds.
    constructor(address initialOwner, uint64 maxAge_) Ownable(initialOwner) {
        _setMaxAge(maxAge_);
    }

    /// @notice Allows or removes an oracle signer. Owner only.
    /// @param signer The signer's address.
    /// @param allowed Whether its updates are accepted.
    function setSigner(address signer, bool allowed) external onlyOwner {
        isSigner[signer] = allowed;
        emit SignerSet(signer, allowed);
    }

    /// @notice Sets the staleness bound. Owner only.
    /// @param maxAge_ Oldest acceptable price age in seconds; not zero.
    function setMaxAge(uint64 maxAge_) external onlyOwner {
        _setMaxAge(maxAge_);
    }

    /// @notice The EIP-712 digest an oracle key signs for `u`.
    /// @param u The update.
    function updateDigest(PriceUpdate calldata u) public view returns (bytes32) {
        return _hashTypedData(keccak256(abi.encode(PRICE_UPDATE_TYPEHASH, u.marketId, u.price, u.publishTime)));
    }

    /// @notice Records a signed price update. Anyone may relay it.
    /// @param u The update.
    /// @param signature A registered signer's 65-byte signature over `updateDigest(u)`.
    function submit(PriceUpdate calldata u, bytes calldata signature) external {
        if (u.price == 0) revert ZeroPrice();
        if (u.price > type(uint192).max) revert PriceTooLarge(u.price);
        if (u.publishTime > block.timestamp + MAX_FUTURE_SKEW) revert FutureUpdate(u.publishTime, block.timestamp);
        if (u.publishTime + maxAge < block.timestamp) revert StaleUpdate(u.publishTime, block.timestamp);
        uint64 latest = _latest[u.marketId].publishTime;
        if (u.publishTime <= latest) revert NonMonotonicUpdate(u.publishTime, latest);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(updateDigest(u), signature);
        if (err != ECDSA.RecoverError.NoError || !isSigner[signer]) revert UnknownSigner(signer);
        _latest[u.marketId] = Observation(uint192(u.price), u.publishTime);
        emit PriceUpdated(u.marketId, u.price, u.publishTime, signer);
    }

    /// @notice The fresh price of `marketId`; reverts if there is none or it is older than `maxAge`.
    /// @param marketId The market.
    /// @return price 18-decimal USD per base unit.
    /// @return publishTime When it was observed.
    function freshPrice(uint32 marketId) external view returns (uint256 price, uint64 publishTime) {
        Observation memory o = _latest[marketId];
        if (o.publishTime == 0) revert NoPrice(marketId);
        if (o.publishTime + maxAge < block.timestamp) revert StalePrice(marketId, o.publishTime, block.timestamp);
        return (o.price, o.publishTime);
    }

    /// @notice The last price of `marketId`, fresh or not (0 if none); for funding accrual and views.
    /// @param marketId The market.
    function lastPrice(uint32 marketId) external view returns (uint256 price, uint64 publishTime) {
        Observation memory o = _latest[marketId];
        return (o.price, o.publishTime);
    }

    function _setMaxAge(uint64 maxAge_) internal {
        if (maxAge_ == 0) revert InvalidMaxAge();
        maxAge = maxAge_;
        emit MaxAgeSet(maxAge_);
    }

    function _domainNameAndVersion() internal pure override returns (string memory, string memory) {
        return ("Keyscope SignedPriceOracle", "1");
    }
}
