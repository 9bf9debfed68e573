//! The HTTP port and gRPC health, over real sockets.

mod common;

use common::{TestServer, http};
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const QUOTAS: &str = "
domain: edge
descriptors:
  - key: path
    rate_limit: {unit: minute, requests_per_unit: 1}
";

async fn server() -> TestServer {
    TestServer::start_default(QUOTAS).await
}

#[tokio::test]
async fn json_answers_200_then_429_with_proto3_json_bodies() {
    let s = server().await;
    let request =
        json!({"domain": "edge", "descriptors": [{"entries": [{"key": "path", "value": "/a"}]}]});
    let (status, body) = http(s.http, "POST", "/json", &request.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(answer["overallCode"], "OK");
    assert_eq!(answer["statuses"][0]["currentLimit"]["unit"], "MINUTE");
    let (status, body) = http(s.http, "POST", "/json", &request.to_string()).await;
    assert_eq!(status, 429, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(answer["overallCode"], "OVER_LIMIT");
    s.stop().await;
}

#[tokio::test]
async fn json_answers_400_for_bad_json_and_for_invalid_requests() {
    let s = server().await;
    let (status, body) = http(s.http, "POST", "/json", "{not json").await;
    assert_eq!(status, 400);
    assert!(body.starts_with("invalid request:"), "{body}");
    let (status, body) = http(
        s.http,
        "POST",
        "/json",
        r#"{"domain": "", "descriptors": []}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body.trim(),
        "invalid request: rate limit domain must not be empty"
    );
    s.stop().await;
}

/// Regression: `/json` counted its answers but never its refusals, which gRPC counts.
#[tokio::test]
async fn json_refusals_are_counted_as_grpc_ones_are() {
    let s = server().await;
    let (status, _) = http(s.http, "POST", "/json", r#"{"domain": "edge"}"#).await;
    assert_eq!(status, 400);
    let (_, metrics) = http(s.http, "GET", "/metrics", "").await;
    assert!(
        metrics.contains("rls_errors_total{kind=\"invalid_request\"}"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn health_readiness_metrics_and_config_answer() {
    let s = server().await;
    assert_eq!(
        http(s.http, "GET", "/healthz", "").await,
        (200, "OK\n".into())
    );
    assert_eq!(
        http(s.http, "GET", "/readyz", "").await,
        (200, "OK\n".into())
    );
    assert_eq!(
        http(s.http, "GET", "/healthcheck", "").await,
        (200, "OK\n".into())
    );
    let request =
        json!({"domain": "edge", "descriptors": [{"entries": [{"key": "path", "value": "/a"}]}]});
    http(s.http, "POST", "/json", &request.to_string()).await;
    let (status, metrics) = http(s.http, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("rls_requests_total{code=\"ok\"}"),
        "{metrics}"
    );
    let (status, config) = http(s.http, "GET", "/config", "").await;
    assert_eq!(status, 200);
    assert!(config.starts_with("version 1, loaded "), "{config}");
    assert!(
        config.contains("\n1 domain, 1 rule\ndomain edge\n"),
        "{config}"
    );
    s.stop().await;
}

#[tokio::test]
async fn grpc_health_reports_serving_under_every_name() {
    let s = server().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    for service in [
        "",
        "envoy.service.ratelimit.v3.RateLimitService",
        "ratelimit",
    ] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
    s.stop().await;
}
