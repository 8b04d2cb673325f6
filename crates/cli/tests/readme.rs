//! The README's trader walk-through, run verbatim: `keyscope devnet`, then every command of the second
//! code block in "A trader's session with `keyscope`", in order. Lines of the form `#   text` under a
//! command are its expected output (`…` skips a part; `error: …` means the command must fail with
//! that). The only liberty taken: `--rpc` and `KEYSCOPE_BUNDLER` point at the devnet this test started
//! (anvil and its relayer on free ports).

mod common;

use std::{collections::HashMap, process::Command};

use common::{DevnetProcess, contains_in_order};
use keyscope_core::devnet::repo_root;

fn walkthrough() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## A trader's session with `keyscope`")
        .nth(1)
        .expect("the README has the walk-through");
    let block = section
        .split("```sh")
        .nth(2)
        .expect("its second sh block")
        .split("```")
        .next()
        .unwrap();
    // Join continuation lines.
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line.trim_start_matches(' ').trim_end());
        lines.push(std::mem::take(&mut pending));
    }
    lines
}

#[test]
fn readme_walkthrough_runs_verbatim() {
    let mut devnet = DevnetProcess::spawn(41_005);
    let rpc = devnet.rpc();

    let lines = walkthrough();
    assert!(
        lines.iter().filter(|l| l.starts_with("keyscope ")).count() >= 8,
        "the walk-through has its commands"
    );
    let mut env: HashMap<String, String> = HashMap::new();
    let mut last: Option<(String, bool, String)> = None;
    for line in &lines {
        if let Some(expected) = line.strip_prefix("#   ") {
            let (cmd, ok, out) = last.as_ref().expect("an expectation follows a command");
            match expected.strip_prefix("error: ") {
                Some(msg) => assert!(
                    !ok && contains_in_order(out, msg),
                    "`{cmd}` should fail with {msg:?}; printed:\n{out}"
                ),
                None => assert!(
                    *ok && contains_in_order(out, expected),
                    "`{cmd}` should print {expected:?}; printed:\n{out}"
                ),
            }
            continue;
        }
        let code = line.split(" #").next().unwrap().trim();
        if code.is_empty() {
            continue;
        }
        for cmd in code.split("; ") {
            let cmd = cmd.trim();
            let assignment = cmd.strip_prefix("export ").unwrap_or(cmd);
            if assignment.contains('=') && !assignment.split('=').next().unwrap().contains(' ') {
                for pair in assignment.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("VAR=value");
                    env.insert(k.to_string(), v.to_string());
                }
                // The devnet's relayer listens on a free port in this test.
                if env.contains_key("KEYSCOPE_BUNDLER") {
                    env.insert(
                        "KEYSCOPE_BUNDLER".into(),
                        devnet.ready["devnet"]["bundler"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    );
                }
                continue;
            }
            let args: Vec<String> = cmd
                .split_whitespace()
                .skip(1)
                .map(|a| {
                    a.strip_prefix('$')
                        .and_then(|v| env.get(v))
                        .cloned()
                        .unwrap_or_else(|| a.to_string())
                })
                .collect();
            assert!(
                cmd.starts_with("keyscope "),
                "unexpected line in the walk-through: {cmd}"
            );
            // Where the reader ran `keyscope devnet` (it wrote deployments/ there).
            let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
                .current_dir(repo_root())
                .arg("--rpc")
                .arg(&rpc)
                .args(&args)
                .envs(env.iter().filter(|(k, _)| k.starts_with("KEYSCOPE_")))
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let expected_to_fail = lines
                .iter()
                .skip_while(|l| *l != line)
                .nth(1)
                .is_some_and(|next| next.starts_with("#   error:"));
            assert!(
                out.status.success() || expected_to_fail,
                "`{cmd}` failed:\n{text}"
            );
            last = Some((cmd.to_string(), out.status.success(), text));
        }
    }

    assert!(devnet.interrupt(), "devnet stops on Ctrl-C");
}
