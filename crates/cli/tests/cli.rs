//! Every `keyscope` command against a real devnet (anvil + script/Deploy.s.sol), checked on chain.

mod common;

use std::process::Command;

use common::DevnetProcess;

use alloy::{
    network::EthereumWallet,
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use alloy_primitives::{Address, I256, U256, hex};
use keyscope_core::{
    SessionLane,
    bindings::{IEntryPoint, ISessionManager, PerpVenue, TestUSD, TradingAccount},
    devnet::{Devnet, publish_price, repo_root},
    units::parse_units,
};
use serde_json::Value;

struct Cli<'a> {
    key: String,
    devnet: &'a Devnet,
}

impl<'a> Cli<'a> {
    /// The CLI signing as anvil dev key `index`.
    fn new(devnet: &'a Devnet, index: usize) -> Self {
        Self {
            key: format!("0x{}", hex::encode(devnet.keys()[index])),
            devnet,
        }
    }

    /// The owner's account address (deployed or not).
    fn account(&self) -> Address {
        self.ok(&["account", "address"])["account"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keyscope"));
        c.env("KEYSCOPE_RPC", self.devnet.endpoint())
            .env("KEYSCOPE_KEY", &self.key)
            .env("KEYSCOPE_DEPLOYMENT", &self.devnet.deployment_file);
        c
    }

    /// Runs `keyscope <args> --json`: (exit ok, the JSON it printed, everything it printed).
    fn run(&self, args: &[&str]) -> (bool, Value, String) {
        let out = self
            .command()
            .args(args)
            .arg("--json")
            .output()
            .expect("keyscope runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        (
            out.status.success(),
            json,
            format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
        )
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (ok, json, text) = self.run(args);
        assert!(ok, "keyscope {args:?} failed: {text}");
        json
    }

    /// Runs a command that must fail, returning its error message.
    fn err(&self, args: &[&str]) -> String {
        let (ok, json, text) = self.run(args);
        assert!(!ok, "keyscope {args:?} should have failed: {text}");
        json["error"].as_str().unwrap_or(&text).to_string()
    }
}

/// Mints `usd` test USD to anvil dev key `index` (the trader the CLI signs as) and publishes a BTC price of
/// 60,000; returns a provider signing as the deployer (the token and oracle owner).
async fn fund_trader(devnet: &Devnet, index: usize, usd: &str) -> impl Provider {
    let d = &devnet.deployment;
    let chain = ProviderBuilder::new()
        .wallet(EthereumWallet::from(devnet.signer(0)))
        .connect_http(devnet.endpoint_url());
    TestUSD::new(d.collateral, &chain)
        .mint(devnet.signer(index).address(), parse_units(usd, 6).unwrap())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    publish_price(
        &chain,
        d,
        &devnet.signer(0),
        0,
        parse_units("60000", 18).unwrap(),
    )
    .await
    .unwrap();
    chain
}

#[tokio::test]
async fn trader_session_from_account_to_filled_order() {
    let devnet = Devnet::start(&repo_root(), 0, 41_002)
        .await
        .expect("devnet starts");
    let d = devnet.deployment.clone();
    let owner = devnet.signer(2);
    let chain = fund_trader(&devnet, 2, "50000").await;
    let cli = Cli::new(&devnet, 2);

    // Before anything exists the account is known only by its address.
    assert_eq!(cli.ok(&["account", "info"])["deployed"], false);
    assert!(
        cli.err(&["deposit", "100"])
            .contains("keyscope account create")
    );

    let created = cli.ok(&["account", "create", "--collateral", "20000"]);
    assert_eq!(created["created"], true);
    let account: Address = created["account"].as_str().unwrap().parse().unwrap();
    let acct = TradingAccount::new(account, &chain);
    assert_eq!(acct.owner().call().await.unwrap(), owner.address());

    cli.ok(&["deposit", "10000"]);
    let venue = PerpVenue::new(d.venue, &chain);
    assert_eq!(
        venue
            .collateralOf(account)
            .call()
            .await
            .unwrap()
            .to_string(),
        "10000000000"
    );

    let session = PrivateKeySigner::random();
    let session_hex = format!("0x{}", hex::encode(session.credential().to_bytes()));
    let session_addr = session.address().to_string();
    cli.ok(&[
        "session",
        "grant",
        "--session-key",
        &session_addr,
        "--markets",
        "BTC",
        "--max-size",
        "0.5",
        "--max-notional",
        "40000",
        "--rate",
        "20/1s",
        "--expires",
        "8h",
    ]);
    let listed = cli.ok(&["session", "list"]);
    assert_eq!(listed["sessions"][0]["active"], true);
    assert_eq!(listed["sessions"][0]["markets"][0], "BTC");
    assert_eq!(listed["sessions"][0]["rate"], "20/1s");
    // The cautious money limits by default.
    assert_eq!(listed["sessions"][0]["feeLeft"], "100000000000000000");
    assert_eq!(listed["sessions"][0]["maxOpCost"], "10000000000000000");
    assert_eq!(listed["sessions"][0]["maxLeverage"], 300);
    assert_eq!(listed["sessions"][0]["tripped"], false);

    let filled = cli.ok(&[
        "order",
        "place",
        "--market",
        "BTC",
        "--size",
        "0.2",
        "--limit",
        "60500",
        "--session-key",
        &session_hex,
    ]);
    assert_eq!(filled["positionSize"], "200000000000000000");
    assert_eq!(
        venue
            .position(account, 0)
            .call()
            .await
            .unwrap()
            .size
            .to_string(),
        "200000000000000000"
    );

    // Predicted scope violations are refused before anything is sent: the lane's nonce does not move.
    let nonce_key = SessionLane::new(session.address(), 0).nonce_key();
    let entry_point = IEntryPoint::new(d.entry_point, &chain);
    let before = entry_point
        .getNonce(account, nonce_key)
        .call()
        .await
        .unwrap();
    let err = cli.err(&[
        "order",
        "place",
        "--market",
        "ETH",
        "--size",
        "0.1",
        "--limit",
        "3010",
        "--session-key",
        &session_hex,
    ]);
    assert!(
        err.contains("refused before sending: SessionMarketNotAllowed"),
        "{err}"
    );
    let err = cli.err(&[
        "order",
        "place",
        "--market",
        "BTC",
        "--size",
        "1",
        "--limit",
        "60500",
        "--session-key",
        &session_hex,
    ]);
    assert!(err.contains("SessionOrderTooLarge"), "{err}");
    assert_eq!(
        entry_point
            .getNonce(account, nonce_key)
            .call()
            .await
            .unwrap(),
        before
    );

    let pf = cli.ok(&["portfolio"]);
    assert_eq!(pf["state"], "Healthy");
    assert_eq!(pf["positions"][0]["market"], "BTC");
    assert_eq!(pf["positions"][0]["size"], "200000000000000000");

    let closed = cli.ok(&[
        "order",
        "close",
        "--market",
        "BTC",
        "--session-key",
        &session_hex,
    ]);
    assert_eq!(closed["positionSize"], "0");

    let margin_before = venue.collateralOf(account).call().await.unwrap();
    cli.ok(&["withdraw", "100"]);
    assert_eq!(
        venue.collateralOf(account).call().await.unwrap(),
        margin_before - I256::try_from(100_000_000).unwrap()
    );

    cli.ok(&["session", "revoke", &session_addr]);
    assert!(
        !ISessionManager::new(account, &chain)
            .getSession(session.address())
            .call()
            .await
            .unwrap()
            .active
    );
    let err = cli.err(&[
        "order",
        "place",
        "--market",
        "BTC",
        "--size",
        "0.1",
        "--limit",
        "60500",
        "--session-key",
        &session_hex,
    ]);
    assert!(err.contains("SessionNotActive"), "{err}");

    cli.ok(&["session", "revoke-all"]);
    assert_eq!(acct.epoch().call().await.unwrap(), 1);
    let info = cli.ok(&["account", "info"]);
    assert_eq!(info["deployed"], true);
    assert_eq!(info["epoch"], 1);
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let devnet = Devnet::start(&repo_root(), 0, 41_003)
        .await
        .expect("devnet starts");
    let cli = Cli::new(&devnet, 3);
    let grant = |markets: &str, extra: &[&str]| {
        let mut args = vec![
            "session",
            "grant",
            "--session-key",
            "0x0000000000000000000000000000000000000001",
            "--markets",
            markets,
            "--max-size",
            "0.5",
            "--max-notional",
            "1",
        ];
        args.extend_from_slice(extra);
        cli.err(&args)
    };
    assert!(grant("BTC", &[]).contains("unknown account"));
    cli.ok(&["account", "create"]);
    assert!(grant("SOL", &[]).contains("unknown market \"SOL\""));
    assert!(grant("BTC", &["--rate", "0/1s"]).contains("COUNT/PERIOD"));
    // Money limits the account would refuse are refused before anything is signed, naming the field.
    assert!(
        grant("BTC", &["--max-drawdown", "100%"])
            .contains("max drawdown must be a percentage below 10000 basis points")
    );
    assert!(grant("BTC", &["--fee-budget", "0.5wei"]).contains("has more than 0 decimal places"));
    assert!(
        grant("BTC", &["--max-op-cost", "1000000001"]).contains("max op cost must be whole gwei")
    );
    assert!(grant("BTC", &["--max-leverage", "lots"]).contains("is not a decimal number"));
    assert!(
        cli.err(&["deposit", "1.1234567"])
            .contains("more than 6 decimal places")
    );
    assert!(
        cli.err(&["deposit", "5"])
            .contains("the account holds 0 tUSD")
    );

    // A deployment file for another chain.
    let other =
        std::env::temp_dir().join(format!("keyscope-other-chain-{}.json", std::process::id()));
    let mut dep: Value =
        serde_json::from_str(&std::fs::read_to_string(&devnet.deployment_file).unwrap()).unwrap();
    dep["chainId"] = 1.into();
    std::fs::write(&other, dep.to_string()).unwrap();
    let out = cli
        .command()
        .args(["account", "info", "--deployment"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong chain"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(other).unwrap();

    // The owner key from an encrypted keystore instead of hex.
    let dir = std::env::temp_dir().join(format!("keyscope-cli-keystore-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path =
        keyscope_core::signer::write_keystore(&dir, "owner.json", &devnet.signer(3), "pw").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["account", "info", "--json", "--keystore"])
        .arg(&path)
        .env("KEYSCOPE_RPC", devnet.endpoint())
        .env("KEYSCOPE_DEPLOYMENT", &devnet.deployment_file)
        .env("KEYSCOPE_PASSWORD", "pw")
        .env_remove("KEYSCOPE_KEY")
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        info["owner"].as_str().unwrap().parse::<Address>().unwrap(),
        devnet.signer(3).address()
    );
    // With KEYSCOPE_KEY set (as the README's walk-through leaves it), a typed --keystore still wins.
    let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["account", "info", "--json", "--keystore"])
        .arg(&path)
        .env("KEYSCOPE_RPC", devnet.endpoint())
        .env("KEYSCOPE_DEPLOYMENT", &devnet.deployment_file)
        .env("KEYSCOPE_PASSWORD", "pw")
        .env(
            "KEYSCOPE_KEY",
            format!("0x{}", hex::encode(devnet.keys()[2])),
        )
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        info["owner"].as_str().unwrap().parse::<Address>().unwrap(),
        devnet.signer(3).address()
    );
    std::fs::remove_dir_all(dir).unwrap();

    // No key at all.
    let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["account", "info"])
        .env("KEYSCOPE_RPC", devnet.endpoint())
        .env_remove("KEYSCOPE_KEY")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no owner key"));
}

