//! Shutdown finishes the calls in flight, and the HTTP port answers, unready, until then:
//! a store that holds a call open shows it.

mod common;

use std::sync::Arc;

use common::gated::GatedStore;
use config::{LoadOptions, QuotaSet};
use limiter::FakeClock;
use proto::rls::rate_limit_response::Code;
use rls::Listeners;
use rls::decide::{AnswerOptions, Decider};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes_calls_in_flight() {
    let yaml = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: minute, requests_per_unit: 5}\n";
    let quotas =
        QuotaSet::from_sources([("q.yaml", yaml)], &LoadOptions::default()).expect("valid");
    let (store, entered, gate) = GatedStore::new();
    let clock = Arc::new(FakeClock::new(common::START_SECS * 1_000_000_000));
    let decider = Arc::new(Decider::new(quotas, store, clock, AnswerOptions::default()));
    let listeners = Listeners {
        grpc: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        http: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    };
    let grpc = listeners.grpc.local_addr().expect("addr");
    let http = listeners.http.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(rls::server::serve_store(listeners, decider, async move {
        let _ = stopped.await;
    }));

    let mut client = proto::rls::rate_limit_service_client::RateLimitServiceClient::connect(
        format!("http://{grpc}"),
    )
    .await
    .expect("connect");
    let call = tokio::spawn(async move {
        client
            .should_rate_limit(rls::query::request_from(&rls::cli::QueryArgs {
                addr: String::new(),
                domain: "edge".into(),
                descriptors: vec!["path=/a".into()],
                hits: 1,
                json: false,
            }))
            .await
    });
    entered.notified().await;
    stop.send(()).expect("server listens for shutdown");

    // The listener closes while the call is still held open in the store.
    let mut refused = false;
    for _ in 0..100_000 {
        if TcpStream::connect(grpc).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        refused,
        "the gRPC listener still accepts after shutdown began"
    );
    assert!(
        !server.is_finished(),
        "the server ended with a call in flight"
    );
    // Regression (probes saw connection refused while calls drained): the HTTP port
    // keeps answering, unready, until the server ends.
    assert_eq!(
        common::http(http, "GET", "/readyz", "").await,
        (503, "draining\n".into())
    );
    assert_eq!(common::http(http, "GET", "/healthz", "").await.0, 200);

    gate.notify_one();
    let answer = call
        .await
        .expect("call task")
        .expect("in-flight call answered")
        .into_inner();
    assert_eq!(answer.overall_code(), Code::Ok);
    server.await.expect("server task").expect("clean exit");
}
