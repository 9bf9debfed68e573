//! Leased tokens against a real `redis-server`: the lease script passes the shared lease
//! vectors; a hot bucket is answered from leases with few Redis calls and exactly the
//! answers of Redis alone; and replicas sharing one bucket never allow more than it holds,
//! nor less than it holds less what their leases park.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::one_check;
use common::redis::{RedisServer, store};
use futures_util::future::join_all;
use limiter::{Clock, FakeClock, Rate};
use rls::store::redis::RedisStore;
use rls::store::{BucketStore, Meter};

#[tokio::test]
async fn the_lease_script_agrees_with_the_rust_maths_on_every_shared_lease_vector() {
    let redis = RedisServer::start();
    let clock = FakeClock::new(0);
    let store = store(&redis, &clock, false, "vectors:");
    store.wait_connected().await;
    let file = limiter::vectors::lease().expect("vectors parse");
    for (n, vector) in file.vectors.iter().enumerate() {
        let rate = vector.rate.rate();
        let key = format!("lease{n}");
        for (s, step) in vector.steps.iter().enumerate() {
            let at = step.at_ns;
            let batch = one_check(&key, Meter::TokenBucket(rate), step.cost, at);
            if let Some(want) = step.lease {
                let taken = store.take_leases(&batch, want).await.expect("lease");
                assert_eq!(
                    taken,
                    [(
                        step.granted.expect("granted"),
                        step.ahead_ns.expect("ahead")
                    )],
                    "{}: step {s}",
                    vector.name
                );
                continue;
            }
            let expected = step
                .expect
                .as_ref()
                .expect("expect")
                .decision()
                .expect("valid");
            let decision = if step.refund {
                store.give_back(&batch, &[0]).await.expect("refund");
                let peek = one_check(&key, Meter::TokenBucket(rate), 0, at);
                store.check(&peek, false).await.expect("check").decisions[0]
            } else {
                store.check(&batch, false).await.expect("check").decisions[0]
            };
            assert_eq!(decision, expected, "{}: step {s}", vector.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_bucket_is_answered_from_leases_as_redis_alone_would_answer() {
    let redis = RedisServer::start();
    let clock = FakeClock::new(1_700_000_000_000_000_000);
    let leased = store(&redis, &clock, true, "leased:");
    let plain = store(&redis, &clock, false, "plain:");
    leased.wait_connected().await;
    plain.wait_connected().await;
    // 10,000 a second, burst 1000: first far over the limit (a check every 20 µs), where
    // every answer is the same as without leases; then under it (every 0.2 ms, so a 10 ms
    // lease holds about 50), where every check is allowed either way (a bucket that would
    // be full keeps refilling while a lease holds its tokens, so `remaining` may read up
    // to a lease higher) with one call for tens of checks.
    let meter = Meter::TokenBucket(Rate::new(10_000, Duration::from_secs(1), 1000));
    for (phase, step, checks) in [("over", 20_000, 2000), ("under", 200_000, 2000)] {
        let (before_leased, before_plain) = (leased.script_calls(), plain.script_calls());
        for n in 0..checks {
            clock.advance(Duration::from_nanos(step));
            let batch = one_check("hot", meter, 1, clock.now());
            let a = leased.check(&batch, false).await.expect("leased");
            let b = plain.check(&batch, false).await.expect("plain");
            if phase == "over" {
                // The answers; which of them a cache gave may differ.
                assert_eq!(
                    (&a.decisions, a.denied),
                    (&b.decisions, b.denied),
                    "{phase}, check {n}"
                );
            } else {
                assert!(!a.denied && !b.denied, "{phase}, check {n}: {a:?} {b:?}");
            }
        }
        let calls = leased.script_calls() - before_leased;
        let plain_calls = plain.script_calls() - before_plain;
        println!(
            "{phase} the limit: {checks} checks, {calls} script calls with leases, {plain_calls} without; largest lease {}",
            leased.largest_lease()
        );
        if phase == "under" {
            assert_eq!(plain_calls, checks);
            assert!(
                calls * 20 <= checks,
                "{calls} script calls for {checks} checks"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_leasing_one_bucket_never_allow_more_than_it_holds() {
    let redis = RedisServer::start();
    let clock = FakeClock::new(1_700_000_000_000_000_000);
    let replicas: Vec<Arc<RedisStore>> = (0..3)
        .map(|_| Arc::new(store(&redis, &clock, true, "shared:")))
        .collect();
    for replica in &replicas {
        replica.wait_connected().await;
    }
    // The clock stands still: the bucket holds its burst and never refills.
    let burst = 500;
    let meter = Meter::TokenBucket(Rate::new(100, Duration::from_secs(1), burst));
    let now = clock.now();
    let callers = (0..12).map(|c| {
        let replica = replicas[c % 3].clone();
        tokio::spawn(async move {
            let mut allowed = 0u32;
            for _ in 0..200 {
                let batch = one_check("shared", meter, 1, now);
                let verdict = replica.check(&batch, false).await.expect("decided");
                allowed += u32::from(!verdict.denied);
            }
            allowed
        })
    });
    let allowed: u32 = join_all(callers)
        .await
        .into_iter()
        .map(|a| a.expect("caller"))
        .sum();
    let parked: u64 = replicas.iter().map(|r| r.largest_lease()).sum();
    println!("allowed {allowed} of {burst}; bound Σ largest lease = {parked}");
    assert!(allowed <= burst, "allowed {allowed} > {burst}");
    assert!(
        u64::from(allowed) + parked >= u64::from(burst),
        "allowed {allowed} < {burst} − {parked}"
    );
    // Handed back at release: what was parked is in the bucket again.
    for replica in &replicas {
        replica.release().await;
    }
    let peek = one_check("shared", meter, 0, now);
    let left = replicas[0]
        .check(&peek, false)
        .await
        .expect("peek")
        .decisions[0]
        .remaining();
    assert_eq!(
        allowed + left,
        burst,
        "tokens lost: {allowed} given, {left} left"
    );
}
