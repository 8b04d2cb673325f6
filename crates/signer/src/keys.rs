//! Where session keys live: an encrypted keystore file (the Web3 Secret Storage format geth, foundry and
//! clef use — scrypt and AES-128-CTR — holding a secp256k1 or a P-256 scalar), or an HSM reached through
//! PKCS#11, where a P-256 key is generated inside the token and never leaves it.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, B256, Bytes};
use cryptoki::{
    context::{CInitializeArgs, Pkcs11},
    mechanism::Mechanism,
    object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle},
    session::{Session, UserType},
    types::AuthPin,
};
use keyscope_core::key::{
    Curve, KeySigner, P256Key, SignError, p256_public_from_sec1, p256_signature_bytes,
};

use crate::SignerError;

/// DER of the prime256v1 (P-256) curve OID, the `CKA_EC_PARAMS` of a P-256 key.
const P256_OID_DER: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A key held by the sidecar.
#[derive(Debug, Clone)]
pub enum HeldKey {
    /// A secp256k1 key decrypted from a keystore.
    Secp256k1(PrivateKeySigner),
    /// A P-256 key decrypted from a keystore.
    P256(P256Key),
    /// A P-256 key inside an HSM.
    Hsm(Arc<HsmKey>),
}

impl KeySigner for HeldKey {
    fn id(&self) -> Address {
        match self {
            HeldKey::Secp256k1(k) => k.address(),
            HeldKey::P256(k) => k.id(),
            HeldKey::Hsm(k) => k.id,
        }
    }

    fn curve(&self) -> Curve {
        match self {
            HeldKey::Secp256k1(_) => Curve::Secp256k1,
            HeldKey::P256(_) | HeldKey::Hsm(_) => Curve::P256,
        }
    }

    async fn sign_digest(&self, digest: B256) -> Result<Bytes, SignError> {
        match self {
            HeldKey::Secp256k1(k) => KeySigner::sign_digest(k, digest).await,
            HeldKey::P256(k) => k.sign_digest_sync(digest),
            HeldKey::Hsm(k) => k.sign_digest(digest),
        }
    }
}

/// Encrypts a fresh key on `curve` into the keystore file `path`; returns the key's id.
pub fn new_keystore(path: &Path, curve: Curve, password: &str) -> Result<Address, SignerError> {
    let secret = match curve {
        Curve::Secp256k1 => B256::from_slice(&PrivateKeySigner::random().credential().to_bytes()),
        Curve::P256 => P256Key::random().to_bytes(),
    };
    write_keystore(path, curve, secret, password)
}

/// Encrypts the scalar `secret` of a key on `curve` into the keystore file `path`; returns the key's id.
pub fn write_keystore(
    path: &Path,
    curve: Curve,
    secret: B256,
    password: &str,
) -> Result<Address, SignerError> {
    let fail = |reason: String| SignerError::Keystore {
        path: path.display().to_string(),
        reason,
    };
    let key = held_from_secret(curve, secret).map_err(fail)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| fail("not a file name".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    eth_keystore::encrypt_key(dir, &mut rand::thread_rng(), secret, password, Some(name))
        .map_err(|e| fail(e.to_string()))?;
    Ok(key.id())
}

/// Decrypts the keystore file `path` holding a key on `curve`.
pub fn read_keystore(path: &Path, curve: Curve, password: &str) -> Result<HeldKey, SignerError> {
    let fail = |reason: String| SignerError::Keystore {
        path: path.display().to_string(),
        reason,
    };
    let secret = eth_keystore::decrypt_key(path, password)
        .map_err(|e| fail(format!("{e} (wrong password, or not a keystore file)")))?;
    if secret.len() != 32 {
        return Err(fail(format!(
            "holds {} bytes, not a 32-byte key",
            secret.len()
        )));
    }
    held_from_secret(curve, B256::from_slice(&secret)).map_err(fail)
}

fn held_from_secret(curve: Curve, secret: B256) -> Result<HeldKey, String> {
    match curve {
        Curve::Secp256k1 => PrivateKeySigner::from_bytes(&secret)
            .map(HeldKey::Secp256k1)
            .map_err(|e| e.to_string()),
        Curve::P256 => P256Key::from_bytes(&secret)
            .map(HeldKey::P256)
            .map_err(|e| e.to_string()),
    }
}

/// Where a PKCS#11 key is: the module (the vendor's `.so`), the token's label and the key's label.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct HsmLocation {
    /// Path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The key's `CKA_LABEL`.
    pub label: String,
}

/// A P-256 key inside an HSM, with a logged-in session to sign with. The private key is generated in the
/// token as sensitive and non-extractable: it never leaves it.
#[derive(Debug)]
pub struct HsmKey {
    /// The key's id on-chain.
    pub id: Address,
    x: B256,
    y: B256,
    handle: ObjectHandle,
    session: Mutex<Session>,
    module: String,
}

/// One initialised context per module per process: PKCS#11 allows `C_Initialize` once.
fn context(module: &Path) -> Result<Pkcs11, SignerError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .expect("no panic while holding the PKCS#11 context table");
    if let Some(c) = contexts.get(module) {
        return Ok(c.clone());
    }
    let fail = |e: cryptoki::error::Error| pkcs11_error(module, e);
    let pkcs11 = Pkcs11::new(module).map_err(fail)?;
    pkcs11
        .initialize(CInitializeArgs::OsThreads)
        .map_err(fail)?;
    contexts.insert(module.to_path_buf(), pkcs11.clone());
    Ok(pkcs11)
}

