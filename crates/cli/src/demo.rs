//! `keyscope demo` (what `make demo` runs): the whole stack on a fresh anvil — deployment, relayer,
//! two traders, a scoped session key trading through the relayer, its refusals, then a price slide to
//! a margin call and a liquidation — printed as a report and drawn as a chart, then shut down.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::{Filter, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::SolEvent,
};
use alloy_primitives::{Address, I256, U256};
use anyhow::{Context, bail};
use keyscope_core::{
    bindings::{PerpVenue, TestUSD},
    client::{Client, Submission, rpc_user_op},
    deployment::Deployment,
    devnet::{Devnet, publish_price},
    ops::{self, Call},
    scope::{Rate, TradingScope},
    units::{format_units, parse_units},
    user_op::PackedUserOperation,
};
use keyscope_relayer::{Config, Relayer};
use keyscope_sim::runner::{AccountState, Outcome, StepRecord};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Where the report (summary.json, series.csv, chart.svg) is written.
    #[arg(long, default_value = "reports/demo")]
    out: PathBuf,
}

/// The venue's account states, in the order of `PerpVenue.AccountState`.
const BTC: u32 = 0;
const ETH: u32 = 1;

struct Stack {
    devnet: Devnet,
    relayer: Relayer,
    d: Deployment,
    /// Anvil key 4: funds accounts and keeps (pokes, liquidates).
    keeper: DynProvider,
    /// Anvil key 0: owns the test dollar and signs oracle prices (one provider, one nonce sequence).
    deployer: DynProvider,
    client: Client<DynProvider>,
    /// --json: the story goes to stderr and stdout carries one JSON summary.
    json: bool,
}

/// A line of the story: stdout for people, stderr under --json (stdout is the summary's).
macro_rules! say {
    ($s:expr, $($t:tt)*) => {
        if $s.json { eprintln!($($t)*) } else { println!($($t)*) }
    };
}

/// Venue amounts (6 decimals) as dollars and cents.
fn usd(v: U256) -> String {
    format_units(v / U256::from(10_000u64), 2)
}

fn usd_signed(v: I256) -> String {
    let s = usd(v.unsigned_abs());
    if v.is_negative() { format!("-{s}") } else { s }
}

fn to_f64(v: U256, decimals: u32) -> f64 {
    // For the chart only: amounts in signing paths stay integers.
    v.to_string().parse::<f64>().unwrap_or(0.0) / 10f64.powi(decimals as i32)
}

fn order(venue: Address, market: u32, size: &str, limit: &str) -> anyhow::Result<Vec<Call>> {
    let (neg, abs) = size.strip_prefix('-').map_or((false, size), |s| (true, s));
    let mut delta = I256::from_raw(parse_units(abs, 18)?);
    if neg {
        delta = -delta;
    }
    Ok(vec![ops::place_order(
        venue,
        market,
        delta,
        parse_units(limit, 18)?,
        false,
    )])
}

impl Stack {
    /// Publishes `price` for `market`, signed by the oracle key (anvil's first).
    async fn price(&self, market: u32, price: &str) -> anyhow::Result<()> {
        let oracle = self.devnet.signer(0);
        publish_price(
            &self.deployer,
            &self.d,
            &oracle,
            market,
            parse_units(price, 18)?,
        )
        .await
        .map_err(anyhow::Error::msg)
    }

