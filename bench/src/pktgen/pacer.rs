//! Pacing: a token bucket on an injected clock.
//!
//! The clock is whatever the tx loop reads (TSC ticks, or nanoseconds in tests): a `u64` that
//! does not go backwards, and its ticks per second. Credit accrues at the target rate and is
//! capped at `burst` packets, so after a stall the loop catches up by at most one burst
//! instead of flooding. Credit is kept exactly (in packet-ticks, `u128`), so over any span the
//! packets allowed are `floor(span * pps / ticks_per_sec)` plus what was left, never more than
//! one burst ahead. [`Rate::Max`] does not pace.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A target rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rate {
    /// As fast as the port takes them.
    Max,
    /// Packets per second (at least 1).
    Pps(u64),
}

/// Why a pacer or rate is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacerError {
    /// A rate that does not parse.
    #[error("`{0}` is not a rate (max, or a number with pps, kpps or Mpps)")]
    NotARate(String),
    /// Zero packets per second.
    #[error("a paced rate must be at least 1 pps")]
    ZeroRate,
    /// A clock with zero ticks per second.
    #[error("the pacing clock must tick at least once per second")]
    ZeroClock,
    /// A burst of zero packets.
    #[error("the burst must be at least one packet")]
    ZeroBurst,
}

impl FromStr for Rate {
    type Err = PacerError;

    /// `max`, or a number with an optional unit: `14.88Mpps`, `500kpps`, `1000pps`, `1000`.
    fn from_str(s: &str) -> Result<Self, PacerError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let lower = t.to_ascii_lowercase();
        let (num, scale) = if let Some(n) = lower.strip_suffix("mpps") {
            (n, 1e6)
        } else if let Some(n) = lower.strip_suffix("kpps") {
            (n, 1e3)
        } else {
            (lower.strip_suffix("pps").unwrap_or(&lower), 1.0)
        };
        let x: f64 = num
            .trim()
            .parse()
            .map_err(|_| PacerError::NotARate(s.into()))?;
        let pps = x * scale;
        if !pps.is_finite() || pps < 0.0 || pps > u64::MAX as f64 {
            return Err(PacerError::NotARate(s.into()));
        }
        match pps.round() as u64 {
            0 => Err(PacerError::ZeroRate),
            n => Ok(Rate::Pps(n)),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::Pps(n) => write!(f, "{n}pps"),
        }
    }
}

/// A token bucket: how many packets may go now.
#[derive(Debug, Clone)]
pub struct Pacer {
    pps: Option<u64>,
    ticks_per_sec: u64,
    burst: u32,
    /// Credit in packet-ticks: one packet is `ticks_per_sec` of it.
    credit: u128,
    last: u64,
}

impl Pacer {
    /// A pacer at `rate` on a clock of `ticks_per_sec`, at most `burst` packets at once, its
    /// bucket empty at `now`.
    pub fn new(rate: Rate, ticks_per_sec: u64, burst: u32, now: u64) -> Result<Self, PacerError> {
        if ticks_per_sec == 0 {
            return Err(PacerError::ZeroClock);
        }
        if burst == 0 {
            return Err(PacerError::ZeroBurst);
        }
        let pps = match rate {
            Rate::Max => None,
            Rate::Pps(0) => return Err(PacerError::ZeroRate),
            Rate::Pps(n) => Some(n),
        };
        Ok(Pacer {
            pps,
            ticks_per_sec,
            burst,
            credit: 0,
            last: now,
        })
    }

