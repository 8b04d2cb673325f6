//! One place that prints: JSON for scripts (--json), text for people.

use keyscope_core::client::OpOutcome;
use serde_json::{Value, json};

pub fn emit(json_mode: bool, value: Value, human: impl FnOnce() -> String) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

pub fn outcome_json(o: &OpOutcome) -> Value {
    json!({
        "userOpHash": o.user_op_hash,
        "transactionHash": o.tx_hash,
        "success": o.success,
        "actualGasCost": o.actual_gas_cost.to_string(),
    })
}
