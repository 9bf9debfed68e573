//! `Decider`: turns one `RateLimitRequest` into its `RateLimitResponse`, in three steps:
//! admit (wait for a turn, `admission.rs`), plan (resolve each descriptor against the
//! quota snapshot into one [`Batch`] of checks), answer (the store's [`Verdict`] folded
//! into statuses, headers and dynamic metadata, and counted per rule). Shared by gRPC and
//! `POST /json`; the answer's parts are in `decide/answer.rs`.

mod answer;

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use config::{Algorithm, Domain, Limit, QuotaSet, Rule, Unit};
use limiter::Clock;
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::RateLimitOverride;
use proto::rls::rate_limit_response::DescriptorStatus;
use proto::rls::{RateLimitRequest, RateLimitResponse};
use proto::types::RateLimitUnit;

use self::answer::ok_statuses;
use crate::admission::{Admission, Turn};
use crate::error::RlsError;
use crate::headers::HeaderNames;
use crate::request::RequestBounds;
use crate::snapshot::{Snapshots, StatsOptions};
use crate::store::{Batch, BucketKey, BucketStore, Meter, Owner, Role};

/// How answers are shaped, beyond the quota files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerOptions {
    /// Global shadow mode: `overall_code` is always OK.
    pub global_shadow: bool,
    /// Global quota mode: every descriptor counts as `quota_mode`.
    pub global_quota: bool,
    /// Answers carry `dynamic_metadata` as the reference builds it.
    pub dynamic_metadata: bool,
    /// How per-rule counters are kept.
    pub stats: StatsOptions,
    /// RateLimit-* response headers, when enabled.
    pub headers: Option<HeaderNames>,
    /// Fixed windows: increment only the counters that go over.
    pub stop_increment: bool,
    /// Algorithm of `limit` overrides carried by requests.
    pub default_algorithm: Algorithm,
    /// Bounds on requests.
    pub bounds: RequestBounds,
    /// Requests decided at once; more wait their turn in [`Admission`]'s line (`None`:
    /// no bound). A request whose caller set a deadline waits for a turn only as long as
    /// leaves the store its whole deadline ([`BucketStore::deadline`]) before the
    /// caller's passes; then it goes on without a turn, shed, and the store's failure
    /// mode answers it in time.
    pub max_concurrent: Option<NonZeroUsize>,
}

/// Answers rate limit requests from a quota snapshot and a bucket store.
pub struct Decider<S> {
    snapshots: Snapshots,
    store: S,
    clock: Arc<dyn Clock>,
    options: AnswerOptions,
    /// Turns to be decided, when `max_concurrent` bounds them.
    turns: Option<Admission>,
}

/// What one request descriptor resolved to.
enum Target<'a> {
    /// No rule (unknown key, whitelisted, or a placeholder level): OK, nothing counted.
    None,
    /// An `unlimited` rule: OK with remaining u32::MAX, nothing counted (its `replaces`
    /// still apply, as in the reference).
    Unlimited(&'a Rule),
    /// A configured rule.
    Rule(&'a Rule),
    /// The request's own `limit`, replacing the configured rule its entries match, if
    /// any (which names its counters).
    Override(Limit, Option<&'a Rule>),
}

impl Target<'_> {
    /// The rule the descriptor matched, if any.
    fn rule(&self) -> Option<&Rule> {
        match self {
            Target::Unlimited(rule) | Target::Rule(rule) | Target::Override(_, Some(rule)) => {
                Some(rule)
            }
            Target::None | Target::Override(_, None) => None,
        }
    }
}

/// What a request asks of the store: its checks, the limit behind each (which its
/// status reports), and the statuses of the descriptors, OK until the verdict says more.
struct Plan<'a> {
    batch: Batch,
    limits: Vec<&'a Limit>,
    statuses: Vec<DescriptorStatus>,
}

impl<'a> Plan<'a> {
    /// Adds a check of `limit` on the bucket `key` names.
    fn push<'e>(
        &mut self,
        limit: &'a Limit,
        key: BucketKey<'_, impl Iterator<Item = (&'e str, &'e str)>>,
        owner: Owner,
    ) {
        self.batch.push(Meter::from(limit), key, owner);
        self.limits.push(limit);
    }
}

impl<S: BucketStore> Decider<S> {
    /// A decider serving `quotas` from `store`, reading time from `clock`.
    pub fn new(quotas: QuotaSet, store: S, clock: Arc<dyn Clock>, options: AnswerOptions) -> Self {
        // Metrics registered before the recorder is installed would go nowhere.
        let _ = crate::stats::prometheus();
        let turns = options
            .max_concurrent
            .map(|turns| Admission::new(turns, clock.clone()));
        Decider {
            snapshots: Snapshots::new(quotas, options.stats),
            store,
            clock,
            options,
            turns,
        }
    }

    /// The quota files serving now.
    pub fn quotas(&self) -> Arc<QuotaSet> {
        self.snapshots.load().quotas.clone()
    }

