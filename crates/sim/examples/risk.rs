//! The Monte Carlo risk report of a scenario, printed as `keyscope sim mc` prints it, without the CLI:
//! `cargo run --release -p keyscope-sim --example risk -- scenarios/crash-30pct.toml 200 [out-dir]`.

use std::path::{Path, PathBuf};

use keyscope_sim::{mc_report, montecarlo::run_mc, scenario::Scenario};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = PathBuf::from(
        args.next()
            .ok_or("usage: risk <scenario.toml> [paths] [out]")?,
    );
    let paths: u32 = args.next().map_or(Ok(200), |p| p.parse())?;
    let scenario = Scenario::load(&file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let report = run_mc(&scenario, base, paths, 0, |_, _| {})?;
    if let Some(out) = args.next() {
        mc_report::write(&report, &scenario.markets[0].name, Path::new(&out))?;
    }
    println!("{}", mc_report::text(&report));
    Ok(())
}
