//! The Rate Limit Quota Service with a real Envoy: `deploy/envoy/rlqs.yaml`, its ports
//! moved to free loopback ports, against `rls` processes. One Envoy holds each API key to
//! its quota, follows a reload, falls back to its `expired_assignment_behavior` when rls is
//! gone and resumes when it is back; two Envoys on two replicas on one Redis split one
//! quota, and one takes it all when the other stops sending.
//!
//! Envoy reports every 5 s, so these tests run for tens of seconds: the two run in
//! parallel, and each goes through its steps on one set of processes. They observe
//! Envoy by the answers to a steady load and wait for each step by polling, with bounds
//! well above what the steps take.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::envoy::{Bootstrap, Envoy};
use common::process::RlsProcess;
use common::redis::RedisServer;
use common::tools::workspace;

/// The bootstrap's ports: the listener clients call, and where it expects rls.
const LISTENER: u16 = 10000;
const RLS_GRPC: u16 = 8081;

/// Alice's quota is 20 a second; every other API key has 10 a second of its own.
const QUOTAS: &str = include_str!("rlqs/api.yaml");

/// Envoy's report period (hard-coded in Envoy 1.40).
const REPORT_PERIOD: f64 = 5.0;

fn bootstrap() -> String {
    std::fs::read_to_string(workspace().join("deploy/envoy/rlqs.yaml")).expect("rlqs.yaml")
}

fn quota_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("api.yaml"), QUOTAS).expect("write quotas");
    dir
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

/// HTTP/1.1 to Envoy over one kept-alive connection, opened again when it breaks: one
/// request at a time, a few hundred a second.
struct KeepAlive {
    port: u16,
    stream: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    /// The status of `GET /` with `header`; 0 if no answer came.
    fn get(&mut self, header: (&str, &str)) -> u16 {
        let request = format!(
            "GET / HTTP/1.1\r\nhost: rlqs\r\n{}: {}\r\n\r\n",
            header.0, header.1
        );
        for _ in 0..2 {
            if self.stream.is_none() {
                let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
                    return 0;
                };
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                self.stream = Some(BufReader::new(stream));
            }
            match self.exchange(&request) {
                Some(status) => return status,
                None => self.stream = None,
            }
        }
        0
    }

    /// One request and its response (headers, and a body of `content-length`).
    fn exchange(&mut self, request: &str) -> Option<u16> {
        let stream = self.stream.as_mut()?;
        stream.get_mut().write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        stream.read_line(&mut line).ok()?;
        let status = line.split_whitespace().nth(1)?.parse().ok()?;
        let (mut length, mut close) = (0, false);
        loop {
            line.clear();
            stream.read_line(&mut line).ok()?;
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = value.trim().parse().ok()?;
            }
            close |= header == "connection: close";
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).ok()?;
        if close {
            self.stream = None;
        }
        Some(status)
    }
}

