//! `keyscope sim run`: a scenario on the in-process revm chain or on a fresh anvil, with a report;
//! `keyscope sim mc`: the scenario over many seeded paths on every core, with a risk report.

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use keyscope_core::devnet::Devnet;
use keyscope_sim::{
    backend::{AnvilBackend, RevmBackend, Roles},
    mc_report, montecarlo,
    prices::PricePath,
    report,
    runner::{Outcome, liquidator_keys, run},
};
use serde_json::json;

use crate::{global::Global, output::emit};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SimCommand {
    /// Run a scenario file and write summary.json, series.csv and chart.svg.
    Run {
        /// Scenario file (TOML), e.g. scenarios/crash-30pct.toml, or a shipped scenario's name
        /// (`keyscope sim list`).
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
    /// Run a scenario over N seeded price paths (seed, seed+1, …) on revm, on every core, and write a risk
    /// report: VaR and expected shortfall of bad debt, insurance drawdown, liquidated notional and pool
    /// loss; mc.json, paths.csv and mc.svg.
    Mc {
        /// Scenario file (TOML), or a shipped scenario's name (`keyscope sim list`).
        scenario: PathBuf,
        /// Number of paths (with --target-error: the first round's).
        #[arg(long, default_value_t = 1000)]
        paths: u32,
        /// Worker threads [default: every core].
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Report folder [default: reports/<scenario name>-mc].
        #[arg(long)]
        out: Option<PathBuf>,
        /// `fixed`: the traders drawn once, only prices vary (what this book loses across market moves);
        /// `random`: a new book on every path too [default: the scenario's, else fixed].
        #[arg(long)]
        book: Option<BookArg>,
        /// Add paths (doubling) until every VaR/ES interval of bad debt and peak loss is within ± this many
        /// USD, or --max-paths is reached.
        #[arg(long, value_name = "USD")]
        target_error: Option<f64>,
        /// The most paths --target-error may run [default: the scenario's, else 20000].
        #[arg(long)]
        max_paths: Option<u32>,
    },
    /// The scenarios shipped inside keyscope, runnable by name from any folder.
    List,
}

/// The book a Monte Carlo run holds fixed or draws anew.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum BookArg {
    Fixed,
    Random,
}

