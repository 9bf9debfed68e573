//! Properties of the bucket maths over arbitrary sequences (proptest), and exactness under
//! threads racing on one bucket or window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use limiter::{Bucket, Decision, Rate, Window};
use proptest::prelude::*;

const START: u64 = 1_700_000_000_000_000_000;

/// (requests, period_ns, burst): periods from 1 ns to 10 s and bursts from 1 to 50. Short
/// periods give intervals of a few nanoseconds, where rounding T up or down is a large fraction
/// of T and an error would show within a few hundred steps.
fn rates() -> impl Strategy<Value = (u32, u64, u32)> {
    let periods = prop_oneof![
        1u64..1_000,
        1_000u64..1_000_000,
        1_000_000u64..10_000_000_000
    ];
    (1u32..1000, periods, 1u32..50)
}

/// (time advance in thousandths of one token's interval, cost) pairs. Time moves by about a
/// token per step and costs are mostly small, so runs keep the bucket drained and the rate
/// bound binds; sometimes a cost goes past the burst.
fn steps() -> impl Strategy<Value = Vec<(u64, u32)>> {
    let costs = prop_oneof![4 => 0u32..3, 1 => 0u32..60];
    prop::collection::vec((0u64..2_000, costs), 1..200)
}

/// `thousandths` of the exact interval `period_ns / requests`, at least 1 ns when not 0.
fn advance(requests: u32, period_ns: u64, thousandths: u64) -> u64 {
    if thousandths == 0 {
        0
    } else {
        (period_ns * thousandths / (1000 * u64::from(requests))).max(1)
    }
}

/// A bucket that has seen exactly the allowed charges of a run, to probe a state without
/// disturbing the original (denied checks change nothing, so they need no replay).
fn replay(rate: &Rate, charges: &[(u64, u32)]) -> Bucket {
    let bucket = Bucket::new();
    for &(at, cost) in charges {
        assert!(bucket.check(rate, cost, at).is_allowed());
    }
    bucket
}

proptest! {
    /// The count of tokens left is the same whether the bucket was full (counted without a
    /// division) or not: whole intervals between the new arrival time and the limit.
    #[test]
    fn tokens_left_are_whole_intervals_below_the_limit_full_or_not(
        (requests, period_ns, burst) in rates(),
        behind in prop_oneof![Just(0u64), 0u64..100_000_000_000],
        ahead in prop_oneof![Just(0u64), 1u64..10_000_000_000],
        cost in 0u32..60,
    ) {
        let rate = Rate::new(requests, Duration::from_nanos(period_ns), burst);
        // A tat `behind` before now (full) or `ahead` of it.
        let tat = if ahead > 0 { START + ahead } else { START - behind };
        let (decision, _) = rate.decide(cost, tat, START);
        if let Decision::Allowed { remaining, reset_after } = decision {
            let left = (rate.tolerance() - reset_after) / rate.interval();
            prop_assert_eq!(u64::from(remaining), left);
        }
    }

    #[test]
    fn a_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(
        (requests, period_ns, burst) in rates(),
        steps in steps(),
    ) {
        let rate = Rate::new(requests, Duration::from_nanos(period_ns), burst);
        let bucket = Bucket::new();
        let mut now = START;
        let mut allowed: u128 = 0;
        for (thousandths, cost) in steps {
            now += advance(requests, period_ns, thousandths);
            if bucket.check(&rate, cost, now).is_allowed() {
                allowed += u128::from(cost);
            }
            // allowed <= burst + requests × elapsed / period, multiplied out to stay exact.
            let elapsed = u128::from(now - START);
            prop_assert!(
                allowed * u128::from(period_ns)
                    <= u128::from(burst) * u128::from(period_ns) + elapsed * u128::from(requests),
                "allowed {} tokens in {} ns", allowed, elapsed
            );
        }
    }

    #[test]
    fn remaining_and_retry_after_are_exact(
        (requests, period_ns, burst) in rates(),
        steps in steps(),
    ) {
        let rate = Rate::new(requests, Duration::from_nanos(period_ns), burst);
        let bucket = Bucket::new();
        let mut charges = Vec::new();
        let mut now = START;
        for (thousandths, cost) in steps {
            now += advance(requests, period_ns, thousandths);
            match bucket.check(&rate, cost, now) {
                Decision::Allowed { remaining, .. } => {
                    charges.push((now, cost));
                    // Exactly `remaining` more tokens fit at this instant.
                    let probe = replay(&rate, &charges);
                    prop_assert!(probe.check(&rate, remaining, now).is_allowed());
                    let probe = replay(&rate, &charges);
                    prop_assert!(!probe.check(&rate, remaining + 1, now).is_allowed());
                }
                Decision::Denied { retry_after, .. } if cost <= burst => {
                    prop_assert!(retry_after >= 1);
                    let probe = replay(&rate, &charges);
                    prop_assert!(!probe.check(&rate, cost, now + retry_after - 1).is_allowed());
                    prop_assert!(probe.check(&rate, cost, now + retry_after).is_allowed());
                }
                Decision::Denied { retry_after, .. } => prop_assert_eq!(retry_after, u64::MAX),
            }
        }
    }

    #[test]
    fn a_refund_right_after_a_charge_restores_the_bucket(
        (requests, period_ns, burst) in rates(),
        steps in steps(),
        cost in 1u32..50,
    ) {
        let rate = Rate::new(requests, Duration::from_nanos(period_ns), burst);
        let bucket = Bucket::new();
        let mut now = START;
        for (thousandths, step_cost) in steps {
            now += advance(requests, period_ns, thousandths);
            bucket.check(&rate, step_cost, now);
        }
        let before = bucket.check(&rate, 0, now);
        if bucket.check(&rate, cost, now).is_allowed() {
            bucket.refund(&rate, cost, now);
        }
        prop_assert_eq!(bucket.check(&rate, 0, now), before);
    }
}

#[test]
fn threads_hammering_one_bucket_at_one_instant_allow_exactly_burst() {
    for burst in [1, 7, 1000, 10_000] {
        let rate = Rate::new(burst, Duration::from_secs(1), burst);
        let bucket = Bucket::new();
        let allowed = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mine = (0..burst).filter(|_| bucket.check(&rate, 1, START).is_allowed());
                    allowed.fetch_add(mine.count() as u64, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), u64::from(burst));
    }
}

#[test]
fn threads_hitting_one_window_lose_no_hit() {
    let window = Window::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    window.hit(60, 1, START);
                }
            });
        }
    });
    assert_eq!(window.peek(60, START).after, 40_000);
}
