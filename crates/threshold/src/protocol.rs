//! The library's protocols run over a session's links: auxiliary info, distributed key generation and
//! presignature generation, each generic over the curve. Nothing here is protocol maths: it hands the
//! library its party index, the parties and a delivery ([`crate::mesh`]) and returns what it produced.
//!
//! The library's rounds are seconds of arithmetic between awaits. Run on the async workers they would
//! starve everything else a member does — accepting a connection, answering an online signature — so a
//! member that is making presignatures in the background would look down to its peers. Each session
//! therefore runs on a thread of its own ([`on_own_thread`]); the connections stay on the runtime.

use std::future::Future;

use alloy_primitives::B256;
use cggmp21::{
    ExecutionId, KeyShare, PregeneratedPrimes, Presignature,
    generic_ec::{Curve as EcCurve, NonZero, Point, coords::AlwaysHasAffineX, coords::HasAffineX},
    key_share::AuxInfo,
    round_based::MpcParty,
};
use futures::future::{AbortHandle, Abortable};
use rand::rngs::OsRng;

use crate::{
    ThresholdError,
    mesh::{Link, delivery},
};

fn failed(what: &'static str) -> impl Fn(String) -> ThresholdError {
    move |reason| ThresholdError::Protocol { what, reason }
}

/// Stops the session's thread at its next await when whoever awaited it gives up (a timeout, a member
/// shut down).
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `session` on a blocking thread (its I/O still driven by the current runtime) and waits for it.
async fn on_own_thread<T>(
    what: &'static str,
    session: impl Future<Output = Result<T, ThresholdError>> + Send + 'static,
) -> Result<T, ThresholdError>
where
    T: Send + 'static,
{
    let (abort, registration) = AbortHandle::new_pair();
    let _stop = AbortOnDrop(abort);
    let runtime = tokio::runtime::Handle::current();
    let run = move || runtime.block_on(Abortable::new(session, registration));
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok(result)) => result,
        Ok(Err(_aborted)) => Err(failed(what)("stopped".into())),
        Err(e) => Err(failed(what)(format!("its thread failed: {e}"))),
    }
}

/// Auxiliary info among all `n` members (this one `i`), with this member's safe primes.
pub async fn aux_info(
    eid: B256,
    i: u16,
    n: u16,
    primes: PregeneratedPrimes,
    links: Vec<Link>,
) -> Result<AuxInfo, ThresholdError> {
    on_own_thread("auxiliary info", async move {
        let parties: Vec<u16> = (0..n).collect();
        let party = MpcParty::connected(delivery(links, &parties));
        cggmp21::aux_info_gen(ExecutionId::new(eid.as_slice()), i, n, primes)
            .start(&mut OsRng, party)
            .await
            .map_err(|e| failed("auxiliary info")(e.to_string()))
    })
    .await
}

/// Distributed key generation (no dealer) of a `t`-of-`n` key on curve `E`, completed with `aux`.
pub async fn keygen<E>(
    eid: B256,
    i: u16,
    n: u16,
    t: u16,
    aux: AuxInfo,
    links: Vec<Link>,
) -> Result<KeyShare<E>, ThresholdError>
where
    E: EcCurve,
{
    on_own_thread("key generation", async move {
        let parties: Vec<u16> = (0..n).collect();
        let party = MpcParty::connected(delivery(links, &parties));
        let incomplete = cggmp21::keygen::<E>(ExecutionId::new(eid.as_slice()), i, n)
            .set_threshold(t)
            .start(&mut OsRng, party)
            .await
            .map_err(|e| failed("key generation")(e.to_string()))?;
        KeyShare::from_parts((incomplete, aux)).map_err(|e| failed("key generation")(e.to_string()))
    })
    .await
}

/// A presignature among `parties` (members by index, sorted), this member at position `i`.
pub async fn presign<E>(
    eid: B256,
    i: u16,
    parties: Vec<u16>,
    share: KeyShare<E>,
    links: Vec<Link>,
) -> Result<Presignature<E>, ThresholdError>
where
    E: EcCurve,
    Point<E>: HasAffineX<E>,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
{
    on_own_thread("presignature", async move {
        let party = MpcParty::connected(delivery(links, &parties));
        cggmp21::signing(ExecutionId::new(eid.as_slice()), i, &parties, &share)
            .generate_presignature(&mut OsRng, party)
            .await
            .map_err(|e| failed("presignature")(e.to_string()))
    })
    .await
}
