//! The library's protocols run over a session's links: auxiliary info, distributed key generation and
//! presignature generation, each generic over the curve. Nothing here is protocol maths: it hands the
//! library its party index, the parties and a delivery ([`crate::mesh`]) and returns what it produced.

use alloy_primitives::B256;
use cggmp21::{
    ExecutionId, KeyShare, PregeneratedPrimes, Presignature,
    generic_ec::{Curve as EcCurve, NonZero, Point, coords::AlwaysHasAffineX, coords::HasAffineX},
    key_share::AuxInfo,
    round_based::MpcParty,
};
use rand::rngs::OsRng;

use crate::{
    ThresholdError,
    mesh::{Link, delivery},
};

fn failed(what: &'static str) -> impl Fn(String) -> ThresholdError {
    move |reason| ThresholdError::Protocol { what, reason }
}

/// Auxiliary info among all `n` members (this one `i`), with this member's safe primes.
pub async fn aux_info(
    eid: B256,
    i: u16,
    n: u16,
    primes: PregeneratedPrimes,
    links: Vec<Link>,
) -> Result<AuxInfo, ThresholdError> {
    let parties: Vec<u16> = (0..n).collect();
    let party = MpcParty::connected(delivery(links, &parties));
    cggmp21::aux_info_gen(ExecutionId::new(eid.as_slice()), i, n, primes)
        .start(&mut OsRng, party)
        .await
        .map_err(|e| failed("auxiliary info")(e.to_string()))
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
    let parties: Vec<u16> = (0..n).collect();
    let party = MpcParty::connected(delivery(links, &parties));
    let incomplete = cggmp21::keygen::<E>(ExecutionId::new(eid.as_slice()), i, n)
        .set_threshold(t)
        .start(&mut OsRng, party)
        .await
        .map_err(|e| failed("key generation")(e.to_string()))?;
    KeyShare::from_parts((incomplete, aux)).map_err(|e| failed("key generation")(e.to_string()))
}

/// A presignature among `parties` (members by index, sorted), this member at position `i`.
pub async fn presign<E>(
    eid: B256,
    i: u16,
    parties: &[u16],
    share: &KeyShare<E>,
    links: Vec<Link>,
) -> Result<Presignature<E>, ThresholdError>
where
    E: EcCurve,
    Point<E>: HasAffineX<E>,
    NonZero<Point<E>>: AlwaysHasAffineX<E>,
{
    let party = MpcParty::connected(delivery(links, parties));
    cggmp21::signing(ExecutionId::new(eid.as_slice()), i, parties, share)
        .generate_presignature(&mut OsRng, party)
        .await
        .map_err(|e| failed("presignature")(e.to_string()))
}
