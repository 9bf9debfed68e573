//! Loss and return of Redis, with a real `redis-server` killed and restarted: the first
//! request after a restart is answered, readiness follows the shards (and the failure
//! mode), and `rls serve` logs each loss and each recovery once.

mod common;

use std::time::Duration;

use common::process::RlsProcess;
use common::redis::RedisServer;
use common::redis_options;
use limiter::Rate;
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::Entry;
use proto::rls::RateLimitRequest;
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use rls::store::redis::{Endpoint, OnBackendError, RedisStore};
use rls::store::{Batch, BucketStore, Check, Meter, Role};

fn batch(key: &str) -> Batch {
    let rate = Rate::new(10, Duration::from_secs(60), 10);
    Batch {
        now: common::START_SECS * 1_000_000_000,
        keys: key.as_bytes().to_vec(),
        checks: vec![Check {
            key: 0..key.len(),
            identity: key.len(),
            meter: Meter::TokenBucket(rate),
            cost: 1,
            descriptor: 0,
            role: Role::Enforced,
        }],
        ..Batch::default()
    }
}

fn store(redis: &RedisServer, on_error: OnBackendError) -> RedisStore {
    let mut options = redis_options(vec![Endpoint::Server(redis.url())]);
    options.timeout = Duration::from_millis(300);
    options.on_error = on_error;
    RedisStore::new(options)
}

/// Polls `done` (a real process is waited on), at most `tries` times 50 ms apart.
async fn eventually(tries: usize, mut done: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..tries {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// Reproduces the first request after Redis restarted failing with "broken pipe": the
// client found its connection dead only by using it.
#[tokio::test]
async fn the_first_request_after_redis_restarts_is_answered() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let store = store(&redis, OnBackendError::Error);
    store.wait_connected().await;
    let answer = store.check(&batch("restart"), false).await.expect("up");
    assert_eq!(answer.decisions[0].remaining(), 9);
    redis.kill();
    let _again = RedisServer::start_on(port);
    let first = store.check(&batch("restart"), false).await;
    // The restarted Redis is empty: a fresh bucket.
    let first = first.expect("the first request after the restart is answered");
    assert_eq!(first.decisions[0].remaining(), 9);
}

// Reproduces readiness staying true after Redis was lost: it followed the first
// connection only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_shard_unless_the_failure_mode_answers_alone() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let error = store(&redis, OnBackendError::Error);
    let local = store(&redis, OnBackendError::Local);
    error.wait_connected().await;
    local.wait_connected().await;
    assert!(error.is_ready() && local.is_ready());
    redis.kill();
    // Requests find the shard lost (with no traffic the heartbeat would, a little later).
    let lost = eventually(100, async || {
        let _ = error.check(&batch("ready"), false).await;
        !error.is_ready()
    })
    .await;
    assert!(
        lost,
        "the error-mode store stayed ready with its only shard down"
    );
    // Local answers every request itself: still ready, and answering.
    assert!(local.is_ready());
    assert!(local.check(&batch("ready"), false).await.is_ok());
    let _again = RedisServer::start_on(port);
    assert!(
        eventually(200, async || error.is_ready()).await,
        "never ready again after Redis came back"
    );
    assert!(error.check(&batch("ready"), false).await.is_ok());
}

fn request() -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "remote_address".into(),
                value: "203.0.113.7".into(),
            }],
            ..Default::default()
        }],
        hits_addend: 1,
    }
}

// Reproduces a lost and returned Redis that left /readyz at 200 and the log silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_logs_each_loss_and_recovery_once_and_readiness_follows() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/examples");
    let url = redis.url();
    let rls = RlsProcess::start(
        &[
            "--config",
            examples,
            "--redis-url",
            &url,
            "--backend-timeout",
            "300ms",
        ],
        &["serving", "connected"],
    );
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], rls.http));
    let mut client = RateLimitServiceClient::connect(rls.endpoint())
        .await
        .expect("connect");
    assert!(client.should_rate_limit(request()).await.is_ok());
    assert_eq!(common::http(http, "GET", "/readyz", "").await.0, 200);
    // Regression: docs/redis.md called the batch size a histogram; it is exported as the
    // kind the docs name.
    let (_, metrics) = common::http(http, "GET", "/metrics", "").await;
    let docs = include_str!("../../docs/redis.md").replace('\n', " ");
    let said = docs
        .split_once("`rls_redis_batch_checks` (checks per call, a ")
        .and_then(|(_, rest)| rest.split(':').next())
        .expect("docs/redis.md describes rls_redis_batch_checks");
    assert!(
        metrics.contains(&format!("# TYPE rls_redis_batch_checks {said}\n")),
        "docs say {said}: {metrics}"
    );
    for cycle in 1..=2 {
        redis.kill();
        let unready = eventually(100, async || {
            let _ = client.should_rate_limit(request()).await;
            common::http(http, "GET", "/readyz", "").await == (503, "backend unavailable\n".into())
        })
        .await;
        assert!(unready, "cycle {cycle}: still ready with Redis gone");
        // More requests while it is down: failed at once, and no more log lines.
        for _ in 0..20 {
            let status = client.should_rate_limit(request()).await.expect_err("down");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        }
        redis = RedisServer::start_on(port);
        let ready = eventually(200, async || {
            common::http(http, "GET", "/readyz", "").await.0 == 200
        })
        .await;
        assert!(ready, "cycle {cycle}: never ready again");
        let answer = client.should_rate_limit(request()).await;
        assert!(answer.is_ok(), "cycle {cycle}: {answer:?}");
        assert_eq!(rls.logged("redis shard lost").len(), cycle, "cycle {cycle}");
        assert_eq!(rls.logged("redis shard recovered").len(), cycle);
    }
}
