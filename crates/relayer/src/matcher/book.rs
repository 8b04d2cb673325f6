//! The limit order book of one market: price-time priority, pure and synchronous.
//!
//! The book knows nothing of signatures, margin or the chain; the matcher
//! checks those before an order reaches [`Book::place`] and settles the
//! [`Match`]es it returns. Every operation either succeeds or changes nothing.
//!
//! Rules:
//! - **Priority.** A buy takes asks priced at or below its limit, cheapest
//!   first; a sell takes bids priced at or above its limit, highest first.
//!   Within a price level orders fill in strict arrival order, by a book-wide
//!   sequence number given when an order starts resting ([`Resting::seq`]).
//! - **Fill price** is always the resting (maker) order's price. A maker that is
//!   only partly filled keeps its place in the queue.
//! - **Expiry.** An order rests while `now_ms < expiry_ms`. Expired makers met
//!   while matching are taken off ([`RemoveReason::Expired`]) and never
//!   matched; [`Book::expire`] takes off all the others. An incoming order that
//!   is already expired is refused ([`BookError::Expired`]).
//! - **Self-trade prevention: cancel the resting order.** A taker never matches
//!   a maker of the same account (the venue refuses such fills on chain). The
//!   same-account maker is taken off the book ([`RemoveReason::SelfTrade`]) and
//!   matching goes on with the next maker; the taker keeps its full size.
//! - **Time in force** ([`Tif`]). A good-til-time remainder rests until its
//!   expiry. An immediate-or-cancel remainder never rests: it is reported as
//!   [`Placed::dropped`]. A post-only order that would take any liquidity (a
//!   crossing maker that is neither expired nor of the same account) is
//!   refused with [`BookError::WouldTake`] and the book is left exactly as it
//!   was (the check is done before anything changes). A post-only order that
//!   crosses only expired or same-account makers takes them off as above
//!   (reported in [`Placed::removed_makers`]) and rests, so the book is never
//!   crossed.
//! - **Refusals.** A zero size, an id that is already resting, and a size that
//!   would overflow the total of its price level are refused too, with nothing
//!   changed.
//!
//! Layout: one `BTreeMap` of price levels per side, each level a `BTreeMap`
//! from sequence number to order id plus a running total; a `HashMap` from id
//! to order; and an index by expiry. Place, cancel, reduce and each fill are
//! O(log n); nothing is allocated per fill beyond the returned vectors.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use alloy_primitives::{Address, B256};

/// An order's id (the hash of the signed order).
pub(crate) type OrderId = B256;

/// Time in force of an incoming order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Tif {
    /// Good-til-time: what is not filled at once rests until `expiry_ms`.
    Gtt,
    /// Immediate-or-cancel: what is not filled at once is dropped.
    Ioc,
    /// Post-only: refused if it would take liquidity, otherwise rests like
    /// [`Tif::Gtt`].
    PostOnly,
}

/// An order arriving at the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Incoming {
    /// The order's id; must not be resting already.
    pub(crate) id: OrderId,
    /// The trading account; never matched against its own resting orders.
    pub(crate) account: Address,
    /// The key that signed the order (kept for cancel-all by key).
    pub(crate) key: Address,
    /// Buy (bid) if true, sell (ask) if false.
    pub(crate) is_buy: bool,
    /// Limit price, 18 decimals.
    pub(crate) price: u128,
    /// Size left to fill; must not be zero.
    pub(crate) size: u128,
    /// Time in force.
    pub(crate) tif: Tif,
    /// The order is live while `now_ms < expiry_ms`.
    pub(crate) expiry_ms: u64,
}

/// An order resting on the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resting {
    /// The order's id.
    pub(crate) id: OrderId,
    /// The trading account.
    pub(crate) account: Address,
    /// The key that signed the order.
    pub(crate) key: Address,
    /// Bid if true, ask if false.
    pub(crate) is_buy: bool,
    /// Limit price, 18 decimals.
    pub(crate) price: u128,
    /// Size still resting (0 only in a [`RemoveReason::Filled`] report or
    /// after [`Book::reduce`] to 0).
    pub(crate) remaining: u128,
    /// The order is live while `now_ms < expiry_ms`.
    pub(crate) expiry_ms: u64,
    /// Book-wide arrival number, given when the order started resting; lower
    /// fills first within a price level.
    pub(crate) seq: u64,
}

/// One fill between a taker and a maker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Match {
    /// The resting order.
    pub(crate) maker: OrderId,
    /// The maker's account.
    pub(crate) maker_account: Address,
    /// The key that signed the maker's order.
    pub(crate) maker_key: Address,
    /// The incoming order.
    pub(crate) taker: OrderId,
    /// Size filled.
    pub(crate) size: u128,
    /// Fill price: the maker's price.
    pub(crate) price: u128,
}