#[tokio::test]
async fn devnet_command_serves_until_interrupted() {
    let mut devnet = DevnetProcess::spawn(41_004);
    let ready = devnet.ready.clone();
    let provider = ProviderBuilder::new().connect_http(devnet.rpc().parse().unwrap());
    assert_eq!(provider.get_chain_id().await.unwrap(), 41_004);
    let venue: Address = ready["devnet"]["venue"].as_str().unwrap().parse().unwrap();
    assert!(!provider.get_code_at(venue).await.unwrap().is_empty());
    // Traders are funded.
    let trader: PrivateKeySigner = ready["devnet"]["traderKeys"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let usd: Address = ready["devnet"]["collateral"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        TestUSD::new(usd, &provider)
            .balanceOf(trader.address())
            .call()
            .await
            .unwrap(),
        U256::from(100_000_000_000u64)
    );

    assert!(devnet.interrupt(), "devnet did not stop on Ctrl-C");
    assert!(provider.get_chain_id().await.is_err(), "anvil is gone");
}

#[test]
fn sim_runs_a_scenario_and_refuses_a_bad_one() {
    let dir = std::env::temp_dir().join(format!("keyscope-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = repo_root().join("scenarios/cascade-thin-insurance.toml");
    // `keyscope sim ARGS…`: its output, and its JSON report if it succeeded.
    let sim = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
            .arg("sim")
            .args(args)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, report)
    };
    // The same, for a run that must succeed: its JSON report.
    let sim_ok = |args: &[&std::ffi::OsStr]| {
        let (out, report) = sim(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report
    };
    let report = sim_ok(&[
        "run".as_ref(),
        "--json".as_ref(),
        "--out".as_ref(),
        dir.as_ref(),
        scenario.as_ref(),
    ]);
    assert_eq!(report["backend"], "revm");
    assert!(report["liquidations"].as_u64().unwrap() > 0);
    assert!(
        report["badDebt"].as_f64().unwrap() > 0.0,
        "the thin fund runs dry: {report}"
    );
    for f in ["summary.json", "series.csv", "chart.svg"] {
        assert!(dir.join(f).is_file(), "{f} written");
    }

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&scenario)
            .unwrap()
            .replace("leverage_max = 19", "leverage_max = 40"),
    )
    .unwrap();
    let (out, _) = sim(&["run".as_ref(), bad.as_ref()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("traders.leverage_min") && err.contains("<= 19"),
        "{err}"
    );

    // Monte Carlo over a few paths: the risk summary and its three files.
    let mc = dir.join("mc");
    let report = sim_ok(&[
        "mc".as_ref(),
        "--paths".as_ref(),
        "4".as_ref(),
        "--json".as_ref(),
        "--out".as_ref(),
        mc.as_ref(),
        scenario.as_ref(),
    ]);
    assert_eq!(report["paths"], 4);
    let bad_debt = &report["badDebt"];
    assert!(bad_debt["var99"].as_f64().unwrap() >= bad_debt["var95"].as_f64().unwrap());
    assert!(bad_debt["es95"].as_f64().unwrap() >= bad_debt["var95"].as_f64().unwrap());
    assert_eq!(
        report["pInsuranceExhausted"], 1.0,
        "the $1,000 fund runs dry on every path"
    );
    for f in ["mc.json", "paths.csv", "mc.svg"] {
        assert!(mc.join(f).is_file(), "{f} written");
    }
    // The book is fixed unless asked otherwise; peak loss and every VaR's interval are reported.
    assert_eq!(report["book"], "fixed");
    let peak = &report["peakLoss"];
    assert!(peak["var99"].as_f64().unwrap() >= bad_debt["var99"].as_f64().unwrap() - 1e-6);
    let [lo, hi] = [0, 1].map(|i| bad_debt["var99Ci"][i].as_f64().unwrap());
    assert!(lo <= bad_debt["var99"].as_f64().unwrap() && bad_debt["var99"].as_f64().unwrap() <= hi);
    // A random book, and paths added until the intervals are narrow enough (here: capped at 8).
    let report = sim_ok(&[
        "mc".as_ref(),
        "--paths".as_ref(),
        "4".as_ref(),
        "--book".as_ref(),
        "random".as_ref(),
        "--target-error".as_ref(),
        "1".as_ref(),
        "--max-paths".as_ref(),
        "8".as_ref(),
        "--json".as_ref(),
        "--out".as_ref(),
        mc.as_ref(),
        scenario.as_ref(),
    ]);
    assert_eq!(report["book"], "random");
    assert_eq!(report["paths"], 8, "doubled once, then stopped at the cap");
    assert_eq!(report["targetError"], 1.0);
    // A target of no width is refused by the scenario's own field name.
    let (out, _) = sim(&[
        "mc".as_ref(),
        "--target-error".as_ref(),
        "0".as_ref(),
        scenario.as_ref(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("monte_carlo.target_error"), "{err}");
    // No paths: refused by name.
    let (out, _) = sim(&[
        "mc".as_ref(),
        "--paths".as_ref(),
        "0".as_ref(),
        scenario.as_ref(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paths: must be between 1"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn p256_keys_rotation_and_the_dead_man_switch_from_the_cli() {
    let devnet = Devnet::start(&repo_root(), 0, 41_007)
        .await
        .expect("devnet starts");
    let chain = fund_trader(&devnet, 3, "20000").await;
    let e18 = |v: &str| parse_units(v, 18).unwrap();
    let cli = Cli::new(&devnet, 3);
    cli.ok(&["account", "create", "--collateral", "20000"]);
    cli.ok(&["deposit", "10000"]);
    let account: Address = cli.account();

    // Two P-256 keys, as an HSM or an enclave would hold them; their on-chain names are their ids.
    let hex_a = "0x00000000000000000000000000000000000000000000000000000000000c0ffe";
    let hex_b = "0x000000000000000000000000000000000000000000000000000000000000beef";
    let id = |h: &str| {
        keyscope_core::KeySigner::id(
            &keyscope_core::P256Key::from_bytes(&h.parse().unwrap()).unwrap(),
        )
    };
    let (a, b) = (id(hex_a).to_string(), id(hex_b).to_string());
    cli.ok(&[
        "session",
        "grant",
        "--session-key",
        &a,
        "--markets",
        "BTC",
        "--max-size",
        "0.5",
        "--max-notional",
        "40000",
    ]);
    let as_key = |hex: &'static str, args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--session-key", hex, "--key-type", "p256"].map(String::from));
        v
    };
    let run = |args: Vec<String>| cli.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let order = [
        "order", "place", "--market", "BTC", "--size", "0.01", "--limit", "60500",
    ];
    let (ok, placed, text) = run(as_key(hex_a, &order));
    assert!(ok, "{text}");
    assert_eq!(placed["positionSize"], e18("0.01").to_string());

    // The key arms its dead-man switch; only the owner disarms it.
    let (ok, _, text) = run(as_key(hex_a, &["order", "heartbeat", "--interval", "60"]));
    assert!(ok, "{text}");
    let sessions = ISessionManager::new(account, &chain);
    let a_id: Address = a.parse().unwrap();
    assert_ne!(
        sessions
            .heartbeatDeadline(a_id)
            .call()
            .await
            .unwrap()
            .to::<u64>(),
        0
    );
    cli.ok(&["session", "disarm-heartbeat", &a]);
    assert_eq!(
        sessions
            .heartbeatDeadline(a_id)
            .call()
            .await
            .unwrap()
            .to::<u64>(),
        0
    );

    // The owner rotates A to B in one op: B trades, A is refused.
    cli.ok(&["session", "rotate", &a, &b]);
    let (ok, _, text) = run(as_key(hex_b, &order));
    assert!(ok, "{text}");
    let (ok, _, text) = run(as_key(hex_a, &order));
    assert!(!ok && text.contains("SessionNotActive"), "{text}");

    // Keys for the sidecar: a fresh keystore prints its id; an existing file is never overwritten.
    let dir = std::env::temp_dir().join(format!("keyscope-cli-newkey-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("k.json");
    let new_key = || {
        Command::new(env!("CARGO_BIN_EXE_keyscope"))
            .env("KEYSCOPE_SIGNER_PASSWORD", "pw")
            .args(["signer", "new-key", "--curve", "p256", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = new_key();
    assert!(first.status.success());
    let printed: Address = String::from_utf8_lossy(&first.stdout)
        .trim()
        .parse()
        .unwrap();
    let held =
        keyscope_signer::keys::read_keystore(&out, keyscope_core::key::Curve::P256, "pw").unwrap();
    assert_eq!(keyscope_core::KeySigner::id(&held), printed);
    let again = new_key();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The chain's clock moved on by `secs` (one block mined at the new time).
async fn advance_time(provider: &impl Provider, secs: u64) {
    let _: Value = provider
        .raw_request("evm_increaseTime".into(), (secs,))
        .await
        .unwrap();
    let _: Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
}

/// The account's collateral balance and its owner's, in token units.
async fn usd_balances(
    chain: &impl Provider,
    devnet: &Devnet,
    account: Address,
    owner: Address,
) -> (U256, U256) {
    let usd = TestUSD::new(devnet.deployment.collateral, chain);
    (
        usd.balanceOf(account).call().await.unwrap(),
        usd.balanceOf(owner).call().await.unwrap(),
    )
}

#[tokio::test]
async fn money_commands_run_twice_move_money_once() {
    let devnet = Devnet::start(&repo_root(), 0, 41_281)
        .await
        .expect("devnet starts");
    let chain = fund_trader(&devnet, 2, "50000").await;
    let owner = devnet.signer(2).address();
    let cli = Cli::new(&devnet, 2);
    let account: Address = cli.account();

    // A typo in the amount refuses the whole command: nothing deployed, nothing moved.
    assert!(
        cli.err(&["account", "create", "--collateral", "20,000"])
            .contains("is not a decimal number")
    );
    assert_eq!(cli.ok(&["account", "info"])["deployed"], false);
    assert_eq!(
        usd_balances(&chain, &devnet, account, owner).await,
        (U256::ZERO, parse_units("50000", 6).unwrap())
    );

    let created = cli.ok(&["account", "create", "--collateral", "20000"]);
    assert_eq!(created["created"], true);
    assert_eq!(created["moved"], "20000000000");
    let once = (
        parse_units("20000", 6).unwrap(),
        parse_units("30000", 6).unwrap(),
    );
    assert_eq!(usd_balances(&chain, &devnet, account, owner).await, once);

    // The same command again: the account exists, nothing moves, and it says what the account holds.
    let again = cli.ok(&["account", "create", "--collateral", "20000"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["moved"], "0");
    assert_eq!(again["collateral"], "20000000000");
    assert_eq!(usd_balances(&chain, &devnet, account, owner).await, once);
    let text = cli
        .command()
        .args(["account", "create", "--collateral", "20000"])
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(
            "already exists and holds 20,000 tUSD, with 0 tUSD in venue margin; nothing was sent"
        ) && text.contains("keyscope deposit"),
        "{text}"
    );
    assert_eq!(usd_balances(&chain, &devnet, account, owner).await, once);

    // deposit and withdraw: a re-run of the same amount within ten minutes (the venue's own log says so)
    // is refused with what to do and moves nothing; --again, another amount or a later run moves.
    let margin = || async {
        PerpVenue::new(devnet.deployment.venue, &chain)
            .collateralOf(account)
            .call()
            .await
            .unwrap()
            .into_raw()
    };
    cli.ok(&["deposit", "5000"]);
    assert_eq!(margin().await, parse_units("5000", 6).unwrap());
    // The re-run moves nothing and exits 0 (the money is where the first run put it), saying so.
    let rerun = cli.ok(&["deposit", "5000"]);
    assert_eq!(rerun["moved"], "0");
    assert_eq!(rerun["deposited"], "0");
    assert_eq!(rerun["repeatOf"]["amount"], "5000000000");
    assert_eq!(rerun["again"], "keyscope deposit 5000 --json --again");
    let text = cli.command().args(["deposit", "5000"]).output().unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("this account deposited 5,000 tUSD into venue margin")
            && text.contains("nothing was sent")
            && text.contains("`keyscope deposit 5000 --again`"),
        "{text}"
    );
    assert_eq!(margin().await, parse_units("5000", 6).unwrap());
    cli.ok(&["deposit", "2500"]);
    // The command the refusal names, typed as printed, moves.
    assert_eq!(
        cli.ok(&["deposit", "5000", "--again"])["moved"],
        "5000000000"
    );
    assert_eq!(margin().await, parse_units("12500", 6).unwrap());
    cli.ok(&["withdraw", "1000"]);
    let rerun = cli.ok(&["withdraw", "1000"]);
    assert_eq!(rerun["moved"], "0");
    assert_eq!(rerun["again"], "keyscope withdraw 1000 --json --again");
    assert_eq!(margin().await, parse_units("11500", 6).unwrap());
    // A withdrawal the venue would refuse is refused before anything is sent or paid for (the call is
    // simulated, not only the validation), in the user's units, and the nonce stays.
    let entry_point = IEntryPoint::new(devnet.deployment.entry_point, &chain);
    let nonce_before = entry_point
        .getNonce(account, Default::default())
        .call()
        .await
        .unwrap();
    let e = cli.err(&["withdraw", "900000"]);
    assert!(
        e.contains("refused before sending") && e.contains("less than the 900,000 tUSD asked for"),
        "{e}"
    );
    assert_eq!(
        entry_point
            .getNonce(account, Default::default())
            .call()
            .await
            .unwrap(),
        nonce_before
    );
    assert!(cli.err(&["deposit", "0"]).contains("the amount is 0"));
    assert!(
        cli.err(&["account", "fund", "0"])
            .contains("the amount is 0")
    );
    // The owner's own tUSD into an existing account (what an interrupted `create --collateral` left
    // unsent): once, then the re-run moves nothing; more than the owner holds is refused, nothing sent.
    let funded = cli.ok(&["account", "fund", "1000"]);
    assert_eq!(funded["moved"], "1000000000");
    assert_eq!(cli.ok(&["account", "fund", "1000"])["moved"], "0");
    assert!(
        cli.err(&["account", "fund", "40000"])
            .contains("less than 40,000; nothing was sent")
    );
    assert_eq!(
        usd_balances(&chain, &devnet, account, owner).await,
        (
            parse_units("9500", 6).unwrap(),
            parse_units("29000", 6).unwrap()
        )
    );
    // Past the window the same amount is a new decision.
    advance_time(&chain, 601).await;
    cli.ok(&["withdraw", "1000"]);
    assert_eq!(margin().await, parse_units("10500", 6).unwrap());
    assert_eq!(
        usd_balances(&chain, &devnet, account, owner).await,
        (
            parse_units("10500", 6).unwrap(),
            parse_units("29000", 6).unwrap()
        )
    );
    // Another account of the same owner (--salt): the command printed to move again keeps --salt, so it
    // moves from that account and not the first.
    cli.ok(&["--salt", "3", "account", "create"]);
    cli.ok(&["--salt", "3", "account", "fund", "500"]);
    let rerun = cli.ok(&["--salt", "3", "account", "fund", "500"]);
    assert_eq!(rerun["moved"], "0");
    assert_eq!(
        rerun["again"],
        "keyscope --salt 3 account fund 500 --json --again"
    );
}

/// What the JSON-RPC proxy in front of the chain does besides forwarding.
#[derive(Clone, Copy)]
enum ProxyTwist {
    /// Once, right after answering the first `eth_getLogs` — the moment a re-run has read the log and not
    /// yet acted — mine a block (the first run's op) and turn automine back on.
    BlockAfterTheLogRead,
    /// Refuse `eth_getLogs` over more than this many blocks, as public RPC providers do.
    CapLogSpan(u64),
}

/// A JSON-RPC proxy in front of `chain` with `twist`; returns its URL.
async fn proxy(chain: String, twist: ProxyTwist) -> String {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let upstream = ProviderBuilder::new().connect_http(chain.parse().unwrap());
    let fired = Arc::new(AtomicBool::new(false));
    let handler = move |body: String| {
        let upstream = upstream.clone();
        let fired = fired.clone();
        async move {
            let request: Value = serde_json::from_str(&body).unwrap();
            let method = request["method"].as_str().unwrap().to_string();
            let reply = |answer: Value| {
                let mut reply = serde_json::json!({"jsonrpc": "2.0", "id": request["id"]});
                reply
                    .as_object_mut()
                    .unwrap()
                    .extend(answer.as_object().unwrap().clone());
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    reply.to_string(),
                )
            };
            if let (ProxyTwist::CapLogSpan(cap), "eth_getLogs") = (twist, method.as_str()) {
                let number = |field: &str| {
                    let hex = request["params"][0][field].as_str().unwrap();
                    u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
                };
                let span = number("toBlock") - number("fromBlock") + 1;
                if span > cap {
                    return reply(serde_json::json!({"error": {
                        "code": -32005,
                        "message": format!("query exceeds max block range {cap} (asked for {span})"),
                    }}));
                }
            }
            let params = if request["params"].is_null() {
                serde_json::value::to_raw_value(&Vec::<Value>::new()).unwrap()
            } else {
                serde_json::value::to_raw_value(&request["params"]).unwrap()
            };
            let answer = upstream
                .raw_request_dyn(method.clone().into(), &params)
                .await;
            if let (ProxyTwist::BlockAfterTheLogRead, "eth_getLogs") = (twist, method.as_str()) {
                if !fired.swap(true, Ordering::SeqCst) {
                    let _: Value = upstream.raw_request("evm_mine".into(), ()).await.unwrap();
                    let _: Value = upstream
                        .raw_request("evm_setAutomine".into(), (true,))
                        .await
                        .unwrap();
                }
            }
            match answer {
                Ok(result) => reply(serde_json::json!({ "result": result })),
                Err(alloy::transports::RpcError::ErrorResp(error)) => {
                    reply(serde_json::json!({ "error": error }))
                }
                Err(e) => panic!("the chain failed behind the proxy: {e}"),
            }
        }
    };
    let app = axum::Router::new().route("/", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Waits until the chain's pool holds `count` transactions waiting to be mined; false if it never does.
async fn pending_reaches(chain: &impl Provider, count: u64) -> bool {
    for _ in 0..200 {
        let status: Value = chain.raw_request("txpool_status".into(), ()).await.unwrap();
        let pending = status["pending"]
            .as_u64()
            .or_else(|| {
                u64::from_str_radix(status["pending"].as_str()?.trim_start_matches("0x"), 16).ok()
            })
            .unwrap();
        if pending >= count {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_rerun_racing_the_first_run_moves_money_once() {
    let devnet = Devnet::start(&repo_root(), 0, 41_288)
        .await
        .expect("devnet starts");
    let chain = fund_trader(&devnet, 2, "50000").await;
    let cli = Cli::new(&devnet, 2);
    let account: Address = cli.account();
    cli.ok(&["account", "create", "--collateral", "20000"]);
    let margin = || async {
        PerpVenue::new(devnet.deployment.venue, &chain)
            .collateralOf(account)
            .call()
            .await
            .unwrap()
            .into_raw()
    };
    let automine = |on: bool| {
        let chain = &chain;
        async move {
            let _: Value = chain
                .raw_request("evm_setAutomine".into(), (on,))
                .await
                .unwrap();
        }
    };
    let spawn = |args: &[&str], rpc: Option<&str>| {
        let mut c = cli.command();
        if let Some(rpc) = rpc {
            c.env("KEYSCOPE_RPC", rpc);
        }
        c.args(args)
            .arg("--json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let finish = |child: std::process::Child| {
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };

    // 1. The first run's op is still waiting when the re-run starts: the re-run reads the same nonce and
    //    finds nothing in the log, but its op shares the waiting op's nonce, so the chain (simulating
    //    against its pending state) refuses it — and the re-run says a waiting op holds the nonce.
    automine(false).await;
    let first = spawn(&["deposit", "5000"], None);
    assert!(pending_reaches(&chain, 1).await);
    let (second_ok, second_text) = finish(spawn(&["deposit", "5000"], None));
    assert!(!second_ok, "{second_text}");
    assert!(
        second_text.contains("already waiting to be mined")
            && second_text.contains("at most one of the two is ever mined"),
        "{second_text}"
    );
    let _: Value = chain.raw_request("evm_mine".into(), ()).await.unwrap();
    automine(true).await;
    let (first_ok, first_text) = tokio::task::spawn_blocking(move || finish(first))
        .await
        .unwrap();
    assert!(first_ok, "{first_text}");
    assert_eq!(margin().await, parse_units("5000", 6).unwrap());

    // 2. The first run's op is mined after the re-run read the log but before it acts (a proxy mines it
    //    right after answering the re-run's log query): the re-run's op was made at the nonce read before
    //    the log, so it is stale and never mined; the margin moved once.
    automine(false).await;
    let first = spawn(&["deposit", "7000"], None);
    assert!(pending_reaches(&chain, 1).await);
    let proxy_url = proxy(devnet.endpoint(), ProxyTwist::BlockAfterTheLogRead).await;
    let second = spawn(&["deposit", "7000"], Some(&proxy_url));
    let (second_ok, second_text) = tokio::task::spawn_blocking(move || finish(second))
        .await
        .unwrap();
    let (first_ok, first_text) = tokio::task::spawn_blocking(move || finish(first))
        .await
        .unwrap();
    assert!(first_ok, "{first_text}");
    assert_eq!(margin().await, parse_units("12000", 6).unwrap());
    assert!(!second_ok, "{second_text}");
    assert!(
        second_text.contains("nothing moved twice")
            && second_text.contains("an earlier run of this command")
            && second_text.contains(&format!("an op of account {account}")),
        "{second_text}"
    );
    // Positive control: with the first run mined, the next re-run finds it in the log and moves nothing.
    assert_eq!(cli.ok(&["deposit", "7000"])["moved"], "0");
    assert_eq!(margin().await, parse_units("12000", 6).unwrap());

    // 3. An RPC that caps eth_getLogs at 100 blocks, the first move 300 blocks (and 300 s) back: the
    //    guard walks back in spans the RPC takes and still finds it; 700 s back it is a new decision.
    cli.ok(&["withdraw", "3000"]);
    let _: Value = chain
        .raw_request("anvil_mine".into(), (300, 1))
        .await
        .unwrap();
    let capped = proxy(devnet.endpoint(), ProxyTwist::CapLogSpan(100)).await;
    // The cap bites: one query over the blocks the walk covers is refused.
    let through_cap = ProviderBuilder::new().connect_http(capped.parse().unwrap());
    let latest = through_cap.get_block_number().await.unwrap();
    let wide = alloy::rpc::types::Filter::new()
        .address(devnet.deployment.venue)
        .from_block(latest - 300)
        .to_block(latest);
    assert!(through_cap.get_logs(&wide).await.is_err());
    let rerun = spawn(&["withdraw", "3000"], Some(&capped));
    let (ok, text) = tokio::task::spawn_blocking(move || finish(rerun))
        .await
        .unwrap();
    assert!(ok && text.contains(r#""moved":"0""#), "{text}");
    assert_eq!(margin().await, parse_units("9000", 6).unwrap());
    let _: Value = chain
        .raw_request("anvil_mine".into(), (400, 1))
        .await
        .unwrap();
    let rerun = spawn(&["withdraw", "3000"], Some(&capped));
    let (ok, text) = tokio::task::spawn_blocking(move || finish(rerun))
        .await
        .unwrap();
    assert!(ok && text.contains(r#""moved":"3000000000""#), "{text}");
    assert_eq!(margin().await, parse_units("6000", 6).unwrap());

    // 4. Two `account create` at once (the first's gas funding still waiting): the second shares the
    //    funding transfer's nonce, so the account gets its gas ETH once, and the second says why it stopped.
    automine(false).await;
    let first = spawn(&["--salt", "5", "account", "create"], None);
    assert!(pending_reaches(&chain, 1).await);
    let second = spawn(&["--salt", "5", "account", "create"], None);
    let (second_ok, second_text) = tokio::task::spawn_blocking(move || finish(second))
        .await
        .unwrap();
    assert!(!second_ok, "{second_text}");
    assert!(
        second_text.contains("at most one of the two is ever mined"),
        "{second_text}"
    );
    let _: Value = chain.raw_request("evm_mine".into(), ()).await.unwrap();
    automine(true).await;
    let (first_ok, first_text) = tokio::task::spawn_blocking(move || finish(first))
        .await
        .unwrap();
    assert!(first_ok, "{first_text}");
    let fifth: Address = cli.ok(&["--salt", "5", "account", "address"])["account"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let eth = chain.get_balance(fifth).await.unwrap();
    assert!(
        eth <= parse_units("0.1", 18).unwrap() && eth > parse_units("0.09", 18).unwrap(),
        "the account holds {eth} wei: its gas was sent twice"
    );
}

#[tokio::test]
async fn nonsense_grants_and_outflow_selectors_are_refused_before_anything_is_sent() {
    let devnet = Devnet::start(&repo_root(), 0, 41_282)
        .await
        .expect("devnet starts");
    let chain = fund_trader(&devnet, 3, "1000").await;
    let cli = Cli::new(&devnet, 3);
    cli.ok(&["account", "create"]);
    let account: Address = cli.account();
    let entry_point = IEntryPoint::new(devnet.deployment.entry_point, &chain);
    let owner_nonce = || async {
        entry_point
            .getNonce(account, alloy_primitives::aliases::U192::ZERO)
            .call()
            .await
            .unwrap()
    };
    let before = owner_nonce().await;
    let key = "0x0000000000000000000000000000000000000a11";
    let grant = |extra: &[&str]| {
        let mut args = vec![
            "session",
            "grant",
            "--session-key",
            key,
            "--markets",
            "BTC",
            "--max-size",
            "0.5",
            "--max-notional",
            "40000",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let err = |extra: &[&str]| {
        let args = grant(extra);
        cli.err(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // A key whose ops can never stay valid long enough for the relayer.
    let e = err(&["--ttl", "10s"]);
    assert!(
        e.contains("can never trade") && e.contains("the minimum op ttl is 15 s"),
        "{e}"
    );
    let e = err(&["--expires", "30s"]);
    assert!(e.contains("the minimum lifetime is 70 s"), "{e}");
    let e = err(&["--expires", "100000d"]);
    assert!(e.contains("at most 365 days"), "{e}");
    let e = err(&["--max-op-cost", "1eth"]);
    assert!(
        e.contains("per-op cost cap (1 ETH) is above the whole fee budget (0.1 ETH)"),
        "{e}"
    );
    let e = err(&["--max-uses", "0"]);
    assert!(
        e.contains("max uses 0 would be a key that can never make a call"),
        "{e}"
    );
    // A selector that moves value out, refused until the owner names it.
    let token = devnet.deployment.collateral.to_string();
    let burn = format!("{token}:burn(uint256)");
    let e = err(&["--call", &burn]);
    assert!(
        e.contains("0x42966c68 (burn(uint256)) moves value out of the account")
            && e.contains("--allow-outflow-selector 0x42966c68"),
        "{e}"
    );
    // One on the account's own deny list: no override helps.
    let transfer = format!("{token}:transfer(address,uint256)");
    let e = err(&[
        "--call",
        &transfer,
        "--allow-outflow-selector",
        "0xa9059cbb",
    ]);
    assert!(e.contains("the account refuses to grant it"), "{e}");
    // Revoking, re-arming or rotating a key that was never granted.
    let e = cli.err(&["session", "revoke", key]);
    assert!(e.contains("was ever granted"), "{e}");
    let e = cli.err(&["session", "rearm", key]);
    assert!(e.contains("was ever granted"), "{e}");
    // Nothing was sent.
    assert_eq!(owner_nonce().await, before);
    assert_eq!(
        cli.ok(&["session", "list"])["sessions"],
        Value::Array(vec![])
    );

    // The minimum op ttl, and the outflow selector with the owner's override, are granted; the grant's id
    // is printed.
    let args = grant(&[
        "--ttl",
        "15s",
        "--call",
        &burn,
        "--allow-outflow-selector",
        "burn(uint256)",
    ]);
    let granted = cli.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let grant_id = granted["grantId"].as_u64().expect("the grant id");
    let session = ISessionManager::new(account, &chain)
        .getSession(key.parse().unwrap())
        .call()
        .await
        .unwrap();
    assert_eq!(session.grantId as u64, grant_id);
    assert_eq!(session.maxOpTtl, 15);
    assert!(session.permissions.iter().any(|p| p.selector
        == alloy_primitives::FixedBytes::from(hex!("42966c68"))
        && p.target == devnet.deployment.collateral));
    // A key granted the shortest op ttl trades: its ops take its maxOpTtl unless told otherwise, and a
    // longer --ttl is refused with the fix.
    let short = PrivateKeySigner::random();
    let short_hex = format!("0x{}", hex::encode(short.credential().to_bytes()));
    let args = grant(&["--ttl", "15s"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args[3] = &short_hex;
    cli.ok(&args);
    let heartbeat = [
        "order",
        "heartbeat",
        "--interval",
        "60",
        "--session-key",
        &short_hex,
    ];
    cli.ok(&heartbeat);
    let e = cli.err(&[&heartbeat[..], &["--ttl", "30"]].concat());
    assert!(
        e.contains("longer than session key") && e.contains("pass --ttl 15 or less"),
        "{e}"
    );

    // Granting the active key again would refill its budgets: refused unless --replace.
    let nonce = owner_nonce().await;
    let e = err(&[]);
    assert!(
        e.contains("already holds an active grant") && e.contains("--replace"),
        "{e}"
    );
    assert_eq!(owner_nonce().await, nonce);
    let args = grant(&["--replace"]);
    let replaced = cli.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(replaced["grantId"].as_u64().unwrap() > grant_id);
    // Revoked once, a second revoke sends nothing and says so.
    cli.ok(&["session", "revoke", key]);
    let nonce = owner_nonce().await;
    assert_eq!(cli.ok(&["session", "revoke", key])["alreadyRevoked"], true);
    assert_eq!(owner_nonce().await, nonce);
}

#[tokio::test]
async fn session_list_states_are_read_from_the_chain_now() {
    let devnet = Devnet::start(&repo_root(), 0, 41_283)
        .await
        .expect("devnet starts");
    let chain = fund_trader(&devnet, 2, "1000").await;
    let cli = Cli::new(&devnet, 2);
    cli.ok(&["account", "create", "--collateral", "1000"]);
    cli.ok(&["deposit", "1000"]);
    let keys: Vec<PrivateKeySigner> = (0..5).map(|_| PrivateKeySigner::random()).collect();
    let addr = |i: usize| keys[i].address().to_string();
    let grant = |i: usize, extra: &[&str]| {
        let a = addr(i);
        let mut args = vec![
            "session",
            "grant",
            "--session-key",
            &a,
            "--markets",
            "BTC",
            "--max-size",
            "0.5",
            "--max-notional",
            "40000",
        ];
        args.extend_from_slice(extra);
        cli.ok(&args);
    };
    // The private key itself, as `order --session-key` takes it, grants its address.
    let hex0 = format!("0x{}", hex::encode(keys[0].credential().to_bytes()));
    let a = cli.ok(&[
        "session",
        "grant",
        "--session-key",
        &hex0,
        "--markets",
        "BTC",
        "--max-size",
        "0.5",
        "--max-notional",
        "40000",
        "--expires",
        "1h",
    ]);
    assert_eq!(
        a["sessionKey"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        keys[0].address()
    );
    let successor = addr(3);
    grant(1, &["--expires", "8h", "--successor", &successor]);
    grant(2, &["--expires", "8h"]);
    // Key 0 arms its dead-man switch (one minute).
    cli.ok(&[
        "order",
        "heartbeat",
        "--interval",
        "60",
        "--session-key",
        &hex0,
    ]);
    let states = || {
        let listed = cli.ok(&["session", "list"]);
        listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["state"].as_str().unwrap().to_string(),
                    s["active"].as_bool().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let st = |s: &str, active: bool| (s.to_string(), active);
    assert_eq!(
        states(),
        [
            st("active", true),
            st("successor-committed", true),
            st("active", true)
        ]
    );

    // Key 4 buys under a 1 % drawdown breaker, BTC falls 10 %, and its reducing order trips the breaker.
    grant(4, &["--max-drawdown", "1%"]);
    let hex4 = format!("0x{}", hex::encode(keys[4].credential().to_bytes()));
    cli.ok(&[
        "order",
        "place",
        "--market",
        "BTC",
        "--size",
        "0.01",
        "--limit",
        "60500",
        "--session-key",
        &hex4,
    ]);
    publish_price(
        &chain,
        &devnet.deployment,
        &devnet.signer(0),
        0,
        parse_units("54000", 18).unwrap(),
    )
    .await
    .unwrap();
    cli.ok(&["order", "close", "--market", "BTC", "--session-key", &hex4]);
    assert_eq!(states()[3], st("tripped", false));

    cli.ok(&["session", "revoke", &addr(2)]);
    advance_time(&chain, 120).await;
    assert_eq!(
        states(),
        [
            st("past-deadline", false),
            st("successor-committed", true),
            st("revoked", false),
            st("tripped", false)
        ]
    );
    advance_time(&chain, 3600).await;
    assert_eq!(
        states(),
        [
            st("expired", false),
            st("successor-committed", true),
            st("revoked", false),
            st("tripped", false)
        ]
    );
    assert_eq!(cli.ok(&["account", "info"])["activeSessionKeys"], 1);
    // The text listing says the same.
    let out = cli.command().args(["session", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |i: usize| {
        text.lines()
            .find(|l| l.starts_with(&addr(i).to_lowercase()))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    assert!(line(0).contains(" expired "), "{text}");
    assert!(line(2).ends_with(" revoked"), "{text}");
}

#[test]
fn sigterm_or_sigint_to_keyscope_alone_leaves_no_anvil() {
    let port_free = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    for (signal, chain_id) in [("TERM", 41_284), ("INT", 41_285)] {
        let mut devnet = DevnetProcess::spawn(chain_id);
        assert!(!port_free(devnet.port), "anvil serves");
        assert!(devnet.signal(signal), "devnet exits on SIG{signal}");
        assert!(port_free(devnet.port), "SIG{signal} left anvil on its port");
    }

    // kill -9 runs no code in keyscope at all: its worker is told by the kernel and takes anvil down.
    let mut devnet = DevnetProcess::spawn(41_287);
    let port = devnet.port;
    assert!(devnet.signal("KILL"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !port_free(port) {
        assert!(
            std::time::Instant::now() < deadline,
            "kill -9 of keyscope left anvil on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // kill -9 of the worker alone (keyscope runs the command in a worker process, anvil's parent): the
    // supervisor sees it go and ends what is left in its process group.
    let mut devnet = DevnetProcess::spawn(41_289);
    let port = devnet.port;
    let worker = Command::new("pgrep")
        .args(["-P", &devnet.pid().to_string(), "keyscope"])
        .output()
        .unwrap();
    let worker = String::from_utf8_lossy(&worker.stdout).trim().to_string();
    assert!(!worker.is_empty(), "no worker process");
    Command::new("kill")
        .args(["-KILL", &worker])
        .status()
        .unwrap();
    assert!(devnet.exited_within(20), "keyscope outlived its worker");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !port_free(port) {
        assert!(
            std::time::Instant::now() < deadline,
            "kill -9 of the worker left anvil on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The harness's anvil backend, stopped mid-run.
    let port = common::free_port();
    let mut sim = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .arg("--project")
        .arg(repo_root())
        .args([
            "sim",
            "run",
            "--backend",
            "anvil",
            "--port",
            &port.to_string(),
            "--out",
        ])
        .arg(std::env::temp_dir().join(format!("keyscope-sim-signal-{}", std::process::id())))
        .arg(repo_root().join("scenarios/calm.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let keyscope = sim.id().to_string();
    // keyscope runs the command in a worker process, anvil's parent.
    let children = |parent: &str, name: &str| {
        let out = Command::new("pgrep")
            .args(["-P", parent, name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let anvil = loop {
        let worker = children(&keyscope, "keyscope");
        let anvil = if worker.is_empty() {
            String::new()
        } else {
            children(&worker, "anvil")
        };
        if !anvil.is_empty() {
            break anvil;
        }
        assert!(
            sim.try_wait().unwrap().is_none(),
            "sim ended before starting anvil"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    Command::new("kill")
        .args(["-TERM", &keyscope])
        .status()
        .unwrap();
    let status = sim.wait().unwrap();
    assert!(!status.success());
    assert!(
        !std::path::Path::new(&format!("/proc/{anvil}")).exists(),
        "anvil {anvil} outlived keyscope"
    );
    assert!(port_free(port));
}

#[tokio::test]
async fn errors_read_in_the_users_units_and_name_the_fix() {
    let devnet = Devnet::start(&repo_root(), 0, 41_286)
        .await
        .expect("devnet starts");
    fund_trader(&devnet, 2, "20000").await;
    let cli = Cli::new(&devnet, 2);
    cli.ok(&["account", "create", "--collateral", "20000"]);
    cli.ok(&["deposit", "9994"]);

    // A withdrawal past the margin: amounts with their decimals, and what to do about it.
    let e = cli.err(&["withdraw", "10000"]);
    assert!(
        e.contains("the venue holds 9,994 tUSD of the account's margin, less than the 10,000 tUSD asked for"),
        "{e}"
    );
    // A buy whose limit the oracle price does not meet, in dollars.
    let e = cli.err(&[
        "order", "place", "--market", "BTC", "--size", "0.1", "--limit", "59000",
    ]);
    assert!(
        e.contains("the oracle price $60,000 does not meet the limit price $59,000"),
        "{e}"
    );

    // A bundler that is not running, and the node's URL given as the bundler.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let e = cli.err(&["deposit", "1", "--bundler", &dead]);
    assert!(
        e.contains(&format!("cannot reach the bundler at {dead}")) && e.contains("keyscope devnet"),
        "{e}"
    );
    let e = cli.err(&["deposit", "1", "--bundler", &devnet.endpoint()]);
    assert!(
        e.contains("is not an ERC-4337 bundler") && e.contains("--rpc"),
        "{e}"
    );
    assert_eq!(
        cli.ok(&["account", "info"])["venueMargin"],
        "9994000000",
        "nothing moved"
    );

    // A deployment file whose contracts are not on this chain (an old file under a fresh anvil).
    let stale = std::env::temp_dir().join(format!(
        "keyscope-stale-deployment-{}.json",
        std::process::id()
    ));
    let mut dep: Value =
        serde_json::from_str(&std::fs::read_to_string(&devnet.deployment_file).unwrap()).unwrap();
    dep["accountFactory"] = Address::repeat_byte(0x42).to_string().into();
    std::fs::write(&stale, dep.to_string()).unwrap();
    let out = cli
        .command()
        .args(["account", "info", "--deployment"])
        .arg(&stale)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && e.contains("stale deployment file")
            && e.contains("keyscope devnet"),
        "{e}"
    );
    std::fs::remove_file(stale).unwrap();
}

#[test]
fn a_commands_help_lists_its_own_options_apart_from_the_global_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["session", "grant", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let global = help
        .find("Global options:")
        .unwrap_or_else(|| panic!("{help}"));
    let (own, rest) = help.split_at(global);
    assert!(
        own.contains("--markets") && own.contains("--allow-outflow-selector"),
        "{help}"
    );
    assert!(rest.contains("--rpc") && !own.contains("--rpc"), "{help}");
}

#[test]
fn a_reader_that_goes_away_gets_no_error() {
    // `keyscope sim list | head -0`: the pipe is closed before anything is written.
    let mut list = Command::new(env!("CARGO_BIN_EXE_keyscope"))
        .args(["sim", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(list.stdout.take());
    let out = list.wait_with_output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
