//! The standard scenarios of `loadtest stack` ([`SCENARIOS`]), the quota their replicas
//! serve ([`STACK_QUOTA`]), and why one cannot run here ([`skip_reason`]).

use serde::Serialize;

pub use crate::fleet::Store;
use crate::processes::RlsFeatures;
use crate::spec::Distribution;

/// The quota every scenario's replicas serve.
pub const STACK_QUOTA: &str = "\
# Served by `loadtest stack`: one hot key that all traffic shares, and a bucket per user;
# and one hot key whose quota no run reaches.
domain: bench
descriptors:
  - key: feature
    value: search
    rate_limit: {unit: second, requests_per_unit: 1000}
  - key: user
    rate_limit: {unit: second, requests_per_unit: 10, burst: 20}
  - key: api
    value: all
    rate_limit: {unit: second, requests_per_unit: 1000000}
";

/// One standard scenario.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StackScenario {
    /// Short id for `--only`.
    pub id: &'static str,
    /// The row's title.
    pub title: &'static str,
    /// Bucket store.
    pub store: Store,
    /// `rls` replicas sharing the load.
    pub replicas: usize,
    /// The one descriptor of each request.
    pub descriptor: &'static str,
    /// Distinct keys.
    pub keys: u32,
    /// How keys are drawn.
    pub distribution: Distribution,
    /// An accuracy row: no warm-up, so that every bucket starts full, as the permitted
    /// figure assumes (a warm-up would drain it, and the burst would pad the bound).
    pub accuracy: bool,
    /// What the row means, printed under the table.
    pub note: &'static str,
    /// More `rls serve` flags of its replicas.
    pub flags: &'static [&'static str],
}

/// The standard scenarios, in table order.
pub const SCENARIOS: [StackScenario; 10] = [
    StackScenario {
        id: "memory-hot",
        title: "memory, hot key",
        store: Store::Memory,
        replicas: 1,
        descriptor: "feature=search",
        keys: 1,
        distribution: Distribution::Uniform,
        accuracy: false,
        note: "",
        flags: &[],
    },
    StackScenario {
        id: "memory-100k",
        title: "memory, 100k keys (uniform)",
        store: Store::Memory,
        replicas: 1,
        descriptor: "user={key}",
        keys: 100_000,
        distribution: Distribution::Uniform,
        accuracy: false,
        note: "",
        flags: &[],
    },
    StackScenario {
        id: "redis-hot",
        title: "Redis, hot key",
        store: Store::Redis,
        replicas: 1,
        descriptor: "feature=search",
        keys: 1,
        distribution: Distribution::Uniform,
        accuracy: false,
        note: "",
        flags: &[],
    },
    StackScenario {
        id: "redis-zipf",
        title: "Redis, Zipf(1.1) over 100k keys",
        store: Store::Redis,
        replicas: 1,
        descriptor: "user={key}",
        keys: 100_000,
        distribution: Distribution::Zipf,
        accuracy: false,
        note: "",
        flags: &[],
    },
    StackScenario {
        id: "redis-cluster",
        title: "Redis Cluster (3 masters), Zipf(1.1) over 100k keys",
        store: Store::RedisCluster,
        replicas: 1,
        descriptor: "user={key}",
        keys: 100_000,
        distribution: Distribution::Zipf,
        accuracy: false,
        note: "",
        flags: &[],
    },
    StackScenario {
        id: "replicas-memory",
        title: "3 replicas on one quota, memory (accuracy)",
        store: Store::Memory,
        replicas: 3,
        descriptor: "feature=search",
        keys: 1,
        distribution: Distribution::Uniform,
        accuracy: true,
        note: "each memory replica keeps its own buckets, so three of them allow three times the quota (overshoot near 200 %): what the Redis backend fixes",
        flags: &[],
    },
    StackScenario {
        id: "replicas-redis",
        title: "3 replicas on one quota, Redis (accuracy)",
        store: Store::Redis,
        replicas: 3,
        descriptor: "feature=search",
        keys: 1,
        distribution: Distribution::Uniform,
        accuracy: true,
        note: "the three replicas share one bucket in Redis",
        flags: &[],
    },
    StackScenario {
        id: "replicas-memory-under",
        title: "3 replicas, memory, hot key under its limit",
        store: Store::Memory,
        replicas: 3,
        descriptor: "api=all",
        keys: 1,
        distribution: Distribution::Uniform,
        accuracy: false,
        note: "",
        flags: &[],
    },
    StackScenario {
        id: "replicas-lease-under",
        title: "3 replicas on one Redis, leases, hot key under its limit",
        store: Store::Redis,
        replicas: 3,
        descriptor: "api=all",
        keys: 1,
        distribution: Distribution::Uniform,
        accuracy: false,
        note: "every replica answers the hot key from leases of about 10 ms of its traffic: Redis calls per decision is what leasing saves",
        flags: &["--lease", "auto"],
    },
    StackScenario {
        id: "replicas-lease",
        title: "3 replicas on one quota, Redis with leases (accuracy)",
        store: Store::Redis,
        replicas: 3,
        descriptor: "feature=search",
        keys: 1,
        distribution: Distribution::Uniform,
        accuracy: true,
        note: "leased tokens are taken before they are given out, so the replicas never allow more than the quota; the lease bound is what leases can park while another replica denies",
        flags: &["--lease", "auto"],
    },
];

