//! `RedisStore`: token buckets and fixed windows in Redis, shared by every replica.
//!
//! One Redis, several servers with client-side sharding, or a Redis Cluster. A request
//! whose buckets share a shard is decided atomically by one script; one spread over
//! shards is charged per shard, folded, and refunded where charged if it is denied. Every
//! call has a deadline; on error or deadline the configured failure mode answers.
//!
//! By concept: `placement.rs` (a check's shard, key and `{hash tag}`: jump hashing),
//! `connect.rs` (endpoints, TLS, opening and keeping the client, names without
//! credentials), `shard.rs` (one endpoint: its connection and its batcher), `batcher.rs`
//! (checks of concurrent requests gathered into script calls, pipelined, late ones shed,
//! replies delivered), `health.rs` (whether a shard answers: a circuit breaker that fails
//! fast while a shard is down, and probes it), `script.rs` (the Lua scripts, their arguments and replies),
//! `cache.rs` (buckets known to be empty, answered locally), `failure.rs` (why Redis gave
//! no answer, and the failure mode that answers instead).

mod batcher;
mod cache;
mod connect;
mod failure;
mod health;
mod placement;
mod script;
mod shard;

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use limiter::{Clock, Decision, Nanos, Rate};
use redis::{ScriptInvocation, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use connect::{CONNECT_TIMEOUT, Endpoint, TlsFiles, redis_url};
pub use failure::{Cause, Failure, OnBackendError, RedisError};
pub use placement::CallGroup;
pub use shard::ShardOptions;

use self::cache::{Lookup, OverLimitCache, Probe};
use self::failure::FailureMode;
use self::placement::Placer;
use self::script::{charge, decode, encode_request};
use self::shard::Shard;
use super::{Batch, BucketStore, Meter, Verdict, request_denied};
use crate::error::RlsError;

/// Whose clock the scripts read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSource {
    /// The Redis server's `TIME`: one clock for every replica (the default).
    Redis,
    /// This process's clock, sent with each call (for clients of a Redis without
    /// `TIME`, and for tests on an injected clock).
    Local,
}

/// Settings of the Redis store.
#[derive(Clone)]
pub struct RedisOptions {
    /// The shards (one entry: a single Redis or one cluster).
    pub endpoints: Vec<Endpoint>,
    /// Prepended to every key.
    pub key_prefix: String,
    /// Deadline of one request's backend work.
    pub timeout: Duration,
    /// What answers when Redis cannot.
    pub on_error: OnBackendError,
    /// How many replicas share each quota, for `OnBackendError::Local`.
    pub replicas: NonZeroU32,
    /// Requests in flight to Redis at once; more are answered by the failure mode at once.
    pub max_in_flight: NonZeroUsize,
    /// Buckets remembered as over their limit (0: off).
    pub over_limit_cache: usize,
    /// Whose clock the scripts read.
    pub time: TimeSource,
    /// Connection and batching.
    pub shard: ShardOptions,
    /// The clock of the batches' `now`, read when a check has waited on the over-limit
    /// cache.
    pub clock: Arc<dyn Clock>,
}

/// The Redis bucket store.
pub struct RedisStore {
    shards: Vec<Shard>,
    placer: Placer,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
    cache: OverLimitCache,
    time: TimeSource,
    failure_mode: FailureMode,
}

/// One script call's part of a request: indices into the batch's checks, and their keys.
#[derive(Default)]
struct Part {
    checks: Vec<usize>,
    keys: Vec<Vec<u8>>,
    known_over: Vec<bool>,
}

/// `decision` for a token bucket as it stands without this check's charge: what a
/// request that took nothing (denied as a whole, or refunded) reports.
fn uncharged(rate: Rate, cost: u32, decision: Decision) -> Decision {
    let ahead = decision.reset_after().saturating_sub(charge(rate, cost));
    rate.decide(0, ahead, 0).0
}

