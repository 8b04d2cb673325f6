//! One place that prints: JSON for scripts (--json), text for people.

use std::io::Write;

use keyscope_core::client::OpOutcome;
use serde_json::{Value, json};

pub(crate) fn emit(json_mode: bool, value: Value, human: impl FnOnce() -> String) {
    let text = if json_mode {
        value.to_string()
    } else {
        human()
    };
    if let Err(e) = writeln!(std::io::stdout(), "{text}") {
        // The reader went away (`keyscope session list | head -1`): stop quietly, as a pipe's writer does.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(128 + libc::SIGPIPE);
        }
        panic!("writing to stdout: {e}");
    }
}

pub(crate) fn outcome_json(o: &OpOutcome) -> Value {
    json!({
        "userOpHash": o.user_op_hash,
        "transactionHash": o.tx_hash,
        "success": o.success,
        "actualGasCost": o.actual_gas_cost.to_string(),
    })
}
