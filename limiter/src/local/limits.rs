//! [`LocalLimits`]: a pod's local limits, checked as Envoy's `local_ratelimit` filter checks
//! them, and swapped at runtime without resetting unchanged buckets.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use config::{LoadOptions, LocalSection, QuotaSet};

use crate::clock::{Clock, Nanos, SystemClock};
use crate::error::LimiterError;
use crate::gcra::{Bucket, Decision, Rate};
use crate::local::actions;
use crate::local::rules::{Settings, Snapshot};
use crate::local::sampler::{self, RandomSampler, Sampler};
use crate::local::verdict::{Descriptor, Outcome, Quota, Verdict};

/// A pod's local limits: a default token bucket and descriptor buckets, decided in-process
/// with no network call. Cheap to clone: clones share the buckets, so a service keeps one to
/// [`reload`](LocalLimits::reload) while a [`RateLimitLayer`](crate::RateLimitLayer) holds
/// another.
///
/// ```
/// use limiter::{Descriptor, FakeClock, LocalLimits, local};
///
/// let section = local::parse_section("page.yaml", "
/// local:
///   token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 1s}
///   descriptors:
///     - entries: [{key: client}]          # no value: a bucket per client
///       token_bucket: {max_tokens: 1, fill_interval: 1m}
/// ")?;
/// let clock = FakeClock::new(1_700_000_000_000_000_000);
/// let limits = LocalLimits::builder(&section).clock(clock.clone()).build();
///
/// let alice = [Descriptor::new([("client", "alice")])];
/// assert!(!limits.check(&alice).is_denied());
/// let again = limits.check(&alice);
/// assert!(again.is_denied()); // alice's bucket holds one token a minute
/// assert_eq!(again.retry_after(), Some(60_000_000_000));
/// assert!(!limits.check(&[Descriptor::new([("client", "bob")])]).is_denied());
/// # Ok::<(), limiter::LimiterError>(())
/// ```
#[derive(Clone)]
pub struct LocalLimits {
    shared: Arc<Shared>,
}

struct Shared {
    snapshot: ArcSwap<Snapshot>,
    clock: Arc<dyn Clock>,
    sampler: Arc<dyn Sampler>,
    /// Serialises reloads, so two cannot both take over the state of one old snapshot.
    reloading: Mutex<()>,
}

/// Builds [`LocalLimits`] with an injected clock or sampler.
pub struct LocalLimitsBuilder {
    snapshot: Snapshot,
    clock: Arc<dyn Clock>,
    sampler: Arc<dyn Sampler>,
}

impl LocalLimitsBuilder {
    /// The clock to read (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The randomness behind `filter_enabled`/`filter_enforced` (default [`RandomSampler`]).
    pub fn sampler(mut self, sampler: impl Sampler) -> Self {
        self.sampler = Arc::new(sampler);
        self
    }

    /// The limits, every bucket full.
    pub fn build(self) -> LocalLimits {
        LocalLimits {
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(self.snapshot),
                clock: self.clock,
                sampler: self.sampler,
                reloading: Mutex::new(()),
            }),
        }
    }
}

impl LocalLimits {
    /// Limits from a validated section, on the system clock.
    pub fn new(section: &LocalSection) -> LocalLimits {
        Self::builder(section).build()
    }

    /// A builder to inject a [`Clock`] or [`Sampler`].
    pub fn builder(section: &LocalSection) -> LocalLimitsBuilder {
        LocalLimitsBuilder {
            snapshot: Snapshot::build(section, None),
            clock: Arc::new(SystemClock::new()),
            sampler: Arc::new(RandomSampler),
        }
    }

    /// Limits from the `local` section of a quota file or directory (see
    /// `docs/quota-files.md`), or from the `mode: local` rules of its `kind: RateLimit`
    /// resources (`docs/ratelimit-resource.md`), on the system clock.
    pub fn from_quota_file(path: impl AsRef<Path>) -> Result<LocalLimits, LimiterError> {
        Ok(Self::new(&read_section(path.as_ref())?))
    }

