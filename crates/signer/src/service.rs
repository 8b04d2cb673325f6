//! The decision for one sign request: the key the op's nonce names must be held here; the op must be for
//! the configured account and pass the key's scope as the chain last reported it
//! ([`keyscope_core::policy`]) and the sidecar's rate limit; then the key signs and the decision is
//! recorded. Refusals are recorded too. Between re-reads of the chain, each signature's maximum fee is
//! taken off the cached budget, so a burst cannot be signed past what the key has left.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use alloy::providers::Provider;
use alloy_primitives::{Address, B256, Bytes, U256};
use keyscope_core::{
    bindings::{ISessionManager, ITradingAccount::SessionInfo},
    fees::max_op_cost,
    key::{Curve, KeySigner},
    order::{Order, OrderError, OrderJson, order_digest, order_hash, sign_order},
    order_request::{Request, RequestAction, RequestError},
    policy::{PolicyRefusal, check_session_op, check_signed_order, nonce_key},
    rpc_op::RpcUserOperation,
    scope::Rate,
    session::{grant_binding, session_op_digest, sign_session_op},
    user_op::{PackedUserOperation, user_op_hash},
};
use serde_json::{Value, json};

use crate::{
    SignerError,
    audit::{AuditLog, Decision},
    config::LoadedKey,
    limiter::Limiter,
    quorum::{QuorumKey, SlotKey},
};

/// Why a request was not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The signer holds no key with this id.
    #[error("this signer holds no key {0}")]
    UnknownKey(Address),
    /// The op's userOpHash cannot be computed.
    #[error("the op has no userOpHash this signer can compute: {0}")]
    Unhashable(String),
    /// The op is for another account.
    #[error("the op is for account {got}; this signer signs for {expected}")]
    WrongAccount {
        /// The account the op names.
        got: Address,
        /// The account this signer signs for.
        expected: Address,
    },
    /// The key's session has not been read from the chain yet.
    #[error("the key's session has not been read from the chain yet")]
    NoSession,
    /// The op is out of the key's scope.
    #[error("out of scope: {0}")]
    Policy(#[from] PolicyRefusal),
    /// The signer's own rate limit for the key is spent.
    #[error("rate limited by the signer: next signature in {wait_ms} ms")]
    RateLimited {
        /// How long until the next signature may be made (ms).
        wait_ms: u64,
    },
    /// The key failed to sign.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The order does not parse or is invalid.
    #[error("not an order: {0}")]
    BadOrder(OrderError),
    /// The matcher request does not parse or is invalid.
    #[error("not a request to sign: {0}")]
    BadRequest(RequestError),
    /// The co-signature asked for is not one this quorum member gives.
    #[error("not a co-signature this member gives: {0}")]
    NotCosignable(String),
}

/// A signed op.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signed {
    /// The full `userOp.signature`.
    pub signature: Bytes,
    /// The op's ERC-4337 hash.
    pub user_op_hash: B256,
    /// The op's own expiry, which the signature binds.
    pub valid_until: u64,
    /// The key that signed.
    pub key: Address,
}

/// A signed order: the key's signature over the order's nested digest at the venue, and the order's id
/// there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedOrder {
    /// 65 bytes (secp256k1) or 128 bytes `r ‖ s ‖ x ‖ y` (P-256), as the account checks it at settlement.
    pub signature: Bytes,
    /// The order's id at the venue (`PerpVenue.orderHash`).
    pub order_hash: B256,
    /// The key that signed.
    pub key: Address,
}

/// A signed matcher request (`keyscope_core::order_request`): the key's signature over its digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedRequest {
    /// 65 bytes (secp256k1) or 128 bytes `r ‖ s ‖ x ‖ y` (P-256), as a matcher checks it.
    pub signature: Bytes,
    /// What was signed: [`Request::digest`] on the sidecar's chain.
    pub digest: B256,
    /// The key that signed.
    pub key: Address,
}

