//! The answer to a planned request: statuses from the store's [`Verdict`], the overall
//! code, the RateLimit-* headers and `dynamic_metadata` when enabled, and each checked
//! descriptor counted in its rule's counters.

use config::{Limit, Unit};
use limiter::{Decision, Nanos};
use proto::rls::rate_limit_response::rate_limit::Unit as ProtoUnit;
use proto::rls::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use proto::rls::{RateLimitRequest, RateLimitResponse};

use super::{Decider, Plan, Target};
use crate::metadata::dynamic_metadata;
use crate::snapshot::Snapshot;
use crate::stats::rules::{Tally, near_limit_hits};
use crate::store::{Batch, BucketStore, Meter, Role, Verdict};

impl<S: BucketStore> Decider<S> {
    /// The answer to `request`, whose descriptors resolved to `targets` in `snapshot` and
    /// were planned as `plan`, on the store's `verdict` (`None`: nothing to check).
    pub(super) fn answer(
        &self,
        request: &RateLimitRequest,
        snapshot: &Snapshot,
        targets: &[Target<'_>],
        plan: Plan<'_>,
        verdict: Option<&Verdict>,
    ) -> RateLimitResponse {
        let Plan {
            batch,
            limits,
            mut statuses,
        } = plan;
        let ratio = self.options.stats.near_limit_ratio;
        if let Some(verdict) = verdict {
            fill_statuses(
                &mut statuses,
                &batch,
                verdict,
                &limits,
                ratio,
                |i, tally| count(snapshot, request, targets, i, tally),
            );
        }
        let denied = verdict.is_some_and(|v| v.denied);
        let mut answer = response(if denied { Code::OverLimit } else { Code::Ok }, statuses);
        if let Some(names) = &self.options.headers {
            let global_quota = self.options.global_quota;
            answer.response_headers_to_add = names.headers_for(&answer.statuses, |i| {
                global_quota || targets[i].rule().is_some_and(|r| r.quota_mode)
            });
        }
        if self.options.dynamic_metadata {
            // The rule metadata of the descriptors that passed, their limits checked.
            let passed = targets
                .iter()
                .zip(&answer.statuses)
                .filter_map(|(t, s)| match t {
                    Target::Rule(rule)
                        if s.current_limit.is_some() && s.code != Code::OverLimit as i32 =>
                    {
                        rule.metadata.as_ref()
                    }
                    _ => None,
                });
            answer.dynamic_metadata = Some(dynamic_metadata(request, passed));
        }
        answer
    }
}

/// Counts descriptor `i`'s `tally` in the counters of its rule.
fn count(
    snapshot: &Snapshot,
    request: &RateLimitRequest,
    targets: &[Target<'_>],
    i: usize,
    tally: Tally,
) {
    let domain = request.domain.as_str();
    let counters = match &targets[i] {
        Target::Rule(rule) => {
            let descriptor = &request.descriptors[i];
            // Request values are read only by rules whose stats key holds them.
            let entries: Vec<(&str, &str)> = if rule.stats_key_depends_on_values() {
                let pairs = descriptor.entries.iter();
                pairs.map(|e| (e.key.as_str(), e.value.as_str())).collect()
            } else {
                Vec::new()
            };
            Some(snapshot.counters(domain, rule, &entries))
        }
        Target::Override(_, rule) => snapshot.override_counters(domain, *rule),
        Target::None | Target::Unlimited(_) => None,
    };
    if let Some(counters) = counters {
        counters.count(tally);
    }
}

/// Writes each checked descriptor's status from its deciding limit: the first one over,
/// else the one with the fewest tokens left; and hands each descriptor's [`Tally`] to
/// `count`.
fn fill_statuses(
    statuses: &mut [DescriptorStatus],
    batch: &Batch,
    verdict: &Verdict,
    limits: &[&Limit],
    ratio: f32,
    mut count: impl FnMut(usize, Tally),
) {
    let decisions = &verdict.decisions;
    for run in batch.descriptor_runs() {
        let first = &batch.checks[run.start];
        let (descriptor, role) = (first.descriptor, first.role);
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
        let check = &batch.checks[deciding];
        count(
            descriptor,
            tally(
                check.meter,
                check.cost,
                decision,
                ratio,
                role,
                verdict.cached.contains(&deciding),
            ),
        );
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

/// What a descriptor's deciding check came to, for its rule's counters.
fn tally(
    meter: Meter,
    hits: u32,
    decision: &Decision,
    ratio: f32,
    role: Role,
    cached: bool,
) -> Tally {
    let capacity = match meter {
        Meter::TokenBucket(rate) => rate.burst(),
        Meter::FixedWindow { limit, .. } => limit,
    };
    let allowed = decision.is_allowed();
    Tally {
        hits,
        over: !allowed,
        cached,
        shadow: role == Role::Shadow,
        near: if allowed {
            near_limit_hits(capacity, decision.remaining(), hits, ratio)
        } else {
            0
        },
    }
}

/// One OK status per descriptor of `request`, without a limit.
pub(super) fn ok_statuses(request: &RateLimitRequest) -> Vec<DescriptorStatus> {
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
