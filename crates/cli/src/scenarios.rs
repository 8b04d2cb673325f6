//! The scenarios shipped inside the binary, so an installed `keyscope` runs the README's
//! `keyscope sim run scenarios/crash-30pct.toml` from any folder: a path that exists is read as a file;
//! otherwise a bare name (`crash-30pct`) or the README's `scenarios/<name>.toml` is looked up here — never
//! another path, so a mistyped file is an error, not a shipped scenario run in its place.

use std::path::Path;

use anyhow::Context;
use keyscope_sim::scenario::Scenario;

/// Each shipped scenario's name and text (the repository's `scenarios/*.toml`).
pub(crate) const SHIPPED: &[(&str, &str)] = &[
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
        "correlated-impact",
        include_str!("../../../scenarios/correlated-impact.toml"),
    ),
    (
        "crash-30pct",
        include_str!("../../../scenarios/crash-30pct.toml"),
    ),
];

/// The scenario `arg` names: the file if it exists, else the shipped scenario of that name.
pub(crate) fn load(arg: &Path) -> anyhow::Result<Scenario> {
    if arg.is_file() {
        return Ok(Scenario::load(arg)?);
    }
    // A bare name, or `scenarios/<name>.toml` as the README writes it; any other path must exist.
    let name = match arg.to_str() {
        Some(s) if !s.contains('/') && !s.ends_with(".toml") => s,
        Some(s) => s
            .strip_prefix("scenarios/")
            .and_then(|rest| rest.strip_suffix(".toml"))
            .filter(|n| !n.contains('/'))
            .unwrap_or_default(),
        None => "",
    };
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
pub(crate) fn summary(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_in_the_repository_ships() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(String::from))?
            })
            .collect();
        files.sort();
        let shipped: Vec<String> = SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(files, shipped);
    }

    #[test]
    fn a_shipped_scenario_is_found_by_name_or_the_readmes_path_and_a_missing_file_is_an_error() {
        for arg in ["crash-30pct", "scenarios/crash-30pct.toml"] {
            assert_eq!(load(Path::new(arg)).unwrap().name, "crash-30pct", "{arg}");
        }
        for arg in [
            "./mine/crash-30pct.toml",
            "crash-30pct.toml",
            "calm.csv",
            "scenarios/x/calm.toml",
        ] {
            let e = load(Path::new(arg)).unwrap_err().to_string();
            assert!(e.contains("no scenario file"), "{arg}: {e}");
        }
    }
}
