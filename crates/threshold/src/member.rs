//! A quorum member: it listens for the other members over mutual TLS ([`crate::tls`]), holds its share
//! ([`crate::share`]) and never sends it anywhere, joins the protocol sessions another member starts
//! (auxiliary info and key generation while it has no share; presignatures once it has one) and answers
//! partial-signature requests with the presignatures it holds — after its own [`Approver`] accepts what
//! is being signed.
//!
//! Any member can coordinate a signature: it checks the request itself, takes a presignature it made
//! earlier with `t - 1` co-signers (or makes one on the spot when none is ready), asks each co-signer for
//! its partial signature, combines them with its own and checks the result against the quorum's key. A
//! co-signer that cannot be reached is skipped for another set of co-signers; when no set can sign, the
//! request fails at once with every reason — never waits past the configured timeouts. A presignature is
//! used once: the co-signer deletes its half before it answers, and the coordinator never offers it again.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy_primitives::B256;
use cggmp21::{
    PartialSignature, PregeneratedPrimes, Presignature,
    key_share::AuxInfo,
    supported_curves::{Secp256k1, Secp256r1},
};
use futures::future::BoxFuture;
use rand::RngCore;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Mutex as AsyncMutex, mpsc},
    task::AbortHandle,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::{
    ThresholdError,
    mesh::{Link, TlsStream},
    protocol,
    share::{KeyCurve, QuorumKeyInfo, RawSignature, Share, checked, data_to_sign},
    tls::{MemberIdentity, MemberTls},
    wire::{Hello, PartialRequest, SessionKind, read_frame, write_frame},
};

/// What a co-signer checks before it contributes to a signature member `from` asked for: whether
/// `context` (what `from` says is signed: an order, an op, a request) is in scope and `digest` is its
/// digest. An `Err` says why not.
pub trait Approver: Send + Sync + 'static {
    /// `Ok` if this member may contribute to signing `digest` for member `from`, described by `context`.
    fn approve<'a>(
        &'a self,
        from: u16,
        digest: B256,
        context: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Where a member listens, who the others are, and how long it waits.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// This member's TLS identity and the quorum's certificates.
    pub identity: MemberIdentity,
    /// Every member's listening address, by index (this member's own included).
    pub addresses: Vec<SocketAddr>,
    /// The encrypted share file and its password.
    pub share_file: PathBuf,
    /// The password the share file is encrypted with.
    pub password: String,
    /// How long a dial (TCP and TLS) may take: an unreachable member is given up after it.
    pub connect_timeout: Duration,
    /// How long a whole session (key generation, a presignature) or an online request may take.
    pub session_timeout: Duration,
}

/// A signature of the quorum's key and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSignature {
    /// Checked against the quorum's public key over the digest, s in the lower half.
    pub signature: RawSignature,
    /// The members whose partial signatures were combined, sorted (the coordinator among them).
    pub members: Vec<u16>,
}

#[derive(Clone)]
enum AnyPresignature {
    Secp256k1(Presignature<Secp256k1>),
    P256(Presignature<Secp256r1>),
}

impl AnyPresignature {
    /// This member's partial signature over `digest`, as JSON; consumes the presignature.
    fn partial(self, digest: B256) -> serde_json::Value {
        match self {
            AnyPresignature::Secp256k1(p) => {
                serde_json::to_value(p.issue_partial_signature(data_to_sign(digest)))
            }
            AnyPresignature::P256(p) => {
                serde_json::to_value(p.issue_partial_signature(data_to_sign(digest)))
            }
        }
        .expect("a partial signature serialises")
    }
}

/// Presignatures: the ones this member started (by the co-signers they are with) and the halves it holds
/// for others (by id, with the member that started them: only that member may use them).
#[derive(Default)]
struct Pool {
    ready: HashMap<Vec<u16>, VecDeque<(B256, AnyPresignature)>>,
    held: HashMap<B256, (u16, AnyPresignature)>,
}

/// How a co-signer's answer starts when it does not hold the presignature named.
const UNKNOWN_PRESIGNATURE: &str = "unknown presignature";

type SlotLinks = (
    mpsc::UnboundedSender<Link>,
    Option<mpsc::UnboundedReceiver<Link>>,
);

