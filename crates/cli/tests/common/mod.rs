#![allow(dead_code)] // each test crate uses part of it
//! A `keyscope devnet` child process for tests, stopped like a person would (Ctrl-C) even when the
//! test fails: a panicking test must not leave anvil running.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub struct DevnetProcess {
    child: Child,
    pub port: u16,
    /// The JSON line `keyscope devnet --json` printed when ready.
    pub ready: Value,
}

/// The JSON line a `keyscope … --json` child prints on stdout when it is ready, checked to say so.
pub fn ready(child: &mut Child, what: &str) -> Value {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("{what} printed {line:?}"));
    assert_eq!(ready["ready"], true, "{what}: {ready}");
    ready
}

/// A free local port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl DevnetProcess {
    /// `keyscope devnet` from the build, with the repository as its project (its pinned anvil).
    pub fn spawn(chain_id: u64) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyscope"));
        cmd.arg("--project").arg(keyscope_core::devnet::repo_root());
        Self::spawn_with(cmd, chain_id)
    }

    /// `cmd` (a `keyscope` with its directory and environment set) running `devnet` with `chain_id`.
    pub fn spawn_with(mut cmd: Command, chain_id: u64) -> Self {
        let port = free_port();
        let mut child = cmd
            .args([
                "devnet",
                "--json",
                "--chain-id",
                &chain_id.to_string(),
                "--port",
                &port.to_string(),
                "--relayer-port",
                "0",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let ready = ready(&mut child, "devnet");
        Self { child, port, ready }
    }

    pub fn rpc(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends Ctrl-C and waits for the process to exit; true if it did within 20 s.
    pub fn interrupt(&mut self) -> bool {
        self.signal("INT")
    }

    /// Sends signal `name` (`TERM`, `INT`) to the keyscope process alone and waits for it to exit; true if
    /// it did within 20 s.
    pub fn signal(&mut self, name: &str) -> bool {
        Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        self.exited_within(20)
    }

    /// The keyscope process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `secs` for the keyscope process to exit; true if it did.
    pub fn exited_within(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }
}

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() && !self.interrupt() {
            let _ = self.child.kill();
        }
    }
}

/// True if `haystack` contains the pieces of `expected` between its `…`s, in order (how the README's
/// walk-throughs write expected output).
pub fn contains_in_order(haystack: &str, expected: &str) -> bool {
    let mut rest = haystack;
    for piece in expected.split('…') {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A README walk-through's steps: the `nth` (0-based) `sh` block of the section titled `title` (up to the next
/// `## `), each command with its expected output lines (`#   text` under it; a heredoc kept whole).
pub fn readme_steps(title: &str, nth: usize) -> Vec<(String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(keyscope_core::devnet::repo_root().join("README.md")).unwrap();
    let section = readme
        .split(title)
        .nth(1)
        .unwrap_or_else(|| panic!("the README has the section {title:?}"))
        .split("\n## ")
        .next()
        .unwrap();
    let block = section
        .split("```sh")
        .nth(nth + 1)
        .unwrap_or_else(|| panic!("{title:?} has sh block {nth}"))
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

/// Runs `steps` in one bash in a fresh folder `name` (the built `keyscope` first on PATH, `KEYSCOPE_DEPLOYMENT`
/// set, each `(from, to)` of `replace` applied to every command), then checks each: it succeeds, or fails when
/// an expected line starts with `error: `, and prints its expected lines in order (`…` skips).
pub fn run_walkthrough(
    name: &str,
    steps: &[(String, Vec<String>)],
    deployment: &std::path::Path,
    replace: &[(&str, String)],
) {
    let work = std::env::temp_dir().join(format!("keyscope-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join(".out")).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_keyscope"))
        .parent()
        .unwrap();
    let mut script = format!(
        "export PATH={}:$PATH KEYSCOPE_DEPLOYMENT={}\n",
        bin.display(),
        deployment.display()
    );
    for (i, (command, _)) in steps.iter().enumerate() {
        let mut command = command.clone();
        for (from, to) in replace {
            command = command.replace(from, to);
        }
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

/// `keyscope relayer` as a separate process on a free loopback port, printing `--json` readiness; killed when
/// dropped. `extra` adds flags, `env` environment variables; its stderr goes to `<data_dir>.log`.
pub struct RelayerProcess {
    pub child: Child,
    /// The JSON line it printed when ready.
    pub ready: Value,
}

impl RelayerProcess {
    pub fn spawn(
        node: &str,
        relayer_key: &str,
        deployment: &std::path::Path,
        data_dir: &std::path::Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyscope"))
            .args([
                "relayer",
                "--json",
                "--listen",
                "127.0.0.1:0",
                "--rpc",
                node,
            ])
            .args(["--relayer-key", relayer_key])
            .arg("--deployment")
            .arg(deployment)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data_dir.with_extension("log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let ready = ready(&mut child, "relayer");
        Self { child, ready }
    }

    /// Its JSON-RPC endpoint.
    pub fn url(&self) -> String {
        self.ready["rpc"].as_str().unwrap().to_string()
    }
}

impl Drop for RelayerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
