//! `keyscope quote` against `keyscope devnet` (anvil, the deployment and the relayer with its matcher): a
//! maker's post-only quotes rest and show in the book, a taker's IOC order lifts the ask and the fill
//! settles on chain, cancels by hash, cancel-all, a scheduled cancel firing, a watcher whose disconnect
//! cancels its key's quotes, and orders beyond the key's scope or malformed refused with nothing resting.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::DevnetProcess;
use serde_json::Value;

const MAKER_SESSION: &str = "0x00000000000000000000000000000000000000000000000000000000000a11ce";
const TAKER_SESSION: &str = "0x0000000000000000000000000000000000000000000000000000000000000b0b";

/// `keyscope` as one trader (owner key) against the devnet.
struct Trader<'a> {
    devnet: &'a DevnetProcess,
    owner: String,
    session: &'static str,
}

impl Trader<'_> {
    fn command(&self) -> Command {
        let info = &self.devnet.ready["devnet"];
        let mut c = Command::new(env!("CARGO_BIN_EXE_keyscope"));
        c.env_remove("KEYSCOPE_SESSION_KEY")
            .env_remove("KEYSCOPE_SIGNER")
            .env("KEYSCOPE_RPC", self.devnet.rpc())
            .env("KEYSCOPE_BUNDLER", info["bundler"].as_str().unwrap())
            .env("KEYSCOPE_DEPLOYMENT", info["deployment"].as_str().unwrap())
            .env("KEYSCOPE_KEY", &self.owner);
        c
    }

    /// `keyscope <args> --json`: (exit ok, the JSON it printed last, stdout and stderr).
    fn run(&self, args: &[&str]) -> (bool, Value, String) {
        let out = self.command().args(args).arg("--json").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let json = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        (out.status.success(), json, text)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (ok, json, text) = self.run(args);
        assert!(ok, "keyscope {args:?} failed: {text}");
        json
    }

    /// Fails, and returns the error it printed (human form: no --json).
    fn fails(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "keyscope {args:?} should fail");
        stderr
    }

    /// `quote <args> --session-key <its session key>`.
    fn quote(&self, args: &[&str]) -> Value {
        let mut all = vec!["quote"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--session-key", self.session]);
        self.ok(&all)
    }

    fn place(&self, side: &str, size: &str, price: &str, tif: &str) -> Value {
        let mut args = vec![
            "place", "--market", "BTC", "--side", side, "--size", size, "--price", price,
        ];
        if !tif.is_empty() {
            args.push(tif);
        }
        self.quote(&args)
    }

    /// The BTC position size on the venue (18 decimals, signed), 0 without one.
    fn btc_position(&self) -> i128 {
        let pf = self.ok(&["portfolio"]);
        pf["positions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["market"] == "BTC")
            .map_or(0, |p| p["size"].as_str().unwrap().parse().unwrap())
    }
}

/// Price levels of one side, best first: (price, size) as the book prints them.
type Levels = Vec<(String, String)>;

/// The BTC book: (bids, asks).
fn book(t: &Trader) -> (Levels, Levels) {
    let b = t.ok(&["quote", "book", "--market", "BTC"]);
    let side = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["price"].as_str().unwrap().to_string(),
                    l["size"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    (side(&b["bids"]), side(&b["asks"]))
}

fn lvl(p: &str, s: &str) -> (String, String) {
    (p.to_string(), s.to_string())
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_market_maker_quotes_and_a_taker_lifts_the_ask() {
    let devnet = DevnetProcess::spawn(42_250);
    let keys = devnet.ready["devnet"]["traderKeys"].as_array().unwrap();
    let maker = Trader {
        devnet: &devnet,
        owner: keys[0].as_str().unwrap().to_string(),
        session: MAKER_SESSION,
    };
    let taker = Trader {
        devnet: &devnet,
        owner: keys[1].as_str().unwrap().to_string(),
        session: TAKER_SESSION,
    };
    for t in [&maker, &taker] {
        t.ok(&["account", "create", "--collateral", "20000"]);
        t.ok(&["deposit", "10000"]);
        t.ok(&[
            "session",
            "grant",
            "--session-key",
            t.session,
            "--markets",
            "BTC",
            "--max-size",
            "0.5",
            "--max-notional",
            "40000",
        ]);
    }

    // Bad input: refused before anything is signed, with what to fix; nothing rests.
    let unknown = maker.fails(&[
        "quote",
        "place",
        "--market",
        "DOGE",
        "--side",
        "buy",
        "--size",
        "0.1",
        "--price",
        "1",
        "--session-key",
        MAKER_SESSION,
    ]);
    assert!(
        unknown.contains("DOGE") && unknown.contains("BTC"),
        "{unknown}"
    );
    let zero = maker.fails(&[
        "quote",
        "place",
        "--market",
        "BTC",
        "--side",
        "buy",
        "--size",
        "0",
        "--price",
        "59900",
        "--session-key",
        MAKER_SESSION,
    ]);
    assert!(
        zero.contains("error: --size must be more than zero"),
        "{zero}"
    );
    let side = maker.fails(&[
        "quote",
        "place",
        "--market",
        "BTC",
        "--side",
        "up",
        "--size",
        "0.1",
        "--price",
        "59900",
        "--session-key",
        MAKER_SESSION,
    ]);
    assert!(
        side.contains("invalid value 'up'") && side.contains("buy, sell"),
        "{side}"
    );
    let no_key = maker.fails(&[
        "quote", "place", "--market", "BTC", "--side", "buy", "--size", "0.1", "--price", "59900",
    ]);
    assert!(no_key.contains("--session-key"), "{no_key}");
    assert_eq!(book(&maker), (vec![], vec![]));

    // Two-sided post-only quotes rest; the book shows them.
    let bid = maker.place("buy", "0.1", "59900", "--post-only");
    let ask = maker.place("sell", "0.1", "60100", "--post-only");
    for q in [&bid, &ask] {
        assert_eq!(q["status"], "resting", "{q}");
        assert_eq!(q["resting"], "0.1", "{q}");
        assert_eq!(q["timeInForce"], "post-only", "{q}");
    }
    assert_ne!(bid["nonce"], ask["nonce"], "each order gets its own nonce");
    assert_eq!(
        book(&maker),
        (vec![lvl("59900", "0.1")], vec![lvl("60100", "0.1")])
    );
    // Reading the book needs no key; people read it asks over bids.
    let out = maker
        .command()
        .env_remove("KEYSCOPE_KEY")
        .args(["quote", "book", "--market", "BTC"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("BTC book\n  ask 60100 x 0.1\n  bid 59900 x 0.1"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ask_hash = ask["orderHash"].as_str().unwrap();
    let shown = maker.ok(&["quote", "order", ask_hash]);
    assert_eq!(shown["orderHash"], ask_hash, "{shown}");
    assert_eq!(shown["side"], "sell", "{shown}");
    assert_eq!(shown["resting"], "0.1", "{shown}");
    // A post-only order that would take is refused, and changes nothing.
    let (ok, _, text) = taker.run(&[
        "quote",
        "place",
        "--market",
        "BTC",
        "--side",
        "buy",
        "--size",
        "0.1",
        "--price",
        "60100",
        "--post-only",
        "--session-key",
        TAKER_SESSION,
    ]);
    assert!(!ok && text.contains("post-only"), "{text}");

    // Beyond the key's scope (0.5 an order, 40,000 notional at the limit): refused off-chain, with the
    // matcher's reason and code; nothing rests.
    for (size, price, why) in [("0.6", "59000", "size"), ("0.5", "90000", "notional")] {
        let refused = maker.fails(&[
            "quote",
            "place",
            "--market",
            "BTC",
            "--side",
            "buy",
            "--size",
            size,
            "--price",
            price,
            "--session-key",
            MAKER_SESSION,
        ]);
        assert!(
            refused.contains("error: the matcher refused (-32620): out of the key's scope")
                && refused.contains(why),
            "{size} @ {price}: {refused}"
        );
    }
    assert_eq!(
        book(&maker),
        (vec![lvl("59900", "0.1")], vec![lvl("60100", "0.1")])
    );

    // The taker's IOC lifts the ask; the fill settles on chain: both positions move.
    let lift = taker.place("buy", "0.1", "60100", "--ioc");
    assert_eq!(lift["status"], "filled", "{lift}");
    assert_eq!(lift["filled"], "0.1", "{lift}");
    assert_eq!(lift["resting"], "0", "{lift}");
    assert_eq!(lift["fills"].as_array().unwrap().len(), 1, "{lift}");
    assert_eq!(book(&maker), (vec![lvl("59900", "0.1")], vec![]));
    let tenth = 100_000_000_000_000_000i128;
    wait_until("the fill settles on chain", 30, || {
        maker.btc_position() == -tenth
    });
    assert_eq!(taker.btc_position(), tenth);

    // Cancel by hash.
    let bid_hash = bid["orderHash"].as_str().unwrap();
    let cancelled = maker.quote(&["cancel", bid_hash]);
    assert_eq!(cancelled["cancelled"], serde_json::json!([bid_hash]));
    assert_eq!(book(&maker), (vec![], vec![]));
    // Cancelling it again cancels nothing (and says so).
    let again = maker.quote(&["cancel", bid_hash]);
    assert_eq!(again["cancelled"], serde_json::json!([]), "{again}");

    // Cancel-all takes every resting order of the key, and only that key's.
    let a1 = maker.place("sell", "0.1", "60200", "--post-only");
    let a2 = maker.place("sell", "0.2", "60300", "");
    let theirs = taker.place("buy", "0.1", "59000", "--post-only");
    let all = maker.quote(&["cancel-all"]);
    let mut got: Vec<&str> = all["cancelled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    got.sort();
    let mut want = vec![
        a1["orderHash"].as_str().unwrap(),
        a2["orderHash"].as_str().unwrap(),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(book(&maker), (vec![lvl("59000", "0.1")], vec![]));
    taker.quote(&["cancel", theirs["orderHash"].as_str().unwrap()]);

    // A scheduled cancel fires.
    let q = maker.place("buy", "0.1", "59800", "--post-only");
    let too_soon = maker.fails(&[
        "quote",
        "schedule-cancel",
        "--in",
        "1s",
        "--session-key",
        MAKER_SESSION,
    ]);
    assert!(too_soon.contains("at least 5000 ms"), "{too_soon}");
    let scheduled = maker.quote(&["schedule-cancel", "--in", "6s"]);
    assert!(
        scheduled["scheduledCancelMs"].as_u64().is_some(),
        "{scheduled}"
    );
    assert_eq!(book(&maker), (vec![lvl("59800", "0.1")], vec![]));
    wait_until("the scheduled cancel fires", 20, || {
        book(&maker).0.is_empty()
    });
    // Off the book, the lookup says how it ended; a hash never placed is not found.
    let gone = maker.ok(&["quote", "order", q["orderHash"].as_str().unwrap()]);
    assert_eq!(gone["status"], "cancelled", "{gone}");
    assert_eq!(gone["reason"], "scheduled cancel-all", "{gone}");
    assert_eq!(gone["resting"], "0", "{gone}");
    let unknown = maker.fails(&[
        "quote",
        "order",
        "0x00000000000000000000000000000000000000000000000000000000000000aa",
    ]);
    assert!(unknown.contains("is not on this matcher"), "{unknown}");
    // Cleared, a schedule does not fire.
    maker.place("buy", "0.1", "59700", "--post-only");
    maker.quote(&["schedule-cancel", "--in", "5s"]);
    let cleared = maker.quote(&["schedule-cancel", "--clear"]);
    assert!(cleared["scheduledCancelMs"].is_null(), "{cleared}");
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(book(&maker), (vec![lvl("59700", "0.1")], vec![]));
    maker.quote(&["cancel-all"]);

    // A watcher sees the key's order updates; closing it with --cancel-on-disconnect cancels its quotes.
    let mut watch = maker
        .command()
        .args([
            "quote",
            "watch",
            "--cancel-on-disconnect",
            "--json",
            "--session-key",
            MAKER_SESSION,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    // The subscription is live once the watcher has connected; place until its first update arrives.
    std::thread::sleep(Duration::from_secs(2));
    let watched = maker.place("sell", "0.1", "60400", "--post-only");
    let update: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(update["orderHash"], watched["orderHash"], "{update}");
    assert_eq!(update["status"], "resting", "{update}");
    assert_eq!(book(&maker), (vec![], vec![lvl("60400", "0.1")]));
    watch.kill().unwrap();
    watch.wait().unwrap();
    wait_until("disconnect cancels the quotes", 10, || {
        book(&maker).1.is_empty()
    });
}
