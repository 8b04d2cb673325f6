//! The scenarios shipped inside the binary, so an installed `keyscope` runs the README's
//! `keyscope sim run scenarios/crash-30pct.toml` from any folder: a path that exists is read as a file;
//! otherwise its name (`crash-30pct`, or `scenarios/crash-30pct.toml` outside a checkout) is looked up here.

use std::path::Path;

use anyhow::Context;
use keyscope_sim::scenario::Scenario;

/// Each shipped scenario's name and text (the repository's `scenarios/*.toml`).
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "breaker-drawdown",
        include_str!("../../../scenarios/breaker-drawdown.toml"),
    ),
    ("calm", include_str!("../../../scenarios/calm.toml")),
    (
        "cascade-thin-insurance",
        include_str!("../../../scenarios/cascade-thin-insurance.toml"),
    ),
    (
        "crash-30pct",
        include_str!("../../../scenarios/crash-30pct.toml"),
    ),
];

/// The scenario `arg` names: the file if it exists, else the shipped scenario of that name.
pub fn load(arg: &Path) -> anyhow::Result<Scenario> {
    if arg.is_file() {
        return Ok(Scenario::load(arg)?);
    }
    let name = arg.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let (_, text) = SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .with_context(|| {
            format!(
                "no scenario file {} and no shipped scenario {name:?}; `keyscope sim list` names the shipped ones",
                arg.display()
            )
        })?;
    Ok(Scenario::parse(text)?)
}

/// The first sentence of a shipped scenario's opening comment: what it shows.
pub fn summary(text: &str) -> String {
    let comment = text
        .lines()
        .map_while(|l| l.strip_prefix('#'))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    match comment.find(". ") {
        Some(end) => comment[..=end].to_string(),
        None => comment,
    }
}
