//! What a Monte Carlo run leaves behind: `mc.json` (the risk summary and every path's results), `paths.csv`
//! (one row per path) and `mc.svg` (fan charts of the price and the insurance fund across paths, and
//! histograms of total bad debt and liquidated notional).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use plotters::prelude::*;

use crate::{
    montecarlo::{Fan, McReport, Risk},
    report::{ReportError, Swatch, beside_key, draw_key, elapsed, human, write_err},
    scenario::BookMode,
};

/// A risk summary as JSON: each VaR and ES with its 95 % interval (`var99Ci: [low, high]`).
pub fn risk_json(r: &Risk) -> serde_json::Value {
    serde_json::json!({
        "mean": r.mean, "max": r.max,
        "var95": r.var_95, "var95Ci": r.ci.var_95,
        "var99": r.var_99, "var99Ci": r.ci.var_99,
        "es95": r.es_95, "es95Ci": r.ci.es_95,
        "es99": r.es_99, "es99Ci": r.ci.es_99,
    })
}

/// The report for people: what was run, then one block per measure, each VaR and ES with its 95 % interval.
pub fn text(r: &McReport) -> String {
    let book = match r.book {
        BookMode::Fixed => "fixed book (traders drawn once; only prices vary)",
        BookMode::Random => "random book (traders drawn anew each path)",
    };
    let mut t = format!(
        "{}: {} paths (price seeds {}..), {book}, {} traders x {} steps, {} threads\n",
        r.scenario, r.paths, r.base_seed, r.traders, r.steps, r.threads
    );
    let usd = |x: f64| format!("${x:.0}");
    let with = |x: f64, [lo, hi]: [f64; 2]| format!("{:>10} [{} – {}]", usd(x), usd(lo), usd(hi));
    for (name, risk) in [
        ("bad debt at the end (booked + open)", &r.bad_debt),
        ("peak loss (booked + open, worst step)", &r.peak_loss),
        ("insurance drawdown", &r.insurance_drawdown),
        ("liquidated notional", &r.liquidated_notional),
        ("pool loss (marked)", &r.pool_loss),
    ] {
        let _ = writeln!(
            t,
            "  {name}: mean {}, max {}\n    VaR95 {}   VaR99 {}\n    ES95  {}   ES99  {}",
            usd(risk.mean),
            usd(risk.max),
            with(risk.var_95, risk.ci.var_95),
            with(risk.var_99, risk.ci.var_99),
            with(risk.es_95, risk.ci.es_95),
            with(risk.es_99, risk.ci.es_99),
        );
    }
    let _ = writeln!(
        t,
        "  [low – high]: 95 % bootstrap interval (sampling error of {} paths); widest half-width of bad debt's \
         and peak loss's: ±{}{}",
        r.paths,
        usd(r.achieved_error),
        match r.target_error {
            Some(target) => format!(" (target ±{})", usd(target)),
            None => String::new(),
        }
    );
    let _ = write!(
        t,
        "  P(insurance fund exhausted) {:.1} %, P(bad debt) {:.1} %\n  \
         winners deleveraged (harness model): P {:.1} %, haircut of their open profit mean {:.1} %, 99th \
         percentile {:.1} %\n  {:.1} s, {:.1} paths/s",
        r.p_insurance_exhausted * 100.0,
        r.p_bad_debt * 100.0,
        r.p_adl * 100.0,
        r.adl_haircut_mean * 100.0,
        r.adl_haircut_99 * 100.0,
        r.wall_seconds,
        r.paths_per_second
    );
    t
}

/// The files written.
#[derive(Debug, Clone)]
pub struct McFiles {
    /// The summary, `mc.json`.
    pub summary: PathBuf,
    /// The price paths, `paths.csv`.
    pub paths: PathBuf,
    /// The chart, `mc.svg`.
    pub chart: PathBuf,
}

/// One row per path.
pub fn paths_csv(r: &McReport) -> String {
    let mut csv = String::from(
        "path,seed,book_seed,bad_debt,bad_debt_booked,insurance_drawdown,insurance_exhausted,liquidations,liquidated_notional,pool_loss,margin_calls,peak_loss,peak_loss_step,adl_haircut\n",
    );
    for p in &r.results {
        let _ = writeln!(
            csv,
            "{},{},{},{:.6},{:.6},{:.6},{},{},{:.2},{:.6},{},{:.6},{},{:.6}",
            p.path,
            p.seed,
            p.book_seed,
            p.bad_debt,
            p.bad_debt_booked,
            p.insurance_drawdown,
            p.insurance_exhausted,
            p.liquidations,
            p.liquidated_notional,
            p.pool_loss,
            p.margin_calls,
            p.peak_loss,
            p.peak_loss_step,
            p.adl_haircut
        );
    }
    csv
}

/// Writes mc.json, paths.csv and mc.svg into `dir`.
pub fn write(r: &McReport, market: &str, dir: &Path) -> Result<McFiles, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let files = McFiles {
        summary: dir.join("mc.json"),
        paths: dir.join("paths.csv"),
        chart: dir.join("mc.svg"),
    };
    let text = serde_json::to_string_pretty(r).map_err(|e| write_err(&files.summary, e))?;
    std::fs::write(&files.summary, text).map_err(|e| write_err(&files.summary, e))?;
    std::fs::write(&files.paths, paths_csv(r)).map_err(|e| write_err(&files.paths, e))?;
    chart(r, market, &files.chart).map_err(|e| write_err(&files.chart, e))?;
    Ok(files)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A fan: the 5–95 % band, the 25–75 % band and the median, step by step, in `unit` on the y axis.
