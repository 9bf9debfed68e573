//! `RedisStore`: token buckets and fixed windows in Redis, shared by every replica.
//!
//! One Redis, several servers with client-side sharding (jump consistent hashing of the
//! descriptor, so adding a server moves about 1/N of the keys), or a Redis Cluster (a
//! `{hash tag}` per descriptor keeps all its limits in one slot). A request whose
//! buckets share a shard is decided atomically by one script; one spread over shards is
//! charged per shard, folded, and refunded where charged if it is denied. Every call has
//! a deadline; on error or deadline the configured failure mode answers.

mod cache;
mod failure;
mod script;
mod shard;

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use limiter::{Clock, Decision, Nanos, Rate};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use failure::{Cause, Failure, RedisError};
pub use shard::{CONNECT_TIMEOUT, Endpoint, ShardOptions, TlsFiles, redis_url};

use self::cache::{Lookup, OverLimitCache, Probe};
use self::script::{charge, decode, encode_request};
use self::shard::Shard;
use super::{Batch, BucketStore, MemoryStore, Meter, request_denied};
use crate::error::RlsError;

/// What to answer when Redis fails or misses the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnBackendError {
    /// `UNAVAILABLE`: the proxy's `failure_mode_deny` decides (Envoy's default: allow).
    Error,
    /// Every descriptor OK.
    Allow,
    /// Every descriptor over its limit.
    Deny,
    /// This replica's share of each quota, in process (`quota / replicas`).
    Local,
}

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
    cluster: bool,
    prefix: Vec<u8>,
    timeout: Duration,
    on_error: OnBackendError,
    replicas: NonZeroU32,
    in_flight: Arc<Semaphore>,
    cache: OverLimitCache,
    time: TimeSource,
    local: MemoryStore,
}

/// One shard's part of a request: indices into the batch's checks, and their keys.
#[derive(Default)]
struct Part {
    checks: Vec<usize>,
    keys: Vec<Vec<u8>>,
    known_over: Vec<bool>,
}

