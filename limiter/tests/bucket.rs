//! Behaviour of one GCRA [`Bucket`] under a [`FakeClock`]: burst, refill, cost 0, oversize costs,
//! refunds, exact retry-after, zero rates and overflow at the edges of `u64`.

use std::time::Duration;

use limiter::{Bucket, Clock, Decision, FakeClock, Rate};

/// An epoch-like start, so sums near real timestamps are exercised.
const START: u64 = 1_700_000_000_000_000_000;
const SECOND: u64 = 1_000_000_000;

fn ten_per_second() -> Rate {
    Rate::new(10, Duration::from_secs(1), 10)
}

#[test]
fn a_fresh_bucket_allows_exactly_burst_immediately_then_denies() {
    let clock = FakeClock::new(START);
    let bucket = Bucket::new();
    let rate = ten_per_second();
    for left in (0..10).rev() {
        assert_eq!(
            bucket.check(&rate, 1, clock.now()),
            Decision::Allowed {
                remaining: left,
                reset_after: (10 - u64::from(left)) * SECOND / 10,
            }
        );
    }
    assert_eq!(
        bucket.check(&rate, 1, clock.now()),
        Decision::Denied {
            retry_after: SECOND / 10,
            reset_after: SECOND,
        }
    );
}

#[test]
fn a_token_refills_after_one_interval() {
    let clock = FakeClock::new(START);
    let bucket = Bucket::new();
    let rate = ten_per_second();
    assert!(bucket.check(&rate, 10, clock.now()).is_allowed());
    clock.advance(Duration::from_nanos(rate.interval() - 1));
    assert!(!bucket.check(&rate, 1, clock.now()).is_allowed());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(bucket.check(&rate, 1, clock.now()).remaining(), 0);
    assert!(!bucket.check(&rate, 1, clock.now()).is_allowed());
    clock.advance(Duration::from_secs(1));
    assert_eq!(bucket.check(&rate, 0, clock.now()).remaining(), 10);
}

#[test]
fn cost_zero_never_consumes_and_reports_remaining() {
    let clock = FakeClock::new(START);
    let bucket = Bucket::new();
    let rate = ten_per_second();
    for _ in 0..100 {
        assert_eq!(
            bucket.check(&rate, 0, clock.now()),
            Decision::Allowed {
                remaining: 10,
                reset_after: 0
            }
        );
    }
    assert!(bucket.is_full(clock.now()));
    bucket.check(&rate, 4, clock.now());
    for _ in 0..100 {
        assert_eq!(bucket.check(&rate, 0, clock.now()).remaining(), 6);
    }
    bucket.check(&rate, 6, clock.now());
    assert_eq!(
        bucket.check(&rate, 0, clock.now()),
        Decision::Allowed {
            remaining: 0,
            reset_after: SECOND
        }
    );
}

#[test]
fn cost_above_burst_is_denied_with_retry_after_max_and_charges_nothing() {
    let clock = FakeClock::new(START);
    let bucket = Bucket::new();
    let rate = ten_per_second();
    assert_eq!(
        bucket.check(&rate, 11, clock.now()),
        Decision::Denied {
            retry_after: u64::MAX,
            reset_after: 0
        }
    );
    assert_eq!(
        bucket.check(&rate, u32::MAX, clock.now()).retry_after(),
        Some(u64::MAX)
    );
    assert!(bucket.is_full(clock.now()));
    assert_eq!(bucket.check(&rate, 10, clock.now()).remaining(), 0);
}

#[test]
fn a_denied_check_changes_nothing() {
    let clock = FakeClock::new(START);
    let bucket = Bucket::new();
    let rate = ten_per_second();
    bucket.check(&rate, 8, clock.now());
    let before = bucket.check(&rate, 0, clock.now());
    for _ in 0..1000 {
        assert!(!bucket.check(&rate, 3, clock.now()).is_allowed());
    }
    assert_eq!(bucket.check(&rate, 0, clock.now()), before);
    assert_eq!(bucket.check(&rate, 2, clock.now()).remaining(), 0);
}

