//! The Redis store against a real `redis-server`: the Lua maths agrees with the Rust maths
//! on the shared vectors, and failures (a stalled, killed, restarted or flushed Redis) are
//! answered by the failure mode within the deadline, then recovered from; a request that
//! could not be answered in time is not sent; a hot key over its limit is answered from
//! the over-limit cache, exactly.

mod common;

use std::num::NonZero;
use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use common::{one_check, redis_options};
use futures_util::future::join_all;
use limiter::{Clock, FakeClock, Rate};
use rls::RlsError;
use rls::store::redis::{Endpoint, OnBackendError, RedisStore, TlsFiles};
use rls::store::{BucketStore, Meter};

fn store(
    redis: &RedisServer,
    configure: impl FnOnce(&mut rls::store::redis::RedisOptions),
) -> RedisStore {
    let mut options = redis_options(vec![Endpoint::Server(redis.url())]);
    configure(&mut options);
    RedisStore::new(options)
}

#[tokio::test]
async fn the_lua_script_agrees_with_the_rust_maths_on_every_shared_vector() {
    let redis = RedisServer::start();
    // The cache off: every answer comes from the script.
    let store = store(&redis, |o| o.over_limit_cache = 0);
    store.wait_connected().await;
    let file = limiter::vectors::gcra().expect("vectors parse");
    assert!(file.vectors.len() >= 12);
    for (n, vector) in file.vectors.iter().enumerate() {
        let rate = vector.rate.rate();
        let key = format!("vector{n}");
        for (s, step) in vector.steps.iter().enumerate() {
            let batch = one_check(&key, Meter::TokenBucket(rate), step.cost, step.at_ns);
            let decision = if step.refund {
                store.give_back(&batch, &[0]).await.expect("refund");
                let probe = one_check(&key, Meter::TokenBucket(rate), 0, step.at_ns);
                store.check(&probe, false).await.expect("check").decisions[0]
            } else {
                store.check(&batch, false).await.expect("check").decisions[0]
            };
            let expected = step
                .expect
                .decision()
                .unwrap_or_else(|e| panic!("{}: {e}", vector.name));
            assert_eq!(decision, expected, "vector {:?} step {s}", vector.name);
        }
    }
}

/// Requests that share a bucket and arrive together go out as one script call, which
/// reads the bucket once and charges it request by request, then stores where the last
/// charge left it.
#[tokio::test(flavor = "current_thread")]
async fn requests_sharing_a_bucket_in_one_call_are_charged_in_turn() {
    let redis = RedisServer::start();
    // The cache off: every answer comes from the script.
    let store = Arc::new(store(&redis, |o| o.over_limit_cache = 0));
    store.wait_connected().await;
    let rate = Rate::new(5, Duration::from_secs(3600), 5);
    let now = common::START_SECS * 1_000_000_000;
    let check = |cost| {
        let store = store.clone();
        async move {
            let batch = one_check("shared", Meter::TokenBucket(rate), cost, now);
            store.check(&batch, false).await.expect("check").decisions[0]
        }
    };
    let calls = store.script_calls();
    // Spawned together on one thread: all ten are queued before the batcher runs.
    let tasks = (0..10).map(|_| tokio::spawn(check(1)));
    let decisions: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|d| d.expect("task"))
        .collect();
    assert_eq!(store.script_calls() - calls, 1, "one call for all ten");
    let mut remaining: Vec<u32> = decisions
        .iter()
        .filter(|d| d.is_allowed())
        .map(|d| d.remaining())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, [0, 1, 2, 3, 4]);
    // The denied five saw the bucket after all five charges, and so does a later look.
    let denied: Vec<_> = decisions.iter().filter(|d| !d.is_allowed()).collect();
    assert_eq!(denied.len(), 5);
    let later = check(1).await;
    assert!(!later.is_allowed());
    assert!(
        denied.iter().all(|d| **d == later),
        "{denied:?} vs {later:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_over_its_limit_sends_one_check_per_refilled_token() {
    let redis = RedisServer::start();
    let clock = FakeClock::new(common::START_SECS * 1_000_000_000);
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let store = Arc::new(store(&redis, |o| o.clock = shared.clone()));
    store.wait_connected().await;
    let rate = Rate::new(1, Duration::from_secs(1), 1);
    let check = |now| {
        let store = store.clone();
        async move {
            let batch = one_check("hot", Meter::TokenBucket(rate), 1, now);
            store.check(&batch, false).await.expect("check").decisions[0]
        }
    };
    // 100 requests at once: (allowed, checks sent to Redis).
    let burst = || async {
        let sent = store.script_checks();
        let tasks = (0..100).map(|_| tokio::spawn(check(clock.now())));
        let allowed = join_all(tasks)
            .await
            .into_iter()
            .filter(|answer| answer.as_ref().expect("task").is_allowed())
            .count();
        (allowed, store.script_checks() - sent)
    };
    // The only token: allowed, and the bucket is remembered as empty.
    assert!(check(clock.now()).await.is_allowed());
    for round in 0..3 {
        // While the bucket is empty, none reaches Redis.
        assert_eq!(burst().await, (0, 0), "round {round}: empty");
        // One token later: one request asks Redis and takes it; the others wait for that
        // answer and are denied from it.
        clock.advance(Duration::from_secs(1));
        assert_eq!(burst().await, (1, 1), "round {round}: one token");
    }
}

