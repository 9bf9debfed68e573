//! The Rate Limit Quota Service over real sockets, driven by a gRPC client that speaks as
//! Envoy's `rate_limit_quota` filter does: assignments at once and on the server's clock
//! (paused time), protocol edge cases, a reconnecting client, thousands of buckets on one
//! stream, and two replicas splitting one quota through a real Redis.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use config::{LoadOptions, QuotaSet};
use limiter::SystemClock;
use proto::rlqs::rate_limit_quota_response::BucketAction;
use proto::rlqs::rate_limit_quota_response::bucket_action::BucketAction as Action;
use proto::rlqs::rate_limit_quota_service_client::RateLimitQuotaServiceClient;
use proto::rlqs::rate_limit_quota_usage_reports::BucketQuotaUsage;
use proto::rlqs::{BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports};
use proto::types::rate_limit_strategy::{BlanketRule, Strategy};
use rls::Listeners;
use rls::decide::{AnswerOptions, Decider};
use rls::rlqs::{Limits, RlqsOptions, RlqsSetup, Unmatched};
use rls::store::MemoryStore;
use rls::store::redis::{Endpoint, RedisStore};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use common::redis::RedisServer;

/// Alice's quota is 20 a second; every other API key has 10 a second of its own.
const QUOTAS: &str = include_str!("rlqs/api.yaml");

/// An rls server, in process, with RLQS set up as a test needs.
struct Server {
    grpc: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), rls::RlsError>>,
}

fn quotas() -> QuotaSet {
    QuotaSet::from_sources([("api.yaml", QUOTAS)], &LoadOptions::default()).expect("valid")
}

fn options(unmatched: Unmatched, max_buckets: usize) -> RlqsOptions {
    RlqsOptions {
        policy: rls::rlqs::Policy {
            unmatched,
            global_shadow: false,
        },
        limits: Limits {
            max_buckets,
            ..RlqsOptions::default().limits
        },
        ..RlqsOptions::default()
    }
}

impl Server {
    async fn listeners() -> Listeners {
        Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            http: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        }
    }

    /// On the memory store.
    async fn memory(options: RlqsOptions) -> Server {
        let decider = Arc::new(Decider::new(
            quotas(),
            MemoryStore::new(),
            Arc::new(SystemClock::new()),
            AnswerOptions::default(),
        ));
        Server::serve(decider, RlqsSetup::memory(options)).await
    }

    /// On a Redis store (`prefix` shared by the replicas of one test).
    async fn redis(port: u16, prefix: &str, options: RlqsOptions) -> Server {
        let mut redis =
            common::redis_options(vec![Endpoint::Server(format!("redis://127.0.0.1:{port}"))]);
        redis.key_prefix = prefix.to_string();
        // Short, so that a dead Redis is seen within a few pushes.
        redis.timeout = Duration::from_millis(300);
        let store = RedisStore::new(redis);
        store.wait_connected().await;
        let decider = Arc::new(Decider::new(
            quotas(),
            store,
            Arc::new(SystemClock::new()),
            AnswerOptions::default(),
        ));
        let setup = RlqsSetup::redis(&decider, options);
        Server::serve(decider, setup).await
    }

    async fn serve<S: rls::store::BucketStore>(
        decider: Arc<Decider<S>>,
        setup: RlqsSetup,
    ) -> Server {
        let listeners = Server::listeners().await;
        let grpc = listeners.grpc.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(rls::server::serve_with(
            listeners,
            decider,
            setup,
            rls::server::Lifecycle::IMMEDIATE,
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            grpc,
            stop: Some(stop),
            task,
        }
    }

    async fn stream(&self) -> Stream {
        let mut client = RateLimitQuotaServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect");
        let (reports, outbox) = mpsc::channel(16);
        let answers = client
            .stream_rate_limit_quotas(ReceiverStream::new(outbox))
            .await
            .expect("stream opens")
            .into_inner();
        Stream { reports, answers }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        (&mut self.task)
            .await
            .expect("server task")
            .expect("server ends cleanly");
    }
}

