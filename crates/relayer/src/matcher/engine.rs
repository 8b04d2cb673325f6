//! The matcher's synchronous state: a book per market, every live order with what is filled of it, the
//! margin its resting orders and unsettled fills hold, the fills waiting for settlement, and the scheduled
//! cancels. Every change returns the journal records that redo it and the events it publishes; the handle
//! ([`super::Matcher`]) writes the records before it answers, so what a client was told survives a kill.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy_primitives::{Address, B256, Bytes, U256};
use keyscope_core::order::{Order, TimeInForce};

use super::{
    book::{Book, BookError, Incoming, RemoveReason, Tif},
    events::{FillStatus, MatcherEvent, OrderStatus, OrderUpdate},
    journal::Record,
};

/// One side's share of margin: notional x initial margin fraction, in quote units (the collateral's 6
/// decimals, as the venue counts money: size and price carry 18 decimals each), rounded up as the venue
/// rounds requirements.
fn margin_of(size: u128, price: u128, imf: u64) -> U256 {
    let wad = U256::from(10u64).pow(U256::from(18));
    let notional = U256::from(size) * U256::from(price);
    (notional * U256::from(imf)).div_ceil(wad * wad * U256::from(10u64).pow(U256::from(12)))
}

/// An order the matcher acknowledged and has not forgotten.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub order: Order,
    pub signature: Bytes,
    pub hash: B256,
    /// Matched so far (settled or not).
    pub matched: u128,
    /// On the book now.
    pub resting: bool,
    /// Initial margin fraction of its market when placed (WAD).
    pub imf: u64,
    pub placed_ms: u64,
    /// Why it left the book before it filled in full, once it did.
    pub ended: Option<(OrderStatus, String)>,
}

impl Live {
    fn remaining(&self) -> u128 {
        self.order.size - self.matched
    }

    /// Where it stands now.
    pub(crate) fn status(&self) -> (OrderStatus, Option<String>) {
        if self.resting {
            return if self.matched > 0 {
                (OrderStatus::PartiallyFilled, None)
            } else {
                (OrderStatus::Resting, None)
            };
        }
        if self.matched == self.order.size {
            return (OrderStatus::Filled, None);
        }
        match &self.ended {
            Some((status, why)) => (*status, Some(why.clone())),
            None => (OrderStatus::Cancelled, None),
        }
    }

    /// Its update about fill `f`, now at `status`: the order's own state as [`Live::status`] derives it.
    fn fill_update(
        &self,
        f: &PendingFill,
        status: FillStatus,
        tx: Option<B256>,
        reason: Option<&str>,
    ) -> Box<OrderUpdate> {
        let mut up = self.update(self.status().0, reason.map(str::to_string));
        up.fill = Some(super::events::FillRef::new(
            f.id, f.size, f.price, status, tx,
        ));
        up
    }

    fn update(&self, status: OrderStatus, reason: Option<String>) -> Box<OrderUpdate> {
        Box::new(OrderUpdate {
            account: self.order.account,
            key: self.order.key,
            order_hash: self.hash,
            market_id: self.order.marketId,
            is_buy: self.order.isBuy,
            status,
            filled: U256::from(self.matched),
            remaining: U256::from(if self.resting { self.remaining() } else { 0 }),
            reason,
            fill: None,
        })
    }
}

/// A matched fill waiting for (or in) settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingFill {
    pub id: u64,
    pub maker: B256,
    pub taker: B256,
    pub size: u128,
    pub price: u128,
    /// The settlement batch it went out in, if any.
    pub batch: Option<u64>,
}

/// What a place did, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Ack {
    pub order_hash: B256,
    pub status: OrderStatus,
    /// Matched at once (as taker).
    pub filled: U256,
    /// Left resting on the book.
    pub resting: U256,
    /// Fills made, by id: settled on chain by the settlement loop.
    pub fills: Vec<u64>,
    /// Arrival sequence number (time priority).
    pub sequence: u64,
}

/// Why the engine refuses an order or a cancel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("order {0} was already placed with this matcher (an order hash is placed once)")]
    Duplicate(B256),
    #[error(
        "nonce {0} is taken by another order of this key: each order needs its own nonce (the venue spends \
         it when the order fills in full or is cancelled on chain)"
    )]
    NonceUsed(u64),
    #[error("post-only order would take liquidity resting on the book")]
    WouldTake,
    #[error("order expired before it reached the book")]
    Expired,
    #[error("order size would overflow its price level")]
    Overflow,
    #[error(
        "margin: the order needs {needed} of initial margin and the account has {free} free (account value \
         less the margin of its positions, resting orders and unsettled fills)"
    )]
    Margin { needed: U256, free: U256 },
    #[error("order {0} is not resting on this matcher")]
    NotResting(B256),
    #[error("order {hash} is {owner}'s, not key {key}'s")]
    NotYours {
        hash: B256,
        owner: Address,
        key: Address,
    },
    #[error("a replacement must keep account, key, market and side of the order it replaces")]
    ReplaceMismatch,
}

/// The engine's answer to a change: journal records first, then events.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub records: Vec<Record>,
    pub events: Vec<MatcherEvent>,
}

