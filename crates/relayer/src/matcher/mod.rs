//! The matcher for signed orders, behind its handle ([`Matcher`]): session keys place, replace and cancel
//! EIP-712 orders (`keyscope_core::order`) off-chain; the matcher checks each one as its account will check
//! its fills — the key's signature, its live grant and order epoch, its window, market, size and notional
//! rule, the breaker, the uses left, the dead-man deadline, and the account's free margin against
//! everything it already has resting or unsettled — before it acknowledges it, matches it by price-time
//! priority against a book per market ([`book`]), and settles the fills on chain in batches.
//!
//! Inside: [`engine`] (the synchronous state: books, live orders, held margin, pending fills, scheduled
//! cancels), [`chain_view`] (cached reads of keys, margins and markets, refreshed while orders rest),
//! [`journal`] (every acknowledged change, written before its answer), [`settle`] (simulate, bisect,
//! sign, send, follow to inclusion, re-send after a reorg), [`events`] (what subscribers see). The RPC face
//! is `rpc::orders`.
//!
//! What a malicious operator of this matcher can and cannot do is bounded on chain, not here: it can refuse,
//! delay or reorder orders, and pick which crossing orders meet; it cannot fill an order beyond its size, at
//! a worse price than its limit, after its expiry, cancel or revoke, or outside its key's scope (the venue and
//! the account check every fill; see the README's security model of signed orders).

pub(crate) mod book;
mod chain_view;
mod engine;
pub(crate) mod events;
mod journal;
mod settle;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy::{network::EthereumWallet, providers::DynProvider, signers::local::PrivateKeySigner};
use alloy_primitives::{Address, B256, Bytes, U256};
use keyscope_core::{
    bindings::ISignedOrderVenue::Fill,
    key::SignatureError,
    order::{Order, OrderError, check_order, order_hash, verify_order_signature},
    order_request::{REQUEST_WINDOW_MS, Request, RequestAction, RequestError},
    policy::{PolicyRefusal, check_signed_order},
};
use tokio::sync::{broadcast, watch};

pub(crate) use chain_view::ChainReadError;
pub(crate) use engine::{Ack, EngineError};
pub(crate) use events::{FillStatus, MatcherEvent, OrderStatus};
pub(crate) use journal::JournalError;

use crate::config::MatcherConfig;
use chain_view::ChainView;
use engine::{Changes, Engine};
use journal::{Journal, Record, SentBatch};
use settle::{Landing, Settler};

/// Why the matcher refuses an order or a request. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MatchError {
    /// The order's fields or expiry.
    #[error(transparent)]
    Order(#[from] OrderError),
    /// The order's signature is not its key's.
    #[error("the order's signature is not its key's: {0}")]
    Signature(#[from] SignatureError),
    /// Outside the key's scope as its account holds it now.
    #[error("out of the key's scope: {0}")]
    Scope(#[from] PolicyRefusal),
    /// The key's dead-man switch fired: only reduce-only orders.
    #[error(
        "the key's dead-man deadline ({deadline}) passed: only reduce-only orders until the owner's heartbeat"
    )]
    DeadMan {
        /// The deadline (seconds).
        deadline: u64,
    },
    /// A reduce-only order larger than what it can close.
    #[error(
        "reduce-only order larger than the position it would close (position {position}, reduce-only orders \
         resting on that side {resting})"
    )]
    ReduceOnly {
        /// The account's position in the market (18 decimals).
        position: String,
        /// Its resting reduce-only size on the order's side.
        resting: U256,
    },
    /// The request's key is not a live session of its account.
    #[error("key {key} is not a live session key of account {account}")]
    NotASession {
        /// The account named.
        account: Address,
        /// The key that signed.
        key: Address,
    },
    /// A scheduled cancel too far ahead.
    #[error("a scheduled cancel may be at most 24 h ahead")]
    ScheduleTooFar,
    /// The book or the margin check.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A cancel, cancel-all, schedule or subscribe request.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The request was already taken (a replay).
    #[error("this request was already taken: sign a new one (a fresh timestamp)")]
    Replayed,
    /// The request is for another venue.
    #[error("the request is for venue {0}, this matcher's is another")]
    WrongVenue(Address),
    /// The chain did not answer a read the check needs.
    #[error(transparent)]
    Chain(#[from] ChainReadError),
    /// The journal could not be written: the matcher stops taking orders.
    #[error("the matcher's journal failed ({0}); it takes no more orders until restarted")]
    Journal(String),
}

