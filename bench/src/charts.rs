//! SVG charts of a benchmark report (`target/bench/report.json`): rule scaling and latency
//! distribution, for `docs/benchmarks/`.
//!
//! The report's scenarios are read as JSON values, not through [`crate::ScenarioReport`]: the
//! chart inputs are scenario-specific extra fields, and a report written by an older or newer
//! harness should give an error naming what is missing rather than fail to parse as a whole.
//!
//! # Inputs
//!
//! - Rule scaling: the scenario named [`RULE_SCALING`], field `sizes`: an array of
//!   [`RulePoint`].
//! - Latency: the scenario named [`LATENCY_SCENARIO`] if it carries both `reference_latency`
//!   and `palisade_latency` ([`LatencyDist`]), else the first scenario that does.
//!
//! Nothing here panics on a malformed report: every gap is a [`ChartError`] naming the scenario
//! and field.

use std::path::{Path, PathBuf};

use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::pktgen::latency::LatencySummary;

/// Name of the rule-scaling scenario.
pub const RULE_SCALING: &str = "rule-scaling";
/// Scenario whose latency is charted when several carry it.
pub const LATENCY_SCENARIO: &str = "forward";
/// File name of the rule-scaling chart.
pub const RULE_SCALING_SVG: &str = "rule-scaling.svg";
/// File name of the latency chart.
pub const LATENCY_SVG: &str = "latency.svg";

const SIZE: (u32, u32) = (900, 720);
const PALISADE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const REFERENCE: RGBColor = RGBColor(0x7f, 0x7f, 0x7f);
const NEW_FLOWS: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Why a chart was not drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The report could not be read.
    #[error("read the report {}", path.display())]
    Read {
        /// The report.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The report is not JSON.
    #[error("the report {} is not JSON", path.display())]
    Json {
        /// The report.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Data a chart needs is not in the report.
    #[error("{0}")]
    Missing(String),
    /// A field is there but does not have the expected shape.
    #[error("{what} is malformed")]
    Field {
        /// Scenario and field.
        what: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A field has the right shape but a value a chart cannot use.
    #[error("{what}: {reason}")]
    Invalid {
        /// Scenario and field.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The output directory could not be created.
    #[error("create {}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Drawing or writing the SVG failed.
    #[error("draw {}: {message}", path.display())]
    Draw {
        /// The SVG file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

/// One policy size of the rule-scaling scenario.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct RulePoint {
    /// Rules in the policy.
    pub rules: u64,
    /// Forwarding rate of established flows, Mpps.
    pub established_mpps: f64,
    /// New flows set up per second.
    pub new_flows_per_s: f64,
    /// testpmd io on the same path, Mpps (the same for every size).
    pub reference_mpps: f64,
}

/// A latency distribution as the report carries it: the generator's summary
/// ([`LatencySummary`], with its buckets) and the rate it was measured at.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LatencyDist {
    /// Offered rate it was measured at, packets per second.
    pub rate_pps: f64,
    /// Percentiles and buckets, as `palisade-pktgen` wrote them.
    #[serde(flatten)]
    pub summary: LatencySummary,
}

impl LatencyDist {
    /// The complementary CDF at each bucket bound: (`le_ns`, share of samples above it),
    /// starting at (`min_ns`, 1). Points where nothing is left above are dropped (a log axis
    /// has no 0); empty buckets add no point.
    pub fn ccdf(&self) -> Vec<(f64, f64)> {
        let total: u64 = self.summary.histogram.iter().map(|b| b.count).sum();
        if total == 0 {
            return Vec::new();
        }
        let mut out = vec![(ns_x(self.summary.min_ns), 1.0)];
        let mut below = 0u64;
        for b in self.summary.histogram.iter().filter(|b| b.count > 0) {
            below += b.count;
            let above = total - below;
            if above == 0 {
                break;
            }
            out.push((ns_x(b.le_ns), above as f64 / total as f64));
        }
        out
    }

    /// Samples in the histogram.
    pub fn total(&self) -> u64 {
        self.summary.histogram.iter().map(|b| b.count).sum()
    }
}

/// Nanoseconds as a log-axis coordinate (at least 1).
fn ns_x(ns: u64) -> f64 {
    (ns as f64).max(1.0)
}

/// Reads and parses the report.
pub fn read_report(path: &Path) -> Result<Value, ChartError> {
    let text = std::fs::read_to_string(path).map_err(|source| ChartError::Read {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ChartError::Json {
        path: path.into(),
        source,
    })
}

fn scenarios(report: &Value) -> Result<&Vec<Value>, ChartError> {
    report
        .get("scenarios")
        .and_then(Value::as_array)
        .ok_or_else(|| ChartError::Missing("the report has no `scenarios` array".into()))
}

fn field<T: for<'de> Deserialize<'de>>(
    scenario: &Value,
    name: &str,
    key: &str,
) -> Result<Option<T>, ChartError> {
    match scenario.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|source| ChartError::Field {
                what: format!("scenario `{name}`: `{key}`"),
                source,
            }),
    }
}

/// The rule-scaling points, sorted by rule count.
pub fn rule_scaling(report: &Value) -> Result<Vec<RulePoint>, ChartError> {
    let scenario = scenarios(report)?
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(RULE_SCALING))
        .ok_or_else(|| {
            ChartError::Missing(format!(
                "no scenario named `{RULE_SCALING}` in the report (run the rule-scaling scenario)"
            ))
        })?;
    let mut points: Vec<RulePoint> = field(scenario, RULE_SCALING, "sizes")?.ok_or_else(|| {
        ChartError::Missing(format!("scenario `{RULE_SCALING}` has no `sizes` field"))
    })?;
    let what = format!("scenario `{RULE_SCALING}`: `sizes`");
    if points.is_empty() {
        return Err(ChartError::Invalid {
            what,
            reason: "empty".into(),
        });
    }
    for p in &points {
        if p.rules == 0 {
            return Err(ChartError::Invalid {
                what,
                reason: "a size with 0 rules cannot go on a log axis".into(),
            });
        }
        let values = [p.established_mpps, p.new_flows_per_s, p.reference_mpps];
        if values.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(ChartError::Invalid {
                what,
                reason: format!(
                    "the size with {} rules has a negative or non-finite rate",
                    p.rules
                ),
            });
        }
    }
    points.sort_by_key(|p| p.rules);
    Ok(points)
}

