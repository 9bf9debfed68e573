//! `Failure`: why Redis gave no answer in time — a [`RedisError`] naming its shard, the
//! deadline, or shedding — and whether trying again later may help; `FailureMode`: what
//! answers instead ([`OnBackendError`]).

use std::num::NonZeroU32;
use std::sync::Arc;

use limiter::{Decision, Nanos};
use redis::RetryMethod;

use crate::error::RlsError;
use crate::store::{Batch, MemoryStore, Meter, Verdict};

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

impl OnBackendError {
    /// Its `mode` label in `rls_backend_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            OnBackendError::Error => "error",
            OnBackendError::Allow => "allow",
            OnBackendError::Deny => "deny",
            OnBackendError::Local => "local",
        }
    }
}

/// Answers the batches Redis could not, as [`OnBackendError`] says.
pub struct FailureMode {
    on_error: OnBackendError,
    /// How many replicas share each quota, for [`OnBackendError::Local`].
    replicas: NonZeroU32,
    /// This replica's share of each quota, for [`OnBackendError::Local`].
    local: MemoryStore,
}

impl FailureMode {
    /// Answers with `on_error`; `replicas` share each quota.
    pub fn new(on_error: OnBackendError, replicas: NonZeroU32) -> FailureMode {
        FailureMode {
            on_error,
            replicas,
            local: MemoryStore::new(),
        }
    }

    /// True when the mode answers by itself (`allow`, `deny`, `local`) rather than telling
    /// the caller that the backend is unavailable.
    pub fn answers_alone(&self) -> bool {
        self.on_error != OnBackendError::Error
    }

    /// The answer for `batch`, which Redis could not answer because of `failure`.
    pub fn answer(&self, batch: &Batch, failure: Failure) -> Result<Verdict, RlsError> {
        metrics::counter!("rls_backend_failures_total", "mode" => self.on_error.label())
            .increment(1);
        tracing::debug!(
            %failure,
            transient = failure.is_transient(),
            "backend failed; answering with the failure mode"
        );
        let decisions = match self.on_error {
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
            OnBackendError::Local => return Ok(self.local.check_now(&self.share(batch))),
        };
        Ok(Verdict::of(batch, decisions))
    }

    /// `batch` with this replica's share of each quota: the quota divided by the replicas,
    /// rounded down, so that the shares add up to at most the quota (the remainder, up to
    /// `replicas − 1` per window or of a bucket's burst, goes to no replica, since nothing
    /// numbers them); a quota smaller than the replicas leaves each a share of 0, which
    /// denies.
    fn share(&self, batch: &Batch) -> Batch {
        let replicas = self.replicas.get();
        let mut share = batch.clone();
        for check in &mut share.checks {
            check.meter = match check.meter {
                Meter::TokenBucket(rate) => Meter::TokenBucket(rate.share(replicas)),
                Meter::FixedWindow { period_secs, limit } => Meter::FixedWindow {
                    period_secs,
                    limit: limit / replicas,
                },
            };
        }
        share
    }

    /// Drops the local buckets that are full again.
    pub fn sweep(&self, now: Nanos) {
        self.local.sweep(now);
    }
}

/// Why a check got no answer from Redis.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Failure {
    /// Redis answered with an error, or could not be reached.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// Not answered before its caller's deadline: sent but answered too late, or still
    /// queued when the deadline passed.
    #[error("backend deadline exceeded")]
    Deadline,
    /// Never sent: the calls ahead of it would have made it miss its deadline, or its
    /// turn to be decided came too late (`shed` in [`crate::store::BucketStore::check`]).
    #[error("shed: not answerable before the deadline")]
    Overload,
    /// Never sent: `--max-in-flight` requests were already waiting on Redis.
    #[error("too many calls in flight")]
    InFlight,
}

impl Failure {
    /// The `kind` labels `rls_backend_errors_total` counts.
    pub const COUNTED_KINDS: [&'static str; 4] = ["redis", "deadline", "overload", "shard_down"];

    /// Its `kind` label in `rls_backend_errors_total` (which does not count `InFlight`:
    /// the bound answers before any backend work).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Redis(RedisError {
                cause: Cause::NotConnected | Cause::Down,
                ..
            }) => "shard_down",
            Failure::Redis(_) => "redis",
            Failure::Deadline => "deadline",
            Failure::Overload => "overload",
            Failure::InFlight => "in_flight",
        }
    }

    /// True when the same call may be answered later with nothing changed: Redis was slow,
    /// busy or reconnecting, rather than refusing the call itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Redis(error) => error.is_transient(),
            Failure::Deadline | Failure::Overload | Failure::InFlight => true,
        }
    }
}

