//! Accuracy across replicas: three `rls` processes on one Redis (and on a Redis Cluster),
//! fifty concurrent clients hammering one key, and exactly the quota passes in total.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::process::RlsProcess;
use common::redis::{RedisCluster, RedisServer};
use proto::rls::rate_limit_response::Code;
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use rls::query::parse_descriptor;

const CLIENTS: usize = 50;
const REQUESTS: usize = 1500;

/// 1000 a day as a token bucket: no token refills during a run (one every 86.4 s), so
/// exactly 1000 may pass. 1000 an hour as a fixed window: exactly 1000 per window.
const QUOTAS: &str = "
domain: accuracy
descriptors:
  - key: tenant
    rate_limit: {unit: day, requests_per_unit: 1000}
  - key: window
    rate_limit: {algorithm: fixed_window, unit: hour, requests_per_unit: 1000}
";

/// Starts three replicas on `backend_args`, sends `REQUESTS` requests for `descriptor`
/// from `CLIENTS` concurrent clients spread over them, and returns (allowed, denied).
async fn hammer(backend_args: &[&str], descriptor: &str) -> (usize, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("quotas.yaml");
    std::fs::write(&file, QUOTAS).expect("write quotas");
    let mut args = vec![
        "--config",
        file.to_str().expect("utf-8"),
        "--backend",
        "redis",
    ];
    args.extend_from_slice(backend_args);
    // Generous for a loaded 2-core CI machine: a deadline miss would be an error here.
    args.extend_from_slice(&["--backend-timeout", "2s"]);
    let replicas: Vec<RlsProcess> = (0..3)
        .map(|_| RlsProcess::start(&args, &["serving", "connected"]))
        .collect();

    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(
            RateLimitServiceClient::connect(replica.endpoint())
                .await
                .expect("connect"),
        );
    }
    let sent = Arc::new(AtomicUsize::new(0));
    let (allowed, denied) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let mut client = clients[n % clients.len()].clone();
            let (sent, allowed, denied) = (sent.clone(), allowed.clone(), denied.clone());
            let request = proto::rls::RateLimitRequest {
                domain: "accuracy".into(),
                descriptors: vec![parse_descriptor(descriptor)],
                hits_addend: 1,
            };
            tokio::spawn(async move {
                while sent.fetch_add(1, Ordering::SeqCst) < REQUESTS {
                    let answer = client
                        .should_rate_limit(request.clone())
                        .await
                        .expect("every call is answered");
                    match answer.into_inner().overall_code() {
                        Code::Ok => allowed.fetch_add(1, Ordering::SeqCst),
                        Code::OverLimit => denied.fetch_add(1, Ordering::SeqCst),
                        Code::Unknown => panic!("UNKNOWN answer"),
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    (
        allowed.load(Ordering::SeqCst),
        denied.load(Ordering::SeqCst),
    )
}

/// The hour windows the run touched, by the server's clock: 1, or 2 across a boundary.
fn hours(before: &str, after: &str) -> u64 {
    let hour = |time: &str| {
        time.lines()
            .next()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .expect("TIME")
            / 3600
    };
    hours_between(hour(before), hour(after))
}

fn hours_between(a: u64, b: u64) -> u64 {
    b - a + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_allow_exactly_the_quota() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (allowed, denied) = hammer(&["--redis-url", &url], "tenant=acme").await;
    assert_eq!((allowed, denied), (1000, REQUESTS - 1000));

    let before = redis.cli(&["TIME"]);
    let (allowed, _) = hammer(&["--redis-url", &url], "window=acme").await;
    let windows = hours(&before, &redis.cli(&["TIME"]));
    assert!(
        allowed == 1000 || (windows > 1 && allowed <= 1000 * windows as usize),
        "{allowed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_redis_cluster_allow_exactly_the_quota() {
    let cluster = RedisCluster::start();
    let nodes = cluster.addrs().join(",");
    let (allowed, denied) = hammer(&["--redis-cluster", &nodes], "tenant=acme").await;
    assert_eq!((allowed, denied), (1000, REQUESTS - 1000));
}