/// The scenario whose latency is charted, with the reference's and Palisade's distributions:
/// [`LATENCY_SCENARIO`] if it has both, else the first scenario that has both.
pub fn latency(report: &Value) -> Result<(String, LatencyDist, LatencyDist), ChartError> {
    let all = scenarios(report)?;
    let has_both =
        |s: &&Value| s.get("reference_latency").is_some() && s.get("palisade_latency").is_some();
    let scenario = all
        .iter()
        .filter(has_both)
        .find(|s| s.get("name").and_then(Value::as_str) == Some(LATENCY_SCENARIO))
        .or_else(|| all.iter().find(has_both))
        .ok_or_else(|| {
            ChartError::Missing(format!(
                "no scenario carries both `reference_latency` and `palisade_latency` (looked for \
                 `{LATENCY_SCENARIO}` first, then any of {} scenarios)",
                all.len()
            ))
        })?;
    let name = scenario
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string();
    let get = |key: &str| -> Result<LatencyDist, ChartError> {
        let d: LatencyDist = field(scenario, &name, key)?.ok_or_else(|| {
            ChartError::Missing(format!("scenario `{name}` has no `{key}` field"))
        })?;
        if d.total() == 0 {
            return Err(ChartError::Invalid {
                what: format!("scenario `{name}`: `{key}.histogram`"),
                reason: "no samples".into(),
            });
        }
        let mut d = d;
        // The contract says sorted; sorting costs nothing and keeps the CCDF monotone anyway.
        d.summary.histogram.sort_by_key(|b| b.le_ns);
        Ok(d)
    };
    Ok((
        name.clone(),
        get("reference_latency")?,
        get("palisade_latency")?,
    ))
}