/// One stream, as Envoy holds it.
struct Stream {
    reports: mpsc::Sender<RateLimitQuotaUsageReports>,
    answers: Streaming<RateLimitQuotaResponse>,
}

fn usage(pairs: &[(&str, &str)], allowed: u64, denied: u64) -> BucketQuotaUsage {
    BucketQuotaUsage {
        bucket_id: Some(BucketId {
            bucket: pairs
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }),
        time_elapsed: None,
        num_requests_allowed: allowed,
        num_requests_denied: denied,
    }
}

impl Stream {
    async fn report(&self, domain: &str, usages: Vec<BucketQuotaUsage>) {
        let report = RateLimitQuotaUsageReports {
            domain: domain.to_string(),
            bucket_quota_usages: usages,
        };
        self.reports.send(report).await.expect("stream open");
    }

    async fn next(&mut self) -> RateLimitQuotaResponse {
        self.answers
            .message()
            .await
            .expect("no error")
            .expect("an answer")
    }

    /// The strategies of the next messages until one names `bucket`.
    async fn assignment_of(&mut self, bucket: &[(&str, &str)]) -> Strategy {
        let wanted: BTreeMap<String, String> = bucket
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        loop {
            let answer = self.next().await;
            if let Some(strategy) = answer
                .bucket_action
                .iter()
                .find(|a| a.bucket_id.as_ref().is_some_and(|id| id.bucket == wanted))
                .and_then(strategy_of)
            {
                return strategy;
            }
        }
    }
}

fn strategy_of(action: &BucketAction) -> Option<Strategy> {
    match &action.bucket_action {
        Some(Action::QuotaAssignmentAction(assignment)) => {
            assignment.rate_limit_strategy.as_ref()?.strategy
        }
        _ => None,
    }
}

/// Requests a second a token-bucket strategy refills at.
fn rate(strategy: Strategy) -> f64 {
    match strategy {
        Strategy::TokenBucket(bucket) => {
            let tokens = bucket.tokens_per_fill.map_or(0, |t| t.value);
            let secs = bucket.fill_interval.map_or(0, |d| d.seconds);
            f64::from(tokens) / secs as f64
        }
        other => panic!("not a token bucket: {other:?}"),
    }
}

const ALICE: &[(&str, &str)] = &[("api_key", "alice")];

