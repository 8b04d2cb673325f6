//! Progress on stderr: on a terminal (a pseudo-terminal from `script`), `sim mc` and `sim run` draw a bar
//! with the rate and the time left; off a terminal they draw nothing, so no escape or carriage return
//! reaches a log; `sim run --backend anvil` off a terminal says what its long set-up is doing before it
//! starts. The scenario is tests/tiny.toml, so the runs take a second.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

const TINY: &str = include_str!("tiny.toml");

/// A fresh folder holding `tiny.toml`.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyscope-progress-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny.toml"), TINY).unwrap();
    dir
}

/// `keyscope ARGS` in `dir` with stdout and stderr on a pseudo-terminal; what the terminal showed.
fn on_a_terminal(dir: &Path, args: &str) -> String {
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_keyscope")),
            "/dev/null",
        ])
        .current_dir(dir)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `keyscope ARGS` in `dir` with stdout and stderr piped.
fn piped(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(args)
        .current_dir(dir)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The last frame of the bar for `unit` (frames are separated by carriage returns).
fn last_frame<'a>(screen: &'a str, unit: &str) -> &'a str {
    screen
        .split(['\r', '\n'])
        .rfind(|f| f.contains(&format!("{unit} ")) && f.contains('['))
        .unwrap_or_else(|| panic!("no {unit} bar in {screen:?}"))
}

#[test]
fn on_a_terminal_the_bars_show_the_rate_and_the_time_left() {
    let dir = folder("tty");
    let screen = on_a_terminal(&dir, "sim mc tiny.toml --paths 4 --threads 2 --out mc");
    let frame = last_frame(&screen, "paths");
    assert!(frame.contains("paths 4/4"), "{frame:?}");
    assert!(frame.contains("/s") && frame.contains("ETA"), "{frame:?}");
    // The report starts on its own line, not at the end of the bar's.
    assert!(screen.contains("\ntiny: 4 paths"), "{screen:?}");

    let screen = on_a_terminal(&dir, "sim run tiny.toml --out run");
    let frame = last_frame(&screen, "step");
    assert!(frame.contains("step 6/6"), "{frame:?}");
    assert!(frame.contains("/s") && frame.contains("ETA"), "{frame:?}");
    assert!(screen.contains("\ntiny on revm"), "{screen:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn off_a_terminal_nothing_is_drawn() {
    let dir = folder("piped");
    for args in [
        &["sim", "mc", "tiny.toml", "--paths", "2", "--out", "mc"][..],
        &["sim", "run", "tiny.toml", "--out", "run"][..],
    ] {
        let out = piped(&dir, args);
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !stream.iter().any(|b| *b == 0x1b || *b == b'\r'),
                "{args:?}: {:?}",
                String::from_utf8_lossy(stream)
            );
        }
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sim_run_on_anvil_says_what_its_set_up_does_off_a_terminal() {
    let dir = folder("anvil");
    let project = keyscope_core::devnet::repo_root();
    let out = piped(
        &dir,
        &[
            "sim",
            "run",
            "tiny.toml",
            "--backend",
            "anvil",
            "--out",
            "run",
            "--project",
            project.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        "tiny on anvil: starting anvil, deploying, opening 3 traders, then 6 steps\n"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tiny on anvil"));
    std::fs::remove_dir_all(dir).unwrap();
}
