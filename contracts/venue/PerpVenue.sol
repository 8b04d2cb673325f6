// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";

import {IOrderAccount} from "../account/interfaces/IOrderAccount.sol";
import {IPerpVenue} from "./IPerpVenue.sol";
import {ISignedOrderVenue} from "./ISignedOrderVenue.sol";
import {SignedPriceOracle} from "./SignedPriceOracle.sol";
import {PerpMath} from "./libraries/PerpMath.sol";
import {SignedOrder} from "./libraries/SignedOrder.sol";

/// @title PerpVenue
/// @notice A small cross-margin perpetual-futures venue. Orders fill immediately at the oracle price when
/// it is within the order's limit (fill-or-kill: nothing rests, so nothing can be cancelled); the venue's
/// liquidity pool takes the other side. Accounts are re-evaluated on every touch and move between
/// Healthy, MarginCall, Liquidatable and Bankrupt, with events a portfolio feed can follow.
/// @dev Formulas (quote = collateral units, see PerpMath):
///   N   = |size| x oracle price                     (per position)
///   AV  = collateral + sum(unrealised PnL - funding owed)
///   IMR = sum(IMF x N),  MMR = sum(MMF x N)
///   Healthy: AV >= IMR; MarginCall: MMR <= AV < IMR; Liquidatable: 0 <= AV < MMR; Bankrupt: AV < 0.
/// Opening (anything that grows |size| or flips it) and withdrawing need AV >= IMR (plus the minimum
/// liquidation reward while positions are open) afterwards; reducing is always allowed. Market ids are 0..63 (one bit each in an account's open-market map).
///
/// Signed orders (`settle`): session keys sign orders off-chain (`SignedOrder`), an off-chain matcher pairs a
/// maker with a taker, and a settler — an address the venue owner allows (`setSettler`; the owner is the
/// first) — settles the pairs in batches. Each fill is at the maker's limit price, inside the market's price
/// band around the oracle; the venue tracks each order's filled size (never past its size), its expiry (ms)
/// and its (account, key) cancel bitmap, applies both sides as two accounts' trades (the taker pays the
/// taker fee, the maker none; margin as for `placeOrder`), and then asks each side's account
/// (`IOrderAccount.checkOrderFill`), which checks the signature and spends the key's scope; once all of the batch's
/// fills are applied and checked, each account's closing call (`checkOrderFill` of size zero) applies its keys'
/// post-execution limits to the account after its fills. A batch is all or none: the first refused fill reverts it with that check's own error, and
/// the settler drops the fill and resubmits (it simulates first). Accounts pay no gas for settlement.
contract PerpVenue is IPerpVenue, ISignedOrderVenue, Ownable {
    using SafeERC20 for IERC20;

    enum AccountState {
        Healthy,
        MarginCall,
        Liquidatable,
        Bankrupt
    }

    /// @notice A market's risk parameters (fractions in WAD) and funding state.
    /// @dev Repeats MarketParams' fields rather than nesting the struct: nested, `listed` and the funding
    /// fields would each start a slot of their own and every order would read two more cold slots.
    struct Market {
        bool listed;
        /// Initial and maintenance margin fractions, taker fee and liquidation penalty (WAD).
        uint64 imf;
        uint64 mmf;
        uint64 takerFee;
        uint64 liquidationPenalty;
        /// Largest |limit - oracle| / oracle an order may carry (WAD): keeps session notional caps binding.
        uint64 maxLimitDeviation;
        /// Largest |position| (18 decimals).
        uint128 maxPosition;
        /// Positions with a notional above this (quote) are liquidated in parts.
        uint128 partialLiquidationNotional;
        /// Funding rate per second (WAD), clamped to +/- maxFundingRate; longs pay shorts when positive.
        int64 fundingRate;
        uint64 lastFundingTime;
        int256 fundingIndex;
    }

    /// @notice Parameters a market is listed with.
    struct MarketParams {
        uint64 imf;
        uint64 mmf;
        uint64 takerFee;
        uint64 liquidationPenalty;
        uint64 maxLimitDeviation;
        uint128 maxPosition;
        uint128 partialLiquidationNotional;
    }

    struct Position {
        int256 size;
        uint256 entryPrice;
        int256 fundingIndex;
    }

    /// @notice One open position in a portfolio view.
    struct PositionView {
        uint32 marketId;
        int256 size;
        uint256 entryPrice;
        uint256 markPrice;
        uint256 notional;
        int256 unrealisedPnl;
        int256 fundingOwed;
    }

    /// @notice Everything a portfolio view needs, in one call.
    struct Portfolio {
        int256 collateral;
        int256 accountValue;
        uint256 initialMargin;
        uint256 maintenanceMargin;
        AccountState state;
        PositionView[] positions;
    }

    uint256 internal constant WAD = 1e18;
    uint32 public constant MAX_MARKETS = 64;
    /// @notice Share of a position closed per partial liquidation (WAD).
    uint256 public constant PARTIAL_LIQUIDATION_FRACTION = 0.25e18;
    /// @notice Largest funding rate per second an owner can set (WAD): 0.01 %/hour.
    int256 public constant MAX_FUNDING_RATE = int256(uint256(0.0001e18) / 3600);

    /// @dev Transient: non-zero while `settle` runs (its re-entrancy guard), and the base of its per-account marks.
    uint256 internal constant SETTLE_GUARD_SLOT = uint256(keccak256("keyscope.venue.settle"));

    IERC20 public immutable collateralToken;
    SignedPriceOracle public immutable oracle;

    /// @notice Liquidator reward bounds, in quote units.
    uint256 public minLiquidationReward;
    uint256 public maxLiquidationReward;

    /// @notice Balances, in quote units. `pool` is the counterparty of every fill and may go negative.
    int256 public pool;
    uint256 public insuranceFund;
    uint256 public feesCollected;
    uint256 public badDebt;
    uint256 public totalDeposits;
    uint256 public totalWithdrawals;
    uint256 public nextOrderId;

    mapping(uint32 marketId => Market) internal _markets;
    mapping(address account => int256) public collateralOf;
    mapping(address account => mapping(uint32 marketId => Position)) internal _positions;
    mapping(address account => uint64) public openMarkets;
    mapping(address account => AccountState) public lastState;

    /// @notice Addresses the owner allows to settle signed-order fills.
    mapping(address settler => bool) public isSettler;
    /// @notice Base size filled of each partly filled signed order, by order hash (`SignedOrder.orderHash` at
    /// this venue). An order filled in full spends its nonce instead (and its entry is cleared).
    mapping(bytes32 orderHash => uint256) public filledOf;
    /// @notice Spent nonces of signed orders, per (account, key): bit `nonce & 255` of word `nonce >> 8` is set
    /// when the order is cancelled or filled in full. A nonce serves one order.
    mapping(address account => mapping(address key => mapping(uint256 wordIndex => uint256))) public cancelledOrders;
    /// @dev Per (account, key), as `cancelledOrders`: bit `nonce & 255` of word `nonce >> 8` is set once an order
    /// of that nonce is partly filled, so `filledOf` is read only for orders that may have an entry.
    mapping(address account => mapping(address key => mapping(uint256 wordIndex => uint256))) internal _partlyFilled;

    event MarketListed(uint32 indexed marketId, MarketParams params);
    event FundingRateSet(uint32 indexed marketId, int256 ratePerSecond);
    event LiquidationRewardsSet(uint256 minReward, uint256 maxReward);
    event PoolFunded(address indexed from, uint256 amount);
    event InsuranceFunded(address indexed from, uint256 amount);
    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event OrderFilled(
        address indexed account,
        uint32 indexed marketId,
        uint256 indexed orderId,
        int256 sizeDelta,
        uint256 price,
        uint256 fee,
        int256 realisedPnl,
        int256 newSize
    );
    event FundingSettled(address indexed account, uint32 indexed marketId, int256 amount);
    event AccountStateChanged(
        address indexed account,
        AccountState previous,
        AccountState current,
        int256 accountValue,
        uint256 imr,
        uint256 mmr
    );
    event MarginCall(address indexed account, int256 accountValue, uint256 imr, uint256 mmr);
    event Liquidated(
        address indexed account,
        uint32 indexed marketId,
        address indexed liquidator,
        int256 closedSize,
        uint256 price,
        uint256 penalty,
        uint256 reward
    );
    event BadDebt(address indexed account, uint256 coveredByInsurance, uint256 uncovered);

    /// @notice Which rule a market's (or the liquidation rewards') parameters break.
    enum ParamFault {
        /// The market id is not below MAX_MARKETS.
        MarketIdTooLarge,
        /// Not 0 < MMF < IMF <= 1.
        MarginFractions,
        /// The liquidation penalty is not below the MMF (liquidating would not improve health).
        PenaltyNotBelowMmf,
        /// The taker fee is not below the MMF.
        FeeNotBelowMmf,
        /// The limit-price band is zero or above 100 %.
        LimitDeviation,
        /// The maximum position is zero.
        ZeroMaxPosition,
        /// The minimum liquidation reward is above the maximum.
        RewardBounds
    }

    /// @notice The market is not listed.
    error MarketNotListed(uint32 marketId);
    /// @notice Parameters an owner set break `fault`.
    error InvalidMarketParams(ParamFault fault);
    /// @notice A deposit, withdrawal or funding of zero.
    error ZeroAmount();
    /// @notice An order of size zero.
    error ZeroSize();
    /// @notice The oracle price is worse than the order's limit.
    error LimitPriceNotMet(uint256 oraclePrice, uint256 limitPrice);
    /// @notice The limit is further from the oracle price than the market's band allows.
    error LimitPriceOutsideBand(uint256 oraclePrice, uint256 limitPrice);
    /// @notice A reduce-only order would open or grow a position.
    error ReduceOnlyViolation(int256 position, int256 sizeDelta);
    /// @notice The position would exceed the market's maximum.
    error MaxPositionExceeded(int256 newSize, uint256 maxPosition);
    /// @notice After the order or withdrawal the account value would be below its initial margin.
    error InsufficientMargin(int256 accountValue, uint256 initialMargin);
    /// @notice A withdrawal above the collateral.
    error InsufficientCollateral(int256 collateral, uint256 amount);
    /// @notice The account is above its maintenance margin.
    error NotLiquidatable(int256 accountValue, uint256 maintenanceMargin);
    /// @notice The account has no position to liquidate in the market.
    error NoPosition(address account, uint32 marketId);
    /// @notice Orders fill at once: there is nothing resting to cancel.
    error OrderNotCancellable(uint256 orderId);
    /// @notice The funding rate is outside +/- MAX_FUNDING_RATE.
    error FundingRateTooHigh(int256 rate);
    /// @notice An account may not liquidate itself.
    error SelfLiquidation();

    /// @notice Why a pair of signed orders cannot be matched.
    enum FillFault {
        /// The two orders are in different markets.
        Market,
        /// Both orders buy or both sell.
        Side,
        /// Both orders are of one account.
        SelfTrade
    }

    /// @notice The caller may not settle fills.
    error NotSettler(address caller);
    /// @notice The two orders of a fill cannot be matched.
    error FillMismatch(FillFault fault);
    /// @notice The order expired (ms since the epoch) before the block (`nowMs`).
    error OrderExpired(bytes32 orderHash, uint64 expiry, uint256 nowMs);
    /// @notice The order's nonce is spent in its (account, key) bitmap: the order was cancelled or filled in full.
    error OrderNonceSpent(bytes32 orderHash);
    /// @notice The fill would take the order's filled size past its size.
    error OrderOverfilled(bytes32 orderHash, uint256 filled, uint256 size);
    /// @notice The order's account did not accept the fill.
    error OrderRefused(address account);
    /// @notice `settle` was entered again while it ran (an account's check called back into it).
    error SettleReentered();
    /// @notice Only the account or the key itself cancels the key's orders.
    error NotOrderOwner(address caller);

    /// @param initialOwner Lists markets and sets parameters.
    /// @param collateral_ The collateral token (6 decimals on devnets).
    /// @param oracle_ The signed-price oracle.
    constructor(address initialOwner, IERC20 collateral_, SignedPriceOracle oracle_) Ownable(initialOwner) {
        collateralToken = collateral_;
        oracle = oracle_;
        minLiquidationReward = 1e6;
        maxLiquidationReward = 1_000e6;
        isSettler[initialOwner] = true;
        emit SettlerSet(initialOwner, true);
    }

    /// @notice Lets `settler` settle signed-order fills, or stops it. Owner only.
    function setSettler(address settler, bool allowed) external onlyOwner {
        isSettler[settler] = allowed;
        emit SettlerSet(settler, allowed);
    }

    /*//////////////////////////////////////////////////////////////
                                 ADMIN
    //////////////////////////////////////////////////////////////*/

    /// @notice Lists a market or changes its parameters. Owner only.
    /// @param marketId 0..63.
    /// @param p Risk parameters; MMF < IMF, penalty < MMF (so liquidation always improves health).
    function listMarket(uint32 marketId, MarketParams calldata p) external onlyOwner {
        if (marketId >= MAX_MARKETS) revert InvalidMarketParams(ParamFault.MarketIdTooLarge);
        if (p.mmf == 0 || p.mmf >= p.imf || p.imf > WAD) revert InvalidMarketParams(ParamFault.MarginFractions);
        if (p.liquidationPenalty >= p.mmf) revert InvalidMarketParams(ParamFault.PenaltyNotBelowMmf);
        if (p.takerFee >= p.mmf) revert InvalidMarketParams(ParamFault.FeeNotBelowMmf);
        if (p.maxLimitDeviation == 0 || p.maxLimitDeviation > WAD) {
            revert InvalidMarketParams(ParamFault.LimitDeviation);
        }
        if (p.maxPosition == 0) revert InvalidMarketParams(ParamFault.ZeroMaxPosition);
        Market storage m = _markets[marketId];
        if (m.listed) _accrueFunding(marketId, m);
        m.listed = true;
        m.imf = p.imf;
        m.mmf = p.mmf;
        m.takerFee = p.takerFee;
        m.liquidationPenalty = p.liquidationPenalty;
        m.maxLimitDeviation = p.maxLimitDeviation;
        m.maxPosition = p.maxPosition;
        m.partialLiquidationNotional = p.partialLiquidationNotional;
        if (m.lastFundingTime == 0) m.lastFundingTime = uint64(block.timestamp);
        emit MarketListed(marketId, p);
    }

    /// @notice Sets a market's funding rate from the premium input. Owner only.
    /// @param marketId The market.
    /// @param ratePerSecond WAD per second; positive makes longs pay shorts. |rate| <= MAX_FUNDING_RATE.
    function setFundingRate(uint32 marketId, int256 ratePerSecond) external onlyOwner {
        Market storage m = _listed(marketId);
        if (ratePerSecond > MAX_FUNDING_RATE || ratePerSecond < -MAX_FUNDING_RATE) {
            revert FundingRateTooHigh(ratePerSecond);
        }
        _accrueFunding(marketId, m);
        m.fundingRate = int64(ratePerSecond);
        emit FundingRateSet(marketId, ratePerSecond);
    }

    /// @notice Sets the liquidator reward bounds (quote units). Owner only.
    function setLiquidationRewards(uint256 minReward, uint256 maxReward) external onlyOwner {
        if (minReward > maxReward) revert InvalidMarketParams(ParamFault.RewardBounds);
        minLiquidationReward = minReward;
        maxLiquidationReward = maxReward;
        emit LiquidationRewardsSet(minReward, maxReward);
    }

    /// @inheritdoc IPerpVenue
    function fundPool(uint256 amount) external {
        _pull(amount);
        pool += int256(amount);
        emit PoolFunded(msg.sender, amount);
    }

    /// @inheritdoc IPerpVenue
    function fundInsurance(uint256 amount) external {
        _pull(amount);
        insuranceFund += amount;
        emit InsuranceFunded(msg.sender, amount);
    }

    /*//////////////////////////////////////////////////////////////
                                TRADING
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IPerpVenue
    function depositMargin(uint256 amount) external {
        _pull(amount);
        collateralOf[msg.sender] += int256(amount);
        emit Deposited(msg.sender, amount);
        _evaluate(msg.sender);
    }

    /// @inheritdoc IPerpVenue
    function withdrawMargin(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        _settleAllFunding(msg.sender);
        int256 c = collateralOf[msg.sender];
        if (c < int256(amount)) revert InsufficientCollateral(c, amount);
        collateralOf[msg.sender] = c - int256(amount);
        _requireInitialMargin(msg.sender);
        totalWithdrawals += amount;
        collateralToken.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
        _evaluate(msg.sender);
    }

    /// @inheritdoc IPerpVenue
    function placeOrder(uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly)
        external
        returns (uint256 orderId, uint256 fillPrice)
    {
        if (sizeDelta == 0) revert ZeroSize();
        Market storage m = _listed(marketId);
        (fillPrice,) = oracle.freshPrice(marketId);
        _checkLimit(m, fillPrice, sizeDelta, limitPrice);
        (uint256 fee, int256 realised, int256 newSize) =
            _trade(msg.sender, marketId, m, sizeDelta, fillPrice, reduceOnly, m.takerFee);
        orderId = nextOrderId++;
        emit OrderFilled(msg.sender, marketId, orderId, sizeDelta, fillPrice, fee, realised, newSize);
        _evaluate(msg.sender);
    }

    /// @inheritdoc ISignedOrderVenue
    /// @dev Settler only, not re-entrant. All or none: a refused fill reverts the batch with its check's error.
    /// Three passes: every fill traded (no call leaves the venue but to the oracle, so each market's fresh price
    /// is read once and kept for the batch; funding accrues once a market; initial margin after each opening
    /// side), each traded account evaluated once; then each side's `checkOrderFill`; then each account's
    /// closing `checkOrderFill` (size zero) once, its post-execution limits reading the venue after all its fills.
    function settle(Fill[] calldata fills) external {
        if (!isSettler[msg.sender]) revert NotSettler(msg.sender);
        uint256 guard = SETTLE_GUARD_SLOT;
        uint256 entered;
        assembly ("memory-safe") {
            entered := tload(guard)
            tstore(guard, 1)
        }
        if (entered != 0) revert SettleReentered();
        bytes32 domain = SignedOrder.domainSeparator(address(this));
        uint256[] memory prices = new uint256[](MAX_MARKETS);
        address[] memory accounts = new address[](2 * fills.length);
        uint256 count;
        for (uint256 i; i < fills.length; ++i) {
            count = _tradeFill(fills[i], domain, prices, accounts, count);
        }
        for (uint256 j; j < count; ++j) {
            _evaluateAt(accounts[j], prices);
        }
        for (uint256 i; i < fills.length; ++i) {
            Fill calldata f = fills[i];
            uint256 price = f.maker.limitPrice;
            _askAccount(f.maker, f.makerSignature, f.size, price);
            _askAccount(f.taker, f.takerSignature, f.size, price);
        }
        for (uint256 j; j < count; ++j) {
            _closeBatch(accounts[j]);
            _markAccount(accounts[j], 0);
        }
        assembly ("memory-safe") {
            tstore(guard, 0)
        }
    }

    /// @inheritdoc ISignedOrderVenue
    function cancelOrders(address account, address key, uint256 wordIndex, uint256 mask) external {
        if (msg.sender != account && msg.sender != key) revert NotOrderOwner(msg.sender);
        cancelledOrders[account][key][wordIndex] |= mask;
        emit OrdersCancelled(account, key, wordIndex, mask);
    }

    /// @notice The id of `order` at this venue (its EIP-712 digest under the venue's domain).
    function orderHash(SignedOrder.Order calldata order) external view returns (bytes32) {
        return SignedOrder.orderHash(SignedOrder.domainSeparator(address(this)), order);
    }

    /// @notice This venue's EIP-712 domain separator (name "Keyscope PerpVenue", version "1").
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return SignedOrder.domainSeparator(address(this));
    }

    /// @inheritdoc IPerpVenue
    /// @dev Every order is fill-or-kill, so no order ever rests: this always reverts.
    function cancelOrder(uint32, uint256 orderId) external pure {
        revert OrderNotCancellable(orderId);
    }

    /// @notice Re-evaluates `account` (settling nothing), emitting a state change if its state moved.
    /// @param account The account to evaluate.
    /// @return state Its state now.
    function poke(address account) external returns (AccountState state) {
        return _evaluate(account);
    }

    /*//////////////////////////////////////////////////////////////
                               LIQUIDATION
    //////////////////////////////////////////////////////////////*/

    /// @notice Liquidates `account`'s position in `marketId` while its value is below maintenance.
    /// Positions with a notional above the market's threshold lose a quarter per call; smaller ones close
    /// fully. The fill is at the oracle price, and the account pays a penalty (liquidation penalty x closed
    /// notional) — the same as filling at the oracle price moved against the position by the penalty. The
    /// caller gets a reward of the penalty clamped to [min, max] reward (the minimum makes dust worth
    /// liquidating) and the insurance fund the rest; the account never pays more than its collateral or its
    /// account value (an account below zero pays nothing; the fund tops up the reward). A
    /// negative collateral left with no positions open is covered by the insurance fund, then recorded as
    /// bad debt.
    /// @param account The account to liquidate.
    /// @param marketId The position to close.
    function liquidate(address account, uint32 marketId) external {
        if (account == msg.sender) revert SelfLiquidation();
        Market storage m = _listed(marketId);
        (uint256 price,) = oracle.freshPrice(marketId);
        (int256 av,, uint256 mmr) = _health(account, true);
        if (av >= int256(mmr)) revert NotLiquidatable(av, mmr);
        Position storage p = _positions[account][marketId];
        if (p.size == 0) revert NoPosition(account, marketId);

        _accrueFunding(marketId, m);
        _settleFunding(account, marketId, m);
        int256 closeSize = -p.size;
        if (PerpMath.notional(p.size, price) > m.partialLiquidationNotional) {
            closeSize = closeSize * int256(PARTIAL_LIQUIDATION_FRACTION) / int256(WAD);
            if (closeSize == 0) closeSize = -p.size;
        }
        _applyFill(account, marketId, p, closeSize, price, m.fundingIndex);

        uint256 penalty = PerpMath.requirement(PerpMath.notional(closeSize, price), m.liquidationPenalty);
        uint256 reward = FixedPointMathLib.clamp(penalty, minLiquidationReward, maxLiquidationReward);
        // The account pays the penalty (the minimum reward on dust) out of the collateral it has left; the
        // insurance fund tops up a reward the account cannot pay, so bankrupt accounts still get closed.
        // Self-liquidation from a second address gains nothing: opening needs IMR + minLiquidationReward,
        // and a top-up never exceeds max(penalty, min reward), which is less than that.
        int256 left = collateralOf[account];
        // What the account can pay is its collateral, but never more than its account value (unchanged by a
        // fill at the oracle price): collateral an account below zero still holds is claimed by the losses on
        // its open positions, so it pays no penalty and the insurance fund does not profit from a bankruptcy.
        int256 payable_ = left < av ? left : av;
        uint256 charge =
            FixedPointMathLib.min(FixedPointMathLib.max(penalty, reward), payable_ > 0 ? uint256(payable_) : 0);
        collateralOf[account] = left - int256(charge);
        if (charge >= reward) {
            insuranceFund += charge - reward;
        } else {
            uint256 topUp = FixedPointMathLib.min(reward - charge, insuranceFund);
            insuranceFund -= topUp;
            reward = charge + topUp;
        }
        collateralOf[msg.sender] += int256(reward);
        emit Liquidated(account, marketId, msg.sender, closeSize, price, charge, reward);

        if (openMarkets[account] == 0) _absorbBadDebt(account);
        _evaluate(account);
        _evaluate(msg.sender);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @notice A market's parameters and funding state.
    function market(uint32 marketId) external view returns (Market memory) {
        return _markets[marketId];
    }

    /// @notice `account`'s position in `marketId`.
    function position(address account, uint32 marketId) external view returns (Position memory) {
        return _positions[account][marketId];
    }

    /// @notice Account value, requirements and state of `account` at the last oracle prices.
    function health(address account)
        external
        view
        returns (int256 accountValue, uint256 initialMargin, uint256 maintenanceMargin, AccountState state)
    {
        (accountValue, initialMargin, maintenanceMargin) = _health(account, false);
        state = _stateOf(accountValue, initialMargin, maintenanceMargin);
    }

    /// @inheritdoc IPerpVenue
    function accountRisk(address account)
        external
        view
        returns (int256 accountValue, uint256 maintenanceMargin, uint256 grossNotional, uint256 largestPositionNotional)
    {
        accountValue = collateralOf[account];
        uint64 open = openMarkets[account];
        for (uint32 id; open != 0; ++id) {
            if (open & 1 != 0) {
                Market storage m = _markets[id];
                (uint256 price,) = oracle.lastPrice(id);
                Position storage p = _positions[account][id];
                uint256 n = PerpMath.notional(p.size, price);
                accountValue += PerpMath.pnl(p.size, p.entryPrice, price)
                - PerpMath.fundingOwed(p.size, _currentIndex(m, price), p.fundingIndex);
                maintenanceMargin += PerpMath.requirement(n, m.mmf);
                grossNotional += n;
                if (n > largestPositionNotional) largestPositionNotional = n;
            }
            open >>= 1;
        }
    }

    /// @notice The whole portfolio of `account`: collateral, value, requirements, state and positions.
    function portfolio(address account) external view returns (Portfolio memory pf) {
        pf.collateral = collateralOf[account];
        (pf.accountValue, pf.initialMargin, pf.maintenanceMargin) = _health(account, false);
        pf.state = _stateOf(pf.accountValue, pf.initialMargin, pf.maintenanceMargin);
        uint64 open = openMarkets[account];
        pf.positions = new PositionView[](_popCount(open));
        uint256 k;
        for (uint32 id; open != 0; ++id) {
            if (open & 1 != 0) {
                Position storage p = _positions[account][id];
                (uint256 price,) = oracle.lastPrice(id);
                int256 index = _currentIndex(_markets[id], price);
                pf.positions[k++] = PositionView({
                    marketId: id,
                    size: p.size,
                    entryPrice: p.entryPrice,
                    markPrice: price,
                    notional: PerpMath.notional(p.size, price),
                    unrealisedPnl: PerpMath.pnl(p.size, p.entryPrice, price),
                    fundingOwed: PerpMath.fundingOwed(p.size, index, p.fundingIndex)
                });
            }
            open >>= 1;
        }
    }

    /*//////////////////////////////////////////////////////////////
                               INTERNALS
    //////////////////////////////////////////////////////////////*/

    function _listed(uint32 marketId) internal view returns (Market storage m) {
        m = _markets[marketId];
        if (!m.listed) revert MarketNotListed(marketId);
    }

    function _pull(uint256 amount) internal {
        if (amount == 0) revert ZeroAmount();
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
        totalDeposits += amount;
    }

    /// @dev Fills only at the oracle price within the limit, and only for limits inside the price band.
    function _checkLimit(Market storage m, uint256 price, int256 sizeDelta, uint256 limitPrice) internal view {
        if (sizeDelta > 0 ? price > limitPrice : price < limitPrice) revert LimitPriceNotMet(price, limitPrice);
        _checkBand(m, price, limitPrice);
    }

    /// @dev `limitPrice` within the market's band around the oracle price `price`.
    function _checkBand(Market storage m, uint256 price, uint256 limitPrice) internal view {
        uint256 deviation = limitPrice > price ? limitPrice - price : price - limitPrice;
        if (deviation * WAD > uint256(m.maxLimitDeviation) * price) revert LimitPriceOutsideBand(price, limitPrice);
    }

    /// @dev Moves `account`'s position in `marketId` by `sizeDelta` at `price`, charging `feeRate` of the
    /// notional: reduce-only and position caps first, funding settled, and initial margin required afterwards
    /// unless the trade only reduces. The venue's one trade path (`placeOrder` and both sides of a fill).
    function _trade(
        address account,
        uint32 marketId,
        Market storage m,
        int256 sizeDelta,
        uint256 price,
        bool reduceOnly,
        uint256 feeRate
    ) internal returns (uint256 fee, int256 realised, int256 newSize) {
        Position storage p = _positions[account][marketId];
        bool reduces;
        {
            int256 oldSize = p.size;
            newSize = oldSize + sizeDelta;
            reduces = (oldSize > 0 && sizeDelta < 0 && newSize >= 0) || (oldSize < 0 && sizeDelta > 0 && newSize <= 0);
            if (reduceOnly && !reduces) revert ReduceOnlyViolation(oldSize, sizeDelta);
            if (!reduces && FixedPointMathLib.abs(newSize) > m.maxPosition) {
                revert MaxPositionExceeded(newSize, m.maxPosition);
            }
        }

        _accrueFunding(marketId, m);
        _settleFunding(account, marketId, m);
        fee = PerpMath.requirement(PerpMath.notional(sizeDelta, price), feeRate);
        if (fee != 0) {
            collateralOf[account] -= int256(fee);
            feesCollected += fee;
        }
        realised = _applyFill(account, marketId, p, sizeDelta, price, m.fundingIndex);
        newSize = p.size;

        if (!reduces) _requireInitialMargin(account);
    }

    /// @dev One fill's trades: the pair matched, each order open for `size` more, both sides traded at the
    /// maker's limit (inside the band around the market's fresh price), each side's account added to
    /// `accounts[:count]` once. Returns the new count.
    function _tradeFill(
        Fill calldata f,
        bytes32 domain,
        uint256[] memory prices,
        address[] memory accounts,
        uint256 count
    ) internal returns (uint256) {
        Market storage m = _matchFill(f, prices);
        uint256 size = f.size;
        uint256 price = f.maker.limitPrice;
        _fillSide(f.maker, _take(domain, f.maker, size), m, size, price, 0, prices);
        _fillSide(f.taker, _take(domain, f.taker, size), m, size, price, m.takerFee, prices);
        count = _addAccount(f.maker.account, accounts, count);
        return _addAccount(f.taker.account, accounts, count);
    }

    /// @dev The pair of `f` matched (one market, opposite sides, two accounts, a size), the maker's limit inside
    /// the band around the market's fresh price, and the market's funding accrued (once a batch: the block time
    /// does not move, so accruing again would change nothing). Returns the market.
    function _matchFill(Fill calldata f, uint256[] memory prices) internal returns (Market storage m) {
        SignedOrder.Order calldata maker = f.maker;
        SignedOrder.Order calldata taker = f.taker;
        uint32 marketId = maker.marketId;
        if (taker.marketId != marketId) revert FillMismatch(FillFault.Market);
        if (taker.isBuy == maker.isBuy) revert FillMismatch(FillFault.Side);
        if (taker.account == maker.account) revert FillMismatch(FillFault.SelfTrade);
        if (f.size == 0) revert ZeroSize();
        m = _listed(marketId);
        uint256 oraclePrice = _freshPrice(marketId, prices);
        _checkBand(m, oraclePrice, maker.limitPrice);
        if (m.lastFundingTime != block.timestamp) {
            m.fundingIndex = _currentIndex(m, oraclePrice);
            m.lastFundingTime = uint64(block.timestamp);
        }
    }

    /// @dev `account` into `accounts[:count]` unless a transient mark says it is there already.
    function _addAccount(address account, address[] memory accounts, uint256 count) internal returns (uint256) {
        uint256 slot = _accountMarkSlot(account);
        uint256 marked;
        assembly ("memory-safe") {
            marked := tload(slot)
        }
        if (marked != 0) return count;
        _markAccount(account, 1);
        accounts[count] = account;
        return count + 1;
    }

    /// @dev The transient slot marking `account` as traded in the batch being settled.
    function _accountMarkSlot(address account) internal pure returns (uint256 slot) {
        uint256 base = SETTLE_GUARD_SLOT;
        assembly ("memory-safe") {
            mstore(0x00, account)
            mstore(0x20, base)
            slot := keccak256(0x00, 0x40)
        }
    }

    function _markAccount(address account, uint256 value) internal {
        uint256 slot = _accountMarkSlot(account);
        assembly ("memory-safe") {
            tstore(slot, value)
        }
    }

    /// @dev `marketId`'s fresh price, read from the oracle once per batch (`prices`, zero until read). Only
    /// fresh prices are kept, so a kept price never skips the freshness check.
    function _freshPrice(uint32 marketId, uint256[] memory prices) internal view returns (uint256 price) {
        price = prices[marketId];
        if (price == 0) {
            (price,) = oracle.freshPrice(marketId);
            prices[marketId] = price;
        }
    }

    /// @dev `size` more of order `o`: not expired, nonce not spent, never past its size. Returns its hash. An
    /// order filled in full spends its nonce (a bitmap word a key's consecutive orders share, so mostly one
    /// warm write) rather than keeping a fresh 20k-gas `filledOf` slot; only partial fills keep one, and mark
    /// their nonce in `_partlyFilled`, so an order never partly filled costs no cold `filledOf` read.
    function _take(bytes32 domain, SignedOrder.Order calldata o, uint256 size) internal returns (bytes32 h) {
        h = SignedOrder.orderHash(domain, o);
        if (uint256(o.expiry) < block.timestamp * 1000) revert OrderExpired(h, o.expiry, block.timestamp * 1000);
        uint64 nonce = o.nonce;
        mapping(uint256 => uint256) storage spent = cancelledOrders[o.account][o.key];
        uint256 word = spent[nonce >> 8];
        uint256 bit = uint256(1) << (nonce & 255);
        if (word & bit != 0) revert OrderNonceSpent(h);
        mapping(uint256 => uint256) storage partly = _partlyFilled[o.account][o.key];
        uint256 partWord = partly[nonce >> 8];
        uint256 before = partWord & bit != 0 ? filledOf[h] : 0;
        uint256 filled = before + size;
        if (filled > o.size) revert OrderOverfilled(h, filled, o.size);
        if (filled == o.size) {
            spent[nonce >> 8] = word | bit;
            if (before != 0) filledOf[h] = 0;
        } else {
            filledOf[h] = filled;
            if (partWord & bit == 0) partly[nonce >> 8] = partWord | bit;
        }
    }

    /// @dev One side of a fill: `_trade`'s steps with the batch's kept prices (the market's funding is already
    /// accrued): caps, funding, fee, position, and initial margin after an opening side.
    function _fillSide(
        SignedOrder.Order calldata o,
        bytes32 h,
        Market storage m,
        uint256 size,
        uint256 price,
        uint256 feeRate,
        uint256[] memory prices
    ) internal {
        (uint256 fee, int256 realised, bool reduces) = _tradeSide(o, m, size, price, feeRate);
        if (!reduces) _requireInitialMarginAt(o.account, prices);
        _emitFill(o, h, size, price, fee, realised);
    }

    /// @dev `_trade` without funding accrual and initial margin: caps, funding settled, fee, position moved.
    function _tradeSide(SignedOrder.Order calldata o, Market storage m, uint256 size, uint256 price, uint256 feeRate)
        internal
        returns (uint256 fee, int256 realised, bool reduces)
    {
        address account = o.account;
        int256 sizeDelta = o.isBuy ? int256(size) : -int256(size);
        Position storage p = _positions[account][o.marketId];
        reduces = _checkCaps(m, p.size, sizeDelta, o.reduceOnly);
        // Equal indexes: no funding owed and nothing to store (the position's index is the market's already).
        if (p.fundingIndex != m.fundingIndex) _settleFunding(account, o.marketId, m);
        fee = PerpMath.requirement(PerpMath.notional(sizeDelta, price), feeRate);
        if (fee != 0) {
            collateralOf[account] -= int256(fee);
            feesCollected += fee;
        }
        realised = _applyFill(account, o.marketId, p, sizeDelta, price, m.fundingIndex);
    }

    /// @dev `_requireInitialMargin` at the batch's kept fresh prices.
    function _requireInitialMarginAt(address account, uint256[] memory prices) internal view {
        (int256 av, uint256 imr,) = _healthAt(account, prices, true);
        uint256 required = openMarkets[account] == 0 ? imr : imr + minLiquidationReward;
        if (av < int256(required)) revert InsufficientMargin(av, required);
    }

    /// @dev The `SignedOrderFilled` event of one side.
    function _emitFill(
        SignedOrder.Order calldata o,
        bytes32 h,
        uint256 size,
        uint256 price,
        uint256 fee,
        int256 realised
    ) internal {
        int256 newSize = _positions[o.account][o.marketId].size;
        emit SignedOrderFilled(
            h, o.account, o.marketId, o.isBuy ? int256(size) : -int256(size), price, fee, realised, newSize
        );
    }

    /// @dev The order's account checks the signature and spends its key's scope for the fill: its
    /// `checkOrderFill(o, signature, size, price)`, encoded by hand (the order's 12 words copied as they lie —
    /// `_take` has already refused any that is not clean), its revert passed on, any answer but the magic value
    /// refused.
    function _askAccount(SignedOrder.Order calldata o, bytes calldata signature, uint256 size, uint256 price) internal {
        uint256 m;
        uint256 len;
        assembly ("memory-safe") {
            m := mload(0x40)
            calldatacopy(add(m, 0x04), o, 0x180)
            // Head: the order (12 words), the signature's offset, size, price; then the signature, zero-padded.
            mstore(add(m, 0x184), 0x1e0)
            mstore(add(m, 0x1a4), size)
            mstore(add(m, 0x1c4), price)
            mstore(add(m, 0x1e4), signature.length)
            calldatacopy(add(m, 0x204), signature.offset, signature.length)
            mstore(add(add(m, 0x204), signature.length), 0)
            len := add(0x204, and(add(signature.length, 31), not(31)))
        }
        _callAccount(o.account, m, len);
    }

    /// @dev Closes the batch at `account`: `checkOrderFill` with no fill (an order naming only the account, an
    /// empty signature, size and price zero), which applies the post-execution limits of the keys whose fills it
    /// checked.
    function _closeBatch(address account) internal {
        uint256 m;
        assembly ("memory-safe") {
            m := mload(0x40)
            mstore(add(m, 0x04), account)
            // The order's other 11 words, size, price and the signature's length are zero; its offset is 0x1e0.
            calldatacopy(add(m, 0x24), calldatasize(), 0x1e0)
            mstore(add(m, 0x184), 0x1e0)
        }
        _callAccount(account, m, 0x204);
    }

    /// @dev Calls `account` with `checkOrderFill` arguments encoded at `m + 4` (`len` bytes with the selector, which
    /// this writes at `m`): its revert passed on, any answer but the magic value refused.
    function _callAccount(address account, uint256 m, uint256 len) internal {
        bytes4 magic = IOrderAccount.checkOrderFill.selector;
        bool accepted;
        assembly ("memory-safe") {
            mstore(m, or(shr(32, shl(32, mload(m))), magic))
            if iszero(call(gas(), account, 0, m, len, 0x00, 0x20)) {
                returndatacopy(m, 0, returndatasize())
                revert(m, returndatasize())
            }
            accepted := and(gt(returndatasize(), 31), eq(shr(224, mload(0x00)), shr(224, magic)))
        }
        if (!accepted) revert OrderRefused(account);
    }

    /// @dev Reduce-only and the market's position cap for moving a position of `oldSize` by `sizeDelta`. Returns
    /// whether the move only reduces (then neither applies, nor does initial margin).
    function _checkCaps(Market storage m, int256 oldSize, int256 sizeDelta, bool reduceOnly)
        internal
        view
        returns (bool reduces)
    {
        int256 newSize = oldSize + sizeDelta;
        reduces = (oldSize > 0 && sizeDelta < 0 && newSize >= 0) || (oldSize < 0 && sizeDelta > 0 && newSize <= 0);
        if (reduceOnly && !reduces) revert ReduceOnlyViolation(oldSize, sizeDelta);
        if (!reduces && FixedPointMathLib.abs(newSize) > m.maxPosition) {
            revert MaxPositionExceeded(newSize, m.maxPosition);
        }
    }

    /// @dev Moves `p` by `delta` at `price`: realised PnL flows between the account and the pool.
    function _applyFill(address account, uint32 marketId, Position storage p, int256 delta, uint256 price, int256 index)
        internal
        returns (int256 realised)
    {
        int256 size = p.size;
        int256 newSize = size + delta;
        if (size == 0 || (size > 0) == (delta > 0)) {
            p.entryPrice = size == 0 ? price : PerpMath.averageEntry(size, p.entryPrice, delta, price);
        } else {
            // Reduce (and maybe flip): the closed part realises PnL against the entry price.
            int256 closed = FixedPointMathLib.abs(delta) > FixedPointMathLib.abs(size) ? -size : delta;
            realised = PerpMath.pnl(-closed, p.entryPrice, price);
            collateralOf[account] += realised;
            pool -= realised;
            if (newSize != 0 && (newSize > 0) != (size > 0)) p.entryPrice = price;
        }
        p.size = newSize;
        p.fundingIndex = index;
        if (newSize == 0) {
            p.entryPrice = 0;
            openMarkets[account] &= ~uint64(1 << marketId);
        } else {
            openMarkets[account] |= uint64(1 << marketId);
        }
    }

    function _accrueFunding(uint32 marketId, Market storage m) internal {
        (uint256 price,) = oracle.lastPrice(marketId);
        m.fundingIndex = _currentIndex(m, price);
        m.lastFundingTime = uint64(block.timestamp);
    }

    function _currentIndex(Market storage m, uint256 price) internal view returns (int256) {
        uint256 dt = block.timestamp - m.lastFundingTime;
        return m.fundingIndex + PerpMath.fundingIndexDelta(m.fundingRate, price, dt);
    }

    /// @dev Pays `account`'s funding in `marketId` since its last touch: account <-> pool.
    function _settleFunding(address account, uint32 marketId, Market storage m) internal {
        Position storage p = _positions[account][marketId];
        if (p.size != 0) {
            int256 owed = PerpMath.fundingOwed(p.size, m.fundingIndex, p.fundingIndex);
            collateralOf[account] -= owed;
            pool += owed;
            if (owed != 0) emit FundingSettled(account, marketId, owed);
        }
        p.fundingIndex = m.fundingIndex;
    }

    function _settleAllFunding(address account) internal {
        uint64 open = openMarkets[account];
        for (uint32 id; open != 0; ++id) {
            if (open & 1 != 0) {
                Market storage m = _markets[id];
                _accrueFunding(id, m);
                _settleFunding(account, id, m);
            }
            open >>= 1;
        }
    }

    /// @dev AV, IMR and MMR. `requireFresh` makes a stale price revert (trading, withdrawing, liquidating);
    /// views use the last price whatever its age.
    function _health(address account, bool requireFresh) internal view returns (int256 av, uint256 imr, uint256 mmr) {
        av = collateralOf[account];
        uint64 open = openMarkets[account];
        for (uint32 id; open != 0; ++id) {
            if (open & 1 != 0) {
                Market storage m = _markets[id];
                uint256 price;
                if (requireFresh) (price,) = oracle.freshPrice(id);
                else (price,) = oracle.lastPrice(id);
                Position storage p = _positions[account][id];
                uint256 n = PerpMath.notional(p.size, price);
                av += PerpMath.pnl(p.size, p.entryPrice, price)
                - PerpMath.fundingOwed(p.size, _currentIndex(m, price), p.fundingIndex);
                imr += PerpMath.requirement(n, m.imf);
                mmr += PerpMath.requirement(n, m.mmf);
            }
            open >>= 1;
        }
    }

    /// @dev `_health` in a settlement, with the batch's kept prices (`_freshPrice`): `requireFresh` reads a market
    /// not yet kept fresh from the oracle and keeps it; otherwise a market not kept is read at its last price.
    /// `_health` itself stays as it is for the other paths (their gas unchanged).
    function _healthAt(address account, uint256[] memory prices, bool requireFresh)
        internal
        view
        returns (int256 av, uint256 imr, uint256 mmr)
    {
        av = collateralOf[account];
        uint64 open = openMarkets[account];
        for (uint32 id; open != 0; ++id) {
            if (open & 1 != 0) {
                Market storage m = _markets[id];
                uint256 price = prices[id];
                if (requireFresh) price = _freshPrice(id, prices);
                else if (price == 0) (price,) = oracle.lastPrice(id);
                Position storage p = _positions[account][id];
                uint256 n = PerpMath.notional(p.size, price);
                // A market accrued in this block has its current index stored.
                int256 index = m.lastFundingTime == block.timestamp ? m.fundingIndex : _currentIndex(m, price);
                av += PerpMath.pnl(p.size, p.entryPrice, price) - PerpMath.fundingOwed(p.size, index, p.fundingIndex);
                imr += PerpMath.requirement(n, m.imf);
                mmr += PerpMath.requirement(n, m.mmf);
            }
            open >>= 1;
        }
    }

    /// @dev `_evaluate` after a settlement's trades, at the batch's kept prices: once per traded account.
    function _evaluateAt(address account, uint256[] memory prices) internal {
        (int256 av, uint256 imr, uint256 mmr) = _healthAt(account, prices, false);
        AccountState state = _stateOf(av, imr, mmr);
        AccountState previous = lastState[account];
        if (state != previous) {
            lastState[account] = state;
            emit AccountStateChanged(account, previous, state, av, imr, mmr);
            if (state == AccountState.MarginCall) emit MarginCall(account, av, imr, mmr);
        }
    }

    /// @dev Opening and withdrawing: AV >= IMR, plus the minimum liquidation reward while positions are
    /// open (a reserve that pays whoever has to liquidate the account).
    function _requireInitialMargin(address account) internal view {
        (int256 av, uint256 imr,) = _health(account, true);
        uint256 required = openMarkets[account] == 0 ? imr : imr + minLiquidationReward;
        if (av < int256(required)) revert InsufficientMargin(av, required);
    }

    function _stateOf(int256 av, uint256 imr, uint256 mmr) internal pure returns (AccountState) {
        if (av < 0) return AccountState.Bankrupt;
        if (av < int256(mmr)) return AccountState.Liquidatable;
        if (av < int256(imr)) return AccountState.MarginCall;
        return AccountState.Healthy;
    }

    /// @dev Stores the account's state, with events when it changes (MarginCall once per crossing).
    function _evaluate(address account) internal returns (AccountState state) {
        (int256 av, uint256 imr, uint256 mmr) = _health(account, false);
        state = _stateOf(av, imr, mmr);
        AccountState previous = lastState[account];
        if (state != previous) {
            lastState[account] = state;
            emit AccountStateChanged(account, previous, state, av, imr, mmr);
            if (state == AccountState.MarginCall) emit MarginCall(account, av, imr, mmr);
        }
    }

    /// @dev An account with no positions and negative collateral: the insurance fund pays what it can to
    /// the pool, and the rest is recorded as bad debt.
    function _absorbBadDebt(address account) internal {
        int256 c = collateralOf[account];
        if (c >= 0) return;
        uint256 shortfall = uint256(-c);
        uint256 covered = FixedPointMathLib.min(shortfall, insuranceFund);
        insuranceFund -= covered;
        badDebt += shortfall - covered;
        collateralOf[account] = 0;
        // The pool already booked the account's losses; it receives only what insurance pays.
        pool -= int256(shortfall - covered);
        emit BadDebt(account, covered, shortfall - covered);
    }

    function _popCount(uint64 x) internal pure returns (uint256 n) {
        for (; x != 0; x &= x - 1) {
            ++n;
        }
    }
}