/// Monte Carlo options given on the command line, over the scenario's own.
#[derive(Debug, Clone, Copy)]
struct McOptions {
    book: Option<BookArg>,
    target_error: Option<f64>,
    max_paths: Option<u32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum BackendKind {
    Revm,
    Anvil,
}

pub(crate) async fn run_command(g: &Global, cmd: SimCommand) -> anyhow::Result<()> {
    match cmd {
        SimCommand::Run {
            scenario,
            backend,
            out,
            port,
        } => run_one(g, scenario, backend, out, port).await,
        SimCommand::Mc {
            scenario,
            paths,
            threads,
            out,
            book,
            target_error,
            max_paths,
        } => {
            let g = g.json;
            let options = McOptions {
                book,
                target_error,
                max_paths,
            };
            tokio::task::spawn_blocking(move || run_mc(g, scenario, paths, threads, out, options))
                .await?
        }
        SimCommand::List => {
            let shipped = crate::scenarios::SHIPPED;
            emit(
                g.json,
                json!({ "scenarios": shipped.iter().map(|(name, text)| json!({
                    "name": name,
                    "summary": crate::scenarios::summary(text),
                })).collect::<Vec<_>>() }),
                || {
                    shipped
                        .iter()
                        .map(|(name, text)| {
                            format!("{name:24} {}", crate::scenarios::summary(text))
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
            Ok(())
        }
    }
}

/// A progress bar on stderr — `unit done/total [####>---] rate/s ETA 12s` (indicatif) — drawn only when
/// `wanted` and stderr is a terminal; anywhere else it is hidden, so no escapes reach a log or a pipe.
fn progress_bar(wanted: bool, unit: &'static str, total: u32) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.into()).with_prefix(unit);
    bar.set_style(bar_style());
    bar
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("  {prefix} {pos}/{len} [{bar:40}] {per_sec:1} ETA {eta}")
        .expect("a valid template")
        .progress_chars("#>-")
}

/// Shows a spinner with `message` on `bar` until [`at_step`]'s first call turns it back into the bar.
fn spin(bar: &ProgressBar, message: String) {
    bar.set_style(
        ProgressStyle::with_template("  {spinner} {msg} {elapsed}").expect("a valid template"),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
}

/// `sim run`'s callback: `bar` at step `done` of `total` (a set-up spinner becomes the bar at the first
/// call, its rate and ETA counted from there).
fn at_step(bar: ProgressBar) -> impl FnMut(u32, u32) {
    let mut started = false;
    move |done: u32, total: u32| {
        if !started {
            started = true;
            bar.set_style(bar_style());
            bar.set_length(total.into());
            bar.reset();
        }
        bar.set_position(done.into());
    }
}

/// `sim mc`'s callback, called from the worker threads as paths finish (not necessarily in order): one
/// more path done of `total` (which grows as `--target-error` adds paths).
fn path_done(bar: ProgressBar) -> impl Fn(u32, u32) + Sync {
    move |_done: u32, total: u32| {
        if bar.length() != Some(total.into()) {
            bar.set_length(total.into());
        }
        bar.inc(1);
    }
}

/// Stops `bar` — at its end if the run `succeeded`, where it stopped if not — and ends its line, so
/// what is printed next (the report or the error) starts on a line of its own.
fn stop(bar: &ProgressBar, succeeded: bool) {
    if bar.is_hidden() {
        return;
    }
    if succeeded {
        bar.finish();
    } else {
        bar.abandon();
    }
    eprintln!();
}

/// `sim mc`: the paths on worker threads, a progress bar, the report.
fn run_mc(
    json_out: bool,
    file: PathBuf,
    paths: u32,
    threads: usize,
    out: Option<PathBuf>,
    options: McOptions,
) -> anyhow::Result<()> {
    let mut scenario = crate::scenarios::load(&file)?;
    if let Some(book) = options.book {
        scenario.monte_carlo.book = match book {
            BookArg::Fixed => keyscope_sim::scenario::BookMode::Fixed,
            BookArg::Random => keyscope_sim::scenario::BookMode::Random,
        };
    }
    if let Some(target) = options.target_error {
        scenario.monte_carlo.target_error = Some(target);
    }
    if let Some(max) = options.max_paths {
        scenario.monte_carlo.max_paths = max;
    }
    // The same refusals, by field, as a scenario file with these values.
    scenario.check()?;
    if let Some(warning) = scenario.size_warning() {
        eprintln!("warning: {warning} (each path)");
    }
    let base = file.parent().map(PathBuf::from).unwrap_or_default();
    let bar = progress_bar(!json_out, "paths", paths);
    let report = montecarlo::run_mc(&scenario, &base, paths, threads, path_done(bar.clone()));
    stop(&bar, report.is_ok());
    let report = report?;
    let dir = out.unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-mc", scenario.name)));
    let market = scenario.markets[0].name.clone();
    let files = mc_report::write(&report, &market, &dir)?;
    emit(
        json_out,
        json!({
            "scenario": report.scenario,
            "paths": report.paths,
            "baseSeed": report.base_seed,
            "book": report.book,
            "badDebt": mc_report::risk_json(&report.bad_debt),
            "peakLoss": mc_report::risk_json(&report.peak_loss),
            "insuranceDrawdown": mc_report::risk_json(&report.insurance_drawdown),
            "liquidatedNotional": mc_report::risk_json(&report.liquidated_notional),
            "poolLoss": mc_report::risk_json(&report.pool_loss),
            "pInsuranceExhausted": report.p_insurance_exhausted,
            "pBadDebt": report.p_bad_debt,
            "pAdl": report.p_adl,
            "adlHaircutMean": report.adl_haircut_mean,
            "adlHaircut99": report.adl_haircut_99,
            "targetError": report.target_error,
            "achievedError": report.achieved_error,
            "wallSeconds": report.wall_seconds,
            "pathsPerSecond": report.paths_per_second,
            "summary": files.summary,
            "paths_csv": files.paths,
            "chart": files.chart,
        }),
        || {
            format!(
                "{}\n  report: {}, {}, {}",
                mc_report::text(&report),
                files.summary.display(),
                files.paths.display(),
                files.chart.display()
            )
        },
    );
    Ok(())
}

/// `sim run`: one path on one backend.
async fn run_one(
    g: &Global,
    file: PathBuf,
    backend: BackendKind,
    out: Option<PathBuf>,
    port: u16,
) -> anyhow::Result<()> {
    let scenario = crate::scenarios::load(&file)?;
    if let Some(warning) = scenario.size_warning() {
        eprintln!("warning: {warning}");
    }
    let base = file.parent().map(PathBuf::from).unwrap_or_default();
    let path = PricePath::generate(&scenario, &base)?;
    let insurance =
        alloy_primitives::U256::from((scenario.venue.insurance_fund * 1e6).round() as u128);
    let roles = Roles::new(liquidator_keys(&scenario));
    let bar = progress_bar(!g.json, "step", scenario.steps);
    let setting_up = format!(
        "{}deploying, opening {} traders",
        match backend {
            BackendKind::Revm => "",
            BackendKind::Anvil => "starting anvil, ",
        },
        scenario.traders.count,
    );
    if bar.is_hidden() {
        if matches!(backend, BackendKind::Anvil) {
            // No bar off a terminal: one line, so the set-up's long quiet is explained.
            eprintln!(
                "{} on anvil: {setting_up}, then {} steps",
                scenario.name, scenario.steps
            );
        }
    } else {
        spin(&bar, setting_up);
    }
    let progress = at_step(bar.clone());
    let outcome = async {
        anyhow::Ok(match backend {
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
        })
    }
    .await;
    // Stopped either way, so an error is not printed beside a spinner still turning.
    stop(&bar, outcome.is_ok());
    let outcome: Outcome = outcome?;
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
            "peakLoss": outcome.peak_loss,
            "peakLossStep": outcome.peak_loss_step,
            "poolPnl": outcome.pool_pnl,
            "keeperRewards": outcome.keeper_rewards,
            "keeperProfit": outcome.keeper_profit,
            "socialisedLoss": outcome.socialised_loss,
            "adlHaircut": outcome.adl_haircut,
            "adlUncovered": outcome.adl_uncovered,
            "marginCallToLiquidationSecs": outcome.margin_call_to_liquidation_secs,
            "liquidatedWithoutMarginCall": outcome.liquidated_unwarned,
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
            let warned = match outcome.margin_call_to_liquidation_secs {
                Some((mean, median, max)) => format!(
                    "margin call to liquidation {mean:.0} s mean, {median:.0} s median, {max:.0} s max; "
                ),
                None => String::new(),
            };
            let desk = format!(
                "\n  pool PnL ${:.0} (marked, less what accounts below zero cannot pay); keepers earned ${:.0}, kept ${:.0} after gas\n  {warned}{} accounts liquidated with no margin call first",
                outcome.pool_pnl,
                outcome.keeper_rewards,
                outcome.keeper_profit.unwrap_or(outcome.keeper_rewards),
                outcome.liquidated_unwarned
            );
            let desk = format!(
                "{desk}\n  loss at its worst: ${:.0} at step {} (booked + open); at the end ${:.0}",
                outcome.peak_loss,
                outcome.peak_loss_step,
                outcome.bad_debt + outcome.open_shortfall
            );
            let desk = match outcome.socialised_loss > 0.0 {
                true => format!(
                    "{desk}\n  socialised (a harness model of auto-deleveraging): ${:.0} the insurance fund cannot cover would take {:.1} % of the winners' open profit, ${:.0} beyond it left to the pool",
                    outcome.socialised_loss,
                    outcome.adl_haircut * 100.0,
                    outcome.adl_uncovered
                ),
                false => desk,
            };
            format!(
                "{} on {}: {} traders, {} steps\n  margin calls {} ({} answered), liquidations {} (${:.0} notional; {} account-steps passed up, the reward below the keeper's gas), bad debt ${:.2} booked + ${:.2} open (accounts left below zero){keys}{desk}\n  insurance fund ${:.0} -> ${:.0} (low ${:.0}); {} ops executed ({} failed), {:.0} ops per wall-clock second (set-up and reads included), {:.1} s\n  report: {}, {}, {}",
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