/// The state, owned by the handle's lock.
#[derive(Default)]
pub(crate) struct Engine {
    books: HashMap<u32, Book>,
    orders: HashMap<B256, Live>,
    /// Resting orders per (account, key).
    by_key: HashMap<(Address, Address), HashSet<B256>>,
    /// Margin held by each account's resting orders and unsettled fills.
    held: HashMap<Address, U256>,
    pub(crate) fills: BTreeMap<u64, PendingFill>,
    next_fill: u64,
    next_seq: u64,
    /// When each key's resting orders are cancelled unless moved (scheduled cancel-all).
    schedules: HashMap<(Address, Address), u64>,
    /// Every order hash ever placed (a hash is placed once).
    seen: HashSet<B256>,
    /// Orders that left the matcher, last [`RECENT`] of them, for `keyscope_getOrder` to answer with their end.
    recent: HashMap<B256, Live>,
    recent_order: std::collections::VecDeque<B256>,
    /// Every (account, key, nonce) ever placed: the venue spends an order's nonce when it fills in full, so
    /// a second order on the same nonce could never settle after the first.
    nonces: HashSet<(Address, Address, u64)>,
}

/// How many finished orders the matcher remembers for lookups.
pub(crate) const RECENT: usize = 10_000;

/// The book-side time-in-force of an order.
fn tif(order: &Order) -> Tif {
    match TimeInForce::try_from(order.timeInForce) {
        Ok(TimeInForce::Ioc) => Tif::Ioc,
        Ok(TimeInForce::PostOnly) => Tif::PostOnly,
        _ => Tif::Gtt,
    }
}

impl Engine {
    /// Margin `account` holds at the matcher.
    pub(crate) fn held(&self, account: Address) -> U256 {
        self.held.get(&account).copied().unwrap_or_default()
    }

    /// The margin a new order of `size` at `price` would hold (zero for reduce-only: it lowers risk).
    pub(crate) fn needs(order: &Order, imf: u64) -> U256 {
        if order.reduceOnly {
            U256::ZERO
        } else {
            margin_of(order.size, order.limitPrice, imf)
        }
    }

    fn hold(&mut self, account: Address, amount: U256) {
        *self.held.entry(account).or_default() += amount;
    }

    fn release(&mut self, account: Address, amount: U256) {
        let h = self.held.entry(account).or_default();
        *h = h.saturating_sub(amount);
    }

    /// A live order.
    pub(crate) fn order(&self, hash: &B256) -> Option<&Live> {
        self.orders.get(hash)
    }

    /// A live order, or one of the last [`RECENT`] that finished.
    pub(crate) fn lookup(&self, hash: &B256) -> Option<&Live> {
        self.orders.get(hash).or_else(|| self.recent.get(hash))
    }

    /// Keeps a finished order for lookups, forgetting the oldest past [`RECENT`].
    fn retire(&mut self, live: Live) {
        if self.recent_order.len() >= RECENT {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
        self.recent_order.push_back(live.hash);
        self.recent.insert(live.hash, live);
    }

    /// The resting orders of (account, key).
    pub(crate) fn resting_of(&self, account: Address, key: Address) -> Vec<B256> {
        self.by_key
            .get(&(account, key))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every (account, key) with resting orders.
    pub(crate) fn resting_keys(&self) -> Vec<(Address, Address)> {
        self.by_key
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, _)| *k)
            .collect()
    }

    /// The book of `market`, if any order reached it.
    pub(crate) fn book(&self, market: u32) -> Option<&Book> {
        self.books.get(&market)
    }

    /// Places a checked, signed order: matches it against the book at the makers' prices, rests what is
    /// left (GTT, post-only), and holds its margin. `free`: margin the account has free on chain now
    /// (account value less its positions' initial margin), checked against what the matcher already holds.
    pub(crate) fn place(
        &mut self,
        order: Order,
        signature: Bytes,
        hash: B256,
        imf: u64,
        free: U256,
        now_ms: u64,
    ) -> Result<(Ack, Changes), EngineError> {
        if self.seen.contains(&hash) {
            return Err(EngineError::Duplicate(hash));
        }
        let nonce = (order.account, order.key, order.nonce);
        if self.nonces.contains(&nonce) {
            return Err(EngineError::NonceUsed(order.nonce));
        }
        let needed = Self::needs(&order, imf);
        let available = free.saturating_sub(self.held(order.account));
        if needed > available {
            return Err(EngineError::Margin {
                needed,
                free: available,
            });
        }
        let market = order.marketId;
        let incoming = Incoming {
            id: hash,
            account: order.account,
            key: order.key,
            is_buy: order.isBuy,
            price: order.limitPrice,
            size: order.size,
            tif: tif(&order),
            expiry_ms: order.expiry,
        };
        let book = self.books.entry(market).or_default();
        let placed = book.place(incoming, now_ms).map_err(|e| match e {
            BookError::WouldTake => EngineError::WouldTake,
            BookError::Duplicate(h) => EngineError::Duplicate(h),
            BookError::Expired | BookError::ZeroSize => EngineError::Expired,
            BookError::Overflow => EngineError::Overflow,
        })?;
        self.seen.insert(hash);
        self.nonces.insert(nonce);
        let sequence = self.next_seq;
        self.next_seq += 1;
        let mut changes = Changes::default();
        changes.records.push(Record::Placed {
            hash,
            order: (&order).into(),
            signature: signature.clone(),
            at_ms: now_ms,
            imf,
        });
        let mut live = Live {
            order,
            signature,
            hash,
            matched: 0,
            resting: false,
            imf,
            placed_ms: now_ms,
            ended: None,
        };
        self.hold(live.order.account, needed);
        let mut fills = Vec::new();
        for m in &placed.matches {
            let id = self.next_fill;
            self.next_fill += 1;
            fills.push(id);
            live.matched += m.size;
            changes.records.push(Record::Matched {
                id,
                maker: m.maker,
                taker: hash,
                size: U256::from(m.size),
                price: U256::from(m.price),
            });
            self.apply_match(
                id,
                m.maker,
                hash,
                m.size,
                m.price,
                &mut changes,
                Some(&live),
            );
        }
        for (gone, reason) in &placed.removed_makers {
            if *reason == RemoveReason::Filled {
                // Taken care of with its match.
                continue;
            }
            self.off_book(gone.id, reason_text(*reason), &mut changes, false);
        }
        live.resting = placed.rested > 0;
        let status = if live.resting {
            if live.matched > 0 {
                OrderStatus::PartiallyFilled
            } else {
                OrderStatus::Resting
            }
        } else if live.matched == live.order.size {
            OrderStatus::Filled
        } else {
            OrderStatus::Cancelled
        };
        // The taker holds margin for what rests and what it matched (unsettled); the rest is released.
        let unused = live.order.size - live.matched - placed.rested;
        if unused > 0 && !live.order.reduceOnly {
            self.release(
                live.order.account,
                margin_of(unused, live.order.limitPrice, imf),
            );
        }
        if !live.resting {
            let why = (status == OrderStatus::Cancelled).then(|| {
                if placed.dropped > 0 && live.matched + placed.dropped == live.order.size {
                    "immediate-or-cancel: the rest did not match".to_string()
                } else {
                    "self-trade prevention".to_string()
                }
            });
            live.ended = why.clone().map(|w| (status, w));
            changes.records.push(Record::OffBook {
                hash,
                reason: why.clone().unwrap_or_else(|| "filled".into()),
            });
            changes
                .events
                .push(MatcherEvent::Order(live.update(status, why)));
        } else {
            self.by_key
                .entry((live.order.account, live.order.key))
                .or_default()
                .insert(hash);
            changes
                .events
                .push(MatcherEvent::Order(live.update(status, None)));
        }
        changes
            .events
            .extend(self.level_events(market, &placed_levels(&live, &placed)));
        let ack = Ack {
            order_hash: hash,
            status,
            filled: U256::from(live.matched),
            resting: U256::from(placed.rested),
            fills,
            sequence,
        };
        if live.resting || !ack.fills.is_empty() {
            self.orders.insert(hash, live);
        } else {
            self.retire(live);
        }
        Ok((ack, changes))
    }

