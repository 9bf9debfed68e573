//! `deploy/grafana/rls.json` and `deploy/prometheus/alerts.yaml` against what rls exports:
//! every metric their queries name is in rls's catalogue (`rls::stats::METRICS`) and in a
//! real scrape of `rls serve` after traffic; every metric a scrape shows is catalogued; the
//! alerts validate as a prometheus-operator PrometheusRule and name runbooks that exist.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::ads::AdsServer;
use common::manifest;
use common::process::RlsProcess;
use common::redis::RedisServer;
use common::scrape::{samples, value};
use common::tools::workspace;
use proto::rlqs::rate_limit_quota_service_client::RateLimitQuotaServiceClient;
use proto::rlqs::rate_limit_quota_usage_reports::BucketQuotaUsage;
use proto::rlqs::{BucketId, RateLimitQuotaUsageReports};
use proto::rls::RateLimitRequest;
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use rls::query::parse_descriptor;
use rls::stats::{Kind, METRICS};
use serde_json::{Value, json};

/// PromQL functions, aggregations and keywords: every other identifier outside label
/// matchers, ranges and grouping lists is a metric name.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "topk",
    "bottomk",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "abs",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "label_values",
    "absent",
    "delta",
    "deriv",
    "time",
    "vector",
    "scalar",
];

/// Words followed by a list of label names, not metric names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening bracket to its match (strings inside included).
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' => {
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if LABEL_LISTS.contains(&word.as_str()) {
                while i < chars.len() && chars[i] != '(' {
                    i += 1;
                }
                i = skip_group(i, '(', ')');
            } else if !PROMQL_WORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else if c == '$' {
            // A Grafana variable outside a matcher: a word, not a metric.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn promql_metric_names_are_read_outside_matchers_ranges_and_label_lists() {
    let expr = r#"histogram_quantile(0.99, sum by (le, shard) (rate(rls_redis_call_duration_seconds_bucket{job=~"$job", shard!="a{b}"}[$__rate_interval]))) > 1e-3
        or topk(10, sum without (instance) (increase(rls_requests_total[5m] offset 1h))) / on (job) group_left(code) x:y:z"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "rls_redis_call_duration_seconds_bucket",
            "rls_requests_total",
            "x:y:z"
        ]
    );
    // label_values(metric, label): the label is inside the call, read as a name too;
    // the templating reader takes the first argument only.
    assert_eq!(
        template_metric("label_values(up{job=\"a\"}, domain)"),
        Some("up".into())
    );
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace().join(path)).expect(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn read_yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace().join(path)).expect(path);
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every string under a key named `key`, at any depth.
fn strings_under(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k == key, v) {
                    (true, Value::String(s)) => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

/// The metric of a templating query `label_values(metric{...}, label)`.
fn template_metric(query: &str) -> Option<String> {
    let inner = query.strip_prefix("label_values(")?;
    let first = inner.split(',').next()?;
    metric_names(first).into_iter().next()
}

/// (where, expression) of every query of the dashboard and the alerts.
fn queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dashboard = read_json("deploy/grafana/rls.json");
    let mut exprs = Vec::new();
    strings_under(&dashboard["panels"], "expr", &mut exprs);
    out.extend(
        exprs
            .into_iter()
            .map(|e| ("deploy/grafana/rls.json".to_owned(), e)),
    );
    let mut templates = Vec::new();
    strings_under(&dashboard["templating"], "query", &mut templates);
    for query in templates.iter().filter(|q| q.starts_with("label_values(")) {
        let metric = template_metric(query).unwrap_or_else(|| panic!("unreadable {query}"));
        out.push(("deploy/grafana/rls.json templating".to_owned(), metric));
    }
    let alerts = read_yaml("deploy/prometheus/alerts.yaml");
    for rule in alerts["groups"][0]["rules"].as_array().expect("rules") {
        let name = format!("deploy/prometheus/alerts.yaml {}", rule["alert"]);
        out.push((name, rule["expr"].as_str().expect("expr").to_owned()));
    }
    out
}

/// The catalogued metric a sample or query name belongs to (a histogram's series carry
/// `_bucket`, `_sum` and `_count`).
fn catalogued(name: &str) -> Option<&'static str> {
    METRICS
        .iter()
        .map(|m| m.name)
        .find(|&m| m == name)
        .or_else(|| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))?;
            METRICS
                .iter()
                .find(|m| m.name == base && m.kind == Kind::Histogram)
                .map(|m| m.name)
        })
}

/// Metrics no query reads, and why: each is in docs/operations.md for those who want it.
const NOT_CHARTED: &[&str] = &[
    // total_hits minus over_limit.
    "ratelimit_service_rate_limit_within_limit",
    // Only with --lease auto: its calls are in rls_redis_calls_total, charted; the
    // largest lease is the bound docs/redis.md states, read when sizing.
    "rls_lease_calls_total",
    "rls_lease_largest_tokens",
    // A detail of the over-limit cache's hits.
    "rls_over_limit_cache_waits_total",
    // /config shows when and how long; the version is charted.
    "rls_config_loaded_timestamp_seconds",
    "rls_config_load_duration_seconds",
    // Only with TLS on the gRPC listener: the log names each refused certificate.
    "rls_tls_reloads_total",
    // Malformed RLQS traffic, rare: logged and counted.
    "rls_rlqs_skipped_usages_total",
    "rls_rlqs_untracked_buckets_total",
    "rls_rlqs_refused_streams_total",
];