/// Maps the SVG backend's errors (an `io::Error` inside) to [`ChartError::Draw`].
fn draw_err(path: &Path) -> impl Fn(DrawingAreaErrorKind<std::io::Error>) -> ChartError + '_ {
    move |e| ChartError::Draw {
        path: path.into(),
        message: e.to_string(),
    }
}

/// A legend entry's sample: a short line in the series' colour.
fn swatch(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

/// The legend of every labelled series of `chart`, boxed, at `position`.
fn draw_legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// `10`, `1k`, `10k`, `100k`, `1M`.
fn short_count(x: f64) -> String {
    let (v, unit) = if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

/// `850 ns`, `12.3 µs`, `4.1 ms`.
fn short_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `100%`, `1%`, `0.1%`, `0.01%`.
fn short_share(y: f64) -> String {
    let p = y * 100.0;
    if p >= 1.0 || p <= 0.0 {
        format!("{p:.0}%")
    } else {
        let digits = (-p.log10()).ceil().clamp(0.0, 12.0) as usize;
        format!("{p:.digits$}%")
    }
}

/// Whether every point has the same reference rate (then it is one horizontal line).
fn constant_reference(points: &[RulePoint]) -> Option<f64> {
    let first = points.first()?.reference_mpps;
    points
        .iter()
        .all(|p| (p.reference_mpps - first).abs() <= 1e-9 * first.abs().max(1.0))
        .then_some(first)
}

/// Draws the rule-scaling chart into `path`: established Mpps against rules (log x) with the
/// reference, and new flows per second in a second panel.
pub fn render_rule_scaling(points: &[RulePoint], path: &Path) -> Result<(), ChartError> {
    let err = draw_err(path);
    let first = points.first().ok_or_else(|| ChartError::Invalid {
        what: format!("scenario `{RULE_SCALING}`: `sizes`"),
        reason: "empty".into(),
    })?;
    let last = points.last().unwrap_or(first);
    let (x0, x1) = (first.rules as f64 / 2.0, last.rules as f64 * 2.0);
    let top_mpps = points
        .iter()
        .map(|p| p.established_mpps.max(p.reference_mpps))
        .fold(0.0, f64::max);
    let top_mpps = if top_mpps > 0.0 { top_mpps * 1.2 } else { 1.0 };
    let top_new = points.iter().map(|p| p.new_flows_per_s).fold(0.0, f64::max);
    let top_new = if top_new > 0.0 { top_new * 1.2 } else { 1.0 };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (upper, lower) = root.split_vertically(SIZE.1 * 55 / 100);

    let mut chart = ChartBuilder::on(&upper)
        .caption(
            "Rule scaling: established-flow forwarding rate",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..top_mpps)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("rules in the policy")
        .y_desc("Mpps")
        .x_label_formatter(&|x| short_count(*x))
        .draw()
        .map_err(&err)?;
    let established = points.iter().map(|p| (p.rules as f64, p.established_mpps));
    chart
        .draw_series(LineSeries::new(established, PALISADE.stroke_width(2)).point_size(4))
        .map_err(&err)?
        .label("palisade-dp, established flows")
        .legend(swatch(PALISADE));
    let reference: Vec<(f64, f64)> = match constant_reference(points) {
        Some(r) => vec![(x0, r), (x1, r)],
        None => points
            .iter()
            .map(|p| (p.rules as f64, p.reference_mpps))
            .collect(),
    };
    let label = match constant_reference(points) {
        Some(r) => format!("reference: testpmd io, same path ({r:.2} Mpps)"),
        None => "reference: testpmd io, same path".to_string(),
    };
    chart
        .draw_series(DashedLineSeries::new(
            reference,
            8,
            5,
            REFERENCE.stroke_width(2),
        ))
        .map_err(&err)?
        .label(label)
        .legend(swatch(REFERENCE));
    draw_legend(&mut chart, SeriesLabelPosition::LowerLeft).map_err(&err)?;

    let mut chart = ChartBuilder::on(&lower)
        .caption("New flows set up per second", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..top_new)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("rules in the policy")
        .y_desc("new flows/s")
        .x_label_formatter(&|x| short_count(*x))
        .y_label_formatter(&|y| short_count(*y))
        .draw()
        .map_err(&err)?;
    let new_flows = points.iter().map(|p| (p.rules as f64, p.new_flows_per_s));
    chart
        .draw_series(LineSeries::new(new_flows, NEW_FLOWS.stroke_width(2)).point_size(4))
        .map_err(&err)?
        .label("palisade-dp, new flows/s")
        .legend(swatch(NEW_FLOWS));
    draw_legend(&mut chart, SeriesLabelPosition::LowerLeft).map_err(&err)?;
    root.present().map_err(&err)
}

fn legend_label(who: &str, d: &LatencyDist) -> String {
    format!(
        "{who}: p50 {}, p99 {}, p99.9 {} ({} samples at {} pps)",
        short_ns(d.summary.p50_ns as f64),
        short_ns(d.summary.p99_ns as f64),
        short_ns(d.summary.p999_ns as f64),
        d.total(),
        short_count(d.rate_pps)
    )
}

/// Draws the latency chart into `path`: the CCDF (share of packets slower than x) of both
/// sides on log-log axes, with the p50, p99 and p99.9 levels as dotted lines and the
/// percentiles in the legend.
pub fn render_latency(
    scenario: &str,
    reference: &LatencyDist,
    palisade: &LatencyDist,
    path: &Path,
) -> Result<(), ChartError> {
    let err = draw_err(path);
    let (r, p) = (reference.ccdf(), palisade.ccdf());
    let lo = reference.summary.min_ns.min(palisade.summary.min_ns);
    let hi = [reference, palisade]
        .iter()
        .flat_map(|d| {
            d.summary
                .histogram
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| b.le_ns)
                .chain([d.summary.max_ns])
        })
        .max()
        .unwrap_or(lo);
    let (x0, x1) = (ns_x(lo) / 1.5, ns_x(hi).max(ns_x(lo) + 1.0) * 1.5);
    let fewest = reference.total().max(palisade.total()).max(1) as f64;
    let y0 = (0.5 / fewest).min(1e-4);

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency through the device under test ({scenario})"),
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..1.5).log_scale())
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("latency")
        .y_desc("share of packets slower (CCDF)")
        .x_label_formatter(&|x| short_ns(*x))
        .y_label_formatter(&|y| short_share(*y))
        .draw()
        .map_err(&err)?;
    for (level, name) in [(0.5, "p50"), (0.01, "p99"), (0.001, "p99.9")] {
        if level < y0 {
            continue;
        }
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x0, level), (x1, level)],
                3,
                4,
                BLACK.mix(0.35).stroke_width(1),
            ))
            .map_err(&err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                name,
                (x0 * 1.05, level * 1.08),
                ("sans-serif", 13),
            )))
            .map_err(&err)?;
    }
    for (points, color, label) in [
        (
            r,
            REFERENCE,
            legend_label("testpmd io (reference)", reference),
        ),
        (p, PALISADE, legend_label("palisade-dp", palisade)),
    ] {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(&err)?
            .label(label)
            .legend(swatch(color));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(&err)?;
    root.present().map_err(&err)
}

