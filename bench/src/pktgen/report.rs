//! Counters per flow class and the summary of a run, as JSON (serde) and as a table
//! ([`fmt::Display`]).
//!
//! "Lost" is `sent - received` for either class. For allowed flows it is the device's loss;
//! for denied flows a working firewall loses everything, and `received` counts leaks.

use std::fmt;

use serde::Serialize;

use super::flows::{Class, FlowSpec};
use super::latency::{Histogram, LatencySummary};
use super::ndr::NdrResult;
use super::sizes::SizeSpec;

/// Frames sent and received for one class (one core's, or merged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Frames transmitted.
    pub sent: u64,
    /// Frames received back with a stamp of this class.
    pub received: u64,
}

impl Counters {
    /// `sent - received` (0 when duplicates make `received` larger).
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// `lost / sent`; 0 when nothing was sent.
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost() as f64 / self.sent as f64
        }
    }

    /// Adds `other`.
    pub fn merge(&mut self, other: &Counters) {
        self.sent = self.sent.saturating_add(other.sent);
        self.received = self.received.saturating_add(other.received);
    }
}

/// Counters of both classes, indexed by [`Class::index`]: one per core, merged at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounters(pub [Counters; 2]);

impl ClassCounters {
    /// `n` frames of `class` sent.
    pub fn sent(&mut self, class: Class, n: u64) {
        let c = &mut self.0[class.index()];
        c.sent = c.sent.saturating_add(n);
    }

    /// `n` frames of `class` received.
    pub fn received(&mut self, class: Class, n: u64) {
        let c = &mut self.0[class.index()];
        c.received = c.received.saturating_add(n);
    }

    /// One class.
    pub fn get(&self, class: Class) -> Counters {
        self.0[class.index()]
    }

    /// Both classes together.
    pub fn total(&self) -> Counters {
        let mut t = self.0[0];
        t.merge(&self.0[1]);
        t
    }

    /// Adds another core's counters.
    pub fn merge(&mut self, other: &ClassCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            a.merge(b);
        }
    }
}

/// One class in the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassReport {
    /// Frames transmitted.
    pub sent: u64,
    /// Frames received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// `lost / sent`.
    pub loss_ratio: f64,
}

impl From<Counters> for ClassReport {
    fn from(c: Counters) -> Self {
        ClassReport {
            sent: c.sent,
            received: c.received,
            lost: c.lost(),
            loss_ratio: c.loss_ratio(),
        }
    }
}

/// The summary of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The flow spec, compact form.
    pub flows: String,
    /// `64`, `imix`...
    pub size: String,
    /// The offered rate: `max` or `<n>pps`.
    pub rate: String,
    /// Seconds measured.
    pub duration_s: f64,
    /// Allowed flows.
    pub allowed: ClassReport,
    /// Denied flows.
    pub denied: ClassReport,
    /// Both.
    pub total: ClassReport,
    /// Frames sent per second.
    pub tx_pps: f64,
    /// Frames received per second.
    pub rx_pps: f64,
    /// `tx_pps / 1e6`.
    pub tx_mpps: f64,
    /// `rx_pps / 1e6`.
    pub rx_mpps: f64,
    /// Latency of the stamped frames received, when measured.
    pub latency: Option<LatencySummary>,
    /// The zero-loss search, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ndr: Option<NdrResult>,
}

