//! TLS on the JSON-RPC listener, with rustls (the `ring` provider): the certificate chain and key are PEM
//! files, read again when their contents change — the files are polled every `reload_secs` (a renewal
//! that rewrites or renames the files over the old ones is picked up without a restart or a signal).
//! A reload that fails (a missing or garbled file, a key that is not the certificate's, a half-written
//! pair) keeps the certificate in use and logs why, once per change of the files.
//!
//! Also [`DevCa`]: a local development CA and server certificates it issues (rcgen), for
//! `keyscope relayer tls-init`, the demo and the tests.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, Weak},
    time::Duration,
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::TlsConfig;

/// Why TLS could not be set up, a certificate not loaded, or a development certificate not written.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} {path}: {reason}")]
    Read {
        /// Which file: certificate, key or client CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file holds no usable PEM of the kind expected.
    #[error("the TLS {what} {path} is not usable: {reason}")]
    Invalid {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the certificate's, or rustls refused the pair.
    #[error("the TLS key {key} does not go with the certificate {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
    /// A development certificate could not be made or written.
    #[error("cannot make the development certificate: {0}")]
    Generate(String),
    /// A development certificate's file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The crypto provider every TLS object here uses (named explicitly: a dependency enabling another
/// provider in rustls must not make the process-wide default ambiguous).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Every certificate in a PEM text, in order; an error if there is none or one is garbled.
fn parse_certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "no certificate in it (a PEM `BEGIN CERTIFICATE` block)".into(),
        ));
    }
    Ok(certs)
}

/// The certificate chain and key in two PEM texts, checked to belong together.
fn certified_key(cert: (&Path, &[u8]), key: (&Path, &[u8])) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = parse_certs("certificate", cert.0, cert.1)?;
    let der = PrivateKeyDer::from_pem_slice(key.1).map_err(|e| TlsError::Invalid {
        what: "key",
        path: key.0.to_path_buf(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no private key in it (a PEM `PRIVATE KEY` block: PKCS#8, PKCS#1 or SEC1)".into()
            }
            e => format!("bad PEM: {e}"),
        },
    })?;
    CertifiedKey::from_der(chain, der, &provider())
        .map(Arc::new)
        .map_err(|e| TlsError::Mismatch {
            cert: cert.0.to_path_buf(),
            key: key.0.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Reads and checks a certificate chain and its key (PEM files).
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let (c, k) = (read("certificate", cert)?, read("key", key)?);
    certified_key((cert, &c), (key, &k))
}

/// The certificate served now; replaced by a reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The TLS side of the listener: the acceptor for new connections and the certificate it serves, which
/// [`Tls::reload`] replaces when the files change (connections already open keep theirs).
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
    /// The files' contents last looked at (loaded or refused): a change is tried, and logged, once.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
    /// How long a client has to finish its handshake.
    pub handshake_timeout: Duration,
    reload_every: Duration,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate and key (and the client CAs, for mutual TLS) the config names. HTTP/1.1
    /// only (ALPN `http/1.1`), TLS 1.2 and 1.3.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let (c, k) = (
            read("certificate", &config.cert)?,
            read("key", &config.key)?,
        );
        let current = Arc::new(Current(RwLock::new(certified_key(
            (&config.cert, &c),
            (&config.key, &k),
        )?)));
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let builder = match &config.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in parse_certs("client CA", path, &read("client CA", path)?)? {
                    roots.add(ca).map_err(|e| TlsError::Invalid {
                        what: "client CA",
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::Invalid {
                            what: "client CA",
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder.with_cert_resolver(current.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            current,
            cert: config.cert.clone(),
            key: config.key.clone(),
            seen: Mutex::new((c, k)),
            handshake_timeout: Duration::from_secs(config.handshake_timeout_secs.max(1)),
            reload_every: Duration::from_secs(config.reload_secs.max(1)),
        }))
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// The certificate chain served now (the server's certificate first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .clone()
    }

    /// Reads the files again: if their contents changed and make a valid pair, new connections get the
    /// new certificate (Ok(true)); unchanged, Ok(false); changed but refused, the error, and the
    /// certificate in use stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (c, k) = (read("certificate", &self.cert)?, read("key", &self.key)?);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0 == c && seen.1 == k {
                return Ok(false);
            }
            *seen = (c.clone(), k.clone());
        }
        let fresh = certified_key((&self.cert, &c), (&self.key, &k))?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }

    /// Polls the files every `reload_secs` until `self` is dropped, logging each reload and each refusal
    /// (a file that cannot be read is logged each time: it may be mid-rename, or gone).
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.reload_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(tls) = weak.upgrade() else { return };
                match tls.reload() {
                    Ok(true) => {
                        tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!("TLS certificate not reloaded, the one in use stays: {e}")
                    }
                }
            }
        })
    }
}

