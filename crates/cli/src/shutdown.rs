//! Child processes (anvil) die with `keyscope`, however it is stopped — even by `kill -9`.
//!
//! A terminal's Ctrl-C reaches the whole process group; a SIGTERM or SIGINT sent to `keyscope` alone (a
//! supervisor, `kill PID`, a test harness) reaches only us, and the default action would exit without
//! running a destructor — anvil would keep its port. And nothing runs at all on SIGKILL. So the commands
//! that start children (`devnet`, `demo`, `sim`) run in two processes:
//!
//! - [`supervise`]: the process the user started re-runs the same command as a worker in its own process
//!   group, asks the kernel to send the worker SIGTERM when the supervisor dies (`PR_SET_PDEATHSIG`, so
//!   SIGKILL included), forwards SIGINT, SIGTERM and SIGHUP to it, and exits as it exits — after killing
//!   what is left in the worker's group, so a worker killed outright takes its children along.
//! - [`install`], in the worker: on SIGINT, SIGTERM or SIGHUP it kills every child of the worker, reaps it
//!   and exits with 128 + the signal's number. A command that stops cleanly on its own (`devnet` after
//!   start-up) claims the first signal with [`requested`]; a second one still takes the hard path.

use std::{
    os::unix::process::{CommandExt, ExitStatusExt},
    process::Command,
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::Notify,
};

/// Set in the worker's environment: it runs the command itself instead of supervising.
const WORKER: &str = "KEYSCOPE_WORKER_OF";

/// The worker's pid, for the supervisor's signal handler.
static WORKER_PID: AtomicI32 = AtomicI32::new(0);

/// In the process the user started: runs this same command line as a worker and exits as it does (never
/// returns). In the worker: returns at once. Call before any thread or runtime is started.
pub(crate) fn supervise() {
    if std::env::var_os(WORKER).is_some() {
        return;
    }
    let code = match run_worker() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: starting keyscope's worker process: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Spawns the worker, forwards stop signals to it, waits; its exit code (128 + signal if one killed it).
fn run_worker() -> std::io::Result<i32> {
    let me = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(std::env::args_os().skip(1))
        .env(WORKER, me.to_string())
        // Its own group: a terminal's Ctrl-C reaches us only, and we pass it on once.
        .process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // We may have died before the request was made: then nobody would send it.
            if libc::getppid() != me {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    WORKER_PID.store(child.id() as libc::pid_t, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `forward` only calls kill(2), which is async-signal-safe.
        unsafe {
            libc::signal(sig, forward as *const () as libc::sighandler_t);
        }
    }
    let status = child.wait()?;
    // A worker killed outright (SIGKILL runs none of its code) leaves its children — anvil — in its
    // process group: end the group too. Empty after a clean exit: then nothing is sent.
    // SAFETY: kill(2) on the process group the worker was started in (its id is the worker's pid).
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

extern "C" fn forward(sig: libc::c_int) {
    let pid = WORKER_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// True while a command waits in [`requested`] to stop by itself.
static CLAIMED: AtomicBool = AtomicBool::new(false);
static STOP: Notify = Notify::const_new();

/// Starts the watcher. Call once, inside the runtime, before any child is spawned.
pub(crate) fn install() -> anyhow::Result<()> {
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
pub(crate) async fn requested() {
    CLAIMED.store(true, Ordering::SeqCst);
    STOP.notified().await;
}

/// Sends SIGKILL to every child of this process and waits for each to be gone.
pub(crate) fn kill_children() {
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