#[tokio::test]
async fn a_stalled_redis_is_answered_by_each_failure_mode_at_the_deadline() {
    let redis = RedisServer::start();
    let timeout = Duration::from_millis(10);
    let rate = Rate::new(10, Duration::from_secs(1), 10);
    let modes = [
        OnBackendError::Error,
        OnBackendError::Allow,
        OnBackendError::Deny,
        OnBackendError::Local,
    ];
    let stores: Vec<RedisStore> = modes
        .iter()
        .map(|&mode| {
            store(&redis, |o| {
                o.timeout = timeout;
                o.on_error = mode;
                o.replicas = NonZero::new(2).expect("nonzero");
            })
        })
        .collect();
    for store in &stores {
        store.wait_connected().await;
    }
    redis.signal("STOP");
    // From here on tokio's clock only moves when every task waits: the stalled call waits
    // for Redis and for its deadline, so the deadline fires at exactly `timeout`.
    tokio::time::pause();
    for (store, mode) in stores.iter().zip(modes) {
        let started = tokio::time::Instant::now();
        let batch = one_check(
            "stalled",
            Meter::TokenBucket(rate),
            1,
            1_700_000_000_000_000_000,
        );
        let answer = store.check(&batch, false).await;
        // Tokio's timer wheel rounds a deadline up to its next millisecond.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= timeout && elapsed <= timeout + Duration::from_millis(1),
            "{mode:?} answered after {elapsed:?}, not at the {timeout:?} deadline"
        );
        match (mode, answer) {
            (OnBackendError::Error, Err(RlsError::Unavailable(why))) => {
                assert!(why.to_string().contains("deadline"), "{why}")
            }
            (OnBackendError::Allow, Ok(d)) => assert!(d.decisions[0].is_allowed()),
            (OnBackendError::Deny, Ok(d)) => assert!(!d.decisions[0].is_allowed()),
            // Half of 10 per second for each of 2 replicas: 5 tokens here, one taken.
            (OnBackendError::Local, Ok(d)) => assert_eq!(d.decisions[0].remaining(), 4),
            (mode, other) => panic!("{mode:?} answered {other:?}"),
        }
    }
    tokio::time::resume();
    redis.signal("CONT");
}