/// A matcher request as the socket carries it: the request's fields, its action by name
/// (`cancel` with `orderHashes`, `cancelAll`, `scheduleCancel` with `atMs` — 0 clears —, `subscribe` with
/// `cancelOnDisconnect`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestParams {
    /// The venue whose matcher the request is for.
    pub venue: Address,
    /// The account whose orders it concerns.
    pub account: Address,
    /// The session key to sign it.
    pub key: Address,
    /// The action by name: `cancel`, `cancelAll`, `scheduleCancel` or `subscribe`.
    pub action: String,
    /// The orders to cancel (with `cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_hashes: Option<Vec<B256>>,
    /// When to cancel, ms since the epoch (with `scheduleCancel`; 0 clears).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// Whether to cancel on disconnect (with `subscribe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_on_disconnect: Option<bool>,
    /// When the request is made (ms since the epoch).
    pub timestamp_ms: u64,
}

impl From<&Request> for RequestParams {
    fn from(r: &Request) -> Self {
        let (action, order_hashes, at_ms, cancel_on_disconnect) = match &r.action {
            RequestAction::Cancel(hashes) => ("cancel", Some(hashes.clone()), None, None),
            RequestAction::CancelAll => ("cancelAll", None, None, None),
            RequestAction::ScheduleCancel { at_ms } => ("scheduleCancel", None, Some(*at_ms), None),
            RequestAction::Subscribe {
                cancel_on_disconnect,
            } => ("subscribe", None, None, Some(*cancel_on_disconnect)),
        };
        Self {
            venue: r.venue,
            account: r.account,
            key: r.key,
            action: action.into(),
            order_hashes,
            at_ms,
            cancel_on_disconnect,
            timestamp_ms: r.timestamp_ms,
        }
    }
}

impl RequestParams {
    /// The request, if its action is known and carries what that action needs.
    pub fn to_request(&self) -> Result<Request, String> {
        let action = match self.action.as_str() {
            "cancel" => RequestAction::Cancel(
                self.order_hashes
                    .clone()
                    .ok_or("action cancel needs orderHashes")?,
            ),
            "cancelAll" => RequestAction::CancelAll,
            "scheduleCancel" => RequestAction::ScheduleCancel {
                at_ms: self
                    .at_ms
                    .ok_or("action scheduleCancel needs atMs (0 clears)")?,
            },
            "subscribe" => RequestAction::Subscribe {
                cancel_on_disconnect: self.cancel_on_disconnect.unwrap_or(false),
            },
            other => {
                return Err(format!(
                    "unknown action {other:?}: use cancel, cancelAll, scheduleCancel or subscribe"
                ));
            }
        };
        Ok(Request {
            venue: self.venue,
            account: self.account,
            key: self.key,
            action,
            timestamp_ms: self.timestamp_ms,
        })
    }
}

/// A held key as the socket lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    /// The key's name from the config.
    pub name: String,
    /// The key's on-chain name (address or P-256 key id).
    pub id: Address,
    /// The curve it signs on.
    pub curve: Curve,
}

struct Slot {
    name: String,
    key: SlotKey,
    limiter: Mutex<Limiter>,
}

#[derive(Default)]
struct View {
    sessions: HashMap<Address, SessionInfo>,
    /// Each key's order epoch (`orderEpoch(key)`): its signed orders must carry it.
    epochs: HashMap<Address, u32>,
    chain_time: u64,
    read_at: Option<Instant>,
}

/// The sidecar's state: its keys, the sessions last read, the audit trail.
pub struct SigningService {
    account: Address,
    chain_id: u64,
    entry_point: Address,
    slots: HashMap<Address, Slot>,
    view: RwLock<View>,
    audit: Mutex<AuditLog>,
}

impl SigningService {
    /// A service signing for `account` on chain `chain_id` (EntryPoint `entry_point`) with `keys`.
    pub fn new(
        account: Address,
        chain_id: u64,
        entry_point: Address,
        keys: Vec<LoadedKey>,
        audit: AuditLog,
    ) -> Self {
        let slots = keys
            .into_iter()
            .map(|k| {
                (
                    k.key.id(),
                    Slot {
                        name: k.name,
                        key: SlotKey::Held(k.key),
                        limiter: Mutex::new(Limiter::new(k.rate)),
                    },
                )
            })
            .collect();
        Self {
            account,
            chain_id,
            entry_point,
            slots,
            view: RwLock::default(),
            audit: Mutex::new(audit),
        }
    }

