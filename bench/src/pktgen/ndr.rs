//! The zero-loss rate search, as a state machine with no I/O: it proposes a trial rate, the
//! caller runs the trial and hands back (sent, received), until it is done.
//!
//! RFC 2544 section 26.1 defines throughput as the highest rate at which the device forwards
//! every frame offered, found by lowering the rate after a trial that lost frames and rerunning;
//! like every implementation we search by bisection. The first trial is at `max` (often line
//! rate); after that each trial halves the interval between the highest rate that passed and
//! the lowest that failed (`min` stands in for the former until something passes), until the
//! interval is at most `resolution` wide. Without [`NdrConfig::confirm`] that takes at most
//! `ceil(log2((max - min) / resolution)) + 1` trials, plus one at `min` when nothing passed.
//! A trial passes when `lost <= loss_ratio * sent`: `loss_ratio` 0 is NDR; a small ratio
//! (e.g. 0.005%) gives a partial-drop rate (PDR).
//!
//! # Noise
//!
//! A real device may lose frames at a rate below one it once passed. RFC 2544 counts a rate
//! as throughput only if no frame was lost there, so a failure is believed over an earlier
//! success: the search's upper bound is always the lowest rate that failed, its lower bound
//! the highest rate that passed *below* it, and the result never exceeds a rate that lost
//! frames. Such trials are counted in [`NdrResult::inconsistent`] so the report can show the
//! device was noisy. With `confirm`, the converged rate is run again and only reported if it
//! passes twice; a failed confirmation lowers the upper bound and the search goes on.

use serde::Serialize;

/// What to search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NdrConfig {
    /// Lowest rate considered, pps.
    pub min_pps: f64,
    /// Highest rate, tried first, pps.
    pub max_pps: f64,
    /// Stop when the interval is this narrow, pps.
    pub resolution_pps: f64,
    /// Acceptable lost / sent: 0 for NDR.
    pub loss_ratio: f64,
    /// Run the converged rate a second time before reporting it.
    pub confirm: bool,
}

impl NdrConfig {
    /// Zero loss between `min` and `max`, to `resolution` pps, unconfirmed.
    pub fn ndr(min_pps: f64, max_pps: f64, resolution_pps: f64) -> Self {
        NdrConfig {
            min_pps,
            max_pps,
            resolution_pps,
            loss_ratio: 0.0,
            confirm: false,
        }
    }

    /// Resolution as a share of `max` (0.005 = 0.5% of line rate when `max` is line rate).
    pub fn with_relative_resolution(mut self, share: f64) -> Self {
        self.resolution_pps = self.max_pps * share;
        self
    }

    /// The most trials an unconfirmed search takes when some rate passes:
    /// `ceil(log2((max - min) / resolution)) + 1`.
    pub fn max_trials(&self) -> u32 {
        let steps = ((self.max_pps - self.min_pps) / self.resolution_pps)
            .log2()
            .ceil()
            .max(0.0);
        steps as u32 + 1
    }
}

/// Why a search cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum NdrError {
    /// `min` not below `max`, or not positive and finite.
    #[error("the search range {min}..{max} pps is empty or not finite")]
    BadRange {
        /// Lower end.
        min: f64,
        /// Upper end.
        max: f64,
    },
    /// Resolution not positive and finite.
    #[error("the resolution must be a positive number of pps, not {0}")]
    BadResolution(f64),
    /// Loss ratio outside 0..1.
    #[error("the acceptable loss ratio must be in 0..1, not {0}")]
    BadLossRatio(f64),
    /// A trial that sent nothing says nothing.
    #[error("the trial sent no packets")]
    NothingSent,
    /// `record` without a trial proposed by `step`.
    #[error("no trial is waiting for a result")]
    NoTrial,
}

/// One trial.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trial {
    /// Offered rate, pps.
    pub rate_pps: f64,
    /// Frames sent.
    pub sent: u64,
    /// Frames received.
    pub received: u64,
    /// Within the acceptable loss.
    pub passed: bool,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NdrResult {
    /// The highest rate that passed below every rate that failed; `None` when even `min` lost
    /// too much.
    pub rate_pps: Option<f64>,
    /// Every trial in order.
    pub trials: Vec<Trial>,
    /// Failed trials at or below a rate that had passed before (noise, see the module doc).
    pub inconsistent: u32,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Run a trial at this rate (pps) and [`NdrSearch::record`] it.
    Trial(f64),
    /// The search is over.
    Done(NdrResult),
}

/// The search state.
#[derive(Debug, Clone)]
pub struct NdrSearch {
    cfg: NdrConfig,
    trials: Vec<Trial>,
    pending: Option<f64>,
}

impl NdrSearch {
    /// A search over `cfg`, checked.
    pub fn new(cfg: NdrConfig) -> Result<Self, NdrError> {
        let (min, max) = (cfg.min_pps, cfg.max_pps);
        if !(min.is_finite() && max.is_finite() && min > 0.0 && min < max) {
            return Err(NdrError::BadRange { min, max });
        }
        if !(cfg.resolution_pps.is_finite() && cfg.resolution_pps > 0.0) {
            return Err(NdrError::BadResolution(cfg.resolution_pps));
        }
        if !(0.0..1.0).contains(&cfg.loss_ratio) {
            return Err(NdrError::BadLossRatio(cfg.loss_ratio));
        }
        Ok(NdrSearch {
            cfg,
            trials: Vec::new(),
            pending: None,
        })
    }