    /// Swaps in new limits. The default bucket, and each descriptor whose entries are
    /// unchanged, keep their state (a changed rate applies to it from the next check); new
    /// descriptors start full. Checks in flight finish on the old limits.
    pub fn reload(&self, section: &LocalSection) {
        let _serial = self
            .shared
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = self.shared.snapshot.load_full();
        let next = Snapshot::build(section, Some(&previous));
        self.shared.snapshot.store(Arc::new(next));
    }

    /// [`reload`](LocalLimits::reload) from a quota file or directory. On error the limits in
    /// force stay.
    pub fn reload_from_quota_file(&self, path: impl AsRef<Path>) -> Result<(), LimiterError> {
        self.reload(&read_section(path.as_ref())?);
        Ok(())
    }

    /// Checks one request given as descriptors (what the actions of the section's
    /// `rate_limits` would build), at the clock's now.
    pub fn check(&self, descriptors: &[Descriptor<'_>]) -> Verdict {
        let snapshot = self.shared.snapshot.load();
        self.decide(&snapshot, descriptors)
    }

    /// Checks an HTTP (or gRPC) request: the section's `rate_limits` actions turn it into
    /// descriptors, then as [`check`](LocalLimits::check).
    pub fn check_request<B>(&self, request: &http::Request<B>) -> Verdict {
        self.evaluate(request).0
    }

    /// Per-value buckets held now by wildcard descriptors (each map is bounded by
    /// `max_dynamic_descriptors`).
    pub fn dynamic_buckets(&self) -> usize {
        self.shared.snapshot.load().dynamic_buckets()
    }

    /// The verdict for `request` and how to answer it, from one snapshot.
    pub(crate) fn evaluate<B>(&self, request: &http::Request<B>) -> (Verdict, Settings) {
        let snapshot = self.shared.snapshot.load();
        let settings = snapshot.settings;
        if !sampler::passes(settings.filter_enabled, &*self.shared.sampler) {
            return (Verdict::SKIPPED, settings);
        }
        let descriptors = actions::descriptors(&snapshot.actions, request);
        (self.decide_enabled(&snapshot, &descriptors), settings)
    }

    fn decide(&self, snapshot: &Snapshot, descriptors: &[Descriptor<'_>]) -> Verdict {
        if !sampler::passes(snapshot.settings.filter_enabled, &*self.shared.sampler) {
            return Verdict::SKIPPED;
        }
        self.decide_enabled(snapshot, descriptors)
    }

    /// Envoy's `requestAllowed`: the matched descriptors' buckets strictest first, stopping
    /// at the first refusal without refunding, then the default bucket when nothing matched
    /// or `always_consume_default_token_bucket`.
    fn decide_enabled(&self, snapshot: &Snapshot, descriptors: &[Descriptor<'_>]) -> Verdict {
        let now = self.shared.clock.now();
        // (rank, rule, request descriptor); a request rarely has more than a few.
        let mut matched: Vec<(usize, usize, usize)> = Vec::new();
        if !snapshot.rules.is_empty() {
            for (d, descriptor) in descriptors.iter().enumerate() {
                if let Some(rule) = snapshot.find(descriptor) {
                    matched.push((snapshot.rules[rule].rank, rule, d));
                }
            }
            // Stable: equal ranks (one rule matched twice) keep request order.
            matched.sort_by_key(|&(rank, ..)| rank);
        }

        let mut reported = None;
        let mut shadowed = false;
        for &(_, index, d) in &matched {
            let rule = &snapshot.rules[index];
            let descriptor = &descriptors[d];
            let (decision, quota) = snapshot.with_bucket(index, descriptor, |bucket| {
                let decision = charge(bucket, &rule.rate, descriptor.hits_addend, now);
                (
                    decision,
                    quota(bucket, &rule.rate, rule.max_tokens, decision, now),
                )
            });
            match decision {
                Decision::Denied { retry_after, .. } if !rule.shadow => {
                    return self.refused(snapshot, quota, retry_after);
                }
                Decision::Denied { .. } => shadowed = true,
                Decision::Allowed { .. } => {}
            }
            reported.get_or_insert(quota);
        }

        if (matched.is_empty() || snapshot.settings.always_consume_default)
            && let Some(default) = &snapshot.default
        {
            // Envoy charges the default bucket one token, whatever the descriptors cost.
            let decision = default.state.check(&default.rate, 1, now);
            let quota = quota(
                &default.state,
                &default.rate,
                default.max_tokens,
                decision,
                now,
            );
            if let Decision::Denied { retry_after, .. } = decision {
                return self.refused(snapshot, quota, retry_after);
            }
            reported.get_or_insert(quota);
        }
        Verdict {
            outcome: if shadowed {
                Outcome::Shadowed
            } else {
                Outcome::Allowed
            },
            quota: reported,
        }
    }

    fn refused(&self, snapshot: &Snapshot, quota: Quota, retry_after: Nanos) -> Verdict {
        let enforced = sampler::passes(snapshot.settings.filter_enforced, &*self.shared.sampler);
        Verdict {
            outcome: if enforced {
                Outcome::Denied { retry_after }
            } else {
                Outcome::NotEnforced { retry_after }
            },
            quota: Some(quota),
        }
    }
}

impl std::fmt::Debug for LocalLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.shared.snapshot.load();
        f.debug_struct("LocalLimits")
            .field("default_bucket", &snapshot.default.is_some())
            .field("descriptors", &snapshot.rules.len())
            .field("dynamic_buckets", &snapshot.dynamic_buckets())
            .finish_non_exhaustive()
    }
}

/// Charges `hits` tokens (a negative count gives them back, then reports the bucket).
fn charge(bucket: &Bucket, rate: &Rate, hits: i64, now: Nanos) -> Decision {
    let tokens = u32::try_from(hits.unsigned_abs()).unwrap_or(u32::MAX);
    if hits < 0 {
        bucket.refund(rate, tokens, now);
        bucket.check(rate, 0, now)
    } else {
        bucket.check(rate, tokens, now)
    }
}

/// The bucket as the headers report it after `decision`.
fn quota(bucket: &Bucket, rate: &Rate, max_tokens: u32, decision: Decision, now: Nanos) -> Quota {
    let remaining = match decision {
        Decision::Allowed { remaining, .. } => remaining,
        // A refused cost may still leave tokens (cost 5 with 3 left): report them.
        Decision::Denied { .. } => bucket.check(rate, 0, now).remaining(),
    };
    let reset_after = if remaining > 0 {
        0
    } else if rate.burst() == 0 {
        u64::MAX
    } else {
        // The bucket is `reset_after` ahead of now; one token is free once it is τ − T ahead.
        (decision.reset_after().saturating_add(rate.interval())).saturating_sub(rate.tolerance())
    };
    Quota {
        limit: max_tokens,
        remaining,
        reset_after,
    }
}

/// The local limits of a quota file or directory: its `local` section, or the section
/// its resources' local rules make ([`QuotaSet::local`]).
pub fn read_section(path: &Path) -> Result<LocalSection, LimiterError> {
    section_of(QuotaSet::load(path, &LoadOptions::default())?)
}

/// The `local` section of YAML text; `name` names it in errors.
pub fn parse_section(name: &str, yaml: &str) -> Result<LocalSection, LimiterError> {
    section_of(QuotaSet::from_sources(
        [(name, yaml)],
        &LoadOptions::default(),
    )?)
}

fn section_of(set: QuotaSet) -> Result<LocalSection, LimiterError> {
    match set.local() {
        Some(section) => Ok(section.clone()),
        None => Err(LimiterError::NoLocalSection {
            files: set
                .files()
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
