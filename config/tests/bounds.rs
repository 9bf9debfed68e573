//! Limits at the largest period, burst and rate the bucket maths keeps exact load; one step
//! past each is refused with file, line, column, key path and the largest value allowed.

use config::{ConfigError, LoadOptions, MAX_TOLERANCE_NANOS, QuotaSet};

fn load(limit: &str) -> Result<QuotaSet, ConfigError> {
    let yaml = format!("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {limit}\n");
    QuotaSet::from_sources([("q.yaml", yaml.as_str())], &LoadOptions::default())
}

fn refusal(limit: &str) -> String {
    match load(limit) {
        Ok(_) => panic!("{limit} loaded, but it should be refused"),
        Err(err) => err.to_string(),
    }
}

const REFILL: &str = "a token bucket may hold at most 2^62 ns (about 146 years) of refill";

// Reproduces `unit: year, unit_multiplier: 584` loading, then denying every request: the
// bucket's arrival time ran past 2^64 ns.
#[test]
fn a_token_bucket_of_584_years_is_refused_with_the_largest_multiplier() {
    assert_eq!(
        refusal("{unit: year, unit_multiplier: 584, requests_per_unit: 1}"),
        format!(
            "q.yaml:4:47: descriptors[0].rate_limit.unit_multiplier: 584 is too large: {REFILL}; \
             the largest allowed here is 146"
        )
    );
}

// Reproduces `unit: day, unit_multiplier: 300000` loading, then miscounting: its emission
// interval did not fit in 64 bits.
#[test]
fn a_token_bucket_of_300000_days_is_refused_with_the_largest_multiplier() {
    assert_eq!(
        refusal("{unit: day, unit_multiplier: 300000, requests_per_unit: 10}"),
        format!(
            "q.yaml:4:46: descriptors[0].rate_limit.unit_multiplier: 300000 is too large: \
             {REFILL}; the largest allowed here is 53375"
        )
    );
}

#[test]
fn the_largest_multipliers_load_and_one_more_is_refused() {
    for (unit, largest) in [("year", 146), ("day", 53_375), ("minute", 76_861_433)] {
        let at = |m: u64| format!("{{unit: {unit}, unit_multiplier: {m}, requests_per_unit: 7}}");
        load(&at(largest)).unwrap_or_else(|e| panic!("{unit} x {largest}: {e}"));
        let message = refusal(&at(largest + 1));
        assert!(
            message.ends_with(&format!("the largest allowed here is {largest}")),
            "{message}"
        );
    }
}

#[test]
fn the_largest_burst_loads_and_one_more_is_refused() {
    // One token a day: a bucket may hold 53 375 days of it.
    load("{unit: day, requests_per_unit: 1, burst: 53375}").expect("at the bound");
    assert_eq!(
        refusal("{unit: day, requests_per_unit: 1, burst: 53376}"),
        format!(
            "q.yaml:4:58: descriptors[0].rate_limit.burst: 53376 is too large: {REFILL}; the \
             largest allowed here is 53375"
        )
    );
}

#[test]
fn one_request_a_nanosecond_loads_and_more_is_refused() {
    load("{unit: second, requests_per_unit: 1000000000}").expect("at the bound");
    load("{unit: second, unit_multiplier: 2, requests_per_unit: 2000000000}")
        .expect("at the bound");
    assert_eq!(
        refusal("{unit: second, requests_per_unit: 1000000001}"),
        "q.yaml:4:51: descriptors[0].rate_limit.requests_per_unit: 1000000001 is too large: a \
         token bucket refills at most one token per nanosecond; the largest allowed here is \
         1000000000"
    );
}

#[test]
fn the_bound_is_on_the_refill_held_not_on_the_period() {
    // 584 years with a burst of one 584th of the rate: the bucket holds one year.
    load("{unit: year, unit_multiplier: 584, requests_per_unit: 584, burst: 1}")
        .expect("holds one year");
    let quotas = load("{unit: year, unit_multiplier: 146, requests_per_unit: 1}").unwrap();
    let rule = quotas.domain("d").unwrap().resolve(&[("k", "x")]).unwrap();
    assert_eq!(rule.limits[0].excess(), None);
    assert!(rule.limits[0].period().as_nanos() <= u128::from(MAX_TOLERANCE_NANOS));
}

#[test]
fn the_longest_fixed_window_loads_and_one_unit_more_is_refused() {
    for (unit, largest) in [("year", 34), ("day", 12_427), ("second", 1 << 30)] {
        let at = |m: u64| {
            format!(
                "{{algorithm: fixed_window, unit: {unit}, unit_multiplier: {m}, \
                 requests_per_unit: 5}}"
            )
        };
        load(&at(largest)).unwrap_or_else(|e| panic!("{unit} x {largest}: {e}"));
        let message = refusal(&at(largest + 1));
        assert!(
            message.contains(&format!(
                "unit_multiplier: {} is too large: a fixed window lasts at most 2^30 s \
                 (about 34 years); the largest allowed here is {largest}",
                largest + 1
            )),
            "{message}"
        );
    }
}

#[test]
fn blocking_and_unlimited_limits_have_no_bound() {
    load("{unit: year, unit_multiplier: 4294967295, requests_per_unit: 0}").expect("blocks");
    load("{unlimited: true}").expect("unlimited");
}

fn local(bucket: &str) -> Result<QuotaSet, ConfigError> {
    let yaml = format!("local:\n  token_bucket: {bucket}\n");
    QuotaSet::from_sources([("l.yaml", yaml.as_str())], &LoadOptions::default())
}

#[test]
fn a_local_bucket_is_held_to_the_same_bounds() {
    // At the bounds.
    local("{max_tokens: 1, fill_interval: 4611686018.427387904s}").expect("largest interval");
    local("{max_tokens: 53375, fill_interval: 86400s}").expect("largest max_tokens");
    local("{max_tokens: 1, tokens_per_fill: 50000000, fill_interval: 50ms}")
        .expect("one a nanosecond");
    // One past.
    let refused = |bucket: &str| local(bucket).expect_err(bucket).to_string();
    assert_eq!(
        refused("{max_tokens: 1, fill_interval: 4611686018.427387905s}"),
        format!(
            "l.yaml:2:48: local.token_bucket.fill_interval: 4611686018.427387905s is too \
             large: {REFILL}; the largest allowed here is 4611686018.427387904s"
        )
    );
    assert_eq!(
        refused("{max_tokens: 53376, fill_interval: 86400s}"),
        format!(
            "l.yaml:2:30: local.token_bucket.max_tokens: 53376 is too large: {REFILL}; the \
             largest allowed here is 53375"
        )
    );
    assert_eq!(
        refused("{max_tokens: 1, tokens_per_fill: 50000001, fill_interval: 50ms}"),
        "l.yaml:2:50: local.token_bucket.tokens_per_fill: 50000001 is too large: a token \
         bucket refills at most one token per nanosecond; the largest allowed here is 50000000"
    );
}
