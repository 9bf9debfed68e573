//! `Leasing`: the leases of one store and the calls that fill and empty them — grants
//! sent in the background when a hot bucket's lease runs low, hand-backs of unused
//! tokens (a span after the last grant, at reload and at shutdown) — and the path of a
//! request on a store that leases: from leases alone when it can, else its other checks
//! from Redis, all-or-nothing as ever.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use limiter::{Clock, Decision, Nanos};
use redis::Script;
use tokio::time::Instant;

use super::cache::OverLimitCache;
use super::failure::{Cause, Failure};
use super::lease::{HandBack, Leases, Plan, Want, has_quota_mode};
use super::lease_script::{RETURN_HITS, TAKE_LEASES, decode_taken, return_call, take_call};
use super::placement::CallGroup;
use super::shard::Shard;
use super::{RedisStore, TimeSource, uncharged};
use crate::store::{Batch, Meter, Verdict, request_denied};

/// Leases and what they need to reach Redis, shared with the background tasks.
pub struct Leasing {
    /// The leases.
    pub leases: Leases,
    shards: Arc<Vec<Shard>>,
    cache: Arc<OverLimitCache>,
    clock: Arc<dyn Clock>,
    time: TimeSource,
    deadline: Duration,
    take: Script,
    give: Script,
}

impl Leasing {
    /// Leasing over `shards`; hands back unused leases every span until the store goes.
    pub fn start(
        leases: Leases,
        shards: Arc<Vec<Shard>>,
        cache: Arc<OverLimitCache>,
        clock: Arc<dyn Clock>,
        time: TimeSource,
        deadline: Duration,
    ) -> Arc<Leasing> {
        let span = leases.options.span.max(Duration::from_millis(1));
        let leasing = Arc::new(Leasing {
            leases,
            shards,
            cache,
            clock,
            time,
            deadline,
            take: Script::new(TAKE_LEASES),
            give: Script::new(RETURN_HITS),
        });
        let weak = Arc::downgrade(&leasing);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(span);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(leasing) = weak.upgrade() else {
                    return;
                };
                let backs = leasing.leases.expired(leasing.clock.now(), false);
                if !backs.is_empty() {
                    let _ = leasing.hand_back(backs).await;
                }
            }
        });
        leasing
    }

    fn now_arg(&self, now: Nanos) -> Option<Nanos> {
        match self.time {
            TimeSource::Redis => None,
            TimeSource::Local => Some(now),
        }
    }

    /// Hands `backs` back to Redis, shard by shard; then each lease may be granted again.
    pub async fn hand_back(&self, backs: Vec<HandBack>) -> Result<(), Failure> {
        let now = self.now_arg(self.clock.now());
        let mut groups: BTreeMap<CallGroup, Vec<&HandBack>> = BTreeMap::new();
        for back in &backs {
            // Redis's state moves back: what the cache remembered is no longer a bound.
            self.cache.forget(&back.name);
            groups.entry(back.group).or_default().push(back);
        }
        let calls = groups.into_iter().map(|(group, backs)| async move {
            let shard = &self.shards[group.shard];
            let mut buckets = Vec::new();
            let mut hits = Vec::new();
            for back in backs {
                match back.meter {
                    Meter::TokenBucket(rate) => buckets.push((
                        back.key.clone(),
                        back.tokens.saturating_mul(rate.interval()),
                    )),
                    Meter::FixedWindow { .. } => hits.push((back.key.clone(), back.tokens)),
                }
            }
            if !buckets.is_empty() {
                self.count_call(shard);
                shard.refund(now, buckets).await?;
            }
            if !hits.is_empty() {
                self.count_call(shard);
                shard.invoke(&return_call(&self.give, &hits)).await?;
            }
            Ok::<(), Failure>(())
        });
        let within = tokio::time::timeout(self.deadline, join_all(calls)).await;
        // Dropping the hand-backs marks their leases free again, given back or not (a
        // hand-back lost with Redis leaves those tokens unused: never more than the quota).
        drop(backs);
        match within {
            Ok(results) => results.into_iter().collect(),
            Err(_) => Err(Failure::Deadline),
        }
    }

    fn count_call(&self, shard: &Shard) {
        self.leases.calls.fetch_add(1, Ordering::Relaxed);
        let label = || [("shard", shard.name().to_string())];
        metrics::counter!("rls_redis_calls_total", &label()).increment(1);
        metrics::counter!("rls_lease_calls_total", &label()).increment(1);
    }

    /// Asks for `wants` in the background, one call per shard (or slot); each lease is
    /// busy until its grant lands.
    pub fn grant(self: &Arc<Self>, wants: Vec<Want>) {
        if wants.is_empty() {
            return;
        }
        let mut groups: BTreeMap<CallGroup, Vec<Want>> = BTreeMap::new();
        for want in wants {
            groups.entry(want.group).or_default().push(want);
        }
        for (group, wants) in groups {
            let leasing = self.clone();
            tokio::spawn(async move {
                let sent = leasing.clock.now();
                let asked: Vec<(Vec<u8>, Meter, u64)> = wants
                    .iter()
                    .map(|w| (w.redis_key.clone(), w.meter, w.tokens))
                    .collect();
                let meters: Vec<Meter> = asked.iter().map(|a| a.1).collect();
                let shard = &leasing.shards[group.shard];
                leasing.count_call(shard);
                let invocation = take_call(&leasing.take, leasing.now_arg(sent), &asked);
                let reply = tokio::time::timeout(leasing.deadline, shard.invoke(&invocation)).await;
                match reply.map(|r| r.map(|v| decode_taken(v, &meters))) {
                    Ok(Ok(Ok(taken))) => {
                        for (want, taken) in wants.iter().zip(taken) {
                            leasing.leases.land(&want.key, sent, taken);
                        }
                    }
                    Ok(Ok(Err(malformed))) => {
                        tracing::warn!(error = %shard.error(Cause::Reply(malformed)), "lease refused")
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "lease not taken"),
                    Err(_) => tracing::debug!("lease not taken in time"),
                }
                // `wants` dropped here: the leases are free again.
            });
        }
    }

    /// Hands back every lease (reload, shutdown), once the grants in flight have landed
    /// (waited for at most the deadline): a grant landing later would park its tokens
    /// here until they are next handed back, for good at shutdown.
    pub async fn release(&self) {
        let waits = self
            .leases
            .in_flight()
            .into_iter()
            .map(|mut busy| async move {
                let _ = busy.changed().await;
            });
        let _ = tokio::time::timeout(self.deadline, join_all(waits)).await;
        let backs = self.leases.expired(self.clock.now(), true);
        if let Err(error) = self.hand_back(backs).await {
            tracing::warn!(%error, "leases not handed back");
        }
    }
}