const QUOTAS: &str = "
domain: dash
descriptors:
  - key: path
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: trial
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
";

/// Runs `rls serve` on Redis, with a bound on requests decided at once, and traffic of
/// every kind the queries read (answers, an invalid request, rules over their limit, the
/// over-limit cache, a refused reload), on memory, and with rules from an xDS server;
/// returns a scrape of each.
fn scrape_after_traffic() -> [String; 3] {
    let memory_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(memory_dir.path().join("dash.yaml"), QUOTAS).expect("write");
    let config = memory_dir.path().to_str().expect("utf-8 path").to_owned();
    let memory = RlsProcess::start(&["--config", &config], &["serving"]);
    let redis_scrape = scrape_redis_after_traffic();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let memory_scrape = runtime.block_on(async {
        // An Envoy's RLQS stream, open while the scrape is taken.
        let mut client = RateLimitQuotaServiceClient::connect(memory.endpoint())
            .await
            .expect("connect");
        let (reports, outbox) = tokio::sync::mpsc::channel(1);
        let usage = BucketQuotaUsage {
            bucket_id: Some(BucketId {
                bucket: [("path".to_owned(), "/a".to_owned())].into(),
            }),
            num_requests_allowed: 1,
            ..BucketQuotaUsage::default()
        };
        let report = RateLimitQuotaUsageReports {
            domain: "dash".into(),
            bucket_quota_usages: vec![usage],
        };
        reports.send(report).await.expect("stream open");
        let mut answers = client
            .stream_rate_limit_quotas(tokio_stream::wrappers::ReceiverStream::new(outbox))
            .await
            .expect("stream opens")
            .into_inner();
        answers
            .message()
            .await
            .expect("no error")
            .expect("an assignment");
        let (_, text) =
            common::http(([127, 0, 0, 1], memory.http).into(), "GET", "/metrics", "").await;
        drop(reports);
        text
    });
    let xds_scrape = runtime.block_on(scrape_fed_by_xds());
    [redis_scrape, memory_scrape, xds_scrape]
}

/// A scrape of an rls whose rules come from an xDS server the test runs, once its first
/// set is served.
async fn scrape_fed_by_xds() -> String {
    let ads = AdsServer::start(None).await;
    ads.push("v1", Vec::new());
    let url = ads.url(false);
    let server = tokio::task::spawn_blocking(move || {
        let args = ["--config-source", "xds", "--xds-server", &url];
        RlsProcess::start(&args, &["serving", "xDS rule set applied"])
    })
    .await
    .expect("rls starts");
    let (_, text) = common::http(([127, 0, 0, 1], server.http).into(), "GET", "/metrics", "").await;
    text
}

