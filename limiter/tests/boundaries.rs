//! The bounds quota files are held to ([`config::MAX_TOLERANCE_NANOS`],
//! [`config::MAX_WINDOW_SECS`], one token a nanosecond) are where the maths stops being
//! exact: at each bound every answer is exact, one step past it one is not; and
//! `config::Limit::excess` accepts exactly the limits whose [`Rate`] stays within them.

use std::num::NonZeroU32;
use std::time::Duration;

use config::{Algorithm, Limit, MAX_TOLERANCE_NANOS, MAX_WINDOW_SECS, Unit};
use limiter::{Bucket, Decision, Rate, Window};
use proptest::prelude::*;

const SECOND: u64 = 1_000_000_000;
/// 2023-11-14: an ordinary `now`.
const TODAY: u64 = 1_700_000_000 * SECOND;
/// The last instant the bounds cover: 2^63 ns after 1970, in April 2262.
const LAST: u64 = (1 << 63) - 1;

/// Checks `rate` at `now` on a fresh bucket, then again, then when a token is due, and
/// returns the four decisions.
fn refill_cycle(rate: &Rate, now: u64) -> [Decision; 4] {
    let bucket = Bucket::new();
    let tau = rate.tolerance();
    let interval = rate.interval();
    [
        bucket.check(rate, 1, now),
        bucket.check(rate, 1, now),
        bucket.check(rate, 1, now + interval - 1),
        bucket.check(rate, 1, now + interval),
    ]
    .map(|d| {
        // Every time in a decision is within τ, whatever the bucket.
        assert!(d.reset_after() <= tau, "{d:?}");
        d
    })
}

#[test]
fn a_bucket_holding_the_most_refill_is_exact_until_2262() {
    let rate = Rate::new(1, Duration::from_nanos(MAX_TOLERANCE_NANOS), 1);
    assert_eq!(rate.tolerance(), MAX_TOLERANCE_NANOS);
    let max = MAX_TOLERANCE_NANOS;
    for now in [TODAY, LAST] {
        assert_eq!(
            refill_cycle(&rate, now),
            [
                Decision::Allowed {
                    remaining: 0,
                    reset_after: max
                },
                Decision::Denied {
                    retry_after: max,
                    reset_after: max
                },
                Decision::Denied {
                    retry_after: 1,
                    reset_after: 1
                },
                Decision::Allowed {
                    remaining: 0,
                    reset_after: max
                },
            ],
            "now {now}"
        );
    }
}

#[test]
fn one_nanosecond_more_of_refill_and_a_denial_in_2262_reads_never() {
    let rate = Rate::new(1, Duration::from_nanos(MAX_TOLERANCE_NANOS + 1), 1);
    let [first, second, ..] = refill_cycle(&rate, LAST);
    assert!(first.is_allowed());
    // The wait is τ, but now + 2τ passed 2^64: the maths can only say "never".
    assert_eq!(second.retry_after(), Some(u64::MAX));
}

// The fault behind refusing `unit: year, unit_multiplier: 584`: today, such a bucket denies
// its very first request, as its arrival time would pass 2^64 ns.
#[test]
fn a_bucket_of_584_years_denies_its_first_request() {
    let years_584 = Duration::from_secs(584 * 365 * 86_400);
    let rate = Rate::new(1, years_584, 1);
    assert!(!Bucket::new().check(&rate, 1, TODAY).is_allowed());
}

#[test]
fn one_token_a_nanosecond_is_the_finest_rate() {
    let rate = Rate::new(1_000_000_000, Duration::from_secs(1), 1);
    assert_eq!(rate.interval(), 1);
    let bucket = Bucket::new();
    assert!(bucket.check(&rate, 1, TODAY).is_allowed());
    assert!(!bucket.check(&rate, 1, TODAY).is_allowed());
    assert!(bucket.check(&rate, 1, TODAY + 1).is_allowed());
    // One more a second and the interval cannot shrink: 10^9 a second, not 10^9 + 1.
    assert_eq!(
        Rate::new(1_000_000_001, Duration::from_secs(1), 1).interval(),
        1
    );
}

