//! `BucketMap`: which quota rule an RLQS bucket id stands for, and what Envoy is to do
//! with the bucket ([`Target`]).
//!
//! A bucket id is an unordered map of strings; a rule is reached by a descriptor whose
//! entries come in the order of the keys on its path. So the map's entries are taken in
//! the key order of each rule of the domain that has exactly the map's set of keys (in
//! file order), and the first order that resolves, as `ShouldRateLimit` resolves a
//! descriptor (exact value, then wildcards, then the default), names the rule.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use config::{Algorithm, QuotaSet, Rule};
use limiter::Rate;

use super::assign::Quota;
use crate::store::{BucketKey, Meter};

/// What a bucket matching no rule gets (`--rlqs-unmatched`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Unmatched {
    /// `ALLOW_ALL`, as `ShouldRateLimit` answers OK for a descriptor without a rule.
    #[default]
    Allow,
    /// `DENY_ALL`.
    Deny,
}

/// Why a bucket is treated as it is: the `mode` label of the RLQS metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A rule that limits.
    Enforced,
    /// A rule in shadow mode (or global shadow mode): allowed, usage counted.
    Shadow,
    /// An `unlimited` rule.
    Unlimited,
    /// No rule.
    Unmatched,
}

impl Mode {
    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Enforced => "enforced",
            Mode::Shadow => "shadow",
            Mode::Unlimited => "unlimited",
            Mode::Unmatched => "unmatched",
        }
    }
}

/// What the Envoys reporting a bucket are to do with it.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Let every request pass.
    AllowAll(Mode),
    /// Deny every request (a quota of 0, or `--rlqs-unmatched deny`).
    DenyAll(Mode),
    /// Share `quota` among them; `key` names the bucket's shared state (the descriptor,
    /// as bucket keys encode it).
    Shared {
        /// The descriptor's identity bytes.
        key: Arc<[u8]>,
        /// The quota.
        quota: Quota,
    },
}

impl Target {
    /// The metrics label.
    pub fn mode(&self) -> Mode {
        match self {
            Target::AllowAll(mode) | Target::DenyAll(mode) => *mode,
            Target::Shared { .. } => Mode::Enforced,
        }
    }
}

/// How buckets without a limiting rule are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// A bucket matching no rule.
    pub unmatched: Unmatched,
    /// Global shadow mode (`--shadow-mode`): every bucket is allowed.
    pub global_shadow: bool,
}

/// The bucket mapping of one quota snapshot.
pub struct BucketMap {
    quotas: Arc<QuotaSet>,
    /// Per domain, per set of keys (sorted, joined by [`key_set`]): the distinct key orders
    /// of the rules with exactly those keys, in file order.
    orders: HashMap<String, HashMap<Vec<u8>, Vec<Vec<String>>>>,
}

/// A set of keys as one byte string: each key length-prefixed, in sorted order.
fn key_set<'a>(sorted: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for key in sorted {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
    }
    out
}

impl BucketMap {
    /// The mapping of `quotas`.
    pub fn new(quotas: Arc<QuotaSet>) -> BucketMap {
        let mut orders: HashMap<String, HashMap<Vec<u8>, Vec<Vec<String>>>> = HashMap::new();
        for domain in quotas.domains() {
            let sets = orders.entry(domain.name().to_string()).or_default();
            for rule in domain.rules() {
                let order: Vec<String> = rule.keys().map(str::to_string).collect();
                let mut sorted: Vec<&str> = order.iter().map(String::as_str).collect();
                sorted.sort_unstable();
                // A key twice on one path cannot come from a map: no bucket reaches it.
                if sorted.windows(2).any(|w| w[0] == w[1]) {
                    continue;
                }
                let orders = sets.entry(key_set(sorted.into_iter())).or_default();
                if !orders.contains(&order) {
                    orders.push(order);
                }
            }
        }
        BucketMap { quotas, orders }
    }

    /// The snapshot this mapping is of.
    pub fn quotas(&self) -> &Arc<QuotaSet> {
        &self.quotas
    }

