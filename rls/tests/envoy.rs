//! The Envoy configurations of `deploy/` run by a real Envoy: every bootstrap and every
//! Istio EnvoyFilter passes `envoy --mode validate`, and the bootstraps, with only their
//! ports moved to free loopback ports, enforce `config/examples/` through a real `rls`
//! (memory and Redis), fail open or closed as configured, and keep their local limits
//! when `rls` is gone.

mod common;

use std::path::{Path, PathBuf};

use common::envoy::{self, Bootstrap, Client, Envoy, Response};
use common::process::RlsProcess;
use common::redis::RedisServer;
use common::tools::workspace;
use common::{istio, manifest};

/// The bootstraps' ports: the listener clients call, and where they expect rls.
const LISTENER: u16 = 10000;
const RLS_GRPC: u16 = 8081;

fn deploy(path: &str) -> PathBuf {
    workspace().join("deploy").join(path)
}

/// A copy of `config/examples/` that a test may edit.
fn example_quotas() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(workspace().join("config/examples")).expect("examples") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn serve(quotas: &Path, extra: &[&str], wait_for: &[&str]) -> RlsProcess {
    let mut args = vec!["--config", quotas.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    RlsProcess::start(&args, wait_for)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_envoy_bootstrap_in_deploy_passes_envoy_validate() {
    let bootstraps = files_in(&deploy("envoy"));
    assert!(
        bootstraps.len() >= 3,
        "global, local and both: {bootstraps:?}"
    );
    for path in bootstraps {
        envoy::validate(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn every_istio_envoy_filter_placed_into_a_bootstrap_passes_envoy_validate() {
    let files = files_in(&deploy("istio"));
    assert!(
        files.len() >= 3,
        "gateway, sidecar global and local: {files:?}"
    );
    for path in files {
        for filter in manifest::read(&path) {
            assert_eq!(filter["kind"], "EnvoyFilter", "{}", path.display());
            let bootstrap = istio::bootstrap_with(&filter);
            let text = serde_json::to_string_pretty(&bootstrap).expect("json");
            Bootstrap::text(text)
                .validate()
                .unwrap_or_else(|e| panic!("{} placed into a bootstrap: {e}", path.display()));
        }
    }
}

/// A request that a limit answered: Envoy sent x-ratelimit-* headers. Envoy gives rls
/// 20 ms (the bootstraps' timeout); a debug-built rls on a loaded machine can miss that,
/// above all for the first call, which opens the connection. Such a request passes
/// uncounted (fail open, with no headers), so it is sent again, a bounded number of times.
fn answered(
    client: &Client,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    for _ in 0..20 {
        let response = client.request(method, port, path, headers);
        if response.status != 200 || response.header("x-ratelimit-limit").is_some() {
            return response;
        }
    }
    panic!("{method} {path}: no answer with a limit in 20 tries")
}

/// Starts `envoy` answering through rls: its first call opens the connection (and, on
/// Redis, loads the script), the one most likely to miss the 20 ms, and a call that
/// missed it may still have taken a token. So the first call is one whose bucket no test
/// reads: 127.0.0.1's per_ip.
fn warm_up(envoy: &Envoy) -> &Envoy {
    answered(
        &Client::new([127, 0, 0, 1]),
        envoy.port(LISTENER),
        "GET",
        "/",
        &[],
    );
    envoy
}

/// `limit + 1` logins from `client`: the first `limit` are answered 200 with the remaining
/// tokens counting down from `limit - 1`, the last 429 with none left.
fn logins_past(client: &Client, port: u16, limit: u64) -> Response {
    for i in 1..=limit {
        let response = answered(client, port, "GET", &format!("/api/login?attempt={i}"), &[]);
        assert_eq!(response.status, 200, "login {i} of {limit}: {response:?}");
        assert_eq!(
            response.number("x-ratelimit-remaining"),
            limit - i,
            "{response:?}"
        );
    }
    let refused = answered(client, port, "GET", "/api/login", &[]);
    assert_eq!(
        refused.status,
        429,
        "login {} of {limit}: {refused:?}",
        limit + 1
    );
    refused
}

/// The 429 of the login rule (10 a minute per client), with Envoy's headers from the rls
/// answer: the limit and its window, nothing remaining, seconds until a token is back.
fn assert_login_refused_with_headers(refused: &Response) {
    let limit = refused
        .header("x-ratelimit-limit")
        .expect("x-ratelimit-limit");
    assert!(limit.starts_with("10, "), "{refused:?}");
    assert!(limit.contains("10;w=60"), "{refused:?}");
    assert_eq!(refused.number("x-ratelimit-remaining"), 0);
    let reset = refused.number("x-ratelimit-reset");
    assert!((1..=60).contains(&reset), "{refused:?}");
}

#[test]
fn global_bootstrap_on_rls_in_memory_refuses_past_the_quota_with_ratelimit_headers() {
    let quotas = example_quotas();
    let rls = serve(quotas.path(), &[], &["serving"]);
    let envoy = Bootstrap::file(deploy("envoy/global.yaml"))
        .port(RLS_GRPC, rls.grpc)
        .start();
    let port = warm_up(&envoy).port(LISTENER);

    let refused = logins_past(&Client::new([127, 0, 0, 2]), port, 10);
    assert_login_refused_with_headers(&refused);
    // Another client's logins have a bucket of their own.
    let other = answered(&Client::new([127, 0, 0, 3]), port, "GET", "/api/login", &[]);
    assert_eq!(other.status, 200, "{other:?}");

    every_descriptor_reaches_its_rule(&envoy, &Client::new([127, 0, 0, 4]));
    a_shadow_mode_rule_lets_every_request_through(&envoy, &Client::new([127, 0, 0, 5]));
}

/// One request per rule of `config/examples/` that a loopback client can reach: Envoy's
/// `x-ratelimit-limit` lists every limit rls answered with, so each shows its rule was
/// matched by what the bootstrap's actions built.
fn every_descriptor_reaches_its_rule(envoy: &Envoy, client: &Client) {
    let port = envoy.port(LISTENER);
    let api = ("host", "api.example.com");
    // (request, the limits its answer must list)
    let cases = [
        // edge: per_ip (remote_address) and curl/* (user_agent)
        (
            ("GET", "/", vec![("user-agent", "curl/8.5")]),
            vec!["50;w=1;name=\"per_ip\"", "60;w=60"],
        ),
        // edge: (path, /static/...) and per_ip on the same route
        (
            ("GET", "/static/app.js", vec![]),
            vec!["1000;w=1", "name=\"per_ip\""],
        ),
        // api: api_key, tenant (its limit with the fewest tokens left), (path,
        // /v1/search/*); 600 per 30 s travels as a unit of seconds, the protocol has no
        // multiplier
        (
            (
                "GET",
                "/v1/search/shoes",
                vec![api, ("x-api-key", "k1"), ("x-tenant", "t1")],
            ),
            vec!["10;w=1", "100;w=1;name=\"tenant_per_second\"", "600;w="],
        ),
        // api: (tenant, method POST) and (path, /v1/reports*)
        (
            ("POST", "/v1/reports/daily", vec![api, ("x-tenant", "t2")]),
            vec!["300;w=60", "20;w=3600"],
        ),
        // api-batch: (job_type, export), a generic key
        (
            ("GET", "/v1/export", vec![("host", "batch.example.com")]),
            vec!["6;w=60"],
        ),
    ];
    for ((method, path, headers), limits) in cases {
        let response = answered(client, port, method, path, &headers);
        assert_eq!(response.status, 200, "{method} {path}: {response:?}");
        let header = response.header("x-ratelimit-limit").unwrap_or("");
        for limit in limits {
            assert!(
                header.contains(limit),
                "{method} {path}: no {limit} in {response:?}"
            );
        }
    }
}

/// `*bot*` user agents: 30 a minute in shadow mode. Past 30 the rule is over (Envoy's
/// remaining shows 0, the rule's) and every request still passes.
fn a_shadow_mode_rule_lets_every_request_through(envoy: &Envoy, client: &Client) {
    let port = envoy.port(LISTENER);
    let answers: Vec<Response> = (0..35)
        .map(|_| {
            answered(
                client,
                port,
                "GET",
                "/",
                &[("user-agent", "examplebot/2.1")],
            )
        })
        .collect();
    for response in &answers {
        assert_eq!(response.status, 200, "{response:?}");
        assert!(
            response
                .header("x-ratelimit-limit")
                .unwrap_or("")
                .contains("30;w=60")
        );
    }
    let last = answers.last().expect("answers");
    assert_eq!(
        last.number("x-ratelimit-remaining"),
        0,
        "over, yet let through: {last:?}"
    );
}

#[test]
fn an_edited_quota_file_is_the_limit_envoy_enforces_and_a_stopped_rls_fails_open() {
    let quotas = example_quotas();
    let mut rls = serve(quotas.path(), &[], &["serving"]);
    let envoy = Bootstrap::file(deploy("envoy/global.yaml"))
        .port(RLS_GRPC, rls.grpc)
        .start();
    let port = warm_up(&envoy).port(LISTENER);

    // Logins: 10 a minute per client, then 3.
    let edge = quotas.path().join("edge.yaml");
    let text = std::fs::read_to_string(&edge).expect("edge.yaml");
    let login = "unit: minute\n          requests_per_unit: 10\n";
    assert_eq!(
        text.matches(login).count(),
        1,
        "the login rule in edge.yaml"
    );
    std::fs::write(
        &edge,
        text.replace(login, "unit: minute\n          requests_per_unit: 3\n"),
    )
    .expect("edit edge.yaml");
    wait_for_config(&rls, "edge.path_/api/login.remote_address: 3/minute");

    let refused = logins_past(&Client::new([127, 0, 0, 6]), port, 3);
    let limit = refused.header("x-ratelimit-limit").unwrap_or("");
    assert!(
        limit.starts_with("3, ") && limit.contains("3;w=60"),
        "{refused:?}"
    );

    // rls gone: failure_mode_deny false lets requests through, uncounted.
    rls.child.kill().expect("kill rls");
    rls.child.wait().expect("rls ends");
    let before = envoy
        .stat("cluster.upstream.ratelimit.failure_mode_allowed")
        .unwrap_or(0);
    for _ in 0..5 {
        let response = Client::new([127, 0, 0, 6]).get(port, "/api/login", &[]);
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(
            response.header("x-ratelimit-limit"),
            None,
            "no answer, no limit"
        );
    }
    let after = envoy.stat("cluster.upstream.ratelimit.failure_mode_allowed");
    assert_eq!(
        after,
        Some(before + 5),
        "each let through by failure_mode_deny: false"
    );
}

/// Polls rls's `/config` until it lists `rule` (a reload follows a file change shortly).
fn wait_for_config(rls: &RlsProcess, rule: &str) {
    let client = Client::new([127, 0, 0, 1]);
    for _ in 0..500 {
        if client.get(rls.http, "/config", &[]).body.contains(rule) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("rls did not reload to {rule:?}");
}

#[test]
fn with_failure_mode_deny_true_a_stopped_rls_refuses_requests() {
    let quotas = example_quotas();
    let mut rls = serve(quotas.path(), &[], &["serving"]);
    // global.yaml with its one documented switch flipped to fail closed.
    let envoy = Bootstrap::file(deploy("envoy/global.yaml"))
        .replace("failure_mode_deny: false", "failure_mode_deny: true")
        .port(RLS_GRPC, rls.grpc)
        .start();
    let port = envoy.port(LISTENER);
    let client = Client::new([127, 0, 0, 7]);
    // Up and answering (a first call that missed the 20 ms is refused too: retried).
    let up = (0..20).any(|_| {
        client
            .get(port, "/", &[])
            .header("x-ratelimit-limit")
            .is_some()
    });
    assert!(up, "rls never answered through Envoy");

    rls.child.kill().expect("kill rls");
    rls.child.wait().expect("rls ends");
    let refused = client.get(port, "/", &[]);
    assert_eq!(refused.status, 500, "{refused:?}");
    assert!(envoy.stat("cluster.upstream.ratelimit.error").unwrap_or(0) >= 1);
}

#[test]
fn global_bootstrap_on_rls_with_redis_refuses_past_the_quota_with_ratelimit_headers() {
    let redis = RedisServer::start();
    let quotas = example_quotas();
    let url = redis.url();
    let backend = [
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--backend-timeout",
        "1s",
    ];
    let rls = serve(quotas.path(), &backend, &["serving", "connected"]);
    let envoy = Bootstrap::file(deploy("envoy/global.yaml"))
        .port(RLS_GRPC, rls.grpc)
        .start();

    let refused = logins_past(
        &Client::new([127, 0, 0, 8]),
        warm_up(&envoy).port(LISTENER),
        10,
    );
    assert_login_refused_with_headers(&refused);
    // The bucket is in Redis.
    assert!(
        !redis
            .cli(&["--scan", "--pattern", "rls:*"])
            .trim()
            .is_empty()
    );
}

#[test]
fn local_bootstrap_refuses_logins_past_the_per_pod_limit() {
    let envoy = Bootstrap::file(deploy("envoy/local.yaml")).start();
    let port = envoy.port(LISTENER);
    let client = Client::new([127, 0, 0, 9]);

    let service = client.get(port, "/", &[]);
    assert_eq!(service.status, 200);
    assert_eq!(
        service.header("x-ratelimit-limit"),
        Some("1000"),
        "{service:?}"
    );

    let refused = logins_past(&client, port, 10);
    assert_eq!(
        refused.header("x-local-rate-limit"),
        Some("true"),
        "{refused:?}"
    );
    assert_eq!(
        refused.header("x-ratelimit-limit"),
        Some("10"),
        "{refused:?}"
    );
}

#[test]
fn both_bootstrap_keeps_its_local_limit_with_rls_stopped() {
    let quotas = example_quotas();
    let mut rls = serve(quotas.path(), &[], &["serving"]);
    let envoy = Bootstrap::file(deploy("envoy/both.yaml"))
        .port(RLS_GRPC, rls.grpc)
        .start();
    let port = envoy.port(LISTENER);
    let client = Client::new([127, 0, 0, 10]);
    assert_eq!(answered(&client, port, "GET", "/", &[]).status, 200);

    rls.child.kill().expect("kill rls");
    rls.child.wait().expect("rls ends");
    let before = envoy
        .stat("cluster.upstream.ratelimit.failure_mode_allowed")
        .unwrap_or(0);
    for i in 1..=10 {
        let response = client.get(port, "/api/login", &[]);
        assert_eq!(response.status, 200, "login {i}: {response:?}");
    }
    let refused = client.get(port, "/api/login", &[]);
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(
        refused.header("x-local-rate-limit"),
        Some("true"),
        "{refused:?}"
    );
    let after = envoy.stat("cluster.upstream.ratelimit.failure_mode_allowed");
    assert_eq!(
        after,
        Some(before + 10),
        "the ten logins passed the global filter failing open"
    );
}
