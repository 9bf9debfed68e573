//! A rate split between replicas: the shares add up to at most the rate.

use std::time::Duration;

use limiter::{Bucket, Rate};

const MINUTE: Duration = Duration::from_secs(60);

/// Tokens `buckets` give out at `now`, each drained one token at a time.
fn drain(buckets: &[Bucket], rate: &Rate, now: u64) -> u32 {
    let mut allowed = 0;
    for bucket in buckets {
        while bucket.check(rate, 1, now).is_allowed() {
            allowed += 1;
        }
    }
    allowed
}

// Reproduces 5 a minute split between 2 replicas allowing 6: each share's burst was
// rounded up.
#[test]
fn five_a_minute_over_two_replicas_allows_four_at_once() {
    let share = Rate::new(5, MINUTE, 5).share(2);
    assert_eq!(share.burst(), 2);
    let fleet = [Bucket::new(), Bucket::new()];
    assert_eq!(drain(&fleet, &share, 1_000_000_000), 4);
}

#[test]
fn replica_shares_add_up_to_at_most_the_rate_over_a_period() {
    let period = MINUTE.as_nanos() as u64;
    for requests in 1..=24 {
        for replicas in 1..=7 {
            let rate = Rate::new(requests, MINUTE, requests);
            let share = rate.share(replicas);
            assert!(share.burst() * replicas <= requests);
            let fleet: Vec<Bucket> = (0..replicas).map(|_| Bucket::new()).collect();
            // Full at the start, then a period of refill: a bucket alone gives out at most
            // its burst and its rate.
            let start = 1_000_000_000;
            let allowed = drain(&fleet, &share, start) + drain(&fleet, &share, start + period);
            assert!(
                allowed <= 2 * requests,
                "{requests}/min over {replicas} replicas allowed {allowed}"
            );
            // Less than one token each: every replica denies.
            if requests < replicas {
                assert_eq!(allowed, 0, "{requests}/min over {replicas}");
            }
        }
    }
}
