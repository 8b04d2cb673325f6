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

impl Cli<'_> {
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
    let cli = Cli {
        key: format!("0x{}", hex::encode(devnet.keys()[2])),
        devnet: &devnet,
    };

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
    let cli = Cli {
        key: format!("0x{}", hex::encode(devnet.keys()[3])),
        devnet: &devnet,
    };
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
    let (out, report) = sim(&[
        "run".as_ref(),
        "--json".as_ref(),
        "--out".as_ref(),
        dir.as_ref(),
        scenario.as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let (out, report) = sim(&[
        "mc".as_ref(),
        "--paths".as_ref(),
        "4".as_ref(),
        "--json".as_ref(),
        "--out".as_ref(),
        mc.as_ref(),
        scenario.as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let cli = Cli {
        key: format!("0x{}", hex::encode(devnet.keys()[3])),
        devnet: &devnet,
    };
    cli.ok(&["account", "create", "--collateral", "20000"]);
    cli.ok(&["deposit", "10000"]);
    let account: Address = cli.ok(&["account", "address"])["account"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

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
