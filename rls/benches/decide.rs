//! One `should_rate_limit` decision, server-side work only (no gRPC): 1 descriptor,
//! 4 descriptors, and 100k distinct keys, on the memory store and, as the baseline in the
//! same run, on a naive store that keeps every bucket behind one `Mutex<HashMap>`; then on
//! the memory store again with the Prometheus recorder installed (`memory-prometheus`).

use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

mod common;

use common::{descriptor, four_descriptors, quotas, request};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use limiter::{Bucket, FakeClock, Window};
use proto::rls::RateLimitRequest;
use rls::RlsError;
use rls::decide::{AnswerOptions, Decider};
use rls::store::{Batch, BucketStore, MemoryStore, Meter, Verdict};

/// The baseline: one lock around every bucket, keys copied into owned vectors.
#[derive(Default)]
struct NaiveStore {
    buckets: Mutex<HashMap<Vec<u8>, (Bucket, Window)>>,
}

impl BucketStore for NaiveStore {
    async fn check(&self, batch: &Batch, _shed: bool) -> Result<Verdict, RlsError> {
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let decisions = batch
            .checks
            .iter()
            .map(|check| {
                let (bucket, window) = map.entry(batch.key(check).to_vec()).or_default();
                match check.meter {
                    Meter::TokenBucket(rate) => bucket.check(&rate, check.cost, batch.now),
                    Meter::FixedWindow { period_secs, limit } => window
                        .hit(period_secs, check.cost, batch.now)
                        .decision(limit),
                }
            })
            .collect();
        Ok(Verdict::of(batch, decisions))
    }
}

/// Polls a future that completes without waiting (both stores do) to its end.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the store did not answer at once"),
    }
}

fn decider<S: BucketStore>(store: S) -> Decider<S> {
    let clock = Arc::new(FakeClock::new(1_700_000_000_000_000_000));
    Decider::new(quotas(), store, clock, AnswerOptions::default())
}

fn run<S: BucketStore>(c: &mut Criterion, name: &str, store: impl Fn() -> S) {
    let mut group = c.benchmark_group("decide");
    let one = request(vec![descriptor(&[("path", "/api/users")])]);
    let four = four_descriptors("alice");
    let many: Vec<RateLimitRequest> = (0..100_000)
        .map(|i| request(vec![descriptor(&[("user", &format!("user-{i}"))])]))
        .collect();

    let d = decider(store());
    group.bench_function(BenchmarkId::new(name, "1 descriptor"), |b| {
        b.iter(|| now(d.decide(black_box(&one))).expect("answer"))
    });
    group.bench_function(BenchmarkId::new(name, "4 descriptors"), |b| {
        b.iter(|| now(d.decide(black_box(&four))).expect("answer"))
    });
    let d = decider(store());
    let mut i = 0;
    group.bench_function(BenchmarkId::new(name, "100k keys"), |b| {
        b.iter(|| {
            i = (i + 1) % many.len();
            now(d.decide(black_box(&many[i]))).expect("answer")
        })
    });
    group.finish();
}

fn decisions(c: &mut Criterion) {
    run(c, "memory", MemoryStore::new);
    run(c, "naive-mutex", NaiveStore::default);
    // Last: once installed, the Prometheus recorder stays. Without it the metrics are
    // no-ops; with it the decision pays for its per-rule counters, as `rls serve`'s do.
    rls::stats::prometheus();
    run(c, "memory-prometheus", MemoryStore::new);
}

criterion_group!(benches, decisions);
criterion_main!(benches);
