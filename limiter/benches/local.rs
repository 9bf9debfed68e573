//! The embedded limiter against governor (direct and dashmap-keyed) and a naive
//! `Mutex<HashMap>` in the same run: an uncontended direct check, keyed checks over 1, 10k
//! and 1M keys, two threads on one hot bucket, one and two threads on distinct keys, and a
//! whole `LocalLimits::check`.
//!
//! Quotas are never exhausted (1e9/s, burst 1e9), so every iteration takes the allowing path,
//! which writes state. Like for like: governor reads its quanta clock in every check, so the
//! `system_clock` rows read `SystemClock` in every check too; the `given_now` rows pass the
//! time in (a counter), as a server that reads the clock once per request does, and the
//! `clock` rows time a clock read alone.
//! Run: `cargo bench -p limiter --bench local`.

use std::hint::black_box;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{NaiveStore, naive_gcra, quota, rate};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;
use governor::RateLimiter;
use limiter::{
    BoundedKeyed, Bucket, Clock, Descriptor, FakeClock, Keyed, LocalLimits, SystemClock, local,
};

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Runs `op(thread, i)` `iters` times split over `threads` threads; the wall time.
fn on_threads(threads: u64, iters: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..threads as usize {
            let op = &op;
            s.spawn(move || (0..per_thread).for_each(|i| op(t, i)));
        }
    });
    start.elapsed()
}

fn direct(c: &mut Criterion) {
    let rate = rate();
    let clock = SystemClock::new();
    let mut group = c.benchmark_group("direct");
    let bucket = Bucket::new();
    group.bench_function("limiter_bucket_system_clock", |b| {
        b.iter(|| black_box(bucket.check(&rate, 1, clock.now())))
    });
    let governor = RateLimiter::direct(quota());
    group.bench_function("governor_direct", |b| {
        b.iter(|| black_box(governor.check().is_ok()))
    });
    let naive = Mutex::new(0);
    group.bench_function("naive_mutex_system_clock", |b| {
        b.iter(|| {
            let now = clock.now();
            black_box(naive_gcra(&mut naive.lock().expect("lock"), &rate, 1, now))
        })
    });
    let mut now = clock.now();
    group.bench_function("limiter_bucket_given_now", |b| {
        b.iter(|| {
            now += 1;
            black_box(bucket.check(&rate, 1, black_box(now)))
        })
    });
    group.bench_function("naive_mutex_given_now", |b| {
        b.iter(|| {
            now += 1;
            black_box(naive_gcra(&mut naive.lock().expect("lock"), &rate, 1, now))
        })
    });
    group.finish();

    // The clocks alone: ours, the standard library's, and governor's (quanta).
    let mut group = c.benchmark_group("clock");
    group.bench_function("limiter_system_clock", |b| {
        b.iter(|| black_box(clock.now()))
    });
    let start = Instant::now();
    group.bench_function("std_instant_elapsed", |b| {
        b.iter(|| black_box(start.elapsed()))
    });
    let quanta = governor::clock::QuantaClock::default();
    group.bench_function("governor_quanta_clock", |b| {
        b.iter(|| black_box(governor::clock::Clock::now(&quanta)))
    });
    group.finish();
}

