//! The Rate Limit Quota Service (RLQS): Envoy's `rate_limit_quota` filter reports its usage
//! per bucket over one stream, and rls pushes back each Envoy's share of the bucket's quota
//! as a token bucket that Envoy enforces itself, with no call per request.
//!
//! By concept: `mapping.rs` (a bucket id to a quota rule: [`BucketMap`]), `assign.rs` (the
//! share maths, pure), `session.rs` (one stream: its buckets, their demand, the grants it
//! holds), `state.rs` (where the Envoys' weights meet: [`ShareBackend`], [`MemoryShares`]),
//! `redis.rs` (the weights in Redis: [`RedisShares`]), `service.rs` (the gRPC stream and the
//! push clock: [`RlqsService`]). `docs/rlqs.md` is the user's side.

pub mod assign;
pub mod mapping;
pub mod redis;
pub mod service;
pub mod session;
pub mod state;

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

pub use mapping::{BucketMap, Policy, Unmatched};
pub use redis::RedisShares;
pub use service::{QuotaSource, RlqsService};
pub use session::Limits;
pub use state::{MemoryShares, ShareBackend};

use state::{ClientId, Contribution, Split};

use crate::decide::Decider;
use crate::error::SettingsError;
use crate::settings::Settings;
use crate::store::redis::{OnBackendError, RedisStore};

/// How many push intervals an Envoy's weight counts for unless renewed: a replica that
/// stops renewing (it died, or stalled) lets the others' shares grow back after this.
pub const WEIGHT_LIFETIME_PUSHES: u32 = 5;

/// The settings of the RLQS service.
#[derive(Clone, Debug, PartialEq)]
pub struct RlqsOptions {
    /// Buckets without a limiting rule.
    pub policy: Policy,
    /// How often every stream's buckets are assigned again.
    pub push_interval: Duration,
    /// Bounds and lifetimes of each stream's buckets.
    pub limits: Limits,
    /// What answers when the backend fails.
    pub on_backend_error: OnBackendError,
    /// How many replicas share each quota, for [`OnBackendError::Local`].
    pub replicas: NonZeroU32,
    /// The largest message a stream may send, refused from its length before it is buffered.
    pub max_message_bytes: NonZeroUsize,
}

/// `--rlqs-max-message-bytes` by default: 4 MiB, tonic's own default, room for a report of
/// the default `--rlqs-max-buckets` buckets with ids of a few hundred bytes each.
pub const DEFAULT_MAX_MESSAGE_BYTES: NonZeroUsize = NonZeroUsize::new(4 << 20).unwrap();

