//! Setting up a quorum of sidecars: each member's TLS identity from a quorum authority, the distributed
//! key generation (one member coordinates, the others join; no dealer, every share stays with its member,
//! encrypted with the keystore password), and the key's id read back from a share. Each member's safe
//! primes are generated before it listens (minutes on a slow machine: the README has the figure), or read
//! from a file generated earlier.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256};
use futures::future::BoxFuture;
use keyscope_core::key::Curve;
use keyscope_threshold::{
    Approver, Member, PregeneratedPrimes, QuorumKeyInfo, Share, ThresholdError, tls::dev_identities,
};
use serde_json::Value;

use crate::{
    SignerError,
    config::SignerConfig,
    quorum::{QuorumConfig, curve_of, key_curve, key_id},
};

/// A member's safe primes for its auxiliary info.
pub type Primes = PregeneratedPrimes;

/// How long the coordinator keeps trying to reach members that are still starting.
const MEMBERS_WAIT: Duration = Duration::from_secs(600);

fn quorum_error(e: impl std::fmt::Display) -> SignerError {
    SignerError::Quorum(e.to_string())
}

/// Signs nothing: a member only generating its key co-signs nothing.
struct NoSigning;

impl Approver for NoSigning {
    fn approve<'a>(&'a self, _: u16, _: B256, _: &'a Value) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("this member is generating its key, not signing".into()) })
    }
}

/// Writes `n` member identities from a new development authority to `out/member-<i>.identity.json`
/// (mode 0600: each holds its member's TLS key); returns the files. Refuses to overwrite.
pub fn write_identities(out: &Path, n: u16) -> Result<Vec<PathBuf>, SignerError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !(2..=16).contains(&n) {
        return Err(quorum_error(format!("{n} members: a quorum has 2 to 16")));
    }
    std::fs::create_dir_all(out).map_err(quorum_error)?;
    let paths: Vec<PathBuf> = (0..n)
        .map(|i| out.join(format!("member-{i}.identity.json")))
        .collect();
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(quorum_error(format!(
            "{} exists: refusing to overwrite a member's identity",
            p.display()
        )));
    }
    for (id, path) in dev_identities(n).map_err(quorum_error)?.iter().zip(&paths) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(quorum_error)?;
        std::io::Write::write_all(
            &mut file,
            &serde_json::to_vec_pretty(id).map_err(quorum_error)?,
        )
        .map_err(quorum_error)?;
    }
    Ok(paths)
}

/// This member's primes: read from `file` (JSON, as `PregeneratedPrimes` serialises), or generated.
pub fn primes(file: Option<&Path>) -> Result<(PregeneratedPrimes, Duration), SignerError> {
    let started = Instant::now();
    let primes = match file {
        Some(f) => {
            serde_json::from_slice(&std::fs::read(f).map_err(quorum_error)?).map_err(|e| {
                quorum_error(format!("{}: not a pair of safe primes: {e}", f.display()))
            })?
        }
        None => PregeneratedPrimes::generate(&mut rand::rngs::OsRng),
    };
    Ok((primes, started.elapsed()))
}

fn quorum_of(config: &SignerConfig) -> Result<&QuorumConfig, SignerError> {
    config.quorum.as_ref().ok_or_else(|| SignerError::Config {
        path: "config".into(),
        reason: "no [quorum] table: name the quorum this sidecar is a member of".into(),
    })
}

async fn start_member(
    config: &SignerConfig,
    password: &str,
    primes: PregeneratedPrimes,
) -> Result<Member, SignerError> {
    let quorum = quorum_of(config)?;
    if quorum.share.exists() {
        return Err(quorum_error(format!(
            "{} exists: this member already holds a share",
            quorum.share.display()
        )));
    }
    let mut member_config = quorum.member_config(password)?;
    member_config.session_timeout = Duration::from_secs(300);
    Member::start(member_config, Some(primes), Arc::new(NoSigning))
        .await
        .map_err(quorum_error)
}

/// Coordinates key generation: a `threshold`-of-n key on `curve` among every member of `config`'s quorum
/// (the others run [`join`]), retrying while some member is not listening yet. Returns the key's id.
pub async fn generate(
    config: &SignerConfig,
    password: &str,
    primes: PregeneratedPrimes,
    curve: Curve,
    threshold: u16,
) -> Result<(Address, QuorumKeyInfo), SignerError> {
    let member = start_member(config, password, primes).await?;
    let started = Instant::now();
    let info = loop {
        match member.keygen(key_curve(curve), threshold).await {
            Ok(info) => break info,
            Err(ThresholdError::MemberDown { .. }) if started.elapsed() < MEMBERS_WAIT => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(quorum_error(e)),
        }
    };
    // The others finish their last round as this one does; give them the moment to save their shares.
    tokio::time::sleep(Duration::from_millis(500)).await;
    member.shutdown();
    Ok((key_id(&info), info))
}

/// Joins the key generation another member coordinates; returns once this member saved its share.
pub async fn join(
    config: &SignerConfig,
    password: &str,
    primes: PregeneratedPrimes,
) -> Result<(Address, QuorumKeyInfo), SignerError> {
    let member = start_member(config, password, primes).await?;
    let started = Instant::now();
    let info = loop {
        if let Some(info) = member.key() {
            break info;
        }
        if started.elapsed() > MEMBERS_WAIT {
            member.shutdown();
            return Err(quorum_error("no key generation was started in 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    member.shutdown();
    Ok((key_id(&info), info))
}

/// The key id, curve, threshold and member count of the share `config`'s quorum names.
pub fn address(
    config: &SignerConfig,
    password: &str,
) -> Result<(Address, Curve, u16, u16), SignerError> {
    let quorum = quorum_of(config)?;
    let share = Share::load(&quorum.share, password).map_err(quorum_error)?;
    let info = share.info();
    Ok((key_id(&info), curve_of(info.curve), info.threshold, info.n))
}
