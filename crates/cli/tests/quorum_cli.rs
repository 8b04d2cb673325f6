//! `keyscope signer quorum-*` as an operator runs them, each member its own process: identities from a
//! quorum authority, two members joining the key generation a third coordinates (with safe primes kept in
//! files), every member printing the same key id, the id read back from a share; and the refusals: a
//! member that already holds a share, identities that would be overwritten, a wrong password.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

const PASSWORD: &str = "quorum cli test";

fn keyscope(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyscope"));
    c.args(args).env("KEYSCOPE_SIGNER_PASSWORD", PASSWORD);
    c
}

fn free_addresses(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Member `i`'s sidecar config (the chain fields are not read while the key is generated).
fn write_config(dir: &Path, i: usize, addresses: &[SocketAddr]) -> PathBuf {
    let members = addresses
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let path = dir.join(format!("member-{i}.toml"));
    std::fs::write(
        &path,
        format!(
            "socket = \"m{i}.sock\"\nrpc_url = \"http://127.0.0.1:8545\"\ndeployment = \"deployments/42301.json\"\naccount = \"0x1111111111111111111111111111111111111111\"\naudit_log = \"m{i}.audit.jsonl\"\naudit_keystore = \"m{i}.audit-key.json\"\n\n[quorum]\nname = \"mm-quorum\"\nrate = \"20/1s\"\nidentity = \"certs/member-{i}.identity.json\"\nshare = \"m{i}.share.json\"\nmembers = [{members}]\n"
        ),
    )
    .unwrap();
    path
}

fn stdout_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn three_member_processes_generate_one_key_and_each_prints_its_id() {
    let dir = std::env::temp_dir().join(format!("keyscope-quorum-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let certs = dir.join("certs");
    stdout_of(
        keyscope(&["signer", "quorum-certs", "--out", certs.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    // Written once: a second run would replace the members' keys.
    let again = keyscope(&["signer", "quorum-certs", "--out", certs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    // Each member's safe primes, generated earlier (the threshold crate's test data).
    let pairs: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../threshold/tests/data/primes.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let addresses = free_addresses(3);
    let configs: Vec<PathBuf> = (0..3).map(|i| write_config(&dir, i, &addresses)).collect();
    let primes: Vec<PathBuf> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = dir.join(format!("m{i}.primes.json"));
            std::fs::write(&path, serde_json::to_vec(p).unwrap()).unwrap();
            path
        })
        .collect();
    let arg = |p: &PathBuf| p.to_str().unwrap().to_string();

    let joiners: Vec<_> = [1, 2]
        .into_iter()
        .map(|i| {
            keyscope(&[
                "signer",
                "quorum-join",
                "--config",
                &arg(&configs[i]),
                "--primes",
                &arg(&primes[i]),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let coordinator = stdout_of(
        keyscope(&[
            "signer",
            "quorum-keygen",
            "--config",
            &arg(&configs[0]),
            "--curve",
            "secp256k1",
            "--primes",
            &arg(&primes[0]),
        ])
        .output()
        .unwrap(),
    );
    assert!(
        coordinator.starts_with("0x") && coordinator.len() == 42,
        "{coordinator}"
    );
    for j in joiners {
        assert_eq!(stdout_of(j.wait_with_output().unwrap()), coordinator);
    }
    for c in &configs {
        assert_eq!(
            stdout_of(
                keyscope(&["signer", "quorum-address", "--config", &arg(c)])
                    .output()
                    .unwrap()
            ),
            coordinator
        );
    }

    // A member holding a share does not generate another; a wrong password opens no share.
    let twice = keyscope(&[
        "signer",
        "quorum-keygen",
        "--config",
        &arg(&configs[0]),
        "--primes",
        &arg(&primes[0]),
    ])
    .output()
    .unwrap();
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already holds a share"));
    let wrong = keyscope(&["signer", "quorum-address", "--config", &arg(&configs[1])])
        .env("KEYSCOPE_SIGNER_PASSWORD", "not it")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("wrong password"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}
