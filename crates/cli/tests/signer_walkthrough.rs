//! The README's strategy-engine walk-through ("Institutional keys"), run as written by bash in a fresh
//! temporary folder against `keyscope devnet`: an account, a SoftHSM token and a P-256 key generated in it,
//! a grant with a committed successor, the signing sidecar in the background, orders signed through it
//! (one refused before signing), a heartbeat, the hand-over, the successor's order and the audit trail.
//! Lines of the form `#   text` under a command are its expected output (`…` skips a part; `error: …`
//! means it must fail with that). The liberties taken: the devnet's RPC address and deployment file
//! replace `localhost:8545` and `deployments/31337.json`, and `keyscope` is the binary under test.
//!
//! Needs SoftHSM2 at the README's module path (`make test` installs it when it runs as root); without it
//! the test says so and checks nothing else.

mod common;

use std::path::Path;

use common::{DevnetProcess, readme_steps, run_walkthrough};
use keyscope_core::devnet::repo_root;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn readme_signer_walkthrough_runs_as_written() {
    if !Path::new(MODULE).exists() {
        eprintln!(
            "SKIPPED readme_signer_walkthrough_runs_as_written: no SoftHSM2 at {MODULE} (apt-get install softhsm2)"
        );
        return;
    }
    let steps = readme_steps("## Institutional keys", 0);
    assert!(steps.len() >= 15, "the walk-through has its commands");
    let mut devnet = DevnetProcess::spawn(41_006);
    let rpc = devnet.rpc();
    let deployment = repo_root().join("deployments/41006.json");
    run_walkthrough(
        "signer-walkthrough",
        &steps,
        &deployment,
        &[
            ("http://localhost:8545", rpc),
            ("deployments/31337.json", deployment.display().to_string()),
        ],
    );
    assert!(devnet.interrupt(), "devnet stops on Ctrl-C");
}
