//! `keyscope` outside its source tree: the built binary copied to a fresh directory, as `cargo install`
//! would put it, run from another fresh directory with nothing but anvil on PATH. `devnet`, `sim run` on
//! both backends and `demo` work there (everything they deploy is embedded in the binary, everything they
//! write lands in the working directory); without anvil the error says what to do; and the relayer
//! serves without a venue rather than pick up a deployment file it was not given.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use alloy::providers::{Provider, ProviderBuilder};
use alloy_primitives::Address;
use common::{DevnetProcess, free_port};
use keyscope_core::devnet::{foundry_tool, json_rpc, repo_root};
use serde_json::{Value, json};

/// A fresh directory tree: `bin/keyscope`, `tools/anvil`, and an empty `work/` to run in.
struct Installed {
    root: PathBuf,
}

impl Installed {
    fn new(name: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("keyscope-installed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["bin", "tools", "work"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(env!("CARGO_BIN_EXE_keyscope"), root.join("bin/keyscope")).unwrap();
        // A child that another test thread forked while the copy was open for writing holds that write end
        // until it execs, and running the copy meanwhile fails with ETXTBSY: wait until it runs once.
        for _ in 0..250 {
            match Command::new(root.join("bin/keyscope"))
                .arg("--help")
                .output()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => break,
            }
        }
        let anvil = foundry_tool(&repo_root(), "anvil").expect("the pinned anvil (npm install)");
        std::os::unix::fs::symlink(anvil, root.join("tools/anvil")).unwrap();
        Self { root }
    }

    fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// `keyscope` run in `work/` with PATH holding only `bin/` (and `tools/` if `with_anvil`), and no
    /// Keyscope variables from the test's environment.
    fn keyscope(&self, with_anvil: bool) -> Command {
        let mut path = vec![self.root.join("bin")];
        if with_anvil {
            path.push(self.root.join("tools"));
        }
        let mut cmd = Command::new(self.root.join("bin/keyscope"));
        cmd.current_dir(self.work())
            .env_clear()
            .env("PATH", std::env::join_paths(path).unwrap())
            .env("HOME", &self.root);
        cmd
    }

    fn run(&self, args: &[&str]) -> (Output, String) {
        let out = self.keyscope(true).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, text)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn json_line(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

fn small_scenario(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(repo_root().join("scenarios/cascade-thin-insurance.toml")).unwrap();
    let mut scenario: toml::Table = text.parse().unwrap();
    scenario.insert("steps".into(), 12.into());
    scenario["traders"]
        .as_table_mut()
        .unwrap()
        .insert("count".into(), 4.into());
    let path = dir.join("small.toml");
    std::fs::write(&path, toml::to_string(&scenario).unwrap()).unwrap();
    path
}

#[test]
fn without_anvil_the_error_says_where_it_looked_and_what_to_do() {
    let i = Installed::new("no-anvil");
    let out = i
        .keyscope(false)
        .args(["devnet", "--port", &free_port().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("anvil not found") && err.contains("PATH") && err.contains("--project"),
        "{err}"
    );
    assert!(!i.work().join("deployments").exists(), "nothing written");
}

#[test]
fn sim_runs_on_both_backends_from_any_directory() {
    let i = Installed::new("sim");
    // The scenarios ship inside the binary: listed, and run by the README's path from an empty folder.
    let (out, text) = i.run(&["sim", "list", "--json"]);
    assert!(out.status.success(), "{text}");
    let listed = json_line(&out);
    assert!(
        listed["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "breaker-drawdown"),
        "{listed}"
    );
    let (out, text) = i.run(&["sim", "run", "scenarios/breaker-drawdown.toml", "--json"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(json_line(&out)["scenario"], "breaker-drawdown");
    let (out, text) = i.run(&["sim", "run", "no-such-scenario"]);
    assert!(
        !out.status.success() && text.contains("keyscope sim list"),
        "{text}"
    );

    let scenario = small_scenario(&i.work());
    let (out, text) = i.run(&["sim", "run", "small.toml", "--json"]);
    assert!(out.status.success(), "{text}");
    let revm = json_line(&out);
    assert_eq!(revm["backend"], "revm");
    let written = |report: &Value| i.work().join(report["chart"].as_str().unwrap()).is_file();
    assert!(
        written(&revm),
        "the report lands in the working directory: {revm}"
    );
    let port = free_port();
    let (out, text) = i.run(&[
        "sim",
        "run",
        "small.toml",
        "--backend",
        "anvil",
        "--port",
        &port.to_string(),
        "--json",
    ]);
    assert!(out.status.success(), "{text}");
    let anvil = json_line(&out);
    assert_eq!(anvil["backend"], "anvil");
    assert!(written(&anvil), "{anvil}");
    assert!(
        i.work().join("deployments/31338.json").is_file(),
        "the devnet wrote its deployment here"
    );
    assert!(scenario.is_file());
}

#[tokio::test]
async fn devnet_serves_from_any_directory_and_the_relayer_guesses_no_deployment() {
    let i = Installed::new("devnet");
    let devnet = DevnetProcess::spawn_with(i.keyscope(true), 41_030);
    let file = i.work().join("deployments/41030.json");
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(&file).expect("deployment written in the working directory"),
    )
    .unwrap();
    let venue: Address = written["venue"].as_str().unwrap().parse().unwrap();
    assert_eq!(json!(venue), devnet.ready["devnet"]["venue"]);
    let provider = ProviderBuilder::new().connect_http(devnet.rpc().parse().unwrap());
    assert!(
        !provider.get_code_at(venue).await.unwrap().is_empty(),
        "the venue is deployed"
    );

    // A relayer started in the same directory, with that deployment file beside it but not given it.
    let listen = format!("127.0.0.1:{}", free_port());
    let data = i.work().join("relayer-data");
    let mut relayer = i
        .keyscope(true)
        .args([
            "relayer",
            "--json",
            "--rpc",
            &devnet.rpc(),
            "--listen",
            &listen,
            "--data-dir",
        ])
        .arg(&data)
        .env(
            "KEYSCOPE_RELAYER_KEY",
            "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(relayer.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let ready: Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("relayer printed {line:?}"));
    let status = json_rpc(&format!("http://{listen}"), "keyscope_status", json!([]))
        .await
        .unwrap();
    let _ = relayer.kill();
    let _ = relayer.wait();
    assert_eq!(ready["ready"], true);
    assert_eq!(
        status["venue"],
        Value::Null,
        "no venue guessed from ./deployments: {status}"
    );
}

#[test]
fn demo_runs_from_any_directory() {
    let i = Installed::new("demo");
    let (out, text) = i.run(&["demo", "--json"]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("margin calls 1, liquidations 1"), "{text}");
    // --json: the story on stderr, one summary on stdout.
    let summary = json_line(&out);
    assert_eq!(summary["liquidations"], 1, "{summary}");
    assert_eq!(summary["marginCalls"], 1, "{summary}");
    assert!(
        i.work().join("reports/demo/chart.svg").is_file(),
        "the chart lands in the working directory"
    );
}