/// What a cancel or schedule request did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestDone {
    /// Orders taken off the book.
    pub cancelled: Vec<B256>,
    /// Orders named that were not resting (filled, cancelled or expired before, or never placed here).
    pub not_resting: Vec<B256>,
    /// The key's scheduled cancel-all after the request (ms), if any.
    pub scheduled_cancel_ms: Option<u64>,
}

/// An order as `keyscope_getOrder` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderView {
    pub order_hash: B256,
    pub order: keyscope_core::order::OrderJson,
    pub status: OrderStatus,
    /// Why it left the book, if it did before filling in full.
    pub reason: Option<String>,
    pub filled: U256,
    pub resting: U256,
    pub placed_ms: u64,
}

/// A market's book, best levels first: (price, size).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BookView {
    pub market_id: u32,
    pub bids: Vec<(U256, U256)>,
    pub asks: Vec<(U256, U256)>,
}

struct State {
    engine: Engine,
    journal: Journal,
    /// Set when a journal write failed: the state may be ahead of the file, so nothing more is taken.
    halted: Option<String>,
}

struct Inner {
    venue: Address,
    chain_id: u64,
    state: Mutex<State>,
    view: ChainView,
    events: broadcast::Sender<MatcherEvent>,
    /// Requests taken, by digest, until they could no longer be fresh.
    taken: Mutex<HashMap<B256, u64>>,
    config: MatcherConfig,
    settler: Settler,
    reorg_depth: u64,
    sync: std::fs::File,
}

/// The matcher's handle.
#[derive(Clone)]
pub(crate) struct Matcher(Arc<Inner>);

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("venue", &self.0.venue)
            .finish_non_exhaustive()
    }
}

