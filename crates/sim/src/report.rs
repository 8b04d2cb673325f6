//! What a run leaves behind: `summary.json` (totals, and every account's end state), `series.csv` (one
//! row per step) and `chart.svg` (price, account health before and after the sweeps, liquidations, insurance
//! fund and bad debt, open interest and the pool's exposure).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use plotters::prelude::*;

use crate::runner::Outcome;

/// Errors from writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// A write of `path` that failed.
pub(crate) fn write_err(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The files written.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub summary: PathBuf,
    pub series: PathBuf,
    pub chart: PathBuf,
}

/// Draws the chart's legend: a white box with a black border.
pub(crate) fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
}

/// The CSV time series.
pub fn series_csv(out: &Outcome, markets: &[String]) -> String {
    let mut csv = String::from("step,time");
    for m in markets {
        let _ = write!(csv, ",price_{m}");
    }
    csv.push_str(",healthy,margin_call,liquidatable,bankrupt,margin_calls,liquidations,liquidated_notional,insurance_fund,bad_debt,pool,oracle_stale,closed,liquidatable_before,bankrupt_before,long_oi,short_oi,open_shortfall\n");
    for r in &out.series {
        let _ = write!(csv, "{},{}", r.step, r.time);
        for p in &r.prices {
            let _ = write!(csv, ",{p:.2}");
        }
        let _ = writeln!(
            csv,
            ",{},{},{},{},{},{},{:.2},{:.6},{:.6},{:.6},{},{},{},{},{:.2},{:.2},{:.6}",
            r.healthy,
            r.margin_call,
            r.liquidatable,
            r.bankrupt,
            r.margin_calls,
            r.liquidations,
            r.liquidated_notional,
            r.insurance_fund,
            r.bad_debt,
            r.pool,
            r.oracle_stale,
            r.closed,
            r.liquidatable_before,
            r.bankrupt_before,
            r.long_oi,
            r.short_oi,
            r.open_shortfall
        );
    }
    csv
}

/// Writes summary.json, series.csv and chart.svg into `dir`.
pub fn write(out: &Outcome, markets: &[String], dir: &Path) -> Result<ReportFiles, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let files = ReportFiles {
        summary: dir.join("summary.json"),
        series: dir.join("series.csv"),
        chart: dir.join("chart.svg"),
    };
    let mut summary = serde_json::to_value(out).map_err(|e| write_err(&files.summary, e))?;
    summary.as_object_mut().map(|o| o.remove("series"));
    let text = serde_json::to_string_pretty(&summary).map_err(|e| write_err(&files.summary, e))?;
    std::fs::write(&files.summary, text).map_err(|e| write_err(&files.summary, e))?;
    std::fs::write(&files.series, series_csv(out, markets))
        .map_err(|e| write_err(&files.series, e))?;
    chart(out, markets, &files.chart).map_err(|e| write_err(&files.chart, e))?;
    Ok(files)
}

