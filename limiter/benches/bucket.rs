//! Cost of one check: `Bucket::check` alone and through `Keyed`, each compared in the same run
//! against a naive `Mutex<HashMap>` GCRA and governor's direct and keyed (dashmap) limiters.
//!
//! Every limiter gets a quota it never exhausts (1e9/s, burst 1e9), so each iteration measures
//! the allowing path, which writes state. Run: `cargo bench -p limiter --bench bucket`.

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use limiter::{Bucket, Clock, Keyed, Nanos, Rate, SystemClock};

const PER_SECOND: u32 = 1_000_000_000;

fn rate() -> Rate {
    Rate::new(PER_SECOND, Duration::from_secs(1), PER_SECOND)
}

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(PER_SECOND).expect("non-zero"))
}

/// The obvious implementation: one lock around a map of tats, same GCRA maths.
#[derive(Default)]
struct NaiveStore {
    tats: Mutex<HashMap<Box<[u8]>, Nanos>>,
}

impl NaiveStore {
    fn check(&self, key: &[u8], rate: &Rate, cost: u32, now: Nanos) -> bool {
        let mut tats = self.tats.lock().expect("not poisoned");
        let tat = match tats.get_mut(key) {
            Some(tat) => tat,
            None => tats.entry(key.into()).or_insert(0),
        };
        naive_gcra(tat, rate, cost, now)
    }
}

fn naive_gcra(tat: &mut Nanos, rate: &Rate, cost: u32, now: Nanos) -> bool {
    let new = (*tat).max(now) + u64::from(cost) * rate.interval();
    let allowed = new - now <= rate.tolerance();
    if allowed {
        *tat = new;
    }
    allowed
}

fn keys(n: u32) -> Vec<Box<[u8]>> {
    (0..n)
        .map(|i| {
            format!("domain\0generic_key\0tenant-{i}")
                .into_bytes()
                .into()
        })
        .collect()
}

fn uncontended(c: &mut Criterion) {
    let rate = rate();
    let clock = SystemClock::new();
    let mut group = c.benchmark_group("one_bucket");

    let bucket = Bucket::new();
    let mut now = clock.now();
    group.bench_function("limiter_bucket_given_now", |b| {
        b.iter(|| {
            now += 1;
            black_box(bucket.check(&rate, 1, black_box(now)))
        })
    });
    let bucket = Bucket::new();
    group.bench_function("limiter_bucket_system_clock", |b| {
        b.iter(|| black_box(bucket.check(&rate, 1, clock.now())))
    });
    let naive = Mutex::new(0);
    group.bench_function("naive_mutex_system_clock", |b| {
        b.iter(|| {
            let mut tat = naive.lock().expect("not poisoned");
            black_box(naive_gcra(&mut tat, &rate, 1, clock.now()))
        })
    });
    let governor = RateLimiter::direct(quota());
    group.bench_function("governor_direct", |b| {
        b.iter(|| black_box(governor.check().is_ok()))
    });
    group.finish();
}

fn keyed(c: &mut Criterion) {
    let rate = rate();
    let clock = SystemClock::new();
    for n in [1u32, 100_000] {
        let keys = keys(n);
        let mut group = c.benchmark_group(format!("keyed_{n}_keys"));

        let store: Keyed<Box<[u8]>, Bucket> = Keyed::new();
        let naive = NaiveStore::default();
        let governor = RateLimiter::dashmap(quota());
        for key in &keys {
            store.with(&key[..], |b| b.check(&rate, 1, clock.now()));
            naive.check(key, &rate, 1, clock.now());
            let _ = governor.check_key(key);
        }

        let mut i = 0;
        // The same store with the clock read taken out, since governor's clock (quanta, the
        // TSC) is cheaper than `Instant::now` and would otherwise dominate the difference.
        let mut now = clock.now();
        group.bench_function("limiter_keyed_given_now", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                now += 1;
                let key = &keys[i][..];
                black_box(store.with(key, |b| b.check(&rate, 1, black_box(now))))
            })
        });
        group.bench_function("limiter_keyed_system_clock", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let key = &keys[i][..];
                black_box(store.with(key, |b| b.check(&rate, 1, clock.now())))
            })
        });
        group.bench_function("naive_mutex_hashmap", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(naive.check(&keys[i], &rate, 1, clock.now()))
            })
        });
        group.bench_function("governor_keyed_dashmap", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(governor.check_key(&keys[i]).is_ok())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, uncontended, keyed);
criterion_main!(benches);