    /// The rule `bucket` of `domain` stands for, with the entries in the order that
    /// reached it.
    pub fn rule<'a>(
        &'a self,
        domain: &str,
        bucket: &'a BTreeMap<String, String>,
    ) -> Option<(&'a Rule, Vec<(&'a str, &'a str)>)> {
        let tree = self.quotas.domain(domain)?;
        let orders = self
            .orders
            .get(domain)?
            .get(&key_set(bucket.keys().map(String::as_str)))?;
        orders.iter().find_map(|order| {
            let entries: Vec<(&str, &str)> = order
                .iter()
                .map(|key| (key.as_str(), bucket[key].as_str()))
                .collect();
            tree.resolve(&entries).map(|rule| (rule, entries))
        })
    }

    /// What the Envoys reporting `bucket` of `domain` are to do with it.
    pub fn target(
        &self,
        domain: &str,
        bucket: &BTreeMap<String, String>,
        policy: Policy,
    ) -> Target {
        let Some((rule, entries)) = self.rule(domain, bucket) else {
            return match policy.unmatched {
                Unmatched::Allow => Target::AllowAll(Mode::Unmatched),
                Unmatched::Deny => Target::DenyAll(Mode::Unmatched),
            };
        };
        if rule.unlimited {
            return Target::AllowAll(Mode::Unlimited);
        }
        if rule.shadow_mode || policy.global_shadow {
            return Target::AllowAll(Mode::Shadow);
        }
        let quota = quota_of(rule);
        if quota.rate <= 0.0 {
            return Target::DenyAll(Mode::Enforced);
        }
        // A level with share_threshold counts under its pattern, as in ShouldRateLimit.
        let values = entries
            .iter()
            .zip(&rule.shared_values)
            .map(|(&(key, value), shared)| (key, shared.as_deref().unwrap_or(value)));
        // The descriptor's identity, as bucket keys begin: the shares live beside them.
        let mut key = Vec::new();
        let bucket = BucketKey {
            domain,
            entries: values,
            limit: 0,
        };
        let identity = bucket.write(
            &mut key,
            &Meter::TokenBucket(Rate::new(1, Duration::from_secs(1), 1)),
        );
        key.truncate(identity);
        Target::Shared {
            key: key.into(),
            quota,
        }
    }
}

/// A rule's limits as one quota that respects each of them: the slowest rate and the
/// smallest burst (a fixed window's burst is its limit). Grants refill over the longer of
/// a minute and the slowest limit's period, so that a share's rate is exact to a token per
/// interval.
pub fn quota_of(rule: &Rule) -> Quota {
    let mut quota = Quota {
        rate: f64::INFINITY,
        burst: f64::INFINITY,
        fill_secs: 60,
    };
    for limit in &rule.limits {
        let period = limit.period_secs().max(1);
        let rate = f64::from(limit.requests_per_unit) / period as f64;
        let burst = match limit.algorithm {
            Algorithm::TokenBucket => limit.burst,
            Algorithm::FixedWindow => limit.requests_per_unit,
        };
        if rate < quota.rate {
            quota.rate = rate;
            quota.fill_secs = period.max(60);
        }
        quota.burst = quota.burst.min(f64::from(burst));
    }
    if !quota.rate.is_finite() {
        quota.rate = 0.0;
    }
    quota
}

#[cfg(test)]
mod tests {
    use config::LoadOptions;

    use super::*;