/// `batch` with only the checks `keep` (indices into its checks).
fn sub_batch(batch: &Batch, keep: &[usize]) -> Batch {
    Batch {
        now: batch.now,
        keys: batch.keys.clone(),
        checks: keep.iter().map(|&i| batch.checks[i].clone()).collect(),
        global_shadow: batch.global_shadow,
        stop_increment: batch.stop_increment,
    }
}

impl RedisStore {
    /// Script calls sent so far over all shards (Redis round trips): checks, and leases
    /// taken or handed back.
    pub fn script_calls(&self) -> u64 {
        let leases = self.leasing.as_ref();
        let leases = leases.map_or(0, |l| l.leases.calls.load(Ordering::Relaxed));
        self.shards.iter().map(Shard::calls).sum::<u64>() + leases
    }

    /// The largest lease held so far, in tokens (0 when not leasing).
    pub fn largest_lease(&self) -> u64 {
        self.leasing.as_ref().map_or(0, |l| l.leases.largest())
    }

    /// Tokens the leases hold now, not yet given out (0 when not leasing).
    pub fn leased_tokens(&self) -> u64 {
        self.leasing.as_ref().map_or(0, |l| l.leases.held())
    }

    /// The verdict from leases alone, when every check of `batch` has a live lease with
    /// enough tokens; grants are asked for leases that run low. No I/O.
    pub(super) fn serve_leased(&self, batch: &Batch) -> Option<Verdict> {
        let leasing = self.leasing.as_ref()?;
        let (decisions, wants) = leasing.leases.serve_all(batch, &self.placer)?;
        leasing.grant(wants);
        Some(Verdict::of(batch, decisions))
    }

    /// The plan for `batch` once nothing it needs is in flight: leases it cannot use are
    /// handed back first, so that Redis answers as if they had never been taken.
    async fn settle(&self, leasing: &Leasing, batch: &Batch) -> Result<Plan, Failure> {
        let make = |may_wait: bool| {
            if has_quota_mode(batch) {
                // All descriptors together or none: Redis decides them all.
                let (hand_back, wait) = leasing.leases.take_all(batch);
                Plan {
                    served: vec![None; batch.checks.len()],
                    hand_back,
                    wait: if may_wait { wait } else { Vec::new() },
                }
            } else {
                leasing.leases.plan(batch, may_wait)
            }
        };
        // Waits once at most: then Redis answers whatever is still in flight.
        for may_wait in [true, false] {
            let mut plan = make(may_wait);
            let backs = std::mem::take(&mut plan.hand_back);
            if plan.wait.is_empty() {
                if let Err(failure) = leasing.hand_back(backs).await {
                    leasing.leases.undo(batch, &plan.served, |_| true);
                    return Err(failure);
                }
                return Ok(plan);
            }
            leasing.leases.undo(batch, &plan.served, |_| true);
            leasing.hand_back(backs).await?;
            // Closed when the grant or hand-back in flight is done; a grant slower than half
            // the deadline is not waited for: Redis answers the check instead.
            let waits = plan.wait.into_iter().map(|mut busy| async move {
                let _ = busy.changed().await;
            });
            let _ = tokio::time::timeout(leasing.deadline / 2, join_all(waits)).await;
        }
        unreachable!("the second plan never waits")
    }