struct Inner {
    config: MemberConfig,
    tls: MemberTls,
    share: Mutex<Option<Share>>,
    primes: Mutex<Option<PregeneratedPrimes>>,
    aux: Mutex<Option<AuxInfo>>,
    slots: Mutex<HashMap<B256, SlotLinks>>,
    pool: Mutex<Pool>,
    approver: Arc<dyn Approver>,
    online: AsyncMutex<HashMap<u16, TlsStream>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A running member.
#[derive(Clone)]
pub struct Member {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("no panic while holding a member's lock")
}

impl Member {
    /// Starts member `config.identity.index`: reads its share if the file exists (a share that does not
    /// decrypt or validate is an error, not a fresh start), binds its address and serves. `primes` are
    /// this member's safe primes for auxiliary info (needed only before key generation; `None` generates
    /// them when asked, which takes a while: see the crate docs).
    pub async fn start(
        config: MemberConfig,
        primes: Option<PregeneratedPrimes>,
        approver: Arc<dyn Approver>,
    ) -> Result<Self, ThresholdError> {
        let tls = MemberTls::new(&config.identity)?;
        let share = if config.share_file.exists() {
            let share = Share::load(&config.share_file, &config.password)?;
            if share.index() != tls.index {
                return Err(ThresholdError::ShareFile {
                    path: config.share_file.display().to_string(),
                    reason: format!(
                        "holds member {}'s share, but this is member {}",
                        share.index(),
                        tls.index
                    ),
                });
            }
            Some(share)
        } else {
            None
        };
        let at = *config
            .addresses
            .get(usize::from(tls.index))
            .ok_or_else(|| {
                ThresholdError::Config(format!("no address for member {}", tls.index))
            })?;
        let listener = TcpListener::bind(at)
            .await
            .map_err(|e| ThresholdError::Config(format!("cannot listen on {at}: {e}")))?;
        let member = Self {
            inner: Arc::new(Inner {
                config,
                tls,
                share: Mutex::new(share),
                primes: Mutex::new(primes),
                aux: Mutex::new(None),
                slots: Mutex::default(),
                pool: Mutex::default(),
                approver,
                online: AsyncMutex::default(),
                tasks: Mutex::default(),
            }),
        };
        let m = member.clone();
        member.spawn(async move { m.accept_loop(listener).await });
        Ok(member)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = lock(&self.inner.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// Stops serving: the listener, every connection and session of this member end (as if its process
    /// stopped). Its presignatures are forgotten.
    pub fn shutdown(&self) {
        for t in lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
        *lock(&self.inner.pool) = Pool::default();
    }

    /// This member's index.
    pub fn index(&self) -> u16 {
        self.inner.tls.index
    }

    /// The share's public facts, if key generation has run.
    pub fn key(&self) -> Option<QuorumKeyInfo> {
        lock(&self.inner.share).as_ref().map(Share::info)
    }

    /// The key's public facts once this member holds its share, waiting up to `within`: a member that
    /// joined key generation may still be saving its share when the coordinator's call returns.
    pub async fn key_within(&self, within: Duration) -> Result<QuorumKeyInfo, ThresholdError> {
        self.wait_for("a share", within, || self.key()).await
    }

    fn n(&self) -> u16 {
        self.inner.config.addresses.len() as u16
    }

    async fn accept_loop(self, listener: TcpListener) {
        let acceptor = TlsAcceptor::from(self.inner.tls.server.clone());
        while let Ok((tcp, _)) = listener.accept().await {
            let m = self.clone();
            let acceptor = acceptor.clone();
            self.spawn(async move {
                // A connection that fails ends only itself.
                let _ = m.accepted(acceptor, tcp).await;
            });
        }
    }

    async fn accepted(&self, acceptor: TlsAcceptor, tcp: TcpStream) -> Result<(), ThresholdError> {
        let wait = self.inner.config.connect_timeout;
        // Protocol messages are small and answered at once: no Nagle delay on either side.
        tcp.set_nodelay(true)
            .map_err(|e| ThresholdError::Transport(e.to_string()))?;
        let stream = tokio::time::timeout(wait, acceptor.accept(tcp))
            .await
            .map_err(|_| ThresholdError::Transport("TLS handshake timed out".into()))?
            .map_err(|e| ThresholdError::Transport(e.to_string()))?;
        let peer = self
            .inner
            .tls
            .member_of(stream.get_ref().1.peer_certificates())
            .ok_or_else(|| ThresholdError::Transport("a client that is no member".into()))?;
        let mut stream = TlsStream::from(stream);
        let hello: Hello = tokio::time::timeout(wait, read_frame(&mut stream))
            .await
            .map_err(|_| ThresholdError::Transport("no hello".into()))?
            .map_err(|e| ThresholdError::Transport(e.to_string()))?;
        match hello {
            Hello::Online => self.serve_online(peer, stream).await,
            Hello::Session {
                eid,
                kind,
                coordinator,
                parties,
            } => {
                if !parties.contains(&peer) || !parties.contains(&self.index()) {
                    return Err(ThresholdError::Transport(
                        "a session naming parties it is not among".into(),
                    ));
                }
                self.slot_sender(eid)
                    .send(Link { peer, stream })
                    .map_err(|_| ThresholdError::Transport("session ended".into()))?;
                if peer == coordinator {
                    let m = self.clone();
                    self.spawn(async move {
                        let _ = m.join(eid, kind, coordinator, parties).await;
                    });
                }
                Ok(())
            }
        }
    }

    fn slot_sender(&self, eid: B256) -> mpsc::UnboundedSender<Link> {
        let mut slots = lock(&self.inner.slots);
        slots
            .entry(eid)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                (tx, Some(rx))
            })
            .0
            .clone()
    }

