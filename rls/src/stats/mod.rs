//! What `/metrics` exports: [`METRICS`], every metric with its labels and meaning (one
//! home: docs/operations.md, the dashboard and the alerts are checked against it), and
//! the process's Prometheus recorder ([`prometheus`]). Per-rule counters are in
//! [`rules`].

pub mod rules;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How a metric behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A Prometheus histogram (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// As Prometheus' `# TYPE` line names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric `rls` exports.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Its name.
    pub name: &'static str,
    /// How it behaves.
    pub kind: Kind,
    /// Its labels; `key1, key2, …` stands for one label per level of a rule.
    pub labels: &'static str,
    /// What it means.
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static str,
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

/// Labels of the per-rule counters.
const RULE_LABELS: &str = "domain, key1, key2, …";

/// Every metric `rls` exports, in the order docs/operations.md lists them.
pub const METRICS: &[Metric] = &[
    // Per rule: the reference's names.
    metric(
        rules::TOTAL_HITS,
        Kind::Counter,
        RULE_LABELS,
        "Hits (hits_addend) of requests whose descriptor a rule counted.",
    ),
    metric(
        rules::WITHIN_LIMIT,
        Kind::Counter,
        RULE_LABELS,
        "Hits allowed by the rule.",
    ),
    metric(
        rules::NEAR_LIMIT,
        Kind::Counter,
        RULE_LABELS,
        "Hits allowed above --near-limit-ratio of the rule's capacity.",
    ),
    metric(
        rules::OVER_LIMIT,
        Kind::Counter,
        RULE_LABELS,
        "Hits over the rule's limit (shadow-mode rules included).",
    ),
    metric(
        rules::OVER_LIMIT_WITH_LOCAL_CACHE,
        Kind::Counter,
        RULE_LABELS,
        "Hits over the limit answered from the over-limit cache, without Redis.",
    ),
    metric(
        rules::SHADOW_MODE,
        Kind::Counter,
        RULE_LABELS,
        "Hits over the limit of a shadow-mode rule, answered OK.",
    ),
    // Requests.
    metric(
        "rls_requests_total",
        Kind::Counter,
        "code",
        "Answers, by overall code: ok, over_limit.",
    ),
    metric(
        "rls_errors_total",
        Kind::Counter,
        "kind",
        "Requests refused with an error, by kind: invalid_request, backend, internal.",
    ),
    metric(
        REQUEST_DURATION,
        Kind::Histogram,
        "backend",
        "Time to answer ShouldRateLimit (gRPC and POST /json), waiting for a turn included, in seconds.",
    ),
    metric(
        "rls_requests_in_flight",
        Kind::Gauge,
        "",
        "Requests being answered now.",
    ),
    metric(
        "rls_requests_queued_total",
        Kind::Counter,
        "",
        "Requests that waited for a turn (--max-concurrent-requests).",
    ),
    metric(
        "rls_requests_gave_up_waiting_total",
        Kind::Counter,
        "",
        "Requests whose callers gave up while they waited for a turn.",
    ),
    // Backends.
    metric(
        "rls_memory_keys",
        Kind::Gauge,
        "",
        "Buckets and windows the memory store holds state for.",
    ),
    metric(
        "rls_backend_errors_total",
        Kind::Counter,
        "kind",
        "Requests (and RLQS splits) the backend did not answer, by kind: redis (an error), deadline, overload (shed), shard_down (not sent: the shard is down).",
    ),
    metric(
        "rls_backend_failures_total",
        Kind::Counter,
        "mode",
        "Requests answered by the failure mode (--on-backend-error), by mode.",
    ),
    metric(
        "rls_redis_calls_total",
        Kind::Counter,
        "shard",
        "Check-script calls sent to the shard.",
    ),
    metric(
        REDIS_CALL_DURATION,
        Kind::Histogram,
        "shard",
        "Round trip of one check-script call that Redis answered, in seconds.",
    ),
    metric(
        REDIS_BATCH_CHECKS,
        Kind::Histogram,
        "shard",
        "Checks in one check-script call.",
    ),
    metric(
        REDIS_CALL_ERRORS,
        Kind::Counter,
        "shard",
        "Check-script calls to the shard that failed or missed their deadline.",
    ),
    metric(
        "rls_redis_shard_up",
        Kind::Gauge,
        "shard",
        "1 while the shard answers; 0 before its first connection and while it is down (its calls then fail at once).",
    ),
    metric(
        "rls_over_limit_cache_keys",
        Kind::Gauge,
        "",
        "Buckets the over-limit cache remembers as empty.",
    ),
    metric(
        "rls_over_limit_cache_hits_total",
        Kind::Counter,
        "",
        "Checks the over-limit cache answered without Redis.",
    ),
    metric(
        "rls_over_limit_cache_waits_total",
        Kind::Counter,
        "",
        "Checks that waited for another request's Redis answer on the same bucket.",
    ),
    // Quota files.
    metric(
        "rls_config_reloads_total",
        Kind::Counter,
        "result",
        "Reloads of the quota files, or rule sets from xDS, by result: loaded, refused.",
    ),
    metric(
        CONFIG_VERSION,
        Kind::Gauge,
        "",
        "Version of the rules serving: 1 at start, one more per reload (or xDS rule set) served.",
    ),
    metric(
        CONFIG_LOADED,
        Kind::Gauge,
        "",
        "When the quota files serving were loaded, in Unix seconds.",
    ),
    metric(
        CONFIG_LOAD_DURATION,
        Kind::Gauge,
        "",
        "How long the last load of the quota files took (served or refused), in seconds.",
    ),
    metric(
        CONFIG_RULES,
        Kind::Gauge,
        "",
        "Rules of the quota files serving.",
    ),
    metric(
        CONFIG_REFUSED,
        Kind::Gauge,
        "",
        "1 while the last reload was refused (the previous files serve), else 0.",
    ),
    // Rules from xDS, TLS on the gRPC listener.
    metric(
        "rls_xds_connected",
        Kind::Gauge,
        "",
        "With rules from xDS: 1 while the stream to the management server is up, else 0.",
    ),
    metric(
        "rls_tls_reloads_total",
        Kind::Counter,
        "result",
        "With TLS on the gRPC listener: its files read again after a change, by result: loaded, refused.",
    ),
    // RLQS (docs/rlqs.md).
    metric(
        "rls_rlqs_streams",
        Kind::Gauge,
        "",
        "Open RLQS streams (Envoys connected to this replica).",
    ),
    metric(
        "rls_rlqs_buckets",
        Kind::Gauge,
        "",
        "RLQS buckets tracked over all streams.",
    ),
    metric(
        "rls_rlqs_usage_total",
        Kind::Counter,
        "decision, mode",
        "Requests Envoy reported over RLQS, by what it decided (allowed, denied) and by the bucket's mode: enforced, shadow, unlimited, unmatched.",
    ),
    metric(
        "rls_rlqs_grant_changes_total",
        Kind::Counter,
        "",
        "RLQS grants that changed (each starts an Envoy's bucket full).",
    ),
    metric(
        "rls_rlqs_skipped_usages_total",
        Kind::Counter,
        "",
        "RLQS usages without a bucket id.",
    ),
    metric(
        "rls_rlqs_untracked_buckets_total",
        Kind::Counter,
        "",
        "RLQS buckets answered untracked, past --rlqs-max-buckets.",
    ),
    metric(
        "rls_rlqs_refused_streams_total",
        Kind::Counter,
        "",
        "RLQS streams ended with INVALID_ARGUMENT (no domain, or a second one).",
    ),
    // Lifecycle.
    metric(
        DRAINING,
        Kind::Gauge,
        "",
        "1 once shutdown has begun: unready, serving until the drain delay ends.",
    ),
    metric(GRPC_CONNECTIONS, Kind::Gauge, "", "Open gRPC connections."),
    metric(
        GRPC_CONNECTIONS_AGED,
        Kind::Counter,
        "",
        "gRPC connections told to go away (GOAWAY) at --max-connection-age.",
    ),
];

/// `ShouldRateLimit` latency.
pub const REQUEST_DURATION: &str = "rls_request_duration_seconds";
/// Redis call latency.
pub const REDIS_CALL_DURATION: &str = "rls_redis_call_duration_seconds";
/// Checks per Redis call.
pub const REDIS_BATCH_CHECKS: &str = "rls_redis_batch_checks";
/// Failed calls per shard.
pub const REDIS_CALL_ERRORS: &str = "rls_redis_call_errors_total";
/// Version of the serving quota files.
pub const CONFIG_VERSION: &str = "rls_config_version";
/// Load time of the serving quota files.
pub const CONFIG_LOADED: &str = "rls_config_loaded_timestamp_seconds";
/// Duration of the last load.
pub const CONFIG_LOAD_DURATION: &str = "rls_config_load_duration_seconds";
/// Rules serving.
pub const CONFIG_RULES: &str = "rls_config_rules";
/// Whether the last reload was refused.
pub const CONFIG_REFUSED: &str = "rls_config_last_reload_refused";
/// Shutdown begun.
pub const DRAINING: &str = "rls_draining";
/// Open gRPC connections.
pub const GRPC_CONNECTIONS: &str = "rls_grpc_connections";
/// Connections aged out.
pub const GRPC_CONNECTIONS_AGED: &str = "rls_grpc_connections_aged_total";

/// Latency buckets, in seconds: Envoy gives rls 20 ms by default, so most of the range is
/// below that.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];

/// Checks per script call: powers of two up to the largest `--batch-max-checks` default.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process's Prometheus recorder, installed on first use, before any metric is
/// registered (several servers in one test process share it). Metrics registered before
/// it is installed would go nowhere: whatever registers handles calls this first.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in [
                (REQUEST_DURATION, LATENCY_BUCKETS),
                (REDIS_CALL_DURATION, LATENCY_BUCKETS),
                (REDIS_BATCH_CHECKS, BATCH_BUCKETS),
            ] {
                // Fails only on empty buckets, which these are not.
                builder = match builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                {
                    Ok(builder) => builder,
                    Err(error) => unreachable!("bucket lists are not empty: {error}"),
                };
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; metrics then go there.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

/// Gives every metric its `# HELP` line.
fn describe() {
    for m in METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The table of [`METRICS`] as docs/operations.md shows it: one row per metric, in order.
pub fn markdown_table() -> String {
    let mut out = String::from("| Metric | Type | Labels | Meaning |\n| --- | --- | --- | --- |\n");
    for m in METRICS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            if m.labels.is_empty() { "–" } else { m.labels },
            m.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operations_guide_lists_every_metric_as_exported() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
        let guide = std::fs::read_to_string(path).expect("docs/operations.md");
        let table = markdown_table();
        assert!(
            guide.contains(&table),
            "docs/operations.md must hold the metrics table as rls exports it:\n{table}"
        );
    }

    #[test]
    fn every_metric_is_listed_once_with_a_name_prometheus_accepts() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a metric is listed twice");
        for m in METRICS {
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            let counter_named = m.name.ends_with("_total");
            if m.name.starts_with("rls_") {
                assert_eq!(counter_named, m.kind == Kind::Counter, "{}", m.name);
            }
        }
    }
}
