//! Limits at the largest period, burst, rate and window a quota file may have, run through
//! the Redis store's Lua scripts on a real `redis-server` and through the memory store: both
//! give the exact answers, at an ordinary time and at the last instant the bounds cover
//! (2^63 ns after 1970, in 2262). One step past each bound is refused when the file loads
//! (config's `tests/bounds.rs`).

mod common;

use common::redis::RedisServer;
use common::{one_check, redis_options};
use config::{Limit, LoadOptions, MAX_TOLERANCE_NANOS, MAX_WINDOW_SECS, QuotaSet};
use limiter::Decision;
use rls::store::redis::{Endpoint, RedisStore};
use rls::store::{BucketStore, MemoryStore, Meter};

const SECOND: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * SECOND;
/// One token per 146 years, the longest period of a token bucket of one.
const YEARS_146: u64 = 146 * 365 * DAY;
/// 2023-11-14: an ordinary time.
const TODAY: u64 = common::START_SECS * SECOND;
/// The last instant the bounds cover.
const LAST: u64 = (1 << 63) - 1;

const QUOTAS: &str = "domain: edge
descriptors:
  - key: period
    rate_limit: {unit: year, unit_multiplier: 146, requests_per_unit: 1}
  - key: burst
    rate_limit: {unit: day, requests_per_unit: 1, burst: 53375}
  - key: rate
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: window
    rate_limit: {algorithm: fixed_window, unit: second, unit_multiplier: 1073741824, requests_per_unit: 2}
";

/// The meter of the limit at `key`, as the server builds it.
fn meter(quotas: &QuotaSet, key: &str) -> Meter {
    let rule = quotas.domain("edge").and_then(|d| d.resolve(&[(key, "x")]));
    let limit: &Limit = &rule.expect("a rule").limits[0];
    assert_eq!(limit.excess(), None, "{key} is within the bounds");
    Meter::from(limit)
}

fn allowed(remaining: u32, reset_after: u64) -> Decision {
    Decision::Allowed {
        remaining,
        reset_after,
    }
}

fn denied(retry_after: u64, reset_after: u64) -> Decision {
    Decision::Denied {
        retry_after,
        reset_after,
    }
}

/// A check's time (nanoseconds after the start), its cost, and the exact answer.
type Step = (u64, u32, Decision);

/// Each limit's steps from `start`.
fn cases(start: u64) -> Vec<(&'static str, Vec<Step>)> {
    let tau = YEARS_146;
    let burst_tau = 53_375 * DAY;
    let window_end = {
        let now_s = start / SECOND;
        (now_s - now_s % MAX_WINDOW_SECS + MAX_WINDOW_SECS) * SECOND - start
    };
    vec![
        (
            "period",
            vec![
                (0, 1, allowed(0, tau)),
                (0, 1, denied(tau, tau)),
                (tau - 1, 1, denied(1, 1)),
                (tau, 1, allowed(0, tau)),
            ],
        ),
        (
            "burst",
            vec![
                (0, 53_375, allowed(0, burst_tau)),
                (0, 1, denied(DAY, burst_tau)),
                (DAY, 1, allowed(0, burst_tau)),
                (DAY + burst_tau, 0, allowed(53_375, 0)),
            ],
        ),
        (
            "rate",
            vec![
                (0, 1_000_000_000, allowed(0, SECOND)),
                (0, 1, denied(1, SECOND)),
                (1, 1, allowed(0, SECOND)),
            ],
        ),
        (
            "window",
            vec![
                (0, 1, allowed(1, window_end)),
                (0, 1, allowed(0, window_end)),
                (0, 1, denied(window_end, window_end)),
                (window_end, 1, allowed(1, MAX_WINDOW_SECS * SECOND)),
            ],
        ),
    ]
}

/// Runs every case on `store` and returns what differed from the exact answers.
async fn run(store: &impl BucketStore, quotas: &QuotaSet, label: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for start in [TODAY, LAST] {
        for (key, steps) in cases(start) {
            let meter = meter(quotas, key);
            let bucket = format!("{key}@{start}");
            for (offset, cost, expected) in steps {
                let batch = one_check(&bucket, meter, cost, start + offset);
                let got = store.check(&batch, false).await.expect("check").decisions[0];
                if got != expected {
                    wrong.push(format!(
                        "{label} {key} at {start}+{offset} cost {cost}: {got:?}, expected {expected:?}"
                    ));
                }
            }
        }
    }
    wrong
}

#[tokio::test]
async fn limits_at_the_bounds_are_exact_in_the_lua_scripts_and_in_memory() {
    let quotas = QuotaSet::from_sources([("bounds.yaml", QUOTAS)], &LoadOptions::default())
        .expect("limits at the bounds load");
    // The period case holds the most refill there is.
    let Meter::TokenBucket(rate) = meter(&quotas, "period") else {
        panic!("a token bucket")
    };
    assert!(rate.tolerance() <= MAX_TOLERANCE_NANOS);

    let redis = RedisServer::start();
    let mut options = redis_options(vec![Endpoint::Server(redis.url())]);
    // Every answer from the script, none from the over-limit cache.
    options.over_limit_cache = 0;
    let lua = RedisStore::new(options);
    lua.wait_connected().await;
    let mut wrong = run(&lua, &quotas, "redis").await;
    wrong.extend(run(&MemoryStore::new(), &quotas, "memory").await);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