    /// Adds the quorum key this sidecar holds a share of, named `name`, limited to `rate`.
    pub fn with_quorum(mut self, name: String, key: Arc<QuorumKey>, rate: Rate) -> Self {
        self.slots.insert(
            key.id,
            Slot {
                name,
                key: SlotKey::Quorum(key),
                limiter: Mutex::new(Limiter::new(rate)),
            },
        );
        self
    }

    /// The keys held, by name, id and curve.
    pub fn keys(&self) -> Vec<KeyInfo> {
        let mut out: Vec<KeyInfo> = self
            .slots
            .iter()
            .map(|(id, s)| KeyInfo {
                name: s.name.clone(),
                id: *id,
                curve: s.key.curve(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Re-reads every held key's session and the chain's time.
    pub async fn refresh<P: Provider>(&self, provider: &P) -> Result<(), SignerError> {
        let chain = |e: String| SignerError::Chain(e);
        let manager = ISessionManager::new(self.account, provider);
        let mut sessions = HashMap::new();
        let mut epochs = HashMap::new();
        for id in self.slots.keys() {
            let info = manager
                .getSession(*id)
                .call()
                .await
                .map_err(|e| chain(format!("getSession({id}) on {}: {e}", self.account)))?;
            sessions.insert(*id, info);
            let epoch = manager
                .orderEpoch(*id)
                .call()
                .await
                .map_err(|e| chain(format!("orderEpoch({id}) on {}: {e}", self.account)))?;
            epochs.insert(*id, epoch);
        }
        let block = provider
            .get_block_by_number(alloy::rpc::types::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| chain(e.to_string()))?
            .ok_or_else(|| chain("no latest block".into()))?;
        let mut view = self.view.write().expect("no panic while holding the view");
        *view = View {
            sessions,
            epochs,
            chain_time: block.header.timestamp,
            read_at: Some(Instant::now()),
        };
        Ok(())
    }

    /// The chain's time as of the last read, plus the time since.
    pub fn now(&self) -> u64 {
        let view = self.view.read().expect("no panic while holding the view");
        view.chain_time + view.read_at.map_or(0, |t| t.elapsed().as_secs())
    }

    /// Signs `op` for the key its nonce names, expiring at `valid_until` (default: the key's max op ttl
    /// from now), if every check passes; records the decision either way.
    pub async fn sign(
        &self,
        op: &PackedUserOperation,
        valid_until: Option<u64>,
    ) -> Result<Signed, Refused> {
        let key = nonce_key(op);
        let hashed = user_op_hash(op, self.entry_point, self.chain_id);
        let hash = hashed.clone().unwrap_or_default();
        let now = self.now();
        let result = match hashed {
            Ok(hash) => self.decide(op, key, hash, now, valid_until).await,
            Err(e) => Err(Refused::Unhashable(e.to_string())),
        };
        let (outcome, detail) = match &result {
            Ok((s, members)) => (
                "signed",
                format!("validUntil {}{}", s.valid_until, quorum_note(members)),
            ),
            Err(e) => ("refused", e.to_string()),
        };
        self.record(Decision {
            time: now,
            key,
            account: op.sender,
            user_op_hash: hash,
            outcome: outcome.into(),
            detail,
        })?;
        result.map(|(signed, _)| signed)
    }

    /// Appends `decision` to the trail; a decision that cannot be recorded is not handed out.
    fn record(&self, decision: Decision) -> Result<(), Refused> {
        self.audit
            .lock()
            .expect("no panic while holding the audit log")
            .record(decision)
            .map_err(|e| Refused::Signing(format!("the audit trail cannot be written: {e}")))
    }

    /// Signs `order` for `venue` with the key it names, if the order is well formed and unexpired, for this
    /// signer's account, and within the key's scope as the account checks a fill of it
    /// ([`check_signed_order`]: grant, order epoch, window, the venue's order rule — market, size, notional at
    /// the limit, reduce-only — breaker, uses), and the sidecar's rate limit allows it (reduce-only orders
    /// skip it, as the account's rate limit skips their fills). Records the decision either way, under the
    /// order's id at the venue.
    pub async fn sign_order(&self, venue: Address, order: &Order) -> Result<SignedOrder, Refused> {
        let now = self.now();
        let hash = order_hash(venue, self.chain_id, order);
        let result = self.decide_order(venue, order, now).await;
        let detail = match &result {
            Ok((_, members)) => format!(
                "order at venue {venue}, expiry {} ms{}",
                order.expiry,
                quorum_note(members)
            ),
            Err(e) => format!("order at venue {venue}: {e}"),
        };
        let outcome = if result.is_ok() { "signed" } else { "refused" };
        self.record(Decision {
            time: now,
            key: order.key,
            account: order.account,
            user_op_hash: hash,
            outcome: outcome.into(),
            detail,
        })?;
        result.map(|(signature, _)| SignedOrder {
            signature,
            order_hash: hash,
            key: order.key,
        })
    }

    /// Signs `order` if [`Self::check_order`] passes; with the quorum members who took part, for a quorum
    /// key.
    async fn decide_order(
        &self,
        venue: Address,
        order: &Order,
        now: u64,
    ) -> Result<(Bytes, Option<Vec<u16>>), Refused> {
        let slot = self.check_order(venue, order, now)?;
        let signer = slot.key.for_context(order_context(venue, order));
        let signature = sign_order(&signer, venue, self.chain_id, order)
            .await
            .map_err(|e| Refused::Signing(e.to_string()))?;
        Ok((signature, signer.members()))
    }

    /// Every check an order meets before it is signed: its key held here, for this account, well formed
    /// and unexpired, in the key's scope, within the rate limit (taken).
    fn check_order(&self, venue: Address, order: &Order, now: u64) -> Result<&Slot, Refused> {
        let slot = self
            .slots
            .get(&order.key)
            .ok_or(Refused::UnknownKey(order.key))?;
        if order.account != self.account {
            return Err(Refused::WrongAccount {
                got: order.account,
                expected: self.account,
            });
        }
        keyscope_core::order::check_order(order, now * 1000).map_err(Refused::BadOrder)?;
        let (session, epoch) = {
            let view = self.view.read().expect("no panic while holding the view");
            match (view.sessions.get(&order.key), view.epochs.get(&order.key)) {
                (Some(s), Some(e)) => (s.clone(), *e),
                _ => return Err(Refused::NoSession),
            }
        };
        check_signed_order(&session, venue, order, epoch, now)?;
        if !order.reduceOnly {
            self.take_rate(slot)?;
        }
        Ok(slot)
    }

    /// Signs a matcher request (cancel, cancel-all, schedule a cancel-all, subscribe) with the key it names,
    /// if this sidecar holds the key, the request is for this signer's account and its fields make sense
    /// ([`Request::check_fields`]: a cancel names an order, a schedule is far enough ahead or clears).
    /// Requests only take risk off or read, so they skip the rate limit, as the account's cancels do.
    /// Records the decision either way, under the request's digest.
    pub async fn sign_request(&self, request: &Request) -> Result<SignedRequest, Refused> {
        let digest = request.digest(self.chain_id);
        let result = self.decide_request(request).await;
        let what = match &request.action {
            RequestAction::Cancel(hashes) => format!("cancel of {} orders", hashes.len()),
            RequestAction::CancelAll => "cancel-all".into(),
            RequestAction::ScheduleCancel { at_ms: 0 } => "scheduled cancel cleared".into(),
            RequestAction::ScheduleCancel { at_ms } => {
                format!("cancel-all scheduled at {at_ms} ms")
            }
            RequestAction::Subscribe {
                cancel_on_disconnect,
            } => format!("subscribe (cancel on disconnect: {cancel_on_disconnect})"),
        };
        let detail = match &result {
            Ok(_) => format!(
                "matcher request at venue {}: {what}, timestamp {} ms",
                request.venue, request.timestamp_ms
            ),
            Err(e) => format!("matcher request at venue {}: {what}: {e}", request.venue),
        };
        let outcome = if result.is_ok() { "signed" } else { "refused" };
        self.record(Decision {
            time: self.now(),
            key: request.key,
            account: request.account,
            user_op_hash: digest,
            outcome: outcome.into(),
            detail,
        })?;
        result.map(|signature| SignedRequest {
            signature,
            digest,
            key: request.key,
        })
    }

    /// The slot of the request's key, if held here and the request is for this signer's account.
    fn check_request(&self, request: &Request) -> Result<&Slot, Refused> {
        let slot = self
            .slots
            .get(&request.key)
            .ok_or(Refused::UnknownKey(request.key))?;
        if request.account != self.account {
            return Err(Refused::WrongAccount {
                got: request.account,
                expected: self.account,
            });
        }
        Ok(slot)
    }

    async fn decide_request(&self, request: &Request) -> Result<Bytes, Refused> {
        let slot = self.check_request(request)?;
        let context = json!({ "request": RequestParams::from(request) });
        request
            .sign(&slot.key.for_context(context), self.chain_id)
            .await
            .map_err(|e| match e {
                RequestError::Signing(e) => Refused::Signing(e.to_string()),
                other => Refused::BadRequest(other),
            })
    }

    fn take_rate(&self, slot: &Slot) -> Result<(), Refused> {
        slot.limiter
            .lock()
            .expect("no panic while holding a limiter")
            .take(Instant::now())
            .map_err(|wait| Refused::RateLimited {
                wait_ms: wait.as_millis().max(1) as u64,
            })
    }

    /// Every check an op meets before it is signed: its key held here, for this account, in the key's
    /// scope at `valid_until` (default: the key's max op ttl from now), within the rate limit (taken).
    fn check_op(
        &self,
        op: &PackedUserOperation,
        key: Address,
        now: u64,
        valid_until: Option<u64>,
    ) -> Result<(&Slot, SessionInfo, u64), Refused> {
        let slot = self.slots.get(&key).ok_or(Refused::UnknownKey(key))?;
        if op.sender != self.account {
            return Err(Refused::WrongAccount {
                got: op.sender,
                expected: self.account,
            });
        }
        let session = self
            .view
            .read()
            .expect("no panic while holding the view")
            .sessions
            .get(&key)
            .cloned()
            .ok_or(Refused::NoSession)?;
        let valid_until = valid_until.unwrap_or(now + u64::from(session.maxOpTtl));
        check_session_op(&session, key, op, valid_until, now)?;
        self.take_rate(slot)?;
        Ok((slot, session, valid_until))
    }

    async fn decide(
        &self,
        op: &PackedUserOperation,
        key: Address,
        hash: B256,
        now: u64,
        valid_until: Option<u64>,
    ) -> Result<(Signed, Option<Vec<u16>>), Refused> {
        let (slot, session, valid_until) = self.check_op(op, key, now, valid_until)?;
        let context = json!({
            "op": RpcUserOperation::from_packed(op).to_json(),
            "validUntil": valid_until,
        });
        let signer = slot.key.for_context(context);
        let signature = sign_session_op(&signer, hash, valid_until, session.grantId)
            .await
            .map_err(|e| Refused::Signing(e.to_string()))?;
        if op.paymasterAndData.is_empty() {
            let cost = max_op_cost(op).unwrap_or(U256::MAX);
            let mut view = self.view.write().expect("no panic while holding the view");
            if let Some(s) = view.sessions.get_mut(&key) {
                s.feeLeft = s.feeLeft.saturating_sub(cost);
            }
        }
        Ok((
            Signed {
                signature,
                user_op_hash: hash,
                valid_until,
                key,
            },
            signer.members(),
        ))
    }

    /// A quorum co-signer's decision: whether this member contributes to the signature over `digest`
    /// that member `from` coordinates. `context` must be the order, op or request itself; it gets every
    /// check it would get here (rate limit included) and its digest is recomputed — a digest that is not
    /// the context's is refused. Recorded in the audit trail either way.
    pub async fn cosign(&self, from: u16, digest: B256, context: &Value) -> Result<(), Refused> {
        let now = self.now();
        let (key, account, what, result) = self.cosign_check(digest, context, now);
        let detail = match &result {
            Ok(()) => format!("co-signed for quorum member {from}: {what}"),
            Err(e) => format!("co-signing for quorum member {from} refused: {what}: {e}"),
        };
        let outcome = if result.is_ok() {
            "co-signed"
        } else {
            "refused"
        };
        self.record(Decision {
            time: now,
            key,
            account,
            user_op_hash: digest,
            outcome: outcome.into(),
            detail,
        })?;
        result
    }

    /// The key, account and description of a co-sign request, and whether it passes.
    fn cosign_check(
        &self,
        digest: B256,
        context: &Value,
        now: u64,
    ) -> (Address, Address, String, Result<(), Refused>) {
        let bad = Refused::NotCosignable;
        let matches = |expected: B256| {
            if expected == digest {
                Ok(())
            } else {
                Err(bad(format!(
                    "the digest {digest} is not the context's ({expected})"
                )))
            }
        };
        if let Some(c) = context.get("order") {
            let parsed = serde_json::from_value::<Address>(c["venue"].clone())
                .map_err(|e| e.to_string())
                .and_then(|venue| {
                    serde_json::from_value::<OrderJson>(c["order"].clone())
                        .map_err(|e| e.to_string())
                        .and_then(|o| o.to_order(now * 1000).map_err(|e| e.to_string()))
                        .map(|order| (venue, order))
                });
            let (venue, order) = match parsed {
                Ok(p) => p,
                Err(e) => return (Address::ZERO, Address::ZERO, "order".into(), Err(bad(e))),
            };
            let result = self
                .check_order(venue, &order, now)
                .and_then(|_| matches(order_digest(order.account, venue, self.chain_id, &order)));
            let what = format!("order at venue {venue}, expiry {} ms", order.expiry);
            return (order.key, order.account, what, result);
        }
        if let Some(rpc) = context.get("op") {
            let op = match RpcUserOperation::from_json(rpc.clone()).and_then(|o| o.to_packed()) {
                Ok(op) => op,
                Err(e) => {
                    return (
                        Address::ZERO,
                        Address::ZERO,
                        "op".into(),
                        Err(bad(e.to_string())),
                    );
                }
            };
            let key = nonce_key(&op);
            let valid_until = context["validUntil"].as_u64();
            let result = match user_op_hash(&op, self.entry_point, self.chain_id) {
                Err(e) => Err(Refused::Unhashable(e.to_string())),
                Ok(hash) => self.check_op(&op, key, now, valid_until).and_then(
                    |(_, session, valid_until)| {
                        matches(session_op_digest(
                            hash,
                            valid_until,
                            grant_binding(session.grantId),
                        ))
                    },
                ),
            };
            let what = format!("op, validUntil {}", valid_until.unwrap_or_default());
            return (key, op.sender, what, result);
        }
        if let Some(params) = context.get("request") {
            let request = serde_json::from_value::<RequestParams>(params.clone())
                .map_err(|e| e.to_string())
                .and_then(|p| p.to_request());
            return match request {
                Ok(r) => {
                    let result = r
                        .check_fields()
                        .map_err(Refused::BadRequest)
                        .and_then(|()| self.check_request(&r).map(|_| ()))
                        .and_then(|()| matches(r.digest(self.chain_id)));
                    (r.key, r.account, "matcher request".into(), result)
                }
                Err(e) => (Address::ZERO, Address::ZERO, "request".into(), Err(bad(e))),
            };
        }
        (
            Address::ZERO,
            Address::ZERO,
            "nothing".into(),
            Err(bad("the context is not an order, op or request".into())),
        )
    }
}

/// What a co-signer is shown of an order.
fn order_context(venue: Address, order: &Order) -> Value {
    json!({ "order": { "venue": venue, "order": OrderJson::from(order) } })
}

/// The audit trail's note of the quorum members who made a signature.
fn quorum_note(members: &Option<Vec<u16>>) -> String {
    members
        .as_ref()
        .map(|m| format!(", quorum members {m:?}"))
        .unwrap_or_default()
}
