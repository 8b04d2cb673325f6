//! Prometheus metrics: counters, gauges, and each op's lifecycle (received → validated → bundled → sent →
//! mined) as a histogram per stage (and p50/p99 over the most recent ops, for `keyscope_status`), in the
//! text exposition format.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Mutex,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::records::OpEvent;

/// The lifecycle stages timed.
pub(crate) const STAGES: [&str; 5] = ["validate", "wait_bundle", "send", "mine", "total"];
const WINDOW: usize = 4096;
/// The histogram's bucket bounds, in microseconds (rendered in seconds): 1 ms to 2 minutes.
const BUCKETS_US: [u64; 14] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    30_000_000,
    120_000_000,
];

/// One stage's histogram: observations per bucket (not cumulative; `+Inf` last), their sum and count.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS_US.len() + 1],
    sum_us: u64,
    count: u64,
}

/// The relayer's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    pub included: AtomicU64,
    pub dropped: AtomicU64,
    pub bundles_sent: AtomicU64,
    pub fee_bumps: AtomicU64,
    /// Fee bumps not sent because the replacement would pay more a gas than its ops repay.
    pub bumps_withheld: AtomicU64,
    pub bundles_mined: AtomicU64,
    pub reorged_ops: AtomicU64,
    /// Bundles not sent because their ops would not repay them.
    pub bundles_held: AtomicU64,
    /// Ops dropped after waiting `profit_wait_ms` for company that would make their bundle pay.
    pub unpaid_dropped: AtomicU64,
    /// What mined bundles cost the relayer and what their ops repaid it, in gwei.
    pub bundle_cost_gwei: AtomicU64,
    pub bundle_repaid_gwei: AtomicU64,
    pub pool_size: AtomicU64,
    /// Ops in bundles sent and not yet mined.
    pub submitted_ops: AtomicU64,
    /// The bundle key's balance, in gwei, as last read.
    pub bundle_key_balance_gwei: AtomicU64,
    /// Pending-state rebuilds (the pool replayed on every new head).
    pub rebuilds: AtomicU64,
    /// Several instances on one store: shards taken over, lost to another instance, given up to
    /// rebalance; ops forwarded to their shard's owner and resumed from a taken-over shard; writes refused
    /// by a lease's fence; the bundle key's lease lost.
    pub shards_taken: AtomicU64,
    pub shards_lost: AtomicU64,
    pub shards_released: AtomicU64,
    pub ops_forwarded: AtomicU64,
    pub ops_adopted: AtomicU64,
    pub writes_fenced: AtomicU64,
    pub key_leases_lost: AtomicU64,
    /// The shards held (shard → lease epoch) and the bundle key's lease epoch (0: none), as of the last
    /// renewal.
    pub leases: Mutex<(BTreeMap<u16, u64>, u64)>,
    rejected: Mutex<BTreeMap<i32, u64>>,
    /// Op events written to the store (and so to the audit log), by [`OpEvent::index`].
    op_events: [AtomicU64; OpEvent::ALL.len()],
    /// Per API key (its id, hex): (requests served, requests refused by the channel, bans).
    api_keys: Mutex<BTreeMap<String, [u64; 3]>>,
    stages: Mutex<BTreeMap<&'static str, VecDeque<u64>>>,
    histograms: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the events of audit entries just written.
    pub fn op_events(&self, events: impl IntoIterator<Item = OpEvent>) {
        for e in events {
            Self::inc(&self.op_events[e.index()]);
        }
    }

    /// How many `event`s were written so far.
    pub fn op_event_count(&self, event: OpEvent) -> u64 {
        self.op_events[event.index()].load(Ordering::Relaxed)
    }

    pub fn rejected(&self, code: i32) {
        *self
            .rejected
            .lock()
            .expect("metrics lock")
            .entry(code)
            .or_default() += 1;
    }

    /// Counts one request of API key `key`: `refused` by the channel (authentication, permission, quota,
    /// ban), or served; `banned`: it started a ban.
    pub fn api_key(&self, key: &str, refused: bool, banned: bool) {
        let mut keys = self.api_keys.lock().expect("metrics lock");
        let c = keys.entry(key.to_string()).or_default();
        c[usize::from(refused)] += 1;
        c[2] += u64::from(banned);
    }

    /// Records that an op spent `micros` in `stage`.
    pub fn observe(&self, stage: &'static str, micros: u64) {
        let mut stages = self.stages.lock().expect("metrics lock");
        let window = stages.entry(stage).or_default();
        if window.len() == WINDOW {
            window.pop_front();
        }
        window.push_back(micros);
        drop(stages);
        let mut histograms = self.histograms.lock().expect("metrics lock");
        let h = histograms.entry(stage).or_default();
        let bucket = BUCKETS_US
            .iter()
            .position(|b| micros <= *b)
            .unwrap_or(BUCKETS_US.len());
        h.buckets[bucket] += 1;
        h.sum_us = h.sum_us.saturating_add(micros);
        h.count += 1;
    }

    /// Records the stages of an op that was just mined.
    pub fn observe_lifecycle(&self, r: &crate::records::OpRecord) {
        let t = r.timings;
        let span = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
        for (stage, v) in [
            ("wait_bundle", span(t.validated_us, t.bundled_us)),
            ("send", span(t.bundled_us, t.sent_us)),
            ("mine", span(t.sent_us, t.mined_us)),
            ("total", span(Some(t.received_us), t.mined_us)),
        ] {
            if let Some(v) = v {
                self.observe(stage, v);
            }
        }
    }

    /// (p50, p99) of `stage` in microseconds over the recent window.
    pub fn quantiles(&self, stage: &str) -> Option<(u64, u64)> {
        let stages = self.stages.lock().expect("metrics lock");
        let mut v: Vec<u64> = stages.get(stage)?.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let counters = [
            (
                "keyscope_ops_received_total",
                "UserOperations received",
                &self.received,
            ),
            (
                "keyscope_ops_accepted_total",
                "UserOperations accepted into the pool",
                &self.accepted,
            ),
            (
                "keyscope_ops_included_total",
                "UserOperations mined",
                &self.included,
            ),
            (
                "keyscope_ops_dropped_total",
                "UserOperations that left the pool unmined",
                &self.dropped,
            ),
            (
                "keyscope_ops_reorged_total",
                "Mined UserOperations returned to the pool by a reorg",
                &self.reorged_ops,
            ),
            (
                "keyscope_bundles_sent_total",
                "handleOps transactions sent",
                &self.bundles_sent,
            ),
            (
                "keyscope_bundle_fee_bumps_total",
                "Stuck handleOps transactions replaced at the same nonce with higher fees",
                &self.fee_bumps,
            ),
            (
                "keyscope_bundle_bumps_withheld_total",
                "Fee bumps not sent: the replacement would pay more a gas than its ops repay",
                &self.bumps_withheld,
            ),
            (
                "keyscope_bundles_held_total",
                "Bundles not sent because their ops would not repay their gas (bundler.min_profit_percent)",
                &self.bundles_held,
            ),
            (
                "keyscope_ops_unpaid_dropped_total",
                "UserOperations dropped after bundler.profit_wait_ms without a bundle that repays its gas",
                &self.unpaid_dropped,
            ),
            (
                "keyscope_bundle_cost_gwei_total",
                "Gas cost of mined bundles (gas used x effective gas price), in gwei",
                &self.bundle_cost_gwei,
            ),
            (
                "keyscope_bundle_repaid_gwei_total",
                "What the ops of mined bundles paid the beneficiary (actualGasCost), in gwei",
                &self.bundle_repaid_gwei,
            ),
            (
                "keyscope_bundles_mined_total",
                "handleOps transactions mined",
                &self.bundles_mined,
            ),
            (
                "keyscope_pending_rebuilds_total",
                "Times the pending state was rebuilt by replaying the pool",
                &self.rebuilds,
            ),
            (
                "keyscope_shards_taken_total",
                "Sender shards this instance took (free, released, or expired: a takeover)",
                &self.shards_taken,
            ),
            (
                "keyscope_shards_lost_total",
                "Sender shards another instance took over from this one (its lease lapsed)",
                &self.shards_lost,
            ),
            (
                "keyscope_shards_released_total",
                "Sender shards this instance gave up to even out the instances",
                &self.shards_released,
            ),
            (
                "keyscope_ops_forwarded_total",
                "UserOperations forwarded to the instance holding their sender's shard",
                &self.ops_forwarded,
            ),
            (
                "keyscope_ops_adopted_total",
                "Unfinished UserOperations resumed from a shard taken over",
                &self.ops_adopted,
            ),
            (
                "keyscope_store_writes_fenced_total",
                "Store writes refused because a lease they depend on was taken over",
                &self.writes_fenced,
            ),
            (
                "keyscope_bundle_key_leases_lost_total",
                "Times the bundle key's lease was found taken over",
                &self.key_leases_lost,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP keyscope_pool_ops UserOperations waiting in the pool\n# TYPE keyscope_pool_ops gauge\nkeyscope_pool_ops {}",
            self.pool_size.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP keyscope_submitted_ops UserOperations in bundles sent and not yet mined\n# TYPE keyscope_submitted_ops gauge\nkeyscope_submitted_ops {}",
            self.submitted_ops.load(Ordering::Relaxed)
        );
        {
            let leases = self.leases.lock().expect("metrics lock");
            let _ = writeln!(
                out,
                "# HELP keyscope_shards_held Sender shards this instance holds\n# TYPE keyscope_shards_held gauge\nkeyscope_shards_held {}",
                leases.0.len()
            );
            let _ = writeln!(
                out,
                "# HELP keyscope_shard_lease_epoch Epoch of each shard lease held\n# TYPE keyscope_shard_lease_epoch gauge"
            );
            for (shard, epoch) in &leases.0 {
                let _ = writeln!(
                    out,
                    "keyscope_shard_lease_epoch{{shard=\"{shard}\"}} {epoch}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP keyscope_bundle_key_lease_epoch Epoch of the bundle key's lease (0: not held)\n# TYPE keyscope_bundle_key_lease_epoch gauge\nkeyscope_bundle_key_lease_epoch {}",
                leases.1
            );
        }
        let _ = writeln!(
            out,
            "# HELP keyscope_op_events_total Op events written to the audit log, by event\n# TYPE keyscope_op_events_total counter"
        );
        for event in OpEvent::ALL {
            let _ = writeln!(
                out,
                "keyscope_op_events_total{{event=\"{event}\"}} {}",
                self.op_events[event.index()].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP keyscope_ops_rejected_total UserOperations refused, by ERC-7769 code\n# TYPE keyscope_ops_rejected_total counter"
        );
        for (code, n) in self.rejected.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "keyscope_ops_rejected_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP keyscope_bundle_key_balance_gwei The bundle key's balance, in gwei, as last read\n# TYPE keyscope_bundle_key_balance_gwei gauge\nkeyscope_bundle_key_balance_gwei {}",
            self.bundle_key_balance_gwei.load(Ordering::Relaxed)
        );
        let keys = self.api_keys.lock().expect("metrics lock");
        for (i, (name, help)) in [
            ("served", "Requests served, per API key"),
            (
                "refused",
                "Requests refused by the channel (signature, permission, quota, ban), per API key",
            ),
            ("bans", "Bans started, per API key"),
        ]
        .into_iter()
        .enumerate()
        {
            let _ = writeln!(
                out,
                "# HELP keyscope_api_key_{name}_total {help}\n# TYPE keyscope_api_key_{name}_total counter"
            );
            for (key, c) in keys.iter() {
                let _ = writeln!(
                    out,
                    "keyscope_api_key_{name}_total{{key=\"{key}\"}} {}",
                    c[i]
                );
            }
        }
        drop(keys);
        self.render_stages(&mut out);
        out
    }

    /// `keyscope_op_stage_seconds`: one histogram per stage, its buckets cumulative as Prometheus reads
    /// them.
    fn render_stages(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP keyscope_op_stage_seconds Time ops spend in each lifecycle stage\n# TYPE keyscope_op_stage_seconds histogram"
        );
        let histograms = self.histograms.lock().expect("metrics lock");
        for stage in STAGES {
            let Some(h) = histograms.get(stage) else {
                continue;
            };
            let mut seen = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                seen += n;
                let le = match BUCKETS_US.get(i) {
                    Some(us) => format!("{}", *us as f64 / 1e6),
                    None => "+Inf".to_string(),
                };
                let _ = writeln!(
                    out,
                    "keyscope_op_stage_seconds_bucket{{stage=\"{stage}\",le=\"{le}\"}} {seen}"
                );
            }
            let _ = writeln!(
                out,
                "keyscope_op_stage_seconds_sum{{stage=\"{stage}\"}} {:.6}\nkeyscope_op_stage_seconds_count{{stage=\"{stage}\"}} {}",
                h.sum_us as f64 / 1e6,
                h.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_text_format() {
        let m = Metrics::default();
        for us in 1..=100 {
            m.observe("validate", us);
        }
        assert_eq!(m.quantiles("validate"), Some((51, 99)));
        Metrics::inc(&m.accepted);
        m.rejected(-32507);
        let text = m.render();
        assert!(text.contains("keyscope_ops_accepted_total 1"));
        assert!(text.contains("keyscope_ops_rejected_total{code=\"-32507\"} 1"));
        // 100 observations of 1..=100 µs: all in the first bucket (1 ms), summing to 5,050 µs.
        for line in [
            "# TYPE keyscope_op_stage_seconds histogram",
            "keyscope_op_stage_seconds_bucket{stage=\"validate\",le=\"0.001\"} 100",
            "keyscope_op_stage_seconds_bucket{stage=\"validate\",le=\"120\"} 100",
            "keyscope_op_stage_seconds_bucket{stage=\"validate\",le=\"+Inf\"} 100",
            "keyscope_op_stage_seconds_sum{stage=\"validate\"} 0.005050",
            "keyscope_op_stage_seconds_count{stage=\"validate\"} 100",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(
            !text.contains("stage=\"mine\""),
            "no line for a stage never seen"
        );
        assert_eq!(m.quantiles("mine"), None);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_the_slowest_land_in_inf() {
        let m = Metrics::default();
        for us in [500, 3_000, 3_000, 200_000_000] {
            m.observe("mine", us);
        }
        let text = m.render();
        for line in [
            "keyscope_op_stage_seconds_bucket{stage=\"mine\",le=\"0.001\"} 1",
            "keyscope_op_stage_seconds_bucket{stage=\"mine\",le=\"0.0025\"} 1",
            "keyscope_op_stage_seconds_bucket{stage=\"mine\",le=\"0.005\"} 3",
            "keyscope_op_stage_seconds_bucket{stage=\"mine\",le=\"120\"} 3",
            "keyscope_op_stage_seconds_bucket{stage=\"mine\",le=\"+Inf\"} 4",
            "keyscope_op_stage_seconds_count{stage=\"mine\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
