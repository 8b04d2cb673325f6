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
        let deadline = Instant::now() + Duration::from_secs(20);
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
