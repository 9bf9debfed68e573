//! Decisions per second on one Redis against the memory store, in the same run: 1, 64 and
//! 1000 concurrent callers; 1 and 4 descriptors; one hot key and 100k keys. Also Redis
//! round trips (script calls) per decision, and the time Redis spent in the check script
//! per check sent (`INFO commandstats`). Server-side work only: callers call the decider
//! directly, no gRPC.
//!
//!     cargo bench -p rls --bench redis [-- --seconds 3]
//!
//! It starts its own `redis-server` on a free loopback port (persistence off) and stops it.
//! Prints a Markdown table for BENCHMARKS.md.

use std::net::TcpListener;
use std::num::NonZero;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{descriptor, four_descriptors, quotas, request};
use limiter::SystemClock;
use proto::rls::RateLimitRequest;
use rls::decide::{AnswerOptions, Decider};
use rls::store::redis::{
    Endpoint, OnBackendError, RedisOptions, RedisStore, ShardOptions, TimeSource,
};
use rls::store::{BucketStore, MemoryStore};

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Redis {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            // As docs/redis.md recommends: expiry in 2.5 ms steps instead of 25 ms stalls.
            "--hz",
            "100",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server) must be installed");
    // Wait for it to answer: this bench is not a test, a short poll is fine.
    for _ in 0..500 {
        if cli(port, &["ping"]).starts_with("PONG") {
            return Redis(child, port);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server did not start");
}

/// `redis-cli -p port args...`, its output.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Microseconds Redis spent in `EVALSHA` since the last `CONFIG RESETSTAT`.
fn evalsha_usec(port: u16) -> f64 {
    cli(port, &["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
        .and_then(|stats| stats.split(',').find_map(|kv| kv.strip_prefix("usec=")))
        .and_then(|usec| usec.parse().ok())
        .unwrap_or(0.0)
}

/// The requests of a workload: one (hot key) or 100k distinct ones, each with 1 or 4
/// descriptors.
fn workload(descriptors: usize, keys: usize) -> Vec<RateLimitRequest> {
    (0..keys)
        .map(|i| {
            let user = format!("user-{i}");
            match descriptors {
                4 => four_descriptors(&user),
                _ => request(vec![descriptor(&[("user", &user)])]),
            }
        })
        .collect()
}

/// Runs `callers` tasks deciding for `seconds`; returns decisions per second.
async fn measure<S: BucketStore>(
    decider: Arc<Decider<S>>,
    requests: Arc<Vec<RateLimitRequest>>,
    callers: usize,
    seconds: f64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|n| {
            let (decider, requests, done, stop) = (
                decider.clone(),
                requests.clone(),
                done.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut i = n * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 1) % requests.len();
                    decider.decide(&requests[i]).await.expect("decision");
                    done.fetch_add(1, Ordering::Relaxed);
                    // A memory decision never waits, so without this the callers would
                    // starve the timer that ends the run (and each other).
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("caller");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let redis = start_redis();
    println!(
        "| callers | descriptors | keys | memory decisions/s | Redis decisions/s | Redis / memory | Redis round trips per decision | Redis µs per check |"
    );
    println!("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for callers in [1, 64, 1000] {
        for descriptors in [1, 4] {
            for keys in [1, 100_000] {
                let requests = Arc::new(workload(descriptors, keys));
                let clock = Arc::new(SystemClock::new());
                let memory = Arc::new(Decider::new(
                    quotas(),
                    MemoryStore::new(),
                    clock.clone(),
                    AnswerOptions::default(),
                ));
                let memory_rate = measure(memory, requests.clone(), callers, seconds).await;
                let store = RedisStore::new(RedisOptions {
                    endpoints: vec![Endpoint::Server(format!("redis://127.0.0.1:{}", redis.1))],
                    key_prefix: format!("bench{callers}-{descriptors}-{keys}:"),
                    timeout: Duration::from_secs(1),
                    on_error: OnBackendError::Error,
                    replicas: NonZero::<u32>::MIN,
                    max_in_flight: NonZero::new(100_000).expect("nonzero"),
                    over_limit_cache: 100_000,
                    time: TimeSource::Redis,
                    shard: ShardOptions {
                        tls: Default::default(),
                        connect_timeout: Duration::from_secs(1),
                        batch_max_checks: NonZero::new(256).expect("nonzero"),
                        batch_window: Duration::ZERO,
                        pipeline_depth: NonZero::new(8).expect("nonzero"),
                    },
                    clock: clock.clone(),
                    lease: None,
                });
                store.wait_connected().await;
                let redis_decider = Arc::new(Decider::new(
                    quotas(),
                    store,
                    clock,
                    AnswerOptions::default(),
                ));
                let before = redis_decider.store().script_calls();
                let checks_before = redis_decider.store().script_checks();
                cli(redis.1, &["CONFIG", "RESETSTAT"]);
                let started = Instant::now();
                let redis_rate = measure(redis_decider.clone(), requests, callers, seconds).await;
                let decisions = redis_rate * started.elapsed().as_secs_f64();
                let calls = (redis_decider.store().script_calls() - before) as f64;
                let checks = (redis_decider.store().script_checks() - checks_before) as f64;
                println!(
                    "| {callers} | {descriptors} | {} | {:.0} | {:.0} | {:.2} | {:.3} | {:.1} |",
                    if keys == 1 { "hot" } else { "100k" },
                    memory_rate,
                    redis_rate,
                    redis_rate / memory_rate,
                    calls / decisions,
                    evalsha_usec(redis.1) / checks.max(1.0)
                );
            }
        }
    }
}
