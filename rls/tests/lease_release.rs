//! Where leased tokens go when a lease ends, against a real `redis-server`: handed back
//! at reload and at shutdown (nothing parked is lost), and a fixed window's hits handed
//! back only within their window (never into the next one).
//!
//! The clock stands still in each phase, so a bucket never refills: what a plain store
//! (no leases) can still take from it afterwards is exactly what was not given out.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::{RedisServer, store};
use common::serve::{ServerTask, eventually, request};
use common::{START_SECS, one_check};
use config::{LoadOptions, QuotaSet};
use limiter::{Clock, FakeClock};
use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use rls::Listeners;
use rls::decide::{AnswerOptions, Decider};
use rls::store::redis::RedisStore;
use rls::store::{BucketStore, Meter};
use tokio::net::TcpListener;

const QUOTA: &str = "\
domain: lease
descriptors:
  - key: k
    rate_limit: {unit: minute, requests_per_unit: 100}
";

async fn decider(
    redis: &RedisServer,
    clock: &FakeClock,
    lease: bool,
    prefix: &str,
) -> Arc<Decider<RedisStore>> {
    let quotas =
        QuotaSet::from_sources([("q.yaml", QUOTA)], &LoadOptions::default()).expect("valid quota");
    let store = store(redis, clock, lease, prefix);
    store.wait_connected().await;
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    Arc::new(Decider::new(
        quotas,
        store,
        shared,
        AnswerOptions::default(),
    ))
}

/// How many more requests for `value` a decider without leases allows before the first
/// denial: what the bucket still holds in Redis.
async fn left(plain: &Decider<RedisStore>, value: &str) -> u32 {
    let mut allowed = 0;
    loop {
        let answer = plain.decide(&request("lease", &[("k", value)])).await;
        if answer.expect("decided").overall_code == 2 {
            return allowed;
        }
        allowed += 1;
        assert!(allowed <= 100, "more than the quota allowed");
    }
}

/// Polls until `store`'s leases hold tokens not given out (grants run in the
/// background): what a lost hand-back would lose.
async fn wait_for_a_lease(store: &RedisStore) {
    eventually("a lease holds tokens", || async {
        (store.leased_tokens() > 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_handed_back_at_reload_and_at_shutdown() {
    let redis = RedisServer::start();
    let clock = FakeClock::new(START_SECS * 1_000_000_000);
    let leased = decider(&redis, &clock, true, "release:").await;
    let plain = decider(&redis, &clock, false, "release:").await;
    let listeners = Listeners {
        grpc: TcpListener::bind("127.0.0.1:0").await.expect("bind grpc"),
        http: TcpListener::bind("127.0.0.1:0").await.expect("bind http"),
    };
    let grpc = listeners.grpc.local_addr().expect("grpc addr");
    let server = {
        let leased = leased.clone();
        ServerTask::spawn(|shutdown| rls::server::serve_store(listeners, leased, shutdown))
    };
    let mut client = RateLimitServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    let mut give = async |value: &str| {
        for _ in 0..5 {
            let answer = client
                .should_rate_limit(request("lease", &[("k", value)]))
                .await;
            assert_eq!(answer.expect("answered").into_inner().overall_code, 1);
        }
    };

    // Reload: 5 given out, the rest of what the leases took is in the bucket again.
    give("reload").await;
    wait_for_a_lease(leased.store()).await;
    let quotas =
        QuotaSet::from_sources([("q.yaml", QUOTA)], &LoadOptions::default()).expect("valid quota");
    leased.reload(quotas).await;
    assert_eq!(
        left(&plain, "reload").await,
        95,
        "tokens parked at reload were lost"
    );

    // Shutdown: the same, for leases taken after the reload.
    give("shutdown").await;
    wait_for_a_lease(leased.store()).await;
    server.stop().await;
    assert_eq!(
        left(&plain, "shutdown").await,
        95,
        "tokens parked at shutdown were lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_lease_is_handed_back_within_its_window_and_never_into_the_next() {
    let redis = RedisServer::start();
    // 20 s into a minute: the window ends 40 s later.
    let clock = FakeClock::new(START_SECS * 1_000_000_000);
    let meter = Meter::FixedWindow {
        period_secs: 60,
        limit: 100,
    };
    let plain = store(&redis, &clock, false, "window:");
    plain.wait_connected().await;
    let plain_left = async |key: &str, now: u64| {
        let mut allowed = 0u32;
        while !plain
            .check(&one_check(key, meter, 1, now), false)
            .await
            .unwrap_or_else(|e| panic!("{key} at {now}: after {allowed}: {e}"))
            .denied
        {
            allowed += 1;
            assert!(
                allowed <= 100,
                "{key}: more than the window's limit allowed"
            );
        }
        allowed
    };

    // Within the window: what the lease took and did not give out goes back.
    let within = store(&redis, &clock, true, "window:");
    within.wait_connected().await;
    let take_five = async |leased: &RedisStore, key: &str| {
        for _ in 0..5 {
            let batch = one_check(key, meter, 1, clock.now());
            assert!(!leased.check(&batch, false).await.expect("check").denied);
        }
        wait_for_a_lease(leased).await;
    };
    take_five(&within, "within").await;
    within.release().await;
    assert_eq!(plain_left("within", clock.now()).await, 95);

    // After the window: its hits stay counted there (the lease's tokens were counted as
    // given out), and nothing goes to the next window, which starts with its whole limit.
    let after = store(&redis, &clock, true, "window:");
    after.wait_connected().await;
    take_five(&after, "after").await;
    let ended = clock.now();
    clock.advance(Duration::from_secs(40));
    after.release().await;
    assert_eq!(
        plain_left("after", clock.now()).await,
        100,
        "the next window changed"
    );
    let old = plain_left("after", ended).await;
    assert!(old < 95, "an ended window got hits back: {old} left of 95");
}
