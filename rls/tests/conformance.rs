//! The conformance suite: every case in `tests/conformance/*.yaml` is run over real gRPC
//! against a server on 127.0.0.1:0 with a fake clock, once per algorithm it names.
//!
//! A case file is a list of cases:
//!
//! ```yaml
//! - name: within limit reports the remaining tokens   # a sentence
//!   algorithms: [token_bucket, fixed_window]          # default algorithm(s) to run with
//!   settings: {shadow_mode: false, quota_mode: false, dynamic_metadata: false,
//!              response_headers: false, stop_increment: false, merge_domains: false,
//!              max_descriptors: 64}
//!   start: 1700000000                                  # fake clock, Unix seconds
//!   quotas: |                                          # one quota file (several `---` docs ok)
//!     domain: edge ...
//!   steps:
//!     - advance: 0.5                                   # seconds to move the clock first
//!       repeat: 3                                      # send it this many times (default 1)
//!       request: {domain: edge, descriptors: [...]}    # proto3 JSON RateLimitRequest
//!       response: {overallCode: OK, statuses: [...]}   # the whole expected answer, or
//!       error: {code: InvalidArgument, message: "..."} # the expected gRPC error
//!       ignore: [durationUntilReset]                   # fields left out of the comparison
//! ```
//!
//! With `repeat`, every answer but the last must be OK overall, and the last must equal
//! `response`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::redis::{RedisCluster, RedisServer};
use common::{Backend, START_SECS, TestServer};
use config::{Algorithm, LoadOptions};
use proto::rls::RateLimitRequest;
use rls::decide::AnswerOptions;
use rls::headers::HeaderNames;
use rls::request::RequestBounds;
use rls::store::redis::Endpoint;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "both")]
    algorithms: Vec<AlgorithmName>,
    #[serde(default)]
    settings: CaseSettings,
    #[serde(default = "start")]
    start: u64,
    quotas: String,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum AlgorithmName {
    TokenBucket,
    FixedWindow,
}

fn both() -> Vec<AlgorithmName> {
    vec![AlgorithmName::TokenBucket, AlgorithmName::FixedWindow]
}

fn start() -> u64 {
    START_SECS
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSettings {
    #[serde(default)]
    shadow_mode: bool,
    #[serde(default)]
    quota_mode: bool,
    #[serde(default)]
    dynamic_metadata: bool,
    #[serde(default)]
    response_headers: bool,
    #[serde(default)]
    stop_increment: bool,
    #[serde(default)]
    merge_domains: bool,
    max_descriptors: Option<usize>,
    max_entries: Option<usize>,
    max_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    advance: f64,
    #[serde(default = "one")]
    repeat: usize,
    request: Value,
    response: Option<Value>,
    error: Option<ExpectedError>,
    #[serde(default)]
    ignore: Vec<String>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedError {
    code: String,
    message: String,
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("conformance directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn load_cases() -> Vec<(String, Case)> {
    let mut cases = Vec::new();
    for file in case_files() {
        let text = std::fs::read_to_string(&file).expect("read case file");
        let parsed: Vec<Case> =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        cases.extend(parsed.into_iter().map(|c| (stem.clone(), c)));
    }
    cases
}

/// Removes every object member named in `ignore`, at any depth.
fn strip(value: &mut Value, ignore: &[String]) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !ignore.contains(k));
            map.values_mut().for_each(|v| strip(v, ignore));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, ignore)),
        _ => {}
    }
}