#[tokio::test]
async fn calls_beyond_the_in_flight_bound_get_the_failure_mode_at_once() {
    let redis = RedisServer::start();
    let store = store(&redis, |o| {
        o.max_in_flight = NonZero::<usize>::MIN;
        o.on_error = OnBackendError::Deny;
        o.timeout = Duration::from_secs(30);
    });
    store.wait_connected().await;
    let rate = Rate::new(10, Duration::from_secs(1), 10);
    redis.signal("STOP");
    let held = one_check(
        "held",
        Meter::TokenBucket(rate),
        1,
        1_700_000_000_000_000_000,
    );
    let second = one_check(
        "second",
        Meter::TokenBucket(rate),
        1,
        1_700_000_000_000_000_000,
    );
    // The first call waits on the stalled Redis and holds the only slot; the second is
    // answered by the failure mode without waiting for it.
    let first = store.check(&held, false);
    tokio::pin!(first);
    let answer = tokio::select! {
        biased;
        _ = &mut first => panic!("a stalled call finished"),
        answer = store.check(&second, false) => answer,
    };
    assert!(!answer.expect("deny mode answers").decisions[0].is_allowed());
    redis.signal("CONT");
    assert!(first.await.expect("answered once Redis resumes").decisions[0].is_allowed());
}

/// A request shed while waiting for its turn (`--max-concurrent-requests`) is answered by
/// the failure mode at once, and charges nothing.
#[tokio::test]
async fn a_request_shed_waiting_for_its_turn_gets_the_failure_mode_unsent() {
    let redis = RedisServer::start();
    let store = store(&redis, |o| {
        o.on_error = OnBackendError::Deny;
        o.over_limit_cache = 0;
    });
    store.wait_connected().await;
    let rate = Rate::new(1, Duration::from_secs(3600), 1);
    let now = common::START_SECS * 1_000_000_000;
    let late = one_check("shed", Meter::TokenBucket(rate), 1, now);
    let calls = store.script_calls();
    assert!(
        !store
            .check(&late, true)
            .await
            .expect("deny mode answers")
            .decisions[0]
            .is_allowed()
    );
    assert_eq!(store.script_calls(), calls, "nothing sent");
    // The bucket's one token is still there for a request in time.
    assert!(store.check(&late, false).await.expect("answered").decisions[0].is_allowed());
    assert_eq!(store.script_calls(), calls + 1);
}

