//! Restart backoff: a delay doubling from `min` to `max` over consecutive failures, forgotten
//! once a run lasted `reset_after`.

use std::time::Duration;

/// Restart delays for a supervised process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A run at least this long resets the count.
    pub reset_after: Duration,
    failures: u32,
}

impl Backoff {
    /// No failures yet.
    pub fn new(min: Duration, max: Duration, reset_after: Duration) -> Self {
        Self {
            min,
            max,
            reset_after,
            failures: 0,
        }
    }

    /// The delay after the `failures`-th consecutive failure (1-based): `min * 2^(failures-1)`,
    /// at most `max` (and never below `min`). 0 failures: no delay.
    pub fn delay(min: Duration, max: Duration, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        min.checked_mul(factor).unwrap_or(max).min(max).max(min)
    }

    /// Records a run that ended after `uptime` and returns how long to wait before the next.
    pub fn on_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.reset_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        Self::delay(self.min, self.max, self.failures)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_min_to_max() {
        let d: Vec<u128> = (0..12)
            .map(|n| Backoff::delay(200 * MS, 30_000 * MS, n).as_millis())
            .collect();
        assert_eq!(
            d,
            [
                0, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000, 30_000
            ]
        );
        assert_eq!(Backoff::delay(200 * MS, 30_000 * MS, 40), 30_000 * MS);
        assert_eq!(Backoff::delay(200 * MS, 30_000 * MS, u32::MAX), 30_000 * MS);
    }

    #[test]
    fn a_long_run_resets_the_count() {
        let mut b = Backoff::new(200 * MS, 30_000 * MS, 60_000 * MS);
        assert_eq!(b.on_exit(MS), 200 * MS);
        assert_eq!(b.on_exit(MS), 400 * MS);
        assert_eq!(b.on_exit(59_999 * MS), 800 * MS);
        assert_eq!(b.failures(), 3);
        assert_eq!(b.on_exit(60_000 * MS), 200 * MS);
        assert_eq!(b.failures(), 1);
    }
}
