//! The decision for one sign request: the key the op's nonce names must be held here; the op must be for
//! the configured account and pass the key's scope as the chain last reported it
//! ([`keyscope_core::policy`]) and the sidecar's rate limit; then the key signs and the decision is
//! recorded. Refusals are recorded too. Between re-reads of the chain, each signature's maximum fee is
//! taken off the cached budget, so a burst cannot be signed past what the key has left.

use std::{
    collections::HashMap,
    sync::{Mutex, RwLock},
    time::Instant,
};

use alloy::providers::Provider;
use alloy_primitives::{Address, B256, Bytes, U256};
use keyscope_core::{
    bindings::{ISessionManager, ITradingAccount::SessionInfo},
    fees::max_op_cost,
    key::{Curve, KeySigner},
    order::{Order, OrderError, order_hash, sign_order},
    order_request::{Request, RequestAction, RequestError},
    policy::{PolicyRefusal, check_session_op, check_signed_order, nonce_key},
    session::sign_session_op,
    user_op::{PackedUserOperation, user_op_hash},
};

use crate::{
    SignerError,
    audit::{AuditLog, Decision},
    config::LoadedKey,
    keys::HeldKey,
    limiter::Limiter,
};

/// Why a request was not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this signer holds no key {0}")]
    UnknownKey(Address),
    #[error("the op has no userOpHash this signer can compute: {0}")]
    Unhashable(String),
    #[error("the op is for account {got}; this signer signs for {expected}")]
    WrongAccount { got: Address, expected: Address },
    #[error("the key's session has not been read from the chain yet")]
    NoSession,
    #[error("out of scope: {0}")]
    Policy(#[from] PolicyRefusal),
    #[error("rate limited by the signer: next signature in {wait_ms} ms")]
    RateLimited { wait_ms: u64 },
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("not an order: {0}")]
    BadOrder(OrderError),
    #[error("not a request to sign: {0}")]
    BadRequest(RequestError),
}

/// A signed op.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signed {
    /// The full `userOp.signature`.
    pub signature: Bytes,
    pub user_op_hash: B256,
    /// The op's own expiry, which the signature binds.
    pub valid_until: u64,
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
    pub key: Address,
}

/// A matcher request as the socket carries it: the request's fields, its action by name
/// (`cancel` with `orderHashes`, `cancelAll`, `scheduleCancel` with `atMs` — 0 clears —, `subscribe` with
/// `cancelOnDisconnect`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestParams {
    pub venue: Address,
    pub account: Address,
    pub key: Address,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_hashes: Option<Vec<B256>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_on_disconnect: Option<bool>,
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
    pub name: String,
    pub id: Address,
    pub curve: Curve,
}

struct Slot {
    name: String,
    key: HeldKey,
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
                        key: k.key,
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
            Ok(s) => ("signed", format!("validUntil {}", s.valid_until)),
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
        result
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
            Ok(_) => format!("order at venue {venue}, expiry {} ms", order.expiry),
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
        result.map(|signature| SignedOrder {
            signature,
            order_hash: hash,
            key: order.key,
        })
    }

    async fn decide_order(
        &self,
        venue: Address,
        order: &Order,
        now: u64,
    ) -> Result<Bytes, Refused> {
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
        sign_order(&slot.key, venue, self.chain_id, order)
            .await
            .map_err(|e| Refused::Signing(e.to_string()))
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

    async fn decide_request(&self, request: &Request) -> Result<Bytes, Refused> {
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
        request
            .sign(&slot.key, self.chain_id)
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

    async fn decide(
        &self,
        op: &PackedUserOperation,
        key: Address,
        hash: B256,
        now: u64,
        valid_until: Option<u64>,
    ) -> Result<Signed, Refused> {
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
        let signature = sign_session_op(&slot.key, hash, valid_until, session.grantId)
            .await
            .map_err(|e| Refused::Signing(e.to_string()))?;
        if op.paymasterAndData.is_empty() {
            let cost = max_op_cost(op).unwrap_or(U256::MAX);
            let mut view = self.view.write().expect("no panic while holding the view");
            if let Some(s) = view.sessions.get_mut(&key) {
                s.feeLeft = s.feeLeft.saturating_sub(cost);
            }
        }
        Ok(Signed {
            signature,
            user_op_hash: hash,
            valid_until,
            key,
        })
    }
}
