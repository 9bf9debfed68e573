//! `BucketStore`: where bucket state lives. A request's limits arrive as one [`Batch`] and
//! leave as one [`Verdict`]: a [`Decision`] per check and whether the request is denied.
//! Stores: [`MemoryStore`] (`memory.rs`) and [`redis::RedisStore`] (`redis/`); bucket
//! keys are written by `keys.rs`.

pub mod keys;
mod memory;
pub mod redis;

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use config::{Algorithm, Limit};
use limiter::{Decision, Nanos, Rate};

pub use keys::BucketKey;
pub use memory::MemoryStore;

use crate::error::RlsError;

/// How a descriptor's outcome counts towards the request's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Over limit denies the request.
    Enforced,
    /// Evaluated and reported OK: never denies.
    Shadow,
    /// Denies only when every quota-mode descriptor of the request is over.
    Quota,
    /// Quota mode in a request where some quota-mode descriptor passes whatever happens
    /// (in shadow mode, or with nothing to check): reported over in its status, it never
    /// denies the request.
    Reported,
}

/// What a check counts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meter {
    /// A GCRA token bucket.
    TokenBucket(Rate),
    /// An epoch-aligned fixed window of `period_secs` allowing `limit` hits.
    FixedWindow {
        /// Window length in seconds.
        period_secs: u64,
        /// Hits allowed per window.
        limit: u32,
    },
}

impl From<&Limit> for Meter {
    fn from(limit: &Limit) -> Meter {
        match limit.algorithm {
            Algorithm::TokenBucket => Meter::TokenBucket(Rate::new(
                limit.requests_per_unit,
                limit.period(),
                limit.burst,
            )),
            Algorithm::FixedWindow => Meter::FixedWindow {
                period_secs: limit.period_secs(),
                limit: limit.requests_per_unit,
            },
        }
    }
}

/// The request descriptor a check belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its index in the request.
    pub descriptor: usize,
    /// How its outcome counts.
    pub role: Role,
    /// Tokens (hits) it takes from each of its buckets; 0 checks without counting.
    pub cost: u32,
}

/// One limit of one descriptor to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The bucket key: a range of [`Batch::keys`].
    pub key: Range<usize>,
    /// Length of the key's identity part (the descriptor, without which of its limits).
    pub identity: usize,
    /// How it counts.
    pub meter: Meter,
    /// Tokens (hits) this request takes; 0 checks without counting.
    pub cost: u32,
    /// Index of the request descriptor it belongs to.
    pub descriptor: usize,
    /// How its outcome counts.
    pub role: Role,
}

/// All checks of one request, in descriptor order. The store charges the request's token
/// buckets only if the request passes as a whole ([`request_denied`]): a denied request
/// takes no tokens from any bucket. Fixed windows count every hit, as the reference does.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The time of the request, read once.
    pub now: Nanos,
    /// Every key of the batch, back to back (one allocation per request).
    pub keys: Vec<u8>,
    /// The checks.
    pub checks: Vec<Check>,
    /// Global shadow mode: the request always passes.
    pub global_shadow: bool,
    /// Fixed windows: if any counter would go over, increment only those that go over.
    pub stop_increment: bool,
}

impl Batch {
    /// Adds a check of `meter` on the bucket `key` names, for `owner`.
    pub fn push<'e>(
        &mut self,
        meter: Meter,
        key: BucketKey<'_, impl Iterator<Item = (&'e str, &'e str)>>,
        owner: Owner,
    ) {
        let start = self.keys.len();
        let identity = key.write(&mut self.keys, &meter);
        self.checks.push(Check {
            key: start..self.keys.len(),
            identity,
            meter,
            cost: owner.cost,
            descriptor: owner.descriptor,
            role: owner.role,
        });
    }

    /// The key bytes of `check`.
    pub fn key(&self, check: &Check) -> &[u8] {
        &self.keys[check.key.clone()]
    }

    /// The checks of each descriptor that has any, as index ranges: checks come in
    /// descriptor order, one run per descriptor.
    pub fn descriptor_runs(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut start = 0;
        self.checks
            .chunk_by(|a, b| a.descriptor == b.descriptor)
            .map(move |run| {
                start += run.len();
                start - run.len()..start
            })
    }

    /// The identity part of `check`'s key: the same for every limit of its descriptor.
    pub fn identity(&self, check: &Check) -> &[u8] {
        &self.keys[check.key.start..check.key.start + check.identity]
    }
}

/// What the store decided for a batch: one decision per check, in order, and whether the
/// request is denied, worked out once ([`request_denied`]) by the store that charged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// One per check of the batch.
    pub decisions: Vec<Decision>,
    /// The request is over its limits: its answer's `overall_code` is `OVER_LIMIT`.
    pub denied: bool,
    /// The checks answered from a local cache of buckets known to be empty, without the
    /// backend (indices into the batch's checks; usually none).
    pub cached: Vec<usize>,
}