/// A local development certificate authority: it issues server certificates for the relayer, and
/// clients trust its certificate. Not for production: its key sits in a file next to the certificates.
pub struct DevCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

/// The files [`DevCa::write_dev_files`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevFiles {
    /// The CA's certificate: what clients trust (`KEYSCOPE_CA_CERT`, a browser's or OS's trust store).
    pub ca_cert: PathBuf,
    /// The CA's key (mode 0600).
    pub ca_key: PathBuf,
    /// The relayer's certificate chain (`[tls] cert`).
    pub cert: PathBuf,
    /// The relayer's key (`[tls] key`, mode 0600).
    pub key: PathBuf,
    /// Whether the CA was made now (false: an existing one in the directory issued the certificate).
    pub new_ca: bool,
    /// The names and addresses the certificate is for.
    pub hosts: Vec<String>,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedPem {
    /// The certificate chain: the server's certificate, then the CA's.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// The development CA's parameters, derived from its key alone (so a CA written earlier is re-created as
/// an issuer from its key file): its name carries a fingerprint of the key, so two development CAs never
/// share a name (a client trusting another one is told the issuer is unknown, not that a signature is bad).
fn ca_params(
    key: &rcgen::KeyPair,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> rcgen::CertificateParams {
    let fingerprint = alloy_primitives::keccak256(key.public_key_raw());
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "Keyscope development");
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!(
            "Keyscope development CA {}",
            alloy_primitives::hex::encode(&fingerprint[..6])
        ),
    );
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    (p.not_before, p.not_after) = (not_before, not_after);
    p
}

