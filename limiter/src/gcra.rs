//! Token buckets as GCRA: a [`Rate`] holds the parameters of one limit, a [`Bucket`] holds the
//! one number of state (the theoretical arrival time), and a check returns a [`Decision`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Nanos;

/// GCRA parameters of one limit: `requests` per `period`, capacity `burst`.
///
/// Invariants: `interval >= 1` and `tolerance <= burst × interval`, so a full bucket never
/// holds more than `burst` tokens. A zero rate has `burst == 0`, `tolerance == 0` and
/// `interval == u64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// T: the time one token takes to refill.
    interval: Nanos,
    /// τ: how far ahead of `now` the theoretical arrival time may run.
    tolerance: Nanos,
    burst: u32,
}

impl Rate {
    /// Emission interval T = period / requests rounded UP to whole nanoseconds (so rounding can
    /// never allow more than the rate), tolerance τ = burst × T (u128 maths, saturating).
    /// requests == 0 or burst == 0: a rate that denies every positive cost.
    ///
    /// A zero `period` gives T = 1 ns (one token per nanosecond: in effect unlimited) rather
    /// than a zero interval, which would make "tokens left" a division by zero. τ saturates at
    /// `u64::MAX` only for bursts worth more than 584 years of refill; such a bucket is still
    /// never more generous than its rate.
    pub fn new(requests: u32, period: Duration, burst: u32) -> Rate {
        if requests == 0 || burst == 0 {
            return Rate {
                interval: u64::MAX,
                tolerance: 0,
                burst: 0,
            };
        }
        let interval = period.as_nanos().div_ceil(u128::from(requests)).max(1);
        let tolerance = interval.saturating_mul(u128::from(burst));
        Rate {
            interval: saturate(interval),
            tolerance: saturate(tolerance),
            burst,
        }
    }

    /// The capacity: the most tokens one check may take, and what a full bucket holds. 0 for a
    /// rate that denies everything.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// T, the emission interval: nanoseconds per token.
    pub fn interval(&self) -> Nanos {
        self.interval
    }

    /// τ, the tolerance: how far the bucket's theoretical arrival time may run ahead of now.
    pub fn tolerance(&self) -> Nanos {
        self.tolerance
    }
}

/// The answer to one check. A denial is a value, not an error: it is the common case under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `remaining`: whole tokens left after this check; `reset_after`: time until the bucket is
    /// full again.
    Allowed {
        /// Whole tokens left after this check.
        remaining: u32,
        /// Nanoseconds until the bucket is full again (0 if it is full).
        reset_after: Nanos,
    },
    /// `retry_after`: earliest wait after which the same cost would be allowed (u64::MAX when
    /// never, e.g. cost > burst or a zero rate); nothing was charged.
    Denied {
        /// Nanoseconds to wait before the same cost would be allowed; `u64::MAX` for never.
        retry_after: Nanos,
        /// Nanoseconds until the bucket is full again.
        reset_after: Nanos,
    },
}

impl Decision {
    /// True for [`Decision::Allowed`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// Whole tokens left after the check; 0 when denied.
    pub fn remaining(&self) -> u32 {
        match *self {
            Decision::Allowed { remaining, .. } => remaining,
            Decision::Denied { .. } => 0,
        }
    }

    /// Nanoseconds until the limit is fully available again.
    pub fn reset_after(&self) -> Nanos {
        match *self {
            Decision::Allowed { reset_after, .. } | Decision::Denied { reset_after, .. } => {
                reset_after
            }
        }
    }

    /// The wait before the same check would pass: `None` when allowed, `Some(u64::MAX)` when
    /// it never will.
    pub fn retry_after(&self) -> Option<Nanos> {
        match *self {
            Decision::Allowed { .. } => None,
            Decision::Denied { retry_after, .. } => Some(retry_after),
        }
    }
}

/// One token bucket: a single AtomicU64 holding the theoretical arrival time (tat). Lock-free
/// (compare-exchange loop), allocation-free. A bucket whose tat <= now is full and equivalent to
/// no state.
///
/// The bucket does not own its [`Rate`]: each call passes one, so a config reload that changes
/// the rate takes effect on the next check with the state carried over.
#[derive(Debug, Default)]
pub struct Bucket {
    // Relaxed ordering throughout: the tat is the only shared datum and a single atomic's
    // modification order is total, so the compare-exchange alone makes each charge exact.
    // Nothing else is published through it.
    tat: AtomicU64,
}

impl Bucket {
    /// A full bucket (tat = 0, before any `now`).
    pub const fn new() -> Bucket {
        Bucket {
            tat: AtomicU64::new(0),
        }
    }

    /// Checks `cost` tokens at `now` and charges them iff allowed; cost 0 checks without
    /// consuming.
    ///
    /// A check that would push the tat past `u64::MAX` (the year 2554) is denied as never
    /// allowed rather than saturated, since a saturated tat would stop counting.
    pub fn check(&self, rate: &Rate, cost: u32, now: Nanos) -> Decision {
        let mut tat = self.tat.load(Ordering::Relaxed);
        if cost > rate.burst {
            return Decision::Denied {
                retry_after: u64::MAX,
                reset_after: tat.saturating_sub(now),
            };
        }
        // Plain u64 with checked sums (u128 division is a library call on the hot path). None
        // means "past u64::MAX": the tat could never hold it, so the check can never pass.
        let charge = u64::from(cost).checked_mul(rate.interval);
        // How far ahead of now the tat may run: τ, or less where the tat would pass u64::MAX.
        // Only a burst worth centuries of refill ever hits the second bound.
        let limit = rate.tolerance.min(u64::MAX - now);
        loop {
            // ahead = new − now, where new = max(tat, now) + cost × T.
            let ahead = charge.and_then(|charge| (tat.max(now) - now).checked_add(charge));
            let Some(ahead) = ahead.filter(|&ahead| ahead <= limit) else {
                let retry_after = match ahead {
                    // Here ahead > τ, and waiting ahead − τ makes ahead == τ: exact.
                    Some(ahead) if ahead <= u64::MAX - now => ahead - rate.tolerance,
                    _ => u64::MAX,
                };
                return Decision::Denied {
                    retry_after,
                    reset_after: tat.saturating_sub(now),
                };
            };
            // (limit − ahead) / T <= τ / T <= burst, so this fits a u32.
            let remaining = u32::try_from((limit - ahead) / rate.interval).unwrap_or(u32::MAX);
            let allowed = Decision::Allowed {
                remaining,
                reset_after: ahead,
            };
            if cost == 0 {
                // A free check stores nothing, so it never contends with charges.
                return allowed;
            }
            match self.tat.compare_exchange_weak(
                tat,
                now + ahead, // <= u64::MAX: ahead <= limit <= u64::MAX − now
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return allowed,
                Err(current) => tat = current,
            }
        }
    }

    /// Gives back `cost` tokens: moves tat back by cost×T, never below now (a bucket cannot be
    /// fuller than full). Used to undo a charge when another limit of the same request denied.
    pub fn refund(&self, rate: &Rate, cost: u32, now: Nanos) {
        if cost == 0 {
            return;
        }
        let back = saturate(u128::from(cost) * u128::from(rate.interval));
        // The closure returns None (no write) when the bucket is already full.
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                (tat > now).then(|| tat.saturating_sub(back).max(now))
            });
    }

    /// True when the bucket holds `burst` tokens at `now`: its state may be dropped.
    pub fn is_full(&self, now: Nanos) -> bool {
        self.tat.load(Ordering::Relaxed) <= now
    }
}

/// A `u128` as `u64`, `u64::MAX` when it does not fit.
fn saturate(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}
