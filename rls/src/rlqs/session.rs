//! `Session`: one Envoy's stream — its domain, the buckets it reports with what each
//! stands for and how much it is asked for, and the grant it holds — turning usage reports
//! into demand, and demand and the backend's totals into bucket actions.
//!
//! Times are offsets from a fixed origin (the service's start), so that the session can be
//! driven by hand in tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proto::rlqs::rate_limit_quota_response::BucketAction;
use proto::rlqs::rate_limit_quota_response::bucket_action::{
    AbandonAction, BucketAction as Action, QuotaAssignmentAction,
};
use proto::rlqs::{BucketId, RateLimitQuotaUsageReports};
use proto::types::rate_limit_strategy::{BlanketRule, Strategy};
use proto::types::{RateLimitStrategy, TokenBucket};
use tonic::Status;

use super::assign::{DemandMeter, Grant, grant, newcomer_weight, settle, share, weight};
use super::mapping::{BucketMap, Mode, Policy, Target, Unmatched};
use super::state::{ClientId, Contribution, Split};

/// A bucket id's map: what Envoy and rls both name a bucket by.
pub type BucketKey = Arc<BTreeMap<String, String>>;

/// The bounds of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most buckets tracked; more are answered as unmatched and not tracked.
    pub max_buckets: usize,
    /// A bucket with no request reported for this long is abandoned.
    pub abandon_after: Duration,
    /// `assignment_time_to_live` of every assignment, in whole seconds.
    pub ttl: Duration,
}

/// How long the answer to an untracked bucket holds: it is answered again in each report
/// that lists it, and Envoy lists every bucket every 5 s.
pub const UNTRACKED_TTL: Duration = Duration::from_secs(15);

/// One tracked bucket.
struct Tracked {
    key: BucketKey,
    target: Target,
    demand: DemandMeter,
    /// When a report last counted a request for it.
    last_busy: Duration,
    /// How many Envoys reported it when its totals were last read (for its floor).
    clients: u32,
    /// The other Envoys' weight and number when its totals were last read.
    others: (f64, u32),
    /// What the Envoy holds: the last grant pushed.
    grant: Option<Grant>,
}

/// What a report brought.
#[derive(Debug, Default)]
pub struct Seen {
    /// Buckets tracked from now on, to be answered at once.
    pub new: Vec<usize>,
    /// Buckets past [`Limits::max_buckets`], to be answered as unmatched, untracked.
    pub untracked: Vec<BucketKey>,
}

/// One stream's state.
pub struct Session {
    client: ClientId,
    domain: Option<String>,
    /// The mapping the targets were resolved with.
    map: Option<Arc<BucketMap>>,
    buckets: Vec<Tracked>,
    index: HashMap<BucketKey, usize>,
}

