//! A 2-of-3 quorum of members on loopback, each on its own mutual-TLS listener, with the primes the test
//! data holds: distributed key generation on both curves, signatures `keyscope_core::key::verify_digest`
//! accepts for the quorum's key, one member down (still signs), two down (refused at once), each member
//! restarted from its encrypted share, tampered share files refused, co-signers refusing what their policy
//! refuses even when the coordinator does not, and a client with another authority's certificate turned
//! away.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use alloy_primitives::{B256, U256, keccak256};
use cggmp21::PregeneratedPrimes;
use futures::future::BoxFuture;
use keyscope_threshold::{
    Approver, KeyCurve, Member, MemberConfig, QuorumKeyInfo, RawSignature, Share, ThresholdError,
    tls::{MemberIdentity, dev_identities},
};
use serde_json::{Value, json};

/// The test policy: the context is `{"market": M, …}`; a market in `markets` is in scope, and the digest
/// must be the context's (keccak of its JSON), as a sidecar recomputes an order's digest itself.
struct Markets(Vec<u64>);

impl Approver for Markets {
    fn approve<'a>(
        &'a self,
        _from: u16,
        digest: B256,
        context: &'a Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if digest_of(context) != digest {
                return Err("the digest is not the context's".into());
            }
            let market = context["market"].as_u64().ok_or("no market")?;
            if self.0.contains(&market) {
                Ok(())
            } else {
                Err(format!("market {market} is out of scope"))
            }
        })
    }
}

/// A compromised member's policy: signs whatever it is asked.
struct Anything;

impl Approver for Anything {
    fn approve<'a>(&'a self, _: u16, _: B256, _: &'a Value) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Checks `sig` over `digest` for the key `info` names, with the curves' own libraries (not the
/// threshold library's check), and that s is in the lower half.
fn verifies(info: &QuorumKeyInfo, digest: B256, sig: &RawSignature) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    match info.curve {
        KeyCurve::Secp256k1 => {
            let address =
                alloy_primitives::Address::from_slice(&keccak256(&info.public_key[1..])[12..]);
            let half = U256::from_str_radix(
                "7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0",
                16,
            )
            .unwrap();
            U256::from_be_bytes(sig.s.0) <= half
                && [false, true].into_iter().any(|v| {
                    alloy_primitives::Signature::new(
                        U256::from_be_bytes(sig.r.0),
                        U256::from_be_bytes(sig.s.0),
                        v,
                    )
                    .recover_address_from_prehash(&digest)
                    .is_ok_and(|a| a == address)
                })
        }
        KeyCurve::P256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&info.public_key).unwrap();
            let signature = p256::ecdsa::Signature::from_scalars(sig.r.0, sig.s.0).unwrap();
            signature.normalize_s().is_none()
                && key.verify_prehash(digest.as_slice(), &signature).is_ok()
        }
    }
}

fn digest_of(context: &Value) -> B256 {
    keccak256(serde_json::to_vec(context).unwrap())
}

