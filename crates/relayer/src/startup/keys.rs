//! The bundle key: from the config's hex, keystore or key file (one only its owner may read), and the keys
//! an instance of a deployment may lease.

use alloy::signers::local::PrivateKeySigner;

use crate::{Config, RelayerError, config};

/// The bundle keys an instance of a deployment may lease: its own, then `cluster.bundle_keys`, each once.
pub(super) fn bundle_keys(config: &Config) -> Result<Vec<PrivateKeySigner>, RelayerError> {
    let mut keys = vec![signer(config)?];
    for hex in &config.cluster.bundle_keys {
        let key = keyscope_core::signer::from_hex(hex)?;
        if keys.iter().all(|k| k.address() != key.address()) {
            keys.push(key);
        }
    }
    Ok(keys)
}

pub(super) fn signer(config: &Config) -> Result<PrivateKeySigner, RelayerError> {
    Ok(
        match (
            &config.relayer_key,
            &config.keystore,
            &config.relayer_key_file,
        ) {
            (Some(key), _, _) => keyscope_core::signer::from_hex(key)?,
            (None, Some(path), _) => keyscope_core::signer::from_keystore(
                path,
                config.keystore_password.as_deref().unwrap_or_default(),
            )?,
            (None, None, Some(path)) => keyscope_core::signer::from_hex(&read_key_file(path)?)?,
            (None, None, None) => unreachable!("Config::check requires a key"),
        },
    )
}

/// The bundle key from a file only its owner may read: a key readable by other local users is refused.
fn read_key_file(path: &std::path::Path) -> Result<String, config::ConfigError> {
    let invalid = |reason: String| config::ConfigError::Invalid {
        field: "relayer_key_file",
        reason: format!("{}: {reason}", path.display()),
    };
    let meta = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(invalid(format!(
                "mode {mode:o} lets other users read the bundle key; chmod 600 it"
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_others_can_read_is_refused_without_showing_the_key() {
        let dir = std::env::temp_dir().join(format!("keyscope-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bundle.key");
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        std::fs::write(&path, key).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = super::read_key_file(&path).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("59c6995e"), "the key leaked: {e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(super::read_key_file(&path).unwrap(), key);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
