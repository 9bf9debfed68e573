//! Malformed and oversized requests over real sockets: refused before they are buffered,
//! `INVALID_ARGUMENT` (gRPC) or 400 (`/json`) with a message naming the fault, counted in
//! `rls_errors_total`, and memory stays bounded under a flood of them.

mod common;

use std::time::Duration;

use common::process::RlsProcess;
use common::{TestServer, http, metric};
use futures_util::future::join_all;
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::{Entry, RateLimitOverride};
use proto::rls::RateLimitRequest;
use proto::rls::RateLimitResponse;
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use proto::types::RateLimitUnit;
use tonic::Code;

const QUOTAS: &str = "
domain: edge
descriptors:
  - key: path
    rate_limit: {unit: minute, requests_per_unit: 10}
";

const INVALID: &str = "rls_errors_total{kind=\"invalid_request\"}";

/// Held by the tests that count refusals: servers of one process share one recorder, and
/// each test must see only its own refusals counted.
static COUNTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn server() -> TestServer {
    TestServer::start_default(QUOTAS).await
}

/// A request whose domain is `bytes` long.
fn request_of(bytes: usize) -> RateLimitRequest {
    RateLimitRequest {
        domain: "x".repeat(bytes),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "path".into(),
                value: "/".into(),
            }],
            ..Default::default()
        }],
        hits_addend: 1,
    }
}

/// A client that sends requests of any size (tonic's own default bounds them too).
async fn client(s: &TestServer) -> RateLimitServiceClient<tonic::transport::Channel> {
    s.client().await.max_encoding_message_size(usize::MAX)
}

// Reproduces a 5 MB request answered OUT_OF_RANGE by tonic's own 4 MiB limit: the decoder
// was not bounded by --max-request-bytes, and its refusal was not INVALID_ARGUMENT.
#[tokio::test]
async fn a_request_over_the_byte_bound_is_invalid_argument_naming_the_bound() {
    let _counting = COUNTING.lock().await;
    let s = server().await;
    let before = metric(s.http, INVALID).await;
    for bytes in [100_000, 5_000_000] {
        let status = client(&s)
            .await
            .should_rate_limit(request_of(bytes))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with("request is ")
                && status.message().contains("at most 65536 are allowed"),
            "{status:?}"
        );
    }
    assert_eq!(metric(s.http, INVALID).await - before, 2.0);
    // A request within the bound is answered.
    let answer = client(&s).await.should_rate_limit(request_of(10)).await;
    assert!(answer.is_ok(), "{answer:?}");
    s.stop().await;
}

/// Sends `message`, of another type, where a `RateLimitRequest` belongs.
async fn send_as_request<M: prost::Message + Default + 'static>(
    s: &TestServer,
    message: M,
) -> tonic::Status {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static(
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
    );
    let codec = tonic_prost::ProstCodec::<M, RateLimitResponse>::default();
    grpc.unary(tonic::Request::new(message), path, codec)
        .await
        .expect_err("bytes that are no request are refused")
}

// Reproduces bytes that are no RateLimitRequest answered INTERNAL, as if the server had
// failed, instead of INVALID_ARGUMENT.
#[tokio::test]
async fn bytes_that_are_no_request_are_invalid_argument() {
    let _counting = COUNTING.lock().await;
    let s = server().await;
    let before = metric(s.http, INVALID).await;
    // A response where a request belongs: field 1 is a number, not the domain's string.
    let response = RateLimitResponse {
        overall_code: 1,
        ..Default::default()
    };
    let status = send_as_request(&s, response).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("failed to decode Protobuf message"),
        "{status:?}"
    );
    // Field 1 with bytes that are not UTF-8: no domain either.
    let bytes = pbjson_types::BytesValue {
        value: vec![0xff, 0xfe, 0xfd].into(),
    };
    let status = send_as_request(&s, bytes).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(metric(s.http, INVALID).await - before, 2.0);
    s.stop().await;
}

