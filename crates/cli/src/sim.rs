//! `keyscope sim run`: a scenario on the in-process revm chain or on a fresh anvil, with a report.

use std::{io::IsTerminal, path::PathBuf};

use anyhow::Context;
use keyscope_core::devnet::Devnet;
use keyscope_sim::{
    backend::{AnvilBackend, RevmBackend, Roles},
    prices::PricePath,
    report,
    runner::{Outcome, liquidator_keys, run},
    scenario::Scenario,
};
use serde_json::json;

use crate::{Global, output::emit};

#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Run a scenario file and write summary.json, series.csv and chart.svg.
    Run {
        /// Scenario file (TOML), e.g. scenarios/crash-30pct.toml.
        scenario: PathBuf,
        /// Where it runs: revm (in-process, fast) or anvil (the real node, started for the run).
        #[arg(long, value_enum, default_value = "revm")]
        backend: BackendKind,
        /// Report folder [default: reports/<scenario name>-<backend>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Port for the anvil the anvil backend starts [default: any free port].
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BackendKind {
    Revm,
    Anvil,
}

pub async fn run_command(g: &Global, cmd: SimCommand) -> anyhow::Result<()> {
    let SimCommand::Run {
        scenario: file,
        backend,
        out,
        port,
    } = cmd;
    let scenario = Scenario::load(&file)?;
    if let Some(warning) = scenario.size_warning() {
        eprintln!("warning: {warning}");
    }
    let base = file.parent().map(PathBuf::from).unwrap_or_default();
    let path = PricePath::generate(&scenario, &base)?;
    let insurance =
        alloy_primitives::U256::from((scenario.venue.insurance_fund * 1e6).round() as u128);
    let roles = Roles::new(liquidator_keys(&scenario));
    let show = std::io::stderr().is_terminal() && !g.json;
    let progress = |step: u32, steps: u32| {
        if show {
            eprint!(
                "\r  step {step}/{steps} [{:<40}]",
                "#".repeat((step as usize * 40) / steps.max(1) as usize)
            );
            if step == steps {
                eprintln!();
            }
        }
    };
    let outcome: Outcome = match backend {
        BackendKind::Revm => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let mut b = RevmBackend::new(31_337, now, roles, insurance)?;
            run(&scenario, &path, &mut b, progress).await?
        }
        BackendKind::Anvil => {
            let devnet = Devnet::start_with(&g.project, port, 31_338, insurance)
                .await
                .context("starting anvil for the scenario")?;
            let mut b = AnvilBackend::new(devnet, roles).await?;
            run(&scenario, &path, &mut b, progress).await?
        }
    };
    let dir = out.unwrap_or_else(|| {
        PathBuf::from("reports").join(format!("{}-{}", scenario.name, outcome.backend))
    });
    let files = report::write(&outcome, &path.markets, &dir)?;
    emit(
        g.json,
        json!({
            "scenario": outcome.scenario,
            "backend": outcome.backend,
            "marginCalls": outcome.margin_calls,
            "liquidations": outcome.liquidations,
            "liquidatedNotional": outcome.liquidated_notional,
            "badDebt": outcome.bad_debt,
            "insuranceFundEnd": outcome.insurance_fund_end,
            "adds": outcome.adds,
            "addsStopped": outcome.adds_stopped,
            "breakerTrips": outcome.breaker_trips,
            "liquidationsPassedUp": outcome.liquidations_unprofitable,
            "openShortfall": outcome.open_shortfall,
            "opsExecuted": outcome.ops_executed,
            "opsPerSecond": outcome.ops_per_second,
            "summary": files.summary,
            "series": files.series,
            "chart": files.chart,
        }),
        || {
            let keys = if outcome.adds == 0 {
                String::new()
            } else {
                format!(
                    "\n  trading keys added to positions {} times; their limits stopped {}; breakers tripped {}",
                    outcome.adds, outcome.adds_stopped, outcome.breaker_trips
                )
            };
            format!(
                "{} on {}: {} traders, {} steps\n  margin calls {} ({} answered), liquidations {} (${:.0} notional; {} account-steps passed up, the reward below the keeper's gas), bad debt ${:.2} booked + ${:.2} open (accounts left below zero){keys}\n  insurance fund ${:.0} -> ${:.0} (low ${:.0}); {} ops executed ({} failed), {:.0} ops per wall-clock second (set-up and reads included), {:.1} s\n  report: {}, {}, {}",
                outcome.scenario,
                outcome.backend,
                outcome.traders,
                outcome.steps,
                outcome.margin_calls,
                outcome.margin_calls_answered,
                outcome.liquidations,
                outcome.liquidated_notional,
                outcome.liquidations_unprofitable,
                outcome.bad_debt,
                outcome.open_shortfall,
                outcome.insurance_fund_start,
                outcome.insurance_fund_end,
                outcome.insurance_fund_min,
                outcome.ops_executed,
                outcome.ops_failed,
                outcome.ops_per_second,
                outcome.wall_seconds,
                files.summary.display(),
                files.series.display(),
                files.chart.display()
            )
        },
    );
    Ok(())
}
