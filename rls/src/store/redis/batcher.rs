//! `Batcher`: a shard's queue of checks and the loop that sends them to Redis — the checks
//! of concurrent requests ([`Job`]s) gathered into one script call, calls pipelined,
//! jobs that would be answered too late shed ([`RoundTrip`]), replies handed back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use metrics::{Counter, Histogram};
use redis::Script;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::connect::{Connection, Link};
use super::failure::{Cause, Failure, RedisError, client_failure};
use super::health::Health;
use super::script::{CHECK_BUCKETS, check_call, reply_integers};
use super::shard::ShardOptions;
use crate::stats::{REDIS_BATCH_CHECKS, REDIS_CALL_DURATION, REDIS_CALL_ERRORS};

/// One request's part of a script call, waiting in the batcher's queue.
pub struct Job {
    /// Its keys, in check order.
    pub keys: Vec<Vec<u8>>,
    /// Its arguments (the per-request part of `CHECK_BUCKETS`'s ARGV).
    pub args: Vec<Vec<u8>>,
    /// In a cluster, the hash tag every key of the job carries: a script call may touch
    /// one slot only, so only jobs of one tag share a call.
    pub slot: Option<u64>,
    /// When its caller stops waiting.
    pub deadline: Instant,
    /// Where its reply goes: three integers per check.
    pub reply: oneshot::Sender<Result<Vec<i64>, Failure>>,
}

/// What the batcher has sent, shared with its shard.
#[derive(Clone, Default)]
pub struct Counters {
    /// Script calls sent: Redis round trips.
    pub calls: Arc<AtomicU64>,
    /// Checks sent in those calls.
    pub checks: Arc<AtomicU64>,
}

/// A shard's call metrics, labelled with its name once.
struct CallMetrics {
    calls: Counter,
    errors: Counter,
    duration: Histogram,
    checks: Histogram,
}

impl CallMetrics {
    fn new(shard: &str) -> CallMetrics {
        let label = || [("shard", shard.to_owned())];
        CallMetrics {
            calls: metrics::counter!("rls_redis_calls_total", &label()),
            errors: metrics::counter!(REDIS_CALL_ERRORS, &label()),
            duration: metrics::histogram!(REDIS_CALL_DURATION, &label()),
            checks: metrics::histogram!(REDIS_BATCH_CHECKS, &label()),
        }
    }
}

/// A shard's batcher, before it runs.
pub struct Batcher {
    /// Jobs from the shard's callers.
    pub queue: mpsc::Receiver<Job>,
    /// The shard's name, for errors.
    pub name: Arc<str>,
    /// The shard's client.
    pub connection: Connection,
    /// Batching settings.
    pub options: ShardOptions,
    /// The backend deadline.
    pub deadline: Duration,
    /// What it sends, counted.
    pub counters: Counters,
}

impl Batcher {
    /// Collects queued jobs into script calls: up to `batch_max_checks` checks, waiting at
    /// most `batch_window` for more, with at most `pipeline_depth` calls in flight, until
    /// the queue closes.
    ///
    /// A job is sent only while its caller may still get the answer: one whose caller gave
    /// up is dropped, and one with less time left than a fast call has recently taken is
    /// answered [`Failure::Overload`] at once. Sending it would spend Redis's time on an
    /// answer that comes too late and charge buckets for a request answered by the
    /// failure mode; when more requests come than Redis can answer in time, those it can
    /// are answered.
    pub async fn run(self) {
        let Batcher {
            mut queue,
            name,
            connection,
            options,
            deadline,
            counters,
        } = self;
        let script = Script::new(CHECK_BUCKETS);
        let metrics = CallMetrics::new(&name);
        let depth = options.pipeline_depth.get();
        let mut round_trip = RoundTrip::new(deadline);
        // The calls in flight are driven here rather than spawned: no task per batch, and
        // a reply wakes this task only, which hands each caller its answer. Each yields
        // its round trip if it succeeded.
        let mut in_flight = FuturesUnordered::new();
        loop {
            let first = tokio::select! {
                Some(took) = in_flight.next(), if !in_flight.is_empty() => {
                    round_trip.observe(took);
                    continue;
                }
                job = queue.recv(), if in_flight.len() < depth => match job {
                    Some(job) => job,
                    None => break,
                },
            };
            let now = Instant::now();
            let (jobs, checks) = gather(first, &mut queue, &round_trip, &options, now).await;
            if jobs.is_empty() {
                continue;
            }
            let groups = by_slot(jobs);
            counters
                .calls
                .fetch_add(groups.len() as u64, Ordering::Relaxed);
            counters.checks.fetch_add(checks as u64, Ordering::Relaxed);
            let link = connection.link();
            let shard = Target {
                script: &script,
                name: &name,
                health: connection.health(),
                metrics: &metrics,
            };
            for jobs in groups {
                in_flight.push(send(shard, link.clone(), jobs, now));
            }
        }
        while in_flight.next().await.is_some() {}
    }
}