impl Session {
    /// A session for the stream `client`.
    pub fn new(client: ClientId) -> Session {
        Session {
            client,
            domain: None,
            map: None,
            buckets: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The stream.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// The stream's domain, once its first report named it.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// Buckets tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no bucket is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The shared state of every tracked bucket that has one (what the backend holds for
    /// this stream).
    pub fn shared_keys(&self) -> Vec<Arc<[u8]>> {
        self.buckets
            .iter()
            .filter_map(|b| match &b.target {
                Target::Shared { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    /// Reads one usage report received at `now`. The first report must name the domain;
    /// later ones name the same or none. A usage without a bucket id is skipped.
    pub fn report(
        &mut self,
        now: Duration,
        report: RateLimitQuotaUsageReports,
        map: &Arc<BucketMap>,
        policy: Policy,
        limits: &Limits,
    ) -> Result<Seen, Status> {
        match (&self.domain, report.domain.as_str()) {
            (None, "") => {
                return Err(Status::invalid_argument(
                    "the first usage report of a stream names no domain",
                ));
            }
            (None, domain) => self.domain = Some(domain.to_string()),
            (Some(ours), theirs) if !theirs.is_empty() && theirs != ours => {
                return Err(Status::invalid_argument(format!(
                    "a usage report for domain {theirs:?} on a stream of domain {ours:?}"
                )));
            }
            _ => {}
        }
        self.remap(map, policy);
        let mut seen = Seen::default();
        for usage in report.bucket_quota_usages {
            let Some(id) = usage.bucket_id.filter(|id| !id.bucket.is_empty()) else {
                metrics::counter!("rls_rlqs_skipped_usages_total").increment(1);
                tracing::debug!(client = self.client, "a usage without a bucket id: skipped");
                continue;
            };
            let key: BucketKey = Arc::new(id.bucket);
            let requests = usage
                .num_requests_allowed
                .saturating_add(usage.num_requests_denied);
            let i = match self.index.get(&key) {
                Some(&i) => i,
                None if self.buckets.len() >= limits.max_buckets => {
                    let counts =
                        usage_counts(usage.num_requests_allowed, usage.num_requests_denied);
                    count_usage(Mode::Unmatched.label(), &counts);
                    seen.untracked.push(key);
                    continue;
                }
                None => {
                    let target = self.resolve(map, &key, policy);
                    self.index.insert(key.clone(), self.buckets.len());
                    self.buckets.push(Tracked {
                        key,
                        target,
                        demand: DemandMeter::new(now),
                        last_busy: now,
                        clients: 1,
                        others: (0.0, 0),
                        grant: None,
                    });
                    seen.new.push(self.buckets.len() - 1);
                    self.buckets.len() - 1
                }
            };
            let bucket = &mut self.buckets[i];
            bucket.demand.record(now, requests);
            if requests > 0 {
                bucket.last_busy = now;
            }
            count_usage(
                bucket.target.mode().label(),
                &usage_counts(usage.num_requests_allowed, usage.num_requests_denied),
            );
        }
        metrics::gauge!("rls_rlqs_buckets").increment(seen.new.len() as f64);
        Ok(seen)
    }

    /// Resolves every bucket again if the quota snapshot changed since.
    pub fn remap(&mut self, map: &Arc<BucketMap>, policy: Policy) {
        if self.map.as_ref().is_some_and(|m| Arc::ptr_eq(m, map)) {
            return;
        }
        self.map = Some(map.clone());
        let domain = self.domain.clone().unwrap_or_default();
        for bucket in &mut self.buckets {
            bucket.target = map.target(&domain, &bucket.key, policy);
        }
    }

    fn resolve(&self, map: &BucketMap, key: &BTreeMap<String, String>, policy: Policy) -> Target {
        map.target(self.domain.as_deref().unwrap_or_default(), key, policy)
    }

    /// Forgets the buckets with no request reported for `after`: their abandon actions, and
    /// the shared state the backend may drop for this stream.
    pub fn abandon_idle(
        &mut self,
        now: Duration,
        after: Duration,
    ) -> (Vec<BucketAction>, Vec<Arc<[u8]>>) {
        let (mut actions, mut keys) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < self.buckets.len() {
            if now.saturating_sub(self.buckets[i].last_busy) < after {
                i += 1;
                continue;
            }
            let gone = self.buckets.swap_remove(i);
            self.index.remove(&gone.key);
            if let Some(moved) = self.buckets.get(i) {
                self.index.insert(moved.key.clone(), i);
            }
            if let Target::Shared { key, .. } = gone.target {
                keys.push(key);
            }
            actions.push(BucketAction {
                bucket_id: Some(bucket_id(&gone.key)),
                bucket_action: Some(Action::AbandonAction(AbandonAction {})),
            });
        }
        metrics::gauge!("rls_rlqs_buckets").decrement(actions.len() as f64);
        (actions, keys)
    }

    /// Every tracked bucket, for a push to all.
    pub fn all(&self) -> Vec<usize> {
        (0..self.buckets.len()).collect()
    }

    /// This stream's weights on the shared buckets among `which`, with the index of each.
    pub fn contributions(&self, which: &[usize]) -> (Vec<usize>, Vec<Contribution>) {
        which
            .iter()
            .filter_map(|&i| {
                let bucket = &self.buckets[i];
                let Target::Shared { key, quota } = &bucket.target else {
                    return None;
                };
                let contribution = Contribution {
                    key: key.clone(),
                    client: self.client,
                    weight: bucket.weight(quota.rate),
                };
                Some((i, contribution))
            })
            .unzip()
    }

    /// The assignments for `which`: blanket rules as their targets say, and for shared
    /// buckets (`shared`, with the backend's `splits` in the same order) this stream's share
    /// as a token bucket. A bucket whose split is [`Split::Hold`] gets nothing.
    pub fn assign(
        &mut self,
        which: &[usize],
        shared: &[usize],
        splits: &[Split],
        ttl: Duration,
    ) -> Vec<BucketAction> {
        let splits: HashMap<usize, Split> =
            shared.iter().copied().zip(splits.iter().copied()).collect();
        let mut actions = Vec::with_capacity(which.len());
        for &i in which {
            let bucket = &mut self.buckets[i];
            let next = match (&bucket.target, splits.get(&i)) {
                (Target::AllowAll(_), _) => Grant::AllowAll,
                (Target::DenyAll(_), _) => Grant::DenyAll,
                (Target::Shared { quota, .. }, Some(Split::Totals(totals))) => {
                    // The weight this stream wrote, and what the others weigh beside it.
                    let written = bucket.weight(quota.rate);
                    let others = (totals.weight - written).max(0.0);
                    bucket.others = (others, totals.clients.saturating_sub(1));
                    bucket.clients = totals.clients.max(1);
                    let mine = bucket.weight(quota.rate);
                    let rate = quota.rate * totals.scale;
                    let scaled = super::assign::Quota {
                        rate,
                        burst: quota.burst * totals.scale,
                        fill_secs: quota.fill_secs,
                    };
                    let mine_share = share(rate, mine, others + mine);
                    settle(bucket.grant.as_ref(), grant(&scaled, mine_share))
                }
                (Target::Shared { .. }, Some(Split::Fallback(grant))) => *grant,
                (Target::Shared { .. }, Some(Split::Hold) | None) => continue,
            };
            if bucket.grant != Some(next) {
                metrics::counter!("rls_rlqs_grant_changes_total").increment(1);
                bucket.grant = Some(next);
            }
            actions.push(assignment(&bucket.key, next, ttl));
        }
        actions
    }
}

impl Tracked {
    /// This stream's weight on the bucket: its demand with the floor, and while the demand
    /// is not measured, at least the mean of the others as last read.
    fn weight(&self, quota_rate: f64) -> f64 {
        let own = weight(self.demand.rate(), quota_rate, self.clients);
        if self.demand.is_measured() {
            return own;
        }
        newcomer_weight(own, self.others.0, self.others.1)
    }
}

/// Allowed and denied, for the usage counter.
fn usage_counts(allowed: u64, denied: u64) -> [(&'static str, u64); 2] {
    [("allowed", allowed), ("denied", denied)]
}

fn count_usage(mode: &'static str, counts: &[(&'static str, u64)]) {
    for &(decision, n) in counts {
        if n > 0 {
            metrics::counter!("rls_rlqs_usage_total", "decision" => decision, "mode" => mode)
                .increment(n);
        }
    }
}

/// The answer to a bucket that is not tracked: as if it matched no rule.
pub fn untracked(key: &BucketKey, unmatched: Unmatched) -> BucketAction {
    let grant = match unmatched {
        Unmatched::Allow => Grant::AllowAll,
        Unmatched::Deny => Grant::DenyAll,
    };
    assignment(key, grant, UNTRACKED_TTL)
}

fn bucket_id(key: &BucketKey) -> BucketId {
    BucketId {
        bucket: (**key).clone(),
    }
}

/// A quota assignment of `grant` to the bucket `key`, for `ttl` (whole seconds).
pub fn assignment(key: &BucketKey, grant: Grant, ttl: Duration) -> BucketAction {
    BucketAction {
        bucket_id: Some(bucket_id(key)),
        bucket_action: Some(Action::QuotaAssignmentAction(QuotaAssignmentAction {
            assignment_time_to_live: Some(whole_seconds(ttl.as_secs())),
            rate_limit_strategy: Some(strategy(grant)),
        })),
    }
}

fn whole_seconds(seconds: u64) -> proto::wkt::Duration {
    proto::wkt::Duration {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// A grant as Envoy's `RateLimitStrategy`.
pub fn strategy(grant: Grant) -> RateLimitStrategy {
    let strategy = match grant {
        Grant::AllowAll => Strategy::BlanketRule(BlanketRule::AllowAll as i32),
        Grant::DenyAll => Strategy::BlanketRule(BlanketRule::DenyAll as i32),
        Grant::Bucket(bucket) => Strategy::TokenBucket(TokenBucket {
            max_tokens: bucket.max_tokens,
            tokens_per_fill: Some(proto::wkt::UInt32Value {
                value: bucket.tokens_per_fill,
            }),
            fill_interval: Some(whole_seconds(bucket.fill_secs)),
        }),
    };
    RateLimitStrategy {
        strategy: Some(strategy),
    }
}

#[cfg(test)]
mod tests;
