//! Child processes (anvil) die with `keyscope`, however it is stopped.
//!
//! A terminal's Ctrl-C reaches the whole process group, anvil included; a SIGTERM or SIGINT sent to
//! `keyscope` alone (a supervisor, `kill PID`, a test harness) reaches only us, and the default action
//! would exit without running a destructor — anvil would keep its port. So the commands that start
//! children (`devnet`, `demo`, `sim`) install a watcher: on SIGINT, SIGTERM or SIGHUP it kills every
//! child of this process, reaps it and exits with 128 + the signal's number. A command that stops cleanly
//! on its own (`devnet` after start-up) claims the first signal with [`requested`]; a second one still
//! takes the hard path.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::Notify,
};

/// True while a command waits in [`requested`] to stop by itself.
static CLAIMED: AtomicBool = AtomicBool::new(false);
static STOP: Notify = Notify::const_new();

/// Starts the watcher. Call once, inside the runtime, before any child is spawned.
pub fn install() -> anyhow::Result<()> {
    let kinds = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
    ];
    for (kind, number) in kinds {
        let mut stream = signal(kind)?;
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if CLAIMED.swap(false, Ordering::SeqCst) {
                    STOP.notify_one();
                    continue;
                }
                kill_children();
                std::process::exit(128 + number);
            }
        });
    }
    Ok(())
}

/// Resolves at the next SIGINT, SIGTERM or SIGHUP, which the caller then handles by stopping cleanly.
pub async fn requested() {
    CLAIMED.store(true, Ordering::SeqCst);
    STOP.notified().await;
}

/// Sends SIGKILL to every child of this process and waits for each to be gone.
pub fn kill_children() {
    for pid in children() {
        // SAFETY: plain syscalls on pids that are our own children (only we can reap them, so a pid
        // cannot have been reused before waitpid returns).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Our children's pids, from /proc: each `/proc/PID/stat` names its parent after the command's `)`.
fn children() -> Vec<libc::pid_t> {
    let me = std::process::id() as libc::pid_t;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = &stat[stat.rfind(')')? + 1..];
                    after.split_whitespace().nth(1)?.parse::<libc::pid_t>().ok()
                })
                == Some(me)
        })
        .collect()
}
