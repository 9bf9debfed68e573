//! `GET /config` of a running `rls serve`: the rules with where each came from, the version
//! and load time, the last refused reload (file, line, column, key path) until a good one
//! clears it, as text and as JSON; and no secret in it, in `/metrics` or in the logs.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::http;
use common::process::RlsProcess;
use common::redis::RedisServer;
use serde_json::Value;

const GOOD: &str = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: minute, requests_per_unit: 10}\n";
const BETTER: &str = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: minute, requests_per_unit: 20}\n  - key: user\n    rate_limit: {unit: second, requests_per_unit: 1}\n";
/// Line 4, column 34: an unknown unit.
const BAD: &str =
    "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: minute, per: 10}\n";

fn get(server: &RlsProcess, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(http(([127, 0, 0, 1], server.http).into(), "GET", path, ""))
}

fn config_json(server: &RlsProcess) -> Value {
    let (status, body) = get(server, "/config?format=json");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls `/config?format=json` until `done` holds for it (the reload follows a file event).
fn until(server: &RlsProcess, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let config = config_json(server);
        if done(&config) {
            return config;
        }
        assert!(Instant::now() < deadline, "never came: {config:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn config_shows_the_rules_their_origin_the_version_and_the_last_refused_reload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, GOOD).expect("write");
    let config = dir.path().to_str().expect("utf-8 path").to_owned();
    let server = RlsProcess::start(&["--config", &config], &["serving"]);

    let first = config_json(&server);
    assert_eq!(first["version"], 1);
    assert!(first["last_reload_error"].is_null());
    let rule = &first["domains"][0]["rules"][0];
    assert_eq!(rule["key"], "edge.path");
    assert_eq!(rule["limits"][0]["requests_per_unit"], 10);
    let origin = rule["origin"].as_str().expect("origin");
    assert!(origin.ends_with("edge.yaml:3:5"), "{origin}");

    // A bad file is refused; the version serving stays, and the fault is shown.
    std::fs::write(&file, BAD).expect("write");
    let refused = until(&server, |c| !c["last_reload_error"].is_null());
    assert_eq!(refused["version"], 1);
    assert_eq!(
        refused["domains"][0]["rules"][0]["limits"][0]["requests_per_unit"],
        10
    );
    let error = &refused["last_reload_error"];
    assert!(
        error["file"].as_str().expect("file").ends_with("edge.yaml"),
        "{error}"
    );
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(4), Some(32)),
        "{error}"
    );
    assert_eq!(error["key_path"], "descriptors[0].rate_limit.per");
    let (status, text) = get(&server, "/config");
    assert_eq!(status, 200);
    assert!(text.starts_with("version 1, loaded "), "{text}");
    assert!(text.contains("last reload: refused at "), "{text}");
    assert!(
        text.contains("edge.yaml:4:32, key path descriptors[0].rate_limit.per"),
        "{text}"
    );
    assert!(text.contains("edge.path: 10/minute"), "{text}");

    // A good reload serves the next version and clears the fault.
    std::fs::write(&file, BETTER).expect("write");
    let served = until(&server, |c| c["version"] == 2);
    assert!(served["last_reload_error"].is_null(), "{served:#}");
    assert_eq!(served["rule_count"], 2);
    assert_ne!(served["digest"], first["digest"]);
    let (_, text) = get(&server, "/config");
    assert!(text.contains("last reload: served"), "{text}");
    assert!(text.contains("edge.user: 1/second"), "{text}");
}

#[test]
fn no_redis_password_appears_in_config_metrics_or_logs() {
    const PASSWORD: &str = "pa55-w0rd-never-shown";
    let redis = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("edge.yaml"), GOOD).expect("write");
    let config = dir.path().to_str().expect("utf-8 path").to_owned();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port);
    // A second shard nobody listens on: its connection errors are logged too.
    let dead = format!(
        "redis://user:{PASSWORD}@127.0.0.1:{}",
        common::redis::free_port()
    );
    let mut server = RlsProcess::start(
        &[
            "--config",
            &config,
            "--backend",
            "redis",
            "--redis-url",
            &url,
            "--redis-url",
            &dead,
            "--log-level",
            "debug",
        ],
        &["serving", "connected", "cannot connect"],
    );
    let mut seen = String::new();
    for path in ["/config", "/config?format=json", "/metrics", "/readyz"] {
        let (_, body) = get(&server, path);
        seen.push_str(&body);
    }
    assert!(seen.contains("127.0.0.1"), "the shards are named: {seen}");
    // The rest of its log, once it has stopped.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut stderr = String::new();
    if let Some(mut err) = server.child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    seen.push_str(&stderr);
    seen.push_str(&server.log());
    assert!(!seen.contains(PASSWORD), "the password leaked:\n{seen}");
}