fn keyed(c: &mut Criterion) {
    let rate = rate();
    let clock = SystemClock::new();
    for n in [1usize, 10_000, 1_000_000] {
        let keys = keys("tenant", n);
        let mut group = c.benchmark_group(format!("keyed_{n}_keys"));
        let dashmap: Keyed<String, Bucket> = Keyed::new();
        let bounded: BoundedKeyed<String> = BoundedKeyed::new(n);
        let governor = RateLimiter::dashmap(quota());
        let naive: NaiveStore<String> = NaiveStore::default();
        for key in &keys {
            dashmap.with(key.as_str(), |b| b.check(&rate, 1, clock.now()));
            bounded.check(key.as_str(), &rate, 1, clock.now());
            let _ = governor.check_key(key);
            naive.check(key.as_str(), &rate, 1, clock.now());
        }
        let mut i = 0;
        group.bench_function("limiter_keyed_dashmap_system_clock", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                black_box(dashmap.with(keys[i].as_str(), |b| b.check(&rate, 1, clock.now())))
            })
        });
        group.bench_function("limiter_bounded_system_clock", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                black_box(bounded.check(keys[i].as_str(), &rate, 1, clock.now()))
            })
        });
        let mut now = clock.now();
        group.bench_function("limiter_keyed_dashmap_given_now", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                now += 1;
                black_box(dashmap.with(keys[i].as_str(), |b| b.check(&rate, 1, now)))
            })
        });
        group.bench_function("limiter_bounded_given_now", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                now += 1;
                black_box(bounded.check(keys[i].as_str(), &rate, 1, now))
            })
        });
        group.bench_function("governor_keyed_dashmap", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                black_box(governor.check_key(&keys[i]).is_ok())
            })
        });
        group.bench_function("naive_mutex_hashmap_given_now", |b| {
            b.iter(|| {
                i = (i + 1) % n;
                now += 1;
                black_box(naive.check(keys[i].as_str(), &rate, 1, now))
            })
        });
        group.finish();
    }
}