    /// The quota snapshots: the one serving now, and the last refused reload.
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// Serves `quotas` from now on. Requests in flight finish on the snapshot they
    /// started with; buckets are keyed by descriptor, not by quota, so they keep their
    /// state across the swap.
    pub fn replace_quotas(&self, quotas: QuotaSet) {
        self.snapshots.replace(quotas);
    }

    /// The bounds on requests: the gRPC decoder and the `/json` body are bounded by their
    /// `max_bytes` too.
    pub fn bounds(&self) -> &RequestBounds {
        &self.options.bounds
    }

    /// The bucket store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Answers one request. Statuses match the request's descriptors in number and order.
    ///
    /// With `max_concurrent` set, a request beyond it waits for its turn before anything
    /// else, parked: it costs no CPU and is not in the scheduler's queue, so the requests
    /// being decided get their wake-ups sooner and keep within the backend deadline. Its
    /// caller's deadline (`grpc-timeout`, which Envoy sends, or a stream reset) ends the
    /// wait; once callers give up in the line, the newest go first ([`Admission`]).
    pub async fn decide(&self, request: &RateLimitRequest) -> Result<RateLimitResponse, RlsError> {
        self.decide_within(request, None).await
    }

    /// [`Decider::decide`] for a caller that gives up after `caller_timeout` (gRPC's
    /// `grpc-timeout`): while waiting for a turn it is shed in time for the store's
    /// failure mode to answer before then.
    pub async fn decide_within(
        &self,
        request: &RateLimitRequest,
        caller_timeout: Option<Duration>,
    ) -> Result<RateLimitResponse, RlsError> {
        self.options.bounds.validate(request)?;
        self.check_overrides(request)?;
        let (_turn, shed) = self.admit(caller_timeout).await;
        let snapshot = self.snapshots.load();
        let domain = snapshot.quotas.domain(&request.domain);
        let targets = self.resolve(domain, &request.descriptors);
        let plan = self.plan(request, &targets);
        let verdict = if plan.batch.checks.is_empty() {
            None
        } else {
            Some(self.store.check(&plan.batch, shed).await?)
        };
        Ok(self.answer(request, &snapshot, &targets, plan, verdict.as_ref()))
    }

    /// Waits for the request's turn, when turns are bounded: the turn, held while the
    /// request is decided, and whether the request is shed instead (its caller would give
    /// up before the store could answer after a longer wait).
    async fn admit(&self, caller_timeout: Option<Duration>) -> (Option<Turn<'_>>, bool) {
        let Some(turns) = &self.turns else {
            return (None, false);
        };
        let most_wait = caller_timeout
            .zip(self.store.deadline())
            .map(|(caller, store)| caller.saturating_sub(store));
        match most_wait {
            Some(wait) => match tokio::time::timeout(wait, turns.turn()).await {
                Ok(turn) => (Some(turn), false),
                Err(_) => (None, true),
            },
            None => (Some(turns.turn().await), false),
        }
    }

    /// The checks of `request`, whose descriptors resolved to `targets`.
    fn plan<'a>(&self, request: &RateLimitRequest, targets: &'a [Target<'a>]) -> Plan<'a> {
        let replaced = replaced_names(targets);
        let quota_passes = self.quota_passes(targets, &replaced);
        let mut plan = Plan {
            batch: Batch {
                now: self.clock.now(),
                global_shadow: self.options.global_shadow,
                stop_increment: self.options.stop_increment,
                ..Batch::default()
            },
            limits: Vec::with_capacity(targets.len()),
            statuses: ok_statuses(request),
        };
        let domain = request.domain.as_str();
        for (i, (target, descriptor)) in targets.iter().zip(&request.descriptors).enumerate() {
            let cost = hits(request, descriptor);
            let entries = descriptor.entries.iter();
            match target {
                Target::None => {}
                Target::Unlimited(_) => plan.statuses[i].limit_remaining = u32::MAX,
                Target::Override(limit, _) => {
                    let entries = entries.map(|e| (e.key.as_str(), e.value.as_str()));
                    let key = BucketKey {
                        domain,
                        entries,
                        limit: 0,
                    };
                    let owner = Owner {
                        descriptor: i,
                        role: role(false, self.options.global_quota, quota_passes),
                        cost,
                    };
                    plan.push(limit, key, owner);
                }
                Target::Rule(rule) => {
                    let quota = self.options.global_quota || rule.quota_mode;
                    let owner = Owner {
                        descriptor: i,
                        role: role(rule.shadow_mode, quota, quota_passes),
                        cost,
                    };
                    for (index, limit) in rule.limits.iter().enumerate() {
                        if is_replaced(limit, &replaced) {
                            continue;
                        }
                        // A level with share_threshold counts under its pattern.
                        let entries =
                            entries.clone().zip(&rule.shared_values).map(|(e, shared)| {
                                (e.key.as_str(), shared.as_deref().unwrap_or(&e.value))
                            });
                        let key = BucketKey {
                            domain,
                            entries,
                            limit: index,
                        };
                        plan.push(limit, key, owner);
                    }
                }
            }
        }
        plan
    }

    /// Whether some quota-mode descriptor of the request passes whatever its buckets say:
    /// one in shadow mode, or one with nothing to check (no rule, or its limits replaced;
    /// with global quota mode every descriptor is a quota one). Then not every quota
    /// descriptor can be over, and none of them denies the request, as the reference
    /// folds them (unlimited descriptors do not take part).
    fn quota_passes(&self, targets: &[Target<'_>], replaced: &[&str]) -> bool {
        let global = self.options.global_quota;
        targets.iter().any(|target| match target {
            Target::None => global,
            Target::Unlimited(_) | Target::Override(..) => false,
            Target::Rule(rule) => {
                (global || rule.quota_mode)
                    && (rule.shadow_mode || rule.limits.iter().all(|l| is_replaced(l, replaced)))
            }
        })
    }

    /// What each descriptor resolves to in `domain` (nothing, when the domain is unknown).
    fn resolve<'a>(
        &self,
        domain: Option<&'a Domain>,
        descriptors: &[RateLimitDescriptor],
    ) -> Vec<Target<'a>> {
        let mut entries: Vec<(&str, &str)> = Vec::new();
        descriptors
            .iter()
            .map(|descriptor| {
                let Some(domain) = domain else {
                    return Target::None;
                };
                entries.clear();
                entries.extend(
                    descriptor
                        .entries
                        .iter()
                        .map(|e| (e.key.as_str(), e.value.as_str())),
                );
                let rule = domain.resolve(&entries);
                match (&descriptor.limit, rule) {
                    (Some(limit), rule) => Target::Override(self.override_limit(limit), rule),
                    (None, None) => Target::None,
                    (None, Some(rule)) if rule.unlimited => Target::Unlimited(rule),
                    (None, Some(rule)) => Target::Rule(rule),
                }
            })
            .collect()
    }