    const QUOTAS: &str = "domain: api
descriptors:
  - key: api_key
    value: alice
    rate_limit: {unit: second, requests_per_unit: 20}
  - key: api_key
    rate_limit: {unit: second, requests_per_unit: 10, burst: 30}
  - key: tenant
    rate_limits:
      - {unit: second, requests_per_unit: 100, burst: 200}
      - {unit: day, requests_per_unit: 86400}
    descriptors:
      - key: method
        value: POST
        rate_limit: {unit: minute, requests_per_unit: 60}
  - key: path
    value: /search/*
    share_threshold: true
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: internal
    rate_limit: {unlimited: true}
  - key: trial
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: blocked
    rate_limit: {unit: second, requests_per_unit: 0}
";

    fn map() -> BucketMap {
        let quotas = QuotaSet::from_sources([("api.yaml", QUOTAS)], &LoadOptions::default())
            .expect("valid quotas");
        BucketMap::new(Arc::new(quotas))
    }

    fn bucket(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn shared(target: Target) -> (Arc<[u8]>, Quota) {
        match target {
            Target::Shared { key, quota } => (key, quota),
            other => panic!("not shared: {other:?}"),
        }
    }

    #[test]
    fn a_bucket_id_resolves_as_a_descriptor_whatever_the_order_of_its_map() {
        let map = map();
        let policy = Policy::default();
        let (alice, quota) = shared(map.target("api", &bucket(&[("api_key", "alice")]), policy));
        assert_eq!((quota.rate, quota.burst), (20.0, 20.0));
        let (bob, quota) = shared(map.target("api", &bucket(&[("api_key", "bob")]), policy));
        assert_eq!((quota.rate, quota.burst), (10.0, 30.0));
        assert_ne!(
            alice, bob,
            "each value of a default rule has its own bucket"
        );
        // {method: POST, tenant: acme} sorts method first; the rule's path is tenant, method.
        let write = bucket(&[("method", "POST"), ("tenant", "acme")]);
        let (_, quota) = shared(map.target("api", &write, policy));
        assert_eq!((quota.rate, quota.burst, quota.fill_secs), (1.0, 60.0, 60));
    }

    #[test]
    fn several_limits_are_one_quota_at_the_slowest_rate_and_smallest_burst() {
        let map = map();
        let (_, quota) =
            shared(map.target("api", &bucket(&[("tenant", "acme")]), Policy::default()));
        // 100 a second (burst 200) and 86400 a day (1 a second, burst 86400).
        assert_eq!(
            (quota.rate, quota.burst, quota.fill_secs),
            (1.0, 200.0, 86_400)
        );
    }

    #[test]
    fn share_threshold_puts_every_matching_value_in_one_bucket() {
        let map = map();
        let policy = Policy::default();
        let (a, _) = shared(map.target("api", &bucket(&[("path", "/search/a")]), policy));
        let (b, _) = shared(map.target("api", &bucket(&[("path", "/search/b")]), policy));
        assert_eq!(a, b);
    }

    #[test]
    fn buckets_without_a_limiting_rule_are_allowed_or_denied_as_configured() {
        let map = map();
        let allow = Policy::default();
        let deny = Policy {
            unmatched: Unmatched::Deny,
            ..Policy::default()
        };
        let target = |pairs: &[(&str, &str)], policy| map.target("api", &bucket(pairs), policy);
        assert_eq!(
            target(&[("nothing", "x")], allow),
            Target::AllowAll(Mode::Unmatched)
        );
        assert_eq!(
            target(&[("nothing", "x")], deny),
            Target::DenyAll(Mode::Unmatched)
        );
        // Keys of a rule, but more of them than its path has: no rule.
        let deeper = [("api_key", "alice"), ("method", "GET")];
        assert_eq!(target(&deeper, deny), Target::DenyAll(Mode::Unmatched));
        assert_eq!(
            map.target("nope", &bucket(&[("api_key", "a")]), deny),
            Target::DenyAll(Mode::Unmatched)
        );
        assert_eq!(
            target(&[("internal", "x")], deny),
            Target::AllowAll(Mode::Unlimited)
        );
        assert_eq!(
            target(&[("trial", "x")], deny),
            Target::AllowAll(Mode::Shadow)
        );
        assert_eq!(
            target(&[("blocked", "x")], allow),
            Target::DenyAll(Mode::Enforced)
        );
        let shadow = Policy {
            global_shadow: true,
            ..Policy::default()
        };
        assert_eq!(
            target(&[("api_key", "alice")], shadow),
            Target::AllowAll(Mode::Shadow)
        );
    }
}