    /// Records a match between a resting maker and a taker: the maker's fill, a trade, a pending fill.
    #[allow(clippy::too_many_arguments)]
    fn apply_match(
        &mut self,
        id: u64,
        maker: B256,
        taker: B256,
        size: u128,
        price: u128,
        changes: &mut Changes,
        taker_live: Option<&Live>,
    ) {
        let market;
        let taker_is_buy;
        if let Some(m) = self.orders.get_mut(&maker) {
            m.matched += size;
            market = m.order.marketId;
            taker_is_buy = !m.order.isBuy;
            let done = m.remaining() == 0;
            if done {
                m.resting = false;
            }
            let mut up = m.update(
                if done {
                    OrderStatus::Filled
                } else {
                    OrderStatus::PartiallyFilled
                },
                None,
            );
            up.fill = Some(super::events::FillRef::new(
                id,
                size,
                price,
                FillStatus::Matched,
                None,
            ));
            changes.events.push(MatcherEvent::Order(up));
            if done {
                let (account, key) = (m.order.account, m.order.key);
                if let Some(s) = self.by_key.get_mut(&(account, key)) {
                    s.remove(&maker);
                }
                changes.records.push(Record::OffBook {
                    hash: maker,
                    reason: "filled".into(),
                });
            }
        } else {
            return;
        }
        if let Some(t) = taker_live {
            let mut up = t.update(OrderStatus::PartiallyFilled, None);
            up.filled = U256::from(t.matched);
            up.fill = Some(super::events::FillRef::new(
                id,
                size,
                price,
                FillStatus::Matched,
                None,
            ));
            changes.events.push(MatcherEvent::Order(up));
        }
        changes.events.push(MatcherEvent::Trade {
            market_id: market,
            fill_id: id,
            price: U256::from(price),
            size: U256::from(size),
            taker_is_buy,
        });
        self.fills.insert(
            id,
            PendingFill {
                id,
                maker,
                taker,
                size,
                price,
                batch: None,
            },
        );
    }

    /// Takes an order off the book (cancel, expiry, self-trade prevention, a key's state on chain),
    /// releasing the margin its unmatched rest held. `from_book`: it is still in the book and must be
    /// removed there too.
    fn off_book(&mut self, hash: B256, reason: &str, changes: &mut Changes, from_book: bool) {
        let Some(live) = self.orders.get_mut(&hash) else {
            return;
        };
        if !live.resting {
            return;
        }
        live.resting = false;
        let rest = live.remaining();
        let (account, key, market, is_buy, price, imf, reduce_only) = (
            live.order.account,
            live.order.key,
            live.order.marketId,
            live.order.isBuy,
            live.order.limitPrice,
            live.imf,
            live.order.reduceOnly,
        );
        let status = if reason == "expired" {
            OrderStatus::Expired
        } else {
            OrderStatus::Cancelled
        };
        changes.events.push(MatcherEvent::Order(
            live.update(status, Some(reason.into())),
        ));
        if from_book {
            if let Some(b) = self.books.get_mut(&market) {
                b.cancel(&hash);
            }
        }
        if let Some(s) = self.by_key.get_mut(&(account, key)) {
            s.remove(&hash);
        }
        if !reduce_only {
            self.release(account, margin_of(rest, price, imf));
        }
        changes.records.push(Record::OffBook {
            hash,
            reason: reason.into(),
        });
        changes
            .events
            .extend(self.level_events(market, &[(is_buy, price)]));
        if let Some(l) = self.orders.get_mut(&hash) {
            l.ended = Some((status, reason.to_string()));
        }
        // Nothing can change it any more unless a fill of it waits for settlement.
        if !self
            .fills
            .values()
            .any(|f| f.maker == hash || f.taker == hash)
        {
            if let Some(l) = self.orders.remove(&hash) {
                self.retire(l);
            }
        }
    }

