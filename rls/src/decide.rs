//! `Decider`: turns one `RateLimitRequest` into its `RateLimitResponse` — resolve each
//! descriptor against the quota snapshot, check the buckets in one batch, fold the
//! statuses, add headers. Shared by gRPC and `POST /json`.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use config::{Algorithm, Limit, QuotaSet, Rule, Unit};
use limiter::{Clock, Decision, Nanos, Rate};
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::RateLimitOverride;
use proto::rls::rate_limit_response::rate_limit::Unit as ProtoUnit;
use proto::rls::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use proto::rls::{RateLimitRequest, RateLimitResponse};
use proto::types::RateLimitUnit;

use crate::admission::Admission;
use crate::error::RlsError;
use crate::headers::HeaderNames;
use crate::request::RequestBounds;
use crate::store::keys::push_key;
use crate::store::{Batch, BucketStore, Check, Meter, Role, request_denied};

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
    /// no bound).
    pub max_concurrent: Option<NonZeroUsize>,
    /// The store's deadline per request, when it has one (`--backend-timeout`). A
    /// request whose caller set a deadline waits for a turn only as long as leaves the
    /// store its whole deadline before the caller's passes; then it goes on without a
    /// turn, shed ([`Batch::shed`]), and the store's failure mode answers it in time.
    pub backend_deadline: Option<Duration>,
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
        let most_wait = caller_timeout
            .zip(self.options.backend_deadline)
            .map(|(caller, store)| caller.saturating_sub(store));
        let (_turn, shed) = match (&self.turns, most_wait) {
            (Some(turns), Some(wait)) => match tokio::time::timeout(wait, turns.turn()).await {
                Ok(turn) => (Some(turn), false),
                Err(_) => (None, true),
            },
            (Some(turns), None) => (Some(turns.turn().await), false),
            (None, _) => (None, false),
        };
        let quotas = self.quotas.load();
        let mut statuses = vec![
            DescriptorStatus {
                code: Code::Ok as i32,
                ..DescriptorStatus::default()
            };
            request.descriptors.len()
        ];
        let Some(domain) = quotas.domain(&request.domain) else {
            return Ok(response(Code::Ok, statuses));
        };

        let targets = self.resolve(domain, &request.descriptors);
        let replaced: Vec<&str> = targets
            .iter()
            .filter_map(|t| match t {
                Target::Rule(rule) | Target::Unlimited(rule) => Some(rule.replaces()),
                _ => None,
            })
            .flatten()
            .map(String::as_str)
            .collect();

        let mut batch = Batch {
            now: self.clock.now(),
            global_shadow: self.options.global_shadow,
            stop_increment: self.options.stop_increment,
            shed,
            ..Batch::default()
        };
        let mut limits: Vec<&Limit> = Vec::with_capacity(targets.len());
        for (i, (target, descriptor)) in targets.iter().zip(&request.descriptors).enumerate() {
            let cost = hits(request, descriptor);
            let entries = descriptor.entries.iter();
            match target {
                Target::None => {}
                Target::Unlimited(_) => statuses[i].limit_remaining = u32::MAX,
                Target::Override(limit) => {
                    let values = entries.map(|e| (e.key.as_str(), e.value.as_str()));
                    push_check(
                        &mut batch,
                        limit,
                        0,
                        &request.domain,
                        values,
                        cost,
                        i,
                        Role::Enforced,
                    );
                    limits.push(limit);
                }
                Target::Rule(rule) => {
                    let role = match (rule.shadow_mode, rule.quota_mode) {
                        (true, _) => Role::Shadow,
                        (false, true) => Role::Quota,
                        (false, false) => Role::Enforced,
                    };
                    for (index, limit) in rule.limits.iter().enumerate() {
                        if is_replaced(limit, &replaced) {
                            continue;
                        }
                        // A level with share_threshold counts under its pattern.
                        let values = descriptor.entries.iter().zip(&rule.shared_values).map(
                            |(e, shared)| (e.key.as_str(), shared.as_deref().unwrap_or(&e.value)),
                        );
                        push_check(
                            &mut batch,
                            limit,
                            index,
                            &request.domain,
                            values,
                            cost,
                            i,
                            role,
                        );
                        limits.push(limit);
                    }
                }
            }
        }
        if batch.checks.is_empty() {
            return Ok(response(Code::Ok, statuses));
        }

        let decisions = self.store.check(&batch).await?;
        fill_statuses(&mut statuses, &batch, &decisions, &limits);
        let code = if request_denied(&batch, &decisions) {
            Code::OverLimit
        } else {
            Code::Ok
        };
        let mut answer = response(code, statuses);
        if let Some(names) = &self.options.headers {
            answer.response_headers_to_add = names.headers_for(&answer.statuses);
        }
        Ok(answer)
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