/// Why the matcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum MatcherStartError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("matcher.settler_key: {0}")]
    Key(String),
    #[error(
        "the venue {venue} does not let {settler} settle: its owner must call setSettler({settler}, true)"
    )]
    NotSettler { venue: Address, settler: Address },
    #[error("matcher: {0}")]
    Chain(String),
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Matcher {
    /// Opens the journal in `data_dir`, replays it (every acknowledged order rests again; fills not known
    /// settled go out again), checks the settler, and returns the handle with its background tasks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        config: MatcherConfig,
        provider: DynProvider,
        venue: Address,
        chain_id: u64,
        implementation: Address,
        reorg_depth: u64,
        data_dir: &std::path::Path,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), MatcherStartError> {
        let key: PrivateKeySigner =
            keyscope_core::signer::from_hex(config.settler_key.as_deref().unwrap_or_default())
                .map_err(|e| MatcherStartError::Key(e.to_string()))?;
        let settler = Settler {
            provider: provider.clone(),
            address: key.address(),
            wallet: EthereumWallet::from(key),
            venue,
            chain_id,
        };
        match settler.allowed().await {
            Ok(true) => {}
            Ok(false) => {
                return Err(MatcherStartError::NotSettler {
                    venue,
                    settler: settler.address,
                });
            }
            Err(e) => return Err(MatcherStartError::Chain(e.to_string())),
        }
        std::fs::create_dir_all(data_dir).map_err(|source| JournalError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let (journal, records) = Journal::open(&data_dir.join("matcher.journal"))?;
        let (engine, batches) = Engine::replay(records);
        let sync = journal.sync_handle()?;
        let inner = Arc::new(Inner {
            venue,
            chain_id,
            state: Mutex::new(State {
                engine,
                journal,
                halted: None,
            }),
            view: ChainView::new(
                provider,
                venue,
                implementation,
                Duration::from_millis(config.watch_ms),
            ),
            events: broadcast::channel(65_536).0,
            taken: Mutex::default(),
            config,
            settler,
            reorg_depth,
            sync,
        });
        let m = Matcher(inner);
        let tasks = vec![
            tokio::spawn(m.clone().settle_loop(batches, shutdown.clone())),
            tokio::spawn(m.clone().tick_loop(shutdown.clone())),
            tokio::spawn(m.clone().watch_loop(shutdown.clone())),
            tokio::spawn(m.clone().sync_loop(shutdown)),
        ];
        Ok((m, tasks))
    }

    /// The venue orders are settled at.
    pub(crate) fn venue(&self) -> Address {
        self.0.venue
    }

    /// The settler's address.
    pub(crate) fn settler(&self) -> Address {
        self.0.settler.address
    }

    /// Every published event, from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<MatcherEvent> {
        self.0.events.subscribe()
    }

    /// Applies `changes`: journal first (one write), then the events.
    fn commit(&self, state: &mut State, changes: Changes) -> Result<(), MatchError> {
        if let Err(e) = state.journal.append(&changes.records) {
            let why = e.to_string();
            tracing::error!("matcher journal write failed: {why}; the matcher halts");
            state.halted = Some(why.clone());
            return Err(MatchError::Journal(why));
        }
        for ev in changes.events {
            // No subscriber is not an error.
            let _ = self.0.events.send(ev);
        }
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, MatchError> {
        let state = self.0.state.lock().expect("matcher lock");
        if let Some(why) = &state.halted {
            return Err(MatchError::Journal(why.clone()));
        }
        Ok(state)
    }

    /// The checks an order meets before the book sees it: fields and expiry, signature, the key's scope as
    /// its account holds it, the dead-man deadline. Returns its market's margin fraction and the account's
    /// free margin on chain.
    async fn admit(&self, order: &Order, signature: &Bytes) -> Result<(u64, U256), MatchError> {
        let now = now_ms();
        check_order(order, now)?;
        verify_order_signature(self.0.venue, self.0.chain_id, order, signature)?;
        let key = self.0.view.key(order.account, order.key).await?;
        check_signed_order(&key.session, self.0.venue, order, key.epoch, now / 1000)?;
        if !order.reduceOnly && key.heartbeat_deadline != 0 && now / 1000 > key.heartbeat_deadline {
            return Err(MatchError::DeadMan {
                deadline: key.heartbeat_deadline,
            });
        }
        let imf = self.0.view.imf(order.marketId).await?;
        let free = if order.reduceOnly {
            // A reduce-only order holds no margin, so it may only close what is open: a buy a short, a sell
            // a long, no more than the position less the account's other resting reduce-only orders on that
            // side (else it is liquidity that can never settle).
            let position = self.0.view.position(order.account, order.marketId).await?;
            let closable = if order.isBuy == position.is_negative() {
                position.unsigned_abs().saturating_to::<u128>()
            } else {
                0
            };
            let resting = self
                .0
                .state
                .lock()
                .expect("lock")
                .engine
                .resting_reduce_only(order.account, order.marketId, order.isBuy);
            if order.size > closable.saturating_sub(resting) {
                return Err(MatchError::ReduceOnly {
                    position: position.to_string(),
                    resting: U256::from(resting),
                });
            }
            U256::ZERO
        } else {
            self.0.view.margin(order.account).await?.free()
        };
        Ok((imf, free))
    }

    /// Places a signed order: checked, matched, rested, journaled, then acknowledged.
    pub(crate) async fn place(&self, order: Order, signature: Bytes) -> Result<Ack, MatchError> {
        let (imf, free) = self.admit(&order, &signature).await?;
        let hash = order_hash(self.0.venue, self.0.chain_id, &order);
        let mut state = self.lock()?;
        let (ack, changes) = state
            .engine
            .place(order, signature, hash, imf, free, now_ms())?;
        self.commit(&mut state, changes)?;
        Ok(ack)
    }

    /// Cancels resting order `old` and places `order` (same account, key, market and side) under one lock:
    /// no match can fall between. The new order is checked first; if the book refuses it (a post-only that
    /// would take), the old one stays cancelled and the error says so.
    pub(crate) async fn replace(
        &self,
        old: B256,
        order: Order,
        signature: Bytes,
    ) -> Result<Ack, MatchError> {
        let (imf, free) = self.admit(&order, &signature).await?;
        let hash = order_hash(self.0.venue, self.0.chain_id, &order);
        let ack = {
            let mut state = self.lock()?;
            // Everything that could refuse the new order is asked first: refused, the old one stays.
            state
                .engine
                .check_replacement(&old, &order, hash, imf, free)?;
            let (_, cancelled) = state.engine.cancel(
                order.account,
                order.key,
                Some(&[old]),
                "replaced by its key",
            )?;
            self.commit(&mut state, cancelled)?;
            let (ack, changes) = state
                .engine
                .place(order, signature, hash, imf, free, now_ms())?;
            self.commit(&mut state, changes)?;
            ack
        };
        Ok(ack)
    }

    /// Checks a signed request (fresh, the key's, not taken before) and does it: cancel orders, cancel all,
    /// schedule a cancel-all. A subscribe request is only checked here (the RPC face streams).
    pub(crate) async fn request(
        &self,
        req: &Request,
        signature: &[u8],
    ) -> Result<RequestDone, MatchError> {
        if req.venue != self.0.venue {
            return Err(MatchError::WrongVenue(req.venue));
        }
        let now = now_ms();
        let digest = req.verify(self.0.chain_id, signature, now)?;
        if let RequestAction::ScheduleCancel { at_ms } = req.action {
            // The floor counts from the matcher's clock too (a request may be signed up to 5 s ago), less a
            // second for the request's way here.
            if at_ms != 0
                && at_ms + 1_000 < now + keyscope_core::order_request::MIN_SCHEDULED_CANCEL_MS
            {
                return Err(RequestError::ScheduleTooSoon {
                    at_ms,
                    ahead_ms: at_ms as i64 - now as i64,
                }
                .into());
            }
            if at_ms > now + 24 * 3600 * 1000 {
                return Err(MatchError::ScheduleTooFar);
            }
        }
        // Only a key of the account may ask: a live session, or (to pull its quotes after a revoke) a key
        // with orders resting here.
        let has_orders = !self
            .0
            .state
            .lock()
            .expect("lock")
            .engine
            .resting_of(req.account, req.key)
            .is_empty();
        if !has_orders {
            let active = match self.0.view.key(req.account, req.key).await {
                Ok(k) => k.session.active,
                Err(ChainReadError::NotKeyscope(_)) => false,
                Err(e) => return Err(e.into()),
            };
            if !active {
                return Err(MatchError::NotASession {
                    account: req.account,
                    key: req.key,
                });
            }
        }
        {
            let mut taken = self.0.taken.lock().expect("lock");
            taken.retain(|_, until| *until > now);
            if taken.contains_key(&digest) {
                return Err(MatchError::Replayed);
            }
            taken.insert(digest, req.timestamp_ms + 2 * REQUEST_WINDOW_MS);
        }
        let (account, key) = (req.account, req.key);
        let mut state = self.lock()?;
        let cancelled = match &req.action {
            RequestAction::Cancel(hashes) => {
                let (done, changes) =
                    state
                        .engine
                        .cancel(account, key, Some(hashes), "cancelled by its key")?;
                self.commit(&mut state, changes)?;
                done
            }
            RequestAction::CancelAll => {
                let (done, changes) =
                    state
                        .engine
                        .cancel(account, key, None, "cancel-all by its key")?;
                self.commit(&mut state, changes)?;
                done
            }
            RequestAction::ScheduleCancel { at_ms } => {
                let changes = state.engine.schedule(account, key, *at_ms);
                self.commit(&mut state, changes)?;
                vec![]
            }
            RequestAction::Subscribe { .. } => vec![],
        };
        let not_resting = match &req.action {
            RequestAction::Cancel(hashes) => hashes
                .iter()
                .filter(|h| !cancelled.contains(h))
                .copied()
                .collect(),
            _ => vec![],
        };
        Ok(RequestDone {
            cancelled,
            not_resting,
            scheduled_cancel_ms: state.engine.scheduled(account, key),
        })
    }

    /// Cancels every resting order of (account, key): its subscription with cancel-on-disconnect closed.
    pub(crate) fn disconnected(&self, account: Address, key: Address) {
        let Ok(mut state) = self.lock() else {
            return;
        };
        if let Ok((done, changes)) = state
            .engine
            .cancel(account, key, None, "cancel on disconnect")
        {
            if !done.is_empty() {
                tracing::info!(%account, %key, orders = done.len(), "cancel on disconnect");
            }
            let _ = self.commit(&mut state, changes);
        }
    }

    /// An order: live, or one of the last 10,000 that finished (with how it ended).
    pub(crate) fn order(&self, hash: B256) -> Option<OrderView> {
        let state = self.0.state.lock().expect("matcher lock");
        state.engine.lookup(&hash).map(|l| {
            let (status, reason) = l.status();
            OrderView {
                order_hash: l.hash,
                order: (&l.order).into(),
                status,
                reason,
                filled: U256::from(l.matched),
                resting: U256::from(if l.resting {
                    l.order.size - l.matched
                } else {
                    0
                }),
                placed_ms: l.placed_ms,
            }
        })
    }

    /// The `depth` best levels of each side of `market`.
    pub(crate) fn book(&self, market: u32, depth: usize) -> BookView {
        let state = self.0.state.lock().expect("matcher lock");
        let side = |is_buy| {
            state
                .engine
                .book(market)
                .map(|b| {
                    b.depth(is_buy, depth)
                        .into_iter()
                        .map(|(p, s)| (U256::from(p), U256::from(s)))
                        .collect()
                })
                .unwrap_or_default()
        };
        BookView {
            market_id: market,
            bids: side(true),
            asks: side(false),
        }
    }

    /// Takes expired orders off and fires scheduled cancels, every 50 ms.
    async fn tick_loop(self, mut shutdown: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => break,
            }
            let Ok(mut state) = self.lock() else {
                continue;
            };
            let changes = state.engine.tick(now_ms());
            let _ = self.commit(&mut state, changes);
        }
    }

    /// Flushes the journal to disk every `sync_ms`.
    async fn sync_loop(self, mut shutdown: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_millis(self.0.config.sync_ms));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => break,
            }
            let file = self.0.sync.try_clone();
            let _ = tokio::task::spawn_blocking(move || file.map(|f| f.sync_data())).await;
        }
        let _ = self.0.sync.sync_data();
    }

    /// Reads again, every `watch_ms`, the keys that have orders resting and their accounts' margins; takes
    /// off the orders their account would now refuse (revoked or re-granted key, bumped epoch, expired
    /// window, tripped breaker, passed dead-man deadline).
    async fn watch_loop(self, mut shutdown: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_millis(self.0.config.watch_ms));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => break,
            }
            self.0.view.forget_margins();
            let keys = self.0.state.lock().expect("lock").engine.resting_keys();
            for (account, key) in keys {
                let Ok(ks) = self.0.view.refresh_key(account, key).await else {
                    continue;
                };
                let now = now_ms() / 1000;
                let s = &ks.session;
                let reason = if !s.active {
                    Some("the key's session is no longer active on its account (revoked or killed)")
                } else if now > s.validUntil.to::<u64>() {
                    Some("the key's session expired")
                } else {
                    None
                };
                let Ok(mut state) = self.lock() else {
                    break;
                };
                let changes = state.engine.cancel_where(
                    |l| {
                        let o = &l.order;
                        (o.account, o.key) == (account, key)
                            && (reason.is_some()
                                || o.grantId != s.grantId
                                || o.epoch != ks.epoch
                                || (!o.reduceOnly
                                    && (s.tripped
                                        || (ks.heartbeat_deadline != 0
                                            && now > ks.heartbeat_deadline))))
                    },
                    reason.unwrap_or(
                        "the key's state on chain refuses it now (re-granted key, bumped order epoch, \
                         tripped breaker or passed dead-man deadline)",
                    ),
                );
                let _ = self.commit(&mut state, changes);
            }
        }
    }

    /// The fills of `ids` as the venue takes them; a fill whose order is gone is left out.
    fn fills_of(&self, ids: &[u64]) -> Vec<(u64, Fill)> {
        let state = self.0.state.lock().expect("lock");
        let e = &state.engine;
        ids.iter()
            .filter_map(|id| {
                let f = e.fills.get(id)?;
                let (m, t) = (e.order(&f.maker)?, e.order(&f.taker)?);
                Some((
                    *id,
                    Fill {
                        maker: m.order.clone(),
                        makerSignature: m.signature.clone(),
                        taker: t.order.clone(),
                        takerSignature: t.signature.clone(),
                        size: f.size,
                    },
                ))
            })
            .collect()
    }

    /// Ends `fills` (settled or refused), journaled, with their events.
    fn finish(&self, fills: &[u64], status: FillStatus, tx: Option<B256>, reason: Option<&str>) {
        let Ok(mut state) = self.lock() else {
            return;
        };
        let changes = state.engine.finish(fills, status, tx, reason);
        let _ = self.commit(&mut state, changes);
    }

    /// A fill the chain refuses: ended with the chain's reason. The side at fault — the one whose account
    /// or position the matcher's own checks, read afresh, now refuse; the taker (the newer order) when
    /// neither does — has its rest cancelled; the other side gets the fill's size back on the book, so a
    /// taker cannot make an innocent maker's quote disappear by sending a fill it knows will fail.
    async fn refuse(&self, id: u64, reason: &str) {
        let sides = {
            let state = self.0.state.lock().expect("lock");
            state.engine.fills.get(&id).and_then(|f| {
                Some((
                    f.size,
                    state.engine.order(&f.maker)?.clone(),
                    state.engine.order(&f.taker)?.clone(),
                ))
            })
        };
        tracing::warn!(fill = id, "the chain refuses a fill: {reason}");
        let why = format!("refused at settlement: {reason}");
        let Some((size, maker, taker)) = sides else {
            self.finish(&[id], FillStatus::Refused, None, Some(&why));
            return;
        };
        let maker_fault = self.fault(&maker.order, size).await;
        let taker_fault = self.fault(&taker.order, size).await;
        let at_fault: Vec<B256> = match (maker_fault, taker_fault) {
            (true, true) => vec![maker.hash, taker.hash],
            (true, false) => vec![maker.hash],
            _ => vec![taker.hash],
        };
        if let Ok(mut state) = self.lock() {
            for innocent in [maker.hash, taker.hash] {
                if !at_fault.contains(&innocent) {
                    let changes = state.engine.unmatch(innocent, size, now_ms());
                    let _ = self.commit(&mut state, changes);
                }
            }
        }
        self.finish(&[id], FillStatus::Refused, None, Some(&why));
        if let Ok(mut state) = self.lock() {
            let changes = state
                .engine
                .cancel_where(|l| at_fault.contains(&l.hash), &why);
            let _ = self.commit(&mut state, changes);
        }
    }

    /// Whether the chain would refuse `order`'s side of a fill of `size` for its own account's reasons, as
    /// the matcher can tell from a fresh read: its key's scope and dead-man deadline, and for a reduce-only
    /// order its position. A read that fails counts as no fault.
    async fn fault(&self, order: &Order, size: u128) -> bool {
        let now = now_ms() / 1000;
        let Ok(key) = self.0.view.refresh_key(order.account, order.key).await else {
            return false;
        };
        if check_signed_order(&key.session, self.0.venue, order, key.epoch, now).is_err() {
            return true;
        }
        if !order.reduceOnly && key.heartbeat_deadline != 0 && now > key.heartbeat_deadline {
            return true;
        }
        if order.reduceOnly {
            let Ok(position) = self.0.view.position(order.account, order.marketId).await else {
                return false;
            };
            let closable = if order.isBuy == position.is_negative() {
                position.unsigned_abs().saturating_to::<u128>()
            } else {
                0
            };
            return size > closable;
        }
        false
    }

    /// Settles matched fills, one transaction at a time, each followed to inclusion; watches included ones
    /// for `reorg_depth` blocks and sends a batch a reorg undid again.
    async fn settle_loop(
        self,
        resumed: std::collections::BTreeMap<u64, SentBatch>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut flight: Option<(SentBatch, Instant)> = None;
        let mut buried: Vec<(SentBatch, u64)> = Vec::new();
        // Batches a previous run sent and did not see settled: followed first, in order.
        let mut queue: std::collections::VecDeque<SentBatch> = resumed.into_values().collect();
        let mut every =
            tokio::time::interval(Duration::from_millis(self.0.config.settle_interval_ms));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = self
                .settle_round(&mut flight, &mut buried, &mut queue)
                .await
            {
                tracing::warn!("{e}");
            }
        }
    }

    async fn settle_round(
        &self,
        flight: &mut Option<(SentBatch, Instant)>,
        buried: &mut Vec<(SentBatch, u64)>,
        queue: &mut std::collections::VecDeque<SentBatch>,
    ) -> Result<(), settle::SettleError> {
        let s = &self.0.settler;
        let head = s.head().await?;
        // Included batches a reorg took out go out again, as they were signed.
        let mut i = 0;
        while i < buried.len() {
            let (b, block) = &buried[i];
            if head >= block + self.0.reorg_depth {
                buried.swap_remove(i);
                continue;
            }
            if s.landing(b.tx_hash).await? == Landing::Nowhere {
                tracing::warn!(tx = %b.tx_hash, "a reorg took out a settlement: sending it again");
                let (b, _) = buried.swap_remove(i);
                s.send(&b.raw).await?;
                self.publish_fills(&b.fills, FillStatus::Submitted, Some(b.tx_hash));
                queue.push_front(b);
                continue;
            }
            i += 1;
        }
        if flight.is_none() {
            if let Some(b) = queue.pop_front() {
                *flight = Some((b, Instant::now() - Duration::from_secs(3600)));
            }
        }
        if let Some((b, sent_at)) = flight.take() {
            match s.landing(b.tx_hash).await? {
                Landing::Included {
                    block,
                    success: true,
                } => {
                    self.finish(&b.fills, FillStatus::Settled, Some(b.tx_hash), None);
                    self.0.view.forget_margins();
                    buried.push((b, block));
                }
                Landing::Included { success: false, .. } => {
                    tracing::warn!(tx = %b.tx_hash, "a settlement reverted on chain: its fills are checked again");
                    self.unsend(&b);
                }
                Landing::Nowhere => {
                    if s.mined_nonce().await? > b.nonce {
                        // Its nonce went to another transaction: this one can never land.
                        self.unsend(&b);
                    } else {
                        if sent_at.elapsed() > Duration::from_secs(12) {
                            s.send(&b.raw).await?;
                            *flight = Some((b, Instant::now()));
                        } else {
                            *flight = Some((b, sent_at));
                        }
                        return Ok(());
                    }
                }
            }
        }
        if flight.is_some() || !queue.is_empty() {
            return Ok(());
        }
        let ids: Vec<u64> = {
            let state = self.0.state.lock().expect("lock");
            state
                .engine
                .unsent(self.0.config.max_fills_per_batch)
                .iter()
                .map(|f| f.id)
                .collect()
        };
        if ids.is_empty() {
            return Ok(());
        }
        let mut batch = self.fills_of(&ids);
        loop {
            let fills: Vec<Fill> = batch.iter().map(|(_, f)| f.clone()).collect();
            let (n, why) = s.passing_prefix(&fills).await?;
            let Some(why) = why else {
                break;
            };
            let (bad, _) = batch.remove(n);
            self.refuse(bad, &why).await;
            if batch.is_empty() {
                return Ok(());
            }
        }
        let fills: Vec<Fill> = batch.iter().map(|(_, f)| f.clone()).collect();
        let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
        let nonce = s.next_nonce().await?;
        let (raw, tx_hash) = s.sign(&fills, nonce).await?;
        let sent = SentBatch {
            id: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or_default(),
            fills: ids.clone(),
            nonce,
            tx_hash,
            raw,
        };
        {
            let Ok(mut state) = self.lock() else {
                return Ok(());
            };
            state.engine.sent(&ids, sent.id);
            if self
                .commit(
                    &mut state,
                    Changes {
                        records: vec![Record::Batch(sent.clone())],
                        events: vec![],
                    },
                )
                .is_err()
            {
                return Ok(());
            }
        }
        s.send(&sent.raw).await?;
        tracing::info!(tx = %tx_hash, fills = ids.len(), nonce, "settlement sent");
        self.publish_fills(&ids, FillStatus::Submitted, Some(tx_hash));
        *flight = Some((sent, Instant::now()));
        Ok(())
    }

    /// A batch that never landed: its fills go out again (checked again first).
    fn unsend(&self, b: &SentBatch) {
        let Ok(mut state) = self.lock() else {
            return;
        };
        for id in &b.fills {
            if let Some(f) = state.engine.fills.get_mut(id) {
                f.batch = None;
            }
        }
        let _ = self.commit(
            &mut state,
            Changes {
                records: vec![Record::BatchUnsent { id: b.id }],
                events: vec![],
            },
        );
    }

    /// Tells both orders of each fill where it stands.
    fn publish_fills(&self, ids: &[u64], status: FillStatus, tx: Option<B256>) {
        let state = self.0.state.lock().expect("lock");
        for ev in state.engine.fill_updates(ids, status, tx) {
            let _ = self.0.events.send(ev);
        }
    }
}
