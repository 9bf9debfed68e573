//! A server for tests: `rls` on 127.0.0.1:0 with a fake clock, driven over real sockets.

#![allow(dead_code)] // each test file uses a part

pub mod ads;
pub mod certs;
pub mod envoy;
pub mod gated;
pub mod istio;
pub mod manifest;
pub mod process;
pub mod redis;
pub mod scrape;
pub mod serve;
pub mod tls;
pub mod tools;

use std::net::SocketAddr;
use std::num::NonZero;
use std::sync::Arc;

use config::{LoadOptions, QuotaSet};
use limiter::FakeClock;
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use rls::Listeners;
use rls::decide::{AnswerOptions, Decider};
use rls::store::redis::{
    Endpoint, OnBackendError, RedisOptions, RedisStore, ShardOptions, TimeSource,
};
use rls::store::{Batch, BucketStore, Check, MemoryStore, Meter, Role};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// 2023-11-14T22:13:20Z: 20 seconds into a minute, so fixed windows are not aligned with
/// the start of a test.
pub const START_SECS: u64 = 1_700_000_000;

/// A running server.
pub struct TestServer {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub clock: FakeClock,
    server: serve::ServerTask,
}

impl TestServer {
    /// Serves `yaml` (one quota file) with `options`, time starting at `start_secs`.
    pub async fn start(
        yaml: &str,
        load: &LoadOptions,
        options: AnswerOptions,
        start_secs: u64,
    ) -> TestServer {
        let quotas =
            QuotaSet::from_sources([("quotas.yaml", yaml)], load).expect("test quotas are valid");
        TestServer::start_with(quotas, options, start_secs).await
    }

    /// Serves `yaml` (one quota file) with default options on the memory store, time
    /// starting at [`START_SECS`].
    pub async fn start_default(yaml: &str) -> TestServer {
        let load = LoadOptions::default();
        TestServer::start(yaml, &load, AnswerOptions::default(), START_SECS).await
    }

    /// Serves `quotas` with `options` on the memory store, time starting at `start_secs`.
    pub async fn start_with(
        quotas: QuotaSet,
        options: AnswerOptions,
        start_secs: u64,
    ) -> TestServer {
        TestServer::start_on(&Backend::Memory, quotas, options, start_secs).await
    }

    /// Serves `quotas` with `options` on `backend`, time starting at `start_secs`. Redis
    /// stores read this fake clock too (`TimeSource::Local`), under a key prefix of their
    /// own, and are connected before this returns.
    pub async fn start_on(
        backend: &Backend,
        quotas: QuotaSet,
        options: AnswerOptions,
        start_secs: u64,
    ) -> TestServer {
        let clock = FakeClock::new(start_secs * 1_000_000_000);
        let shared: Arc<dyn limiter::Clock> = Arc::new(clock.clone());
        match backend {
            Backend::Memory => {
                let decider = Decider::new(quotas, MemoryStore::new(), shared, options);
                TestServer::serve(decider, clock).await
            }
            Backend::Redis(endpoints) => {
                let redis = redis_options(endpoints.clone());
                TestServer::start_redis(quotas, options, redis, start_secs).await
            }
        }
    }

    /// Serves `quotas` with `options` on a Redis store with `redis` options, deciding on a
    /// fake clock starting at `start_secs` (the store reads it too); returns once every
    /// shard is connected.
    pub async fn start_redis(
        quotas: QuotaSet,
        options: AnswerOptions,
        mut redis: RedisOptions,
        start_secs: u64,
    ) -> TestServer {
        let clock = FakeClock::new(start_secs * 1_000_000_000);
        let shared: Arc<dyn limiter::Clock> = Arc::new(clock.clone());
        redis.clock = shared.clone();
        // The shards report their state when they connect: the recorder must be there.
        rls::stats::prometheus();
        let store = RedisStore::new(redis);
        store.wait_connected().await;
        TestServer::serve(Decider::new(quotas, store, shared, options), clock).await
    }

    async fn serve<S: BucketStore>(decider: Decider<S>, clock: FakeClock) -> TestServer {
        let listeners = Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await.expect("bind grpc"),
            http: TcpListener::bind("127.0.0.1:0").await.expect("bind http"),
        };
        let grpc = listeners.grpc.local_addr().expect("grpc addr");
        let http = listeners.http.local_addr().expect("http addr");
        let decider = Arc::new(decider);
        let server = serve::ServerTask::spawn(|shutdown| {
            rls::server::serve_store(listeners, decider, shutdown)
        });
        TestServer {
            grpc,
            http,
            clock,
            server,
        }
    }

    /// A gRPC client connected to the server.
    pub async fn client(&self) -> RateLimitServiceClient<Channel> {
        RateLimitServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect to test server")
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Where a test server keeps its buckets.
pub enum Backend {
    /// In process.
    Memory,
    /// Redis: one server, several (client-side shards), or one cluster.
    Redis(Vec<Endpoint>),
}

/// A batch of one enforced check of `cost` on bucket `key` at `now`.
pub fn one_check(key: &str, meter: Meter, cost: u32, now: u64) -> Batch {
    Batch {
        now,
        keys: key.as_bytes().to_vec(),
        checks: vec![Check {
            key: 0..key.len(),
            identity: key.len(),
            meter,
            cost,
            descriptor: 0,
            role: Role::Enforced,
        }],
        ..Batch::default()
    }
}

/// Redis store settings for tests: the fake clock's time, the cache on (it must be
/// exact), generous deadlines (a loaded CI machine must not turn into UNAVAILABLE), and a
/// key prefix of its own so that servers sharing a Redis never see each other's keys.
pub fn redis_options(endpoints: Vec<Endpoint>) -> RedisOptions {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    RedisOptions {
        endpoints,
        key_prefix: format!("test{}:", NEXT.fetch_add(1, Ordering::Relaxed)),
        timeout: Duration::from_secs(5),
        on_error: OnBackendError::Error,
        replicas: NonZero::<u32>::MIN,
        max_in_flight: NonZero::new(10_000).expect("nonzero"),
        over_limit_cache: 10_000,
        time: TimeSource::Local,
        shard: ShardOptions {
            tls: Default::default(),
            connect_timeout: Duration::from_secs(2),
            batch_max_checks: NonZero::new(256).expect("nonzero"),
            batch_window: Duration::ZERO,
            pipeline_depth: NonZero::new(8).expect("nonzero"),
        },
        // Tests that decide on a fake clock set it here too.
        clock: Arc::new(limiter::SystemClock::new()),
    }
}

/// One HTTP/1.1 exchange over a fresh connection: (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    (status, body.to_string())
}

/// The value of the series `series` (name and labels as Prometheus prints them, e.g.
/// `rls_errors_total{kind="invalid_request"}`) on the `/metrics` of the server at `addr`;
/// 0 when it is not there yet. Servers of one test process share one recorder: compare
/// values before and after, not with zero.
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, text) = http(addr, "GET", "/metrics", "").await;
    // A bare name stands for the sum of its series, whatever their labels.
    let bare = !series.contains('{');
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(series)?;
            match rest.strip_prefix(' ') {
                Some(value) => Some(value),
                None if bare && rest.starts_with('{') => rest.rsplit_once("} ").map(|(_, v)| v),
                None => None,
            }
        })
        .map(|value| value.trim().parse::<f64>().expect("a number"))
        .sum()
}
