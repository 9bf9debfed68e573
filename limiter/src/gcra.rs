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
    /// τ is exactly `burst` intervals (not saturated): a full bucket then holds `burst`
    /// tokens with no division to count them.
    whole: bool,
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
    ///
    /// Exact when `requests <= period` in nanoseconds (else T is cut to 1 ns) and τ is at most
    /// [`config::MAX_TOLERANCE_NANOS`] (2^62 ns, about 146 years), for every `now` below 2^63
    /// ns (the year 2262): quota files refuse limits past these bounds
    /// ([`config::Limit::excess`]).
    pub fn new(requests: u32, period: Duration, burst: u32) -> Rate {
        if requests == 0 || burst == 0 {
            return Rate {
                interval: u64::MAX,
                tolerance: 0,
                burst: 0,
                whole: false,
            };
        }
        let interval = period.as_nanos().div_ceil(u128::from(requests)).max(1);
        Rate::of(saturate(interval), burst)
    }

    /// The rate of one token per `interval` holding `burst` (at least 1).
    fn of(interval: Nanos, burst: u32) -> Rate {
        let tolerance = u128::from(interval) * u128::from(burst);
        Rate {
            interval,
            tolerance: saturate(tolerance),
            burst,
            whole: tolerance <= u128::from(u64::MAX),
        }
    }

    /// The capacity: the most tokens one check may take, and what a full bucket holds. 0 for a
    /// rate that denies everything.
    #[inline]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// T, the emission interval: nanoseconds per token.
    #[inline]
    pub fn interval(&self) -> Nanos {
        self.interval
    }

    /// τ, the tolerance: how far the bucket's theoretical arrival time may run ahead of now.
    #[inline]
    pub fn tolerance(&self) -> Nanos {
        self.tolerance
    }

    /// The decision for a check of `cost` on a bucket whose theoretical arrival time is
    /// `tat`, and the tat to store when it is allowed. Pure: [`Bucket::check`] applies it
    /// with a compare-exchange, and a remote store (Redis) applies the same rule in its
    /// script, then rebuilds the decision here from the tat it read.
    ///
    /// A check that would push the tat past `u64::MAX` (the year 2554) is denied as never
    /// allowed rather than saturated, since a saturated tat would stop counting.
    #[inline(always)]
    pub fn decide(&self, cost: u32, tat: Nanos, now: Nanos) -> (Decision, Option<Nanos>) {
        let denied = |ahead: Option<Nanos>| Decision::Denied {
            retry_after: match ahead {
                Some(ahead) if cost <= self.burst && ahead <= u64::MAX - now => {
                    ahead - self.tolerance
                }
                _ => u64::MAX,
            },
            reset_after: tat.saturating_sub(now),
        };
        if cost > self.burst {
            return (denied(None), None);
        }
        let limit = self.tolerance.min(u64::MAX - now);
        let ahead = u64::from(cost)
            .checked_mul(self.interval)
            .and_then(|charge| (tat.max(now) - now).checked_add(charge));
        match ahead.filter(|&ahead| ahead <= limit) {
            // ahead <= limit <= u64::MAX − now, so now + ahead cannot overflow.
            Some(ahead) => {
                // A full bucket (the usual case under the limit) holds `burst` tokens: no
                // division. Else whole intervals left below the limit.
                let remaining = if tat <= now && self.whole && limit == self.tolerance {
                    self.burst - cost
                } else {
                    u32::try_from((limit - ahead) / self.interval).unwrap_or(u32::MAX)
                };
                (
                    Decision::Allowed {
                        remaining,
                        reset_after: ahead,
                    },
                    Some(now + ahead),
                )
            }
            None => (denied(ahead), None),
        }
    }

    /// This replica's share of the rate when `replicas` replicas split it, such that the
    /// shares add up to at most the rate: the emission interval multiplied (each replica
    /// refills at rate / replicas) and the burst divided, rounded down. The remainder of
    /// the burst, up to `replicas − 1` tokens, goes to no replica (nothing tells one
    /// replica from another). A burst smaller than `replicas` leaves each a share of 0:
    /// the zero rate, which denies every positive cost. One replica's share is the rate.
    pub fn share(&self, replicas: u32) -> Rate {
        if replicas <= 1 || self.burst == 0 {
            return *self;
        }
        let burst = self.burst / replicas;
        if burst == 0 {
            return Rate::new(0, Duration::ZERO, 0);
        }
        let interval = self.interval.saturating_mul(u64::from(replicas));
        Rate::of(interval, burst)
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
    #[inline]
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// Whole tokens left after the check; 0 when denied.
    #[inline]
    pub fn remaining(&self) -> u32 {
        match *self {
            Decision::Allowed { remaining, .. } => remaining,
            Decision::Denied { .. } => 0,
        }
    }

    /// Nanoseconds until the limit is fully available again.
    #[inline]
    pub fn reset_after(&self) -> Nanos {
        match *self {
            Decision::Allowed { reset_after, .. } | Decision::Denied { reset_after, .. } => {
                reset_after
            }
        }
    }

    /// The wait before the same check would pass: `None` when allowed, `Some(u64::MAX)` when
    /// it never will.
    #[inline]
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
    #[inline(always)]
    pub fn check(&self, rate: &Rate, cost: u32, now: Nanos) -> Decision {
        let mut tat = self.tat.load(Ordering::Relaxed);
        let mut backoff = 1;
        loop {
            let (decision, new_tat) = rate.decide(cost, tat, now);
            let Some(new_tat) = new_tat.filter(|_| cost > 0) else {
                return decision;
            };
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return decision,
                Err(current) => {
                    // Another thread charged first: back off before retrying (longer at each
                    // failure), so threads on one hot bucket do not take its cache line from
                    // each other on every try.
                    for _ in 0..backoff {
                        std::hint::spin_loop();
                    }
                    backoff = (backoff * 2).min(64);
                    tat = current;
                }
            }
        }
    }

    /// Gives back `cost` tokens: moves tat back by cost×T, never below now (a bucket cannot be
    /// fuller than full). Used to undo a charge when another limit of the same request denied.
    #[inline]
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
    #[inline]
    pub fn is_full(&self, now: Nanos) -> bool {
        self.tat.load(Ordering::Relaxed) <= now
    }
}

/// A `u128` as `u64`, `u64::MAX` when it does not fit.
fn saturate(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}
