//! [`LocalLimits`] over any request sequence (proptest) and under racing threads: a bucket
//! never allows more than `max_tokens + rate × elapsed`; and a reload keeps the buckets of
//! unchanged rules.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use limiter::{Descriptor, FakeClock, LocalLimits, local};
use proptest::prelude::*;

const START: u64 = 1_700_000_000_000_000_000;

fn limits(yaml: &str, clock: &FakeClock) -> LocalLimits {
    let section = local::parse_section("t.yaml", &format!("local:\n{yaml}")).unwrap();
    LocalLimits::builder(&section).clock(clock.clone()).build()
}

/// allowed ≤ max_tokens + tokens_per_fill × elapsed / fill_interval, multiplied out.
fn within_bound(allowed: u64, max: u64, per_fill: u64, interval_ns: u64, elapsed_ns: u64) -> bool {
    u128::from(allowed) * u128::from(interval_ns)
        <= u128::from(max) * u128::from(interval_ns) + u128::from(per_fill) * u128::from(elapsed_ns)
}

proptest! {
    #[test]
    fn a_local_bucket_never_allows_more_than_max_tokens_plus_rate_times_elapsed(
        max in 0u32..20,
        per_fill in 1u32..10,
        interval_ms in 50u64..2_000,
        steps in prop::collection::vec((0u64..300, 0i64..4, 0usize..3), 1..150),
    ) {
        let clock = FakeClock::new(START);
        let yaml = format!(
            "  descriptors:\n    - entries: [{{key: user}}]\n      token_bucket: {{max_tokens: {max}, \
             tokens_per_fill: {per_fill}, fill_interval: {interval_ms}ms}}\n"
        );
        let limits = limits(&yaml, &clock);
        let users = ["alice", "bob", "carol"];
        let mut allowed = [0u64; 3];
        for (advance_ms, hits, user) in steps {
            clock.advance(Duration::from_millis(advance_ms));
            let request = [Descriptor::new([("user", users[user])]).hits(hits)];
            if !limits.check(&request).is_denied() {
                allowed[user] += hits as u64;
            }
            let elapsed = clock_elapsed(&clock);
            for taken in allowed {
                prop_assert!(within_bound(
                    taken, u64::from(max), u64::from(per_fill), interval_ms * 1_000_000, elapsed
                ));
            }
        }
    }
}

fn clock_elapsed(clock: &FakeClock) -> u64 {
    use limiter::Clock;
    clock.now() - START
}

#[test]
fn threads_racing_on_one_bucket_never_exceed_the_bound() {
    let clock = FakeClock::new(START);
    let limits = limits(
        "  token_bucket: {max_tokens: 100, tokens_per_fill: 10, fill_interval: 100ms}\n",
        &clock,
    );
    let allowed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for thread in 0..4 {
            let (limits, clock, allowed) = (&limits, &clock, &allowed);
            s.spawn(move || {
                for i in 0..20_000 {
                    // One thread moves time: 1 ms every 100 checks, 200 ms in all.
                    if thread == 0 && i % 100 == 0 {
                        clock.advance(Duration::from_millis(1));
                    }
                    if !limits.check(&[]).is_denied() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let elapsed = clock_elapsed(&clock);
    let allowed = allowed.load(Ordering::Relaxed);
    assert!(
        within_bound(allowed, 100, 10, 100_000_000, elapsed),
        "{allowed} in {elapsed} ns"
    );
    // And the bucket was really exhausted, so the bound was what held them back.
    assert!(allowed >= 100);
}

#[test]
fn threads_on_one_wildcard_value_share_one_bucket() {
    let clock = FakeClock::new(START);
    let limits = limits(
        "  descriptors:\n    - entries: [{key: user}]\n      token_bucket: {max_tokens: 1000, fill_interval: 1h}\n",
        &clock,
    );
    let allowed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1_000 {
                    let request = [Descriptor::new([("user", "alice")])];
                    if !limits.check(&request).is_denied() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(allowed.load(Ordering::Relaxed), 1000);
}

#[test]
fn a_reload_keeps_the_buckets_of_unchanged_rules_and_starts_new_ones_full() {
    let clock = FakeClock::new(START);
    let before = "  token_bucket: {max_tokens: 2, fill_interval: 1m}
  descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
    - entries: [{key: path, value: /a}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
";
    let limits = limits(before, &clock);
    let alice = [Descriptor::new([("user", "alice")])];
    let path = [Descriptor::new([("path", "/a")])];
    assert!(!limits.check(&alice).is_denied());
    assert!(!limits.check(&path).is_denied());
    assert!(limits.check(&alice).is_denied()); // the default bucket is empty too

    let after = "  token_bucket: {max_tokens: 2, fill_interval: 1m}
  always_consume_default_token_bucket: false
  descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
    - entries: [{key: path, value: /b}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
";
    limits.reload(&local::parse_section("t.yaml", &format!("local:\n{after}")).unwrap());
    // alice's per-value bucket survived; /b is new and full; the default is still empty.
    assert!(limits.check(&alice).is_denied());
    assert!(
        !limits
            .check(&[Descriptor::new([("path", "/b")])])
            .is_denied()
    );
    assert!(limits.check(&[]).is_denied());
    assert_eq!(limits.dynamic_buckets(), 1);
}

#[test]
fn a_failed_reload_keeps_the_limits_in_force() {
    let clock = FakeClock::new(START);
    let limits = limits(
        "  token_bucket: {max_tokens: 1, fill_interval: 1m}\n",
        &clock,
    );
    assert!(!limits.check(&[]).is_denied());
    let err = limits
        .reload_from_quota_file("tests/no_such_file.yaml")
        .unwrap_err();
    assert!(err.to_string().contains("no_such_file.yaml"), "{err}");
    assert!(limits.check(&[]).is_denied());
}

#[test]
fn a_file_without_a_local_section_is_refused_by_name() {
    let err = local::parse_section("rls.yaml", "domain: d\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "rls.yaml: no document has a local section, and no RateLimit resource a mode: local rule"
    );
}
