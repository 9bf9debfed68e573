//! Draining with real clients: on SIGTERM `rls serve` turns unready at once and keeps
//! answering for the drain delay, over connections old and new; a connection older than
//! `--max-connection-age` is told to go away, its calls finish, and it closes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gated::GatedStore;
use common::process::RlsProcess;
use common::{START_SECS, http};
use config::{LoadOptions, QuotaSet};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use limiter::FakeClock;
use proto::rls::RateLimitRequest;
use proto::rls::rate_limit_response::Code;
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use rls::connections::ConnectionOptions;
use rls::decide::{AnswerOptions, Decider};
use rls::query::parse_descriptor;
use rls::rlqs::{RlqsOptions, RlqsSetup};
use rls::server::{Lifecycle, serve_with};
use rls::{Listeners, RlsError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn request() -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![parse_descriptor("path=/a")],
        hits_addend: 1,
    }
}

const QUOTAS: &str = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: second, requests_per_unit: 100000}\n";

async fn health_of(endpoint: String) -> Result<ServingStatus, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(endpoint)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut health = HealthClient::new(channel);
    let answer = health
        .check(HealthCheckRequest {
            service: "ratelimit".into(),
        })
        .await?;
    Ok(answer.into_inner().status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_during_the_drain_delay_are_answered_and_the_http_port_answers_until_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("edge.yaml"), QUOTAS).expect("write");
    let config = dir.path().to_str().expect("utf-8 path").to_owned();
    // A long delay: the calls below must all fall inside it, on a slow machine too.
    let mut server =
        RlsProcess::start(&["--config", &config, "--drain-delay", "10s"], &["serving"]);
    let http_addr = ([127, 0, 0, 1], server.http).into();
    let mut old = RateLimitServiceClient::connect(server.endpoint())
        .await
        .expect("connect");
    old.should_rate_limit(request())
        .await
        .expect("answered before");

    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(http_addr, "GET", "/readyz", "").await.0 != 503 {
        assert!(Instant::now() < deadline, "never turned unready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Unready, yet every call is answered: on the old connection and on new ones.
    let mut calls = Vec::new();
    for i in 0..40 {
        let endpoint = server.endpoint();
        let mut client = old.clone();
        calls.push(tokio::spawn(async move {
            if i % 4 == 0 {
                client = RateLimitServiceClient::connect(endpoint)
                    .await
                    .expect("connect while draining");
            }
            client
                .should_rate_limit(request())
                .await
                .map(|a| a.into_inner().overall_code())
        }));
    }
    for call in calls {
        let answer = call.await.expect("call task");
        assert_eq!(
            answer.expect("answered while draining, not reset"),
            Code::Ok
        );
    }
    // Still inside the delay: the listener accepts, and health says not serving.
    assert_eq!(
        health_of(server.endpoint()).await.expect("health answers"),
        ServingStatus::NotServing
    );

    // Then it stops accepting and exits; until it does, readiness answers 503.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        let probe = tokio::time::timeout(Duration::from_secs(5), async {
            match TcpStream::connect(http_addr).await {
                Ok(_) => Some(http(http_addr, "GET", "/readyz", "").await),
                Err(_) => None,
            }
        });
        // Refused or cut only while exiting, which the loop then sees.
        if let Ok(Some(answer)) = probe.await {
            assert_eq!(answer, (503, "draining\n".into()));
        }
        assert!(
            Instant::now() < deadline,
            "rls did not exit after its drain delay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exited with {status}");
}

/// Connections aged out so far, in this test process.
fn aged() -> f64 {
    let text = rls::stats::prometheus().render();
    common::scrape::value(
        &common::scrape::samples(&text),
        "rls_grpc_connections_aged_total",
        &[],
    )
    .unwrap_or(0.0)
}