    /// Dials member `to` and says `hello`.
    async fn dial(&self, to: u16, hello: &Hello) -> Result<TlsStream, ThresholdError> {
        let addr = *self
            .inner
            .config
            .addresses
            .get(usize::from(to))
            .ok_or_else(|| ThresholdError::Config(format!("no member {to}")))?;
        let down = |reason: String| ThresholdError::MemberDown { member: to, reason };
        let connector = TlsConnector::from(self.inner.tls.client.clone());
        let connect = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| down(format!("{addr}: {e}")))?;
            tcp.set_nodelay(true).map_err(|e| down(e.to_string()))?;
            let mut stream = TlsStream::from(
                connector
                    .connect(MemberTls::server_name(to), tcp)
                    .await
                    .map_err(|e| down(format!("TLS with {addr}: {e}")))?,
            );
            write_frame(&mut stream, hello)
                .await
                .map_err(|e| down(e.to_string()))?;
            Ok(stream)
        };
        tokio::time::timeout(self.inner.config.connect_timeout, connect)
            .await
            .map_err(|_| down(format!("{addr}: no answer in time")))?
    }

    /// This member's links for session `eid`: it dials the parties it must (all others when it
    /// coordinates; else those after it that do not coordinate) and takes the rest as they arrive.
    async fn gather(
        &self,
        eid: B256,
        kind: SessionKind,
        coordinator: u16,
        parties: &[u16],
    ) -> Result<Vec<Link>, ThresholdError> {
        let me = self.index();
        let hello = Hello::Session {
            eid,
            kind,
            coordinator,
            parties: parties.to_vec(),
        };
        let rx = {
            self.slot_sender(eid);
            lock(&self.inner.slots)
                .get_mut(&eid)
                .and_then(|s| s.1.take())
        };
        let mut rx =
            rx.ok_or_else(|| ThresholdError::Transport("the session is already running".into()))?;
        let mut links = Vec::new();
        let mut expected = 0;
        for &p in parties.iter().filter(|&&p| p != me) {
            if me == coordinator || (p != coordinator && p > me) {
                links.push(Link {
                    peer: p,
                    stream: self.dial(p, &hello).await?,
                });
            } else {
                expected += 1;
            }
        }
        let arrive = async {
            while links.len() < parties.len() - 1 {
                match rx.recv().await {
                    Some(link) => links.push(link),
                    None => break,
                }
            }
        };
        let done = tokio::time::timeout(self.inner.config.connect_timeout * 2, arrive).await;
        lock(&self.inner.slots).remove(&eid);
        if done.is_err() || links.len() < parties.len() - 1 {
            return Err(ThresholdError::Transport(format!(
                "{expected} parties of session {eid} never connected"
            )));
        }
        Ok(links)
    }

    async fn timed<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, ThresholdError>>,
    ) -> Result<T, ThresholdError> {
        tokio::time::timeout(self.inner.config.session_timeout, f)
            .await
            .map_err(|_| ThresholdError::Protocol {
                what,
                reason: format!("not done in {:?}", self.inner.config.session_timeout),
            })?
    }

    /// Runs this member's part of session `eid`.
    async fn join(
        &self,
        eid: B256,
        kind: SessionKind,
        coordinator: u16,
        parties: Vec<u16>,
    ) -> Result<(), ThresholdError> {
        let links = self.gather(eid, kind, coordinator, &parties).await?;
        let me = self.index();
        match kind {
            SessionKind::Aux => {
                let primes = self.primes().await;
                let aux = self
                    .timed(
                        "auxiliary info",
                        protocol::aux_info(eid, me, self.n(), primes, links),
                    )
                    .await?;
                *lock(&self.inner.aux) = Some(aux);
            }
            SessionKind::Keygen { curve, t } => {
                if lock(&self.inner.share).is_some() {
                    return Err(ThresholdError::Config(
                        "this member already holds a share".into(),
                    ));
                }
                // The coordinator may start key generation while this member finishes the auxiliary info.
                let aux = self
                    .wait_for("auxiliary info", self.inner.config.session_timeout, || {
                        lock(&self.inner.aux).take()
                    })
                    .await?;
                let n = self.n();
                let share = match curve {
                    KeyCurve::Secp256k1 => Share::Secp256k1(
                        self.timed(
                            "key generation",
                            protocol::keygen(eid, me, n, t, aux, links),
                        )
                        .await?,
                    ),
                    KeyCurve::P256 => Share::P256(
                        self.timed(
                            "key generation",
                            protocol::keygen(eid, me, n, t, aux, links),
                        )
                        .await?,
                    ),
                };
                share.save(&self.inner.config.share_file, &self.inner.config.password)?;
                *lock(&self.inner.share) = Some(share);
            }
            SessionKind::Presign => {
                let presignature = self.presign_part(eid, &parties, links).await?;
                let mut pool = lock(&self.inner.pool);
                if coordinator == me {
                    let others = parties.iter().copied().filter(|p| *p != me).collect();
                    pool.ready
                        .entry(others)
                        .or_default()
                        .push_back((eid, presignature));
                } else {
                    pool.held.insert(eid, (coordinator, presignature));
                }
            }
        }
        Ok(())
    }

    async fn presign_part(
        &self,
        eid: B256,
        parties: &[u16],
        links: Vec<Link>,
    ) -> Result<AnyPresignature, ThresholdError> {
        // The coordinator may ask for a presignature while this member saves the share just generated.
        let share = self
            .wait_for("a share", self.inner.config.session_timeout, || {
                lock(&self.inner.share).clone()
            })
            .await?;
        let i = parties
            .iter()
            .position(|p| *p == self.index())
            .expect("checked on joining") as u16;
        Ok(match &share {
            Share::Secp256k1(s) => AnyPresignature::Secp256k1(
                self.timed(
                    "presignature",
                    protocol::presign(eid, i, parties.to_vec(), s.clone(), links),
                )
                .await?,
            ),
            Share::P256(s) => AnyPresignature::P256(
                self.timed(
                    "presignature",
                    protocol::presign(eid, i, parties.to_vec(), s.clone(), links),
                )
                .await?,
            ),
        })
    }

    /// `take()`'s value once there is one, polled for up to `wait` (a session another member ended may
    /// still be finishing here).
    async fn wait_for<T>(
        &self,
        what: &str,
        wait: Duration,
        mut take: impl FnMut() -> Option<T>,
    ) -> Result<T, ThresholdError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(v) = take() {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ThresholdError::Config(format!(
                    "this member has no {what} (run key generation first)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn primes(&self) -> PregeneratedPrimes {
        if let Some(p) = lock(&self.inner.primes).take() {
            return p;
        }
        tokio::task::spawn_blocking(|| PregeneratedPrimes::generate(&mut rand::rngs::OsRng))
            .await
            .expect("prime generation does not panic")
    }

    fn fresh_eid() -> B256 {
        let mut eid = B256::ZERO;
        rand::rngs::OsRng.fill_bytes(eid.as_mut_slice());
        eid
    }

    /// Coordinates a session of `kind` among `parties`.
    async fn coordinate(
        &self,
        kind: SessionKind,
        parties: Vec<u16>,
    ) -> Result<B256, ThresholdError> {
        let eid = Self::fresh_eid();
        self.join(eid, kind, self.index(), parties).await?;
        Ok(eid)
    }

    /// Distributed key generation across every member (all must be up): auxiliary info, then a `t`-of-`n`
    /// key on `curve`. Every member saves its share encrypted; returns the key's public facts.
    pub async fn keygen(&self, curve: KeyCurve, t: u16) -> Result<QuorumKeyInfo, ThresholdError> {
        let n = self.n();
        if t < 2 || t > n {
            return Err(ThresholdError::Config(format!(
                "a threshold of {t} with {n} members: it must be 2 ..= {n}"
            )));
        }
        if lock(&self.inner.share).is_some() {
            return Err(ThresholdError::Config(
                "this member already holds a share".into(),
            ));
        }
        let all: Vec<u16> = (0..n).collect();
        self.coordinate(SessionKind::Aux, all.clone()).await?;
        self.coordinate(SessionKind::Keygen { curve, t }, all)
            .await?;
        Ok(self.key().expect("just generated"))
    }

    /// The sets of `t - 1` co-signers this member can sign with, in order.
    fn cosigner_sets(&self) -> Result<Vec<Vec<u16>>, ThresholdError> {
        let QuorumKeyInfo {
            threshold: t, n, ..
        } = self
            .key()
            .ok_or_else(|| ThresholdError::Config("this member holds no share yet".into()))?;
        let others: Vec<u16> = (0..n).filter(|i| *i != self.index()).collect();
        let mut sets = Vec::new();
        combinations(&others, usize::from(t - 1), &mut Vec::new(), &mut sets);
        Ok(sets)
    }

    /// Makes one presignature with `cosigners` and keeps it ready.
    pub async fn presign_with(&self, cosigners: &[u16]) -> Result<(), ThresholdError> {
        let mut parties = cosigners.to_vec();
        parties.push(self.index());
        parties.sort();
        self.coordinate(SessionKind::Presign, parties)
            .await
            .map(|_| ())
    }

    /// Tops up the presignatures ready with each set of co-signers that answers to `target`; returns how
    /// many were made. A set with a member down is skipped.
    pub async fn fill_pool(&self, target: usize) -> Result<usize, ThresholdError> {
        let mut made = 0;
        for set in self.cosigner_sets()? {
            while self.ready(&set) < target {
                if self.presign_with(&set).await.is_err() {
                    break;
                }
                made += 1;
            }
        }
        Ok(made)
    }

    /// How many presignatures are ready with `cosigners`.
    pub fn ready(&self, cosigners: &[u16]) -> usize {
        lock(&self.inner.pool)
            .ready
            .get(cosigners)
            .map_or(0, |q| q.len())
    }

    /// The quorum's signature over `digest` (of `context`, which each co-signer checks with its
    /// [`Approver`]; the caller has checked it here, as the sidecar's service does before it signs with any
    /// key). Fails at once, with each set's reason, when no set of co-signers signs.
    pub async fn sign(
        &self,
        digest: B256,
        context: &serde_json::Value,
    ) -> Result<QuorumSignature, ThresholdError> {
        let mut reasons = Vec::new();
        for set in self.cosigner_sets()? {
            match self.sign_with(&set, digest, context).await {
                Ok(sig) => return Ok(sig),
                // A co-signer's bad partial signature is not retried elsewhere: it is reported.
                Err(e @ ThresholdError::BadSignature { .. }) => return Err(e),
                Err(e) => reasons.push(format!("with members {set:?}: {e}")),
            }
        }
        Err(ThresholdError::NoQuorum(reasons.join("; ")))
    }

    async fn sign_with(
        &self,
        set: &[u16],
        digest: B256,
        context: &serde_json::Value,
    ) -> Result<QuorumSignature, ThresholdError> {
        match self.sign_once(set, digest, context).await {
            // The co-signer restarted and forgot its halves: the rest kept for it are dead too; one more
            // try with a presignature made now.
            Err(ThresholdError::Refused { reason, .. })
                if reason.starts_with(UNKNOWN_PRESIGNATURE) =>
            {
                lock(&self.inner.pool).ready.remove(set);
                self.sign_once(set, digest, context).await
            }
            other => other,
        }
    }

    async fn sign_once(
        &self,
        set: &[u16],
        digest: B256,
        context: &serde_json::Value,
    ) -> Result<QuorumSignature, ThresholdError> {
        let ready = lock(&self.inner.pool)
            .ready
            .get_mut(set)
            .and_then(|q| q.pop_front());
        let (id, own) = match ready {
            Some(p) => p,
            None => {
                self.presign_with(set).await?;
                lock(&self.inner.pool)
                    .ready
                    .get_mut(set)
                    .and_then(|q| q.pop_front())
                    .expect("just made")
            }
        };
        let request = PartialRequest {
            presignature: id,
            digest,
            context: context.clone(),
        };
        let mut partials = vec![own.partial(digest)];
        for &member in set {
            partials.push(self.ask_partial(member, &request).await?);
        }
        let share = lock(&self.inner.share).clone().expect("checked");
        let mut members = set.to_vec();
        members.push(self.index());
        members.sort();
        let signature = match &share {
            Share::Secp256k1(s) => combine::<Secp256k1>(&partials)
                .and_then(|sig| checked(sig, &s.core.key_info.shared_public_key, digest)),
            Share::P256(s) => combine::<Secp256r1>(&partials)
                .and_then(|sig| checked(sig, &s.core.key_info.shared_public_key, digest)),
        }
        .ok_or(ThresholdError::BadSignature {
            members: members.clone(),
        })?;
        Ok(QuorumSignature { signature, members })
    }

    /// Member `to`'s partial signature for `request`, over the kept online connection (re-dialled once if
    /// it broke).
    async fn ask_partial(
        &self,
        to: u16,
        request: &PartialRequest,
    ) -> Result<serde_json::Value, ThresholdError> {
        let mut online = self.inner.online.lock().await;
        for attempt in 0..2 {
            let stream = match online.remove(&to) {
                Some(s) => s,
                None => self.dial(to, &Hello::Online).await?,
            };
            let mut stream = stream;
            let exchange = async {
                write_frame(&mut stream, request).await?;
                read_frame::<_, Result<serde_json::Value, String>>(&mut stream).await
            };
            match tokio::time::timeout(self.inner.config.session_timeout, exchange).await {
                Ok(Ok(answer)) => {
                    online.insert(to, stream);
                    return answer.map_err(|reason| ThresholdError::Refused { member: to, reason });
                }
                Ok(Err(e)) if attempt == 0 => {
                    let _ = e;
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(ThresholdError::MemberDown {
                        member: to,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(ThresholdError::MemberDown {
                        member: to,
                        reason: "no partial signature in time".into(),
                    });
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Answers `peer`'s partial-signature requests until it hangs up.
    async fn serve_online(&self, peer: u16, mut stream: TlsStream) -> Result<(), ThresholdError> {
        loop {
            let request: PartialRequest = match read_frame(&mut stream).await {
                Ok(r) => r,
                Err(_) => return Ok(()),
            };
            let answer = self.partial_for(peer, &request).await;
            write_frame(&mut stream, &answer)
                .await
                .map_err(|e| ThresholdError::Transport(e.to_string()))?;
        }
    }

    async fn partial_for(
        &self,
        peer: u16,
        request: &PartialRequest,
    ) -> Result<serde_json::Value, String> {
        // Taken out first: whatever happens next, this presignature is never used again. The coordinator
        // may ask while this member still finishes the presignature's last round: it waits for it briefly.
        let held = self
            .wait_for("presignature", self.inner.config.connect_timeout, || {
                let mut pool = lock(&self.inner.pool);
                match pool.held.get(&request.presignature) {
                    Some((owner, _)) if *owner == peer => pool.held.remove(&request.presignature),
                    _ => None,
                }
            })
            .await
            .ok();
        let (_, presignature) = held.ok_or_else(|| {
            format!(
                "{UNKNOWN_PRESIGNATURE} {} (used, never made with member {peer}, or this member restarted)",
                request.presignature
            )
        })?;
        self.inner
            .approver
            .approve(peer, request.digest, &request.context)
            .await?;
        Ok(presignature.partial(request.digest))
    }
}

fn combine<E>(partials: &[serde_json::Value]) -> Option<cggmp21::Signature<E>>
where
    E: cggmp21::generic_ec::Curve,
{
    let partials = partials
        .iter()
        .map(|p| serde_json::from_value::<PartialSignature<E>>(p.clone()).ok())
        .collect::<Option<Vec<_>>>()?;
    PartialSignature::combine(&partials)
}

fn combinations(from: &[u16], k: usize, acc: &mut Vec<u16>, out: &mut Vec<Vec<u16>>) {
    if acc.len() == k {
        out.push(acc.clone());
        return;
    }
    for (i, &x) in from.iter().enumerate() {
        acc.push(x);
        combinations(&from[i + 1..], k, acc, out);
        acc.pop();
    }
}