    /// Gives `hash` back `size` of a fill the chain refused for the other side's fault, and rests it again
    /// (at the back of its price level) unless it is immediate-or-cancel, expired, was cancelled, or would now
    /// take (a crossing order arrived while it was off the book). Call before the fill is finished.
    pub(crate) fn unmatch(&mut self, hash: B256, size: u128, now_ms: u64) -> Changes {
        let mut changes = Changes::default();
        let Some(l) = self.orders.get_mut(&hash) else {
            return changes;
        };
        l.matched = l.matched.saturating_sub(size);
        let cancelled = l
            .ended
            .as_ref()
            .is_some_and(|(st, _)| *st != OrderStatus::Filled);
        if tif(&l.order) == Tif::Ioc || l.order.expiry <= now_ms || cancelled {
            return changes;
        }
        let l = l.clone();
        let book = self.books.entry(l.order.marketId).or_default();
        if l.resting {
            book.cancel(&hash);
        }
        let placed = book.place(
            Incoming {
                id: hash,
                account: l.order.account,
                key: l.order.key,
                is_buy: l.order.isBuy,
                price: l.order.limitPrice,
                size: l.remaining(),
                // Post-only: resting again must never match on its own.
                tif: Tif::PostOnly,
                expiry_ms: l.order.expiry,
            },
            now_ms,
        );
        let rested = matches!(&placed, Ok(p) if p.matches.is_empty() && p.rested == l.remaining());
        if !rested {
            if let Ok(p) = placed {
                // Never expected (post-only either rests in full or is refused); take it off again.
                if p.rested > 0 {
                    if let Some(b) = self.books.get_mut(&l.order.marketId) {
                        b.cancel(&hash);
                    }
                }
            }
            if l.resting {
                // It was resting with its rest, and that rest is off the book now.
                self.off_book(
                    hash,
                    "could not rest again after a refused fill",
                    &mut changes,
                    false,
                );
            }
            return changes;
        }
        let live = self.orders.get_mut(&hash).expect("present");
        live.resting = true;
        live.ended = None;
        let update = live.update(
            if live.matched > 0 {
                OrderStatus::PartiallyFilled
            } else {
                OrderStatus::Resting
            },
            Some("a fill of it was refused at settlement for the other side: its size is back on the book".into()),
        );
        let (account, key, is_buy, price, imf, reduce_only) = (
            live.order.account,
            live.order.key,
            live.order.isBuy,
            live.order.limitPrice,
            live.imf,
            live.order.reduceOnly,
        );
        self.by_key.entry((account, key)).or_default().insert(hash);
        if !reduce_only {
            self.hold(account, margin_of(size, price, imf));
        }
        changes.records.push(Record::Rested { hash });
        changes.events.push(MatcherEvent::Order(update));
        changes
            .events
            .extend(self.level_events(l.order.marketId, &[(is_buy, price)]));
        changes
    }

    /// Whether `order` (post-only) would take the best price on the other side of its market now. The book
    /// refuses such an order without changing anything; this asks before a replace cancels anything.
    pub(crate) fn would_take(&self, order: &Order) -> bool {
        let Some(book) = self.books.get(&order.marketId) else {
            return false;
        };
        if tif(order) != Tif::PostOnly {
            return false;
        }
        if order.isBuy {
            book.best_ask().is_some_and(|a| a <= order.limitPrice)
        } else {
            book.best_bid().is_some_and(|b| b >= order.limitPrice)
        }
    }

    /// The checks of [`Engine::place`] that need no change, for a replacement of `old`: refused here, the
    /// old order stays.
    pub(crate) fn check_replacement(
        &self,
        old: &B256,
        order: &Order,
        hash: B256,
        imf: u64,
        free: U256,
    ) -> Result<(), EngineError> {
        let Some(prev) = self.orders.get(old).filter(|l| l.resting) else {
            return Err(EngineError::NotResting(*old));
        };
        let p = &prev.order;
        if (p.account, p.key, p.marketId, p.isBuy)
            != (order.account, order.key, order.marketId, order.isBuy)
        {
            return Err(EngineError::ReplaceMismatch);
        }
        if self.seen.contains(&hash) {
            return Err(EngineError::Duplicate(hash));
        }
        if self
            .nonces
            .contains(&(order.account, order.key, order.nonce))
        {
            return Err(EngineError::NonceUsed(order.nonce));
        }
        if self.would_take(order) {
            return Err(EngineError::WouldTake);
        }
        let released = if p.reduceOnly {
            U256::ZERO
        } else {
            margin_of(prev.remaining(), p.limitPrice, prev.imf)
        };
        let needed = Self::needs(order, imf);
        let available = (free + released).saturating_sub(self.held(order.account));
        if needed > available {
            return Err(EngineError::Margin {
                needed,
                free: available,
            });
        }
        Ok(())
    }

    /// The size of `account`'s resting reduce-only orders on one side of `market`.
    pub(crate) fn resting_reduce_only(&self, account: Address, market: u32, is_buy: bool) -> u128 {
        self.orders
            .values()
            .filter(|l| {
                l.resting
                    && l.order.reduceOnly
                    && l.order.account == account
                    && l.order.marketId == market
                    && l.order.isBuy == is_buy
            })
            .map(|l| l.remaining())
            .sum()
    }

