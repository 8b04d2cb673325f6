//! `keyscope signer serve` and its socket: a second sidecar refuses a socket something answers on — before
//! it claims to listen or opens anything, naming the path and the fix — and the first keeps its socket; a
//! stale socket file (nothing listening) is no obstacle. No chain is needed: the refusal comes first.

use std::{os::unix::net::UnixListener, path::PathBuf, process::Command};

/// A folder with a sidecar config whose socket is `signer.sock` in it.
fn folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-signer-socket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("signer.toml"),
        "socket = \"signer.sock\"\nrpc_url = \"http://127.0.0.1:9\"\ndeployment = \"deployment.json\"\n\
         account = \"0x0000000000000000000000000000000000000001\"\naudit_log = \"audit.jsonl\"\n\
         audit_keystore = \"audit-key.json\"\n\n[[keys]]\nname = \"mm\"\ncurve = \"p256\"\n\
         keystore = \"mm.json\"\nrate = \"10/1s\"\n",
    )
    .unwrap();
    dir
}

fn serve(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["signer", "serve", "--config"])
        .arg(dir.join("signer.toml"))
        .env("KEYSCOPE_SIGNER_PASSWORD", "pw")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_second_sidecar_refuses_a_live_socket_and_a_stale_one_is_no_obstacle() {
    let dir = folder();
    let socket = dir.join("signer.sock");
    let live = UnixListener::bind(&socket).unwrap();

    let (ok, err) = serve(&dir);
    assert!(!ok);
    assert!(
        err.contains(&format!("socket {} is in use", socket.display()))
            && err.contains("stop that sidecar first"),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");
    assert!(!dir.join("audit.jsonl").exists(), "nothing opened");
    // The first still owns its socket.
    let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    live.accept().unwrap();

    // Its owner gone, the file left behind is stale: start-up gets past it (to the missing deployment).
    drop(live);
    assert!(socket.exists());
    let (ok, err) = serve(&dir);
    assert!(!ok);
    assert!(!err.contains("in use"), "{err}");
    assert!(err.contains("deployment.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