// Reproduces `/json` refusals not counted in rls_errors_total when the body is not JSON,
// and a body over axum's own 2 MB limit answered 413 without naming
// --max-request-bytes.
#[tokio::test]
async fn json_bodies_over_the_byte_bound_or_not_json_are_400_and_counted() {
    let _counting = COUNTING.lock().await;
    let s = server().await;
    let before = metric(s.http, INVALID).await;
    let (status, body) = http(s.http, "POST", "/json", "{not json").await;
    assert_eq!(status, 400);
    assert!(body.starts_with("invalid request: "), "{body}");
    let big = format!(
        r#"{{"domain": "{}", "descriptors": [{{"entries": [{{"key": "path", "value": "/"}}]}}]}}"#,
        "x".repeat(3_000_000)
    );
    let (status, body) = http(s.http, "POST", "/json", &big).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body.trim(),
        "invalid request: request body is over 65536 bytes, the most allowed"
    );
    assert_eq!(metric(s.http, INVALID).await - before, 2.0);
    s.stop().await;
}

// Reproduces a request's own limit of more than one token a nanosecond served at one a
// nanosecond (a quota file with it is refused): INVALID_ARGUMENT naming the largest.
#[tokio::test]
async fn a_request_limit_past_the_bucket_bounds_is_invalid_argument() {
    let _counting = COUNTING.lock().await;
    let s = server().await;
    let before = metric(s.http, INVALID).await;
    let mut client = client(&s).await;
    let with_limit = |requests_per_unit: u32| {
        let mut request = request_of(4);
        request.domain = "edge".into();
        request.descriptors[0].limit = Some(RateLimitOverride {
            requests_per_unit,
            unit: RateLimitUnit::Second.into(),
        });
        request
    };
    let largest = 1_000_000_000;
    let answer = client
        .should_rate_limit(with_limit(largest))
        .await
        .expect("the largest rate is served")
        .into_inner();
    let limit = answer.statuses[0].current_limit.as_ref().expect("a limit");
    assert_eq!(limit.requests_per_unit, largest);
    assert_eq!(answer.statuses[0].limit_remaining, largest - 1);
    let status = client
        .should_rate_limit(with_limit(largest + 1))
        .await
        .expect_err("one more is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "descriptors[0].limit.requests_per_unit is 1000000001; at most 1000000000 is \
         allowed: a token bucket refills at most one token per nanosecond"
    );
    assert_eq!(metric(s.http, INVALID).await - before, 1.0);
    s.stop().await;
}

/// The process's peak resident memory in kB (`VmHWM` in /proc/PID/status).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .expect("VmHWM")
}

// Reproduces a flood of 4 MB requests taking the process from 23 MB to 575 MB: tonic
// buffered each whole message (up to its 4 MiB default) before the size was checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_a_flood_of_oversized_requests() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/examples");
    let server = RlsProcess::start(&["--config", examples], &["serving"]);
    let pid = server.child.id();
    let channel = tonic::transport::Channel::from_shared(server.endpoint())
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let client = RateLimitServiceClient::new(channel).max_encoding_message_size(usize::MAX);
    // One small request first: the server has run its request path once.
    let mut warm = client.clone();
    let _ = warm.should_rate_limit(request_of(10)).await;
    let before = peak_rss_kb(pid);
    // 32 callers at once, 320 requests of 4 MB in all: bounded in count; the guard only
    // keeps a broken server from hanging the test, it measures nothing.
    let callers = (0..32).map(|_| {
        let mut client = client.clone();
        tokio::spawn(async move {
            let request = request_of(4_000_000);
            for _ in 0..10 {
                let status = client
                    .should_rate_limit(request.clone())
                    .await
                    .expect_err("refused");
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            }
        })
    });
    let flood = tokio::time::timeout(Duration::from_secs(300), join_all(callers))
        .await
        .expect("the flood ends");
    flood.into_iter().for_each(|caller| caller.expect("caller"));
    let grown_mb = peak_rss_kb(pid).saturating_sub(before) / 1024;
    println!(
        "peak memory grew by {grown_mb} MB (from {} MB)",
        before / 1024
    );
    // 320 × 4 MB is 1.3 GB sent; buffering even the 32 at once would be 128 MB.
    assert!(
        grown_mb < 48,
        "peak memory grew by {grown_mb} MB under oversized requests"
    );
}