/// A server on a store that holds every check until `gate` opens, whose connections go
/// away at about their age and close their grace later; and an HTTP/2 connection to it
/// that the test holds itself (`send`, and its driver `connection`), to see when the
/// server ends it.
struct Aging {
    entered: Arc<Notify>,
    gate: Arc<Notify>,
    send: SendRequest<tonic::body::Body>,
    origin: http::Uri,
    connection: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), RlsError>>,
}

/// One call over the held connection.
async fn ask(
    send: SendRequest<tonic::body::Body>,
    origin: http::Uri,
) -> Result<Code, tonic::Status> {
    let service = tower::service_fn(move |request| {
        let mut send = send.clone();
        async move { send.send_request(request).await }
    });
    let mut client = RateLimitServiceClient::with_origin(service, origin);
    let answer = client.should_rate_limit(request()).await?;
    Ok(answer.into_inner().overall_code())
}

async fn aging(age: Duration, grace: Duration) -> Aging {
    let quotas =
        QuotaSet::from_sources([("q.yaml", QUOTAS)], &LoadOptions::default()).expect("valid");
    let (store, entered, gate) = GatedStore::new();
    let clock = Arc::new(FakeClock::new(START_SECS * 1_000_000_000));
    let decider = Arc::new(Decider::new(quotas, store, clock, AnswerOptions::default()));
    let listeners = Listeners {
        grpc: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        http: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    };
    let grpc = listeners.grpc.local_addr().expect("addr");
    let lifecycle = Lifecycle {
        drain_delay: Duration::ZERO,
        connections: ConnectionOptions {
            max_age: Some(age),
            age_grace: grace,
            shutdown_timeout: Duration::from_secs(10),
        },
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let rlqs = RlqsSetup::memory(RlqsOptions::default());
    let server = tokio::spawn(serve_with(
        listeners,
        decider,
        rlqs,
        lifecycle,
        async move {
            let _ = stopped.await;
        },
    ));
    let tcp = TcpStream::connect(grpc).await.expect("connect");
    let (send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("handshake");
    let connection = tokio::spawn(connection);
    let origin = format!("http://{grpc}").parse().expect("uri");
    Aging {
        entered,
        gate,
        send,
        origin,
        connection,
        stop,
        server,
    }
}

/// Waits until a connection has aged out since `before` (in this test process).
async fn until_aged(before: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while aged() <= before {
        assert!(Instant::now() < deadline, "the connection never aged out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_max_age_goes_away_after_its_calls_finish() {
    let before = aged();
    let Aging {
        entered,
        gate,
        send,
        origin,
        connection,
        stop,
        server,
    } = aging(Duration::from_millis(300), Duration::from_secs(600)).await;
    let call = tokio::spawn(ask(send, origin));
    entered.notified().await;
    // The call is held past the connection's age: the server tells it to go away...
    until_aged(before).await;
    // ...finishes the call, then closes it, long before the grace is over.
    gate.notify_one();
    let answer = call.await.expect("call task").expect("answered, not reset");
    assert_eq!(answer, Code::Ok);
    let ended = tokio::time::timeout(Duration::from_secs(30), connection).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the connection did not close cleanly: {ended:?}"
    );
    stop.send(()).expect("server listens for shutdown");
    server.await.expect("server task").expect("clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_calls_outlast_the_grace_is_closed() {
    let Aging {
        entered,
        gate,
        send,
        origin,
        connection,
        stop,
        server,
    } = aging(Duration::from_millis(200), Duration::from_millis(200)).await;
    let call = tokio::spawn(ask(send, origin));
    entered.notified().await;
    // Never let through: the grace ends and the connection with it.
    let ended = tokio::time::timeout(Duration::from_secs(30), connection).await;
    assert!(
        matches!(ended, Ok(Ok(_))),
        "the connection stayed open: {ended:?}"
    );
    let answer = tokio::time::timeout(Duration::from_secs(30), call).await;
    assert!(
        matches!(answer, Ok(Ok(Err(_)))),
        "the held call was not cut: {answer:?}"
    );
    gate.notify_waiters();
    stop.send(()).expect("server listens for shutdown");
    server.await.expect("server task").expect("clean exit");
}
