//! `Decider`: turns one `RateLimitRequest` into its `RateLimitResponse`, in three steps:
//! admit (wait for a turn, `admission.rs`), plan (resolve each descriptor against the
//! quota snapshot into one [`Batch`] of checks), answer (the store's [`Verdict`] folded
//! into statuses and headers). Shared by gRPC and `POST /json`.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use config::{Algorithm, Limit, QuotaSet, Rule, Unit};
use limiter::{Clock, Decision, Nanos};
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::RateLimitOverride;
use proto::rls::rate_limit_response::rate_limit::Unit as ProtoUnit;
use proto::rls::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use proto::rls::{RateLimitRequest, RateLimitResponse};
use proto::types::RateLimitUnit;

use crate::admission::{Admission, Turn};
use crate::error::RlsError;
use crate::headers::HeaderNames;
use crate::request::RequestBounds;
use crate::store::{Batch, BucketKey, BucketStore, Meter, Owner, Role, Verdict};

/// How answers are shaped, beyond the quota files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerOptions {
    /// Global shadow mode: `overall_code` is always OK.
    pub global_shadow: bool,
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
    quotas: ArcSwap<QuotaSet>,
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
    /// The request's own `limit`, replacing any configured rule.
    Override(Limit),
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
        let turns = options
            .max_concurrent
            .map(|turns| Admission::new(turns, clock.clone()));
        Decider {
            quotas: ArcSwap::from_pointee(quotas),
            store,
            clock,
            options,
            turns,
        }
    }

    /// The quota snapshot now serving.
    pub fn quotas(&self) -> Arc<QuotaSet> {
        self.quotas.load_full()
    }

    /// Serves `quotas` from now on. Requests in flight finish on the snapshot they
    /// started with; buckets are keyed by descriptor, not by quota, so they keep their
    /// state across the swap.
    pub fn replace_quotas(&self, quotas: QuotaSet) {
        self.quotas.store(Arc::new(quotas));
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
        let quotas = self.quotas.load();
        let Some(domain) = quotas.domain(&request.domain) else {
            return Ok(response(Code::Ok, ok_statuses(request)));
        };
        let targets = self.resolve(domain, &request.descriptors);
        let plan = self.plan(request, &targets);
        if plan.batch.checks.is_empty() {
            return Ok(response(Code::Ok, plan.statuses));
        }
        let verdict = self.store.check(&plan.batch, shed).await?;
        Ok(self.answer(plan, &verdict))
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
                Target::Override(limit) => {
                    let entries = entries.map(|e| (e.key.as_str(), e.value.as_str()));
                    let key = BucketKey {
                        domain,
                        entries,
                        limit: 0,
                    };
                    let owner = Owner {
                        descriptor: i,
                        role: Role::Enforced,
                        cost,
                    };
                    plan.push(limit, key, owner);
                }
                Target::Rule(rule) => {
                    let role = match (rule.shadow_mode, rule.quota_mode) {
                        (true, _) => Role::Shadow,
                        (false, true) => Role::Quota,
                        (false, false) => Role::Enforced,
                    };
                    let owner = Owner {
                        descriptor: i,
                        role,
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

    /// The answer to the request `plan` came from, on the store's `verdict`.
    fn answer(&self, plan: Plan<'_>, verdict: &Verdict) -> RateLimitResponse {
        let Plan {
            batch,
            limits,
            mut statuses,
        } = plan;
        fill_statuses(&mut statuses, &batch, &verdict.decisions, &limits);
        let code = if verdict.denied {
            Code::OverLimit
        } else {
            Code::Ok
        };
        let mut answer = response(code, statuses);
        if let Some(names) = &self.options.headers {
            answer.response_headers_to_add = names.headers_for(&answer.statuses);
        }
        answer
    }
    fn resolve<'a>(
        &self,
        domain: &'a config::Domain,
        descriptors: &[RateLimitDescriptor],
    ) -> Vec<Target<'a>> {
        let mut entries: Vec<(&str, &str)> = Vec::new();
        descriptors
            .iter()
            .map(|descriptor| {
                if let Some(limit) = &descriptor.limit {
                    return Target::Override(self.override_limit(limit));
                }
                entries.clear();
                entries.extend(
                    descriptor
                        .entries
                        .iter()
                        .map(|e| (e.key.as_str(), e.value.as_str())),
                );
                match domain.resolve(&entries) {
                    None => Target::None,
                    Some(rule) if rule.unlimited => Target::Unlimited(rule),
                    Some(rule) => Target::Rule(rule),
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

/// Writes each checked descriptor's status from its deciding limit: the first one over,
/// else the one with the fewest tokens left.
fn fill_statuses(
    statuses: &mut [DescriptorStatus],
    batch: &Batch,
    decisions: &[Decision],
    limits: &[&Limit],
) {
    for run in batch.descriptor_runs() {
        let (descriptor, role) = (
            batch.checks[run.start].descriptor,
            batch.checks[run.start].role,
        );
        let mut deciding = run.start;
        for i in run {
            let (best, this) = (&decisions[deciding], &decisions[i]);
            let better = match (best.is_allowed(), this.is_allowed()) {
                (true, false) => true,
                (true, true) => this.remaining() < best.remaining(),
                _ => false,
            };
            if better {
                deciding = i;
            }
        }
        let decision = &decisions[deciding];
        let over = !decision.is_allowed() && role != Role::Shadow;
        let limit = limits[deciding];
        statuses[descriptor] = DescriptorStatus {
            code: if over { Code::OverLimit } else { Code::Ok } as i32,
            current_limit: Some(RateLimit {
                requests_per_unit: limit.requests_per_unit,
                unit: proto_unit(limit.unit) as i32,
                name: limit.name.clone().unwrap_or_default(),
            }),
            limit_remaining: decision.remaining(),
            duration_until_reset: Some(duration(decision.reset_after())),
            quota: None,
        };
    }
}

/// One OK status per descriptor of `request`, without a limit.
fn ok_statuses(request: &RateLimitRequest) -> Vec<DescriptorStatus> {
    vec![
        DescriptorStatus {
            code: Code::Ok as i32,
            ..DescriptorStatus::default()
        };
        request.descriptors.len()
    ]
}

fn response(code: Code, statuses: Vec<DescriptorStatus>) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: code as i32,
        statuses,
        ..RateLimitResponse::default()
    }
}

fn proto_unit(unit: Unit) -> ProtoUnit {
    match unit {
        Unit::Second => ProtoUnit::Second,
        Unit::Minute => ProtoUnit::Minute,
        Unit::Hour => ProtoUnit::Hour,
        Unit::Day => ProtoUnit::Day,
        Unit::Week => ProtoUnit::Week,
        Unit::Month => ProtoUnit::Month,
        Unit::Year => ProtoUnit::Year,
    }
}

fn duration(nanos: Nanos) -> proto::wkt::Duration {
    proto::wkt::Duration {
        seconds: (nanos / 1_000_000_000) as i64,
        nanos: (nanos % 1_000_000_000) as i32,
    }
}

#[cfg(test)]
mod tests;