    /// Refuses a request's own `limit` that the bucket maths cannot keep exact (more than
    /// one token a nanosecond), as a quota file holding it is refused.
    fn check_overrides(&self, request: &RateLimitRequest) -> Result<(), RlsError> {
        for (i, descriptor) in request.descriptors.iter().enumerate() {
            let limit = descriptor.limit.as_ref().map(|l| self.override_limit(l));
            if let Some(excess) = limit.and_then(|l| l.excess()) {
                return Err(RlsError::InvalidRequest(format!(
                    "descriptors[{i}].limit.{} is {}; at most {} is allowed: {}",
                    excess.field, excess.value, excess.largest, excess.reason
                )));
            }
        }
        Ok(())
    }

    /// The request's own limit as a rule limit; validation has checked its unit.
    fn override_limit(&self, limit: &RateLimitOverride) -> Limit {
        let unit = match RateLimitUnit::try_from(limit.unit) {
            Ok(RateLimitUnit::Minute) => Unit::Minute,
            Ok(RateLimitUnit::Hour) => Unit::Hour,
            Ok(RateLimitUnit::Day) => Unit::Day,
            Ok(RateLimitUnit::Month) => Unit::Month,
            Ok(RateLimitUnit::Year) => Unit::Year,
            _ => Unit::Second,
        };
        Limit {
            name: None,
            unit,
            unit_multiplier: NonZeroU32::MIN,
            requests_per_unit: limit.requests_per_unit,
            burst: limit.requests_per_unit,
            algorithm: self.options.default_algorithm,
            replaces: Vec::new(),
        }
    }
}

/// The hits a descriptor takes: its own `hits_addend` when set (0 checks without
/// counting), else the request's, where 0 means 1.
fn hits(request: &RateLimitRequest, descriptor: &RateLimitDescriptor) -> u32 {
    match &descriptor.hits_addend {
        Some(n) => u32::try_from(n.value).unwrap_or(u32::MAX),
        None => request.hits_addend.max(1),
    }
}

/// The names of the limits the request's rules replace.
fn replaced_names<'a>(targets: &'a [Target<'a>]) -> Vec<&'a str> {
    targets
        .iter()
        .filter_map(|t| match t {
            Target::Rule(rule) | Target::Unlimited(rule) => Some(rule.replaces()),
            _ => None,
        })
        .flatten()
        .map(String::as_str)
        .collect()
}

fn is_replaced(limit: &Limit, replaced: &[&str]) -> bool {
    limit
        .name
        .as_deref()
        .is_some_and(|name| replaced.contains(&name))
}

/// How a descriptor's outcome counts towards the request's answer: `quota_passes` when
/// some quota-mode descriptor of the request passes whatever happens
/// ([`Decider::quota_passes`]).
fn role(shadow: bool, quota: bool, quota_passes: bool) -> Role {
    match (shadow, quota) {
        (true, _) => Role::Shadow,
        (false, true) if quota_passes => Role::Reported,
        (false, true) => Role::Quota,
        (false, false) => Role::Enforced,
    }
}

#[cfg(test)]
mod tests;