/// The end of the epoch-aligned window of `period` seconds holding `now`, in nanoseconds.
fn window_end(period: u64, now: u64) -> u64 {
    let now_s = now / SECOND;
    (now_s - now_s % period + period) * SECOND
}

#[test]
fn the_longest_window_is_exact_and_a_longer_one_is_cut() {
    for now in [TODAY, LAST] {
        let window = Window::new();
        let count = window.hit(MAX_WINDOW_SECS, 3, now);
        assert_eq!(count.after, 3);
        assert_eq!(count.reset_after, window_end(MAX_WINDOW_SECS, now) - now);
        let end = now + count.reset_after;
        assert_eq!(window.hit(MAX_WINDOW_SECS, 1, end - 1).after, 4);
        assert_eq!(window.hit(MAX_WINDOW_SECS, 1, end).after, 1);
    }
    // One second longer: counted as the longest window, not as asked.
    let longer = MAX_WINDOW_SECS + 1;
    let count = Window::new().hit(longer, 1, TODAY);
    assert_ne!(count.reset_after, window_end(longer, TODAY) - TODAY);
    assert_eq!(
        count.reset_after,
        window_end(MAX_WINDOW_SECS, TODAY) - TODAY
    );
}

const UNITS: [Unit; 7] = [
    Unit::Second,
    Unit::Minute,
    Unit::Hour,
    Unit::Day,
    Unit::Week,
    Unit::Month,
    Unit::Year,
];

fn token_bucket(unit: Unit, multiplier: u32, requests: u32, burst: u32) -> Limit {
    Limit {
        name: None,
        unit,
        unit_multiplier: NonZeroU32::new(multiplier).expect("non-zero"),
        requests_per_unit: requests,
        burst,
        algorithm: Algorithm::TokenBucket,
        replaces: Vec::new(),
    }
}

proptest! {
    /// The bound `config` checks is the one `Rate` needs, computed the same way.
    #[test]
    fn config_accepts_exactly_the_token_buckets_within_the_bounds(
        unit in 0..UNITS.len(),
        // Small and huge multipliers, requests and bursts, around the bounds.
        multiplier in prop_oneof![1u32..100, 1u32..200_000, any::<u32>().prop_map(|m| m.max(1))],
        requests in prop_oneof![1u32..10, 1u32..2_000_000_000, any::<u32>().prop_map(|r| r.max(1))],
        burst in prop_oneof![1u32..10, 1u32..100_000, any::<u32>().prop_map(|b| b.max(1))],
    ) {
        let limit = token_bucket(UNITS[unit], multiplier, requests, burst);
        let period = limit.period();
        let rate = Rate::new(requests, period, burst);
        let exact_interval = period.as_nanos().div_ceil(u128::from(requests));
        // At most one token a nanosecond, the interval not saturated, τ not saturated and
        // within the bound.
        let within = u128::from(requests) <= period.as_nanos()
            && u128::from(rate.interval()) == exact_interval
            && u128::from(rate.tolerance()) == exact_interval * u128::from(burst)
            && rate.tolerance() <= MAX_TOLERANCE_NANOS;
        prop_assert_eq!(limit.excess().is_none(), within, "{:?} gives {:?}", limit, rate);
    }

    /// At a `now` up to 2262, a bucket within the bounds answers a denial with its exact
    /// wait, never "never".
    #[test]
    fn buckets_within_the_bounds_never_say_never(
        burst in 1u32..1000,
        seed in any::<u64>(),
        at_the_bound in any::<bool>(),
        now in TODAY..=LAST,
    ) {
        let longest = MAX_TOLERANCE_NANOS / u64::from(burst);
        let interval = if at_the_bound { longest } else { 1 + seed % longest };
        let rate = Rate::new(1, Duration::from_nanos(interval), burst);
        let bucket = Bucket::new();
        prop_assert!(bucket.check(&rate, burst, now).is_allowed());
        let denied = bucket.check(&rate, burst, now);
        prop_assert_eq!(denied.retry_after(), Some(rate.tolerance()));
    }
}
