//! The charts `sim run` and `sim mc` write are readable at a glance: every key sits in a column beside
//! its plot, clear of the data (right of every drawn series), and each axis carries its unit. Runs
//! tests/tiny.toml on revm, so no chain is started.

use std::{path::Path, process::Command};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tiny.toml");

/// The SVG `keyscope sim ARGS --out <dir>` wrote as `file`.
fn chart(args: &[&str], file: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "keyscope-charts-{}-{}",
        args[0],
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .arg("sim")
        .args(args)
        .arg("--out")
        .arg(&dir)
        .arg(TINY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(Path::new(&dir).join(file)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    svg
}

/// An attribute's value in one SVG tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// Every `<text>`: its x and its content.
fn texts(svg: &str) -> Vec<(f64, String)> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let tag = &t[..t.find('>').unwrap()];
            let body = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
            let x = attr(tag, "x").unwrap().parse().unwrap();
            (x, body.trim().replace("&apos;", "'"))
        })
        .collect()
}

/// The right-most x of any series drawn on a plot (a polyline of three points or more; axes, ticks and
/// key swatches have two).
fn data_right_edge(svg: &str) -> f64 {
    svg.split("<polyline")
        .skip(1)
        .filter_map(|p| attr(p, "points"))
        .map(|points| {
            points
                .split_whitespace()
                .map(|xy| xy.split(',').next().unwrap().parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .filter(|xs| xs.len() >= 3)
        .flatten()
        .fold(f64::MIN, f64::max)
}

/// Asserts each of `keys` is a label right of all the data, and each of `units` an axis label.
fn readable(svg: &str, keys: &[&str], units: &[&str]) {
    let texts = texts(svg);
    let edge = data_right_edge(svg);
    for key in keys {
        let (x, _) = texts
            .iter()
            .find(|(_, t)| t == key)
            .unwrap_or_else(|| panic!("no key {key:?} in {texts:?}"));
        assert!(
            *x > edge,
            "key {key:?} at x {x} is on the data (which reaches {edge})"
        );
    }
    for unit in units {
        assert!(
            texts.iter().any(|(_, t)| t == unit),
            "no axis labelled {unit:?} in {texts:?}"
        );
    }
}

#[test]
fn a_runs_chart_has_its_keys_beside_the_data_and_units_on_its_axes() {
    let svg = chart(&["run"], "chart.svg");
    readable(
        &svg,
        &[
            "BTC",
            "healthy",
            "liquidations",
            "insurance fund",
            "long OI",
        ],
        &[
            "time since the start",
            "% of start",
            "accounts",
            "count",
            "USD",
            "USD notional",
        ],
    );
    assert_time_ticks(&svg);
}

#[test]
fn a_monte_carlo_chart_has_its_keys_beside_the_data_and_units_on_its_axes() {
    let svg = chart(&["mc", "--paths", "2"], "mc.svg");
    readable(
        &svg,
        &["median", "VaR 95 %", "VaR 99 %"],
        &["time since the start", "USD", "USD per path", "paths"],
    );
    assert_time_ticks(&svg);
}

/// The x axes read in chain time ("30 min"), not steps.
fn assert_time_ticks(svg: &str) {
    let texts = texts(svg);
    assert!(
        texts
            .iter()
            .any(|(_, t)| t.ends_with(" min") || t.ends_with(" h")),
        "no time on the x axis: {texts:?}"
    );
}
