//! The decider's admission: the bound on requests decided at once, and shedding.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use config::{LoadOptions, QuotaSet};
use limiter::FakeClock;
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::Entry;
use proto::rls::rate_limit_response::Code;
use proto::rls::{RateLimitRequest, RateLimitResponse};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;

use super::{AnswerOptions, Decider};
use crate::error::RlsError;
use crate::store::{Batch, BucketStore, MemoryStore, Verdict};

/// A memory store that holds each check until the test lets it through, and records
/// how many were inside at once and in which order they came in.
struct Gate {
    inside: AtomicUsize,
    most: AtomicUsize,
    through: Semaphore,
    order: Mutex<Vec<Vec<u8>>>,
    shed: Mutex<Vec<bool>>,
    memory: MemoryStore,
    deadline: Option<Duration>,
}

impl Gate {
    fn new(deadline: Option<Duration>) -> Gate {
        Gate {
            inside: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            through: Semaphore::new(0),
            order: Mutex::new(Vec::new()),
            shed: Mutex::new(Vec::new()),
            memory: MemoryStore::new(),
            deadline,
        }
    }
}

impl BucketStore for Gate {
    async fn check(&self, batch: &Batch, shed: bool) -> Result<Verdict, RlsError> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.order
            .lock()
            .await
            .push(batch.key(&batch.checks[0]).to_vec());
        self.shed.lock().await.push(shed);
        if let Ok(pass) = self.through.acquire().await {
            pass.forget();
        }
        self.inside.fetch_sub(1, Ordering::SeqCst);
        self.memory.check(batch, shed).await
    }

    fn deadline(&self) -> Option<Duration> {
        self.deadline
    }
}

fn decider(max_concurrent: usize) -> Arc<Decider<Gate>> {
    with_deadline(max_concurrent, None)
}

fn with_deadline(max_concurrent: usize, backend_deadline: Option<Duration>) -> Arc<Decider<Gate>> {
    let max_concurrent = NonZeroUsize::new(max_concurrent);
    let yaml = "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 100}\n";
    let quotas = QuotaSet::from_sources([("d.yaml", yaml)], &LoadOptions::default())
        .expect("valid quota file");
    let options = AnswerOptions {
        max_concurrent,
        ..AnswerOptions::default()
    };
    let clock = Arc::new(FakeClock::new(1_700_000_000_000_000_000));
    let gate = Gate::new(backend_deadline);
    Arc::new(Decider::new(quotas, gate, clock, options))
}

fn request(value: usize) -> RateLimitRequest {
    RateLimitRequest {
        domain: "d".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "k".into(),
                value: value.to_string(),
            }],
            ..Default::default()
        }],
        hits_addend: 1,
    }
}

/// Six requests from six callers, each run until it waits (the runtime has one
/// thread).
async fn six_callers(
    decider: &Arc<Decider<Gate>>,
) -> Vec<JoinHandle<Result<RateLimitResponse, RlsError>>> {
    let calls = (0..6)
        .map(|n| {
            let decider = decider.clone();
            tokio::spawn(async move { decider.decide(&request(n)).await })
        })
        .collect();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    calls
}

#[tokio::test(flavor = "current_thread")]
async fn requests_beyond_the_bound_wait_their_turn_and_are_all_answered() {
    let decider = decider(2);
    let calls = six_callers(&decider).await;
    assert_eq!(decider.store().inside.load(Ordering::SeqCst), 2);
    // A waiting request whose caller gives up leaves the line without taking a turn.
    calls[3].abort();
    decider.store().through.add_permits(6);
    let mut answered = 0;
    for (n, call) in calls.into_iter().enumerate() {
        match call.await {
            Ok(answer) => {
                assert_eq!(answer.expect("decided").overall_code(), Code::Ok);
                answered += 1;
            }
            Err(error) => assert!(n == 3 && error.is_cancelled()),
        }
    }
    assert_eq!(answered, 5);
    let store = decider.store();
    assert_eq!(store.most.load(Ordering::SeqCst), 2);
    let order = store.order.lock().await;
    // Each key ends with its value's digit (then the key's framing). The first three
    // went in arrival order; after caller 3 gave up, the newest first (the line's
    // order is tested in `admission`).
    let values: Vec<u8> = order
        .iter()
        .filter_map(|key| key.iter().rev().find(|b| b.is_ascii_digit()).copied())
        .collect();
    assert_eq!(values, b"01254");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_caller_with_a_deadline_is_shed_in_time_for_the_failure_mode_to_answer() {
    // A 10 ms store deadline; callers that give up after 25 ms wait at most 15 ms.
    let decider = with_deadline(2, Some(Duration::from_millis(10)));
    let calls: Vec<_> = (0..4)
        .map(|n| {
            let decider = decider.clone();
            tokio::spawn(async move {
                decider
                    .decide_within(&request(n), Some(Duration::from_millis(25)))
                    .await
            })
        })
        .collect();
    // A caller without a deadline waits for its turn however long it takes.
    let patient = {
        let decider = decider.clone();
        tokio::spawn(async move { decider.decide(&request(9)).await })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let store = decider.store();
    assert_eq!(store.inside.load(Ordering::SeqCst), 2);
    // The held two never end (the paused clock moves on once every task waits): the
    // two waiting with a deadline go on, shed, at 15 ms and not before.
    tokio::time::sleep(Duration::from_millis(14)).await;
    assert_eq!(store.inside.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(1)).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(store.inside.load(Ordering::SeqCst), 4);
    assert_eq!(*store.shed.lock().await, [false, false, true, true]);
    store.through.add_permits(5);
    for call in calls {
        let answer = call.await.expect("ran");
        assert_eq!(answer.expect("decided").overall_code(), Code::Ok);
    }
    assert_eq!(
        patient.await.expect("ran").expect("decided").overall_code(),
        Code::Ok
    );
    assert_eq!(store.shed.lock().await.len(), 5);
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_bound_every_request_is_decided_at_once() {
    let decider = decider(0);
    let calls = six_callers(&decider).await;
    assert_eq!(decider.store().inside.load(Ordering::SeqCst), 6);
    decider.store().through.add_permits(6);
    for call in calls {
        assert_eq!(
            call.await.expect("ran").expect("decided").overall_code(),
            Code::Ok
        );
    }
}