fn contended(c: &mut Criterion) {
    let rate = rate();
    let clock = SystemClock::new();
    let start = clock.now();
    let mut group = c.benchmark_group("two_threads_one_hot_bucket");
    let bucket = Bucket::new();
    group.bench_function("limiter_bucket_system_clock", |b| {
        b.iter_custom(|iters| {
            on_threads(2, iters, |_, _| {
                black_box(bucket.check(&rate, 1, clock.now()));
            })
        })
    });
    group.bench_function("limiter_bucket_given_now", |b| {
        b.iter_custom(|iters| {
            on_threads(2, iters, |_, i| {
                black_box(bucket.check(&rate, 1, start + i));
            })
        })
    });
    let governor = RateLimiter::direct(quota());
    group.bench_function("governor_direct", |b| {
        b.iter_custom(|iters| {
            on_threads(2, iters, |_, _| {
                black_box(governor.check().is_ok());
            })
        })
    });
    let naive = Mutex::new(0);
    group.bench_function("naive_mutex_system_clock", |b| {
        b.iter_custom(|iters| {
            on_threads(2, iters, |_, _| {
                let now = clock.now();
                black_box(naive_gcra(&mut naive.lock().expect("lock"), &rate, 1, now));
            })
        })
    });
    group.bench_function("naive_mutex_given_now", |b| {
        b.iter_custom(|iters| {
            on_threads(2, iters, |_, i| {
                black_box(naive_gcra(
                    &mut naive.lock().expect("lock"),
                    &rate,
                    1,
                    start + i,
                ));
            })
        })
    });
    group.finish();

    // Distinct keys per thread: wall time per check over all threads (lower is more
    // throughput), so a store that scales halves its time from 1 to 2 threads.
    const KEYS: usize = 10_000;
    let sets = [keys("a", KEYS), keys("b", KEYS)];
    let dashmap: Keyed<String, Bucket> = Keyed::new();
    let bounded: BoundedKeyed<String> = BoundedKeyed::new(2 * KEYS);
    let governor = RateLimiter::dashmap(quota());
    let naive: NaiveStore<String> = NaiveStore::default();
    // The machine's ceiling: one bucket per thread (a cache line each), no map, nothing
    // shared.
    let own = [
        CachePadded::new(Bucket::new()),
        CachePadded::new(Bucket::new()),
    ];
    let mut group = c.benchmark_group("distinct_keys");
    for threads in [1u64, 2] {
        let key = |t: usize, i: u64| sets[t][i as usize % KEYS].as_str();
        group.bench_with_input(
            BenchmarkId::new("reference_one_bucket_per_thread", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |t, i| {
                        black_box(own[t].check(&rate, 1, start + i));
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("limiter_keyed_dashmap_system_clock", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |t, i| {
                        black_box(dashmap.with(key(t, i), |b| b.check(&rate, 1, clock.now())));
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("limiter_bounded_system_clock", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |t, i| {
                        black_box(bounded.check(key(t, i), &rate, 1, clock.now()));
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("governor_keyed_dashmap", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |t, i| {
                        black_box(governor.check_key(&sets[t][i as usize % KEYS]).is_ok());
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("naive_mutex_hashmap_given_now", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |t, i| {
                        black_box(naive.check(key(t, i), &rate, 1, start + i));
                    })
                })
            },
        );
    }
    group.finish();
}

fn whole_check(c: &mut Criterion) {
    let section = local::parse_section(
        "bench.yaml",
        "local:
  token_bucket: {max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s}
  descriptors:
    - entries: [{key: client}]
      token_bucket: {max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s}
",
    )
    .expect("valid section");
    let clock = FakeClock::new(SystemClock::new().now());
    let limits = LocalLimits::builder(&section).clock(clock).build();
    let mut group = c.benchmark_group("local_limits_check");
    group.bench_function("default_bucket_only", |b| {
        b.iter(|| black_box(limits.check(&[])))
    });
    let clients = keys("client", 10_000);
    let mut i = 0;
    group.bench_function("wildcard_descriptor_10k_values_and_default", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            black_box(limits.check(&[Descriptor::new([("client", clients[i].as_str())])]))
        })
    });
    group.finish();
}

/// The local rules of a RateLimit resource (those of `config/examples/ratelimit-pod-limits.yaml`,
/// quotas too large to refuse): `check_request` on an `http::Request`, actions included.
fn resource_rules(c: &mut Criterion) {
    let rule = |name: &str, rest: &str| {
        format!("    - {{name: {name}, mode: local, quota: 1000000000, unit: second{rest}}}\n")
    };
    let yaml = [
        "apiVersion: quota.rls.dev/v1alpha1\nkind: RateLimit\nmetadata: {name: pod-limits}\n",
        "spec:\n  hosts: [checkout.shop.svc.cluster.local:8080, checkout.example.com]\n  rules:\n",
        &rule("all", ""),
        &rule("cart", ", match: {path: {matchType: prefix, value: /cart}}, per: {clientAddress: true}"),
        &rule("pay", ", match: {path: {value: /pay}, method: POST}, per: {header: x-tenant}"),
        &rule("receipts", ", match: {headers: [{key: x-receipt-format, matchType: regex, value: 'pdf|csv'}]}, cost: 5"),
        &rule("anonymous", ", match: {headers: [{key: authorization, matchType: present, invert: true}]}"),
        &rule("office", ", match: {sourceCIDR: 10.20.0.0/16}, shadow: true"),
    ]
    .concat();
    let section = local::parse_section("bench.yaml", &yaml).expect("valid resource");
    let clock = FakeClock::new(SystemClock::new().now());
    let limits = LocalLimits::builder(&section).clock(clock).build();
    let request = |host: &str| {
        let mut request = http::Request::get("/cart/items")
            .header("host", host)
            .body(())
            .expect("request");
        request
            .extensions_mut()
            .insert(std::net::SocketAddr::from(([192, 0, 2, 1], 40_000)));
        request
    };
    let mut group = c.benchmark_group("resource_local_rules");
    let on_host = request("checkout.example.com");
    group.bench_function("six_rules_two_hosts_request_matching_three", |b| {
        b.iter(|| black_box(limits.check_request(&on_host)))
    });
    let elsewhere = request("other.example.com");
    group.bench_function("six_rules_two_hosts_request_for_another_host", |b| {
        b.iter(|| black_box(limits.check_request(&elsewhere)))
    });
    group.finish();
}

criterion_group!(
    benches,
    direct,
    keyed,
    contended,
    whole_check,
    resource_rules
);
criterion_main!(benches);