    async fn rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        keyscope_core::devnet::json_rpc(&self.relayer.url(), method, params).await
    }

    /// Sends `op` to the relayer with `keyscope_sendUserOperation` and waits for its receipt.
    async fn relay(&self, op: &PackedUserOperation) -> anyhow::Result<Value> {
        let accepted = self
            .rpc(
                "keyscope_sendUserOperation",
                json!([rpc_user_op(op), self.d.entry_point]),
            )
            .await
            .map_err(|e| anyhow::anyhow!("the relayer refused an op: {}", e["message"]))?;
        let hash = accepted["userOpHash"].clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .rpc("eth_getUserOperationReceipt", json!([hash]))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !r.is_null() {
                if r["success"] != true {
                    bail!("op {hash} was included but reverted");
                }
                return Ok(accepted);
            }
            if Instant::now() > deadline {
                bail!("op {hash} was not included within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deploys the account of `owner` with its first op (through the relayer): collateral in, margin
    /// deposited, and a session key granted if given.
    async fn open(
        &self,
        owner: &PrivateKeySigner,
        margin: &str,
        session: Option<&keyscope_core::bindings::ITradingAccount::SessionScope>,
        key: Address,
    ) -> anyhow::Result<Address> {
        let account = self
            .client
            .account_address(owner.address(), U256::ZERO)
            .await?;
        self.keeper
            .send_transaction(
                TransactionRequest::default()
                    .with_to(account)
                    .with_value(parse_units("1", 18)?),
            )
            .await?
            .get_receipt()
            .await?;
        let amount = parse_units(margin, 6)?;
        TestUSD::new(self.d.collateral, &self.deployer)
            .mint(account, amount)
            .send()
            .await?
            .get_receipt()
            .await?;
        let grants = session
            .map(|scope| (key, scope.clone()))
            .into_iter()
            .collect();
        let calls = ops::first_op_calls(account, self.d.collateral, self.d.venue, amount, grants);
        let op = self.client.owner_op(owner, U256::ZERO, calls).await?;
        self.relay(&op).await?;
        Ok(account)
    }
}

async fn start(project: &std::path::Path, json: bool) -> anyhow::Result<Stack> {
    let devnet = Devnet::start(project, 0, 31337).await?;
    let d = devnet.deployment.clone();
    let data_dir =
        std::env::temp_dir().join(format!("keyscope-demo-relayer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let config = Config::for_devnet(&devnet, "127.0.0.1:0".parse()?, data_dir);
    let relayer = Relayer::start(config)
        .await
        .context("starting the relayer")?;
    let keeper_key = devnet.signer(4);
    let keeper = ProviderBuilder::new()
        .wallet(EthereumWallet::from(keeper_key.clone()))
        .connect_http(devnet.endpoint_url())
        .erased();
    let client = Client::new(
        keeper.clone(),
        d.clone(),
        Submission::Bundler { url: relayer.url() },
        keeper_key.address(),
    );
    let deployer = ProviderBuilder::new()
        .wallet(EthereumWallet::from(devnet.signer(0)))
        .connect_http(devnet.endpoint_url())
        .erased();
    Ok(Stack {
        devnet,
        relayer,
        d,
        keeper,
        deployer,
        client,
        json,
    })
}

pub(crate) async fn run(g: &crate::global::Global, args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let stack = start(&g.project, g.json).await?;
    let outcome = tokio::select! {
        r = story(&stack, &args, started) => r,
        _ = crate::shutdown::requested() => Err(anyhow::anyhow!("interrupted")),
    };
    let Stack {
        devnet, relayer, ..
    } = stack;
    relayer.stop().await;
    drop(devnet);
    if g.json {
        eprintln!("relayer and anvil stopped.");
    } else {
        println!("relayer and anvil stopped.");
    }
    outcome
}

async fn story(s: &Stack, args: &DemoArgs, started: Instant) -> anyhow::Result<()> {
    let d = &s.d;
    say!(
        s,
        "== Keyscope demo: anvil {} (chain {}), relayer {} ==",
        s.devnet.endpoint(),
        d.chain_id,
        s.relayer.url()
    );
    say!(
        s,
        "contracts: EntryPoint v0.8 {}, venue {}, oracle {}",
        d.entry_point,
        d.venue,
        d.oracle
    );
    s.price(BTC, "60000").await?;
    s.price(ETH, "3000").await?;
    let (a, b, session) = open_traders(s).await?;
    session_trades(s, a, &session).await?;
    refusals(s, a, &session).await?;
    let insurance_start = PerpVenue::new(d.venue, &s.keeper)
        .insuranceFund()
        .call()
        .await?;
    let (series, liquidated_notional) = slide(s, a, b).await?;
    report(
        s,
        args,
        started,
        [a, b],
        series,
        liquidated_notional,
        insurance_start,
    )
    .await
}

/// Trader A (deployed, funded and its session key granted by its first op) and trader B, who shorts what
/// A will buy with its owner key.
async fn open_traders(s: &Stack) -> anyhow::Result<(Address, Address, PrivateKeySigner)> {
    let d = &s.d;
    let alice = s.devnet.signer(2);
    let session = PrivateKeySigner::random();
    let now = s.client.chain_time().await?;
    let mut scope = TradingScope::new(
        d.venue,
        vec![BTC],
        parse_units("0.5", 18)?,
        parse_units("40000", 18)?,
    );
    scope.rate = Some("20/1m".parse::<Rate>()?);
    // The cautious money limits, but room for the 15x this demo's trader takes on.
    scope.limits.max_leverage = 1_600;
    let scope = scope.build(now)?;
    let a = s
        .open(&alice, "2000", Some(&scope), session.address())
        .await?;
    say!(
        s,
        "\nTrader A {a}: deployed by its first UserOp through the relayer; 2,000 tUSD margin"
    );
    say!(
        s,
        "  session key {} may trade BTC only, <= 0.5 BTC and <= $40,000 an order, 20 orders a minute, 8 h,\n  <= 16x leverage, <= 0.01 ETH of gas an op and 0.1 ETH in all; never withdraw",
        session.address()
    );

    // Trader B takes the other side with the owner key.
    let bob = s.devnet.signer(3);
    let b = s.open(&bob, "20000", None, Address::ZERO).await?;
    let short = s
        .client
        .owner_op(&bob, U256::ZERO, order(d.venue, BTC, "-0.3", "59500")?)
        .await?;
    s.relay(&short).await?;
    say!(
        s,
        "Trader B {b}: 20,000 tUSD margin; shorts 0.3 BTC with its owner key"
    );

    Ok((a, b, session))
}

/// The session key trades through the relayer, which reports the account's health before and after.
async fn session_trades(s: &Stack, a: Address, session: &PrivateKeySigner) -> anyhow::Result<()> {
    let d = &s.d;
    say!(s, "\n-- the session key trades through the relayer --");
    for (lane, size) in [(0u32, "0.2"), (1, "0.3")] {
        let op = s
            .client
            .session_op(session, a, lane, order(d.venue, BTC, size, "60500")?, 60)
            .await?;
        let accepted = s.relay(&op).await?;
        let h = &accepted["health"];
        let imr = |side: &str| {
            usd(h[side]["initialMargin"]
                .as_str()
                .and_then(|v| v.parse::<U256>().ok())
                .unwrap_or_default())
        };
        say!(
            s,
            "  bought {size} BTC at 60,000 (lane {lane}); initial margin ${} -> ${}",
            imr("before"),
            imr("after")
        );
    }

    Ok(())
}

/// What the key may not do, refused by the relayer before anything is sent or paid: a withdrawal, a market
/// and a size outside its scope, gas fields worth more than its per-op cap, a trade past its leverage.
async fn refusals(s: &Stack, a: Address, session: &PrivateKeySigner) -> anyhow::Result<()> {
    let d = &s.d;
    say!(
        s,
        "\n-- refused by the relayer (nothing sent, nothing paid) --"
    );
    let refusals = [
        (
            "withdraw 100 tUSD",
            vec![ops::withdraw_margin(d.venue, parse_units("100", 6)?)],
        ),
        (
            "buy 1 ETH (market not in its scope)",
            order(d.venue, ETH, "1", "3100")?,
        ),
        (
            "buy 1 BTC (over its 0.5 BTC)",
            order(d.venue, BTC, "1", "60500")?,
        ),
    ];
    let mut ops_to_refuse = Vec::new();
    for (what, call) in refusals {
        ops_to_refuse.push((what, s.client.session_op(session, a, 2, call, 60).await?));
    }
    // Gas is value: an op whose gas fields (760,000 gas at 1,000 gwei) would pay its submitter 0.76 ETH.
    let mut greedy = s
        .client
        .session_op(session, a, 2, order(d.venue, BTC, "0.01", "60500")?, 60)
        .await?;
    greedy.gasFees = keyscope_core::user_op::pack_u128s(1_000_000_000_000, 1_000_000_000_000);
    let until = u64::from_be_bytes([
        0,
        0,
        greedy.signature[1],
        greedy.signature[2],
        greedy.signature[3],
        greedy.signature[4],
        greedy.signature[5],
        greedy.signature[6],
    ]);
    let grant_id = keyscope_core::bindings::ISessionManager::new(a, s.client.provider())
        .getSession(session.address())
        .call()
        .await?
        .grantId;
    greedy.signature =
        keyscope_core::session::sign_session_op(session, s.client.hash(&greedy)?, until, grant_id)
            .await?;
    ops_to_refuse.push(("offer 0.76 ETH of gas to whoever submits it", greedy));
    // Exposure: a further 0.05 BTC would take the account past the key's 16x.
    ops_to_refuse.push((
        "buy 0.05 BTC more (over its 16x leverage)",
        s.client
            .session_op(session, a, 2, order(d.venue, BTC, "0.05", "60500")?, 60)
            .await?,
    ));
    for (what, op) in ops_to_refuse {
        match s
            .rpc(
                "eth_sendUserOperation",
                json!([rpc_user_op(&op), d.entry_point]),
            )
            .await
        {
            Ok(h) => bail!("the relayer accepted a forbidden op ({what}): {h}"),
            Err(e) => say!(
                s,
                "  {what}: {} {}",
                e["code"],
                e["message"].as_str().unwrap_or_default()
            ),
        }
    }

    Ok(())
}

/// BTC slides until trader A is margin-called and then liquidated by the keeper; one record a price.
async fn slide(s: &Stack, a: Address, b: Address) -> anyhow::Result<(Vec<StepRecord>, f64)> {
    let d = &s.d;
    let venue = PerpVenue::new(d.venue, &s.keeper);
    say!(s, "\n-- BTC slides; the keeper pokes and liquidates --");
    let path = [
        "60000", "59500", "59000", "58500", "58000", "57500", "57000",
    ];
    let mut series = Vec::new();
    let mut liquidated_notional = 0.0;
    for (step, price) in path.iter().enumerate() {
        s.price(BTC, price).await?;
        venue.poke(a).send().await?.get_receipt().await?;
        let h = venue.health(a).call().await?;
        let state = keyscope_core::bindings::account_state_name(h.state);
        say!(
            s,
            "  BTC {price}: account value ${}, IMR ${}, MMR ${} -> {state}",
            usd_signed(h.accountValue),
            usd(h.initialMargin),
            usd(h.maintenanceMargin)
        );
        // Before the keeper's sweep: A's state as just read, B's as it is.
        let mut before = [0u32; 4];
        before[(h.state as usize).min(3)] += 1;
        before[(venue.health(b).call().await?.state as usize).min(3)] += 1;
        if h.state as usize >= 2 {
            let before = venue.position(a, BTC).call().await?.size;
            venue.liquidate(a, BTC).send().await?.get_receipt().await?;
            let after = venue.position(a, BTC).call().await?.size;
            let closed = (before - after).unsigned_abs();
            liquidated_notional += to_f64(closed, 18) * price.parse::<f64>().unwrap_or(0.0);
            say!(
                s,
                "  keeper liquidated trader A: {} BTC closed",
                format_units(closed, 18)
            );
        }
        let mut rec = StepRecord {
            step: step as u32,
            time: s.client.chain_time().await?,
            prices: vec![price.parse().unwrap_or(0.0)],
            healthy: 0,
            margin_call: 0,
            liquidatable: 0,
            bankrupt: 0,
            closed: 0,
            liquidatable_before: before[2],
            bankrupt_before: before[3],
            long_oi: 0.0,
            short_oi: 0.0,
            margin_calls: count(s, "MarginCall").await?,
            liquidations: count(s, "Liquidated").await?,
            liquidated_notional,
            insurance_fund: to_f64(venue.insuranceFund().call().await?, 6),
            bad_debt: to_f64(venue.badDebt().call().await?, 6),
            open_shortfall: 0.0,
            oracle_stale: false,
            // The demo's keeper's gas is not modelled (its outcome's `keeper_profit` is None).
            keeper_gas_usd: 0.0,
            pool: {
                let pool = venue.pool().call().await?;
                let usd = to_f64(pool.unsigned_abs(), 6);
                if pool.is_negative() { -usd } else { usd }
            },
        };
        for acct in [a, b] {
            let pf = venue.portfolio(acct).call().await?;
            if pf.accountValue.is_negative() {
                rec.open_shortfall += to_f64(pf.accountValue.unsigned_abs(), 6);
            }
            for p in &pf.positions {
                match p.size.is_negative() {
                    true => rec.short_oi += to_f64(p.notional, 6),
                    false => rec.long_oi += to_f64(p.notional, 6),
                }
            }
            match pf.state as usize {
                _ if pf.positions.is_empty() => rec.closed += 1,
                0 => rec.healthy += 1,
                1 => rec.margin_call += 1,
                2 => rec.liquidatable += 1,
                _ => rec.bankrupt += 1,
            }
        }
        series.push(rec);
    }
    let last = series.last().cloned().context("the path has steps")?;
    if last.margin_calls == 0 || last.liquidations == 0 {
        bail!(
            "expected a margin call and a liquidation on chain, saw {} and {}",
            last.margin_calls,
            last.liquidations
        );
    }

    Ok((series, liquidated_notional))
}

/// The report, from the chain and the relayer: printed, and written as the harness's summary, series and
/// chart.
async fn report(
    s: &Stack,
    args: &DemoArgs,
    started: Instant,
    [a, b]: [Address; 2],
    series: Vec<StepRecord>,
    liquidated_notional: f64,
    insurance_start: U256,
) -> anyhow::Result<()> {
    let venue = PerpVenue::new(s.d.venue, &s.keeper);
    let last = series.last().cloned().context("the path has steps")?;
    let status = s
        .rpc("keyscope_status", json!([]))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let audit = s
        .rpc("keyscope_auditLog", json!([0, 10_000]))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let included = audit
        .as_array()
        .map(|v| v.iter().filter(|e| e["event"] == "included").count())
        .unwrap_or(0);
    let mut accounts = Vec::new();
    let mut open_pnl = 0.0;
    for acct in [a, b] {
        let pf = venue.portfolio(acct).call().await?;
        let value = venue.health(acct).call().await?.accountValue;
        let pnl = value - venue.collateralOf(acct).call().await?;
        open_pnl += to_f64(pnl.unsigned_abs(), 6) * if pnl.is_negative() { -1.0 } else { 1.0 };
        accounts.push(AccountState {
            account: acct,
            collateral: usd_signed(pf.collateral),
            positions: pf
                .positions
                .iter()
                .map(|p| (p.marketId, format_units(p.size.unsigned_abs(), 18)))
                .collect(),
            account_value: value.to_string(),
        });
    }
    let wall = started.elapsed().as_secs_f64();
    let (peak_loss_step, peak_loss) = keyscope_sim::runner::peak_loss(&series);
    let outcome = Outcome {
        scenario: "make demo".into(),
        backend: "anvil + relayer".into(),
        seed: 0,
        steps: series.len() as u32,
        traders: 2,
        margin_calls: last.margin_calls,
        margin_calls_answered: 0,
        liquidations: last.liquidations,
        liquidated_notional,
        bad_debt: last.bad_debt,
        insurance_fund_start: to_f64(insurance_start, 6),
        insurance_fund_end: last.insurance_fund,
        insurance_fund_min: series
            .iter()
            .map(|r| r.insurance_fund)
            .fold(f64::MAX, f64::min),
        adds: 0,
        adds_stopped: 0,
        breaker_trips: 0,
        liquidations_unprofitable: 0,
        // What accounts below zero at the end still owe the pool (the runner's own definition).
        open_shortfall: last.open_shortfall,
        peak_loss,
        peak_loss_step,
        pool_pnl: last.pool - series[0].pool - open_pnl - last.open_shortfall,
        // The demo's keeper is a script, not a modelled bot: its rewards are read, its gas not priced; the
        // two traders' openings are shown in the walk-through, not laddered.
        keeper_rewards: to_f64(
            venue
                .collateralOf(s.devnet.signer(4).address())
                .call()
                .await?
                .unsigned_abs(),
            6,
        ),
        keeper_profit: None,
        // The demo's one trader: nothing to socialise over.
        socialised_loss: 0.0,
        adl_haircut: 0.0,
        adl_uncovered: 0.0,
        margin_call_to_liquidation_secs: None,
        liquidated_unwarned: 0,
        leverage_at_open: Vec::new(),
        liquidation_ladder: Vec::new(),
        ops_executed: included as u64,
        ops_failed: 0,
        gas_used: 0,
        wall_seconds: wall,
        ops_per_second: included as f64 / wall,
        series,
        accounts,
    };
    let files = keyscope_sim::report::write(&outcome, &["BTC".to_string()], &args.out)?;
    let pf = venue.portfolio(a).call().await?;
    say!(s, "\n== report ==");
    say!(
        s,
        "UserOps included through the relayer: {included} (audit log: {} entries, hash-chained)",
        audit.as_array().map_or(0, |v| v.len())
    );
    say!(
        s,
        "relayer lifecycle, received -> mined: {}",
        status["quantilesMs"]["total"]
    );
    say!(
        s,
        "margin calls {}, liquidations {} (${:.0} notional closed); trader A ends with collateral ${} and {} open position(s)",
        outcome.margin_calls,
        outcome.liquidations,
        liquidated_notional,
        usd_signed(pf.collateral),
        pf.positions.len()
    );
    say!(
        s,
        "insurance fund ${:.2} -> ${:.2}, bad debt ${:.2}",
        outcome.insurance_fund_start,
        outcome.insurance_fund_end,
        outcome.bad_debt
    );
    say!(
        s,
        "chart {}, series {}, summary {}",
        files.chart.display(),
        files.series.display(),
        files.summary.display()
    );
    if s.json {
        println!(
            "{}",
            json!({
                "userOpsIncluded": included,
                "auditEntries": audit.as_array().map_or(0, |v| v.len()),
                "marginCalls": outcome.margin_calls,
                "liquidations": outcome.liquidations,
                "liquidatedNotional": liquidated_notional,
                "badDebt": outcome.bad_debt,
                "insuranceFundStart": outcome.insurance_fund_start,
                "insuranceFundEnd": outcome.insurance_fund_end,
                "traderACollateral": usd_signed(pf.collateral),
                "traderAPositions": pf.positions.len(),
                "chart": files.chart,
                "series": files.series,
                "summary": files.summary,
            })
        );
    }
    Ok(())
}

async fn count(s: &Stack, event: &str) -> anyhow::Result<u32> {
    let topic = match event {
        "MarginCall" => PerpVenue::MarginCall::SIGNATURE_HASH,
        _ => PerpVenue::Liquidated::SIGNATURE_HASH,
    };
    let filter = Filter::new()
        .address(s.d.venue)
        .event_signature(topic)
        .from_block(0);
    Ok(s.keeper.get_logs(&filter).await?.len() as u32)
}