    /// Packets that may go at `now` (at most the burst; always the burst at [`Rate::Max`]).
    /// Call [`Pacer::consume`] with the number actually sent.
    pub fn available(&mut self, now: u64) -> u32 {
        let Some(pps) = self.pps else {
            return self.burst;
        };
        let tps = u128::from(self.ticks_per_sec);
        let cap = u128::from(self.burst) * tps;
        let elapsed = u128::from(now.saturating_sub(self.last));
        self.last = self.last.max(now);
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(u128::from(pps)))
            .min(cap);
        (self.credit / tps) as u32
    }

    /// Takes `n` packets' credit (a partial tx burst passes what it really sent).
    pub fn consume(&mut self, n: u32) {
        if self.pps.is_some() {
            let cost = u128::from(n) * u128::from(self.ticks_per_sec);
            self.credit = self.credit.saturating_sub(cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1_000_000_000;

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse(), Ok(Rate::Max));
        assert_eq!("14.88Mpps".parse(), Ok(Rate::Pps(14_880_000)));
        assert_eq!("500kpps".parse(), Ok(Rate::Pps(500_000)));
        assert_eq!("1000pps".parse(), Ok(Rate::Pps(1000)));
        assert_eq!("1000".parse(), Ok(Rate::Pps(1000)));
        assert_eq!("0".parse::<Rate>(), Err(PacerError::ZeroRate));
        assert!(matches!("-5".parse::<Rate>(), Err(PacerError::NotARate(_))));
        assert!(matches!(
            "fast".parse::<Rate>(),
            Err(PacerError::NotARate(_))
        ));
        assert!(matches!(
            "1e30".parse::<Rate>(),
            Err(PacerError::NotARate(_))
        ));
        assert_eq!(Rate::Pps(7).to_string().parse(), Ok(Rate::Pps(7)));
    }

    #[test]
    fn steady_polling_gives_the_rate_exactly() {
        // 1 Mpps on a ns clock, polled every 700 ns for one second.
        let mut p = Pacer::new(Rate::Pps(1_000_000), NS, 32, 0).unwrap();
        let mut sent = 0u64;
        let mut now = 0;
        while now < NS {
            now += 700;
            let n = p.available(now);
            p.consume(n);
            sent += u64::from(n);
        }
        let expected = u128::from(now) * 1_000_000 / u128::from(NS);
        assert_eq!(u128::from(sent), expected);
    }

    #[test]
    fn a_stall_earns_one_burst_at_most() {
        let mut p = Pacer::new(Rate::Pps(1_000), NS, 8, 0).unwrap();
        assert_eq!(p.available(0), 0, "starts empty");
        assert_eq!(p.available(10 * NS), 8);
        p.consume(8);
        assert_eq!(p.available(10 * NS), 0);
        assert_eq!(p.available(10 * NS + 1_000_000), 1);
    }

    #[test]
    fn partial_sends_keep_their_credit() {
        let mut p = Pacer::new(Rate::Pps(1_000), NS, 8, 0).unwrap();
        assert_eq!(p.available(5_000_000), 5);
        p.consume(2);
        assert_eq!(p.available(5_000_000), 3);
    }

    #[test]
    fn max_does_not_pace() {
        let mut p = Pacer::new(Rate::Max, NS, 32, 0).unwrap();
        for _ in 0..3 {
            assert_eq!(p.available(0), 32);
            p.consume(32);
        }
    }

    #[test]
    fn a_clock_going_backwards_earns_nothing() {
        let mut p = Pacer::new(Rate::Pps(1_000), NS, 8, 5 * NS).unwrap();
        assert_eq!(p.available(0), 0);
        assert_eq!(p.available(5 * NS + 1_000_000), 1);
        assert_eq!(p.available(u64::MAX), 8);
    }

    #[test]
    fn tsc_clock_and_bad_arguments() {
        // 2.45 GHz TSC at 14.88 Mpps, polled every 1000 ticks for 0.1 s.
        let tsc = 2_450_000_000;
        let mut p = Pacer::new(Rate::Pps(14_880_000), tsc, 64, 0).unwrap();
        let (mut sent, mut now) = (0u64, 0u64);
        while now < tsc / 10 {
            now += 1000;
            let n = p.available(now);
            p.consume(n);
            sent += u64::from(n);
        }
        assert!((1_487_999..=1_488_000).contains(&sent), "{sent}");
        assert_eq!(
            Pacer::new(Rate::Pps(1), 0, 1, 0).unwrap_err(),
            PacerError::ZeroClock
        );
        assert_eq!(
            Pacer::new(Rate::Pps(1), 1, 0, 0).unwrap_err(),
            PacerError::ZeroBurst
        );
        assert_eq!(
            Pacer::new(Rate::Pps(0), 1, 1, 0).unwrap_err(),
            PacerError::ZeroRate
        );
    }
}
