//! Servers for the harness's tests, on 127.0.0.1:0 and driven over real sockets: a real
//! `rls` with a frozen clock (so that a token bucket allows exactly its burst), and a
//! service that holds its first request to stall the harness.

#![allow(dead_code)] // each test file uses a part

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use config::{LoadOptions, QuotaSet};
use limiter::FakeClock;
use proto::rls::rate_limit_response::Code;
use proto::rls::rate_limit_service_server::{RateLimitService, RateLimitServiceServer};
use proto::rls::{RateLimitRequest, RateLimitResponse};
use rls::Listeners;
use rls::decide::{AnswerOptions, Decider};
use rls::store::MemoryStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

/// The `loadtest` binary.
pub fn loadtest() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
}

/// Runs the command off the runtime, so that an in-process server keeps answering.
pub async fn output(mut command: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().expect("loadtest runs"))
        .await
        .expect("joined")
}

/// 2023-11-14T22:13:20Z.
pub const START_SECS: u64 = 1_700_000_000;

/// A quota of 20 requests an hour on any `path`: with time frozen, exactly 20 are allowed.
pub const TWENTY_AN_HOUR: &str = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: hour, requests_per_unit: 20}\n";

/// A running in-process `rls`, stopped when dropped.
pub struct RlsUnderTest {
    /// gRPC address.
    pub grpc: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl RlsUnderTest {
    /// Serves `yaml` with its clock frozen at [`START_SECS`].
    pub async fn start(yaml: &str) -> RlsUnderTest {
        let quotas = QuotaSet::from_sources([("quotas.yaml", yaml)], &LoadOptions::default())
            .expect("test quotas are valid");
        let clock = FakeClock::new(START_SECS * 1_000_000_000);
        let decider = Decider::new(
            quotas,
            MemoryStore::new(),
            Arc::new(clock),
            AnswerOptions::default(),
        );
        let listeners = Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await.expect("bind grpc"),
            http: TcpListener::bind("127.0.0.1:0").await.expect("bind http"),
        };
        let grpc = listeners.grpc.local_addr().expect("grpc addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(rls::server::serve_store(
            listeners,
            Arc::new(decider),
            async move {
                let _ = stopped.await;
            },
        ));
        RlsUnderTest { grpc, _stop: stop }
    }
}

/// Answers OK, but holds the first request for `stall` before answering it.
#[derive(Clone)]
pub struct StallRls {
    seen: Arc<AtomicU64>,
    stall: Duration,
}

#[tonic::async_trait]
impl RateLimitService for StallRls {
    async fn should_rate_limit(
        &self,
        _request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        if self.seen.fetch_add(1, Ordering::SeqCst) == 0 {
            // The stall under test: real time must pass for the harness to measure it (the
            // test asserts only a lower bound on the latency it records).
            tokio::time::sleep(self.stall).await;
        }
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..RateLimitResponse::default()
        }))
    }
}

impl StallRls {
    /// Serves on 127.0.0.1:0 until the returned sender is dropped.
    pub async fn start(stall: Duration) -> (SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = StallRls {
            seen: Arc::default(),
            stall,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RateLimitServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
                    let _ = stopped.await;
                }),
        );
        (addr, stop)
    }
}
