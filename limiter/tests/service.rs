//! The layer in real servers over real sockets: the axum example (HTTP/1.1) and a tonic
//! server (gRPC health service), each bound to 127.0.0.1:0.

use std::net::SocketAddr;

use limiter::{LocalLimits, RateLimitLayer, local};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[allow(dead_code)] // its `main` is the example's, not the test's
#[path = "../examples/axum_service.rs"]
mod example;

/// A response read off the wire: status and lowercase headers.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One `GET /` on a fresh connection, read until the server closes it.
async fn get(addr: SocketAddr) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Reply { status, headers }
}

#[tokio::test]
async fn the_axum_example_answers_the_fourth_quick_request_with_429_and_headers() {
    // examples/page.yaml: 3 at once per client address (and 5 for the pod).
    let limits = LocalLimits::from_quota_file("examples/page.yaml").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(limits).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    for remaining in ["2", "1", "0"] {
        let reply = get(addr).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(reply.header("retry-after"), None);
    }
    let refused = get(addr).await;
    assert_eq!(refused.status, 429);
    // Reproduces the example's doc saying "the sixth quick request" where the fourth is
    // refused.
    let example = include_str!("../examples/axum_service.rs");
    assert!(example.contains("the fourth quick request gets 429"));
    assert_eq!(refused.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    // One token a second: the next one is at most a second away.
    assert_eq!(refused.header("x-ratelimit-reset"), Some("1"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    server.abort();
}

/// A tonic server with the health service behind `layer`, and a client to it.
async fn health_server(
    layer: RateLimitLayer,
) -> tonic_health::pb::health_client::HealthClient<tonic::transport::Channel> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
}

async fn check_health(
    client: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
) -> Result<(), tonic::Status> {
    let request = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    client.check(request).await.map(|_| ())
}

#[tokio::test]
async fn a_tonic_server_refuses_over_limit_calls_with_resource_exhausted() {
    let section = local::parse_section(
        "grpc.yaml",
        "local:\n  token_bucket: {max_tokens: 2, fill_interval: 1m}\n",
    )
    .unwrap();
    let mut client = health_server(RateLimitLayer::new(LocalLimits::new(&section))).await;
    check_health(&mut client).await.unwrap();
    check_health(&mut client).await.unwrap();
    let status = check_health(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "local_rate_limited");
    assert_eq!(status.metadata().get("x-ratelimit-limit").unwrap(), "2");
    assert_eq!(status.metadata().get("retry-after").unwrap(), "60");
}

#[tokio::test]
async fn grpc_refusals_can_be_unavailable_instead() {
    let section = local::parse_section(
        "grpc.yaml",
        "local:
  token_bucket: {max_tokens: 1, fill_interval: 1m}
  rate_limited_as_resource_exhausted: false
",
    )
    .unwrap();
    let mut client = health_server(RateLimitLayer::new(LocalLimits::new(&section))).await;
    check_health(&mut client).await.unwrap();
    let status = check_health(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn a_custom_status_is_sent_for_plain_http() {
    let section = local::parse_section(
        "http.yaml",
        "local:\n  token_bucket: {max_tokens: 1, fill_interval: 1m}\n  status: 503\n",
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(LocalLimits::new(&section));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    assert_eq!(get(addr).await.status, 200);
    let refused = get(addr).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("60"));
    server.abort();
}
