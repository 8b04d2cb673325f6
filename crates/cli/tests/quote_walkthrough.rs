//! The README's market maker walk-through ("Quoting with signed orders"), run as written by bash in a fresh
//! temporary folder against `keyscope devnet` (its relayer runs the matcher): the maker's account, a P-256
//! session key in the signing sidecar's keystore, two-sided post-only quotes signed through the sidecar, a
//! scheduled cancel, the book, a taker's IOC order lifting the ask, the fill settled on both accounts, quotes
//! beyond the key's scope refused off-chain (by the sidecar, and by the matcher), cancel-all through the
//! sidecar and its audit trail. Lines of the form `#   text` under a command are its expected output (`…`
//! skips a part; `error: …` means it must fail with that). The liberties taken: the devnet's RPC, relayer
//! and deployment file replace `localhost:8545`, `localhost:4337` and `deployments/31337.json`, and
//! `keyscope` is the binary under test.

mod common;

use std::{path::Path, process::Command};

use common::{DevnetProcess, contains_in_order};
use keyscope_core::devnet::repo_root;

const SECTION: &str = "## Quoting with signed orders: a market maker's walk-through";

/// The section's commands (its second `sh` block: the first starts the devnet, which the test does itself;
/// a heredoc kept whole) and, for each, its expected output lines.
fn walkthrough(readme: &str) -> Vec<(String, Vec<String>)> {
    let section = readme
        .split(SECTION)
        .nth(1)
        .expect("the README has the section")
        .split("\n## ")
        .next()
        .unwrap();
    let block = section
        .split("```sh")
        .nth(2)
        .expect("its second sh block")
        .split("```")
        .next()
        .unwrap();
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut lines = block.lines().filter(|l| !l.trim().is_empty());
    while let Some(line) = lines.next() {
        if let Some(expected) = line.strip_prefix("#   ") {
            steps
                .last_mut()
                .expect("an expectation follows a command")
                .1
                .push(expected.to_string());
            continue;
        }
        let mut command = line.to_string();
        if let Some(tag) = line.split("<<").nth(1).map(str::trim) {
            for body in lines.by_ref() {
                command.push('\n');
                command.push_str(body);
                if body.trim() == tag {
                    break;
                }
            }
        }
        steps.push((command, Vec::new()));
    }
    steps
}

#[test]
fn readme_quote_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let steps = walkthrough(&readme);
    assert!(steps.len() >= 25, "the walk-through has its commands");
    // It quotes through the sidecar, lifts the ask and checks the settlement and the scope.
    for needed in [
        "keyscope signer serve",
        "--post-only --signer signer.sock",
        "--ioc",
        "keyscope portfolio",
        "--size 0.6",
    ] {
        assert!(
            steps.iter().any(|(c, _)| c.contains(needed)),
            "no step has {needed:?}"
        );
    }
    let devnet = DevnetProcess::spawn(42_251);
    let rpc = devnet.rpc();
    let bundler = devnet.ready["devnet"]["bundler"]
        .as_str()
        .unwrap()
        .to_string();
    let deployment = repo_root().join("deployments/42251.json");
    let work =
        std::env::temp_dir().join(format!("keyscope-quote-walkthrough-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join(".out")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_keyscope")).parent().unwrap();

    let mut script = format!(
        "export PATH={}:$PATH KEYSCOPE_DEPLOYMENT={}\n",
        bin.display(),
        deployment.display()
    );
    for (i, (command, _)) in steps.iter().enumerate() {
        let command = command
            .replace("http://localhost:8545", &rpc)
            .replace("http://localhost:4337", &bundler)
            .replace("deployments/31337.json", &deployment.display().to_string());
        script.push_str(&format!(
            "{{ {command}\n}} > .out/{i} 2>&1; echo $? > .out/{i}.rc\n"
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
    assert!(status.code().is_some(), "bash ran the walk-through");

    for (i, (command, expected)) in steps.iter().enumerate() {
        let out = std::fs::read_to_string(work.join(format!(".out/{i}"))).unwrap_or_default();
        let rc = std::fs::read_to_string(work.join(format!(".out/{i}.rc"))).unwrap_or_default();
        let ok = rc.trim() == "0";
        let must_fail = expected.iter().any(|e| e.starts_with("error: "));
        assert!(
            ok != must_fail,
            "`{command}` exited {rc:?} (expected to {}):\n{out}",
            if must_fail { "fail" } else { "succeed" }
        );
        for e in expected {
            assert!(
                contains_in_order(&out, e),
                "`{command}` should print {e:?}; printed:\n{out}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}
