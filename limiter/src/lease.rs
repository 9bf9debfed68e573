//! Leases: tokens taken from a bucket in one step, to be given out later by whoever took
//! them ([`grant`] for a token bucket, [`window_grant`] for a fixed window). Tokens are
//! taken before they are given out, so however many holders lease from one bucket, no
//! more is ever given out than the bucket allows. The RLS's Redis lease script applies
//! the same maths; the shared vectors (`tests/vectors/lease.json`) hold the two together.

use crate::clock::Nanos;
use crate::gcra::Rate;

/// What a lease took from a token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Tokens taken (at most the `want` asked, at most what the bucket holds).
    pub granted: u64,
    /// The bucket's theoretical arrival time after the grant (`tat` unchanged when none).
    pub tat: Nanos,
}

/// Takes up to `want` whole tokens from the bucket whose theoretical arrival time is
/// `tat`, at `now`: as many as `want` cost-1 checks in a row would be allowed, in one step.
pub fn grant(rate: &Rate, want: u64, tat: Nanos, now: Nanos) -> Grant {
    let ahead = tat.saturating_sub(now);
    let room = rate.tolerance().saturating_sub(ahead);
    let granted = (room / rate.interval()).min(want);
    Grant {
        granted,
        tat: match granted {
            0 => tat,
            // granted × T <= room <= τ, and now + τ was checked by whoever built the rate's
            // caller; saturate rather than wrap all the same.
            n => now.saturating_add(ahead + n * rate.interval()),
        },
    }
}

/// Hits a fixed window of `limit` lets a lease take when it has counted `count`: up to
/// `want`, never past the limit.
pub fn window_grant(limit: u32, count: u64, want: u64) -> u64 {
    u64::from(limit).saturating_sub(count).min(want)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lease_takes_what_cost_one_checks_in_a_row_would_and_no_more() {
        let rate = Rate::new(10, Duration::from_secs(1), 5);
        let now = 1_000_000_000_000;
        let full = grant(&rate, 3, 0, now);
        assert_eq!(full.granted, 3);
        assert_eq!(full.tat, now + 300_000_000);
        // Two left: asked for five, granted two; then none.
        let rest = grant(&rate, 5, full.tat, now);
        assert_eq!(
            rest,
            Grant {
                granted: 2,
                tat: now + 500_000_000
            }
        );
        assert_eq!(
            grant(&rate, 5, rest.tat, now),
            Grant {
                granted: 0,
                tat: rest.tat
            }
        );
        // One interval later, one token.
        assert_eq!(grant(&rate, 5, rest.tat, now + 100_000_000).granted, 1);
    }

    #[test]
    fn a_window_lease_never_takes_past_the_limit() {
        assert_eq!(window_grant(10, 4, 3), 3);
        assert_eq!(window_grant(10, 8, 3), 2);
        assert_eq!(window_grant(10, 12, 3), 0);
    }
}