#[tokio::test(start_paused = true)]
async fn a_new_bucket_is_answered_at_once_and_again_every_push_interval() {
    let server = Server::memory(RlqsOptions::default()).await;
    let mut stream = server.stream().await;
    stream.report("api", vec![usage(ALICE, 1, 0)]).await;
    let first = stream.next().await;
    assert_eq!(first.bucket_action.len(), 1);
    let strategy = strategy_of(&first.bucket_action[0]).expect("an assignment");
    assert_eq!(rate(strategy), 20.0);
    let Some(Action::QuotaAssignmentAction(assignment)) = &first.bucket_action[0].bucket_action
    else {
        panic!("an assignment")
    };
    let ttl = assignment.assignment_time_to_live.expect("a lifetime");
    assert_eq!((ttl.seconds, ttl.nanos), (5, 0));
    // No report since: the server's own clock pushes the same assignment again.
    let before = tokio::time::Instant::now();
    let again = stream.next().await;
    assert_eq!(before.elapsed(), Duration::from_secs(1));
    assert_eq!(again, first);
    drop(stream);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_without_a_domain_is_refused_with_invalid_argument() {
    let server = Server::memory(RlqsOptions::default()).await;
    let mut stream = server.stream().await;
    stream.report("", vec![usage(ALICE, 1, 0)]).await;
    let status = stream.answers.message().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("domain"), "{}", status.message());
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_report_over_the_message_bound_is_refused_and_the_next_stream_served() {
    let bound = std::num::NonZeroUsize::new(1024).expect("not zero");
    let server = Server::memory(RlqsOptions {
        max_message_bytes: bound,
        ..RlqsOptions::default()
    })
    .await;
    let mut stream = server.stream().await;
    let long = "a".repeat(2000);
    stream
        .report("api", vec![usage(&[("name", &long)], 1, 0)])
        .await;
    let status = stream.answers.message().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("at most 1024 are allowed"),
        "{}",
        status.message()
    );
    // The bound ends that stream only: a report under it is answered.
    let mut stream = server.stream().await;
    stream.report("api", vec![usage(ALICE, 1, 0)]).await;
    stream.assignment_of(ALICE).await;
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unknown_buckets_get_the_unmatched_rule_and_ids_without_entries_are_skipped() {
    let server = Server::memory(options(Unmatched::Deny, 100)).await;
    let mut stream = server.stream().await;
    let nobody = &[("tenant", "acme")][..];
    stream
        .report(
            "api",
            vec![
                BucketQuotaUsage::default(),
                usage(&[], 3, 0),
                usage(nobody, 1, 0),
            ],
        )
        .await;
    let answer = stream.next().await;
    assert_eq!(answer.bucket_action.len(), 1, "{answer:?}");
    let deny = Strategy::BlanketRule(BlanketRule::DenyAll as i32);
    assert_eq!(strategy_of(&answer.bucket_action[0]), Some(deny));
    // The stream goes on: a known bucket is still answered.
    stream.report("api", vec![usage(ALICE, 1, 0)]).await;
    assert_eq!(rate(stream.assignment_of(ALICE).await), 20.0);
    drop(stream);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_leaves_the_whole_quota_to_the_others_and_may_come_back() {
    let server = Server::memory(RlqsOptions::default()).await;
    let (mut a, mut b) = (server.stream().await, server.stream().await);
    for stream in [&a, &b] {
        stream.report("api", vec![usage(ALICE, 1, 0)]).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    // a asks for 150 a second, b for 50: 15 and 5 of the 20.
    a.report("api", vec![usage(ALICE, 100, 650)]).await;
    b.report("api", vec![usage(ALICE, 50, 200)]).await;
    until_rate(&mut a, ALICE, 20, |r| (r - 15.0).abs() < 0.1).await;
    until_rate(&mut b, ALICE, 20, |r| (r - 5.0).abs() < 0.1).await;
    // a's stream ends (Envoy reopens a broken stream at its next report): its weight goes.
    drop(a);
    until_rate(&mut b, ALICE, 20, |r| r == 20.0).await;
    let mut again = server.stream().await;
    again.report("api", vec![usage(ALICE, 40, 60)]).await;
    let share = rate(again.assignment_of(ALICE).await);
    assert!(share > 0.0 && share < 20.0, "{share}");
    drop((b, again));
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn thousands_of_buckets_on_one_stream_are_answered_in_bounded_messages() {
    let server = Server::memory(options(Unmatched::Allow, 3000)).await;
    let mut stream = server.stream().await;
    let keys: Vec<String> = (0..5000).map(|i| format!("key{i}")).collect();
    let usages = keys
        .iter()
        .map(|k| usage(&[("api_key", k.as_str())], 1, 0))
        .collect();
    stream.report("api", usages).await;
    let (mut buckets, mut unlimited, mut messages) = (0, 0, 0);
    while buckets + unlimited < keys.len() {
        let answer = stream.next().await;
        messages += 1;
        assert!(answer.bucket_action.len() <= rls::rlqs::service::MAX_ACTIONS_PER_MESSAGE);
        for action in &answer.bucket_action {
            match strategy_of(action) {
                Some(Strategy::TokenBucket(_)) => buckets += 1,
                Some(Strategy::BlanketRule(rule)) if rule == BlanketRule::AllowAll as i32 => {
                    unlimited += 1
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // 3000 tracked with their quota of 10 a second; the 2000 past the bound untracked.
    assert_eq!((buckets, unlimited), (3000, 2000));
    assert!(messages >= 5);
    // The next push is to the tracked buckets only.
    let mut pushed = 0;
    while pushed < 3000 {
        pushed += stream.next().await.bucket_action.len();
    }
    assert_eq!(pushed, 3000);
    drop(stream);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutting_down_ends_the_open_streams() {
    let server = Server::memory(RlqsOptions::default()).await;
    let mut stream = server.stream().await;
    stream.report("api", vec![usage(ALICE, 1, 0)]).await;
    stream.next().await;
    // Returns only once every call has finished, the open stream included.
    server.stop().await;
    while let Ok(Some(_)) = stream.answers.message().await {}
}

/// Reads `stream`'s assignments of `bucket` until `done` holds for its rate; panics after
/// `rounds` assignments.
async fn until_rate(
    stream: &mut Stream,
    bucket: &[(&str, &str)],
    rounds: usize,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let mut last = f64::NAN;
    for _ in 0..rounds {
        last = rate(stream.assignment_of(bucket).await);
        if done(last) {
            return last;
        }
    }
    panic!("rate still {last} after {rounds} assignments")
}

#[tokio::test]
async fn two_replicas_on_one_redis_split_one_quota_by_demand() {
    let redis = RedisServer::start();
    let options = RlqsOptions {
        push_interval: Duration::from_millis(100),
        ..RlqsOptions::default()
    };
    let one = Server::redis(redis.port, "split:", options.clone()).await;
    let two = Server::redis(redis.port, "split:", options).await;
    let (mut a, mut b) = (one.stream().await, two.stream().await);
    let bob = &[("api_key", "bob")][..];
    // a asks for three times what b asks for: 7.5 and 2.5 of the 10 a second, once both
    // demands are measured over a second.
    for stream in [&a, &b] {
        stream.report("api", vec![usage(bob, 1, 0)]).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.report("api", vec![usage(bob, 30, 300)]).await;
    b.report("api", vec![usage(bob, 10, 100)]).await;
    let a_rate = until_rate(&mut a, bob, 300, |r| (r - 7.5).abs() < 0.1).await;
    let b_rate = until_rate(&mut b, bob, 300, |r| (r - 2.5).abs() < 0.1).await;
    assert!(a_rate + b_rate <= 10.0, "{a_rate} + {b_rate}");
    drop((a, b));
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn without_redis_the_failure_mode_decides_what_envoy_is_told() {
    let mut redis = RedisServer::start();
    let options = |on_backend_error| RlqsOptions {
        push_interval: Duration::from_millis(100),
        on_backend_error,
        ..options(Unmatched::Deny, 100)
    };
    use rls::store::redis::OnBackendError;
    let allow = Server::redis(redis.port, "allow:", options(OnBackendError::Allow)).await;
    let hold = Server::redis(redis.port, "hold:", options(OnBackendError::Error)).await;
    let (mut allowed, mut held) = (allow.stream().await, hold.stream().await);
    let nobody = &[("tenant", "acme")][..];
    for stream in [&allowed, &held] {
        stream
            .report("api", vec![usage(ALICE, 1, 0), usage(nobody, 1, 0)])
            .await;
        // Assigned from Redis while it serves.
    }
    assert_eq!(rate(allowed.assignment_of(ALICE).await), 20.0);
    assert_eq!(rate(held.assignment_of(ALICE).await), 20.0);
    redis.kill();
    // `allow`: every request of the bucket passes.
    let allow_all = Strategy::BlanketRule(BlanketRule::AllowAll as i32);
    let mut pushes = 0;
    while allowed.assignment_of(ALICE).await != allow_all {
        pushes += 1;
        assert!(pushes < 300, "still a token bucket after {pushes} pushes");
    }
    // `error`: pushes go on for the other bucket but leave this one out, so that Envoy's
    // assignment expires and its expired_assignment_behavior decides.
    let deny_all = Strategy::BlanketRule(BlanketRule::DenyAll as i32);
    let mut left_out = 0;
    for _ in 0..300 {
        let answer = held.next().await;
        let names = |id: &BucketId| id.bucket.contains_key("api_key");
        let has_alice = answer
            .bucket_action
            .iter()
            .any(|a| a.bucket_id.as_ref().is_some_and(names));
        let others: Vec<_> = answer
            .bucket_action
            .iter()
            .filter_map(strategy_of)
            .collect();
        if !has_alice && others == [deny_all] {
            left_out += 1;
            if left_out == 3 {
                break;
            }
        }
    }
    assert_eq!(left_out, 3, "the shared bucket was still pushed");
    drop((allowed, held));
    allow.stop().await;
    hold.stop().await;
}