fn primes() -> Vec<PregeneratedPrimes> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/primes.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn free_addresses(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-quorum-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Quorum {
    configs: Vec<MemberConfig>,
    members: Vec<Member>,
}

const PASSWORD: &str = "quorum test";
/// How long a member may take to save its share after key generation (an encrypted keystore write; slow
/// on a loaded machine).
const SAVING: Duration = Duration::from_secs(60);

fn config(dir: &std::path::Path, id: MemberIdentity, addresses: &[SocketAddr]) -> MemberConfig {
    MemberConfig {
        share_file: dir.join(format!("member-{}.share.json", id.index)),
        identity: id,
        addresses: addresses.to_vec(),
        password: PASSWORD.into(),
        connect_timeout: Duration::from_secs(2),
        session_timeout: Duration::from_secs(120),
    }
}

impl Quorum {
    /// Three members, member 0 with `coordinator_policy`, the others with the market-0 policy.
    async fn start(name: &str, coordinator_policy: Arc<dyn Approver>) -> Self {
        let dir = temp_dir(name);
        let addresses = free_addresses(3);
        let configs: Vec<_> = dev_identities(3)
            .unwrap()
            .into_iter()
            .map(|id| config(&dir, id, &addresses))
            .collect();
        let mut members = Vec::new();
        for (c, p) in configs.iter().zip(primes()) {
            let policy: Arc<dyn Approver> = if c.identity.index == 0 {
                coordinator_policy.clone()
            } else {
                Arc::new(Markets(vec![0]))
            };
            members.push(Member::start(c.clone(), Some(p), policy).await.unwrap());
        }
        Self { configs, members }
    }

    async fn restart(&mut self, i: usize) {
        self.members[i].shutdown();
        self.members[i] = Member::start(self.configs[i].clone(), None, Arc::new(Markets(vec![0])))
            .await
            .unwrap();
    }
}

fn order(market: u64, nonce: u64) -> (B256, Value) {
    let context = json!({ "market": market, "nonce": nonce });
    (digest_of(&context), context)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_of_3_secp256k1_key_signs_with_any_two_members_survives_restarts_and_refuses_tampered_shares()
 {
    let mut q = Quorum::start("k1", Arc::new(Markets(vec![0]))).await;
    let key = q.members[0].keygen(KeyCurve::Secp256k1, 2).await.unwrap();
    assert_eq!(
        (key.curve, key.threshold, key.n),
        (KeyCurve::Secp256k1, 2, 3)
    );
    // Every member ends with a share of the same key, saved encrypted (the last may still be saving).
    for m in &q.members {
        assert_eq!(m.key_within(SAVING).await.unwrap(), key);
    }

    // Presignatures made ahead, then used: one per signature.
    assert_eq!(q.members[0].fill_pool(2).await.unwrap(), 4);
    assert_eq!(q.members[0].ready(&[1]), 2);
    let (digest, context) = order(0, 1);
    let signed = q.members[0].sign(digest, &context).await.unwrap();
    assert!(verifies(&key, digest, &signed.signature));
    assert_eq!(signed.members, vec![0, 1]);
    assert_eq!(q.members[0].ready(&[1]), 1);
    // Not the key's signature over anything else.
    assert!(!verifies(&key, order(0, 2).0, &signed.signature));

    // Any member coordinates (here with no presignature ready: made on the spot).
    let (digest, context) = order(0, 3);
    let signed = q.members[2].sign(digest, &context).await.unwrap();
    assert!(verifies(&key, digest, &signed.signature));
    assert_eq!(signed.members, vec![0, 2]);

    // One member down: the others still sign.
    q.members[1].shutdown();
    let (digest, context) = order(0, 4);
    let signed = q.members[0].sign(digest, &context).await.unwrap();
    assert!(verifies(&key, digest, &signed.signature));
    assert_eq!(signed.members, vec![0, 2]);

    // Two down: refused at once with each reason, not after a session timeout.
    q.members[2].shutdown();
    let (digest, context) = order(0, 5);
    let refused =
        tokio::time::timeout(Duration::from_secs(10), q.members[0].sign(digest, &context))
            .await
            .expect("no hang with two members down")
            .unwrap_err();
    let text = refused.to_string();
    assert!(matches!(refused, ThresholdError::NoQuorum(_)), "{text}");
    assert!(
        text.contains("member 1 is unreachable") && text.contains("member 2 is unreachable"),
        "{text}"
    );

    // Each member restarted from its encrypted share: same key, signs again (member 0 drops the
    // presignatures member 1 forgot and makes a new one).
    for i in [1, 2, 0] {
        q.restart(i).await;
        assert_eq!(q.members[i].key(), Some(key));
    }
    for (coordinator, n) in [(0, 6), (1, 7), (2, 8)] {
        let (digest, context) = order(0, n);
        let signed = q.members[coordinator].sign(digest, &context).await.unwrap();
        assert!(verifies(&key, digest, &signed.signature));
    }

    // A tampered share file is refused at start; the untouched one loads.
    q.members[2].shutdown();
    let path = &q.configs[2].share_file;
    let original = std::fs::read(path).unwrap();
    // Positive control.
    assert_eq!(
        Share::load(path, PASSWORD).unwrap().public_key(),
        key.public_key
    );

    // A changed byte of the ciphertext: the keystore's MAC no longer matches.
    let mut file: Value = serde_json::from_slice(&original).unwrap();
    let ct = file["crypto"]["ciphertext"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if &ct[..1] == "0" { "1" } else { "0" }, &ct[1..]);
    file["crypto"]["ciphertext"] = Value::String(flipped);
    std::fs::write(path, serde_json::to_vec(&file).unwrap()).unwrap();
    let err = Member::start(q.configs[2].clone(), None, Arc::new(Markets(vec![0])))
        .await
        .err()
        .expect("a tampered share is refused")
        .to_string();
    assert!(err.contains("MAC"), "{err}");

    // A share changed before it was encrypted again (its secret no longer matches its public share).
    std::fs::write(path, &original).unwrap();
    let mut share: Value = serde_json::to_value(Share::load(path, PASSWORD).unwrap()).unwrap();
    let x = share["share"]["core"]["x"].as_str().unwrap().to_string();
    let other = format!(
        "{}{}",
        &x[..x.len() - 1],
        if x.ends_with('1') { "2" } else { "1" }
    );
    share["share"]["core"]["x"] = Value::String(other);
    let encrypted = serde_json::to_vec(&share).unwrap();
    std::fs::remove_file(path).unwrap();
    let dir = path.parent().unwrap();
    eth_keystore::encrypt_key(
        dir,
        &mut rand::thread_rng(),
        encrypted,
        PASSWORD,
        Some(path.file_name().unwrap().to_str().unwrap()),
    )
    .unwrap();
    let err = Share::load(path, PASSWORD).unwrap_err().to_string();
    assert!(err.contains("not a valid key share"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p256_key_signs_in_scope_and_a_compromised_coordinator_cannot_sign_out_of_scope() {
    // Member 0 is compromised: its own check passes anything.
    let q = Quorum::start("p256", Arc::new(Anything)).await;
    let key = q.members[1].keygen(KeyCurve::P256, 2).await.unwrap();
    assert_eq!(q.members[0].key_within(SAVING).await.unwrap(), key);

    // Positive control: in scope, the compromised member's request is co-signed.
    let (digest, context) = order(0, 1);
    let signed = q.members[0].sign(digest, &context).await.unwrap();
    assert!(verifies(&key, digest, &signed.signature));

    // Out of scope: every co-signer refuses; no signature.
    let (digest, context) = order(7, 2);
    let refused = q.members[0]
        .sign(digest, &context)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("member 1 refused: market 7 is out of scope")
            && refused.contains("member 2 refused: market 7 is out of scope"),
        "{refused}"
    );
    // A digest that is not the context's (an in-scope order offered for an out-of-scope digest).
    let (digest, _) = order(7, 3);
    let (_, context) = order(0, 3);
    let refused = q.members[0]
        .sign(digest, &context)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("the digest is not the context's"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_client_certified_by_another_authority_is_turned_away() {
    let dir = temp_dir("stranger");
    let addresses = free_addresses(3);
    let ids = dev_identities(3).unwrap();
    let p = primes();
    let member = Member::start(
        config(&dir, ids[0].clone(), &addresses),
        Some(p[0].clone()),
        Arc::new(Anything),
    )
    .await
    .unwrap();
    // A stranger with another quorum authority's certificate for member 1 dials member 0 and asks for a
    // partial signature: no answer comes (TLS 1.3 checks the client's certificate after the client's
    // side of the handshake, so the refusal shows on the first read).
    let stranger = dev_identities(3).unwrap().remove(1);
    assert!(ask(&stranger, addresses[0]).await.is_none());
    // Positive control: the quorum's own member 1 gets an answer (that it holds no such presignature).
    let answer = ask(&ids[1], addresses[0])
        .await
        .expect("a member is answered");
    assert!(answer.unwrap_err().contains("unknown presignature"));
    member.shutdown();
}

/// Dials `to` as `id`, asks for a partial signature with a presignature nobody made; the answer, if any.
async fn ask(id: &MemberIdentity, to: SocketAddr) -> Option<Result<Value, String>> {
    use keyscope_threshold::{
        tls::MemberTls,
        wire::{Hello, PartialRequest, read_frame, write_frame},
    };
    let tls = MemberTls::new(id).unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    let tcp = tokio::net::TcpStream::connect(to).await.unwrap();
    let mut stream = connector
        .connect(MemberTls::server_name(0), tcp)
        .await
        .ok()?;
    write_frame(&mut stream, &Hello::Online).await.ok()?;
    let (digest, context) = order(0, 1);
    let request = PartialRequest {
        presignature: B256::repeat_byte(7),
        digest,
        context,
    };
    write_frame(&mut stream, &request).await.ok()?;
    read_frame(&mut stream).await.ok()
}