/// Where a check goes; see [`RedisStore::placement`].
struct Placement {
    group: u64,
    shard: usize,
    tag: u64,
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
        let cluster = matches!(options.endpoints.as_slice(), [one] if one.is_cluster());
        let shards = options
            .endpoints
            .into_iter()
            .map(|endpoint| Shard::start(endpoint, options.shard.clone(), options.timeout))
            .collect();
        RedisStore {
            shards,
            cluster,
            prefix: options.key_prefix.into_bytes(),
            timeout: options.timeout,
            on_error: options.on_error,
            replicas: options.replicas,
            // A Semaphore holds at most MAX_PERMITS: beyond it the bound is no bound.
            in_flight: Arc::new(Semaphore::new(
                options.max_in_flight.get().min(Semaphore::MAX_PERMITS),
            )),
            cache: OverLimitCache::new(options.over_limit_cache, options.clock),
            time: options.time,
            local: MemoryStore::new(),
        }
    }

    /// True when every shard is connected.
    pub fn is_connected(&self) -> bool {
        self.shards.iter().all(Shard::is_connected)
    }

    /// Resolves once every shard has connected for the first time.
    pub async fn wait_connected(&self) {
        for shard in &self.shards {
            shard.wait_connected().await;
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

    /// PINGs every shard.
    pub async fn ping(&self) -> Result<(), RedisError> {
        for shard in &self.shards {
            shard.ping().await?;
        }
        Ok(())
    }

    /// Drops stale local state: the over-limit cache and the fallback buckets.
    pub fn sweep(&self, now: Nanos) {
        self.cache.sweep(now);
        self.local.sweep(now);
        metrics::gauge!("rls_over_limit_cache_keys").set(self.cache.len() as f64);
    }

    /// Where check `index` goes, from one hash of its descriptor: the group of checks
    /// that may share a script call (a shard; in a cluster, the descriptor's slot, since
    /// a script may only touch one), the shard, and the key's hash tag.
    fn placement(&self, batch: &Batch, index: usize) -> Placement {
        let tag = crate::keys::identity_hash(batch.identity(&batch.checks[index]));
        let shard = if self.shards.len() <= 1 {
            0
        } else {
            jump(tag, self.shards.len())
        };
        let group = if self.cluster { tag } else { shard as u64 };
        Placement { group, shard, tag }
    }

    /// The Redis key of a check: prefix, `{hash tag}`, then the binary key.
    fn redis_key(&self, batch: &Batch, index: usize, tag: u64) -> Vec<u8> {
        let key = batch.key(&batch.checks[index]);
        let mut out = Vec::with_capacity(self.prefix.len() + 18 + key.len());
        out.extend_from_slice(&self.prefix);
        // `{` sixteen hex digits `}`: written by hand, this runs for every check.
        out.push(b'{');
        out.extend(
            (0..16)
                .rev()
                .map(|nibble| b"0123456789abcdef"[((tag >> (nibble * 4)) & 0xf) as usize]),
        );
        out.push(b'}');
        out.extend_from_slice(key);
        out
    }

    fn now_arg(&self, batch: &Batch) -> Option<Nanos> {
        match self.time {
            TimeSource::Redis => None,
            TimeSource::Local => Some(batch.now),
        }
    }

    /// The decisions from Redis, without failure handling; `deadline` is when the caller
    /// stops waiting.
    async fn check_redis(
        &self,
        batch: &Batch,
        deadline: Instant,
    ) -> Result<Vec<Decision>, Failure> {
        let spread = self.shards.len() > 1 || self.cluster;
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
        let counts = self.check_parts(&peek, deadline).await?;
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

    /// The decisions from Redis for a batch whose stop-increment needs no peek.
    async fn check_parts(
        &self,
        batch: &Batch,
        deadline: Instant,
    ) -> Result<Vec<Decision>, Failure> {
        let (mut decisions, probes) = self.consult_cache(batch).await;
        // Group by shard; in a cluster a script may only touch one slot, so group by
        // descriptor identity there (one hash tag each).
        let mut parts: BTreeMap<u64, (usize, Part)> = BTreeMap::new();
        for (i, slot) in decisions.iter().enumerate() {
            let known = *slot;
            let place = self.placement(batch, i);
            let part = &mut parts
                .entry(place.group)
                .or_insert_with(|| (place.shard, Part::default()))
                .1;
            part.checks.push(i);
            part.keys.push(self.redis_key(batch, i, place.tag));
            part.known_over.push(known.is_some());
        }
        // Answered entirely from the cache: no Redis call at all.
        if decisions.iter().all(Option::is_some) {
            return Ok(decisions.into_iter().flatten().collect());
        }
        let fold = parts.len() == 1;
        let now = self.now_arg(batch);
        let calls = parts.values_mut().map(|(shard, part)| {
            let mut args = Vec::with_capacity(1 + part.checks.len());
            encode_request(batch, now, &part.checks, &part.known_over, fold, &mut args);
            self.shards[*shard].check(std::mem::take(&mut part.keys), args, deadline)
        });
        let replies = join_all(calls).await;
        let mut charged: Vec<usize> = Vec::new();
        for ((shard, part), reply) in parts.values().zip(replies) {
            let reply = reply?;
            let malformed = |why: String| self.shards[*shard].error(Cause::Reply(why));
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
        if !fold && request_denied(batch, &decisions) && !charged.is_empty() {
            self.refund(batch, &charged, &mut decisions).await?;
        }
        Ok(decisions)
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
        // Group -> (shard, [(key, charge)]).
        type Refunds = Vec<(Vec<u8>, u64)>;
        let mut groups: BTreeMap<u64, (usize, Refunds)> = BTreeMap::new();
        for &i in checks {
            let check = &batch.checks[i];
            let Meter::TokenBucket(rate) = check.meter else {
                continue;
            };
            self.cache.forget(batch.key(check));
            let place = self.placement(batch, i);
            let entry = groups
                .entry(place.group)
                .or_insert_with(|| (place.shard, Vec::new()));
            entry.1.push((
                self.redis_key(batch, i, place.tag),
                charge(rate, check.cost),
            ));
        }
        let calls = groups
            .into_values()
            .map(|(shard, keys)| self.shards[shard].refund(now, keys));
        join_all(calls).await.into_iter().collect()
    }

    /// The failure mode's answer for `batch`.
    fn fail(&self, batch: &Batch, failure: Failure) -> Result<Vec<Decision>, RlsError> {
        metrics::counter!("rls_backend_failures_total", "mode" => mode_name(self.on_error))
            .increment(1);
        tracing::debug!(
            %failure,
            transient = failure.is_transient(),
            "backend failed; answering with the failure mode"
        );
        Ok(match self.on_error {
            OnBackendError::Error => return Err(RlsError::Unavailable(failure)),
            OnBackendError::Allow => batch
                .checks
                .iter()
                .map(|c| Decision::Allowed {
                    remaining: match c.meter {
                        Meter::TokenBucket(rate) => rate.burst(),
                        Meter::FixedWindow { limit, .. } => limit,
                    },
                    reset_after: 0,
                })
                .collect(),
            OnBackendError::Deny => batch
                .checks
                .iter()
                .map(|_| Decision::Denied {
                    retry_after: 1_000_000_000,
                    reset_after: 1_000_000_000,
                })
                .collect(),
            OnBackendError::Local => {
                let mut share = batch.clone();
                for check in &mut share.checks {
                    check.meter = match check.meter {
                        Meter::TokenBucket(rate) => {
                            Meter::TokenBucket(rate.share(self.replicas.get()))
                        }
                        Meter::FixedWindow { period_secs, limit } => Meter::FixedWindow {
                            period_secs,
                            limit: limit.div_ceil(self.replicas.get()),
                        },
                    };
                }
                self.local.check_now(&share)
            }
        })
    }
}

impl BucketStore for RedisStore {
    async fn check(&self, batch: &Batch) -> Result<Vec<Decision>, RlsError> {
        let failure = if batch.shed {
            Failure::Overload
        } else {
            // No queue beyond the bound: callers past it get the failure mode at once.
            let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
                return self.fail(batch, Failure::InFlight);
            };
            let deadline = Instant::now() + self.timeout;
            match tokio::time::timeout_at(deadline, self.check_redis(batch, deadline)).await {
                Ok(Ok(decisions)) => return Ok(decisions),
                Ok(Err(failure)) => failure,
                Err(_) => Failure::Deadline,
            }
        };
        metrics::counter!("rls_backend_errors_total", "kind" => failure.kind()).increment(1);
        self.fail(batch, failure)
    }

    fn is_ready(&self) -> bool {
        self.is_connected()
    }

    fn sweep(&self, now: Nanos) {
        RedisStore::sweep(self, now);
    }
}

fn mode_name(mode: OnBackendError) -> &'static str {
    match mode {
        OnBackendError::Error => "error",
        OnBackendError::Allow => "allow",
        OnBackendError::Deny => "deny",
        OnBackendError::Local => "local",
    }
}

/// Jump consistent hashing (Lamping and Veach): the shard of `key` among `shards`, such
/// that going from N to N+1 shards moves only about 1/(N+1) of the keys.
pub fn jump(mut key: u64, shards: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < shards as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

#[cfg(test)]
mod tests {
    use super::jump;

    #[test]
    fn jump_hashing_moves_about_one_key_in_n_when_a_shard_is_added() {
        let keys = 100_000u64;
        let hashes = (0..keys).map(|k| crate::keys::identity_hash(&k.to_le_bytes()));
        let moved = hashes.filter(|&h| jump(h, 3) != jump(h, 4)).count() as f64;
        // Ideal: a quarter. Jump hashing never moves a key between old shards.
        assert!((moved / keys as f64 - 0.25).abs() < 0.01, "moved {moved}");
        for k in 0..1000u64 {
            let h = crate::keys::identity_hash(&k.to_le_bytes());
            let (a, b) = (jump(h, 3), jump(h, 4));
            assert!(a == b || b == 3, "a key moved between old shards");
        }
    }
}
