//! Per-rule metrics: the reference's names and labels, counted in hits, and bounded by
//! the quota files whatever the traffic. Each test uses a domain of its own: the metrics
//! recorder is the process's.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use common::scrape::{Sample, samples, value};
use common::{Backend, START_SECS, TestServer, http};
use config::{LoadOptions, QuotaSet};
use limiter::FakeClock;
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::RateLimitOverride;
use proto::rls::RateLimitRequest;
use proto::types::RateLimitUnit;
use rls::decide::{AnswerOptions, Decider};
use rls::query::parse_descriptor;
use rls::snapshot::StatsOptions;
use rls::stats::rules::{OVER_LIMIT, OVER_LIMIT_WITH_LOCAL_CACHE, TOTAL_HITS};
use rls::store::MemoryStore;
use rls::store::redis::Endpoint;

/// A descriptor of `(key, value)` entries.
fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    let text: Vec<String> = entries.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parse_descriptor(&text.join(","))
}

fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>, hits: u32) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: hits,
    }
}

fn quotas(yaml: &str) -> QuotaSet {
    QuotaSet::from_sources([("quotas.yaml", yaml)], &LoadOptions::default()).expect("valid")
}

async fn scrape(server: &TestServer) -> Vec<Sample> {
    let (status, text) = http(server.http, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    samples(&text)
}

/// The six counters of one label set, in the order total, within, near, over, shadow,
/// cached.
fn counters(samples: &[Sample], labels: &[(&str, &str)]) -> [f64; 6] {
    [
        "total_hits",
        "within_limit",
        "near_limit",
        "over_limit",
        "shadow_mode",
        "over_limit_with_local_cache",
    ]
    .map(|name| {
        let name = format!("ratelimit_service_rate_limit_{name}");
        value(samples, &name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"))
    })
}

const COUNTED: &str = "
domain: counted
descriptors:
  - key: path
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: tenant
    descriptors:
      - key: method
        value: GET
        shadow_mode: true
        rate_limit: {unit: minute, requests_per_unit: 1}
  - key: remote_address
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 100}
";

#[tokio::test]
async fn per_rule_counters_carry_the_reference_names_and_labels_and_count_hits() {
    let server = TestServer::start(
        COUNTED,
        &LoadOptions::default(),
        AnswerOptions::default(),
        START_SECS,
    )
    .await;
    let mut client = server.client().await;
    let path = || vec![descriptor(&[("path", "/a")])];
    // 5 and 4 of 10 pass (the second crossing 80%: one hit near the limit), 3 more do not.
    for hits in [5, 4, 3] {
        let _ = client
            .should_rate_limit(request("counted", path(), hits))
            .await;
    }
    for _ in 0..2 {
        let shadow = vec![descriptor(&[("tenant", "t"), ("method", "GET")])];
        let _ = client
            .should_rate_limit(request("counted", shadow, 1))
            .await;
    }
    for address in ["10.0.0.1", "10.0.0.2", "10.0.0.2"] {
        let detailed = vec![descriptor(&[("remote_address", address)])];
        let _ = client
            .should_rate_limit(request("counted", detailed, 1))
            .await;
    }
    // Overrides count under their rule's key without values, or the domain's _override_.
    let limit = Some(RateLimitOverride {
        requests_per_unit: 5,
        unit: RateLimitUnit::Hour as i32,
    });
    for entries in [[("remote_address", "10.0.0.3")], [("unknown", "x")]] {
        let mut overridden = descriptor(&entries);
        overridden.limit = limit;
        let _ = client
            .should_rate_limit(request("counted", vec![overridden], 1))
            .await;
    }

    let samples = scrape(&server).await;
    let domain = ("domain", "counted");
    assert_eq!(
        counters(&samples, &[domain, ("key1", "path")]),
        [12.0, 9.0, 1.0, 3.0, 0.0, 0.0]
    );
    assert_eq!(
        counters(
            &samples,
            &[domain, ("key1", "tenant"), ("key2", "method_GET")]
        ),
        [2.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    );
    // Values only where the rule says so, sanitised as the reference sanitises them.
    let by_address = |key1| value(&samples, TOTAL_HITS, &[domain, ("key1", key1)]);
    assert_eq!(by_address("remote_address_10_0_0_1"), Some(1.0));
    assert_eq!(by_address("remote_address_10_0_0_2"), Some(2.0));
    assert_eq!(by_address("remote_address"), Some(1.0));
    assert_eq!(by_address("_override_"), Some(1.0));
    assert_eq!(by_address("path_/a"), None, "a rule without values got one");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_the_over_limit_cache_answers_are_counted_as_such() {
    let redis = RedisServer::start();
    let yaml = "domain: cached\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 1}\n";
    let server = TestServer::start_on(
        &Backend::Redis(vec![Endpoint::Server(redis.url())]),
        quotas(yaml),
        AnswerOptions::default(),
        START_SECS,
    )
    .await;
    let mut client = server.client().await;
    for _ in 0..3 {
        let user = vec![descriptor(&[("user", "u")])];
        let _ = client.should_rate_limit(request("cached", user, 1)).await;
    }
    let samples = scrape(&server).await;
    let labels = [("domain", "cached"), ("key1", "user")];
    // The first call empties the bucket, which the cache remembers: it answers the others.
    assert_eq!(value(&samples, TOTAL_HITS, &labels), Some(3.0));
    assert_eq!(value(&samples, OVER_LIMIT, &labels), Some(2.0));
    assert_eq!(
        value(&samples, OVER_LIMIT_WITH_LOCAL_CACHE, &labels),
        Some(2.0)
    );
    server.stop().await;
}

/// The label sets of `name` in `domain`, from the process's recorder.
fn series_of(name: &str, domain: &str) -> Vec<Sample> {
    let text = rls::stats::prometheus().render();
    samples(&text)
        .into_iter()
        .filter(|s| s.name == name && s.labels.get("domain").map(String::as_str) == Some(domain))
        .collect()
}

fn bounded_decider(domain: &str, max_values: usize) -> (Arc<FakeClock>, Decider<MemoryStore>) {
    let yaml = format!(
        "domain: {domain}\ndescriptors:\n  - key: user\n    detailed_metric: true\n    rate_limit: {{unit: second, requests_per_unit: 1000}}\n"
    );
    let clock = Arc::new(FakeClock::new(START_SECS * 1_000_000_000));
    let options = AnswerOptions {
        stats: StatsOptions {
            max_values,
            ..StatsOptions::default()
        },
        ..AnswerOptions::default()
    };
    let decider = Decider::new(quotas(&yaml), MemoryStore::new(), clock.clone(), options);
    (clock, decider)
}

#[tokio::test]
async fn a_million_distinct_values_make_no_more_series_than_the_bound() {
    let (clock, decider) = bounded_decider("bounded", StatsOptions::DEFAULT_MAX_VALUES);
    for i in 0..1_000_000u32 {
        let user = format!("user-{i}");
        let answer = decider
            .decide(&request("bounded", vec![descriptor(&[("user", &user)])], 1))
            .await
            .expect("answered");
        assert_eq!(answer.overall_code, 1);
        if i % 100_000 == 99_999 {
            // Full buckets are dropped, as the server's sweeper does.
            clock.advance(Duration::from_secs(2));
            decider.store().sweep(limiter::Clock::now(&*clock));
        }
    }
    let series = series_of(TOTAL_HITS, "bounded");
    assert_eq!(series.len(), 1001, "1000 values and _overflow_");
    assert_eq!(decider.snapshots().current().label_sets(), 1001);
    let total: f64 = series.iter().map(|s| s.value).sum();
    assert_eq!(total, 1_000_000.0, "every hit is counted somewhere");
    let overflow = series
        .iter()
        .find(|s| s.labels.get("key1").map(String::as_str) == Some("user__overflow_"))
        .expect("an _overflow_ series");
    assert_eq!(overflow.value, 999_000.0);
}

#[tokio::test]
async fn a_reload_keeps_the_values_already_counted_within_the_bound() {
    let (_, decider) = bounded_decider("reloaded", 10);
    let ask = |user: String| request("reloaded", vec![descriptor(&[("user", &user)])], 1);
    for i in 0..10 {
        decider
            .decide(&ask(format!("a{i}")))
            .await
            .expect("answered");
    }
    let yaml = "domain: reloaded\ndescriptors:\n  - key: user\n    detailed_metric: true\n    rate_limit: {unit: second, requests_per_unit: 999}\n";
    decider.replace_quotas(quotas(yaml));
    for i in 0..10 {
        decider
            .decide(&ask(format!("b{i}")))
            .await
            .expect("answered");
    }
    let series = series_of(TOTAL_HITS, "reloaded");
    assert_eq!(series.len(), 11);
    let total: f64 = series.iter().map(|s| s.value).sum();
    assert_eq!(total, 20.0, "the counts carry on across the reload");
}