fn draw_fan(
    panel: &Area,
    title: &str,
    unit: &str,
    fan: &Fan,
    step_secs: u64,
    color: RGBColor,
) -> Result<(), Box<dyn std::error::Error>> {
    let (area, key) = beside_key(panel);
    let steps = fan.len().max(2) as u32 - 1;
    let lo = fan.iter().map(|b| b[0]).fold(f64::MAX, f64::min);
    let hi = fan.iter().map(|b| b[4]).fold(f64::MIN, f64::max);
    let pad = ((hi - lo) * 0.05).max(1.0);
    let mut c = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..steps, (lo - pad)..(hi + pad))?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("time since the start")
        .x_label_formatter(&|s| elapsed(*s, step_secs))
        .y_desc(unit)
        .y_label_formatter(&|v| human(*v))
        .draw()?;
    let mut entries = Vec::new();
    for (outer, inner, alpha) in [(0, 4, 0.15), (1, 3, 0.3)] {
        let mut band: Vec<(u32, f64)> = fan
            .iter()
            .enumerate()
            .map(|(t, b)| (t as u32, b[inner]))
            .collect();
        band.extend(
            fan.iter()
                .enumerate()
                .rev()
                .map(|(t, b)| (t as u32, b[outer])),
        );
        c.draw_series(std::iter::once(Polygon::new(
            band,
            color.mix(alpha).filled(),
        )))?;
        entries.push((
            if outer == 0 {
                "5–95 % of paths"
            } else {
                "25–75 % of paths"
            },
            Swatch::Fill(color.mix(alpha)),
        ));
    }
    c.draw_series(LineSeries::new(
        fan.iter().enumerate().map(|(t, b)| (t as u32, b[2])),
        color.stroke_width(2),
    ))?;
    entries.push(("median", Swatch::Line(color)));
    draw_key(&key, &entries)?;
    Ok(())
}

/// A histogram of `values` (USD) in 30 bins, with the 95 and 99 % VaR marked and the 99 % VaR's interval
/// shaded.
fn draw_histogram(
    panel: &Area,
    title: &str,
    values: &[f64],
    risk: &Risk,
    color: RGBColor,
) -> Result<(), Box<dyn std::error::Error>> {
    let var = (risk.var_95, risk.var_99);
    const BINS: usize = 30;
    let lo = values.iter().copied().fold(f64::MAX, f64::min).min(0.0);
    let hi = values
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .max(lo + 1.0);
    let width = (hi - lo) / BINS as f64;
    let mut counts = [0u32; BINS];
    for v in values {
        counts[(((v - lo) / width) as usize).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let (area, key) = beside_key(panel);
    let mut c = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0u32..top + top / 10 + 1)?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("USD per path")
        .x_label_formatter(&|v| human(*v))
        .y_desc("paths")
        .draw()?;
    c.draw_series(counts.iter().enumerate().map(|(i, n)| {
        let x0 = lo + i as f64 * width;
        Rectangle::new([(x0, 0), (x0 + width, *n)], color.mix(0.6).filled())
    }))?;
    let [lo99, hi99] = risk.ci.var_99;
    c.draw_series(std::iter::once(Rectangle::new(
        [(lo99, 0), (hi99.max(lo99 + width / 20.0), top)],
        RED.mix(0.12).filled(),
    )))?;
    let mut entries = vec![
        ("paths in each bin", Swatch::Fill(color.mix(0.6))),
        ("VaR 99 %: its 95 % interval", Swatch::Fill(RED.mix(0.12))),
    ];
    for (label, x, line) in [("VaR 95 %", var.0, MAGENTA), ("VaR 99 %", var.1, RED)] {
        c.draw_series(LineSeries::new([(x, 0), (x, top)], line.stroke_width(2)))?;
        entries.push((label, Swatch::Line(line)));
    }
    draw_key(&key, &entries)?;
    Ok(())
}

fn chart(r: &McReport, market: &str, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 1500)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "{}: {} paths (price seeds {}..{}, {} book)",
            r.scenario,
            r.paths,
            r.base_seed,
            r.base_seed.wrapping_add(r.paths as u64 - 1),
            match r.book {
                crate::scenario::BookMode::Fixed => "fixed",
                crate::scenario::BookMode::Random => "random",
            }
        ),
        ("sans-serif", 22),
    )?;
    let panels = root.split_evenly((5, 1));
    draw_fan(
        &panels[0],
        &format!("{market} price across paths"),
        "USD",
        &r.price_fan,
        u64::from(r.step_seconds),
        BLUE,
    )?;
    draw_fan(
        &panels[1],
        "insurance fund across paths",
        "USD",
        &r.insurance_fan,
        u64::from(r.step_seconds),
        GREEN,
    )?;
    let bad: Vec<f64> = r.results.iter().map(|p| p.bad_debt).collect();
    draw_histogram(
        &panels[2],
        "bad debt per path, booked + open",
        &bad,
        &r.bad_debt,
        RED,
    )?;
    let peak: Vec<f64> = r.results.iter().map(|p| p.peak_loss).collect();
    draw_histogram(
        &panels[3],
        "peak loss per path, booked + open at its worst step",
        &peak,
        &r.peak_loss,
        MAGENTA,
    )?;
    let liq: Vec<f64> = r.results.iter().map(|p| p.liquidated_notional).collect();
    draw_histogram(
        &panels[4],
        "liquidated notional per path",
        &liq,
        &r.liquidated_notional,
        BLUE,
    )?;
    root.present()?;
    Ok(())
}