    /// Cancels resting orders of (account, key): `hashes`, or all of them. Refuses (changing nothing) a hash
    /// that is another key's.
    pub(crate) fn cancel(
        &mut self,
        account: Address,
        key: Address,
        hashes: Option<&[B256]>,
        reason: &str,
    ) -> Result<(Vec<B256>, Changes), EngineError> {
        let targets = match hashes {
            Some(hs) => {
                for h in hs {
                    if let Some(l) = self.orders.get(h) {
                        if (l.order.account, l.order.key) != (account, key) {
                            return Err(EngineError::NotYours {
                                hash: *h,
                                owner: l.order.key,
                                key,
                            });
                        }
                    }
                }
                hs.iter()
                    .filter(|h| self.orders.get(*h).is_some_and(|l| l.resting))
                    .copied()
                    .collect::<Vec<_>>()
            }
            None => self.resting_of(account, key),
        };
        let mut changes = Changes::default();
        for h in &targets {
            self.off_book(*h, reason, &mut changes, true);
        }
        Ok((targets, changes))
    }

    /// Cancels every resting order for which `pred` holds (a key's state on chain moved).
    pub(crate) fn cancel_where(&mut self, pred: impl Fn(&Live) -> bool, reason: &str) -> Changes {
        let hashes: Vec<B256> = self
            .orders
            .values()
            .filter(|l| l.resting && pred(l))
            .map(|l| l.hash)
            .collect();
        let mut changes = Changes::default();
        for h in hashes {
            self.off_book(h, reason, &mut changes, true);
        }
        changes
    }

    /// Takes expired orders off every book, and fires scheduled cancels due at `now_ms`.
    pub(crate) fn tick(&mut self, now_ms: u64) -> Changes {
        let mut changes = Changes::default();
        let expired: Vec<B256> = self
            .books
            .values_mut()
            .flat_map(|b| b.expire(now_ms))
            .map(|r| r.id)
            .collect();
        for h in expired {
            self.off_book(h, "expired", &mut changes, false);
        }
        let due: Vec<(Address, Address)> = self
            .schedules
            .iter()
            .filter(|(_, at)| **at <= now_ms)
            .map(|(k, _)| *k)
            .collect();
        for (account, key) in due {
            self.schedules.remove(&(account, key));
            changes.records.push(Record::Schedule {
                account,
                key,
                at_ms: 0,
            });
            for h in self.resting_of(account, key) {
                self.off_book(h, "scheduled cancel-all", &mut changes, true);
            }
        }
        changes
    }

    /// Sets (or clears, 0) the time every resting order of (account, key) is cancelled.
    pub(crate) fn schedule(&mut self, account: Address, key: Address, at_ms: u64) -> Changes {
        if at_ms == 0 {
            self.schedules.remove(&(account, key));
        } else {
            self.schedules.insert((account, key), at_ms);
        }
        Changes {
            records: vec![Record::Schedule {
                account,
                key,
                at_ms,
            }],
            events: vec![],
        }
    }

    /// The scheduled cancel of (account, key), if any.
    pub(crate) fn scheduled(&self, account: Address, key: Address) -> Option<u64> {
        self.schedules.get(&(account, key)).copied()
    }

    /// Fills not yet sent, oldest first, at most `max`.
    pub(crate) fn unsent(&self, max: usize) -> Vec<PendingFill> {
        self.fills
            .values()
            .filter(|f| f.batch.is_none())
            .take(max)
            .cloned()
            .collect()
    }

    /// Marks `fills` as sent in `batch`.
    pub(crate) fn sent(&mut self, fills: &[u64], batch: u64) {
        for id in fills {
            if let Some(f) = self.fills.get_mut(id) {
                f.batch = Some(batch);
            }
        }
    }

    /// Both orders' updates for fills `ids` now at `status` (sent, or sent again after a reorg).
    pub(crate) fn fill_updates(
        &self,
        ids: &[u64],
        status: FillStatus,
        tx: Option<B256>,
    ) -> Vec<MatcherEvent> {
        let mut out = Vec::new();
        for id in ids {
            let Some(f) = self.fills.get(id) else {
                continue;
            };
            for side in [f.maker, f.taker] {
                if let Some(l) = self.orders.get(&side) {
                    out.push(MatcherEvent::Order(l.fill_update(f, status, tx, None)));
                }
            }
        }
        out
    }

    /// Fills of `batch` are final (or refused): they leave the pending set and release the margin they held
    /// (the account's positions on chain hold it now). Returns the events.
    pub(crate) fn finish(
        &mut self,
        fills: &[u64],
        status: FillStatus,
        tx: Option<B256>,
        reason: Option<&str>,
    ) -> Changes {
        let mut changes = Changes::default();
        for id in fills {
            let Some(f) = self.fills.remove(id) else {
                continue;
            };
            for side in [f.maker, f.taker] {
                let Some(l) = self.orders.get(&side) else {
                    continue;
                };
                let (account, reduce_only, imf, limit) = (
                    l.order.account,
                    l.order.reduceOnly,
                    l.imf,
                    l.order.limitPrice,
                );
                let up = l.fill_update(&f, status, tx, reason);
                changes.events.push(MatcherEvent::Order(up));
                if !reduce_only {
                    self.release(account, margin_of(f.size, limit, imf));
                }
            }
            changes.records.push(Record::FillDone {
                id: f.id,
                status,
                tx,
                reason: reason.map(str::to_string),
            });
        }
        self.forget_finished();
        changes
    }