/// Requests through Envoy at a fixed rate, from a thread of their own; the time (seconds
/// since `origin`) and status of every answer are kept.
struct Load {
    answers: Arc<Mutex<Vec<(f64, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, header: (&str, &str), rate: f64, origin: Instant) -> Load {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (name, value) = (header.0.to_string(), header.1.to_string());
        let thread = {
            let (answers, stop) = (answers.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut client = KeepAlive { port, stream: None };
                let start = Instant::now();
                let mut sent = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // Paced, not waiting for a refill: the load is what Envoy is offered.
                    let due = start + Duration::from_secs_f64(f64::from(sent) / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let status = client.get((&name, &value));
                    let at = origin.elapsed().as_secs_f64();
                    answers.lock().expect("answers").push((at, status));
                    sent += 1;
                }
            })
        };
        Load {
            answers,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers with `status` in `[from, to)`.
    fn count(&self, status: u16, from: f64, to: f64) -> usize {
        let answers = self.answers.lock().expect("answers");
        answers
            .iter()
            .filter(|&&(at, s)| s == status && at >= from && at < to)
            .count()
    }

    /// Allowed per whole second from `from` to `to`, for messages.
    fn series(&self, from: f64, to: f64) -> String {
        let mut out = Vec::new();
        let mut t = from.floor();
        while t < to {
            out.push(format!(
                "{}/{}",
                self.allowed(t, t + 1.0),
                self.count(429, t, t + 1.0)
            ));
            t += 1.0;
        }
        out.join(" ")
    }

    /// Allowed (200) in `[from, to)`.
    fn allowed(&self, from: f64, to: f64) -> usize {
        self.count(200, from, to)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("load thread");
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` with the seconds since `origin` until it holds; returns when it did.
/// Panics, saying `what`, after `bound` seconds.
fn wait_until(origin: Instant, what: &str, bound: f64, mut check: impl FnMut(f64) -> bool) -> f64 {
    let start = origin.elapsed().as_secs_f64();
    loop {
        let now = origin.elapsed().as_secs_f64();
        if check(now) {
            return now;
        }
        assert!(now - start < bound, "not within {bound} s: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Envoy with the bootstrap as deployed, but a local limit of 5 a second for an API key
/// whose assignment expired.
fn envoy_with_local_fallback(rls_port: u16) -> Envoy {
    let text = bootstrap();
    let indent = "\n                                      ";
    let allow = format!(
        "expired_assignment_behavior_timeout: 300s{indent}fallback_rate_limit: {{ blanket_rule: ALLOW_ALL }}"
    );
    assert_eq!(text.matches(&allow).count(), 2, "api_key's and tenant's");
    let local = format!(
        "expired_assignment_behavior_timeout: 300s{indent}fallback_rate_limit:{indent}  token_bucket: {{ max_tokens: 5, tokens_per_fill: 5, fill_interval: 1s }}"
    );
    Bootstrap::text(text.replacen(&allow, &local, 1))
        .port(RLS_GRPC, rls_port)
        .start()
}

#[test]
fn one_envoy_holds_each_key_to_its_quota_through_a_reload_and_an_outage() {
    let quotas = quota_dir();
    let args = ["--config", path(quotas.path()), "--rlqs-unmatched", "deny"];
    let rls = RlsProcess::start(&args, &["serving"]);
    let rls_port = rls.grpc;
    let envoy = envoy_with_local_fallback(rls_port);
    let port = envoy.port(LISTENER);
    let origin = Instant::now();
    let alice = Load::start(port, ("x-api-key", "alice"), 100.0, origin);
    let bob = Load::start(port, ("x-api-key", "bob"), 50.0, origin);
    let tenant = Load::start(port, ("x-tenant", "acme"), 20.0, origin);

    // Converges: a second with alice's quota, then ten seconds held to it.
    let last_second = |load: &Load, now: f64| load.allowed(now - 1.0, now);
    let converged = wait_until(origin, "alice at 20 a second", 15.0, |now| {
        now >= 1.0 && (18..=22).contains(&last_second(&alice, now))
    });
    std::thread::sleep(Duration::from_secs(10));
    let window = (converged, converged + 10.0);
    let (a, b) = (
        alice.allowed(window.0, window.1),
        bob.allowed(window.0, window.1),
    );
    let denied = tenant.count(429, window.0, window.1);
    let asked = tenant.count(200, window.0, window.1) + denied;
    println!(
        "converged at {converged:.1} s; over 10 s: alice {a}, bob {b}, tenant {denied}/{asked} denied"
    );
    // 20 a second, bursts of 20: at most 220 in 10 s; at least 180 once converged.
    assert!((180..=220).contains(&a), "alice allowed {a} in 10 s");
    assert!(
        (90..=110).contains(&b),
        "bob allowed {b} in 10 s, his own 10 a second"
    );
    assert_eq!(
        denied, asked,
        "an unmatched bucket with --rlqs-unmatched deny"
    );

    // Reload: alice's quota doubles; the new assignment reaches Envoy.
    let edited = QUOTAS.replace("requests_per_unit: 20", "requests_per_unit: 40");
    std::fs::write(quotas.path().join("api.yaml"), edited).expect("edit quotas");
    let written = origin.elapsed().as_secs_f64();
    let reloaded = wait_until(origin, "alice at 40 a second", 10.0, |now| {
        now >= written + 1.0 && (36..=44).contains(&last_second(&alice, now))
    });
    println!(
        "reload: alice at 40 a second {:.1} s after the edit",
        reloaded - written
    );

    // rls gone: the assignment holds for its lifetime, then Envoy's local 5 a second.
    drop(rls);
    let killed = origin.elapsed().as_secs_f64();
    let expired = wait_until(origin, "alice at the fallback's 5 a second", 20.0, |now| {
        if now - killed > 19.0 {
            println!("alice: {}", alice.series(0.0, now));
        }
        now >= killed + 1.0 && last_second(&alice, now) <= 6
    });
    let held = alice.allowed(expired, expired + 2.0);
    assert!(held <= 12, "the fallback allowed {held} in 2 s");
    println!("outage: fallback {:.1} s after rls went", expired - killed);

    // rls back where Envoy expects it: Envoy reopens its stream, assignments resume.
    let addr = format!("127.0.0.1:{rls_port}");
    let _rls = RlsProcess::start_on(&addr, &args, &["serving"]);
    let back = origin.elapsed().as_secs_f64();
    let resumed = wait_until(origin, "alice at 40 a second again", 20.0, |now| {
        now >= back + 1.0 && (36..=44).contains(&last_second(&alice, now))
    });
    println!(
        "back: assignments resumed {:.1} s after rls returned",
        resumed - back
    );
    drop((alice, bob, tenant));
}

#[test]
fn two_envoys_on_two_replicas_split_one_quota_and_one_takes_it_all_when_the_other_stops() {
    let redis = RedisServer::start();
    let quotas = quota_dir();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let args = [
        "--config",
        path(quotas.path()),
        "--backend",
        "redis",
        "--redis-url",
        &url,
    ];
    let replicas = [
        RlsProcess::start(&args, &["serving", "connected"]),
        RlsProcess::start(&args, &["serving", "connected"]),
    ];
    let envoys: Vec<Envoy> = replicas
        .iter()
        .map(|rls| {
            Bootstrap::text(bootstrap())
                .port(RLS_GRPC, rls.grpc)
                .start()
        })
        .collect();
    let origin = Instant::now();
    let mut loads: Vec<Load> = envoys
        .iter()
        .map(|envoy| Load::start(envoy.port(LISTENER), ("x-api-key", "alice"), 50.0, origin))
        .collect();

    let both = |from: f64, to: f64| loads.iter().map(|l| l.allowed(from, to)).sum::<usize>();
    // Both Envoys start with the whole quota (each bucket starts full, and each Envoy's
    // first report is alone): split within a report period or two.
    let split = wait_until(origin, "20 a second over both Envoys", 25.0, |now| {
        now >= 2.0 && (18..=22).contains(&both(now - 2.0, now).div_ceil(2))
    });
    std::thread::sleep(Duration::from_secs(10));
    let (a, b) = (
        loads[0].allowed(split, split + 10.0),
        loads[1].allowed(split, split + 10.0),
    );
    println!("split at {split:.1} s; over 10 s: {a} + {b}");
    // The stated bound: 20 a second, plus a burst (20) per bucket start and per grant
    // change; measured well under it.
    assert!(a + b <= 260 && a + b >= 160, "{a} + {b} allowed in 10 s");
    assert!(a >= 50 && b >= 50, "demand is even: {a} and {b}");

    // One Envoy stops sending: within two report periods the other has the whole quota.
    loads[1].stop();
    let stopped = origin.elapsed().as_secs_f64();
    let grown = wait_until(
        origin,
        "the other Envoy at 20 a second",
        2.0 * REPORT_PERIOD + 7.0,
        |now| now >= stopped + 2.0 && loads[0].allowed(now - 2.0, now) >= 36,
    );
    println!(
        "one stops: the other at the whole quota {:.1} s later",
        grown - stopped
    );
    drop(loads);
}