#[tokio::test]
async fn a_request_left_less_time_than_calls_take_is_shed_without_being_sent() {
    let redis = RedisServer::start();
    // One call in flight at a time, so a second request queues behind a stalled one.
    let store = Arc::new(store(&redis, |o| {
        o.timeout = Duration::from_secs(1);
        o.shard.pipeline_depth = NonZero::<usize>::MIN;
    }));
    store.wait_connected().await;
    let rate = Rate::new(10, Duration::from_secs(1), 10);
    let now = 1_700_000_000_000_000_000;
    let check = move |key: &str| one_check(key, Meter::TokenBucket(rate), 1, now);

    // The first call finds Redis stalled for 400 ms: from it the batcher learns that
    // calls take at least that long.
    redis.signal("STOP");
    let slow = tokio::spawn({
        let store = store.clone();
        async move { store.check(&check("slow"), false).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    redis.signal("CONT");
    let slow = slow
        .await
        .expect("joined")
        .expect("answered once Redis resumed");
    assert_eq!(slow.decisions[0].remaining(), 9);

    // Redis stalls again under a call, and a request queues behind it until it has under
    // 300 ms of its second left (the sleep is a lower bound: a slow machine only leaves
    // it less).
    redis.signal("STOP");
    let calls = store.script_calls();
    let held = tokio::spawn({
        let store = store.clone();
        async move { store.check(&check("held"), false).await }
    });
    while store.script_calls() == calls {
        tokio::task::yield_now().await;
    }
    let queued = tokio::spawn({
        let store = store.clone();
        async move { store.check(&check("queued"), false).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.signal("CONT");
    assert!(
        held.await.expect("joined").is_ok(),
        "the held call is answered"
    );
    // Sent now, its answer would come in time only if Redis were faster than it has
    // been: it is answered by the failure mode at once instead, and charged nothing.
    match queued.await.expect("joined") {
        Err(RlsError::Unavailable(why)) => assert!(why.to_string().contains("shed"), "{why}"),
        other => panic!("the queued request was sent: {other:?}"),
    }
    let after = store.check(&check("queued"), false).await.expect("healthy");
    assert_eq!(
        after.decisions[0].remaining(),
        9,
        "the shed request took a token"
    );
}

#[tokio::test]
async fn a_killed_then_restarted_redis_is_answered_by_the_failure_mode_then_recovered() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let store = store(&redis, |o| o.timeout = Duration::from_millis(50));
    store.wait_connected().await;
    let rate = Rate::new(10, Duration::from_secs(60), 10);
    let now = 1_700_000_000_000_000_000;
    let batch = one_check("restart", Meter::TokenBucket(rate), 1, now);
    assert_eq!(
        store.check(&batch, false).await.expect("healthy").decisions[0].remaining(),
        9
    );

    // Load from 20 concurrent callers while Redis dies under them: every answer is a
    // decision or the failure mode (UNAVAILABLE), and none hangs (the guard below would
    // fail the test, it measures nothing).
    let store = std::sync::Arc::new(store);
    let callers: Vec<_> = (0..20)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                // Until Redis's death has shown (a few failures), within a bound: how fast
                // the calls before the kill go must not decide whether the test sees it.
                let (mut decided, mut failed) = (0, 0);
                for i in 0..10_000 {
                    if failed == 5 {
                        break;
                    }
                    let key = format!("load{n}-{i}");
                    let batch = one_check(&key, Meter::TokenBucket(rate), 1, now);
                    match store.check(&batch, false).await {
                        Ok(d) => {
                            assert_eq!(d.decisions[0].remaining(), 9);
                            decided += 1;
                        }
                        Err(RlsError::Unavailable(_)) => failed += 1,
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
                (decided, failed)
            })
        })
        .collect();
    tokio::task::yield_now().await;
    redis.kill();
    let mut failed = 0;
    for caller in callers {
        let answers = tokio::time::timeout(Duration::from_secs(60), caller)
            .await
            .expect("no caller hangs")
            .expect("no caller panics");
        assert_eq!(
            answers.1, 5,
            "every caller sees Redis die ({} decided)",
            answers.0
        );
        failed += answers.1;
    }
    assert!(
        failed > 0,
        "Redis died during the load, some calls must have failed"
    );

    // A new process on the same port: empty, and without the script.
    let again = RedisServer::start_on(port);
    let mut recovered = None;
    for _ in 0..200 {
        if let Ok(verdict) = store.check(&batch, false).await {
            recovered = Some(verdict.decisions[0]);
            break;
        }
        // Waits on a real process: the client reconnects to the new server in the
        // background, after a backoff of its own.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The restarted Redis lost the state: a fresh bucket.
    let recovered = recovered.expect("recovered after restart");
    assert_eq!(recovered.remaining(), 9, "{recovered:?}");
    drop(again);
}

#[tokio::test]
async fn a_script_flush_is_recovered_by_loading_the_script_again() {
    let redis = RedisServer::start();
    let store = store(&redis, |_| {});
    store.wait_connected().await;
    let rate = Rate::new(10, Duration::from_secs(60), 10);
    let now = 1_700_000_000_000_000_000;
    let batch = one_check("flush", Meter::TokenBucket(rate), 1, now);
    assert_eq!(
        store.check(&batch, false).await.expect("first").decisions[0].remaining(),
        9
    );
    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
    assert_eq!(
        store
            .check(&batch, false)
            .await
            .expect("after flush")
            .decisions[0]
            .remaining(),
        8
    );
}

#[tokio::test]
async fn readiness_follows_the_connection() {
    let redis = RedisServer::start();
    let store = store(&redis, |_| {});
    store.wait_connected().await;
    assert!(store.is_ready());
    let rate = Rate::new(10, Duration::from_secs(60), 10);
    let batch = one_check(
        "ready",
        Meter::TokenBucket(rate),
        0,
        common::START_SECS * 1_000_000_000,
    );
    store
        .check(&batch, false)
        .await
        .expect("answered over the connection");
}

#[tokio::test]
async fn a_unix_socket_url_reaches_redis() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("redis.sock");
    let socket = socket.to_str().expect("utf-8");
    let _redis = RedisServer::start_with(&["--unixsocket", socket, "--unixsocketperm", "700"]);
    let store = RedisStore::new(redis_options(vec![Endpoint::Server(format!(
        "redis+unix://{socket}"
    ))]));
    store.wait_connected().await;
    let rate = Rate::new(10, Duration::from_secs(60), 10);
    let batch = one_check(
        "unix",
        Meter::TokenBucket(rate),
        1,
        1_700_000_000_000_000_000,
    );
    assert_eq!(
        store.check(&batch, false).await.expect("check").decisions[0].remaining(),
        9
    );
}

#[tokio::test]
async fn acl_credentials_in_the_url_authenticate_and_stay_out_of_errors() {
    let acl = [
        "--user", "limiter", "on", ">s3cret", "~*", "&*", "+@all", "--user", "default", "off",
    ];
    let redis = RedisServer::start_with(&acl);
    let url = format!("redis://limiter:s3cret@127.0.0.1:{}", redis.port);
    let store = RedisStore::new(redis_options(vec![Endpoint::Server(url)]));
    store.wait_connected().await;
    let rate = Rate::new(10, Duration::from_secs(60), 10);
    let batch = one_check(
        "acl",
        Meter::TokenBucket(rate),
        1,
        1_700_000_000_000_000_000,
    );
    assert_eq!(
        store.check(&batch, false).await.expect("check").decisions[0].remaining(),
        9
    );

    // A wrong password never connects, and what the store says names no secret.
    let wrong = format!("redis://limiter:wrong-password@127.0.0.1:{}", redis.port);
    let mut options = redis_options(vec![Endpoint::Server(wrong)]);
    options.timeout = Duration::from_millis(100);
    let store = RedisStore::new(options);
    match store.check(&batch, false).await {
        Err(RlsError::Unavailable(why)) => {
            assert!(!why.to_string().contains("wrong-password"), "{why}")
        }
        other => panic!("a wrong password answered {other:?}"),
    }
}

/// Makes a CA, and a server and a client certificate it signs, with `openssl`.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=test-ca",
        "-days",
        "1",
    ]);
    for name in ["server", "client"] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ]);
    }
}

