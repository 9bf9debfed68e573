//! The shard circuit breaker over real sockets: with one of three Redis shards killed,
//! requests for keys on the live shards are answered as before, and requests for the
//! dead shard get the failure mode at once, without a call, once it is known down;
//! `/metrics` and `/readyz` say so. (One test in this file: it reads process-wide metrics.)

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{START_SECS, TestServer, http, metric, redis_options};
use config::{LoadOptions, QuotaSet};
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::Entry;
use proto::rls::RateLimitRequest;
use rls::decide::AnswerOptions;
use rls::store::redis::Endpoint;
use tonic::Code;

const QUOTAS: &str = "
domain: edge
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 10}
";

const USERS: usize = 30;

fn user(n: usize) -> String {
    format!("user-{n:02}")
}

fn request(n: usize) -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "user".into(),
                value: user(n),
            }],
            ..Default::default()
        }],
        hits_addend: 1,
    }
}

// Reproduces every request for a dead shard waiting out the backend deadline (answered
// `deadline`), one after another, while the shard stayed dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shard_fails_fast_and_the_live_shards_keep_answering() {
    let mut shards = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let mut options = redis_options(shards.iter().map(|s| Endpoint::Server(s.url())).collect());
    // Long enough that a request waiting it out shows in the kinds counted below.
    options.timeout = Duration::from_millis(500);
    let quotas =
        QuotaSet::from_sources([("quotas.yaml", QUOTAS)], &LoadOptions::default()).expect("quotas");
    let s = TestServer::start_redis(quotas, AnswerOptions::default(), options, START_SECS).await;
    let mut client = s.client().await;
    for n in 0..USERS {
        let answer = client.should_rate_limit(request(n)).await.expect("all up");
        assert_eq!(answer.get_ref().statuses[0].limit_remaining, 9);
    }
    // Which shard holds each user's bucket: its key carries the value (redis-cli prints
    // a binary key only up to its first zero byte: the server matches the pattern).
    let shard_of = |n: usize| {
        let pattern = format!("*{}*", user(n));
        let holders: Vec<usize> = (0..3)
            .filter(|&i| {
                !shards[i]
                    .cli(&["--scan", "--pattern", &pattern])
                    .trim()
                    .is_empty()
            })
            .collect();
        assert_eq!(holders.len(), 1, "{} is on {holders:?}", user(n));
        holders[0]
    };
    let dead = shard_of(0);
    let on_dead: Vec<usize> = (0..USERS).filter(|&n| shard_of(n) == dead).collect();
    let live: Vec<usize> = (0..USERS).filter(|&n| shard_of(n) != dead).collect();
    assert!(!live.is_empty() && on_dead.len() > 3, "{on_dead:?}");

    shards[dead].kill();
    let shard_down = "rls_backend_errors_total{kind=\"shard_down\"}";
    for round in 1..=2 {
        let down_before = metric(s.http, shard_down).await;
        let calls_before = metric(s.http, "rls_redis_calls_total").await;
        for &n in &on_dead {
            let status = client
                .should_rate_limit(request(n))
                .await
                .expect_err("dead");
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        }
        for &n in &live {
            let answer = client.should_rate_limit(request(n)).await.expect("live");
            let remaining = answer.get_ref().statuses[0].limit_remaining;
            assert_eq!(remaining, 9 - round as u32, "{} in round {round}", user(n));
        }
        let failed_fast = metric(s.http, shard_down).await - down_before;
        let calls = metric(s.http, "rls_redis_calls_total").await - calls_before;
        if round == 1 {
            // A few calls find the shard dead; then it is down and no call is made.
            assert!(
                failed_fast >= (on_dead.len() - 3) as f64,
                "{failed_fast} of {} failed fast",
                on_dead.len()
            );
        } else {
            // Known down: every request for it is answered without a call.
            assert_eq!(failed_fast, on_dead.len() as f64);
            assert_eq!(calls, live.len() as f64, "calls made for the dead shard");
        }
    }
    // Each shard's state, by its name.
    for (i, shard) in shards.iter().enumerate() {
        let name = format!("rls_redis_shard_up{{shard=\"{}\"}}", shard.url());
        let up = if i == dead { 0.0 } else { 1.0 };
        assert_eq!(metric(s.http, &name).await, up, "shard {i}");
    }
    // Two shards of three answer: ready.
    assert_eq!(http(s.http, "GET", "/readyz", "").await.0, 200);
    s.stop().await;
}