/// Which charts to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Both.
    All,
    /// `rule-scaling.svg` only.
    RuleScaling,
    /// `latency.svg` only.
    Latency,
}

/// What [`render`] did: the files written and, for each chart it could not draw, why.
#[derive(Debug, Default)]
pub struct Rendered {
    /// SVG files written.
    pub written: Vec<PathBuf>,
    /// Charts not drawn.
    pub failed: Vec<ChartError>,
}

/// Draws the charts `which` asks for from `report` into `out_dir` (created if missing). A
/// chart whose data is missing does not stop the other one.
pub fn render(report: &Value, out_dir: &Path, which: Which) -> Result<Rendered, ChartError> {
    std::fs::create_dir_all(out_dir).map_err(|source| ChartError::Create {
        path: out_dir.into(),
        source,
    })?;
    let mut done = Rendered::default();
    if which != Which::Latency {
        let path = out_dir.join(RULE_SCALING_SVG);
        match rule_scaling(report).and_then(|p| render_rule_scaling(&p, &path)) {
            Ok(()) => done.written.push(path),
            Err(e) => done.failed.push(e),
        }
    }
    if which != Which::RuleScaling {
        let path = out_dir.join(LATENCY_SVG);
        match latency(report).and_then(|(name, r, p)| render_latency(&name, &r, &p, &path)) {
            Ok(()) => done.written.push(path),
            Err(e) => done.failed.push(e),
        }
    }
    Ok(done)
}