fn pkcs11_error(module: &Path, e: impl std::fmt::Display) -> SignerError {
    SignerError::Pkcs11 {
        module: module.display().to_string(),
        reason: e.to_string(),
    }
}

/// Initialises the first uninitialised token of `module` with `label`, its security officer PIN and the
/// user PIN (for SoftHSM in tests and first set-up; real HSMs come initialised by their operators).
pub fn init_token(
    module: &Path,
    label: &str,
    so_pin: &str,
    user_pin: &str,
) -> Result<(), SignerError> {
    let pkcs11 = context(module)?;
    let fail = |e: cryptoki::error::Error| pkcs11_error(module, e);
    let slot = pkcs11
        .get_slots_with_token()
        .map_err(fail)?
        .into_iter()
        .find(|s| {
            pkcs11
                .get_token_info(*s)
                .is_ok_and(|t| !t.token_initialized())
        })
        .ok_or_else(|| pkcs11_error(module, "no uninitialised token"))?;
    let so_pin = AuthPin::new(so_pin.into());
    pkcs11.init_token(slot, &so_pin, label).map_err(fail)?;
    let session = pkcs11.open_rw_session(slot).map_err(fail)?;
    session.login(UserType::So, Some(&so_pin)).map_err(fail)?;
    session
        .init_pin(&AuthPin::new(user_pin.into()))
        .map_err(fail)?;
    Ok(())
}

fn open_session(at: &HsmLocation, pin: &str) -> Result<Session, SignerError> {
    let pkcs11 = context(&at.module)?;
    let fail = |e: cryptoki::error::Error| pkcs11_error(&at.module, e);
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .map_err(fail)?
        .into_iter()
        .find(|s| {
            pkcs11
                .get_token_info(*s)
                .is_ok_and(|t| t.label() == at.token)
        })
        .ok_or_else(|| pkcs11_error(&at.module, format!("no token labelled {:?}", at.token)))?;
    let session = pkcs11.open_rw_session(slot).map_err(fail)?;
    match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => return Err(fail(e)),
    }
    Ok(session)
}

impl HsmKey {
    /// Generates a P-256 key pair labelled `at.label` inside the token (private half sensitive and
    /// non-extractable) and opens it.
    pub fn generate(at: &HsmLocation, pin: &str) -> Result<Self, SignerError> {
        let session = open_session(at, pin)?;
        let label = at.label.as_bytes().to_vec();
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(P256_OID_DER.to_vec()),
            Attribute::Label(label.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label),
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| pkcs11_error(&at.module, e))?;
        drop(session);
        Self::open(at, pin)
    }

    /// Opens the P-256 key labelled `at.label` in the token, logging in with the user `pin`.
    pub fn open(at: &HsmLocation, pin: &str) -> Result<Self, SignerError> {
        let session = open_session(at, pin)?;
        let fail = |e: cryptoki::error::Error| pkcs11_error(&at.module, e);
        let label = Attribute::Label(at.label.as_bytes().to_vec());
        let find = |class: ObjectClass| -> Result<ObjectHandle, SignerError> {
            let found = session
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC),
                    label.clone(),
                ])
                .map_err(fail)?;
            match found.as_slice() {
                [one] => Ok(*one),
                [] => Err(pkcs11_error(
                    &at.module,
                    format!("no EC key labelled {:?} in token {:?}", at.label, at.token),
                )),
                _ => Err(pkcs11_error(
                    &at.module,
                    format!(
                        "{} keys labelled {:?}: labels must be unique",
                        found.len(),
                        at.label
                    ),
                )),
            }
        };
        let handle = find(ObjectClass::PRIVATE_KEY)?;
        let public = find(ObjectClass::PUBLIC_KEY)?;
        let point = match session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(fail)?
            .pop()
        {
            Some(Attribute::EcPoint(p)) => p,
            _ => {
                return Err(pkcs11_error(
                    &at.module,
                    "the public key has no CKA_EC_POINT",
                ));
            }
        };
        // CKA_EC_POINT is a DER OCTET STRING around the SEC1 point (some tokens give the bare point).
        let sec1 = match point.as_slice() {
            [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
            bare => bare,
        };
        let (x, y) = p256_public_from_sec1(sec1).map_err(|e| pkcs11_error(&at.module, e))?;
        Ok(Self {
            id: keyscope_core::key::p256_key_id(x, y),
            x,
            y,
            handle,
            session: Mutex::new(session),
            module: at.module.display().to_string(),
        })
    }

    /// `r ‖ s ‖ x ‖ y` over `digest`, signed inside the token (CKM_ECDSA on the 32-byte digest).
    pub fn sign_digest(&self, digest: B256) -> Result<Bytes, SignError> {
        let session = self
            .session
            .lock()
            .map_err(|_| SignError("the HSM session lock is poisoned".into()))?;
        let raw = session
            .sign(&Mechanism::Ecdsa, self.handle, digest.as_slice())
            .map_err(|e| SignError(format!("PKCS#11 ({}): {e}", self.module)))?;
        let sig = p256::ecdsa::Signature::from_slice(&raw)
            .map_err(|e| SignError(format!("the token returned a bad signature: {e}")))?;
        Ok(p256_signature_bytes(&sig, self.x, self.y))
    }
}