fn is_replaced(limit: &Limit, replaced: &[&str]) -> bool {
    limit
        .name
        .as_deref()
        .is_some_and(|name| replaced.contains(&name))
}

#[allow(clippy::too_many_arguments)]
fn push_check<'a>(
    batch: &mut Batch,
    limit: &Limit,
    index: usize,
    domain: &str,
    values: impl Iterator<Item = (&'a str, &'a str)>,
    cost: u32,
    descriptor: usize,
    role: Role,
) {
    let meter = match limit.algorithm {
        Algorithm::TokenBucket => Meter::TokenBucket(Rate::new(
            limit.requests_per_unit,
            limit.period(),
            limit.burst,
        )),
        Algorithm::FixedWindow => Meter::FixedWindow {
            period_secs: limit.period_secs(),
            limit: limit.requests_per_unit,
        },
    };
    let start = batch.keys.len();
    let identity = push_key(&mut batch.keys, &meter, index, domain, values);
    batch.checks.push(Check {
        key: start..batch.keys.len(),
        identity,
        meter,
        cost,
        descriptor,
        role,
    });
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
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use config::{LoadOptions, QuotaSet};
    use limiter::{Decision, FakeClock};
    use proto::common::RateLimitDescriptor;
    use proto::common::rate_limit_descriptor::Entry;
    use proto::rls::rate_limit_response::Code;
    use proto::rls::{RateLimitRequest, RateLimitResponse};
    use tokio::sync::{Mutex, Semaphore};
    use tokio::task::JoinHandle;

    use super::{AnswerOptions, Decider};
    use crate::error::RlsError;
    use crate::store::{Batch, BucketStore, MemoryStore};

    /// A memory store that holds each check until the test lets it through, and records
    /// how many were inside at once and in which order they came in.
    struct Gate {
        inside: AtomicUsize,
        most: AtomicUsize,
        through: Semaphore,
        order: Mutex<Vec<Vec<u8>>>,
        shed: Mutex<Vec<bool>>,
        memory: MemoryStore,
    }

    impl Gate {
        fn new() -> Gate {
            Gate {
                inside: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
                through: Semaphore::new(0),
                order: Mutex::new(Vec::new()),
                shed: Mutex::new(Vec::new()),
                memory: MemoryStore::new(),
            }
        }
    }

    impl BucketStore for Gate {
        async fn check(&self, batch: &Batch) -> Result<Vec<Decision>, RlsError> {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            self.order
                .lock()
                .await
                .push(batch.key(&batch.checks[0]).to_vec());
            self.shed.lock().await.push(batch.shed);
            if let Ok(pass) = self.through.acquire().await {
                pass.forget();
            }
            self.inside.fetch_sub(1, Ordering::SeqCst);
            self.memory.check(batch).await
        }
    }

    fn decider(max_concurrent: usize) -> Arc<Decider<Gate>> {
        with_deadline(max_concurrent, None)
    }

    fn with_deadline(
        max_concurrent: usize,
        backend_deadline: Option<Duration>,
    ) -> Arc<Decider<Gate>> {
        let max_concurrent = NonZeroUsize::new(max_concurrent);
        let yaml = "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 100}\n";
        let quotas = QuotaSet::from_sources([("d.yaml", yaml)], &LoadOptions::default())
            .expect("valid quota file");
        let options = AnswerOptions {
            max_concurrent,
            backend_deadline,
            ..AnswerOptions::default()
        };
        let clock = Arc::new(FakeClock::new(1_700_000_000_000_000_000));
        Arc::new(Decider::new(quotas, Gate::new(), clock, options))
    }

    fn request(value: usize) -> RateLimitRequest {
        RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: "k".into(),
                    value: value.to_string(),
                }],
                ..Default::default()
            }],
            hits_addend: 1,
        }
    }

    /// Six requests from six callers, each run until it waits (the runtime has one
    /// thread).
    async fn six_callers(
        decider: &Arc<Decider<Gate>>,
    ) -> Vec<JoinHandle<Result<RateLimitResponse, RlsError>>> {
        let calls = (0..6)
            .map(|n| {
                let decider = decider.clone();
                tokio::spawn(async move { decider.decide(&request(n)).await })
            })
            .collect();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        calls
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_beyond_the_bound_wait_their_turn_and_are_all_answered() {
        let decider = decider(2);
        let calls = six_callers(&decider).await;
        assert_eq!(decider.store().inside.load(Ordering::SeqCst), 2);
        // A waiting request whose caller gives up leaves the line without taking a turn.
        calls[3].abort();
        decider.store().through.add_permits(6);
        let mut answered = 0;
        for (n, call) in calls.into_iter().enumerate() {
            match call.await {
                Ok(answer) => {
                    assert_eq!(answer.expect("decided").overall_code(), Code::Ok);
                    answered += 1;
                }
                Err(error) => assert!(n == 3 && error.is_cancelled()),
            }
        }
        assert_eq!(answered, 5);
        let store = decider.store();
        assert_eq!(store.most.load(Ordering::SeqCst), 2);
        let order = store.order.lock().await;
        // Each key ends with its value's digit (then the key's framing). The first three
        // went in arrival order; after caller 3 gave up, the newest first (the line's
        // order is tested in `admission`).
        let values: Vec<u8> = order
            .iter()
            .filter_map(|key| key.iter().rev().find(|b| b.is_ascii_digit()).copied())
            .collect();
        assert_eq!(values, b"01254");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_caller_with_a_deadline_is_shed_in_time_for_the_failure_mode_to_answer() {
        // A 10 ms store deadline; callers that give up after 25 ms wait at most 15 ms.
        let decider = with_deadline(2, Some(Duration::from_millis(10)));
        let calls: Vec<_> = (0..4)
            .map(|n| {
                let decider = decider.clone();
                tokio::spawn(async move {
                    decider
                        .decide_within(&request(n), Some(Duration::from_millis(25)))
                        .await
                })
            })
            .collect();
        // A caller without a deadline waits for its turn however long it takes.
        let patient = {
            let decider = decider.clone();
            tokio::spawn(async move { decider.decide(&request(9)).await })
        };
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let store = decider.store();
        assert_eq!(store.inside.load(Ordering::SeqCst), 2);
        // The held two never end (the paused clock moves on once every task waits): the
        // two waiting with a deadline go on, shed, at 15 ms and not before.
        tokio::time::sleep(Duration::from_millis(14)).await;
        assert_eq!(store.inside.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(1)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(store.inside.load(Ordering::SeqCst), 4);
        assert_eq!(*store.shed.lock().await, [false, false, true, true]);
        store.through.add_permits(5);
        for call in calls {
            let answer = call.await.expect("ran");
            assert_eq!(answer.expect("decided").overall_code(), Code::Ok);
        }
        assert_eq!(
            patient.await.expect("ran").expect("decided").overall_code(),
            Code::Ok
        );
        assert_eq!(store.shed.lock().await.len(), 5);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_a_bound_every_request_is_decided_at_once() {
        let decider = decider(0);
        let calls = six_callers(&decider).await;
        assert_eq!(decider.store().inside.load(Ordering::SeqCst), 6);
        decider.store().through.add_permits(6);
        for call in calls {
            assert_eq!(
                call.await.expect("ran").expect("decided").overall_code(),
                Code::Ok
            );
        }
    }
}