impl Default for RlqsOptions {
    fn default() -> Self {
        RlqsOptions {
            policy: Policy::default(),
            push_interval: Duration::from_secs(1),
            limits: Limits {
                max_buckets: 10_000,
                abandon_after: Duration::from_secs(60),
                ttl: Duration::from_secs(5),
            },
            on_backend_error: OnBackendError::Error,
            replicas: NonZeroU32::MIN,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl RlqsOptions {
    /// The options `settings` give; refuses an assignment lifetime that a late push would
    /// let expire.
    pub fn from_settings(settings: &Settings) -> Result<RlqsOptions, SettingsError> {
        let options = RlqsOptions {
            policy: Policy {
                unmatched: settings.rlqs_unmatched,
                global_shadow: settings.shadow_mode,
            },
            push_interval: settings.rlqs_push_interval,
            limits: Limits {
                max_buckets: settings.rlqs_max_buckets,
                abandon_after: settings.rlqs_abandon_after,
                ttl: settings.rlqs_assignment_ttl,
            },
            on_backend_error: settings.on_backend_error.into(),
            replicas: settings.replicas,
            max_message_bytes: settings.rlqs_max_message_bytes,
        };
        if options.limits.ttl < options.push_interval * 2 {
            return Err(SettingsError::Invalid {
                name: "--rlqs-assignment-ttl",
                value: humantime::format_duration(options.limits.ttl).to_string(),
                expected: "at least twice --rlqs-push-interval, so that one late push \
                           does not let Envoy's assignments expire",
            });
        }
        Ok(options)
    }

    /// How long an Envoy's weight counts unless renewed.
    pub fn weight_lifetime(&self) -> Duration {
        self.push_interval * WEIGHT_LIFETIME_PUSHES
    }
}

/// Parses a whole, positive number of seconds (`5s`, `1m`): Envoy 1.40 reads durations in
/// whole seconds, so a fraction would not take effect.
pub fn whole_seconds(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.subsec_nanos() != 0 || duration.is_zero() {
        return Err(format!(
            "{text} is not a whole, positive number of seconds (Envoy reads no fraction)"
        ));
    }
    Ok(duration)
}

/// Parses a push interval: at least 100 ms.
pub fn push_interval(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_millis(100) {
        return Err(format!("{text} is shorter than 100ms"));
    }
    Ok(duration)
}

/// Where the Envoys' weights meet, as the server was set up.
pub enum Shares {
    /// In this process: one replica.
    Memory(MemoryShares),
    /// In the Redis of the bucket store: several replicas.
    Redis(RedisShares),
}

impl ShareBackend for Shares {
    async fn exchange(&self, contributions: &[Contribution]) -> Vec<Split> {
        match self {
            Shares::Memory(shares) => shares.exchange(contributions).await,
            Shares::Redis(shares) => shares.exchange(contributions).await,
        }
    }

    async fn forget(&self, client: ClientId, keys: &[Arc<[u8]>]) {
        match self {
            Shares::Memory(shares) => shares.forget(client, keys).await,
            Shares::Redis(shares) => shares.forget(client, keys).await,
        }
    }
}

/// The RLQS part of a server: its options, and where the weights meet.
pub struct RlqsSetup {
    /// The options.
    pub options: RlqsOptions,
    /// Where the weights meet.
    pub shares: Shares,
}

impl RlqsSetup {
    /// Weights in this process.
    pub fn memory(options: RlqsOptions) -> RlqsSetup {
        RlqsSetup {
            shares: Shares::Memory(MemoryShares::new(options.weight_lifetime())),
            options,
        }
    }

    /// Weights in the Redis of `decider`'s store, with its failure mode.
    pub fn redis(decider: &Arc<Decider<RedisStore>>, options: RlqsOptions) -> RlqsSetup {
        let shares = RedisShares::new(
            decider.clone(),
            options.weight_lifetime(),
            options.on_backend_error,
            options.replicas,
        );
        RlqsSetup {
            shares: Shares::Redis(shares),
            options,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_envoy_would_truncate_are_refused() {
        assert_eq!(whole_seconds("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(whole_seconds("2m"), Ok(Duration::from_secs(120)));
        assert!(whole_seconds("1500ms").is_err());
        assert!(whole_seconds("0s").is_err());
        assert!(push_interval("50ms").is_err());
        assert_eq!(push_interval("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn the_settings_table_of_the_rlqs_guide_is_the_flags_with_their_variables_and_defaults() {
        let guide = include_str!("../../../docs/rlqs.md");
        let table = guide
            .split("\n## Settings\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a Settings section");
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `--")).collect();
        let serve = <Settings as clap::Args>::augment_args(clap::Command::new("serve"));
        let flags: Vec<&clap::Arg> = serve
            .get_arguments()
            .filter(|a| a.get_id().as_str().starts_with("rlqs_"))
            .collect();
        assert_eq!(rows.len(), flags.len(), "{rows:#?}");
        for arg in flags {
            let long = format!("`--{}", arg.get_long().expect("a long flag"));
            let row = rows
                .iter()
                .find(|r| r.starts_with(&format!("| {long}")))
                .unwrap_or_else(|| panic!("{long} is not in docs/rlqs.md"));
            let env = arg.get_env().expect("a variable").to_string_lossy();
            assert!(row.contains(&format!("| `{env}` |")), "{row}");
            let default = arg.get_default_values()[0].to_string_lossy();
            assert!(row.contains(&format!("| `{default}` |")), "{row}");
        }
    }

    #[test]
    fn an_assignment_lifetime_a_late_push_would_outlive_is_refused() {
        let mut settings = Settings::defaults();
        assert_eq!(
            RlqsOptions::from_settings(&settings).expect("defaults"),
            RlqsOptions::default()
        );
        settings.rlqs_assignment_ttl = Duration::from_secs(1);
        let error = RlqsOptions::from_settings(&settings).unwrap_err();
        assert!(
            error.to_string().contains("--rlqs-assignment-ttl"),
            "{error}"
        );
    }
}
