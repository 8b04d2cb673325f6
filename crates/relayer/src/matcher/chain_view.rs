//! What the matcher knows of the chain: each key's session (grant, window, rule, breaker, uses), its order
//! epoch and dead-man deadline, each account's margin at the venue, each market's initial margin fraction —
//! read through the node, cached so an order is checked in microseconds, and read again at every new head
//! for the keys that have orders resting (so a revoke, an epoch bump or a trip on chain takes their orders
//! off at the next head).

use std::{
    collections::{HashMap, HashSet},
    sync::RwLock,
};

use alloy::providers::{DynProvider, Provider};
use alloy_primitives::{Address, I256, U256};
use keyscope_core::bindings::{ISessionManager, ITradingAccount::SessionInfo, PerpVenue};

/// Why the chain's state of an order's account could not be read or is not one the matcher serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChainReadError {
    /// The node did not answer.
    #[error("the chain did not answer: {0}")]
    Node(String),
    /// The account is not a Keyscope TradingAccount (by its code and implementation, never by what it
    /// says of itself): its scope could not be trusted to bound its fills.
    #[error(
        "{0} is not a Keyscope trading account (its code is not the factory's proxy to Keyscope's implementation)"
    )]
    NotKeyscope(Address),
    /// The market is not listed at the venue.
    #[error("market {0} is not listed at the venue")]
    Unlisted(u32),
}

fn read(e: impl std::fmt::Display) -> ChainReadError {
    ChainReadError::Node(e.to_string())
}

/// A key's state on its account, as its orders are checked against.
#[derive(Debug, Clone)]
pub(crate) struct KeyState {
    pub session: SessionInfo,
    pub epoch: u32,
    /// The dead-man deadline (seconds; 0: none armed).
    pub heartbeat_deadline: u64,
}

/// An account's margin at the venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Margin {
    pub account_value: I256,
    pub initial_margin: U256,
}

impl Margin {
    /// Account value above its positions' initial margin (zero if below).
    pub(super) fn free(&self) -> U256 {
        let av = if self.account_value.is_negative() {
            U256::ZERO
        } else {
            self.account_value.into_raw()
        };
        av.saturating_sub(self.initial_margin)
    }
}

/// The cached reads.
pub(crate) struct ChainView {
    provider: DynProvider,
    venue: Address,
    /// Keyscope's account implementation on this chain.
    implementation: Address,
    /// Accounts whose code was checked to be Keyscope's.
    keyscope: RwLock<HashSet<Address>>,
    /// Each key's state and when it was read: older than `ttl`, it is read again before it is used.
    keys: RwLock<HashMap<(Address, Address), (KeyState, std::time::Instant)>>,
    ttl: std::time::Duration,
    margins: RwLock<HashMap<Address, Margin>>,
    imfs: RwLock<HashMap<u32, u64>>,
}

impl ChainView {
    pub(super) fn new(
        provider: DynProvider,
        venue: Address,
        implementation: Address,
        ttl: std::time::Duration,
    ) -> Self {
        Self {
            provider,
            venue,
            implementation,
            ttl,
            keyscope: RwLock::default(),
            keys: RwLock::default(),
            margins: RwLock::default(),
            imfs: RwLock::default(),
        }
    }

    /// The state of `key` on `account`: cached if read within the last `ttl`, or read now — so a key revoked,
    /// re-granted or epoch-bumped on chain is seen within `ttl` even when nothing of it rests.
    pub(super) async fn key(
        &self,
        account: Address,
        key: Address,
    ) -> Result<KeyState, ChainReadError> {
        if let Some((k, at)) = self.keys.read().expect("lock").get(&(account, key)) {
            if at.elapsed() < self.ttl {
                return Ok(k.clone());
            }
        }
        self.refresh_key(account, key).await
    }

    /// Reads the state of `key` on `account` again.
    pub(super) async fn refresh_key(
        &self,
        account: Address,
        key: Address,
    ) -> Result<KeyState, ChainReadError> {
        self.check_keyscope(account).await?;
        let sessions = ISessionManager::new(account, &self.provider);
        let (session, epoch, deadline) = tokio::try_join!(
            async { sessions.getSession(key).call().await.map_err(read) },
            async { sessions.orderEpoch(key).call().await.map_err(read) },
            async { sessions.heartbeatDeadline(key).call().await.map_err(read) },
        )?;
        let state = KeyState {
            session,
            epoch,
            heartbeat_deadline: deadline.to::<u64>(),
        };
        self.keys
            .write()
            .expect("lock")
            .insert((account, key), (state.clone(), std::time::Instant::now()));
        Ok(state)
    }

    /// Refuses an account that is not a Keyscope TradingAccount: the proxy Keyscope's factory deploys, naming
    /// Keyscope's implementation (a contract that only answers `getSession` like one could claim any scope).
    async fn check_keyscope(&self, account: Address) -> Result<(), ChainReadError> {
        use keyscope_core::deploy::{ACCOUNT_PROXY_CODE_HASH, ERC1967_IMPLEMENTATION_SLOT};
        if self.keyscope.read().expect("lock").contains(&account) {
            return Ok(());
        }
        let code = self.provider.get_code_at(account).await.map_err(read)?;
        let slot = self
            .provider
            .get_storage_at(account, ERC1967_IMPLEMENTATION_SLOT.into())
            .await
            .map_err(read)?;
        if alloy_primitives::keccak256(&code) != ACCOUNT_PROXY_CODE_HASH
            || Address::from_word(slot.into()) != self.implementation
        {
            return Err(ChainReadError::NotKeyscope(account));
        }
        self.keyscope.write().expect("lock").insert(account);
        Ok(())
    }

    /// The margin of `account`: cached, or read now.
    pub(super) async fn margin(&self, account: Address) -> Result<Margin, ChainReadError> {
        if let Some(m) = self.margins.read().expect("lock").get(&account) {
            return Ok(*m);
        }
        self.refresh_margin(account).await
    }

    /// Reads the margin of `account` again.
    pub(super) async fn refresh_margin(&self, account: Address) -> Result<Margin, ChainReadError> {
        let pf = PerpVenue::new(self.venue, &self.provider)
            .portfolio(account)
            .call()
            .await
            .map_err(read)?;
        let m = Margin {
            account_value: pf.accountValue,
            initial_margin: pf.initialMargin,
        };
        self.margins.write().expect("lock").insert(account, m);
        Ok(m)
    }

    /// The initial margin fraction of `market` (WAD); markets' parameters are read once.
    pub(super) async fn imf(&self, market: u32) -> Result<u64, ChainReadError> {
        if let Some(i) = self.imfs.read().expect("lock").get(&market) {
            return Ok(*i);
        }
        let m = PerpVenue::new(self.venue, &self.provider)
            .market(market)
            .call()
            .await
            .map_err(read)?;
        if !m.listed {
            return Err(ChainReadError::Unlisted(market));
        }
        self.imfs.write().expect("lock").insert(market, m.imf);
        Ok(m.imf)
    }

    /// `account`'s position in `market` now (18 decimals; negative: short), read from the venue.
    pub(super) async fn position(
        &self,
        account: Address,
        market: u32,
    ) -> Result<I256, ChainReadError> {
        Ok(PerpVenue::new(self.venue, &self.provider)
            .position(account, market)
            .call()
            .await
            .map_err(read)?
            .size)
    }

    /// Forgets the cached margins (after a settlement or a new head: positions moved).
    pub(super) fn forget_margins(&self) {
        self.margins.write().expect("lock").clear();
    }
}