#[tokio::test]
async fn rediss_verifies_the_server_and_presents_a_client_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path());
    let file = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let tls_port = common::redis::free_port();
    let _redis = RedisServer::start_with(&[
        "--port",
        "0",
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &file("server.crt"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.crt"),
        "--tls-auth-clients",
        "yes",
    ]);
    let read = |name: &str| std::fs::read(dir.path().join(name)).expect("read pem");
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let rate = Rate::new(10, Duration::from_secs(60), 10);
    let batch = one_check(
        "tls",
        Meter::TokenBucket(rate),
        1,
        1_700_000_000_000_000_000,
    );

    let mut options = redis_options(vec![Endpoint::Server(url.clone())]);
    options.shard.tls = TlsFiles {
        ca: Some(read("ca.crt")),
        client: Some((read("client.crt"), read("client.key"))),
    };
    let store = RedisStore::new(options);
    store.wait_connected().await;
    assert_eq!(
        store
            .check(&batch, false)
            .await
            .expect("check over TLS")
            .decisions[0]
            .remaining(),
        9
    );

    // Without the client certificate the server refuses the handshake: never connected.
    let mut options = redis_options(vec![Endpoint::Server(url)]);
    options.shard.tls = TlsFiles {
        ca: Some(read("ca.crt")),
        client: None,
    };
    options.timeout = Duration::from_millis(100);
    let store = RedisStore::new(options);
    assert!(matches!(
        store.check(&batch, false).await,
        Err(RlsError::Unavailable(_))
    ));
    assert!(!store.is_ready());
}
