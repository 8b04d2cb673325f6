//! A throwaway Postgres cluster for tests, benches and devnets: `initdb` into a temp directory and
//! `pg_ctl` on a free loopback port, trust authentication, removed when dropped. Never a shared database.
//!
//! The binaries are looked for on `PATH`, then in Debian's `/usr/lib/postgresql/<version>/bin` (the
//! `postgresql` package; `make` installs it as root when missing). Postgres refuses to run as root: as
//! root, the cluster is run as the `postgres` user the package creates (through `runuser`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// Errors from the throwaway cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    /// No Postgres binaries were found.
    #[error(
        "no Postgres server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: install \
         the postgresql package (make does, with apt, as root)"
    )]
    Missing,
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// What was run.
        command: String,
        /// What it said.
        output: String,
    },
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct LocalPostgres {
    dir: PathBuf,
    bin: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
    as_postgres: bool,
}

fn bin_dir() -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for p in std::env::split_paths(&paths) {
            if p.join("initdb").is_file() && p.join("pg_ctl").is_file() {
                return Some(p);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16, LocalPostgresError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LocalPostgresError::Command {
            command: "bind 127.0.0.1:0".into(),
            output: e.to_string(),
        })
}

fn checked(command: &str, out: std::io::Result<Output>) -> Result<(), LocalPostgresError> {
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(LocalPostgresError::Command {
            command: command.into(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        }),
        Err(e) => Err(LocalPostgresError::Command {
            command: command.into(),
            output: e.to_string(),
        }),
    }
}

impl LocalPostgres {
    /// For a test: a started cluster, or None — after printing that `test` is SKIPPED and why — when
    /// this machine has no Postgres binaries. Any other failure panics.
    pub fn for_test(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(pg) => Some(pg),
            Err(e @ LocalPostgresError::Missing) => {
                eprintln!("SKIPPED {test}: {e}");
                None
            }
            Err(e) => panic!("the throwaway Postgres cluster did not start: {e}"),
        }
    }

    /// Creates a cluster in a fresh temp directory and starts it.
    pub fn start() -> Result<Self, LocalPostgresError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let bin = bin_dir().ok_or(LocalPostgresError::Missing)?;
        let dir = std::env::temp_dir().join(format!(
            "keyscope-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let io = |e: std::io::Error| LocalPostgresError::Command {
            command: format!("mkdir {}", dir.display()),
            output: e.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(io)?;
            if !status.success() {
                return Err(LocalPostgresError::Command {
                    command: "chown postgres (Postgres does not run as root)".into(),
                    output: "no postgres user: install the postgresql package".into(),
                });
            }
        }
        let pg = Self {
            dir,
            bin,
            port: free_port()?,
            as_postgres,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )?;
        pg.start_again()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), LocalPostgresError> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(&self.dir);
        checked(&format!("{tool} {}", args.join(" ")), cmd.output())
    }

    /// The URL to connect to it (database and user `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The directory it lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts it (again, after [`LocalPostgres::stop`]) on the same port and data.
    pub fn start_again(&self) -> Result<(), LocalPostgresError> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
    }

    /// Stops it: `fast` (clients cut off, a clean shutdown) or `immediate` (as a crash would).
    pub fn stop(&self, mode: &str) -> Result<(), LocalPostgresError> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", mode, "-w", "-t", "60", "stop"],
        )
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