/// Why a maker left the book while an order was being placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RemoveReason {
    /// Filled completely (its [`Resting::remaining`] is reported as 0).
    Filled,
    /// Met while matching after its expiry; it was not matched.
    Expired,
    /// Of the taker's own account: cancelled by self-trade prevention.
    SelfTrade,
}

/// What placing an order did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Placed {
    /// Fills, in the order they happened.
    pub(crate) matches: Vec<Match>,
    /// Size of the incoming order left resting (0 if it does not rest).
    pub(crate) rested: u128,
    /// Size of the incoming order neither filled nor rested (an
    /// immediate-or-cancel remainder).
    pub(crate) dropped: u128,
    /// Makers taken off the book, in the order it happened, as they were when
    /// taken off.
    pub(crate) removed_makers: Vec<(Resting, RemoveReason)>,
}

/// Why an order was refused; the book is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BookError {
    /// An order with this id is already resting.
    Duplicate(OrderId),
    /// A post-only order would take liquidity.
    WouldTake,
    /// The order's expiry is not after now.
    Expired,
    /// The order's size is zero.
    ZeroSize,
    /// The order's size would overflow the total of its price level.
    Overflow,
}

impl fmt::Display for BookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duplicate(id) => write!(f, "order {id} is already on the book"),
            Self::WouldTake => f.write_str("post-only order would take liquidity"),
            Self::Expired => f.write_str("order has expired"),
            Self::ZeroSize => f.write_str("order size is zero"),
            Self::Overflow => f.write_str("order size overflows its price level"),
        }
    }
}

impl std::error::Error for BookError {}

/// One price level: the queue in arrival order and its total size.
#[derive(Debug, Default)]
struct Level {
    /// Sum of the `remaining` of the orders queued here.
    total: u128,
    /// Sequence number to order id: the arrival order.
    queue: BTreeMap<u64, OrderId>,
}

/// Levels of one side keyed by rank (see [`rank`]): the best level first.
type Side = BTreeMap<u128, Level>;

/// Index of a side in [`Book::sides`].
fn side_index(is_buy: bool) -> usize {
    if is_buy { 0 } else { 1 }
}

/// A price's key in its side's map, so that the best level is the smallest
/// key on both sides: asks by price, bids by the bitwise complement of the
/// price. It is its own inverse.
fn rank(is_buy: bool, price: u128) -> u128 {
    if is_buy { !price } else { price }
}

/// The limit order book of one market.
#[derive(Debug, Default)]
pub(crate) struct Book {
    /// Bids, then asks.
    sides: [Side; 2],
    /// Every resting order by id.
    orders: HashMap<OrderId, Resting>,
    /// (expiry, seq) of every resting order.
    by_expiry: BTreeMap<(u64, u64), OrderId>,
    /// The next arrival number.
    next_seq: u64,
}