impl RedisStore {
    /// Starts connecting to every shard in the background; the store answers at once,
    /// with the failure mode until a shard is connected.
    pub fn new(options: RedisOptions) -> RedisStore {
        // rustls needs a process-wide crypto provider for rediss://; installing it twice
        // (several stores in one process) fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        register_metrics(options.on_error);
        let placer = Placer::new(options.key_prefix, &options.endpoints);
        let shards = options
            .endpoints
            .into_iter()
            .map(|endpoint| Shard::start(endpoint, options.shard.clone(), options.timeout))
            .collect();
        RedisStore {
            shards,
            placer,
            timeout: options.timeout,
            // A Semaphore holds at most MAX_PERMITS: beyond it the bound is no bound.
            in_flight: Arc::new(Semaphore::new(
                options.max_in_flight.get().min(Semaphore::MAX_PERMITS),
            )),
            cache: OverLimitCache::new(options.over_limit_cache, options.clock),
            time: options.time,
            failure_mode: FailureMode::new(options.on_error, options.replicas),
        }
    }

    /// True when every shard answers (none is down).
    pub fn is_connected(&self) -> bool {
        self.shards.iter().all(Shard::is_up)
    }

    /// Resolves once every shard is up: connected, or answering again.
    pub async fn wait_connected(&self) {
        for shard in &self.shards {
            shard.wait_up().await;
        }
    }

    /// Check-script calls sent so far over all shards (Redis round trips).
    pub fn script_calls(&self) -> u64 {
        self.shards.iter().map(Shard::calls).sum()
    }

    /// Checks sent to Redis so far over all shards (those the cache answered are not).
    pub fn script_checks(&self) -> u64 {
        self.shards.iter().map(Shard::checks).sum()
    }

    /// Where state kept beside the buckets of the descriptor `identity` lives (the RLQS
    /// shares): the script call it may share (its shard; in a cluster, its slot) and its
    /// key: the prefix, the descriptor's `{hash tag}`, the identity, then `suffix`.
    pub fn place_beside(&self, identity: &[u8], suffix: &[u8]) -> (CallGroup, Vec<u8>) {
        let place = self.placer.place(identity);
        let key = [identity, suffix].concat();
        (place.group(), self.placer.key(&key, place.tag))
    }

