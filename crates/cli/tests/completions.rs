//! `keyscope completions <shell>`: each shell's script is generated from the real command tree, the bash
//! one completes commands and subcommands when bash runs it, and an unknown shell is refused with the
//! list of known ones and nothing on stdout. No chain is started.

use std::process::{Command, Output};

fn keyscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(args)
        .output()
        .unwrap()
}

/// What bash's completion offers for `words` (the last one being completed), with the script loaded.
fn bash_offers(script: &str, words: &[&str]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("keyscope-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keyscope.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let probe = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; _keyscope keyscope '{}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words[cword],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = keyscope(&["completions", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).unwrap();
        for command in ["account", "session", "order", "sim", "relayer", "signer"] {
            assert!(script.contains(command), "{shell} script lacks {command}");
        }
    }
}

#[test]
fn bash_completes_commands_and_subcommands() {
    let out = keyscope(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        bash_offers(&script, &["keyscope", "s"]),
        ["session", "sim", "signer"]
    );
    let sim = bash_offers(&script, &["keyscope", "sim", ""]);
    for sub in ["run", "mc", "list"] {
        assert!(sim.iter().any(|o| o == sub), "sim offers {sim:?}");
    }
    let session = bash_offers(&script, &["keyscope", "session", "gr"]);
    assert_eq!(session, ["grant"]);
}

#[test]
fn an_unknown_shell_is_refused_with_the_known_ones() {
    let out = keyscope(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("'tcsh'") && err.contains("bash, elvish, fish, powershell, zsh"),
        "{err}"
    );
}
