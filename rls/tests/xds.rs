//! Rules from an xDS management server (ADS, state of the world, `RateLimitConfig`), the
//! way Envoy Gateway feeds envoyproxy/ratelimit: a test server on a loopback port pushes
//! sets; `rls::serve` serves them, ACKs or NACKs them, and follows the server when it goes
//! away and comes back.

mod common;

use std::time::Duration;

use common::ads::AdsServer;
use common::serve::{Served, descriptor, eventually, request};
use proto::rls::rate_limit_response::Code;
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use proto::rls::{RateLimitRequest, RateLimitResponse};
use proto::rls_config::{RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, RateLimitUnit};
use rls::Settings;
use rls::settings::xds::ConfigSource;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn rule(key: &str, value: &str, per_hour: u32) -> RateLimitDescriptor {
    RateLimitDescriptor {
        key: key.into(),
        value: value.into(),
        rate_limit: Some(RateLimitPolicy {
            unit: RateLimitUnit::Hour.into(),
            requests_per_unit: per_hour,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn edge(descriptors: Vec<RateLimitDescriptor>) -> Vec<RateLimitConfig> {
    vec![RateLimitConfig {
        name: "edge".into(),
        domain: "edge".into(),
        descriptors,
    }]
}

/// Settings of an rls fed by `ads`, reconnecting within tens of milliseconds.
fn settings(ads: &AdsServer) -> Settings {
    let mut settings = Settings::defaults();
    settings.xds.config_source = ConfigSource::Xds;
    settings.xds.xds_server = ads.url(false);
    settings.xds.xds_node_id = "envoy-ratelimit".into();
    settings.xds.xds_backoff_initial = Duration::from_millis(20);
    settings.xds.xds_backoff_max = Duration::from_millis(200);
    settings
}

async fn client(served: &Served) -> RateLimitServiceClient<Channel> {
    RateLimitServiceClient::connect(format!("http://{}", served.grpc))
        .await
        .expect("connect")
}

async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    r: RateLimitRequest,
) -> RateLimitResponse {
    client
        .should_rate_limit(r)
        .await
        .expect("answered")
        .into_inner()
}

/// What `grpc.health.v1` says of the rate limit service under the reference's name.
async fn health(served: &Served) -> ServingStatus {
    let channel = Channel::from_shared(format!("http://{}", served.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "ratelimit".into(),
        })
        .await
        .expect("health answers");
    answer.into_inner().status()
}

/// `/config?format=json`.
async fn config_json(served: &Served) -> serde_json::Value {
    let (status, body) = served.get("/config?format=json").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// (overall code, remaining) of one request for `path` in domain `edge`.
async fn path(client: &mut RateLimitServiceClient<Channel>, path: &str) -> (Code, u32) {
    let answer = ask(client, request("edge", &[("path", path)])).await;
    (answer.overall_code(), answer.statuses[0].limit_remaining)
}

#[tokio::test]
async fn a_first_set_is_served_once_acked_and_readiness_waits_for_it() {
    let ads = AdsServer::start(None).await;
    let served = Served::start(settings(&ads)).await;

    let subscription = ads.next_request().await;
    assert_eq!(subscription.type_url, proto::RATE_LIMIT_CONFIG_TYPE_URL);
    assert_eq!(
        subscription.node.as_ref().map(|n| n.id.as_str()),
        Some("envoy-ratelimit")
    );
    assert!(
        subscription.resource_names.is_empty(),
        "a wildcard subscription"
    );
    assert_eq!(subscription.version_info, "");
    // Subscribed, no set yet: not ready.
    let (status, body) = served.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("waiting for the first rule set\n"),
        "{body}"
    );
    // gRPC health says the same, for Envoy's health checks.
    assert_eq!(health(&served).await, ServingStatus::NotServing);
    // Meanwhile requests are answered, with no limits.
    let mut client = client(&served).await;
    assert_eq!(path(&mut client, "/a").await, (Code::Ok, 0));

    ads.push("v1", edge(vec![rule("path", "/a", 2)]));
    let ack = ads.next_request().await;
    assert_eq!(ack.version_info, "v1");
    assert_eq!(ack.response_nonce, "0");
    assert!(ack.error_detail.is_none(), "{ack:?}");
    let body = served.wait_ready().await;
    assert!(
        body.contains("serving version \"v1\", connected; 1 applied, 0 refused"),
        "{body}"
    );
    assert_eq!(health(&served).await, ServingStatus::Serving);
    let (_, config) = served.get("/config").await;
    assert!(config.contains("edge.path_/a: 2/hour"), "{config}");
    assert!(config.contains("(resource \"edge\")"), "{config}");

    assert_eq!(path(&mut client, "/a").await, (Code::Ok, 1));
    assert_eq!(path(&mut client, "/a").await, (Code::Ok, 0));
    assert_eq!(path(&mut client, "/a").await.0, Code::OverLimit);
    served.stop().await;
}

#[tokio::test]
async fn a_new_version_replaces_the_set_and_unchanged_rules_keep_their_buckets() {
    let ads = AdsServer::start(None).await;
    ads.push(
        "1",
        edge(vec![rule("path", "/a", 3), rule("path", "/b", 1)]),
    );
    let served = Served::start(settings(&ads)).await;
    served.wait_ready().await;
    let mut client = client(&served).await;
    assert_eq!(path(&mut client, "/a").await, (Code::Ok, 2));
    assert_eq!(path(&mut client, "/a").await, (Code::Ok, 1));

    let _subscription = ads.next_request().await;
    assert_eq!(ads.next_request().await.version_info, "1");
    // /a unchanged, /b raised, /c new.
    let set = vec![
        rule("path", "/a", 3),
        rule("path", "/b", 5),
        rule("path", "/c", 1),
    ];
    ads.push("2", edge(set));
    assert_eq!(ads.next_request().await.version_info, "2");
    served.wait_config(|c| c.contains("edge.path_/c")).await;

    assert_eq!(
        path(&mut client, "/a").await,
        (Code::Ok, 0),
        "/a kept its bucket"
    );
    assert_eq!(path(&mut client, "/a").await.0, Code::OverLimit);
    assert_eq!(
        path(&mut client, "/b").await,
        (Code::Ok, 4),
        "/b's new limit"
    );
    assert_eq!(path(&mut client, "/c").await, (Code::Ok, 0));
    served.stop().await;
}

#[tokio::test]
async fn an_invalid_set_is_nacked_with_its_error_and_the_previous_set_keeps_serving() {
    let ads = AdsServer::start(None).await;
    ads.push("1", edge(vec![rule("path", "/a", 1)]));
    let served = Served::start(settings(&ads)).await;
    let _subscription = ads.next_request().await;
    assert_eq!(ads.next_request().await.version_info, "1");

    // A limit without a unit: refused as the same quota file would be.
    let mut bad = rule("path", "/a", 100);
    bad.rate_limit.as_mut().expect("limit").unit = RateLimitUnit::Unknown.into();
    ads.push("2", edge(vec![bad]));
    let nack = ads.next_request().await;
    assert_eq!(
        nack.version_info, "1",
        "a NACK names the version still serving"
    );
    assert_eq!(nack.response_nonce, "1");
    let detail = nack.error_detail.expect("a NACK carries the error");
    assert_eq!(detail.code, 3, "INVALID_ARGUMENT");
    assert_eq!(
        detail.message,
        "resource \"edge\": descriptors[0].rate_limit: missing unit \
         (expected second, minute, hour, day, week, month or year, or unlimited: true)"
    );

    let mut client = client(&served).await;
    assert_eq!(
        path(&mut client, "/a").await,
        (Code::Ok, 0),
        "version 1's limit of 1"
    );
    assert_eq!(path(&mut client, "/a").await.0, Code::OverLimit);
    let body = served.wait_ready().await;
    assert!(body.contains("serving version \"1\""), "{body}");
    assert!(
        body.contains("1 refused; last refused: resource \"edge\""),
        "{body}"
    );

    // /config shows the refusal as it shows a refused quota file's, and the feed.
    let config = config_json(&served).await;
    let refused = &config["last_reload_error"];
    assert_eq!(refused["message"], detail.message, "{config:#}");
    let source = config["source"].as_str().expect("the feed's line");
    assert!(source.contains("1 refused"), "{source}");

    ads.push("3", edge(vec![rule("path", "/a", 5)]));
    let ack = ads.next_request().await;
    assert_eq!((ack.version_info.as_str(), ack.error_detail), ("3", None));
    let config = eventually("the refusal cleared", || async {
        let config = config_json(&served).await;
        config["last_reload_error"].is_null().then_some(config)
    })
    .await;
    assert_eq!(config["domains"][0]["rules"][0]["key"], "edge.path_/a");
    served.stop().await;
}

#[tokio::test]
async fn a_server_that_goes_away_and_comes_back_with_a_newer_version_is_followed() {
    let ads = AdsServer::start(None).await;
    ads.push("1", edge(vec![rule("path", "/a", 1)]));
    let served = Served::start(settings(&ads)).await;
    let _subscription = ads.next_request().await;
    assert_eq!(ads.next_request().await.version_info, "1");

    let stopped = ads.stop().await;
    // The last set keeps serving while the server is away.
    served
        .wait_config(|c| c.contains("serving version \"1\", not connected"))
        .await;
    let mut client = client(&served).await;
    assert_eq!(path(&mut client, "/a").await, (Code::Ok, 0));
    assert_eq!(served.get("/readyz").await.0, 200);

    let ads = AdsServer::restart(stopped, None).await;
    ads.push(
        "2",
        edge(vec![rule("path", "/a", 1), rule("path", "/b", 1)]),
    );
    let resubscription = ads.next_request().await;
    assert_eq!(
        resubscription.version_info, "1",
        "it says which version it serves"
    );
    assert_eq!(ads.next_request().await.version_info, "2");
    served
        .wait_config(|c| c.contains("serving version \"2\", connected"))
        .await;
    assert_eq!(path(&mut client, "/b").await, (Code::Ok, 0));
    assert_eq!(
        path(&mut client, "/a").await.0,
        Code::OverLimit,
        "its bucket kept"
    );
    served.stop().await;
}

#[tokio::test]
async fn forced_to_start_without_a_set_it_is_ready_and_answers_ok_with_no_limits() {
    let ads = AdsServer::start(None).await;
    let mut settings = settings(&ads);
    settings.xds.force_start_without_initial_config = true;
    let served = Served::start(settings).await;
    let _subscription = ads.next_request().await;
    let body = served.wait_ready().await;
    assert!(body.contains("no rule set yet"), "{body}");
    let mut client = client(&served).await;
    let answer = ask(&mut client, request("edge", &[("path", "/a")])).await;
    assert_eq!(answer.overall_code(), Code::Ok);
    assert_eq!(answer.statuses[0].current_limit, None);
    served.stop().await;
}

/// Envoy Gateway's translation of a listener `default/eg/http` with one route and two
/// rules (internal/xds/translator/ratelimit.go): the first limits each client of
/// 10.0.0.0/8 sending `x-user-id: one` (a `header_match` entry, a `masked_remote_address`
/// entry, a `remote_address` entry per client), the second all the route's traffic, in
/// shadow mode.
fn gateway_listener() -> Vec<RateLimitConfig> {
    let mut per_client = rule("remote_address", "", 2);
    per_client.value = String::new();
    let masked = RateLimitDescriptor {
        key: "masked_remote_address".into(),
        value: "10.0.0.0/8".into(),
        descriptors: vec![per_client],
        ..Default::default()
    };
    let header = RateLimitDescriptor {
        key: "rule-0-match-0".into(),
        value: "rule-0-match-0".into(),
        descriptors: vec![masked],
        ..Default::default()
    };
    let mut all = rule("rule-1-match--1", "rule-1-match--1", 1);
    all.shadow_mode = true;
    let route = RateLimitDescriptor {
        key: "httproute/default/backend/rule/0".into(),
        value: "httproute/default/backend/rule/0".into(),
        descriptors: vec![header, all],
        ..Default::default()
    };
    vec![RateLimitConfig {
        name: "default/eg/http".into(),
        domain: "default/eg/http".into(),
        descriptors: vec![route],
    }]
}

#[tokio::test]
async fn envoy_gateway_descriptors_are_matched_as_the_reference_matches_them() {
    let ads = AdsServer::start(None).await;
    ads.push("1", gateway_listener());
    let served = Served::start(settings(&ads)).await;
    served.wait_ready().await;
    let mut client = client(&served).await;
    let route = (
        "httproute/default/backend/rule/0",
        "httproute/default/backend/rule/0",
    );
    // What Envoy sends for a request from `client` with `x-user-id: one`: one descriptor
    // per rule, the first only when the header matches.
    let from = |client: &'static str| RateLimitRequest {
        domain: "default/eg/http".into(),
        descriptors: vec![
            descriptor(&[
                route,
                ("rule-0-match-0", "rule-0-match-0"),
                ("masked_remote_address", "10.0.0.0/8"),
                ("remote_address", client),
            ]),
            descriptor(&[route, ("rule-1-match--1", "rule-1-match--1")]),
        ],
        hits_addend: 1,
    };
    let first = ask(&mut client, from("10.1.1.1")).await;
    assert_eq!(first.overall_code(), Code::Ok);
    assert_eq!(first.statuses[0].limit_remaining, 1);
    // The shadow rule is used up already, and still answers OK.
    let second = ask(&mut client, from("10.1.1.1")).await;
    assert_eq!(second.overall_code(), Code::Ok);
    assert_eq!(second.statuses[1].code(), Code::Ok);
    assert_eq!(second.statuses[1].limit_remaining, 0);
    assert_eq!(
        ask(&mut client, from("10.1.1.1")).await.overall_code(),
        Code::OverLimit
    );
    // Another client of the range has a bucket of its own.
    assert_eq!(
        ask(&mut client, from("10.2.2.2")).await.overall_code(),
        Code::Ok
    );
    // A client outside the range: Envoy masks its address to another value, no rule.
    let outside = ask(
        &mut client,
        request(
            "default/eg/http",
            &[
                route,
                ("rule-0-match-0", "rule-0-match-0"),
                ("masked_remote_address", "192.168.0.0/8"),
                ("remote_address", "192.1.1.1"),
            ],
        ),
    )
    .await;
    assert_eq!(outside.overall_code(), Code::Ok);
    assert_eq!(outside.statuses[0].current_limit, None);
    served.stop().await;
}