#[test]
fn refund_gives_back_what_was_charged() {
    let clock = FakeClock::new(START);
    let bucket = Bucket::new();
    let rate = ten_per_second();
    bucket.check(&rate, 3, clock.now());
    let before = bucket.check(&rate, 0, clock.now());
    bucket.check(&rate, 5, clock.now());
    bucket.refund(&rate, 5, clock.now());
    assert_eq!(bucket.check(&rate, 0, clock.now()), before);
}

#[test]
fn refund_never_moves_tat_below_now() {
    let clock = FakeClock::new(START);
    let bucket = Bucket::new();
    let rate = ten_per_second();
    bucket.check(&rate, 5, clock.now());
    clock.advance(Duration::from_millis(300));
    bucket.refund(&rate, 10, clock.now());
    assert!(bucket.is_full(clock.now()));
    // Full means exactly burst: the refund of 10 did not bank 8 extra tokens.
    assert_eq!(bucket.check(&rate, 10, clock.now()).remaining(), 0);
    assert!(!bucket.check(&rate, 1, clock.now()).is_allowed());
    // A refund to a full bucket is a no-op too.
    let full = Bucket::new();
    full.refund(&rate, u32::MAX, clock.now());
    assert_eq!(full.check(&rate, 10, clock.now()).remaining(), 0);
    assert!(!full.check(&rate, 1, clock.now()).is_allowed());
}

#[test]
fn retry_after_is_exact_to_the_nanosecond() {
    let rates = [
        ten_per_second(),
        Rate::new(3, Duration::from_secs(1), 3), // T rounds up to 333_333_334
        Rate::new(7, Duration::from_secs(60), 2),
        Rate::new(1, Duration::from_secs(365 * 86_400), 5),
    ];
    for rate in rates {
        for cost in 1..=rate.burst() {
            let clock = FakeClock::new(START);
            let bucket = Bucket::new();
            bucket.check(&rate, rate.burst(), clock.now());
            clock.advance(Duration::from_nanos(1));
            let Decision::Denied { retry_after, .. } = bucket.check(&rate, cost, clock.now())
            else {
                panic!("an empty bucket denies {cost} tokens of {rate:?}");
            };
            clock.advance(Duration::from_nanos(retry_after - 1));
            assert_eq!(
                bucket.check(&rate, cost, clock.now()).retry_after(),
                Some(1),
                "{rate:?} cost {cost}"
            );
            clock.advance(Duration::from_nanos(1));
            assert!(bucket.check(&rate, cost, clock.now()).is_allowed());
        }
    }
}

#[test]
fn zero_requests_or_zero_burst_denies_every_positive_cost() {
    let clock = FakeClock::new(START);
    for rate in [
        Rate::new(0, Duration::from_secs(1), 10),
        Rate::new(10, Duration::from_secs(1), 0),
        Rate::new(0, Duration::ZERO, 0),
    ] {
        let bucket = Bucket::new();
        assert_eq!(rate.burst(), 0);
        for cost in [1, 2, u32::MAX] {
            assert_eq!(
                bucket.check(&rate, cost, clock.now()),
                Decision::Denied {
                    retry_after: u64::MAX,
                    reset_after: 0
                }
            );
        }
        assert_eq!(
            bucket.check(&rate, 0, clock.now()),
            Decision::Allowed {
                remaining: 0,
                reset_after: 0
            }
        );
    }
}

#[test]
fn the_interval_rounds_up_and_tolerance_is_burst_intervals() {
    let rate = Rate::new(3, Duration::from_secs(1), 5);
    assert_eq!(rate.interval(), 333_333_334);
    assert_eq!(rate.tolerance(), 5 * 333_333_334);
    let exact = Rate::new(4, Duration::from_secs(1), 4);
    assert_eq!(exact.interval(), 250_000_000);
    assert_eq!(exact.tolerance(), SECOND);
}

