//! Accuracy: the most hits a quota permits over a run ([`permitted`]), by how much the hits a
//! service allowed exceed it ([`overshoot_percent`]), and the per-key [`AccuracyReport`].
//! The maths are pure functions of the quota and the run's window.

use config::{Algorithm, Domain, Limit, QuotaSet, Rule};
use serde::Serialize;

use crate::workload::AccountKey;

/// How many keys the report lists by name (the worst first).
pub const LISTED_KEYS: usize = 10;

/// The measured part of a run in Unix seconds (the server's clock is the harness's on
/// loopback, so the fixed windows it counts in are the ones seen here).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunWindow {
    /// Start.
    pub start_unix: f64,
    /// End (the last measured answer).
    pub end_unix: f64,
}

impl RunWindow {
    /// Length in seconds.
    pub fn elapsed(&self) -> f64 {
        (self.end_unix - self.start_unix).max(0.0)
    }
}

/// The most hits one limit lets through over `window`:
/// - token bucket: the bucket may start full, then refills: `burst + requests_per_unit ×
///   elapsed / period`;
/// - fixed window: `requests_per_unit` for each epoch-aligned window the run touched.
pub fn permitted_by_limit(limit: &Limit, window: &RunWindow) -> f64 {
    let period = limit.period_secs() as f64;
    let rate = f64::from(limit.requests_per_unit);
    match limit.algorithm {
        Algorithm::TokenBucket => f64::from(limit.burst) + rate * window.elapsed() / period,
        Algorithm::FixedWindow => {
            let first = (window.start_unix / period).floor();
            let last = (window.end_unix / period).floor();
            rate * (last - first + 1.0)
        }
    }
}

/// The most hits a descriptor's rule lets through over `window`: the smallest over its limits.
/// `None` when nothing bounds it: no rule, `unlimited`, or shadow mode (reported OK always).
pub fn permitted(rule: Option<&Rule>, window: &RunWindow) -> Option<f64> {
    let rule = rule?;
    if rule.unlimited || rule.shadow_mode {
        return None;
    }
    rule.limits
        .iter()
        .map(|limit| permitted_by_limit(limit, window))
        .reduce(f64::min)
}

/// `max(0, allowed − permitted) / permitted × 100`; infinite when a blocked key
/// (`permitted` 0) let anything through.
pub fn overshoot_percent(allowed: u64, permitted: f64) -> f64 {
    let excess = (allowed as f64 - permitted).max(0.0);
    if excess == 0.0 {
        0.0
    } else if permitted <= 0.0 {
        f64::INFINITY
    } else {
        excess / permitted * 100.0
    }
}

/// One key's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyAccuracy {
    /// The descriptor's entries, `k=v,...`.
    pub key: String,
    /// Hits asked for.
    pub asked: u64,
    /// Hits answered OK.
    pub allowed: u64,
    /// The most the quota permits over the run; `None` if unbounded.
    pub permitted: Option<f64>,
    /// [`overshoot_percent`]; `None` if unbounded (JSON `null` also stands for infinite).
    pub overshoot_pct: Option<f64>,
}

/// Allowed versus permitted for every key a run used.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccuracyReport {
    /// Length of the run window, in seconds.
    pub elapsed_s: f64,
    /// Keys that were asked for.
    pub keys: usize,
    /// Of which bounded by a limit.
    pub bounded: usize,
    /// Of which allowed more than permitted.
    pub exceeded: usize,
    /// The largest overshoot of any key, in percent.
    pub max_overshoot_pct: f64,
    /// Over bounded keys: total allowed.
    pub allowed: u64,
    /// Over bounded keys: total permitted.
    pub permitted: f64,
    /// Σ excess / Σ permitted over bounded keys, in percent.
    pub overshoot_pct: f64,
    /// The keys with the largest overshoot (then the most allowed), at most [`LISTED_KEYS`].
    pub worst: Vec<KeyAccuracy>,
}

