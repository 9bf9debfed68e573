//! Failover with real processes: a Redis primary watched by three `redis-sentinel`s, and a
//! Redis Cluster with one replica per primary. Under load, the primary holding the hot
//! bucket is killed, or cut off from the network (its own network namespace, its link
//! taken down), and:
//!
//! - every answer comes within the deadline, from Redis or from the failure mode;
//! - answers come from the new primary again (the time it takes is printed, not asserted);
//! - the total allowed over the run is at most what the quota permits plus what the lost
//!   primary had acknowledged and not replicated, read from the servers themselves.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::failover::{NetNs, ReplicatedCluster, SentinelSet, netns_capability, slot, stored_tat};
use common::redis_options;
use limiter::{Clock, Rate, SystemClock};
use rls::RlsError;
use rls::store::redis::{Endpoint, OnBackendError, RedisStore, TimeSource};
use rls::store::{Batch, BucketStore, Meter};

/// The hot bucket: 200 a second, burst 20 (τ = 100 ms), so tokens keep flowing through
/// the fault and a lost write shows.
fn rate() -> Rate {
    Rate::new(200, Duration::from_secs(1), 20)
}

/// The deadline of every call.
const DEADLINE: Duration = Duration::from_millis(100);

/// How an answer went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Denied,
    /// The failure mode (`error`): UNAVAILABLE.
    Unavailable,
}

#[derive(Clone, Copy, Debug)]
struct Answer {
    at: Instant,
    took: Duration,
    outcome: Outcome,
}

/// The load: `callers` tasks each checking the hot bucket about once a millisecond until
/// `stop`, every answer recorded.
struct Load {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started_unix_ns: u64,
}

