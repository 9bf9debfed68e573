//! [`Backoff`]: how long the xDS client waits before connecting again — doubling from an
//! initial wait up to a most, each wait drawn within ±50% of it, so that the replicas of a
//! Deployment that lost their server together do not come back together.

use std::time::Duration;

use rand::RngExt;

/// Exponential backoff with jitter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Waits since the last reset.
    attempt: u32,
}

impl Backoff {
    /// Waits around `initial` first, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// Starts again from the initial wait (after a stream that delivered something).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next wait: `initial × 2^attempt`, at most `max`, times a factor drawn from
    /// `[0.5, 1.5)`, and again at most `max`.
    pub fn next_wait(&mut self, rng: &mut impl rand::Rng) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32.checked_shl(self.attempt).unwrap_or(u32::MAX));
        let base = doubled.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(rng.random_range(0.5..1.5)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn waits_double_within_half_either_side_up_to_the_most() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let mut backoff = Backoff::new(initial, max);
            for attempt in 0..10 {
                let base = (initial * 2u32.pow(attempt)).min(max);
                let wait = backoff.next_wait(&mut rng);
                assert!(
                    wait >= base / 2,
                    "attempt {attempt}: {wait:?} under half {base:?}"
                );
                assert!(
                    wait < base * 3 / 2 && wait <= max,
                    "attempt {attempt}: {wait:?}"
                );
            }
        }
    }

    #[test]
    fn a_reset_starts_again_from_the_initial_wait_and_waits_never_overflow() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            assert!(backoff.next_wait(&mut rng) <= Duration::from_secs(60));
        }
        backoff.reset();
        assert!(backoff.next_wait(&mut rng) < Duration::from_millis(1500));
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut rng = StdRng::seed_from_u64(3);
        let waits: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).next_wait(&mut rng)
            })
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}