impl RunSummary {
    /// A summary of `counters` over `duration_s` seconds (rates 0 for a zero duration).
    pub fn new(
        flows: &FlowSpec,
        size: SizeSpec,
        rate: super::pacer::Rate,
        duration_s: f64,
        counters: &ClassCounters,
        latency: Option<&Histogram>,
    ) -> Self {
        let total = counters.total();
        let per_s = |n: u64| {
            if duration_s > 0.0 {
                n as f64 / duration_s
            } else {
                0.0
            }
        };
        let (tx_pps, rx_pps) = (per_s(total.sent), per_s(total.received));
        RunSummary {
            flows: flows.to_string(),
            size: size.to_string(),
            rate: rate.to_string(),
            duration_s,
            allowed: counters.get(Class::Allowed).into(),
            denied: counters.get(Class::Denied).into(),
            total: total.into(),
            tx_pps,
            rx_pps,
            tx_mpps: tx_pps / 1e6,
            rx_mpps: rx_pps / 1e6,
            latency: latency.map(Histogram::summary),
            ndr: None,
        }
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "flows    {}", self.flows)?;
        writeln!(
            f,
            "size {}  rate {}  {:.1} s  tx {:.3} Mpps  rx {:.3} Mpps",
            self.size, self.rate, self.duration_s, self.tx_mpps, self.rx_mpps
        )?;
        writeln!(
            f,
            "{:<8} {:>14} {:>14} {:>14} {:>10}",
            "class", "sent", "received", "lost", "loss %"
        )?;
        for (name, c) in [
            ("allowed", &self.allowed),
            ("denied", &self.denied),
            ("total", &self.total),
        ] {
            writeln!(
                f,
                "{:<8} {:>14} {:>14} {:>14} {:>10.4}",
                name,
                c.sent,
                c.received,
                c.lost,
                c.loss_ratio * 100.0
            )?;
        }
        if let Some(l) = &self.latency {
            writeln!(
                f,
                "latency  n={}  p50 {:.2} us  p99 {:.2} us  p99.9 {:.2} us  max {:.2} us",
                l.count,
                us(l.p50_ns),
                us(l.p99_ns),
                us(l.p999_ns),
                us(l.max_ns)
            )?;
        }
        if let Some(n) = &self.ndr {
            match n.rate_pps {
                Some(r) => write!(f, "zero-loss rate {:.3} Mpps", r / 1e6)?,
                None => write!(f, "zero-loss rate: none (lost frames even at the minimum)")?,
            }
            writeln!(
                f,
                " after {} trials ({} inconsistent)",
                n.trials.len(),
                n.inconsistent
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::ndr::Trial;
    use crate::pktgen::pacer::Rate;

    fn sample() -> RunSummary {
        let mut c = ClassCounters::default();
        c.sent(Class::Allowed, 8_000_000);
        c.received(Class::Allowed, 7_999_000);
        c.sent(Class::Denied, 2_000_000);
        let mut other_core = ClassCounters::default();
        other_core.received(Class::Denied, 2);
        c.merge(&other_core);
        let mut h = Histogram::new();
        for v in 1_000..2_000 {
            h.record(v);
        }
        let spec: FlowSpec = "count=1000,allowed=80%".parse().unwrap();
        RunSummary::new(&spec, SizeSpec::Imix, Rate::Max, 2.0, &c, Some(&h))
    }

    #[test]
    fn counters_and_rates() {
        let s = sample();
        assert_eq!(s.allowed.lost, 1_000);
        assert!((s.allowed.loss_ratio - 0.000125).abs() < 1e-12);
        assert_eq!(s.denied.received, 2, "leaks");
        assert_eq!(s.total.sent, 10_000_000);
        assert_eq!(s.tx_pps, 5e6);
        assert_eq!(s.tx_mpps, 5.0);
        let empty = Counters::default();
        assert_eq!(empty.loss_ratio(), 0.0);
        let dup = Counters {
            sent: 1,
            received: 3,
        };
        assert_eq!(dup.lost(), 0);
    }

    #[test]
    fn json_shape() {
        let mut s = sample();
        let v = serde_json::to_value(&s).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "allowed",
                "denied",
                "duration_s",
                "flows",
                "latency",
                "rate",
                "rx_mpps",
                "rx_pps",
                "size",
                "total",
                "tx_mpps",
                "tx_pps"
            ]
        );
        assert_eq!(
            v["allowed"],
            serde_json::json!({"sent": 8_000_000, "received": 7_999_000, "lost": 1_000, "loss_ratio": 0.000125})
        );
        assert_eq!(v["size"], "imix");
        assert_eq!(v["rate"], "max");
        let lat = v["latency"].as_object().unwrap();
        for k in [
            "count", "min_ns", "p50_ns", "p99_ns", "p999_ns", "max_ns", "mean_ns",
        ] {
            assert!(lat.contains_key(k), "{k}");
        }
        s.ndr = Some(NdrResult {
            rate_pps: Some(1e6),
            trials: vec![Trial {
                rate_pps: 1e6,
                sent: 10,
                received: 10,
                passed: true,
            }],
            inconsistent: 0,
        });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["ndr"]["rate_pps"], 1e6);
        assert_eq!(v["ndr"]["trials"][0]["passed"], true);
    }

    #[test]
    fn table() {
        let t = sample().to_string();
        assert!(t.contains("tx 5.000 Mpps"), "{t}");
        assert!(t.contains("allowed"), "{t}");
        assert!(t.contains("p99.9"), "{t}");
        let allowed = t.lines().find(|l| l.starts_with("allowed")).unwrap();
        assert_eq!(
            allowed.split_whitespace().collect::<Vec<_>>(),
            ["allowed", "8000000", "7999000", "1000", "0.0125"]
        );
    }
}