impl Load {
    fn start(store: Arc<RedisStore>, callers: usize, identity: &str) -> Load {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let clock = SystemClock::new();
        let started_unix_ns = clock.now();
        let tasks = (0..callers)
            .map(|_| {
                let (store, answers, stop) = (store.clone(), answers.clone(), stop.clone());
                let clock = clock.clone();
                let identity = identity.to_string();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let batch = hot_check(&identity, clock.now());
                        let sent = Instant::now();
                        let outcome = match store.check(&batch, false).await {
                            Ok(verdict) if verdict.denied => Outcome::Denied,
                            Ok(_) => Outcome::Allowed,
                            Err(RlsError::Unavailable(_)) => Outcome::Unavailable,
                            Err(other) => panic!("not the failure mode: {other}"),
                        };
                        let answer = Answer {
                            at: Instant::now(),
                            took: sent.elapsed(),
                            outcome,
                        };
                        answers.lock().expect("answers").push(answer);
                        // Pacing, so that failure answers do not spin: not a wait for time.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        Load {
            answers,
            stop,
            tasks,
            started_unix_ns,
        }
    }

    /// Waits (polling, bounded) until a check sent after `since` was allowed (only Redis
    /// allows: the over-limit cache answers denials alone); how long after `since`.
    async fn first_decision_after(&self, since: Instant) -> Duration {
        for _ in 0..600 {
            let first = (self.answers.lock().expect("answers").iter())
                .filter(|a| a.at - a.took > since && a.outcome == Outcome::Allowed)
                .map(|a| a.at)
                .min();
            if let Some(first) = first {
                return first - since;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no answer from a new primary within 30 s of the fault");
    }

    /// Stops the callers; every answer, and how long the load ran (on the servers' clock,
    /// which is this machine's).
    async fn finish(self) -> (Vec<Answer>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("caller");
        }
        let elapsed = Duration::from_nanos(unix_now() - self.started_unix_ns);
        let answers = std::mem::take(&mut *self.answers.lock().expect("answers"));
        (answers, elapsed)
    }
}

/// A check of the bucket of the descriptor `identity`.
fn hot_check(identity: &str, now: u64) -> Batch {
    common::one_check(identity, Meter::TokenBucket(rate()), 1, now)
}

fn store_on(endpoint: Endpoint) -> (Arc<RedisStore>, String) {
    let mut options = redis_options(vec![endpoint]);
    options.timeout = DEADLINE;
    options.on_error = OnBackendError::Error;
    options.time = TimeSource::Redis;
    let prefix = options.key_prefix.clone();
    (Arc::new(RedisStore::new(options)), prefix)
}

/// Tokens the lost primary had given out that the new one does not know of: how far its
/// last arrival time (`lost_tat`, or at most `fault + τ`, the furthest any bucket's tat can
/// be) is ahead of the replica's at the fault, in tokens, rounded up.
fn unreplicated(lost_tat: Option<u64>, replica_tat: Option<u64>, fault_unix_ns: u64) -> u64 {
    let rate = rate();
    let lost = lost_tat.unwrap_or(fault_unix_ns + rate.tolerance());
    let known = replica_tat
        .unwrap_or(0)
        .max(fault_unix_ns.saturating_sub(rate.tolerance()));
    lost.saturating_sub(known).div_ceil(rate.interval())
}

/// Checks the run's answers and prints its figures.
fn judge(what: &str, answers: &[Answer], elapsed: Duration, failover: Duration, lost: u64) {
    let slow: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.took > DEADLINE + Duration::from_millis(900))
        .collect();
    assert!(
        slow.is_empty(),
        "{what}: {} answers missed the deadline: {:?}",
        slow.len(),
        &slow[..slow.len().min(5)]
    );
    let count = |o: Outcome| answers.iter().filter(|a| a.outcome == o).count() as u64;
    let allowed = count(Outcome::Allowed);
    let rate = rate();
    // The bucket starts full, then refills for the whole run (measured on this machine's
    // clock, which is the servers' clock too).
    let permitted = u64::from(rate.burst()) + (elapsed.as_nanos() as u64).div_ceil(rate.interval());
    println!(
        "{what}: {} answers ({allowed} allowed, {} denied, {} failure mode) over {:.2} s; \
         decisions from the new primary {} ms after the fault; permitted {permitted}, \
         lost primary's unreplicated tokens {lost}",
        answers.len(),
        count(Outcome::Denied),
        count(Outcome::Unavailable),
        elapsed.as_secs_f64(),
        failover.as_millis()
    );
    assert!(
        allowed <= permitted + lost,
        "{what}: allowed {allowed} > permitted {permitted} + unreplicated {lost}"
    );
    assert!(
        count(Outcome::Denied) > 0,
        "{what}: the load never reached the limit"
    );
}

/// Unix ns now.
fn unix_now() -> u64 {
    SystemClock::new().now()
}

async fn sentinel_failover(set: &mut SentinelSet, cut: Option<&NetNs>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("rls=info")
        .try_init();
    let what = if cut.is_some() {
        "sentinel, primary cut off"
    } else {
        "sentinel, primary killed"
    };
    let (store, prefix) = store_on(Endpoint::Sentinel(set.sentinel()));
    store.wait_connected().await;
    let load = Load::start(store.clone(), 4, "hot");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    match cut {
        Some(ns) => ns.cut(),
        None => set.primary.kill(),
    }
    // Once the fault is done: a check sent after it cannot reach the lost primary.
    let fault = Instant::now();
    let fault_unix = unix_now();
    // The replica takes no more writes from the lost primary: what it holds now is all
    // the new primary will know.
    let replica_tat = stored_tat(&set.replica, &prefix);
    let failover = load.first_decision_after(fault).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (answers, elapsed) = load.finish().await;
    // A primary cut off still runs: its last arrival time is read there.
    let lost_tat = cut.and_then(|_| stored_tat(&set.primary, &prefix));
    let lost = unreplicated(lost_tat, replica_tat, fault_unix);
    judge(what, &answers, elapsed, failover, lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_followed_through_the_sentinels() {
    let mut set = SentinelSet::start("127.0.0.1", None, "127.0.0.1");
    sentinel_failover(&mut set, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_cut_off_from_the_network_is_followed_through_the_sentinels() {
    if let Err(reason) = netns_capability() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let ns = NetNs::new();
    let mut set = SentinelSet::start(&ns.inner, Some(&ns.name), &ns.outer);
    sentinel_failover(&mut set, Some(&ns)).await;
    drop(set);
    drop(ns);
}

/// A descriptor whose bucket lives in one of `ranges` of cluster slots (its key's hash
/// tag hashes the descriptor, so the slot is the same for every key prefix).
fn identity_in(ranges: &[(u16, u16)]) -> String {
    (0..10_000)
        .map(|n| format!("hot{n}"))
        .find(|identity| {
            let tag = format!(
                "{{{:016x}}}",
                rls::store::keys::identity_hash(identity.as_bytes())
            );
            let s = slot(tag.as_bytes());
            ranges.iter().any(|&(a, b)| (a..=b).contains(&s))
        })
        .expect("a descriptor in the node's slots")
}

async fn cluster_failover(cluster: &mut ReplicatedCluster, cut: Option<&NetNs>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("rls=info")
        .try_init();
    let what = if cut.is_some() {
        "cluster, primary cut off"
    } else {
        "cluster, primary killed"
    };
    // Node 0 (the one in the namespace, when there is one) holds the hot bucket.
    let identity = identity_in(&cluster.primary_slots(0));
    let (store, prefix) = store_on(Endpoint::Cluster(cluster.urls()));
    store.wait_connected().await;
    let load = Load::start(store.clone(), 4, &identity);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (primary, replica) = cluster.holders(&prefix);
    assert_eq!(primary, 0, "the hot bucket is not on node 0");
    match cut {
        Some(ns) => ns.cut(),
        None => cluster.nodes[primary].kill(),
    }
    let fault = Instant::now();
    let fault_unix = unix_now();
    let replica_tat = stored_tat(&cluster.nodes[replica], &prefix);
    let failover = load.first_decision_after(fault).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (answers, elapsed) = load.finish().await;
    let lost_tat = cut.and_then(|_| stored_tat(&cluster.nodes[primary], &prefix));
    let lost = unreplicated(lost_tat, replica_tat, fault_unix);
    judge(what, &answers, elapsed, failover, lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_primary_is_followed_to_its_promoted_replica() {
    let mut cluster = ReplicatedCluster::start("127.0.0.1", None);
    cluster_failover(&mut cluster, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_cut_off_from_the_network_is_followed_to_its_promoted_replica() {
    if let Err(reason) = netns_capability() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let ns = NetNs::new();
    let mut cluster = ReplicatedCluster::start(&ns.outer, Some((&ns.name, &ns.inner)));
    cluster_failover(&mut cluster, Some(&ns)).await;
    drop(cluster);
    drop(ns);
}