fn scrape_redis_after_traffic() -> String {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("dash.yaml"), QUOTAS).expect("write");
    let config = dir.path().to_str().expect("utf-8 path").to_owned();
    let url = redis.url();
    let args = [
        "--config",
        &config,
        "--backend",
        "redis",
        "--redis-url",
        &url,
    ];
    // A deadline a loaded test machine keeps: the failure mode must not answer here.
    let bounded = ["--max-concurrent-requests", "64", "--backend-timeout", "5s"];
    let server = RlsProcess::start(&[&args[..], &bounded].concat(), &["serving", "connected"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = RateLimitServiceClient::connect(server.endpoint())
            .await
            .expect("connect");
        let ask = |descriptor: &str| RateLimitRequest {
            domain: "dash".into(),
            descriptors: vec![parse_descriptor(descriptor)],
            hits_addend: 1,
        };
        for descriptor in [
            "path=/a", "path=/a", "path=/a", "path=/a", "trial=t", "trial=t",
        ] {
            client
                .should_rate_limit(ask(descriptor))
                .await
                .expect("answer");
        }
        let invalid = RateLimitRequest::default();
        assert!(client.should_rate_limit(invalid).await.is_err());
    });
    std::fs::write(
        dir.path().join("dash.yaml"),
        "domain: dash\ndescriptors: 7\n",
    )
    .expect("write");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = runtime.block_on(common::http(
            ([127, 0, 0, 1], server.http).into(),
            "GET",
            "/metrics",
            "",
        ));
        if value(&samples(&text.1), "rls_config_last_reload_refused", &[]) == Some(1.0) {
            return text.1;
        }
        assert!(
            Instant::now() < deadline,
            "the bad file was not refused:\n{}",
            text.1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The service metrics of the Redis server's scrape: what its traffic came to.
fn assert_service_metrics(scrape: &str) {
    let samples = samples(scrape);
    let one = |name: &str, labels: &[(&str, &str)]| {
        value(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"))
    };
    // Six answers and one refusal, timed; none left in flight.
    let backend = [("backend", "redis")];
    assert_eq!(one("rls_request_duration_seconds_count", &backend), 7.0);
    assert_eq!(one("rls_requests_total", &[("code", "ok")]), 4.0);
    assert_eq!(one("rls_requests_total", &[("code", "over_limit")]), 2.0);
    assert_eq!(one("rls_errors_total", &[("kind", "invalid_request")]), 1.0);
    assert_eq!(one("rls_requests_in_flight", &[]), 0.0);
    // One shard, connected; every call's checks counted.
    let shard = samples
        .iter()
        .find(|s| s.name == "rls_redis_shard_up")
        .expect("a shard");
    assert_eq!(shard.value, 1.0);
    let shard = [("shard", shard.labels["shard"].as_str())];
    let calls = one("rls_redis_calls_total", &shard);
    assert!(calls >= 1.0);
    assert_eq!(one("rls_redis_batch_checks_count", &shard), calls);
    assert_eq!(one("rls_redis_call_duration_seconds_count", &shard), calls);
    // The files loaded at start still serve, beside the refused change.
    assert_eq!(one("rls_config_version", &[]), 1.0);
    // Loaded at start, this century; the refused reload's load timed.
    assert!(one("rls_config_loaded_timestamp_seconds", &[]) > 1.7e9);
    assert!(one("rls_config_load_duration_seconds", &[]) > 0.0);
    assert_eq!(one("rls_config_rules", &[]), 2.0);
    assert_eq!(
        one("rls_config_reloads_total", &[("result", "refused")]),
        1.0,
        "{scrape}"
    );
}

#[test]
fn every_query_names_a_metric_rls_exports_and_every_export_is_catalogued() {
    let scrapes = scrape_after_traffic();
    assert_service_metrics(&scrapes[0]);
    let scraped: BTreeSet<String> = scrapes
        .iter()
        .flat_map(|scrape| samples(scrape))
        .map(|s| s.name)
        .collect();
    for name in &scraped {
        assert!(
            catalogued(name).is_some(),
            "{name} is exported but not in rls::stats::METRICS"
        );
    }
    let queries = queries();
    assert!(queries.len() >= 30, "{} queries", queries.len());
    let mut read = BTreeSet::new();
    for (place, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr}");
        for name in names {
            assert!(
                catalogued(&name).is_some(),
                "{place}: {name} is no metric of rls"
            );
            assert!(
                scraped.contains(&name),
                "{place}: {name} is not in a scrape after traffic"
            );
            read.insert(catalogued(&name).unwrap_or_default());
        }
    }
    // The dashboard and the alerts between them read every metric but these.
    let unread: Vec<&str> = METRICS
        .iter()
        .map(|m| m.name)
        .filter(|m| !read.contains(m))
        .collect();
    assert_eq!(
        unread, NOT_CHARTED,
        "a metric is neither charted nor listed as not"
    );
}

#[test]
fn the_dashboard_panels_are_well_formed() {
    let dashboard = read_json("deploy/grafana/rls.json");
    assert_eq!(dashboard["uid"], "rls-overview");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "id twice: {panel}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (
            grid["x"].as_u64().expect("x"),
            grid["w"].as_u64().expect("w"),
        );
        assert!(
            x + w <= 24,
            "{} is wider than the dashboard",
            panel["title"]
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        let refs: BTreeSet<&str> = targets.iter().filter_map(|t| t["refId"].as_str()).collect();
        assert_eq!(refs.len(), targets.len(), "{}: refIds", panel["title"]);
        assert!(!panel["description"].as_str().unwrap_or("").is_empty());
    }
}

#[test]
fn the_alerts_validate_as_a_prometheus_rule_and_name_runbooks_that_exist() {
    let alerts = read_yaml("deploy/prometheus/alerts.yaml");
    let docs = std::fs::read_to_string(workspace().join("docs/operations.md")).expect("docs");
    let anchors: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .map(|heading| {
            let lower = heading.to_lowercase();
            let kept = lower
                .chars()
                .filter(|c| c.is_alphanumeric() || " -_".contains(*c));
            kept.collect::<String>().replace(' ', "-")
        })
        .collect();
    for rule in alerts["groups"][0]["rules"].as_array().expect("rules") {
        let runbook = rule["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url");
        let anchor = runbook
            .strip_prefix("docs/operations.md#")
            .expect("a docs anchor");
        assert!(
            anchors.contains(anchor),
            "{}: no section #{anchor}",
            rule["alert"]
        );
        assert!(
            ["critical", "warning", "info"]
                .contains(&rule["labels"]["severity"].as_str().unwrap_or(""))
        );
    }
    let object = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "rls", "namespace": "rls"},
        "spec": alerts,
    });
    let (ok, report) = manifest::validate_custom_resources(&[&object]);
    assert!(ok && report.starts_with("OK"), "{report}");
}
