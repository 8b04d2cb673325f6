//! A session key inside an HSM (SoftHSM2 through PKCS#11): generated in the token as sensitive and
//! non-extractable, granted on-chain by its P-256 key id, and used by a strategy through the sidecar —
//! an in-scope order signed in the token and mined, an out-of-scope one refused before the token is asked,
//! and the same key signing again after the sidecar restarts.
//!
//! Needs SoftHSM2 (Debian package `softhsm2`; `make test` installs it when it runs as root). Where the
//! module is missing, the test says so and checks nothing else; set KEYSCOPE_PKCS11_MODULE to point at
//! another module.

mod common;

use std::path::PathBuf;

use alloy_primitives::I256;
use common::*;
use keyscope_core::units::parse_units;
use keyscope_signer::keys::{HsmKey, HsmLocation, init_token};

const PIN: &str = "40321";

fn softhsm_module() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KEYSCOPE_PKCS11_MODULE") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

#[tokio::test]
async fn an_hsm_held_p256_key_trades_through_the_sidecar() {
    let Some(module) = softhsm_module() else {
        eprintln!(
            "SKIPPED an_hsm_held_p256_key_trades_through_the_sidecar: no SoftHSM2 module \
             (apt-get install softhsm2, or set KEYSCOPE_PKCS11_MODULE)"
        );
        return;
    };
    let dir = temp_dir("hsm");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // SAFETY: the only test in this binary; set before the module is loaded, and never changed again.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };

    init_token(&module, "keyscope", "so-pin-1234", PIN).unwrap();
    let at = HsmLocation {
        module: module.clone(),
        token: "keyscope".into(),
        label: "mm-hsm".into(),
    };
    let key = HsmKey::generate(&at, PIN).unwrap();
    // A wrong PIN and a missing label are refused by name.
    assert!(
        HsmKey::open(
            &HsmLocation {
                label: "nope".into(),
                ..at.clone()
            },
            PIN
        )
        .unwrap_err()
        .to_string()
        .contains("no EC key labelled \"nope\"")
    );

    let setup = Setup::start(41_042, dir, &[key.id]).await;
    let toml = format!(
        "[[keys]]\nname = \"mm-hsm\"\npkcs11 = {{ module = \"{}\", token = \"keyscope\", label = \"mm-hsm\" }}\nrate = \"10/1s\"\n",
        module.display()
    );
    let (config, auditor) = setup.write_config(&toml);
    let (task, signer) = start_sidecar(&config, Some(PIN)).await;
    assert_eq!(signer.keys().await.unwrap()[0].id, key.id);

    assert!(sign_and_send(&setup, &signer, setup.order_op(key.id, 0, 0, "0.01").await).await);
    let refused = signer
        .sign(&setup.order_op(key.id, 0, 1, "0.01").await, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code, 4001, "{refused}");

    task.stop();
    drop(signer);
    let (task, signer) = start_sidecar(&config, Some(PIN)).await;
    assert!(sign_and_send(&setup, &signer, setup.order_op(key.id, 0, 0, "0.01").await).await);
    assert_eq!(
        btc_position(&setup).await,
        I256::try_from(parse_units("0.02", 18).unwrap()).unwrap()
    );
    task.stop();
    let (entries, _) =
        keyscope_signer::audit::verify(&setup.dir.join("audit.jsonl"), auditor).unwrap();
    assert_eq!(entries, 3);
}
