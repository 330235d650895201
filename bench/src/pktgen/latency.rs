//! A latency histogram with bounded memory: log-linear buckets in the manner of HdrHistogram
//! (written here because no crate in the workspace has one; 60 lines do not justify a new
//! dependency).
//!
//! Values below 2^[`SUB_BITS`] (128) have a bucket each. Above, every power of two
//! `[2^e, 2^(e+1))` is cut into 128 equal buckets, so a bucket is never wider than 1/128 of
//! its lowest value. A quantile is reported as the highest value of the bucket holding it
//! (capped at the largest value recorded), so for the exact nearest-rank quantile `x` the
//! reported `r` satisfies `x <= r < x * (1 + 2^-7)`: less than 0.79% high, never low. Values
//! below 128 and `max` are exact.
//!
//! 7424 buckets of `u64` (58 KiB), allocated once in [`Histogram::new`]; recording is an
//! index computation and an add. Histograms of several cores [`Histogram::merge`] into one.

use serde::{Deserialize, Serialize};

/// Sub-bucket bits: 2^7 = 128 buckets per power of two, relative error below 2^-7.
pub const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB as usize;

/// A latency histogram, in nanoseconds (any unit works; the summary says ns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let shift = e - SUB_BITS;
    (((shift + 1) as usize) << SUB_BITS) + ((v >> shift) & (SUB - 1)) as usize
}

/// Highest value that falls in bucket `i`.
fn highest(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let low = (SUB + i % SUB) << shift;
    low + ((1u64 << shift) - 1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `n` occurrences of `v`.
    pub fn record_n(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(c) = self.counts.get_mut(index(v)) {
            *c = c.saturating_add(n);
        }
        self.count = self.count.saturating_add(n);
        self.sum = self.sum.saturating_add(u128::from(v) * u128::from(n));
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds `other`'s values (another core's) into this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest value recorded (exact); `None` when empty.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value recorded (exact); `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// Mean of the values recorded (exact); `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The nearest-rank `q`-quantile (`q` in 0..=1; the value of rank `ceil(q * count)`),
    /// within the bound in the module doc; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                return Some(highest(i).min(self.max).max(self.min));
            }
        }
        Some(self.max)
    }

    /// The non-empty buckets in ascending order, each with its highest value (capped at the
    /// largest value recorded): the distribution, for charts.
    pub fn buckets(&self) -> Vec<Bucket> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &count)| Bucket {
                le_ns: highest(i).min(self.max),
                count,
            })
            .collect()
    }

    /// Count, min, p50, p99, p99.9, max, mean and the buckets.
    pub fn summary(&self) -> LatencySummary {
        let q = |q| self.quantile(q).unwrap_or(0);
        LatencySummary {
            count: self.count,
            min_ns: self.min().unwrap_or(0),
            p50_ns: q(0.5),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: self.max().unwrap_or(0),
            mean_ns: self.mean().unwrap_or(0.0),
            histogram: self.buckets(),
        }
    }
}

/// One bucket of a [`Histogram`]: `count` values at most `le_ns`, above the previous bucket's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Highest value in the bucket, ns.
    pub le_ns: u64,
    /// Values in it.
    pub count: u64,
}

/// Latency percentiles of a run (all 0 when nothing was measured); the charts read it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Frames measured.
    pub count: u64,
    /// Smallest, ns.
    pub min_ns: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Largest, ns.
    pub max_ns: u64,
    /// Mean, ns.
    pub mean_ns: f64,
    /// The non-empty buckets ([`Histogram::buckets`]).
    pub histogram: Vec<Bucket>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn within_bound(x: u64, r: u64) -> bool {
        r >= x && (r - x) as f64 <= x as f64 / SUB as f64
    }

    #[test]
    fn buckets_tile_the_u64_range() {
        let mut prev = None;
        for i in 0..BUCKETS {
            let hi = highest(i);
            assert_eq!(index(hi), i);
            if let Some(p) = prev {
                assert_eq!(index(p + 1), i, "gap before bucket {i}");
            }
            prev = Some(hi);
        }
        assert_eq!(prev, Some(u64::MAX));
        assert_eq!(index(0), 0);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!(h.quantile(0.999), Some(100));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(100));
        assert_eq!(h.mean(), Some(50.5));
    }

    #[test]
    fn known_distribution_within_the_bound() {
        // 1..=100_000 ns: exact p50 = 50_000, p99 = 99_000, p99.9 = 99_900.
        let mut h = Histogram::new();
        for v in 1..=100_000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 100_000);
        for (x, r) in [(50_000, s.p50_ns), (99_000, s.p99_ns), (99_900, s.p999_ns)] {
            assert!(within_bound(x, r), "{x} reported as {r}");
        }
        assert_eq!(s.max_ns, 100_000);
        assert_eq!(s.min_ns, 1);
    }

    #[test]
    fn a_long_tail_is_seen() {
        let mut h = Histogram::new();
        h.record_n(1_000, 9_990);
        h.record_n(1_000_000, 10);
        assert!(within_bound(1_000, h.quantile(0.99).unwrap()));
        assert!(within_bound(1_000, h.quantile(0.999).unwrap()));
        assert!(within_bound(1_000_000, h.quantile(0.9991).unwrap()));
        assert_eq!(h.max(), Some(1_000_000));
        let b = h.buckets();
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(
            within_bound(1_000, b[0].le_ns) && b[0].count == 9_990,
            "{b:?}"
        );
        assert_eq!(
            b[1],
            Bucket {
                le_ns: 1_000_000,
                count: 10
            }
        );
    }

    #[test]
    fn empty_and_extremes() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary().p99_ns, 0);
        let mut h = Histogram::new();
        h.record(u64::MAX);
        h.record(0);
        assert_eq!(h.quantile(1.0), Some(u64::MAX));
        assert_eq!(h.quantile(f64::NAN), Some(u64::MAX));
        assert_eq!(h.quantile(-3.0), Some(0));
        h.record_n(5, 0);
        assert_eq!(h.count(), 2);
    }

    proptest! {
        #[test]
        fn quantiles_within_the_bound(
            mut v in proptest::collection::vec(0u64..10_000_000_000, 1..2000),
            q in 0.0f64..=1.0,
        ) {
            let mut h = Histogram::new();
            for &x in &v {
                h.record(x);
            }
            v.sort_unstable();
            for q in [q, 0.5, 0.99, 0.999, 1.0] {
                let (x, r) = (exact(&v, q), h.quantile(q).unwrap());
                prop_assert!(within_bound(x, r), "q={} exact={} reported={}", q, x, r);
            }
        }

        #[test]
        fn merging_equals_recording_everything(
            a in proptest::collection::vec(any::<u64>(), 0..300),
            b in proptest::collection::vec(any::<u64>(), 0..300),
        ) {
            let (mut ha, mut hb, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
            for &x in &a { ha.record(x); all.record(x); }
            for &x in &b { hb.record(x); all.record(x); }
            ha.merge(&hb);
            prop_assert_eq!(ha, all);
        }
    }
}