/// The chart: prices, account states, margin calls and liquidations, the insurance fund, drawn panel by
/// panel top to bottom — one drawing, past 100 lines.
fn chart(out: &Outcome, markets: &[String], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 1400)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("{} on {} (seed {})", out.scenario, out.backend, out.seed),
        ("sans-serif", 22),
    )?;
    let panels = root.split_evenly((5, 1));
    let steps = out.series.len().max(2) as u32 - 1;
    let colors = [BLUE, RED, GREEN, MAGENTA];

    // 1. Prices, as % of the start.
    let mut lo = f64::MAX;
    let mut hi = f64::MIN;
    for r in &out.series {
        for (i, p) in r.prices.iter().enumerate() {
            let v = p / out.series[0].prices[i] * 100.0;
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let mut c = ChartBuilder::on(&panels[0])
        .caption("price (% of start)", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(50)
        .build_cartesian_2d(0u32..steps, (lo - 1.0)..(hi + 1.0))?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("step")
        .draw()?;
    for (i, m) in markets.iter().enumerate() {
        let start = out.series[0].prices[i];
        c.draw_series(LineSeries::new(
            out.series
                .iter()
                .map(|r| (r.step, r.prices[i] / start * 100.0)),
            colors[i % 4].stroke_width(2),
        ))?
        .label(m.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colors[i % 4]));
    }
    legend(&mut c)?;

    // 2. Account health distribution.
    let n = out.traders.max(1);
    let mut c = ChartBuilder::on(&panels[1])
        .caption(
            "accounts by state after each step's liquidations (dashed: liquidatable / bankrupt before)",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(50)
        .build_cartesian_2d(0u32..steps, 0u32..n)?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("step")
        .draw()?;
    type Count = fn(&crate::runner::StepRecord) -> u32;
    let states: [(&str, Count); 4] = [
        ("healthy", |r| r.healthy),
        ("margin call", |r| r.margin_call),
        ("liquidatable", |r| r.liquidatable),
        ("bankrupt", |r| r.bankrupt),
    ];
    for (i, (name, f)) in states.into_iter().enumerate() {
        c.draw_series(LineSeries::new(
            out.series.iter().map(|r| (r.step, f(r))),
            colors[(i + 2) % 4].stroke_width(2),
        ))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colors[(i + 2) % 4]));
    }
    let grey = RGBColor(128, 128, 128);
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.closed)),
        grey.stroke_width(2),
    ))?
    .label("closed out (no position)")
    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], grey));
    let before: [(Count, RGBColor); 2] = [
        (|r| r.liquidatable_before, colors[0]),
        (|r| r.bankrupt_before, colors[1]),
    ];
    for (f, color) in before {
        c.draw_series(DashedLineSeries::new(
            out.series.iter().map(|r| (r.step, f(r))),
            6,
            4,
            color.stroke_width(1),
        ))?;
    }
    legend(&mut c)?;

    // 3. Liquidations and margin calls, cumulative.
    let max = out
        .series
        .iter()
        .map(|r| r.liquidations.max(r.margin_calls))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut c = ChartBuilder::on(&panels[2])
        .caption(
            "margin calls and liquidations (cumulative)",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(50)
        .build_cartesian_2d(0u32..steps, 0u32..max + 1)?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("step")
        .draw()?;
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.margin_calls)),
        BLUE.stroke_width(2),
    ))?
    .label("margin calls")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.liquidations)),
        RED.stroke_width(2),
    ))?
    .label("liquidations")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    legend(&mut c)?;

    // 4. Insurance fund and bad debt.
    let top = out
        .series
        .iter()
        .map(|r| r.insurance_fund.max(r.bad_debt + r.open_shortfall))
        .fold(1.0, f64::max);
    let mut c = ChartBuilder::on(&panels[3])
        .caption(
            "insurance fund, bad debt booked and open loss (USD)",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..steps, 0.0..top * 1.05)?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("step")
        .draw()?;
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.insurance_fund)),
        GREEN.stroke_width(2),
    ))?
    .label("insurance fund")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.bad_debt)),
        RED.stroke_width(2),
    ))?
    .label("bad debt booked")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    c.draw_series(LineSeries::new(
        out.series
            .iter()
            .map(|r| (r.step, r.bad_debt + r.open_shortfall)),
        MAGENTA.stroke_width(2),
    ))?
    .label("loss: booked + open (accounts below zero)")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], MAGENTA));
    legend(&mut c)?;

    // 5. Open interest and the pool's exposure (the other side of the traders' net).
    let top = out
        .series
        .iter()
        .map(|r| r.long_oi.max(r.short_oi))
        .fold(1.0, f64::max);
    let bottom = out
        .series
        .iter()
        .map(|r| r.short_oi - r.long_oi)
        .fold(0.0, f64::min);
    let mut c = ChartBuilder::on(&panels[4])
        .caption(
            "open interest long / short and the pool's net exposure (USD notional)",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(80)
        .build_cartesian_2d(0u32..steps, (bottom * 1.05)..(top * 1.05))?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("step")
        .draw()?;
    type Usd = fn(&crate::runner::StepRecord) -> f64;
    let lines: [(&str, Usd, RGBColor); 3] = [
        ("long OI", |r| r.long_oi, GREEN),
        ("short OI", |r| r.short_oi, RED),
        (
            "pool exposure (short − long)",
            |r| r.short_oi - r.long_oi,
            BLUE,
        ),
    ];
    for (name, f, color) in lines {
        c.draw_series(LineSeries::new(
            out.series.iter().map(|r| (r.step, f(r))),
            color.stroke_width(2),
        ))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    legend(&mut c)?;
    root.present()?;
    Ok(())
}
