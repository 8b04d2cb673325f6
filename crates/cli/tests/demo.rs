//! The README's first command, run verbatim: `make demo` must set up, run the whole stack (anvil, the
//! relayer, two traders, a session key trading and refused, a margin call and a liquidation), write
//! its chart and exit 0. (The second command, `make test`, is what CI runs; it cannot run itself.)

use std::process::Command;

use keyscope_core::devnet::repo_root;

/// The commands of the README's opening block.
fn opening_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("```sh")
        .nth(1)
        .expect("the README opens with a sh block")
        .split("```")
        .next()
        .unwrap();
    block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn readme_first_command_runs_the_demo() {
    let commands = opening_commands();
    assert_eq!(
        commands,
        ["make demo", "make test"],
        "the README opens with the demo and the test command"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&commands[0])
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "`make demo` failed:\n{text}");
    for expected in [
        "deployed by its first UserOp through the relayer",
        "bought 0.3 BTC at 60,000",
        "withdraw 100 tUSD: -32500",
        "SessionMarketNotAllowed",
        "offer 0.76 ETH of gas to whoever submits it: -32500 AA23 reverted: SessionOpCostTooHigh",
        "buy 0.05 BTC more (over its 16x leverage): -32521",
        "SessionLeverageTooHigh: leverage would be 16.63x, over the key's 16x",
        "-> MarginCall",
        "keeper liquidated trader A",
        "margin calls 1, liquidations 1",
        "relayer and anvil stopped.",
    ] {
        assert!(
            text.contains(expected),
            "`make demo` did not print {expected:?}:\n{text}"
        );
    }
    let chart = std::fs::read_to_string(repo_root().join("reports/demo/chart.svg"))
        .expect("the demo writes its chart");
    assert!(
        chart.contains("<svg") && chart.contains("make demo"),
        "a chart of the demo run"
    );
}