    /// The verdict on `batch` on a store that leases: checks with leases are answered from
    /// them, the others from Redis; a request denied takes no token from any bucket.
    pub(super) async fn check_leased(
        &self,
        leasing: &Arc<Leasing>,
        batch: &Batch,
        deadline: Instant,
    ) -> Result<Verdict, Failure> {
        let plan = self.settle(leasing, batch).await?;
        let rest: Vec<usize> = (0..batch.checks.len())
            .filter(|&i| plan.served[i].is_none())
            .collect();
        let mut decisions: Vec<Decision> = Vec::with_capacity(batch.checks.len());
        // Checks the over-limit cache answered (a lease's answers are not the cache's).
        let mut cached = Vec::new();
        if rest.is_empty() {
            decisions.extend(plan.served.iter().flatten());
        } else {
            let from_redis = match self.check_redis(&sub_batch(batch, &rest), deadline).await {
                Ok(verdict) => {
                    cached.extend(verdict.cached.iter().map(|&i| rest[i]));
                    verdict.decisions
                }
                Err(failure) => {
                    leasing.leases.undo(batch, &plan.served, |_| true);
                    return Err(failure);
                }
            };
            let mut from_redis = from_redis.into_iter();
            for served in &plan.served {
                match served {
                    Some(decision) => decisions.push(*decision),
                    None => decisions.push(from_redis.next().ok_or(Failure::Deadline)?),
                }
            }
        }
        let denied = request_denied(batch, &decisions);
        if denied {
            // Token buckets give their tokens back to the leases; windows count every hit.
            let bucket = |c: &crate::store::Check| matches!(c.meter, Meter::TokenBucket(_));
            leasing.leases.undo(batch, &plan.served, bucket);
            for (i, check) in batch.checks.iter().enumerate() {
                if let (Some(_), Meter::TokenBucket(rate)) = (plan.served[i], check.meter) {
                    decisions[i] = uncharged(rate, check.cost, decisions[i]);
                }
            }
        }
        let allowed: Vec<bool> = decisions
            .iter()
            .map(|d| !denied && d.is_allowed())
            .collect();
        leasing.grant(leasing.leases.wants(batch, &allowed));
        Ok(Verdict {
            decisions,
            denied,
            cached,
        })
    }
}

/// Builds the store's leasing, when it leases.
pub fn leasing_for(
    options: Option<super::lease::LeaseOptions>,
    shards: &Arc<Vec<Shard>>,
    cache: &Arc<OverLimitCache>,
    clock: Arc<dyn Clock>,
    time: TimeSource,
    deadline: Duration,
) -> Option<Arc<Leasing>> {
    let options = options?;
    Some(Leasing::start(
        Leases::new(options),
        shards.clone(),
        cache.clone(),
        clock,
        time,
        deadline,
    ))
}

impl RedisStore {
    /// Takes a lease of up to `want` tokens from the bucket of each check of `batch`, at
    /// the batch's time, outside any lease table: what a grant does, for the shared lease
    /// vectors. Per check: the tokens taken, and how far the tat is ahead after (for a
    /// window, the time to its end).
    pub async fn take_leases(
        &self,
        batch: &Batch,
        want: u64,
    ) -> Result<Vec<(u64, Nanos)>, super::RedisError> {
        let now = match self.time {
            TimeSource::Redis => None,
            TimeSource::Local => Some(batch.now),
        };
        let mut taken = Vec::new();
        for check in &batch.checks {
            let place = self.placer.place(batch.identity(check));
            let key = self.placer.key(batch.key(check), place.tag);
            let shard = &self.shards[place.shard];
            let script = Script::new(TAKE_LEASES);
            let reply = shard
                .invoke(&take_call(&script, now, &[(key, check.meter, want)]))
                .await?;
            let decoded =
                decode_taken(reply, &[check.meter]).map_err(|e| shard.error(Cause::Reply(e)))?;
            taken.extend(decoded.into_iter().map(|t| match t {
                super::lease_script::Taken::Bucket { granted, ahead } => (granted, ahead),
                super::lease_script::Taken::Window {
                    granted, ends_in, ..
                } => (granted, ends_in),
            }));
        }
        Ok(taken)
    }
}