impl DevCa {
    /// A new CA (an ECDSA P-256 key), valid from a day ago for `days`.
    pub fn generate(days: i64) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let now = time::OffsetDateTime::now_utc();
        let params = ca_params(
            &key,
            now - time::Duration::days(1),
            now + time::Duration::days(days),
        );
        let cert_pem = params.self_signed(&key).map_err(gen_err)?.pem();
        Ok(Self {
            issuer: rcgen::Issuer::new(params, key),
            cert_pem,
        })
    }

    /// The CA this module wrote earlier, from its certificate and key files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem =
            String::from_utf8(read("CA certificate", cert)?).map_err(|_| TlsError::Invalid {
                what: "CA certificate",
                path: cert.to_path_buf(),
                reason: "not PEM text".into(),
            })?;
        parse_certs("CA certificate", cert, cert_pem.as_bytes())?;
        let key_pem = String::from_utf8(read("CA key", key)?).unwrap_or_default();
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Invalid {
            what: "CA key",
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
        let now = time::OffsetDateTime::now_utc();
        Ok(Self {
            issuer: rcgen::Issuer::new(ca_params(&key, now, now), key),
            cert_pem,
        })
    }

    /// The CA's certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's key (PEM, PKCS#8).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `hosts` (DNS names or IP addresses; the first is also its common name), for a
    /// server or a client, valid from `not_before` to `not_after`, with a new key.
    pub fn issue(
        &self,
        hosts: &[String],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<IssuedPem, TlsError> {
        let mut p = rcgen::CertificateParams::new(hosts.to_vec()).map_err(gen_err)?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            hosts.first().cloned().unwrap_or_default(),
        );
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        // Server and client authentication: one development CA issues the relayer's certificate and,
        // for mutual TLS (`[tls] client_ca`), its clients'.
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        (p.not_before, p.not_after) = (not_before, not_after);
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let cert = p.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(IssuedPem {
            cert: format!("{}{}", cert.pem(), self.cert_pem),
            key: key.serialize_pem(),
        })
    }

    /// Writes a development CA (`ca.pem`, `ca.key`) into `dir` — or reuses the one already there, so
    /// clients that trust it keep trusting — and a server certificate it issues for `localhost`,
    /// `127.0.0.1`, `::1` and `extra_hosts`, valid for `days` (`cert.pem`, `key.pem`). Keys are written
    /// with mode 0600, each file replaced whole (a relayer polling them never reads half of one).
    pub fn write_dev_files(
        dir: &Path,
        extra_hosts: &[String],
        days: i64,
    ) -> Result<DevFiles, TlsError> {
        let write_err = |path: &Path, e: std::io::Error| TlsError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
        for h in extra_hosts {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
        let files = |new_ca| DevFiles {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            new_ca,
            hosts: hosts.clone(),
        };
        let f = files(false);
        let (ca, new_ca) = if f.ca_cert.exists() && f.ca_key.exists() {
            (Self::load(&f.ca_cert, &f.ca_key)?, false)
        } else {
            (Self::generate(days.max(365))?, true)
        };
        let f = files(new_ca);
        if new_ca {
            write_file(&f.ca_key, ca.key_pem().as_bytes(), 0o600)?;
            write_file(&f.ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
        }
        let now = time::OffsetDateTime::now_utc();
        let issued = ca.issue(
            &hosts,
            now - time::Duration::hours(1),
            now + time::Duration::days(days),
        )?;
        // The key first: a relayer polling the pair sees a mismatch for a moment, never a new
        // certificate with the old key served.
        write_file(&f.key, issued.key.as_bytes(), 0o600)?;
        write_file(&f.cert, issued.cert.as_bytes(), 0o644)?;
        Ok(f)
    }
}

/// Writes `bytes` to `path` whole: into a new file beside it with `mode`, then renamed over it.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let err = |e: std::io::Error| TlsError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keyscope-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn dev_files_load_and_a_second_run_keeps_the_ca() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("dev");
        let f = DevCa::write_dev_files(&d, &["relayer.internal".into()], 30).unwrap();
        assert!(f.new_ca);
        assert_eq!(
            f.hosts,
            ["localhost", "127.0.0.1", "::1", "relayer.internal"].map(String::from)
        );
        for key in [&f.ca_key, &f.key] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let tls = Tls::load(&TlsConfig::new(f.cert.clone(), f.key.clone())).unwrap();
        assert_eq!(tls.chain().len(), 2, "server certificate, then the CA's");
        let ca = std::fs::read(&f.ca_cert).unwrap();
        let again = DevCa::write_dev_files(&d, &[], 30).unwrap();
        assert!(!again.new_ca);
        assert_eq!(std::fs::read(&again.ca_cert).unwrap(), ca, "the CA is kept");
        // The new certificate is signed by the kept CA: its chain ends with the same CA certificate.
        let reloaded = tls.reload().unwrap();
        assert!(reloaded, "the files changed");
        assert_eq!(
            tls.chain()[1].as_ref(),
            parse_certs("x", &d, &ca).unwrap()[0].as_ref()
        );
        assert!(!tls.reload().unwrap(), "unchanged files are not reloaded");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_files_are_named_and_a_failed_reload_keeps_the_certificate() {
        let d = dir("bad");
        let f = DevCa::write_dev_files(&d, &[], 30).unwrap();
        let missing = d.join("nope.pem");
        let e = load_certified_key(&missing, &f.key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("certificate") && e.contains("nope.pem"), "{e}");
        let garbled = d.join("garbled.pem");
        std::fs::write(&garbled, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
        let e = load_certified_key(&garbled, &f.key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("garbled.pem") && e.contains("not usable"), "{e}");
        std::fs::write(&garbled, "hello\n").unwrap();
        let e = load_certified_key(&garbled, &f.key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no certificate"), "{e}");
        let e = load_certified_key(&f.cert, &f.ca_cert)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key") && e.contains("no private key"), "{e}");
        // Another pair's key: refused as a mismatch.
        let other = DevCa::generate(1)
            .unwrap()
            .issue(
                &["localhost".into()],
                time::OffsetDateTime::now_utc(),
                time::OffsetDateTime::now_utc() + time::Duration::days(1),
            )
            .unwrap();
        let other_key = d.join("other.key");
        std::fs::write(&other_key, other.key).unwrap();
        let e = load_certified_key(&f.cert, &other_key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not go with"), "{e}");

        let tls = Tls::load(&TlsConfig::new(f.cert.clone(), f.key.clone())).unwrap();
        let before = tls.chain();
        std::fs::write(&f.cert, "garbage").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.chain(), before, "the old certificate stays");
        assert!(
            !tls.reload().unwrap(),
            "a refused change is tried once, not each poll"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
