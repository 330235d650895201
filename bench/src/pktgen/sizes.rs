//! Frame sizes: a fixed size or IMIX, as a deterministic sequence.
//!
//! A size is the Ethernet frame as RFC 2544 section 9.1 counts it, FCS included (see
//! [`super::packet::FCS_LEN`]). Sizes run from [`MIN_SIZE`] to [`MAX_SIZE`], and must also
//! hold the headers and the stamp of the flow set's frames ([`SizeSpec::check`]).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Smallest Ethernet frame, FCS included (IEEE 802.3).
pub const MIN_SIZE: u16 = 64;
/// Largest frame accepted: a 9000-byte jumbo frame.
pub const MAX_SIZE: u16 = 9000;

/// "Simple IMIX": 64, 570 and 1518-byte frames in the ratio 7:4:1, mean 353.83 bytes, as
/// commonly defined by test-equipment vendors (Spirent, Ixia; see "Internet Mix" on
/// Wikipedia); RFC 6985 describes how to report such mixes. One cycle of 12 frames, the
/// larger frames spread out rather than bunched.
pub const IMIX_CYCLE: [u16; 12] = [64, 570, 64, 64, 570, 64, 1518, 64, 570, 64, 64, 570];

/// Preamble, start delimiter and inter-frame gap: the bytes a frame costs on the wire
/// besides its own, for line-rate arithmetic.
pub const WIRE_OVERHEAD: u16 = 20;

/// Why a size spec is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number or `imix`.
    #[error("`{0}` is not a frame size (a number of bytes, or imix)")]
    NotASize(String),
    /// Outside 64..=9000.
    #[error("frame size {0} is outside {MIN_SIZE}..={MAX_SIZE} bytes")]
    OutOfRange(u16),
    /// Too small for the flow set's headers and stamp.
    #[error(
        "{size}-byte frames cannot hold {what} headers and the stamp: they need {needed} bytes"
    )]
    TooSmall {
        /// The (smallest) size asked for.
        size: u16,
        /// Smallest size that fits.
        needed: u16,
        /// The kind of frame (`ipv6/tcp`).
        what: String,
    },
}

/// Which sizes to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeSpec {
    /// Every frame this size.
    Fixed(u16),
    /// [`IMIX_CYCLE`].
    Imix,
}

impl SizeSpec {
    /// A fixed size in 64..=9000.
    pub fn fixed(size: u16) -> Result<Self, SizeError> {
        if (MIN_SIZE..=MAX_SIZE).contains(&size) {
            Ok(SizeSpec::Fixed(size))
        } else {
            Err(SizeError::OutOfRange(size))
        }
    }

    /// The smallest frame in the distribution.
    pub fn smallest(&self) -> u16 {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::Imix => MIN_SIZE,
        }
    }

    /// The largest frame in the distribution (the buffer size a caller needs, minus FCS).
    pub fn largest(&self) -> u16 {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::Imix => 1518,
        }
    }

    /// Mean frame size, bytes.
    pub fn mean(&self) -> f64 {
        match self {
            SizeSpec::Fixed(n) => f64::from(*n),
            SizeSpec::Imix => {
                IMIX_CYCLE.iter().map(|&s| f64::from(s)).sum::<f64>() / IMIX_CYCLE.len() as f64
            }
        }
    }

    /// Checks that the smallest frame holds `needed` bytes (headers, stamp, FCS: see
    /// [`super::packet::min_size`]); `what` names the frame kind in the error.
    pub fn check(&self, needed: u16, what: &str) -> Result<(), SizeError> {
        if self.smallest() < needed {
            return Err(SizeError::TooSmall {
                size: self.smallest(),
                needed,
                what: what.into(),
            });
        }
        Ok(())
    }

    /// Frames per second that fill a link of `bits_per_sec` with this mix (each frame costs
    /// its size plus [`WIRE_OVERHEAD`] bytes).
    pub fn line_rate_pps(&self, bits_per_sec: f64) -> f64 {
        bits_per_sec / ((self.mean() + f64::from(WIRE_OVERHEAD)) * 8.0)
    }

    /// The sizes, one per frame, forever; the same sequence on every call.
    pub fn sequence(&self) -> Sizes {
        Sizes {
            spec: *self,
            next: 0,
        }
    }
}

impl FromStr for SizeSpec {
    type Err = SizeError;

    /// `64` .. `9000`, or `imix`.
    fn from_str(s: &str) -> Result<Self, SizeError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("imix") {
            return Ok(SizeSpec::Imix);
        }
        let n: u16 = s.parse().map_err(|_| SizeError::NotASize(s.into()))?;
        SizeSpec::fixed(n)
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::Fixed(n) => write!(f, "{n}"),
            SizeSpec::Imix => f.write_str("imix"),
        }
    }
}

/// The size sequence of a [`SizeSpec`]: an endless iterator.
#[derive(Debug, Clone)]
pub struct Sizes {
    spec: SizeSpec,
    next: usize,
}

impl Iterator for Sizes {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        Some(match self.spec {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Imix => {
                let s = IMIX_CYCLE[self.next % IMIX_CYCLE.len()];
                self.next = (self.next + 1) % IMIX_CYCLE.len();
                s
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds() {
        assert_eq!("64".parse(), Ok(SizeSpec::Fixed(64)));
        assert_eq!(" IMIX ".parse(), Ok(SizeSpec::Imix));
        assert_eq!("9000".parse(), Ok(SizeSpec::Fixed(9000)));
        assert_eq!("63".parse::<SizeSpec>(), Err(SizeError::OutOfRange(63)));
        assert_eq!("9001".parse::<SizeSpec>(), Err(SizeError::OutOfRange(9001)));
        assert!(matches!(
            "big".parse::<SizeSpec>(),
            Err(SizeError::NotASize(_))
        ));
        assert!(matches!(
            "70000".parse::<SizeSpec>(),
            Err(SizeError::NotASize(_))
        ));
        assert_eq!(SizeSpec::Imix.to_string().parse(), Ok(SizeSpec::Imix));
    }

    #[test]
    fn imix_is_7_4_1_in_every_cycle() {
        let v: Vec<u16> = SizeSpec::Imix.sequence().take(12 * 50).collect();
        for cycle in v.chunks(12) {
            let n = |s| cycle.iter().filter(|&&x| x == s).count();
            assert_eq!((n(64), n(570), n(1518)), (7, 4, 1));
        }
        assert!((SizeSpec::Imix.mean() - 353.833).abs() < 0.001);
        assert_eq!(SizeSpec::Imix.smallest(), 64);
        assert_eq!(SizeSpec::Imix.largest(), 1518);
        let again: Vec<u16> = SizeSpec::Imix.sequence().take(12 * 50).collect();
        assert_eq!(v, again);
    }

    #[test]
    fn fixed_repeats() {
        assert!(SizeSpec::Fixed(128).sequence().take(100).all(|s| s == 128));
    }

    #[test]
    fn check_against_what_the_headers_need() {
        assert_eq!(SizeSpec::Fixed(64).check(64, "ipv4/udp"), Ok(()));
        let e = SizeSpec::Imix.check(94, "ipv6/tcp").unwrap_err();
        assert_eq!(
            e.to_string(),
            "64-byte frames cannot hold ipv6/tcp headers and the stamp: they need 94 bytes"
        );
    }

    #[test]
    fn line_rate() {
        // 10 Gb/s at 64 bytes: 14.88 Mpps.
        let pps = SizeSpec::Fixed(64).line_rate_pps(10e9);
        assert!((pps - 14_880_952.38).abs() < 1.0, "{pps}");
    }
}