/// The jobs of one script call, starting with `first`, and how many checks they hold.
async fn gather(
    first: Job,
    queue: &mut mpsc::Receiver<Job>,
    round_trip: &RoundTrip,
    options: &ShardOptions,
    now: Instant,
) -> (Vec<Job>, usize) {
    let admit = |job: Job| -> Option<Job> {
        if job.reply.is_closed() {
            return None;
        }
        if round_trip.too_late(now, job.deadline) {
            let _ = job.reply.send(Err(Failure::Overload));
            return None;
        }
        Some(job)
    };
    let mut jobs: Vec<Job> = admit(first).into_iter().collect();
    let mut checks: usize = jobs.iter().map(|j| j.keys.len()).sum();
    let window_end = now + options.batch_window;
    while checks < options.batch_max_checks.get() {
        let next = match queue.try_recv() {
            Ok(job) => Some(job),
            Err(mpsc::error::TryRecvError::Empty) if !options.batch_window.is_zero() => {
                tokio::time::timeout_at(window_end, queue.recv())
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        };
        let Some(job) = next else { break };
        let Some(job) = admit(job) else { continue };
        checks += job.keys.len();
        jobs.push(job);
    }
    (jobs, checks)
}

/// Where a batcher's calls go: the script, and the shard's name, health and metrics.
#[derive(Clone, Copy)]
struct Target<'a> {
    script: &'a Script,
    name: &'a Arc<str>,
    health: &'a Health,
    metrics: &'a CallMetrics,
}

/// Sends one script call for `jobs`, hands each its reply, and tells the shard's health
/// whether Redis answered; yields the round trip if the call succeeded.
async fn send(
    Target {
        script,
        name,
        health,
        metrics,
    }: Target<'_>,
    link: Option<Arc<Link>>,
    jobs: Vec<Job>,
    now: Instant,
) -> Option<Duration> {
    let checks: usize = jobs.iter().map(|j| j.keys.len()).sum();
    metrics.checks.record(checks as f64);
    metrics.calls.increment(1);
    // Dropped when its last caller stops waiting: a command the client parked for a
    // reconnect is cancelled instead of running later on the reconnected server.
    let latest = jobs.iter().map(|j| j.deadline).max().unwrap_or(now);
    let started = Instant::now();
    let result = match link {
        Some(link) => tokio::time::timeout_at(latest, call(script, &link, &jobs, name))
            .await
            .unwrap_or(Err(Failure::Deadline)),
        None => Err(RedisError::new(name, Cause::NotConnected).into()),
    };
    match &result {
        // A malformed reply is still an answer: the shard is reachable.
        Ok(_)
        | Err(Failure::Redis(RedisError {
            cause: Cause::Reply(_),
            ..
        })) => health.answered(),
        Err(failure @ Failure::Deadline) => health.failed(failure, true),
        Err(failure @ Failure::Redis(_)) => health.failed(failure, false),
        Err(Failure::Overload | Failure::InFlight) => {}
    }
    let took = result.is_ok().then(|| started.elapsed());
    match took {
        Some(took) => metrics.duration.record(took.as_secs_f64()),
        None => metrics.errors.increment(1),
    }
    deliver(jobs, result, name);
    took
}

/// How long a successful script call takes when it goes well, which a job must have left
/// before its deadline to be sent: it falls at once to a faster call and rises by a
/// sixteenth of the difference on a slower one, so it follows the fast end of recent
/// calls and sheds only jobs that would surely be late. Capped at half the deadline: a
/// job that has waited less than that is always sent, so a slow spell never stops calls
/// for good and the estimate keeps learning.
struct RoundTrip {
    /// `None` until a call has succeeded.
    fast: Option<Duration>,
    cap: Duration,
}