async fn run_case(
    backend: &Backend,
    file: &str,
    case: &Case,
    algorithm: AlgorithmName,
) -> Result<(), String> {
    let default_algorithm = match algorithm {
        AlgorithmName::TokenBucket => Algorithm::TokenBucket,
        AlgorithmName::FixedWindow => Algorithm::FixedWindow,
    };
    let load = LoadOptions {
        merge_domains: case.settings.merge_domains,
        default_algorithm,
        ..LoadOptions::default()
    };
    let defaults = RequestBounds::default();
    let options = AnswerOptions {
        global_shadow: case.settings.shadow_mode,
        global_quota: case.settings.quota_mode,
        dynamic_metadata: case.settings.dynamic_metadata,
        headers: case.settings.response_headers.then(HeaderNames::default),
        stop_increment: case.settings.stop_increment,
        default_algorithm,
        bounds: RequestBounds {
            max_descriptors: case
                .settings
                .max_descriptors
                .unwrap_or(defaults.max_descriptors),
            max_entries: case.settings.max_entries.unwrap_or(defaults.max_entries),
            max_bytes: case.settings.max_bytes.unwrap_or(defaults.max_bytes),
        },
        max_concurrent: None,
        stats: Default::default(),
    };
    let quotas = config::QuotaSet::from_sources([("quotas.yaml", case.quotas.as_str())], &load)
        .map_err(|e| format!("{file}: {}: quotas: {e}", case.name))?;
    let server = TestServer::start_on(backend, quotas, options, case.start).await;
    let mut client = server.client().await;
    let mut failure = None;
    'steps: for (n, step) in case.steps.iter().enumerate() {
        server.clock.advance(Duration::from_secs_f64(step.advance));
        let request: RateLimitRequest = match serde_json::from_value(step.request.clone()) {
            Ok(request) => request,
            Err(e) => {
                failure = Some(format!(
                    "{file}: {} step {n}: not a RateLimitRequest: {e}",
                    case.name
                ));
                break;
            }
        };
        for attempt in 0..step.repeat {
            let last = attempt + 1 == step.repeat;
            let answer = client.should_rate_limit(request.clone()).await;
            let problem = match (answer, last) {
                (Ok(answer), false) if answer.get_ref().overall_code == 1 => None,
                (Ok(answer), false) => Some(format!(
                    "repeat {attempt} was not OK: {:?}",
                    answer.get_ref()
                )),
                (Err(status), false) => Some(format!("repeat {attempt} failed: {status}")),
                (Ok(answer), true) => {
                    let mut actual = serde_json::to_value(answer.get_ref())
                        .unwrap_or_else(|e| Value::String(e.to_string()));
                    match &step.response {
                        Some(expected) => {
                            let mut expected = expected.clone();
                            strip(&mut actual, &step.ignore);
                            strip(&mut expected, &step.ignore);
                            (actual != expected)
                                .then(|| format!("answer {actual}\n   expected {expected}"))
                        }
                        None => Some(format!("expected an error, got {actual}")),
                    }
                }
                (Err(status), true) => match &step.error {
                    Some(expected) => {
                        let code = format!("{:?}", status.code());
                        (code != expected.code || status.message() != expected.message).then(|| {
                            format!(
                                "error {code} {:?}, expected {} {:?}",
                                status.message(),
                                expected.code,
                                expected.message
                            )
                        })
                    }
                    None => Some(format!("unexpected error {status}")),
                },
            };
            if let Some(problem) = problem {
                failure = Some(format!(
                    "{file}: {} [{algorithm:?}] step {n}: {problem}",
                    case.name
                ));
                break 'steps;
            }
        }
    }
    server.stop().await;
    failure.map_or(Ok(()), Err)
}

/// Runs every case on `backend`; panics with every failure.
async fn run_suite(backend: Backend) {
    let cases = load_cases();
    let mut runs = 0;
    let mut failures = Vec::new();
    for (file, case) in &cases {
        assert!(!case.steps.is_empty(), "{file}: {} has no steps", case.name);
        for &algorithm in &case.algorithms {
            runs += 1;
            if let Err(failure) = run_case(&backend, file, case, algorithm).await {
                failures.push(failure);
            }
        }
    }
    assert!(
        cases.len() >= 40,
        "the suite has only {} cases",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{} cases, {runs} runs passed", cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_case_holds_on_the_memory_store() {
    run_suite(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_case_holds_on_one_redis() {
    let redis = RedisServer::start();
    run_suite(Backend::Redis(vec![Endpoint::Server(redis.url())])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_case_holds_on_three_client_side_redis_shards() {
    let shards = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    run_suite(Backend::Redis(
        shards.iter().map(|s| Endpoint::Server(s.url())).collect(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_case_holds_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes = cluster
        .addrs()
        .iter()
        .map(|a| format!("redis://{a}"))
        .collect();
    run_suite(Backend::Redis(vec![Endpoint::Cluster(nodes)])).await;
}