/// An error of one Redis shard.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{shard}: {cause}")]
pub struct RedisError {
    /// The shard, as the logs name it (without credentials).
    pub shard: Arc<str>,
    /// What went wrong.
    #[source]
    pub cause: Cause,
}

/// What went wrong on a shard.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Cause {
    /// Not connected (yet): the first connection is still being made.
    #[error("not connected")]
    NotConnected,
    /// Down: its last calls failed, and calls fail at once until a probe is answered.
    #[error("down: failing fast until it answers again")]
    Down,
    /// The shard's batcher has stopped.
    #[error("batcher stopped")]
    Stopped,
    /// The batcher dropped the call without an answer.
    #[error("call dropped")]
    Dropped,
    /// The client or the server refused the call.
    #[error(transparent)]
    Client(redis::RedisError),
    /// The script answered what it never answers.
    #[error("{0}")]
    Reply(String),
}

impl RedisError {
    /// An error of `shard`.
    pub fn new(shard: &Arc<str>, cause: Cause) -> RedisError {
        RedisError {
            shard: shard.clone(),
            cause,
        }
    }

    /// True when the same call may succeed later with nothing changed.
    pub fn is_transient(&self) -> bool {
        match &self.cause {
            Cause::NotConnected | Cause::Down | Cause::Dropped => true,
            Cause::Stopped | Cause::Reply(_) => false,
            Cause::Client(error) => !matches!(error.retry_method(), RetryMethod::NoRetry),
        }
    }
}

/// What a client error of `shard` means for the callers. The client's own response
/// timeout (the backend deadline, counted from when it sent the call) fires first only
/// when the batcher ran too late to see its callers' earlier deadlines pass, on a
/// saturated machine: a deadline, not a Redis failure, which `rls_backend_errors_total`
/// must not blame on Redis.
pub fn client_failure(shard: &Arc<str>, error: redis::RedisError) -> Failure {
    if error.is_timeout() {
        Failure::Deadline
    } else {
        RedisError::new(shard, Cause::Client(error)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Check, Role};

    /// A batch of one check of `meter` at `now`.
    fn one(meter: Meter, now: Nanos) -> Batch {
        Batch {
            now,
            keys: b"k".to_vec(),
            checks: vec![Check {
                key: 0..1,
                identity: 1,
                meter,
                cost: 1,
                descriptor: 0,
                role: Role::Enforced,
            }],
            ..Batch::default()
        }
    }

    // Reproduces 5 a minute over 2 replicas allowing 6 while Redis was down: each
    // replica's share was rounded up.
    #[test]
    fn local_shares_of_the_replicas_add_up_to_at_most_the_quota() {
        let now = 1_700_000_000_000_000_000;
        let minute = std::time::Duration::from_secs(60);
        let meters = [
            Meter::TokenBucket(limiter::Rate::new(5, minute, 5)),
            Meter::FixedWindow {
                period_secs: 60,
                limit: 5,
            },
        ];
        for meter in meters {
            for (replicas, most) in [(2, 4), (3, 3), (5, 5), (6, 0)] {
                let replicas = NonZeroU32::new(replicas).expect("nonzero");
                let fleet: Vec<FailureMode> = (0..replicas.get())
                    .map(|_| FailureMode::new(OnBackendError::Local, replicas))
                    .collect();
                let allowed: usize = fleet
                    .iter()
                    .map(|replica| {
                        (0..10)
                            .filter(|_| {
                                let verdict = replica.answer(&one(meter, now), Failure::Deadline);
                                !verdict.expect("local answers").denied
                            })
                            .count()
                    })
                    .sum();
                assert_eq!(allowed, most, "{meter:?} over {replicas} replicas");
            }
        }
    }

    #[test]
    fn the_clients_own_timeout_is_a_deadline_and_other_errors_are_redis_failures() {
        let shard: Arc<str> = "redis://127.0.0.1:7000".into();
        let timeout = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(matches!(client_failure(&shard, timeout), Failure::Deadline));
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let refused = client_failure(&shard, refused);
        assert!(matches!(refused, Failure::Redis(_)));
        assert!(refused.is_transient());
        let script = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::NoScript),
            "no script",
        ));
        assert!(matches!(
            client_failure(&shard, script),
            Failure::Redis(e) if e.to_string().contains("no script")
        ));
    }

    #[test]
    fn a_malformed_reply_is_not_transient_and_names_its_shard() {
        let shard: Arc<str> = "redis://10.0.0.5:6379".into();
        let error = RedisError::new(&shard, Cause::Reply("unexpected script reply".into()));
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "redis://10.0.0.5:6379: unexpected script reply"
        );
    }
}