#[test]
fn a_zero_period_means_one_token_per_nanosecond() {
    let rate = Rate::new(10, Duration::ZERO, 10);
    assert_eq!(rate.interval(), 1);
    let bucket = Bucket::new();
    assert!(bucket.check(&rate, 10, START).is_allowed());
    assert_eq!(bucket.check(&rate, 1, START).retry_after(), Some(1));
}

#[test]
fn rates_beyond_u64_saturate_instead_of_overflowing() {
    let forever = Rate::new(1, Duration::MAX, u32::MAX);
    assert_eq!(forever.interval(), u64::MAX);
    assert_eq!(forever.tolerance(), u64::MAX);
    let bucket = Bucket::new();
    // One token would put the tat past the year 2554: never, rather than a wrapped tat.
    assert_eq!(
        bucket.check(&forever, 1, START).retry_after(),
        Some(u64::MAX)
    );
    assert!(bucket.is_full(START));

    // A burst worth more than 584 years of refill saturates τ; remaining counts what still fits
    // before the tat would pass u64::MAX (the year 2554), and is exact.
    let yearly = Rate::new(1, Duration::from_secs(365 * 86_400), u32::MAX);
    assert_eq!(yearly.tolerance(), u64::MAX);
    let bucket = Bucket::new();
    let remaining = bucket.check(&yearly, 1, START).remaining();
    assert_eq!(
        u64::from(remaining),
        (u64::MAX - START) / yearly.interval() - 1
    );
    assert_eq!(
        bucket.check(&yearly, remaining + 1, START).retry_after(),
        Some(u64::MAX)
    );
    assert_eq!(bucket.check(&yearly, remaining, START).remaining(), 0);
    assert_eq!(
        bucket.check(&yearly, u32::MAX, START).retry_after(),
        Some(u64::MAX)
    );
}

#[test]
fn checks_at_the_end_of_time_do_not_panic() {
    let rate = ten_per_second();
    let bucket = Bucket::new();
    assert_eq!(
        bucket.check(&rate, 1, u64::MAX).retry_after(),
        Some(u64::MAX)
    );
    assert!(bucket.check(&rate, 0, u64::MAX).is_allowed());
    bucket.refund(&rate, u32::MAX, u64::MAX);
    assert!(bucket.is_full(u64::MAX));
    let bucket = Bucket::new();
    assert!(bucket.check(&rate, 10, 0).is_allowed());
    assert!(!bucket.is_full(0));
}

#[test]
fn a_check_with_an_earlier_now_is_no_more_generous() {
    let clock = FakeClock::new(START + SECOND);
    let bucket = Bucket::new();
    let rate = ten_per_second();
    bucket.check(&rate, 10, clock.now());
    // Another thread's older timestamp arrives late: it sees the bucket emptier, not fuller.
    clock.set(START);
    assert_eq!(
        bucket.check(&rate, 1, clock.now()),
        Decision::Denied {
            retry_after: SECOND + SECOND / 10,
            reset_after: 2 * SECOND
        }
    );
}

#[test]
fn a_new_rate_applies_to_existing_state_on_the_next_check() {
    let bucket = Bucket::new();
    let old = ten_per_second();
    bucket.check(&old, 5, START); // tat = START + 500 ms
    // Reloaded as 2/s: the 500 ms already charged is one token's worth of the new rate.
    let new = Rate::new(2, Duration::from_secs(1), 2);
    assert_eq!(
        bucket.check(&new, 0, START),
        Decision::Allowed {
            remaining: 1,
            reset_after: SECOND / 2
        }
    );
}

#[test]
fn decision_accessors_read_either_variant() {
    let allowed = Decision::Allowed {
        remaining: 3,
        reset_after: 7,
    };
    assert!(allowed.is_allowed());
    assert_eq!(
        (
            allowed.remaining(),
            allowed.reset_after(),
            allowed.retry_after()
        ),
        (3, 7, None)
    );
    let denied = Decision::Denied {
        retry_after: 5,
        reset_after: 9,
    };
    assert!(!denied.is_allowed());
    assert_eq!(
        (
            denied.remaining(),
            denied.reset_after(),
            denied.retry_after()
        ),
        (0, 9, Some(5))
    );
}