    /// The next step; the same trial until it is recorded.
    pub fn step(&mut self) -> Next {
        if let Some(r) = self.pending {
            return Next::Trial(r);
        }
        match self.decide() {
            Ok(r) => {
                self.pending = Some(r);
                Next::Trial(r)
            }
            Err(rate) => Next::Done(NdrResult {
                rate_pps: rate,
                trials: self.trials.clone(),
                inconsistent: self.inconsistent(),
            }),
        }
    }

    /// The result of the pending trial.
    pub fn record(&mut self, sent: u64, received: u64) -> Result<(), NdrError> {
        let rate = self.pending.ok_or(NdrError::NoTrial)?;
        if sent == 0 {
            return Err(NdrError::NothingSent);
        }
        let lost = sent.saturating_sub(received);
        let passed = lost as f64 <= self.cfg.loss_ratio * sent as f64;
        self.trials.push(Trial {
            rate_pps: rate,
            sent,
            received,
            passed,
        });
        self.pending = None;
        Ok(())
    }

    /// Trials so far.
    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    /// `Ok(next rate)` or `Err(result)`.
    fn decide(&self) -> Result<f64, Option<f64>> {
        if self.trials.is_empty() {
            return Ok(self.cfg.max_pps);
        }
        let hi = self
            .trials
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.rate_pps)
            .min_by(f64::total_cmp);
        let lo = self
            .trials
            .iter()
            .filter(|t| t.passed && hi.is_none_or(|h| t.rate_pps < h))
            .map(|t| t.rate_pps)
            .max_by(f64::total_cmp);
        let Some(hi) = hi else {
            // Nothing failed: the top passed.
            return self.confirmed_or_retry(lo);
        };
        let floor = lo.unwrap_or(self.cfg.min_pps);
        if hi - floor > self.cfg.resolution_pps {
            return Ok(floor + (hi - floor) / 2.0);
        }
        if lo.is_some() {
            return self.confirmed_or_retry(lo);
        }
        // Converged without a pass: try `min` itself, unless it already failed.
        if hi > self.cfg.min_pps {
            Ok(self.cfg.min_pps)
        } else {
            Err(None)
        }
    }

    fn confirmed_or_retry(&self, lo: Option<f64>) -> Result<f64, Option<f64>> {
        let Some(lo) = lo else { return Err(None) };
        let passes = self
            .trials
            .iter()
            .filter(|t| t.passed && t.rate_pps == lo)
            .count();
        if self.cfg.confirm && passes < 2 {
            Ok(lo)
        } else {
            Err(Some(lo))
        }
    }

    fn inconsistent(&self) -> u32 {
        let mut best_pass = f64::NEG_INFINITY;
        let mut n = 0;
        for t in &self.trials {
            if t.passed {
                best_pass = best_pass.max(t.rate_pps);
            } else if t.rate_pps <= best_pass {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: u64 = 10_000_000;

    /// Runs the search against `device(rate, trial number) -> received of SENT`.
    fn run(cfg: NdrConfig, mut device: impl FnMut(f64, usize) -> u64) -> NdrResult {
        let mut s = NdrSearch::new(cfg).unwrap();
        for i in 0..1000 {
            match s.step() {
                Next::Trial(r) => {
                    assert!(r >= cfg.min_pps && r <= cfg.max_pps, "{r}");
                    s.record(SENT, device(r, i)).unwrap();
                }
                Next::Done(res) => return res,
            }
        }
        panic!("no convergence");
    }

    /// Forwards everything up to `cap` pps, then only `cap / rate` of it.
    fn cliff(cap: f64) -> impl FnMut(f64, usize) -> u64 {
        move |r, _| {
            if r <= cap {
                SENT
            } else {
                (SENT as f64 * cap / r) as u64
            }
        }
    }

    #[test]
    fn finds_a_cliff_within_the_resolution_and_the_trial_bound() {
        let cfg = NdrConfig::ndr(10_000.0, 14_880_952.0, 0.0).with_relative_resolution(0.005);
        assert_eq!(cfg.max_trials(), 9); // ceil(log2(199.9)) + 1
        for i in 1..200 {
            let cap = cfg.min_pps + (cfg.max_pps - cfg.min_pps) * f64::from(i) / 200.0;
            let res = run(cfg, cliff(cap));
            let found = res.rate_pps.unwrap();
            assert!(
                found <= cap && cap - found <= cfg.resolution_pps,
                "{cap}: {found}"
            );
            assert!(
                res.trials.len() <= cfg.max_trials() as usize,
                "{cap}: {res:?}"
            );
            assert_eq!(res.inconsistent, 0);
        }
    }

    #[test]
    fn absolute_resolution() {
        let cfg = NdrConfig::ndr(1_000.0, 1_000_000.0, 1_000.0);
        let res = run(cfg, cliff(123_456.0));
        let found = res.rate_pps.unwrap();
        assert!((122_456.0..=123_456.0).contains(&found), "{found}");
        assert!(res.trials.len() <= 11);
    }

    #[test]
    fn a_device_that_keeps_up_takes_one_trial() {
        let cfg = NdrConfig::ndr(1.0, 1e6, 1e3);
        let res = run(cfg, |_, _| SENT);
        assert_eq!(res.rate_pps, Some(1e6));
        assert_eq!(res.trials.len(), 1);
    }

    #[test]
    fn a_device_that_always_loses_gives_no_rate() {
        let cfg = NdrConfig::ndr(1_000.0, 1e6, 1e4);
        let res = run(cfg, |_, _| SENT - 1);
        assert_eq!(res.rate_pps, None);
        assert_eq!(res.trials.last().unwrap().rate_pps, 1_000.0);
        assert_eq!(res.trials.len(), cfg.max_trials() as usize + 1);
    }

    #[test]
    fn partial_drop_rate_accepts_small_loss() {
        // Loses 0.001% above 4 Mpps and 1% above 6 Mpps.
        let device = |r: f64, _| {
            if r > 6e6 {
                SENT - SENT / 100
            } else if r > 4e6 {
                SENT - SENT / 100_000
            } else {
                SENT
            }
        };
        let ndr = run(NdrConfig::ndr(1e5, 1e7, 1e4), device);
        assert!((3.99e6..=4e6).contains(&ndr.rate_pps.unwrap()));
        let pdr = NdrConfig {
            loss_ratio: 0.00005,
            ..NdrConfig::ndr(1e5, 1e7, 1e4)
        };
        let pdr = run(pdr, device);
        assert!((5.99e6..=6e6).contains(&pdr.rate_pps.unwrap()));
    }

    #[test]
    fn a_failed_confirmation_is_believed_over_the_earlier_pass() {
        // Cliff at 5 Mpps, but the first trial below it run a second time loses a frame.
        let cfg = NdrConfig {
            confirm: true,
            ..NdrConfig::ndr(1e5, 1e7, 1e5)
        };
        let mut seen = Vec::new();
        let mut glitched = false;
        let res = run(cfg, |r, _| {
            let again = seen.contains(&r.to_bits());
            seen.push(r.to_bits());
            if r > 5e6 {
                0
            } else if again && !glitched {
                glitched = true;
                SENT - 1
            } else {
                SENT
            }
        });
        assert!(glitched);
        assert_eq!(res.inconsistent, 1);
        let found = res.rate_pps.unwrap();
        let glitch = res.trials.iter().find(|t| !t.passed && t.rate_pps <= 5e6);
        let glitch = glitch.unwrap().rate_pps;
        assert!(
            found < glitch,
            "never above a rate that lost: {found} vs {glitch}"
        );
        assert!(glitch - found <= cfg.resolution_pps);
        let passes = res.trials.iter().filter(|t| t.rate_pps == found).count();
        assert_eq!(passes, 2, "confirmed");
    }

    #[test]
    fn noise_without_confirmation_lowers_the_result() {
        // Trial 3 (0-based 2) loses one frame though the device could do 8 Mpps.
        let cfg = NdrConfig::ndr(1e5, 1e7, 1e5);
        let clean = run(cfg, cliff(8e6)).rate_pps.unwrap();
        let noisy = run(cfg, |r, i| if i == 2 { SENT - 1 } else { cliff(8e6)(r, i) });
        assert!(noisy.rate_pps.unwrap() < clean);
        let first_fail_below_cap = noisy.trials[2].rate_pps;
        assert!(noisy.rate_pps.unwrap() < first_fail_below_cap);
    }

    #[test]
    fn errors() {
        let e = |c| NdrSearch::new(c).unwrap_err();
        assert!(matches!(
            e(NdrConfig::ndr(5.0, 5.0, 1.0)),
            NdrError::BadRange { .. }
        ));
        assert!(matches!(
            e(NdrConfig::ndr(0.0, 5.0, 1.0)),
            NdrError::BadRange { .. }
        ));
        assert!(matches!(
            e(NdrConfig::ndr(1.0, f64::INFINITY, 1.0)),
            NdrError::BadRange { .. }
        ));
        assert_eq!(
            e(NdrConfig::ndr(1.0, 5.0, 0.0)),
            NdrError::BadResolution(0.0)
        );
        let c = NdrConfig {
            loss_ratio: 1.0,
            ..NdrConfig::ndr(1.0, 5.0, 1.0)
        };
        assert_eq!(e(c), NdrError::BadLossRatio(1.0));
        let mut s = NdrSearch::new(NdrConfig::ndr(1.0, 5.0, 1.0)).unwrap();
        assert_eq!(s.record(1, 1), Err(NdrError::NoTrial));
        assert_eq!(s.step(), Next::Trial(5.0));
        assert_eq!(s.step(), Next::Trial(5.0), "same until recorded");
        assert_eq!(s.record(0, 0), Err(NdrError::NothingSent));
        s.record(10, 12).unwrap(); // duplicates are not negative loss
        assert!(s.trials()[0].passed);
    }
}
