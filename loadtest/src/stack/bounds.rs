//! [`Bounds`]: what a stack row adds to its accuracy figures — Redis script calls per
//! decision, the bound leasing states (Σ over replicas of the largest lease each held,
//! read from their metrics), the busiest second against what one second permits, and
//! whether the allowed total reached what the quota permits less that bound.

use config::{Algorithm, QuotaSet};
use serde::Serialize;

use crate::report::RunReport;
use crate::scrape::metric_sum;

/// A row's bounds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bounds {
    /// Redis script calls per decision over the run (warm-up included), all replicas.
    pub calls_per_decision: Option<f64>,
    /// Σ over replicas of the largest lease each held, in tokens: the most tokens parked
    /// at once, so allowed ≥ permitted − this when demand exceeds the quota.
    pub lease_bound: Option<u64>,
    /// One-key token-bucket runs: the most allowed in one second of the run.
    pub busiest_second: Option<u64>,
    /// What one second permits: a full bucket and a second's refill.
    pub second_permits: Option<f64>,
}

/// Reads the replicas' metrics (at `http`) before a run: their script calls.
pub async fn calls_before(http: &[String]) -> f64 {
    metric_sum(http, "rls_redis_calls_total").await
}

impl Bounds {
    /// The bounds of `run` on replicas serving HTTP at `http`, which had made `calls_before`
    /// script calls when it began; `redis`: they share Redis.
    pub async fn of(
        run: &RunReport,
        http: &[String],
        calls_before: f64,
        redis: bool,
        quotas: &QuotaSet,
    ) -> Bounds {
        let mut bounds = Bounds::default();
        if redis {
            let calls = metric_sum(http, "rls_redis_calls_total").await - calls_before;
            let decisions = (run.decisions + run.warmup_answers).max(1);
            bounds.calls_per_decision = Some(calls / decisions as f64);
            let largest = metric_sum(http, "rls_lease_largest_tokens").await;
            bounds.lease_bound = (largest > 0.0).then_some(largest as u64);
        }
        if let Some(rate) = one_token_bucket(run, quotas) {
            let hits = u64::from(run.phase.hits.max(1));
            bounds.busiest_second = run.series.iter().map(|s| s.ok * hits).max();
            bounds.second_permits = Some(rate);
        }
        bounds
    }

    /// `lease bound 36; allowed ≥ permitted − bound: yes; busiest second 1000 of 2000;
    /// 0.004 calls/decision`, the parts there are. The floor holds only where demand
    /// (`asked`) exceeded what was permitted; under it, the row says so instead.
    pub fn describe(&self, allowed: u64, asked: u64, permitted: f64) -> String {
        let mut parts = Vec::new();
        if let Some(bound) = self.lease_bound {
            let floor = permitted - bound as f64;
            let reached = if allowed as f64 >= floor { "yes" } else { "NO" };
            parts.push(if asked as f64 > permitted {
                format!(
                    "lease bound (Σ largest lease) {bound}: allowed ≥ permitted − bound ({floor:.0}): {reached}"
                )
            } else {
                format!("lease bound (Σ largest lease) {bound}; demand under the quota")
            });
        }
        if let (Some(busiest), Some(permits)) = (self.busiest_second, self.second_permits) {
            parts.push(format!(
                "busiest second {busiest} of {permits:.0} a second permits"
            ));
        }
        if let Some(calls) = self.calls_per_decision {
            parts.push(format!("{calls:.3} Redis calls/decision"));
        }
        parts.join("; ")
    }
}

/// For a run of one key under one token-bucket limit: what one second permits (burst +
/// requests_per_unit × 1 s / period).
fn one_token_bucket(run: &RunReport, quotas: &QuotaSet) -> Option<f64> {
    let accuracy = run.accuracy.as_ref()?;
    if accuracy.bounded != 1 || accuracy.keys != 1 {
        return None;
    }
    let key = accuracy.worst.first()?;
    let pairs: Vec<(&str, &str)> = key
        .key
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let rule = quotas.domain(&run.phase.domain)?.resolve(&pairs)?;
    let [limit] = rule.limits.as_slice() else {
        return None;
    };
    (limit.algorithm == Algorithm::TokenBucket).then(|| {
        f64::from(limit.burst)
            + f64::from(limit.requests_per_unit) / limit.period_secs().max(1) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_floor_is_judged_only_where_demand_exceeded_the_quota() {
        let bounds = Bounds {
            lease_bound: Some(100),
            ..Bounds::default()
        };
        let over = bounds.describe(950, 5000, 1000.0);
        assert!(over.contains("(900): yes"), "{over}");
        let short = bounds.describe(850, 5000, 1000.0);
        assert!(short.contains("(900): NO"), "{short}");
        let under = bounds.describe(500, 500, 1000.0);
        assert!(under.contains("demand under the quota"), "{under}");
        assert!(!under.contains("NO"), "{under}");
    }
}