/// Why `scenario` cannot run here, if it cannot.
pub fn skip_reason(
    scenario: &StackScenario,
    features: RlsFeatures,
    redis_server: bool,
    redis_cli: bool,
) -> Option<String> {
    let mut reasons = Vec::new();
    match scenario.store {
        Store::Memory => {}
        Store::Redis | Store::RedisCluster => {
            let supported = match scenario.store {
                Store::RedisCluster => features.redis_cluster,
                _ => features.redis,
            };
            if !supported {
                reasons.push("rls built without the Redis backend".to_string());
            }
            if !redis_server {
                reasons.push("install redis-server (Debian package redis-server)".to_string());
            }
            if scenario.store == Store::RedisCluster && !redis_cli {
                reasons.push("install redis-cli (Debian package redis-tools)".to_string());
            }
        }
    }
    (!reasons.is_empty()).then(|| format!("skipped: {}", reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::LoadOptions;

    #[test]
    fn the_stack_quota_loads_and_bounds_every_scenario_s_descriptor() {
        let quotas =
            config::QuotaSet::from_sources([("bench.yaml", STACK_QUOTA)], &LoadOptions::default())
                .expect("valid quota");
        let domain = quotas.domain("bench").expect("domain bench");
        for s in SCENARIOS {
            let entries = crate::workload::Template::parse(s.descriptor)
                .expect("valid")
                .instantiate(7);
            let pairs: Vec<(&str, &str)> = entries
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert!(domain.resolve(&pairs).is_some(), "{} has no rule", s.id);
        }
    }

    #[test]
    fn redis_scenarios_say_why_they_are_skipped() {
        let redis_hot = SCENARIOS[2];
        let reason =
            skip_reason(&redis_hot, RlsFeatures::default(), false, false).expect("skipped");
        assert_eq!(
            reason,
            "skipped: rls built without the Redis backend; install redis-server (Debian package redis-server)"
        );
        let with_redis = RlsFeatures {
            redis: true,
            redis_cluster: true,
        };
        assert_eq!(skip_reason(&redis_hot, with_redis, true, false), None);
        assert!(
            skip_reason(&SCENARIOS[4], with_redis, true, false)
                .expect("skipped")
                .contains("redis-tools")
        );
        assert_eq!(
            skip_reason(&SCENARIOS[0], RlsFeatures::default(), false, false),
            None
        );
    }

    #[test]
    fn scenario_ids_are_unique() {
        let mut ids: Vec<&str> = SCENARIOS.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), SCENARIOS.len());
    }
}