    /// Drops orders that are off the book with no fill pending: nothing can change them any more (their
    /// hashes stay in `seen`).
    fn forget_finished(&mut self) {
        let pending: HashSet<B256> = self
            .fills
            .values()
            .flat_map(|f| [f.maker, f.taker])
            .collect();
        let done: Vec<B256> = self
            .orders
            .iter()
            .filter(|(h, l)| !l.resting && !pending.contains(*h))
            .map(|(h, _)| *h)
            .collect();
        for h in done {
            if let Some(l) = self.orders.remove(&h) {
                self.retire(l);
            }
        }
    }

    /// The current size at each touched level, as book events.
    fn level_events(&self, market: u32, levels: &[(bool, u128)]) -> Vec<MatcherEvent> {
        let Some(book) = self.books.get(&market) else {
            return vec![];
        };
        let mut seen = HashSet::new();
        levels
            .iter()
            .filter(|l| seen.insert(**l))
            .map(|&(is_buy, price)| MatcherEvent::Book {
                market_id: market,
                is_buy,
                price: U256::from(price),
                size: U256::from(book.level(is_buy, price)),
            })
            .collect()
    }

    /// Rebuilds the state from the journal, in order. Returns the batches that were sent and not known final,
    /// with their fills.
    pub(crate) fn replay(
        records: impl IntoIterator<Item = Record>,
    ) -> (Self, BTreeMap<u64, super::journal::SentBatch>) {
        let mut e = Engine::default();
        let mut batches = BTreeMap::new();
        let mut placed: Vec<Live> = Vec::new();
        let mut off: HashSet<B256> = HashSet::new();
        let mut matched: HashMap<B256, u128> = HashMap::new();
        for r in records {
            match r {
                Record::Placed {
                    hash,
                    order,
                    signature,
                    at_ms,
                    imf,
                } => {
                    let Ok(order) = order.to_order(0) else {
                        continue;
                    };
                    e.seen.insert(hash);
                    e.nonces.insert((order.account, order.key, order.nonce));
                    e.next_seq += 1;
                    placed.push(Live {
                        order,
                        signature,
                        hash,
                        matched: 0,
                        resting: true,
                        imf,
                        placed_ms: at_ms,
                        ended: None,
                    });
                }
                Record::Matched {
                    id,
                    maker,
                    taker,
                    size,
                    price,
                } => {
                    let (size, price) =
                        (size.saturating_to::<u128>(), price.saturating_to::<u128>());
                    *matched.entry(maker).or_default() += size;
                    *matched.entry(taker).or_default() += size;
                    e.next_fill = e.next_fill.max(id + 1);
                    e.fills.insert(
                        id,
                        PendingFill {
                            id,
                            maker,
                            taker,
                            size,
                            price,
                            batch: None,
                        },
                    );
                }
                Record::OffBook { hash, .. } => {
                    off.insert(hash);
                }
                Record::Rested { hash } => {
                    off.remove(&hash);
                }
                Record::Schedule {
                    account,
                    key,
                    at_ms,
                } => {
                    if at_ms == 0 {
                        e.schedules.remove(&(account, key));
                    } else {
                        e.schedules.insert((account, key), at_ms);
                    }
                }
                Record::Batch(b) => {
                    for id in &b.fills {
                        if let Some(f) = e.fills.get_mut(id) {
                            f.batch = Some(b.id);
                        }
                    }
                    batches.insert(b.id, b);
                }
                Record::BatchUnsent { id } => {
                    if let Some(b) = batches.remove(&id) {
                        for f in b.fills {
                            if let Some(f) = e.fills.get_mut(&f) {
                                f.batch = None;
                            }
                        }
                    }
                }
                Record::FillDone { id, status, .. } => {
                    if let Some(f) = e.fills.remove(&id) {
                        if status == FillStatus::Refused {
                            // Nothing moved on chain: neither side filled.
                            for side in [f.maker, f.taker] {
                                if let Some(m) = matched.get_mut(&side) {
                                    *m = m.saturating_sub(f.size);
                                }
                            }
                        }
                    }
                }
            }
        }
        batches.retain(|_, b| b.fills.iter().any(|f| e.fills.contains_key(f)));
        // Orders rest again in arrival order, so time priority is kept; the resting set was never crossed.
        for mut live in placed {
            live.matched = matched.get(&live.hash).copied().unwrap_or_default();
            live.resting = !off.contains(&live.hash) && live.matched < live.order.size;
            let needs = if live.resting { live.remaining() } else { 0 };
            if live.resting {
                let book = e.books.entry(live.order.marketId).or_default();
                let rested = book.place(
                    Incoming {
                        id: live.hash,
                        account: live.order.account,
                        key: live.order.key,
                        is_buy: live.order.isBuy,
                        price: live.order.limitPrice,
                        size: live.remaining(),
                        tif: Tif::Gtt,
                        expiry_ms: live.order.expiry,
                    },
                    0,
                );
                match rested {
                    Ok(p) if p.matches.is_empty() && p.rested == live.remaining() => {}
                    other => {
                        // Never expected: a journal whose resting set crossed. Take it off rather than match
                        // without the clients having asked.
                        tracing::error!(hash = %live.hash, ?other, "matcher replay: an order did not rest as journaled");
                        if let Some(b) = e.books.get_mut(&live.order.marketId) {
                            b.cancel(&live.hash);
                        }
                        live.resting = false;
                    }
                }
            }
            if live.resting {
                e.by_key
                    .entry((live.order.account, live.order.key))
                    .or_default()
                    .insert(live.hash);
                if !live.order.reduceOnly {
                    let m = margin_of(needs, live.order.limitPrice, live.imf);
                    e.hold(live.order.account, m);
                }
            }
            e.orders.insert(live.hash, live);
        }
        let pending: Vec<PendingFill> = e.fills.values().cloned().collect();
        for f in pending {
            for side in [f.maker, f.taker] {
                if let Some(l) = e.orders.get(&side) {
                    if !l.order.reduceOnly {
                        let (a, m) = (
                            l.order.account,
                            margin_of(f.size, l.order.limitPrice, l.imf),
                        );
                        e.hold(a, m);
                    }
                }
            }
        }
        e.forget_finished();
        (e, batches)
    }
}

