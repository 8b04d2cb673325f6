//! Who a member is and how members reach each other: mutual TLS 1.3. A quorum has its own certificate
//! authority; each member holds a certificate for the name `member-<index>.quorum.keyscope` and its key.
//! A member dialling another checks the server's certificate names the member it meant; a member
//! accepting a connection requires a client certificate from the quorum's authority and identifies the
//! caller by that certificate (it must be one of the quorum's member certificates, byte for byte), never
//! by anything the caller says.

use std::sync::Arc;

use rustls::{
    ClientConfig, RootCertStore, ServerConfig, crypto::CryptoProvider,
    server::WebPkiClientVerifier, version::TLS13,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde::{Deserialize, Serialize};

use crate::ThresholdError;

/// The name in member `index`'s certificate.
pub fn member_name(index: u16) -> String {
    format!("member-{index}.quorum.keyscope")
}

/// One member's TLS identity and the quorum's: PEM texts, as a member's files hold them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberIdentity {
    /// The quorum authority's certificate.
    pub ca_cert: String,
    /// Every member's certificate, by member index.
    pub member_certs: Vec<String>,
    /// This member's index.
    pub index: u16,
    /// This member's private key (PKCS#8).
    pub key: String,
}

/// A quorum's development authority and its members' identities. Not for production: the authority's
/// key exists in this process while the identities are made; production issues member certificates from
/// the operator's own authority and hands each member only its own key.
pub fn dev_identities(n: u16) -> Result<Vec<MemberIdentity>, ThresholdError> {
    let fail = |e: rcgen::Error| ThresholdError::Tls(format!("cannot make a certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Keyscope quorum CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?.pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for i in 0..n {
        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let mut params = rcgen::CertificateParams::new(vec![member_name(i)]).map_err(fail)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, member_name(i));
        certs.push(params.signed_by(&key, &issuer).map_err(fail)?.pem());
        keys.push(key.serialize_pem());
    }
    Ok(keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| MemberIdentity {
            ca_cert: ca_cert.clone(),
            member_certs: certs.clone(),
            index: i as u16,
            key,
        })
        .collect())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn cert(pem: &str) -> Result<CertificateDer<'static>, ThresholdError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| ThresholdError::Tls(format!("bad certificate PEM: {e}")))
}

/// The TLS side of a member: its client and server configurations and the quorum's certificates.
#[derive(Clone)]
pub struct MemberTls {
    /// This member's index in the quorum.
    pub index: u16,
    /// The configuration for dialling other members.
    pub client: Arc<ClientConfig>,
    /// The configuration for accepting other members.
    pub server: Arc<ServerConfig>,
    members: Vec<CertificateDer<'static>>,
}

impl MemberTls {
    /// Both configurations from `id`; an error says which part is bad.
    pub fn new(id: &MemberIdentity) -> Result<Self, ThresholdError> {
        let tls = |e: rustls::Error| ThresholdError::Tls(e.to_string());
        let members = id
            .member_certs
            .iter()
            .map(|p| cert(p))
            .collect::<Result<Vec<_>, _>>()?;
        let own = members.get(usize::from(id.index)).cloned().ok_or_else(|| {
            ThresholdError::Tls(format!("no certificate for member {}", id.index))
        })?;
        let key = || {
            PrivateKeyDer::from_pem_slice(id.key.as_bytes())
                .map_err(|e| ThresholdError::Tls(format!("bad key PEM: {e}")))
        };
        let mut roots = RootCertStore::empty();
        roots.add(cert(&id.ca_cert)?).map_err(tls)?;
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| ThresholdError::Tls(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![own.clone()], key()?)
            .map_err(tls)?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&TLS13])
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![own], key()?)
            .map_err(tls)?;
        Ok(Self {
            index: id.index,
            client: Arc::new(client),
            server: Arc::new(server),
            members,
        })
    }

    /// The name to check in member `index`'s server certificate.
    pub fn server_name(index: u16) -> ServerName<'static> {
        ServerName::try_from(member_name(index)).expect("a valid DNS name")
    }

    /// The member a verified client certificate belongs to, if it is one of the quorum's.
    pub fn member_of(&self, peer: Option<&[CertificateDer<'_>]>) -> Option<u16> {
        let leaf = peer?.first()?;
        self.members
            .iter()
            .position(|c| c.as_ref() == leaf.as_ref())
            .map(|i| i as u16)
    }
}