impl RoundTrip {
    fn new(deadline: Duration) -> RoundTrip {
        RoundTrip {
            fast: None,
            cap: deadline / 2,
        }
    }

    /// Adds a call's round trip (`None`: it failed, and says nothing of Redis's pace).
    fn observe(&mut self, took: Option<Duration>) {
        self.fast = match (self.fast, took) {
            (Some(fast), Some(took)) if took > fast => Some((fast * 15 + took) / 16),
            (_, Some(took)) => Some(took),
            (fast, None) => fast,
        };
    }

    /// True when a job due at `deadline` could not be answered in time if sent `now`.
    fn too_late(&self, now: Instant, deadline: Instant) -> bool {
        let needed = self.fast.unwrap_or_default().min(self.cap);
        deadline <= now || deadline - now < needed
    }
}

/// Splits jobs into the groups that may share a script call: all of them, or in a cluster
/// those of one slot (the jobs of one hot descriptor still share a call).
fn by_slot(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: Vec<(Option<u64>, Vec<Job>)> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|(slot, _)| *slot == job.slot) {
            Some((_, group)) => group.push(job),
            None => groups.push((job.slot, vec![job])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

async fn call(
    script: &Script,
    link: &Link,
    jobs: &[Job],
    shard: &Arc<str>,
) -> Result<Vec<i64>, Failure> {
    let parts = jobs.iter().map(|j| (j.keys.as_slice(), j.args.as_slice()));
    let invocation = check_call(script, parts);
    let value = link
        .invoke(&invocation)
        .await
        .map_err(|e| client_failure(shard, e))?;
    reply_integers(value).map_err(|e| RedisError::new(shard, Cause::Reply(e)).into())
}

/// Hands each job its reply (three integers per check, in order).
fn deliver(jobs: Vec<Job>, result: Result<Vec<i64>, Failure>, shard: &Arc<str>) {
    let expected: usize = jobs.iter().map(|j| 3 * j.keys.len()).sum();
    match result {
        Ok(values) if values.len() == expected => {
            let mut values = values.into_iter();
            for job in jobs {
                let reply = values.by_ref().take(3 * job.keys.len()).collect();
                let _ = job.reply.send(Ok(reply));
            }
        }
        Ok(values) => {
            let wrong = format!("{} reply values for {expected} expected", values.len());
            let error = Failure::from(RedisError::new(shard, Cause::Reply(wrong)));
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::RoundTrip;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_job_is_shed_only_with_less_time_left_than_a_fast_call_takes() {
        let now = Instant::now();
        let mut round_trip = RoundTrip::new(10 * MS);
        // Nothing measured yet: only a job already past its deadline is too late.
        assert!(!round_trip.too_late(now, now + MS / 10));
        assert!(round_trip.too_late(now, now));
        // The first call sets the estimate; a faster one lowers it at once.
        round_trip.observe(Some(3 * MS));
        assert!(round_trip.too_late(now, now + 2 * MS));
        assert!(!round_trip.too_late(now, now + 3 * MS));
        round_trip.observe(Some(2 * MS));
        assert!(round_trip.too_late(now, now + MS + MS / 2));
        assert!(!round_trip.too_late(now, now + 2 * MS));
        // Failed calls say nothing of Redis's pace.
        round_trip.observe(None);
        assert!(!round_trip.too_late(now, now + 2 * MS));
    }

    #[test]
    fn slow_calls_never_shed_a_job_with_half_its_deadline_left() {
        let now = Instant::now();
        let mut round_trip = RoundTrip::new(10 * MS);
        round_trip.observe(Some(MS));
        // One slow call moves the estimate a sixteenth of the way, not all of it.
        round_trip.observe(Some(17 * MS));
        assert!(round_trip.too_late(now, now + 1900 * Duration::from_micros(1)));
        assert!(!round_trip.too_late(now, now + 2 * MS + MS / 10));
        // However slow Redis gets, a job with half its deadline left is sent, so calls
        // go on and the estimate comes down again when Redis does.
        for _ in 0..200 {
            round_trip.observe(Some(50 * MS));
        }
        assert!(round_trip.too_late(now, now + 4 * MS));
        assert!(!round_trip.too_late(now, now + 5 * MS));
        round_trip.observe(Some(MS));
        assert!(!round_trip.too_late(now, now + 2 * MS));
    }
}