/// Compares `allowed[id]` with what the quota of `domain` permits each of `keys` over
/// `window`, for the keys with `asked[id] > 0`. Descriptors are resolved by `config`, so
/// wildcards and defaults count as the server counts them.
pub fn evaluate(
    quotas: &QuotaSet,
    domain: &str,
    keys: &[AccountKey],
    asked: &[u64],
    allowed: &[u64],
    window: &RunWindow,
) -> AccuracyReport {
    let domain: Option<&Domain> = quotas.domain(domain);
    let mut report = AccuracyReport {
        elapsed_s: window.elapsed(),
        keys: 0,
        bounded: 0,
        exceeded: 0,
        max_overshoot_pct: 0.0,
        allowed: 0,
        permitted: 0.0,
        overshoot_pct: 0.0,
        worst: Vec::new(),
    };
    let mut excess = 0.0;
    let mut rows = Vec::new();
    for (id, key) in keys.iter().enumerate() {
        if asked[id] == 0 {
            continue;
        }
        report.keys += 1;
        let rule = domain.and_then(|d| d.resolve(&key.pairs()));
        let bound = permitted(rule, window);
        let overshoot = bound.map(|p| overshoot_percent(allowed[id], p));
        if let (Some(p), Some(o)) = (bound, overshoot) {
            report.bounded += 1;
            report.allowed += allowed[id];
            report.permitted += p;
            excess += (allowed[id] as f64 - p).max(0.0);
            if o > 0.0 {
                report.exceeded += 1;
            }
            report.max_overshoot_pct = report.max_overshoot_pct.max(o);
        }
        rows.push((id, bound, overshoot));
    }
    report.overshoot_pct = if excess == 0.0 {
        0.0
    } else if report.permitted > 0.0 {
        excess / report.permitted * 100.0
    } else {
        f64::INFINITY
    };
    rows.sort_by(|a, b| {
        let o = |r: &(usize, Option<f64>, Option<f64>)| r.2.unwrap_or(-1.0);
        o(b).total_cmp(&o(a)).then(allowed[b.0].cmp(&allowed[a.0]))
    });
    report.worst = rows
        .into_iter()
        .take(LISTED_KEYS)
        .map(|(id, bound, overshoot)| KeyAccuracy {
            key: keys[id].label(),
            asked: asked[id],
            allowed: allowed[id],
            permitted: bound,
            overshoot_pct: overshoot,
        })
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use config::{LoadOptions, Unit};

    use super::*;

    /// 2023-11-14T22:13:20Z: 20 s into a minute.
    const T0: f64 = 1_700_000_000.0;

    fn limit(algorithm: Algorithm, unit: Unit, requests_per_unit: u32, burst: u32) -> Limit {
        Limit {
            name: None,
            unit,
            unit_multiplier: NonZeroU32::MIN,
            requests_per_unit,
            burst,
            algorithm,
            replaces: Vec::new(),
        }
    }

    fn window(start: f64, seconds: f64) -> RunWindow {
        RunWindow {
            start_unix: start,
            end_unix: start + seconds,
        }
    }

    #[test]
    fn a_token_bucket_permits_its_burst_plus_what_refills_during_the_run() {
        let bucket = limit(Algorithm::TokenBucket, Unit::Second, 10, 50);
        assert_eq!(permitted_by_limit(&bucket, &window(T0, 10.0)), 150.0);
        let hourly = limit(Algorithm::TokenBucket, Unit::Hour, 100, 100);
        assert_eq!(permitted_by_limit(&hourly, &window(T0, 36.0)), 101.0);
    }

    #[test]
    fn a_fixed_window_permits_its_quota_once_per_epoch_aligned_window_touched() {
        let minute = limit(Algorithm::FixedWindow, Unit::Minute, 100, 100);
        // From :20 to :50, one window; to :10 of the next minute, two.
        assert_eq!(permitted_by_limit(&minute, &window(T0, 30.0)), 100.0);
        assert_eq!(permitted_by_limit(&minute, &window(T0, 50.0)), 200.0);
        // 61 s from :20 ends at :21 of the next minute: still two windows.
        assert_eq!(permitted_by_limit(&minute, &window(T0, 61.0)), 200.0);
        // Starting on a boundary: 120 s touches three windows (the end is in a third).
        assert_eq!(
            permitted_by_limit(&minute, &window(T0 - 20.0, 120.0)),
            300.0
        );
    }

    #[test]
    fn several_limits_permit_the_least_of_them_and_no_limit_permits_without_bound() {
        let yaml = "domain: d\ndescriptors:\n  - key: tenant\n    rate_limits:\n      - {unit: second, requests_per_unit: 100, burst: 200}\n      - {unit: day, requests_per_unit: 500}\n  - key: free\n    rate_limit: {unlimited: true}\n  - key: trial\n    shadow_mode: true\n    rate_limit: {unit: second, requests_per_unit: 1}\n";
        let quotas = QuotaSet::from_sources([("q.yaml", yaml)], &LoadOptions::default())
            .expect("valid quota");
        let domain = quotas.domain("d").expect("domain");
        let run = window(T0, 10.0);
        // Per second: 200 + 100 × 10 = 1200; per day: 500 + 500 × 10 / 86400 ≈ 500.06.
        let tenant = permitted(domain.resolve(&[("tenant", "a")]), &run).expect("bounded");
        assert!((tenant - 500.058).abs() < 1e-3, "{tenant}");
        assert_eq!(permitted(domain.resolve(&[("free", "x")]), &run), None);
        assert_eq!(permitted(domain.resolve(&[("trial", "x")]), &run), None);
        assert_eq!(permitted(domain.resolve(&[("nothing", "x")]), &run), None);
    }

    #[test]
    fn overshoot_is_the_excess_over_what_was_permitted_in_percent() {
        assert_eq!(overshoot_percent(300, 100.0), 200.0);
        assert_eq!(overshoot_percent(90, 100.0), 0.0);
        assert_eq!(overshoot_percent(100, 100.0), 0.0);
        assert_eq!(overshoot_percent(0, 0.0), 0.0);
        assert_eq!(overshoot_percent(5, 0.0), f64::INFINITY);
    }

    #[test]
    fn the_report_ranks_keys_by_overshoot_and_sums_over_bounded_keys() {
        let yaml = "domain: d\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 10}\n";
        let quotas = QuotaSet::from_sources([("q.yaml", yaml)], &LoadOptions::default())
            .expect("valid quota");
        let key = |k: &str, v: &str| AccountKey {
            entries: vec![(k.into(), v.into())],
        };
        let keys = [
            key("user", "a"),
            key("user", "b"),
            key("path", "/"),
            key("user", "c"),
        ];
        // 0 s long: each user key permits exactly its burst of 10.
        let report = evaluate(
            &quotas,
            "d",
            &keys,
            &[40, 15, 7, 0],
            &[30, 10, 7, 0],
            &window(T0, 0.0),
        );
        assert_eq!((report.keys, report.bounded, report.exceeded), (3, 2, 1));
        assert_eq!(report.max_overshoot_pct, 200.0);
        assert_eq!((report.allowed, report.permitted), (40, 20.0));
        assert_eq!(report.overshoot_pct, 100.0);
        let order: Vec<&str> = report.worst.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(order, ["user=a", "user=b", "path=/"]);
        assert_eq!(report.worst[2].permitted, None);
    }
}