impl Verdict {
    /// The verdict on `batch` of `decisions`, for a store that charged nothing else.
    pub fn of(batch: &Batch, decisions: Vec<Decision>) -> Verdict {
        let denied = request_denied(batch, &decisions);
        Verdict {
            decisions,
            denied,
            cached: Vec::new(),
        }
    }
}

/// Where bucket state lives.
pub trait BucketStore: Send + Sync + 'static {
    /// Checks every bucket of `batch`. With `shed`, the request's turn
    /// (`--max-concurrent-requests`) did not come while its caller could still be answered
    /// in time: a store with a failure mode answers with it at once, without the backend.
    fn check(
        &self,
        batch: &Batch,
        shed: bool,
    ) -> impl Future<Output = Result<Verdict, RlsError>> + Send;

    /// The store's name in metrics (`backend` label): `memory`, `redis`.
    fn kind(&self) -> &'static str {
        "other"
    }

    /// How long a check may take at most, when the store bounds it (`--backend-timeout`):
    /// a request waiting for its turn is shed in time for the store to answer before its
    /// caller's deadline.
    fn deadline(&self) -> Option<Duration> {
        None
    }

    /// Whether the store can answer as configured now (readiness): for Redis, while some
    /// shard answers or the failure mode answers by itself.
    fn is_ready(&self) -> bool {
        true
    }

    /// Drops state that no longer matters at `now`; called every few seconds.
    fn sweep(&self, now: Nanos) {
        let _ = now;
    }
}

/// Whether a request with these decisions is denied: some enforced descriptor is over, or
/// the request has quota-mode descriptors and all of them are over; never in global
/// shadow mode. One definition serves every store, which returns it in its [`Verdict`].
pub fn request_denied(batch: &Batch, decisions: &[Decision]) -> bool {
    if batch.global_shadow {
        return false;
    }
    let mut quota_seen = false;
    let mut quota_all_over = true;
    for run in batch.descriptor_runs() {
        let over = decisions[run.clone()].iter().any(|d| !d.is_allowed());
        match batch.checks[run.start].role {
            Role::Enforced if over => return true,
            Role::Quota => {
                quota_seen = true;
                quota_all_over &= over;
            }
            _ => {}
        }
    }
    quota_seen && quota_all_over
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(roles: &[(usize, Role)]) -> Batch {
        Batch {
            checks: roles
                .iter()
                .map(|&(descriptor, role)| Check {
                    key: 0..0,
                    identity: 0,
                    meter: Meter::FixedWindow {
                        period_secs: 1,
                        limit: 1,
                    },
                    cost: 1,
                    descriptor,
                    role,
                })
                .collect(),
            ..Batch::default()
        }
    }

    const OK: Decision = Decision::Allowed {
        remaining: 1,
        reset_after: 0,
    };
    const OVER: Decision = Decision::Denied {
        retry_after: 1,
        reset_after: 1,
    };

    #[test]
    fn an_enforced_descriptor_over_its_limit_denies_the_request() {
        let b = batch(&[(0, Role::Enforced), (1, Role::Enforced)]);
        assert!(request_denied(&b, &[OK, OVER]));
        assert!(!request_denied(&b, &[OK, OK]));
    }

    #[test]
    fn a_shadow_descriptor_never_denies_the_request() {
        let b = batch(&[(0, Role::Shadow)]);
        assert!(!request_denied(&b, &[OVER]));
    }

    #[test]
    fn quota_mode_denies_only_when_every_quota_descriptor_is_over() {
        let b = batch(&[(0, Role::Quota), (1, Role::Quota), (2, Role::Enforced)]);
        assert!(!request_denied(&b, &[OVER, OK, OK]));
        assert!(request_denied(&b, &[OVER, OVER, OK]));
    }

    #[test]
    fn a_descriptor_is_over_when_any_of_its_limits_is_over() {
        let b = batch(&[(0, Role::Enforced), (0, Role::Enforced)]);
        assert!(request_denied(&b, &[OK, OVER]));
    }

    #[test]
    fn a_reported_quota_descriptor_never_denies_the_request() {
        let b = batch(&[(0, Role::Reported), (1, Role::Reported)]);
        assert!(!request_denied(&b, &[OVER, OVER]));
    }

    #[test]
    fn global_shadow_mode_lets_every_request_pass() {
        let mut b = batch(&[(0, Role::Enforced)]);
        b.global_shadow = true;
        assert!(!request_denied(&b, &[OVER]));
    }
}