impl Book {
    /// An empty book.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Matches an incoming order against the book and rests what is left as
    /// its time in force says. Refusals change nothing.
    pub(crate) fn place(&mut self, o: Incoming, now_ms: u64) -> Result<Placed, BookError> {
        if o.size == 0 {
            return Err(BookError::ZeroSize);
        }
        if o.expiry_ms <= now_ms {
            return Err(BookError::Expired);
        }
        if self.orders.contains_key(&o.id) {
            return Err(BookError::Duplicate(o.id));
        }
        // Matching never touches the order's own side, so this is the level it
        // would rest on.
        let own_key = rank(o.is_buy, o.price);
        let own_total = self.sides[side_index(o.is_buy)]
            .get(&own_key)
            .map_or(0, |l| l.total);
        if own_total.checked_add(o.size).is_none() {
            return Err(BookError::Overflow);
        }
        // Opposite levels with a key up to this one cross the order.
        let limit = rank(!o.is_buy, o.price);
        if o.tif == Tif::PostOnly && self.would_take(&o, limit, now_ms) {
            return Err(BookError::WouldTake);
        }

        let mut placed = Placed::default();
        let mut left = o.size;
        let opposite = &mut self.sides[side_index(!o.is_buy)];
        while left > 0 {
            let Some(mut level_entry) = opposite.first_entry() else {
                break;
            };
            if *level_entry.key() > limit {
                break;
            }
            let level = level_entry.get_mut();
            let Some(front) = level.queue.first_entry() else {
                unreachable!("empty levels are removed")
            };
            let maker = self
                .orders
                .get_mut(front.get())
                .expect("every queued id is a resting order");
            let reason = if maker.expiry_ms <= now_ms {
                Some(RemoveReason::Expired)
            } else if maker.account == o.account {
                Some(RemoveReason::SelfTrade)
            } else {
                let size = left.min(maker.remaining);
                maker.remaining -= size;
                level.total -= size;
                left -= size;
                placed.matches.push(Match {
                    maker: maker.id,
                    maker_account: maker.account,
                    maker_key: maker.key,
                    taker: o.id,
                    size,
                    price: maker.price,
                });
                (maker.remaining == 0).then_some(RemoveReason::Filled)
            };
            if let Some(reason) = reason {
                let id = front.remove();
                let gone = self
                    .orders
                    .remove(&id)
                    .expect("every queued id is a resting order");
                level.total -= gone.remaining;
                self.by_expiry.remove(&(gone.expiry_ms, gone.seq));
                placed.removed_makers.push((gone, reason));
                if level.queue.is_empty() {
                    level_entry.remove();
                }
            }
        }

        if left > 0 {
            match o.tif {
                Tif::Ioc => placed.dropped = left,
                Tif::Gtt | Tif::PostOnly => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let level = self.sides[side_index(o.is_buy)].entry(own_key).or_default();
                    level.total += left;
                    level.queue.insert(seq, o.id);
                    self.by_expiry.insert((o.expiry_ms, seq), o.id);
                    self.orders.insert(
                        o.id,
                        Resting {
                            id: o.id,
                            account: o.account,
                            key: o.key,
                            is_buy: o.is_buy,
                            price: o.price,
                            remaining: left,
                            expiry_ms: o.expiry_ms,
                            seq,
                        },
                    );
                    placed.rested = left;
                }
            }
        }
        Ok(placed)
    }

    /// Whether `o` would fill against any crossing maker (opposite levels with
    /// a key up to `limit`) that is live and of another account.
    fn would_take(&self, o: &Incoming, limit: u128, now_ms: u64) -> bool {
        self.sides[side_index(!o.is_buy)]
            .range(..=limit)
            .flat_map(|(_, level)| level.queue.values())
            .any(|id| {
                let maker = &self.orders[id];
                maker.expiry_ms > now_ms && maker.account != o.account
            })
    }

    /// Takes an order off the book; `None` if it is not resting.
    pub(crate) fn cancel(&mut self, id: &OrderId) -> Option<Resting> {
        let gone = self.orders.remove(id)?;
        let side = &mut self.sides[side_index(gone.is_buy)];
        match side.entry(rank(gone.is_buy, gone.price)) {
            Entry::Occupied(mut entry) => {
                let level = entry.get_mut();
                level.total -= gone.remaining;
                level.queue.remove(&gone.seq);
                if level.queue.is_empty() {
                    entry.remove();
                }
            }
            Entry::Vacant(_) => unreachable!("a resting order's level exists"),
        }
        self.by_expiry.remove(&(gone.expiry_ms, gone.seq));
        Some(gone)
    }

    #[cfg(test)]
    /// Takes off every order `pred` holds for (e.g. all orders of an account
    /// or of a key), returned in arrival order.
    pub(crate) fn cancel_where(&mut self, mut pred: impl FnMut(&Resting) -> bool) -> Vec<Resting> {
        let mut hits: Vec<(u64, OrderId)> = self
            .orders
            .values()
            .filter(|r| pred(r))
            .map(|r| (r.seq, r.id))
            .collect();
        hits.sort_unstable_by_key(|&(seq, _)| seq);
        hits.into_iter()
            .filter_map(|(_, id)| self.cancel(&id))
            .collect()
    }

    /// Takes off every order with `expiry_ms <= now_ms`, returned by expiry
    /// then arrival.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<Resting> {
        let mut gone = Vec::new();
        while let Some((&(expiry_ms, _), &id)) = self.by_expiry.first_key_value() {
            if expiry_ms > now_ms {
                break;
            }
            gone.push(
                self.cancel(&id)
                    .expect("every indexed id is a resting order"),
            );
        }
        gone
    }

    #[cfg(test)]
    /// Shrinks a resting order to `to`, keeping its place in the queue; at 0
    /// it is taken off. An order is never grown: `to >= remaining` changes
    /// nothing. Returns the order as it is afterwards (with `remaining == 0`
    /// if taken off), or `None` if it is not resting.
    pub(crate) fn reduce(&mut self, id: &OrderId, to: u128) -> Option<Resting> {
        let order = self.orders.get_mut(id)?;
        if to >= order.remaining {
            return Some(*order);
        }
        let cut = order.remaining - to;
        order.remaining = to;
        let after = *order;
        self.sides[side_index(after.is_buy)]
            .get_mut(&rank(after.is_buy, after.price))
            .expect("a resting order's level exists")
            .total -= cut;
        if to == 0 {
            self.cancel(id);
        }
        Some(after)
    }

    #[cfg(test)]
    /// A resting order by id.
    pub(crate) fn get(&self, id: &OrderId) -> Option<&Resting> {
        self.orders.get(id)
    }

    /// The highest bid price.
    pub(crate) fn best_bid(&self) -> Option<u128> {
        self.best(true)
    }

    /// The lowest ask price.
    pub(crate) fn best_ask(&self) -> Option<u128> {
        self.best(false)
    }

    fn best(&self, is_buy: bool) -> Option<u128> {
        self.sides[side_index(is_buy)]
            .first_key_value()
            .map(|(&key, _)| rank(is_buy, key))
    }

    /// Total resting size at a price on one side (0 if none).
    pub(crate) fn level(&self, is_buy: bool, price: u128) -> u128 {
        self.sides[side_index(is_buy)]
            .get(&rank(is_buy, price))
            .map_or(0, |l| l.total)
    }

    /// Up to `levels` (price, total size) pairs of one side, best first.
    pub(crate) fn depth(&self, is_buy: bool, levels: usize) -> Vec<(u128, u128)> {
        self.sides[side_index(is_buy)]
            .iter()
            .take(levels)
            .map(|(&key, level)| (rank(is_buy, key), level.total))
            .collect()
    }

    #[cfg(test)]
    /// Number of resting orders.
    pub(crate) fn len(&self) -> usize {
        self.orders.len()
    }

    #[cfg(test)]
    /// Whether no order rests.
    pub(crate) fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    #[cfg(test)]
    /// Every resting order: bids best level first, then asks best level first,
    /// each level in arrival order. Placing them again in this order (as
    /// good-til-time orders) rebuilds an equivalent book.
    pub(crate) fn orders(&self) -> impl Iterator<Item = &Resting> {
        self.sides
            .iter()
            .flat_map(|side| side.values())
            .flat_map(|level| level.queue.values())
            .map(|id| &self.orders[id])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000;
    const LATER: u64 = 1_000_000;

    fn id(n: u64) -> OrderId {
        B256::left_padding_from(&n.to_be_bytes())
    }

    fn acct(n: u8) -> Address {
        Address::with_last_byte(n)
    }

    /// A good-til-time order of account `account` (its key is `account + 100`).
    fn order(n: u64, account: u8, is_buy: bool, price: u128, size: u128) -> Incoming {
        Incoming {
            id: id(n),
            account: acct(account),
            key: acct(account.wrapping_add(100)),
            is_buy,
            price,
            size,
            tif: Tif::Gtt,
            expiry_ms: LATER,
        }
    }

    fn with_tif(mut o: Incoming, tif: Tif) -> Incoming {
        o.tif = tif;
        o
    }

    fn with_expiry(mut o: Incoming, expiry_ms: u64) -> Incoming {
        o.expiry_ms = expiry_ms;
        o
    }

    fn place(book: &mut Book, o: Incoming) -> Placed {
        book.place(o, NOW).expect("placed")
    }

    /// (maker, size, price) of each fill.
    fn fills(p: &Placed) -> Vec<(OrderId, u128, u128)> {
        p.matches
            .iter()
            .map(|m| (m.maker, m.size, m.price))
            .collect()
    }

    fn removed(p: &Placed) -> Vec<(OrderId, RemoveReason)> {
        p.removed_makers
            .iter()
            .map(|(r, why)| (r.id, *why))
            .collect()
    }

    /// Every resting order, then the depth of bids and of asks.
    type Snapshot = (Vec<Resting>, Vec<(u128, u128)>, Vec<(u128, u128)>);

    /// Everything observable about a book, to check that it did not change.
    fn snapshot(book: &Book) -> Snapshot {
        (
            book.orders().copied().collect(),
            book.depth(true, usize::MAX),
            book.depth(false, usize::MAX),
        )
    }

    #[test]
    fn buy_takes_cheapest_asks_up_to_its_limit() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, false, 102, 5));
        place(&mut book, order(2, 1, false, 100, 5));
        place(&mut book, order(3, 1, false, 101, 5));
        let p = place(&mut book, order(4, 2, true, 101, 12));
        // 100 before 101 although 101 came first; 102 is above the limit.
        assert_eq!(fills(&p), vec![(id(2), 5, 100), (id(3), 5, 101)]);
        assert_eq!(p.rested, 2);
        assert_eq!(book.best_bid(), Some(101));
        assert_eq!(book.best_ask(), Some(102));
        assert_eq!(book.level(false, 102), 5);
    }

    #[test]
    fn sell_takes_highest_bids_down_to_its_limit() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, true, 98, 5));
        place(&mut book, order(2, 1, true, 100, 5));
        place(&mut book, order(3, 1, true, 99, 5));
        let p = place(&mut book, order(4, 2, false, 99, 12));
        assert_eq!(fills(&p), vec![(id(2), 5, 100), (id(3), 5, 99)]);
        assert_eq!(p.rested, 2);
        assert_eq!(book.best_ask(), Some(99));
        assert_eq!(book.best_bid(), Some(98));
    }

    #[test]
    fn a_level_fills_in_arrival_order_and_a_partial_maker_keeps_its_place() {
        let mut book = Book::new();
        // Ids deliberately not in arrival order.
        place(&mut book, order(9, 1, false, 100, 5));
        place(&mut book, order(3, 2, false, 100, 5));
        let p = place(&mut book, order(20, 3, true, 100, 3));
        assert_eq!(fills(&p), vec![(id(9), 3, 100)]);
        assert_eq!(book.get(&id(9)).unwrap().remaining, 2);
        // The partly filled maker is still first.
        let p = place(&mut book, order(21, 3, true, 100, 3));
        assert_eq!(fills(&p), vec![(id(9), 2, 100), (id(3), 1, 100)]);
        assert_eq!(removed(&p), vec![(id(9), RemoveReason::Filled)]);
        assert_eq!(p.removed_makers[0].0.remaining, 0);
        assert_eq!(book.level(false, 100), 4);
        assert!(book.get(&id(9)).is_none());
    }

    #[test]
    fn fills_at_the_makers_price_and_reports_the_maker() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, false, 100, 5));
        let p = place(&mut book, order(2, 2, true, 105, 5));
        assert_eq!(
            p.matches,
            vec![Match {
                maker: id(1),
                maker_account: acct(1),
                maker_key: acct(101),
                taker: id(2),
                size: 5,
                price: 100,
            }]
        );
        assert_eq!(p.rested, 0);
        assert!(book.is_empty());
    }

    #[test]
    fn expired_makers_are_removed_not_matched() {
        let mut book = Book::new();
        place(&mut book, with_expiry(order(1, 1, false, 100, 5), 2_000));
        place(&mut book, order(2, 1, false, 101, 5));
        // At 2000 the first ask has expired (expiry <= now).
        let p = book.place(order(3, 2, true, 101, 5), 2_000).unwrap();
        assert_eq!(fills(&p), vec![(id(2), 5, 101)]);
        assert_eq!(removed(&p)[0], (id(1), RemoveReason::Expired));
        assert_eq!(p.removed_makers[0].0.remaining, 5);
        assert!(book.is_empty());
        // A millisecond earlier it would have matched.
        let mut book = Book::new();
        place(&mut book, with_expiry(order(1, 1, false, 100, 5), 2_000));
        let p = book.place(order(3, 2, true, 101, 5), 1_999).unwrap();
        assert_eq!(fills(&p), vec![(id(1), 5, 100)]);
    }

    #[test]
    fn an_expired_incoming_order_is_refused_and_changes_nothing() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, false, 100, 5));
        let before = snapshot(&book);
        let late = with_expiry(order(2, 2, true, 100, 5), NOW);
        assert_eq!(book.place(late, NOW), Err(BookError::Expired));
        assert_eq!(snapshot(&book), before);
        assert!(book.place(late, NOW - 1).is_ok());
    }

    #[test]
    fn self_trade_cancels_the_resting_order_and_matching_goes_on() {
        let mut book = Book::new();
        place(&mut book, order(1, 7, false, 100, 5));
        place(&mut book, order(2, 8, false, 100, 5));
        place(&mut book, order(3, 8, false, 101, 5));
        let p = place(&mut book, order(4, 7, true, 101, 8));
        assert_eq!(removed(&p)[0], (id(1), RemoveReason::SelfTrade));
        assert_eq!(fills(&p), vec![(id(2), 5, 100), (id(3), 3, 101)]);
        assert_eq!(p.rested, 0);
        assert_eq!(p.dropped, 0);
        assert!(book.get(&id(1)).is_none());
        assert_eq!(book.level(false, 100), 0);
        assert_eq!(book.level(false, 101), 2);
    }

    #[test]
    fn self_trade_only_then_rests_without_crossing() {
        let mut book = Book::new();
        place(&mut book, order(1, 7, false, 100, 5));
        let p = place(&mut book, order(2, 7, true, 100, 3));
        assert!(p.matches.is_empty());
        assert_eq!(removed(&p), vec![(id(1), RemoveReason::SelfTrade)]);
        assert_eq!(p.rested, 3);
        assert_eq!(book.best_bid(), Some(100));
        assert_eq!(book.best_ask(), None);
    }

    #[test]
    fn post_only_that_would_take_is_refused_and_changes_nothing() {
        let mut book = Book::new();
        // An expired ask and an own ask in front of a live foreign one.
        place(&mut book, with_expiry(order(1, 2, false, 99, 5), 1_500));
        place(&mut book, order(2, 1, false, 100, 5));
        place(&mut book, order(3, 2, false, 100, 5));
        place(&mut book, order(4, 3, true, 90, 5));
        let before = snapshot(&book);
        let po = with_tif(order(5, 1, true, 100, 5), Tif::PostOnly);
        assert_eq!(book.place(po, 2_000), Err(BookError::WouldTake));
        assert_eq!(snapshot(&book), before);
        // Below the asks it rests.
        let p = book
            .place(with_tif(order(5, 1, true, 98, 5), Tif::PostOnly), 2_000)
            .unwrap();
        assert_eq!(p.rested, 5);
        assert!(p.matches.is_empty() && p.removed_makers.is_empty());
        assert_eq!(book.best_bid(), Some(98));
    }

    #[test]
    fn post_only_crossing_only_own_or_expired_makers_removes_them_and_rests() {
        let mut book = Book::new();
        place(&mut book, with_expiry(order(1, 2, false, 99, 5), 1_500));
        place(&mut book, order(2, 1, false, 100, 5));
        place(&mut book, order(3, 2, false, 101, 5));
        let p = book
            .place(with_tif(order(4, 1, true, 100, 5), Tif::PostOnly), 2_000)
            .unwrap();
        assert!(p.matches.is_empty());
        assert_eq!(
            removed(&p),
            vec![
                (id(1), RemoveReason::Expired),
                (id(2), RemoveReason::SelfTrade)
            ]
        );
        assert_eq!(p.rested, 5);
        assert_eq!(book.best_bid(), Some(100));
        assert_eq!(book.best_ask(), Some(101));
    }

    #[test]
    fn ioc_remainder_is_dropped_and_gtt_remainder_rests() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, false, 100, 5));
        let p = place(&mut book, with_tif(order(2, 2, true, 100, 8), Tif::Ioc));
        assert_eq!(fills(&p), vec![(id(1), 5, 100)]);
        assert_eq!((p.rested, p.dropped), (0, 3));
        assert!(book.is_empty());
        assert_eq!(book.best_bid(), None);

        place(&mut book, order(3, 1, false, 100, 5));
        let p = place(&mut book, order(4, 2, true, 100, 8));
        assert_eq!((p.rested, p.dropped), (3, 0));
        assert_eq!(book.get(&id(4)).unwrap().remaining, 3);
        assert_eq!(book.level(true, 100), 3);
    }

    #[test]
    fn duplicate_and_zero_size_are_refused_and_change_nothing() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, false, 100, 5));
        place(&mut book, order(2, 1, true, 90, 5));
        let before = snapshot(&book);
        // Same id, even on the other side at a crossing price.
        assert_eq!(
            book.place(order(1, 2, true, 100, 5), NOW),
            Err(BookError::Duplicate(id(1)))
        );
        assert_eq!(
            book.place(order(3, 2, true, 100, 0), NOW),
            Err(BookError::ZeroSize)
        );
        assert_eq!(snapshot(&book), before);
        // Once gone, the id can be used again.
        book.cancel(&id(1)).unwrap();
        assert!(book.place(order(1, 2, true, 95, 5), NOW).is_ok());
    }

    #[test]
    fn overflowing_a_level_is_refused() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, true, 100, u128::MAX - 1));
        let before = snapshot(&book);
        assert_eq!(
            book.place(order(2, 2, true, 100, 2), NOW),
            Err(BookError::Overflow)
        );
        assert_eq!(snapshot(&book), before);
        place(&mut book, order(3, 2, true, 100, 1));
        assert_eq!(book.level(true, 100), u128::MAX);
    }

    #[test]
    fn cancel_reduce_expire_and_cancel_where_keep_levels_right() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, true, 100, 5));
        place(&mut book, with_expiry(order(2, 2, true, 100, 7), 3_000));
        place(&mut book, order(3, 1, true, 99, 4));
        place(&mut book, order(4, 3, false, 105, 6));
        assert_eq!(book.depth(true, 5), vec![(100, 12), (99, 4)]);
        assert_eq!(book.depth(true, 1), vec![(100, 12)]);

        // Reduce keeps the queue place.
        let r = book.reduce(&id(1), 2).unwrap();
        assert_eq!(r.remaining, 2);
        assert_eq!(book.level(true, 100), 9);
        let p = place(&mut book, order(10, 4, false, 100, 1));
        assert_eq!(fills(&p), vec![(id(1), 1, 100)]);
        // Never grows.
        assert_eq!(book.reduce(&id(1), 50).unwrap().remaining, 1);
        assert_eq!(book.level(true, 100), 8);
        // To zero removes it.
        assert_eq!(book.reduce(&id(1), 0).unwrap().remaining, 0);
        assert!(book.get(&id(1)).is_none());
        assert_eq!(book.level(true, 100), 7);
        assert!(book.reduce(&id(1), 0).is_none());

        // Expire takes off at expiry <= now only.
        assert!(book.expire(2_999).is_empty());
        let gone = book.expire(3_000);
        assert_eq!(gone.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id(2)]);
        assert_eq!(book.level(true, 100), 0);
        assert_eq!(book.best_bid(), Some(99));

        // Cancel-all of an account.
        place(&mut book, order(5, 1, false, 106, 1));
        let gone = book.cancel_where(|r| r.account == acct(1));
        assert_eq!(
            gone.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![id(3), id(5)]
        );
        assert_eq!(book.depth(true, 5), vec![]);
        assert_eq!(book.depth(false, 5), vec![(105, 6)]);
        assert_eq!(book.len(), 1);
        assert_eq!(book.cancel(&id(4)).unwrap().remaining, 6);
        assert!(book.cancel(&id(4)).is_none());
        assert!(book.is_empty());
        assert_eq!(book.best_ask(), None);
    }

    #[test]
    fn orders_lists_bids_then_asks_best_first_in_arrival_order() {
        let mut book = Book::new();
        place(&mut book, order(1, 1, true, 99, 1));
        place(&mut book, order(2, 1, false, 102, 1));
        place(&mut book, order(3, 1, true, 100, 1));
        place(&mut book, order(4, 1, true, 99, 1));
        place(&mut book, order(5, 1, false, 101, 1));
        let ids: Vec<_> = book.orders().map(|r| r.id).collect();
        assert_eq!(ids, vec![id(3), id(1), id(4), id(5), id(2)]);
    }

    /// A deliberately naive book: a list of orders, searched in full.
    #[derive(Default)]
    struct Model {
        orders: Vec<Resting>,
        next_seq: u64,
    }

    impl Model {
        fn crosses(o: &Incoming, r: &Resting) -> bool {
            r.is_buy != o.is_buy
                && if o.is_buy {
                    r.price <= o.price
                } else {
                    r.price >= o.price
                }
        }

        fn place(&mut self, o: Incoming, now: u64) -> Result<Placed, BookError> {
            if o.size == 0 {
                return Err(BookError::ZeroSize);
            }
            if o.expiry_ms <= now {
                return Err(BookError::Expired);
            }
            if self.orders.iter().any(|r| r.id == o.id) {
                return Err(BookError::Duplicate(o.id));
            }
            let takes =
                |r: &Resting| Self::crosses(&o, r) && r.expiry_ms > now && r.account != o.account;
            if o.tif == Tif::PostOnly && self.orders.iter().any(takes) {
                return Err(BookError::WouldTake);
            }
            let mut makers: Vec<Resting> = self
                .orders
                .iter()
                .filter(|r| Self::crosses(&o, r))
                .copied()
                .collect();
            makers.sort_by_key(|r| {
                (
                    if o.is_buy {
                        r.price
                    } else {
                        u128::MAX - r.price
                    },
                    r.seq,
                )
            });
            let mut p = Placed::default();
            let mut left = o.size;
            for mut m in makers {
                if left == 0 {
                    break;
                }
                let why = if m.expiry_ms <= now {
                    Some(RemoveReason::Expired)
                } else if m.account == o.account {
                    Some(RemoveReason::SelfTrade)
                } else {
                    let size = left.min(m.remaining);
                    left -= size;
                    m.remaining -= size;
                    p.matches.push(Match {
                        maker: m.id,
                        maker_account: m.account,
                        maker_key: m.key,
                        taker: o.id,
                        size,
                        price: m.price,
                    });
                    (m.remaining == 0).then_some(RemoveReason::Filled)
                };
                let at = self.orders.iter().position(|r| r.id == m.id).unwrap();
                if let Some(why) = why {
                    self.orders.remove(at);
                    p.removed_makers.push((m, why));
                } else {
                    self.orders[at] = m;
                }
            }
            if left > 0 {
                if o.tif == Tif::Ioc {
                    p.dropped = left;
                } else {
                    p.rested = left;
                    self.orders.push(Resting {
                        id: o.id,
                        account: o.account,
                        key: o.key,
                        is_buy: o.is_buy,
                        price: o.price,
                        remaining: left,
                        expiry_ms: o.expiry_ms,
                        seq: self.next_seq,
                    });
                    self.next_seq += 1;
                }
            }
            Ok(p)
        }

        fn level(&self, is_buy: bool, price: u128) -> u128 {
            self.orders
                .iter()
                .filter(|r| r.is_buy == is_buy && r.price == price)
                .map(|r| r.remaining)
                .sum()
        }

        fn remove_where(&mut self, mut pred: impl FnMut(&Resting) -> bool) -> Vec<Resting> {
            let (gone, kept) = self.orders.iter().partition(|r| pred(r));
            self.orders = kept;
            gone
        }
    }

    /// xorshift64*: a small seeded generator, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn check_against_model(book: &Book, model: &Model, step: usize) {
        assert_eq!(book.len(), model.orders.len(), "step {step}");
        assert_eq!(book.is_empty(), model.orders.is_empty(), "step {step}");
        for r in &model.orders {
            assert_eq!(book.get(&r.id), Some(r), "step {step}");
        }
        let mut listed: Vec<Resting> = book.orders().copied().collect();
        assert_eq!(listed.len(), model.orders.len(), "step {step}");
        for is_buy in [true, false] {
            let mut prices: Vec<u128> = model
                .orders
                .iter()
                .filter(|r| r.is_buy == is_buy)
                .map(|r| r.price)
                .collect();
            prices.sort_unstable();
            prices.dedup();
            if is_buy {
                prices.reverse();
            }
            let want: Vec<(u128, u128)> = prices
                .iter()
                .map(|&p| (p, model.level(is_buy, p)))
                .collect();
            assert_eq!(book.depth(is_buy, usize::MAX), want, "step {step}");
            assert_eq!(
                book.depth(is_buy, 2),
                want[..want.len().min(2)],
                "step {step}"
            );
            for price in 90..=110 {
                assert_eq!(
                    book.level(is_buy, price),
                    model.level(is_buy, price),
                    "step {step}"
                );
            }
            let best = if is_buy {
                book.best_bid()
            } else {
                book.best_ask()
            };
            assert_eq!(best, prices.first().copied(), "step {step}");
        }
        if let (Some(bid), Some(ask)) = (book.best_bid(), book.best_ask()) {
            assert!(bid < ask, "crossed book at step {step}: {bid} >= {ask}");
        }
        // orders(): bids best first, asks best first, arrival order within a level.
        let rank_of = |r: &Resting| {
            (
                !r.is_buy,
                if r.is_buy {
                    u128::MAX - r.price
                } else {
                    r.price
                },
                r.seq,
            )
        };
        assert!(
            listed.windows(2).all(|w| rank_of(&w[0]) < rank_of(&w[1])),
            "step {step}"
        );
        listed.sort_by_key(|r| r.seq);
        let mut want = model.orders.clone();
        want.sort_by_key(|r| r.seq);
        assert_eq!(listed, want, "step {step}");
    }

    #[test]
    fn random_operations_agree_with_a_naive_model() {
        for seed in [0x9E37_79B9_7F4A_7C15_u64, 1, 0xDEAD_BEEF] {
            let mut rng = Rng(seed);
            let mut book = Book::new();
            let mut model = Model::default();
            let mut now = 1_000_u64;
            let mut next_id = 0_u64;
            let (mut fills_seen, mut rests_seen) = (0, 0);
            for step in 0..4_000 {
                now += rng.below(20);
                match rng.below(100) {
                    0..=64 => {
                        // Reuse a recent id now and then, to hit duplicates.
                        let n = if rng.below(10) == 0 && next_id > 0 {
                            next_id - 1 - rng.below(next_id.min(5))
                        } else {
                            next_id += 1;
                            next_id
                        };
                        let tif = match rng.below(10) {
                            0..=5 => Tif::Gtt,
                            6..=7 => Tif::Ioc,
                            _ => Tif::PostOnly,
                        };
                        let o = Incoming {
                            id: id(n),
                            account: acct(rng.below(4) as u8),
                            key: acct(rng.below(8) as u8),
                            is_buy: rng.below(2) == 0,
                            price: 90 + u128::from(rng.below(21)),
                            size: u128::from(rng.below(12)),
                            tif,
                            expiry_ms: now - 5 + rng.below(400),
                        };
                        let got = book.place(o, now);
                        assert_eq!(got, model.place(o, now), "step {step}: {o:?}");
                        if let Ok(p) = got {
                            fills_seen += p.matches.len();
                            rests_seen += usize::from(p.rested > 0);
                        }
                    }
                    65..=79 => {
                        let n = rng.below(next_id + 2);
                        let got = book.cancel(&id(n));
                        let want = model.remove_where(|r| r.id == id(n)).pop();
                        assert_eq!(got, want, "step {step}");
                    }
                    80..=89 => {
                        let n = rng.below(next_id + 2);
                        let to = u128::from(rng.below(8));
                        let got = book.reduce(&id(n), to);
                        let want = model.orders.iter_mut().find(|r| r.id == id(n)).map(|r| {
                            r.remaining = r.remaining.min(to);
                            *r
                        });
                        model.orders.retain(|r| r.remaining > 0);
                        assert_eq!(got, want, "step {step}");
                    }
                    90..=94 => {
                        let a = acct(rng.below(4) as u8);
                        let got = book.cancel_where(|r| r.account == a);
                        let mut want = model.remove_where(|r| r.account == a);
                        want.sort_by_key(|r| r.seq);
                        assert_eq!(got, want, "step {step}");
                    }
                    _ => {
                        let got = book.expire(now);
                        let mut want = model.remove_where(|r| r.expiry_ms <= now);
                        want.sort_by_key(|r| (r.expiry_ms, r.seq));
                        assert_eq!(got, want, "step {step}");
                    }
                }
                check_against_model(&book, &model, step);
            }
            // The run exercised matching and resting, not only refusals.
            assert!(
                fills_seen > 500 && rests_seen > 500,
                "{fills_seen} {rests_seen}"
            );
        }
    }
}