/// An error and every cause, once, `: `-separated (for the binary's message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn dist(scale: u64) -> Value {
        // Log-linear-ish buckets: most samples near 2 µs * scale, a tail to 80 µs * scale.
        let buckets: Vec<Value> = [
            (1_000, 10),
            (1_500, 200),
            (2_000, 5_000),
            (2_500, 3_000),
            (4_000, 1_500),
            (10_000, 250),
            (40_000, 35),
            (80_000, 5),
        ]
        .iter()
        .map(|&(le, count)| json!({"le_ns": le * scale, "count": count}))
        .collect();
        json!({
            "rate_pps": 1_000_000.0,
            "count": 10_000,
            "min_ns": 900 * scale,
            "p50_ns": 2_000 * scale,
            "p99_ns": 10_000 * scale,
            "p999_ns": 40_000 * scale,
            "max_ns": 79_000 * scale,
            "mean_ns": 2_600.0 * scale as f64,
            "histogram": buckets,
        })
    }

    fn fixture() -> Value {
        let sizes: Vec<Value> = [(10, 9.8, 2.1e6), (1_000, 9.7, 2.0e6), (10_000, 9.6, 1.9e6), (100_000, 9.4, 1.7e6)]
            .iter()
            .map(|&(rules, mpps, new)| {
                json!({"rules": rules, "established_mpps": mpps, "new_flows_per_s": new, "reference_mpps": 10.5})
            })
            .collect();
        json!({
            "commit": "abc",
            "machine": "test",
            "scenarios": [
                {"name": "null", "reference_mpps": 20.0, "palisade_mpps": 18.0},
                {"name": "rule-scaling", "reference_mpps": 10.5, "palisade_mpps": 9.4, "sizes": sizes},
                {"name": "other", "reference_latency": dist(3), "palisade_latency": dist(4)},
                {"name": "forward", "reference_latency": dist(1), "palisade_latency": dist(2)},
            ]
        })
    }

    #[test]
    fn renders_both_charts_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("charts");
        let done = render(&fixture(), &out, Which::All).unwrap();
        assert!(done.failed.is_empty(), "{:?}", done.failed);
        assert_eq!(
            done.written,
            vec![out.join(RULE_SCALING_SVG), out.join(LATENCY_SVG)]
        );
        let rules = std::fs::read_to_string(out.join(RULE_SCALING_SVG)).unwrap();
        assert!(
            rules.starts_with("<svg"),
            "{}",
            &rules[..rules.len().min(200)]
        );
        for label in [
            "Rule scaling",
            "palisade-dp, established flows",
            "testpmd io",
            "10.50 Mpps",
            "new flows/s",
            "rules in the policy",
            "100k",
        ] {
            assert!(rules.contains(label), "rule-scaling.svg lacks {label:?}");
        }
        let lat = std::fs::read_to_string(out.join(LATENCY_SVG)).unwrap();
        for label in [
            "Latency through the device under test (forward)",
            "testpmd io (reference): p50 2.0 µs, p99 10.0 µs, p99.9 40.0 µs",
            "palisade-dp: p50 4.0 µs, p99 20.0 µs, p99.9 80.0 µs",
            "CCDF",
            "p99.9",
        ] {
            assert!(lat.contains(label), "latency.svg lacks {label:?}");
        }
    }

    #[test]
    fn latency_falls_back_to_the_first_scenario_that_has_it() {
        let mut report = fixture();
        report["scenarios"][3]["name"] = json!("forward-2");
        let (name, r, _) = latency(&report).unwrap();
        assert_eq!(name, "other");
        assert_eq!(r.summary.p50_ns, 6_000);
    }

    #[test]
    fn ccdf_starts_at_one_and_falls() {
        let d: LatencyDist = serde_json::from_value(dist(1)).unwrap();
        let c = d.ccdf();
        assert_eq!(c[0], (900.0, 1.0));
        assert!(
            c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 >= w[1].1),
            "{c:?}"
        );
        // The last bucket leaves nothing above it: no zero on a log axis.
        assert_eq!(c.last().unwrap(), &(40_000.0, 5.0 / 10_000.0));
    }

    #[test]
    fn missing_data_is_named() {
        let e = |report: Value, which| {
            let dir = tempfile::tempdir().unwrap();
            let done = render(&report, dir.path(), which).unwrap();
            assert!(done.written.is_empty());
            error_chain(&done.failed[0])
        };
        let no_rules = json!({"scenarios": [{"name": "forward"}]});
        assert!(
            e(no_rules.clone(), Which::RuleScaling).contains("no scenario named `rule-scaling`")
        );
        assert!(e(no_rules, Which::Latency).contains("`reference_latency` and `palisade_latency`"));
        assert!(
            e(
                json!({"scenarios": [{"name": "rule-scaling"}]}),
                Which::RuleScaling
            )
            .contains("scenario `rule-scaling` has no `sizes` field")
        );
        let bad = json!({"scenarios": [{"name": "rule-scaling", "sizes": [{"rules": 10, "established_mpps": 1.0}]}]});
        let msg = e(bad, Which::RuleScaling);
        assert!(
            msg.contains("scenario `rule-scaling`: `sizes` is malformed: missing field"),
            "{msg}"
        );
        let zero = json!({"scenarios": [{"name": "rule-scaling", "sizes": [{"rules": 0, "established_mpps": 1.0, "new_flows_per_s": 1.0, "reference_mpps": 1.0}]}]});
        assert!(e(zero, Which::RuleScaling).contains("0 rules"));
        let mut empty = fixture();
        empty["scenarios"][3]["palisade_latency"]["histogram"] = json!([]);
        assert!(
            e(empty, Which::Latency)
                .contains("scenario `forward`: `palisade_latency.histogram`: no samples")
        );
        let mut wrong = fixture();
        wrong["scenarios"][3]["reference_latency"]["histogram"] = json!("lots");
        assert!(
            e(wrong, Which::Latency)
                .contains("scenario `forward`: `reference_latency` is malformed")
        );
        assert!(e(json!([1, 2]), Which::All).contains("no `scenarios` array"));
        assert!(
            e(
                json!({"scenarios": [{"name": "rule-scaling", "sizes": []}]}),
                Which::RuleScaling
            )
            .contains("empty")
        );
    }

    #[test]
    fn unreadable_reports_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        assert!(error_chain(&read_report(&missing).unwrap_err()).contains("read the report"));
        let garbage = dir.path().join("bad.json");
        std::fs::write(&garbage, "{\"scenarios\": [").unwrap();
        assert!(error_chain(&read_report(&garbage).unwrap_err()).contains("is not JSON"));
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short_count(10.0), "10");
        assert_eq!(short_count(1_000.0), "1k");
        assert_eq!(short_count(100_000.0), "100k");
        assert_eq!(short_count(1_500_000.0), "1.5M");
        assert_eq!(short_ns(850.0), "850 ns");
        assert_eq!(short_ns(12_345.0), "12.3 µs");
        assert_eq!(short_ns(4_100_000.0), "4.1 ms");
        assert_eq!(short_share(1.0), "100%");
        assert_eq!(short_share(0.01), "1%");
        assert_eq!(short_share(0.001), "0.1%");
        assert_eq!(short_share(0.0001), "0.01%");
    }
}
