//! The README's strategy-engine walk-through ("Institutional keys"), run as written by bash in a fresh
//! temporary folder against `keyscope devnet`: an account, a SoftHSM token and a P-256 key generated in it,
//! a grant with a committed successor, the signing sidecar in the background, orders signed through it
//! (one refused before signing), a heartbeat, the hand-over, the successor's order and the audit trail.
//! Lines of the form `#   text` under a command are its expected output (`…` skips a part; `error: …`
//! means it must fail with that). The liberties taken: the devnet's RPC address and deployment file
//! replace `localhost:8545` and `deployments/31337.json`, and `keyscope` is the binary under test.
//!
//! Needs SoftHSM2 at the README's module path (`make test` installs it when it runs as root); without it
//! the test says so and checks nothing else.

mod common;

use std::{path::Path, process::Command};

use common::{DevnetProcess, contains_in_order};
use keyscope_core::devnet::repo_root;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The walk-through's commands (continuation lines joined, a heredoc kept whole) and, for each, its
/// expected output lines.
fn walkthrough() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("## Institutional keys")
        .nth(1)
        .expect("the README has the section")
        .split("```sh")
        .nth(1)
        .expect("its sh block")
        .split("```")
        .next()
        .unwrap();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut lines = block.lines().filter(|l| !l.trim().is_empty());
    while let Some(line) = lines.next() {
        if let Some(expected) = line.strip_prefix("#   ") {
            out.last_mut()
                .expect("an expectation follows a command")
                .1
                .push(expected.to_string());
            continue;
        }
        let mut cmd = line.to_string();
        if let Some(tag) = line.split("<<").nth(1).map(str::trim) {
            for body in lines.by_ref() {
                cmd.push('\n');
                cmd.push_str(body);
                if body.trim() == tag {
                    break;
                }
            }
        }
        out.push((cmd, Vec::new()));
    }
    out
}

#[test]
fn readme_signer_walkthrough_runs_as_written() {
    if !Path::new(MODULE).exists() {
        eprintln!(
            "SKIPPED readme_signer_walkthrough_runs_as_written: no SoftHSM2 at {MODULE} (apt-get install softhsm2)"
        );
        return;
    }
    let steps = walkthrough();
    assert!(steps.len() >= 15, "the walk-through has its commands");
    let mut devnet = DevnetProcess::spawn(41_006);
    let rpc = devnet.rpc();
    let deployment = repo_root().join("deployments/41006.json");
    let work = std::env::temp_dir().join(format!(
        "keyscope-signer-walkthrough-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join(".out")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_keyscope")).parent().unwrap();

    let mut script = format!(
        "export PATH={}:$PATH KEYSCOPE_DEPLOYMENT={}\n",
        bin.display(),
        deployment.display()
    );
    for (i, (cmd, _)) in steps.iter().enumerate() {
        let cmd = cmd
            .replace("http://localhost:8545", &rpc)
            .replace("deployments/31337.json", &deployment.display().to_string());
        script.push_str(&format!(
            "{{ {cmd}\n}} > .out/{i} 2>&1; echo $? > .out/{i}.rc\n"
        ));
    }
    script.push_str("kill $(jobs -p) 2>/dev/null; wait\n");
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .status()
        .unwrap();
    assert!(status.success() || status.code().is_some());

    for (i, (cmd, expected)) in steps.iter().enumerate() {
        let out = std::fs::read_to_string(work.join(format!(".out/{i}"))).unwrap_or_default();
        let rc = std::fs::read_to_string(work.join(format!(".out/{i}.rc"))).unwrap_or_default();
        let ok = rc.trim() == "0";
        let must_fail = expected.iter().any(|e| e.starts_with("error: "));
        assert!(
            ok != must_fail,
            "`{cmd}` exited {rc:?} (expected to {}):\n{out}",
            if must_fail { "fail" } else { "succeed" }
        );
        for e in expected {
            assert!(
                contains_in_order(&out, e),
                "`{cmd}` should print {e:?}; printed:\n{out}"
            );
        }
    }
    assert!(devnet.interrupt(), "devnet stops on Ctrl-C");
    let _ = std::fs::remove_dir_all(&work);
}
