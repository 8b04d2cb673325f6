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
    /// A report file could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
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
    /// The summary, `summary.json`.
    pub summary: PathBuf,
    /// The time series, `series.csv`.
    pub series: PathBuf,
    /// The chart, `chart.svg`.
    pub chart: PathBuf,
}

/// How a series is shown in a chart's key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Swatch {
    Line(RGBColor),
    Dashed(RGBColor),
    Fill(RGBAColor),
}

/// Width in pixels of the column beside every panel that holds its key, so no key covers the data.
pub(crate) const KEY_WIDTH: u32 = 230;

/// Splits `panel` into the chart (left) and the column for its key (right, [`KEY_WIDTH`] wide).
pub(crate) fn beside_key<DB: DrawingBackend>(
    panel: &DrawingArea<DB, plotters::coord::Shift>,
) -> (
    DrawingArea<DB, plotters::coord::Shift>,
    DrawingArea<DB, plotters::coord::Shift>,
) {
    let (width, _) = panel.dim_in_pixel();
    panel.split_horizontally(width.saturating_sub(KEY_WIDTH))
}

/// Draws a key in its column: each entry's swatch and its label, wrapped to the column's width.
pub(crate) fn draw_key<DB: DrawingBackend>(
    column: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(&str, Swatch)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    const LINE: i32 = 15;
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    // Level with the top of the plot, below the panel's caption.
    let mut y = 40;
    for (label, swatch) in entries {
        match *swatch {
            Swatch::Line(color) => {
                column.draw(&PathElement::new([(6, y), (28, y)], color.stroke_width(2)))?
            }
            Swatch::Dashed(color) => {
                for x in [6, 15, 24] {
                    column.draw(&PathElement::new(
                        [(x, y), (x + 5, y)],
                        color.stroke_width(1),
                    ))?;
                }
            }
            Swatch::Fill(color) => {
                column.draw(&Rectangle::new([(6, y - 5), (28, y + 5)], color.filled()))?
            }
        }
        let lines = wrap(label, 30);
        for (i, line) in lines.iter().enumerate() {
            let top = y - 7 + i as i32 * LINE;
            column.draw(&Text::new(line.clone(), (34, top), font.clone()))?;
        }
        y += lines.len() as i32 * LINE + 6;
    }
    Ok(())
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// An axis value at a glance: `-1.5M`, `50k`, `900`, `0.25`.
/// An x-axis label: the chain time since the start at `step`, for steps of `step_secs` seconds.
pub(crate) fn elapsed(step: u32, step_secs: u64) -> String {
    let secs = u64::from(step) * step_secs;
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 && s % 60 == 0 => format!("{} min", s / 60),
        s if s < 3600 => format!("{:.1} min", s as f64 / 60.0),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

pub(crate) fn human(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "B")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if scaled.fract() == 0.0 || (suffix.is_empty() && a >= 100.0) {
        format!("{scaled:.0}{suffix}")
    } else if suffix.is_empty() && a < 1.0 {
        format!("{scaled:.2}")
    } else {
        format!("{scaled:.1}{suffix}")
    }
}

/// The CSV time series.
pub fn series_csv(out: &Outcome, markets: &[String]) -> String {
    let mut csv = String::from("step,time");
    for m in markets {
        let _ = write!(csv, ",price_{m}");
    }
    csv.push_str(",healthy,margin_call,liquidatable,bankrupt,margin_calls,liquidations,liquidated_notional,insurance_fund,bad_debt,pool,oracle_stale,closed,liquidatable_before,bankrupt_before,long_oi,short_oi,open_shortfall,keeper_gas_usd\n");
    for r in &out.series {
        let _ = write!(csv, "{},{}", r.step, r.time);
        for p in &r.prices {
            let _ = write!(csv, ",{p:.2}");
        }
        let _ = writeln!(
            csv,
            ",{},{},{},{},{},{},{:.2},{:.6},{:.6},{:.6},{},{},{},{},{:.2},{:.2},{:.6},{:.4}",
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
            r.open_shortfall,
            r.keeper_gas_usd
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
/// panel top to bottom, each panel's key in a column beside it and its units on its axes — one drawing,
/// past 100 lines.
fn chart(out: &Outcome, markets: &[String], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 1500)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("{} on {} (seed {})", out.scenario, out.backend, out.seed),
        ("sans-serif", 22),
    )?;
    let panels = root.split_evenly((5, 1));
    let steps = out.series.len().max(2) as u32 - 1;
    // The x axes read in time (a step is this many seconds of chain time).
    let step_secs = match out.series.as_slice() {
        [first, second, ..] => second.time.saturating_sub(first.time),
        _ => 0,
    };
    let colors = [BLUE, RED, GREEN, MAGENTA];
    let usd = |v: &f64| human(*v);

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
    let (area, key) = beside_key(&panels[0]);
    let mut c = ChartBuilder::on(&area)
        .caption("price", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..steps, (lo - 1.0)..(hi + 1.0))?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("time since the start")
        .x_label_formatter(&|s| elapsed(*s, step_secs))
        .y_desc("% of start")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let mut entries = Vec::new();
    for (i, m) in markets.iter().enumerate() {
        let start = out.series[0].prices[i];
        c.draw_series(LineSeries::new(
            out.series
                .iter()
                .map(|r| (r.step, r.prices[i] / start * 100.0)),
            colors[i % 4].stroke_width(2),
        ))?;
        entries.push((m.as_str(), Swatch::Line(colors[i % 4])));
    }
    draw_key(&key, &entries)?;

    // 2. Account health distribution.
    let n = out.traders.max(1);
    let (area, key) = beside_key(&panels[1]);
    let mut c = ChartBuilder::on(&area)
        .caption(
            "accounts by state after each step's liquidations",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..steps, 0u32..n)?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("time since the start")
        .x_label_formatter(&|s| elapsed(*s, step_secs))
        .y_desc("accounts")
        .draw()?;
    type Count = fn(&crate::runner::StepRecord) -> u32;
    let states: [(&str, Count); 4] = [
        ("healthy", |r| r.healthy),
        ("margin call", |r| r.margin_call),
        ("liquidatable", |r| r.liquidatable),
        ("bankrupt", |r| r.bankrupt),
    ];
    let mut entries = Vec::new();
    for (i, (name, f)) in states.into_iter().enumerate() {
        c.draw_series(LineSeries::new(
            out.series.iter().map(|r| (r.step, f(r))),
            colors[(i + 2) % 4].stroke_width(2),
        ))?;
        entries.push((name, Swatch::Line(colors[(i + 2) % 4])));
    }
    let grey = RGBColor(128, 128, 128);
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.closed)),
        grey.stroke_width(2),
    ))?;
    entries.push(("closed out (no position)", Swatch::Line(grey)));
    let before: [(&str, Count, RGBColor); 2] = [
        (
            "liquidatable before the step's liquidations",
            |r| r.liquidatable_before,
            colors[0],
        ),
        (
            "bankrupt before the step's liquidations",
            |r| r.bankrupt_before,
            colors[1],
        ),
    ];
    for (name, f, color) in before {
        c.draw_series(DashedLineSeries::new(
            out.series.iter().map(|r| (r.step, f(r))),
            6,
            4,
            color.stroke_width(1),
        ))?;
        entries.push((name, Swatch::Dashed(color)));
    }
    draw_key(&key, &entries)?;

    // 3. Liquidations and margin calls, cumulative.
    let max = out
        .series
        .iter()
        .map(|r| r.liquidations.max(r.margin_calls))
        .max()
        .unwrap_or(0)
        .max(1);
    let (area, key) = beside_key(&panels[2]);
    let mut c = ChartBuilder::on(&area)
        .caption(
            "margin calls and liquidations (cumulative)",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..steps, 0u32..max + 1)?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("time since the start")
        .x_label_formatter(&|s| elapsed(*s, step_secs))
        .y_desc("count")
        .draw()?;
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.margin_calls)),
        BLUE.stroke_width(2),
    ))?;
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.liquidations)),
        RED.stroke_width(2),
    ))?;
    draw_key(
        &key,
        &[
            ("margin calls", Swatch::Line(BLUE)),
            ("liquidations", Swatch::Line(RED)),
        ],
    )?;

    // 4. Insurance fund and bad debt.
    let top = out
        .series
        .iter()
        .map(|r| r.insurance_fund.max(r.bad_debt + r.open_shortfall))
        .fold(1.0, f64::max);
    let (area, key) = beside_key(&panels[3]);
    let mut c = ChartBuilder::on(&area)
        .caption(
            "insurance fund, bad debt booked and open loss",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..steps, 0.0..top * 1.05)?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("time since the start")
        .x_label_formatter(&|s| elapsed(*s, step_secs))
        .y_desc("USD")
        .y_label_formatter(&usd)
        .draw()?;
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.insurance_fund)),
        GREEN.stroke_width(2),
    ))?;
    c.draw_series(LineSeries::new(
        out.series.iter().map(|r| (r.step, r.bad_debt)),
        RED.stroke_width(2),
    ))?;
    c.draw_series(LineSeries::new(
        out.series
            .iter()
            .map(|r| (r.step, r.bad_debt + r.open_shortfall)),
        MAGENTA.stroke_width(2),
    ))?;
    draw_key(
        &key,
        &[
            ("insurance fund", Swatch::Line(GREEN)),
            ("bad debt booked", Swatch::Line(RED)),
            (
                "loss: booked + open (accounts below zero)",
                Swatch::Line(MAGENTA),
            ),
        ],
    )?;

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
    let (area, key) = beside_key(&panels[4]);
    let mut c = ChartBuilder::on(&area)
        .caption(
            "open interest and the pool's net exposure",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..steps, (bottom * 1.05)..(top * 1.05))?;
    c.configure_mesh()
        .light_line_style(WHITE)
        .x_desc("time since the start")
        .x_label_formatter(&|s| elapsed(*s, step_secs))
        .y_desc("USD notional")
        .y_label_formatter(&usd)
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
    let mut entries = Vec::new();
    for (name, f, color) in lines {
        c.draw_series(LineSeries::new(
            out.series.iter().map(|r| (r.step, f(r))),
            color.stroke_width(2),
        ))?;
        entries.push((name, Swatch::Line(color)));
    }
    draw_key(&key, &entries)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_values_read_at_a_glance() {
        let shown: Vec<String> = [50_000.0, -1_500_000.0, 2_500.0, 900.0, 12.5, 0.25, 0.0]
            .into_iter()
            .map(human)
            .collect();
        assert_eq!(shown, ["50k", "-1.5M", "2.5k", "900", "12.5", "0.25", "0"]);
    }

    #[test]
    fn key_labels_wrap_between_words() {
        assert_eq!(
            wrap("loss: booked + open (accounts below zero)", 30),
            ["loss: booked + open (accounts", "below zero)"]
        );
        assert_eq!(wrap("BTC", 30), ["BTC"]);
    }
}