    /// Runs one script call on the shard of `group`, at once (outside the batcher), within
    /// the backend deadline.
    pub async fn invoke(
        &self,
        group: CallGroup,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<Value, Failure> {
        let shard = &self.shards[group.shard];
        match tokio::time::timeout(self.timeout, shard.invoke(invocation)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(match error.cause {
                Cause::Client(client) => failure::client_failure(&error.shard, client),
                _ => error.into(),
            }),
            Err(_) => Err(Failure::Deadline),
        }
    }

    /// Whose clock the scripts read.
    pub fn time_source(&self) -> TimeSource {
        self.time
    }

    /// Drops stale local state: the over-limit cache and the fallback buckets.
    pub fn sweep(&self, now: Nanos) {
        self.cache.sweep(now);
        self.failure_mode.sweep(now);
        metrics::gauge!("rls_over_limit_cache_keys").set(self.cache.len() as f64);
    }

    fn now_arg(&self, batch: &Batch) -> Option<Nanos> {
        match self.time {
            TimeSource::Redis => None,
            TimeSource::Local => Some(batch.now),
        }
    }

    /// The verdict from Redis, without failure handling; `deadline` is when the caller
    /// stops waiting.
    async fn check_redis(&self, batch: &Batch, deadline: Instant) -> Result<Verdict, Failure> {
        let spread = self.placer.spreads();
        let windows = batch
            .checks
            .iter()
            .any(|c| matches!(c.meter, Meter::FixedWindow { .. }));
        if !(batch.stop_increment && spread && windows) {
            return self.check_parts(batch, deadline).await;
        }
        // Stop-increment mode must see every window of the request, which shards split:
        // read them all first (cost 0 only reads), then count only the windows that go
        // over if any does.
        let mut peek = batch.clone();
        peek.stop_increment = false;
        peek.checks.iter_mut().for_each(|c| c.cost = 0);
        let counts = self.check_parts(&peek, deadline).await?.decisions;
        let over: Vec<bool> = batch
            .checks
            .iter()
            .zip(&counts)
            .map(|(check, now)| {
                matches!(check.meter, Meter::FixedWindow { .. })
                    && (!now.is_allowed() || now.remaining() < check.cost)
            })
            .collect();
        let mut real = batch.clone();
        real.stop_increment = false;
        if over.iter().any(|&o| o) {
            for (check, &over) in real.checks.iter_mut().zip(&over) {
                if matches!(check.meter, Meter::FixedWindow { .. }) && !over {
                    check.cost = 0;
                }
            }
        }
        self.check_parts(&real, deadline).await
    }

    /// The verdict from Redis for a batch whose stop-increment needs no peek.
    async fn check_parts(&self, batch: &Batch, deadline: Instant) -> Result<Verdict, Failure> {
        let (mut decisions, probes) = self.consult_cache(batch).await;
        let cached: Vec<usize> = (decisions.iter().enumerate())
            .filter_map(|(i, known)| known.is_some().then_some(i))
            .collect();
        // One script call per shard; in a cluster per slot (descriptor), the keys one
        // script may touch.
        let mut parts: BTreeMap<CallGroup, Part> = BTreeMap::new();
        for (i, (check, known)) in batch.checks.iter().zip(&decisions).enumerate() {
            let place = self.placer.place(batch.identity(check));
            let part = parts.entry(place.group()).or_default();
            part.checks.push(i);
            part.keys.push(self.placer.key(batch.key(check), place.tag));
            part.known_over.push(known.is_some());
        }
        // Answered entirely from the cache: no Redis call at all.
        if decisions.iter().all(Option::is_some) {
            let decisions = decisions.into_iter().flatten().collect();
            return Ok(Verdict {
                cached,
                ..Verdict::of(batch, decisions)
            });
        }
        let fold = parts.len() == 1;
        let now = self.now_arg(batch);
        let calls = parts.iter_mut().map(|(group, part)| {
            let mut args = Vec::with_capacity(1 + part.checks.len());
            encode_request(batch, now, &part.checks, &part.known_over, fold, &mut args);
            let keys = std::mem::take(&mut part.keys);
            self.shards[group.shard].check(keys, args, group.slot, deadline)
        });
        let replies = join_all(calls).await;
        let mut charged: Vec<usize> = Vec::new();
        for ((group, part), reply) in parts.iter().zip(replies) {
            let reply = reply?;
            let malformed = |why: String| self.shards[group.shard].error(Cause::Reply(why));
            let mut values = reply.chunks_exact(3);
            for (n, &i) in part.checks.iter().enumerate() {
                let Some(&[first, second, third]) = values.next() else {
                    return Err(malformed(format!("short script reply {reply:?}")).into());
                };
                if part.known_over[n] {
                    continue;
                }
                let check = &batch.checks[i];
                let mut decision = decode(check, [first, second, third]).map_err(malformed)?;
                if let Meter::TokenBucket(rate) = check.meter {
                    if third == 1 {
                        charged.push(i);
                    } else if decision.is_allowed() && check.cost > 0 {
                        // Allowed alone, but the script's fold denied the request: nothing
                        // was taken, so report the bucket as it stands.
                        decision = uncharged(rate, check.cost, decision);
                    }
                }
                self.cache
                    .remember(batch.key(check), check, &decision, batch.now);
                decisions[i] = Some(decision);
            }
        }
        // Remembered: the checks that waited for these answers may look again.
        drop(probes);
        let mut decisions: Vec<Decision> = decisions.into_iter().flatten().collect();
        // One script call folded the request itself; across calls it is folded here.
        let denied = request_denied(batch, &decisions);
        if !fold && denied && !charged.is_empty() {
            self.refund(batch, &charged, &mut decisions).await?;
        }
        Ok(Verdict {
            decisions,
            denied,
            cached,
        })
    }

    /// What the over-limit cache answers for each check of `batch` (`None`: ask Redis),
    /// and the probes this request holds for buckets others wait on.
    ///
    /// A check whose bucket another request is asking Redis about waits for that answer
    /// once, then every check looks again at a time after it. The request first lets go of
    /// its own probes: two requests must never wait for each other.
    async fn consult_cache(&self, batch: &Batch) -> (Vec<Option<Decision>>, Vec<Probe>) {
        let mut decisions = vec![None; batch.checks.len()];
        let mut probes = Vec::new();
        let mut waits = Vec::new();
        let mut now = batch.now;
        for may_wait in [true, false] {
            for (check, slot) in batch.checks.iter().zip(decisions.iter_mut()) {
                match self.cache.lookup(batch.key(check), check, now, may_wait) {
                    Lookup::Denied(decision) => *slot = Some(decision),
                    Lookup::Wait(probe) => waits.push(probe),
                    Lookup::Ask(probe) => probes.extend(probe),
                }
            }
            if waits.is_empty() {
                break;
            }
            probes.clear();
            metrics::counter!("rls_over_limit_cache_waits_total").increment(waits.len() as u64);
            for mut probe in waits.drain(..) {
                // Closed when the probe is done: its answer is remembered, or it gave up.
                let _ = probe.changed().await;
            }
            now = self.cache.after_wait(batch.now);
            decisions.iter_mut().for_each(|slot| *slot = None);
        }
        let hits = decisions.iter().filter(|d| d.is_some()).count();
        metrics::counter!("rls_over_limit_cache_hits_total").increment(hits as u64);
        (decisions, probes)
    }

    /// Gives back, shard by shard, what a request denied across shards took, and reports
    /// those buckets as they are after the refund.
    async fn refund(
        &self,
        batch: &Batch,
        charged: &[usize],
        decisions: &mut [Decision],
    ) -> Result<(), RedisError> {
        self.give_back(batch, charged).await?;
        for &i in charged {
            let check = &batch.checks[i];
            if let Meter::TokenBucket(rate) = check.meter {
                decisions[i] = uncharged(rate, check.cost, decisions[i]);
            }
        }
        Ok(())
    }

    /// Gives back what the token-bucket checks `checks` of `batch` took (each bucket's tat
    /// moves back by `cost × T`, never before now).
    pub async fn give_back(&self, batch: &Batch, checks: &[usize]) -> Result<(), RedisError> {
        let now = self.now_arg(batch);
        // One script call per group: [(key, charge)].
        type Refunds = Vec<(Vec<u8>, Nanos)>;
        let mut groups: BTreeMap<CallGroup, Refunds> = BTreeMap::new();
        for &i in checks {
            let check = &batch.checks[i];
            let Meter::TokenBucket(rate) = check.meter else {
                continue;
            };
            self.cache.forget(batch.key(check));
            let place = self.placer.place(batch.identity(check));
            let key = self.placer.key(batch.key(check), place.tag);
            let group = groups.entry(place.group()).or_default();
            group.push((key, charge(rate, check.cost)));
        }
        let calls = groups
            .into_iter()
            .map(|(group, refunds)| self.shards[group.shard].refund(now, refunds));
        join_all(calls).await.into_iter().collect()
    }
}

/// Registers the store's counters at zero, so that dashboards and alerts see them before
/// the first failure.
fn register_metrics(on_error: OnBackendError) {
    // The shards register theirs too: the recorder comes first.
    let _ = crate::stats::prometheus();
    for kind in Failure::COUNTED_KINDS {
        metrics::counter!("rls_backend_errors_total", "kind" => kind).increment(0);
    }
    metrics::counter!("rls_backend_failures_total", "mode" => on_error.label()).increment(0);
    metrics::counter!("rls_over_limit_cache_hits_total").increment(0);
    metrics::counter!("rls_over_limit_cache_waits_total").increment(0);
    metrics::gauge!("rls_over_limit_cache_keys").set(0.0);
}

impl BucketStore for RedisStore {
    async fn check(&self, batch: &Batch, shed: bool) -> Result<Verdict, RlsError> {
        let failure = if shed {
            Failure::Overload
        } else {
            // No queue beyond the bound: callers past it get the failure mode at once.
            let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
                return self.failure_mode.answer(batch, Failure::InFlight);
            };
            let deadline = Instant::now() + self.timeout;
            match tokio::time::timeout_at(deadline, self.check_redis(batch, deadline)).await {
                Ok(Ok(verdict)) => return Ok(verdict),
                Ok(Err(failure)) => failure,
                Err(_) => Failure::Deadline,
            }
        };
        metrics::counter!("rls_backend_errors_total", "kind" => failure.kind()).increment(1);
        self.failure_mode.answer(batch, failure)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn deadline(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    /// Ready while some shard answers, or, with a failure mode that answers by itself
    /// (`allow`, `deny`, `local`), always: the replica then answers every request as
    /// configured, and taking it out of service would hand the decision to the proxy's
    /// own failure mode instead. With some shards down a replica stays ready: requests for
    /// the others are answered, and every replica shares the same shards.
    fn is_ready(&self) -> bool {
        self.failure_mode.answers_alone() || self.shards.iter().any(Shard::is_up)
    }

    fn sweep(&self, now: Nanos) {
        RedisStore::sweep(self, now);
    }
}
