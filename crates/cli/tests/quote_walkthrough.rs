//! The README's market maker walk-through ("Quoting with signed orders"), run as written by bash in a fresh
//! temporary folder against `keyscope devnet` (its relayer runs the matcher): the maker's account, a P-256
//! session key in the signing sidecar's keystore, two-sided post-only quotes signed through the sidecar, a
//! scheduled cancel, the book, a taker's IOC order lifting the ask, the fill settled on both accounts, quotes
//! beyond the key's scope refused off-chain (by the sidecar, and by the matcher), cancel-all through the
//! sidecar and its audit trail. Lines of the form `#   text` under a command are its expected output (`…`
//! skips a part; `error: …` means it must fail with that). The liberties taken: the devnet's RPC, relayer
//! and deployment file replace `localhost:8545`, `localhost:4337` and `deployments/31337.json`, and
//! `keyscope` is the binary under test.

mod common;

use common::{DevnetProcess, readme_steps, run_walkthrough};
use keyscope_core::devnet::repo_root;

const SECTION: &str = "## Quoting with signed orders: a market maker's walk-through";

#[test]
fn readme_quote_walkthrough_runs_as_written() {
    // The second sh block: the first starts the devnet, which the test does itself.
    let steps = readme_steps(SECTION, 1);
    assert!(steps.len() >= 25, "the walk-through has its commands");
    // It quotes through the sidecar, lifts the ask and checks the settlement and the scope.
    for needed in [
        "keyscope signer serve",
        "--post-only --signer signer.sock",
        "--ioc",
        "keyscope portfolio",
        "--size 0.6",
    ] {
        assert!(
            steps.iter().any(|(c, _)| c.contains(needed)),
            "no step has {needed:?}"
        );
    }
    let devnet = DevnetProcess::spawn(42_251);
    let rpc = devnet.rpc();
    let bundler = devnet.ready["devnet"]["bundler"]
        .as_str()
        .unwrap()
        .to_string();
    let deployment = repo_root().join("deployments/42251.json");
    run_walkthrough(
        "quote-walkthrough",
        &steps,
        &deployment,
        &[
            ("http://localhost:8545", rpc),
            ("http://localhost:4337", bundler),
            ("deployments/31337.json", deployment.display().to_string()),
        ],
    );
}
