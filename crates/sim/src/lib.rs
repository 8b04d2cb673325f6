//! Keyscope's harness for margin calls and liquidations.
//!
//! This crate holds the in-process chain: [`chain::RevmChain`] runs the real forge artifacts (and the
//! published EntryPoint v0.8 at its canonical address) on revm, so scenarios can push signed UserOps
//! through `EntryPoint.handleOps` thousands of times a second without a node. Scenario files, the
//! runner, the anvil backend, reports and Monte Carlo runs ([`montecarlo`]) build on it.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod backend;
pub mod chain;
pub mod fixture;
pub mod mc_report;
pub mod montecarlo;
pub mod prices;
pub mod report;
pub mod runner;
pub mod scenario;