/// The levels an order's placement touched: its own and every maker's.
fn placed_levels(live: &Live, placed: &super::book::Placed) -> Vec<(bool, u128)> {
    let mut v = vec![(live.order.isBuy, live.order.limitPrice)];
    for m in &placed.matches {
        v.push((!live.order.isBuy, m.price));
    }
    for (r, _) in &placed.removed_makers {
        v.push((r.is_buy, r.price));
    }
    v
}

fn reason_text(r: RemoveReason) -> &'static str {
    match r {
        RemoveReason::SelfTrade => {
            "self-trade prevention: a newer order of the same account crossed it"
        }
        RemoveReason::Expired => "expired",
        RemoveReason::Filled => "filled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const E18: u128 = 1_000_000_000_000_000_000;
    /// 10 % initial margin.
    const IMF: u64 = 100_000_000_000_000_000;

    fn order(account: u8, key: u8, is_buy: bool, size: u128, price: u128, nonce: u64) -> Order {
        Order {
            account: Address::repeat_byte(account),
            key: Address::repeat_byte(key),
            grantId: 1,
            epoch: 0,
            marketId: 0,
            isBuy: is_buy,
            size: size * E18 / 10,
            limitPrice: price * E18,
            reduceOnly: false,
            timeInForce: 0,
            expiry: NOW + 60_000,
            nonce,
        }
    }

    fn hash(o: &Order) -> B256 {
        keyscope_core::order::order_hash(Address::repeat_byte(0xe1), 1, o)
    }

    /// One tUSD (6 decimals).
    const USD: u128 = 1_000_000;

    /// Plenty of free margin.
    fn rich() -> U256 {
        U256::from(1_000_000 * USD)
    }

    struct Run {
        e: Engine,
        journal: Vec<Record>,
    }

    impl Run {
        fn new() -> Self {
            Self {
                e: Engine::default(),
                journal: vec![],
            }
        }

        fn place(&mut self, o: Order, free: U256) -> Result<Ack, EngineError> {
            let h = hash(&o);
            let (ack, changes) = self.e.place(o, Bytes::new(), h, IMF, free, NOW)?;
            self.journal.extend(changes.records);
            Ok(ack)
        }
    }

    #[test]
    fn a_crossing_order_fills_at_the_makers_price_and_waits_for_settlement() {
        let mut r = Run::new();
        let ask = order(1, 11, false, 3, 60_000, 1);
        let a = r.place(ask.clone(), rich()).unwrap();
        assert_eq!(a.status, OrderStatus::Resting);
        // A buy up to 60,100 for 0.2 takes 0.2 of the ask at 60,000.
        let bid = order(2, 22, true, 2, 60_100, 1);
        let b = r.place(bid.clone(), rich()).unwrap();
        assert_eq!(b.status, OrderStatus::Filled);
        assert_eq!(b.filled, U256::from(2 * E18 / 10));
        assert_eq!(b.fills.len(), 1);
        let f = &r.e.fills[&b.fills[0]];
        assert_eq!((f.maker, f.taker), (hash(&ask), hash(&bid)));
        assert_eq!(f.price, 60_000 * E18);
        assert_eq!(f.size, 2 * E18 / 10);
        assert_eq!(r.e.unsent(10).len(), 1);
        // The maker rests with what is left, first in line.
        let m = r.e.order(&hash(&ask)).unwrap();
        assert!(m.resting);
        assert_eq!(m.matched, 2 * E18 / 10);
        assert_eq!(r.e.book(0).unwrap().level(false, 60_000 * E18), E18 / 10);
        // The journal has the place and the match.
        assert!(matches!(
            r.journal[..],
            [
                Record::Placed { .. },
                Record::Placed { .. },
                Record::Matched { .. },
                ..
            ]
        ));
    }

    #[test]
    fn margin_counts_what_rests_and_what_waits_for_settlement() {
        let mut r = Run::new();
        // 0.1 BTC at 60,000 with 10 % initial margin holds 600.
        let one = U256::from(600 * USD);
        let first = order(1, 11, true, 1, 60_000, 1);
        r.place(first.clone(), one).unwrap();
        assert_eq!(r.e.held(Address::repeat_byte(1)), one);
        // A second order of the same size does not fit in the same 600 of free margin…
        let second = order(1, 11, true, 1, 60_000, 2);
        let e = r.place(second.clone(), one).unwrap_err();
        assert!(
            matches!(e, EngineError::Margin { needed, free } if needed == one && free.is_zero())
        );
        // …and nothing changed: the first is still the only order, the second can come later.
        assert_eq!(r.e.held(Address::repeat_byte(1)), one);
        assert_eq!(
            r.e.resting_of(Address::repeat_byte(1), Address::repeat_byte(11))
                .len(),
            1
        );
        // Reduce-only orders hold nothing.
        let ro = Order {
            reduceOnly: true,
            ..order(1, 11, false, 1, 61_000, 3)
        };
        r.place(ro, U256::ZERO).unwrap();
        // A cancel releases the margin.
        let (done, _) =
            r.e.cancel(
                Address::repeat_byte(1),
                Address::repeat_byte(11),
                Some(&[hash(&first)]),
                "test",
            )
            .unwrap();
        assert_eq!(done, vec![hash(&first)]);
        assert_eq!(r.e.held(Address::repeat_byte(1)), U256::ZERO);
        r.place(second, one).unwrap();
        // A fill holds its margin until it settles.
        let taker = order(2, 22, false, 1, 59_000, 1);
        let t = r.place(taker, rich()).unwrap();
        assert_eq!(r.e.held(Address::repeat_byte(1)), one);
        r.e.finish(&t.fills, FillStatus::Settled, None, None);
        assert_eq!(r.e.held(Address::repeat_byte(1)), U256::ZERO);
        assert_eq!(r.e.held(Address::repeat_byte(2)), U256::ZERO);
    }

    #[test]
    fn a_key_cancels_only_its_own_orders() {
        let mut r = Run::new();
        let o = order(1, 11, true, 1, 60_000, 1);
        r.place(o.clone(), rich()).unwrap();
        let err =
            r.e.cancel(
                Address::repeat_byte(1),
                Address::repeat_byte(12),
                Some(&[hash(&o)]),
                "x",
            )
            .unwrap_err();
        assert!(matches!(err, EngineError::NotYours { .. }));
        assert!(r.e.order(&hash(&o)).unwrap().resting);
        // Cancel-all of another key of the same account leaves it too.
        let (done, _) =
            r.e.cancel(Address::repeat_byte(1), Address::repeat_byte(12), None, "x")
                .unwrap();
        assert!(done.is_empty());
        let (done, _) =
            r.e.cancel(Address::repeat_byte(1), Address::repeat_byte(11), None, "x")
                .unwrap();
        assert_eq!(done, vec![hash(&o)]);
        // An order hash is placed once, even after it left the book.
        assert_eq!(
            r.place(o.clone(), rich()),
            Err(EngineError::Duplicate(hash(&o)))
        );
    }

    #[test]
    fn a_scheduled_cancel_fires_at_its_time_and_a_later_one_moves_it() {
        let mut r = Run::new();
        let (a, k) = (Address::repeat_byte(1), Address::repeat_byte(11));
        r.place(order(1, 11, true, 1, 60_000, 1), rich()).unwrap();
        r.e.schedule(a, k, NOW + 5_000);
        r.e.schedule(a, k, NOW + 10_000);
        assert!(r.e.tick(NOW + 9_999).records.is_empty());
        assert_eq!(r.e.resting_of(a, k).len(), 1);
        let fired = r.e.tick(NOW + 10_000);
        assert!(r.e.resting_of(a, k).is_empty());
        assert!(
            fired
                .events
                .iter()
                .any(|e| matches!(e, MatcherEvent::Order(u) if u.status == OrderStatus::Cancelled))
        );
        assert_eq!(r.e.scheduled(a, k), None);
        // Cleared: nothing fires.
        r.place(order(1, 11, true, 1, 60_000, 2), rich()).unwrap();
        r.e.schedule(a, k, NOW + 5_000);
        r.e.schedule(a, k, 0);
        r.e.tick(NOW + 50_000);
        assert_eq!(r.e.resting_of(a, k).len(), 1);
    }

    #[test]
    fn the_journal_rebuilds_the_same_book_margins_and_pending_fills() {
        let mut r = Run::new();
        for i in 0..6u64 {
            r.place(order(1, 11, false, 2, 60_000 + i as u128 * 10, i), rich())
                .unwrap();
            r.place(order(3, 33, true, 1, 59_900 - i as u128 * 10, i), rich())
                .unwrap();
        }
        // A taker sweeps two asks and a part of a third.
        let t = r.place(order(2, 22, true, 5, 60_020, 1), rich()).unwrap();
        assert_eq!(t.fills.len(), 3);
        let (cancelled, changes) =
            r.e.cancel(Address::repeat_byte(3), Address::repeat_byte(33), None, "x")
                .unwrap();
        assert_eq!(cancelled.len(), 6);
        r.journal.extend(changes.records);
        // The first fill settled; the others wait.
        let done = r.e.finish(&t.fills[..1], FillStatus::Settled, None, None);
        r.journal.extend(done.records);
        // Through JSON, as the journal file holds it.
        let through_file: Vec<Record> =
            serde_json::from_str(&serde_json::to_string(&r.journal).unwrap()).unwrap();
        let (back, batches) = Engine::replay(through_file);
        assert!(batches.is_empty());
        for side in [true, false] {
            assert_eq!(
                back.book(0).unwrap().depth(side, 100),
                r.e.book(0).unwrap().depth(side, 100)
            );
        }
        for a in [1u8, 2, 3] {
            assert_eq!(
                back.held(Address::repeat_byte(a)),
                r.e.held(Address::repeat_byte(a)),
                "account {a}"
            );
        }
        assert_eq!(back.fills, r.e.fills);
        assert_eq!(back.fills.len(), 2);
        // Fill ids go on from where they were; a placed hash stays placed.
        let mut back = Run {
            e: back,
            journal: vec![],
        };
        let again = order(2, 22, true, 5, 60_020, 1);
        assert_eq!(
            back.place(again, rich()),
            Err(EngineError::Duplicate(t.order_hash))
        );
        let next = back
            .place(order(4, 44, true, 1, 60_100, 1), rich())
            .unwrap();
        assert!(next.fills[0] > *t.fills.last().unwrap());
    }
}
