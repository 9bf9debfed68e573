//! `LeaseArgs`: leased tokens for hot buckets (`--lease`, `--lease-threshold`,
//! `--lease-span`), for the Redis backend.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::error::SettingsError;
use crate::store::redis::LeaseOptions;

/// The `--lease` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeaseMode {
    /// Every check goes to Redis.
    Off,
    /// Hot buckets are leased.
    Auto,
}

/// Leased tokens for hot buckets.
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    /// Lease tokens of hot buckets from Redis and answer from them locally (never over the
    /// quota; tokens parked at one replica while another denies are at most replicas × the
    /// largest lease). Redis backend only.
    #[arg(long, env = "RLS_LEASE", value_enum, default_value_t = LeaseMode::Off)]
    pub lease: LeaseMode,

    /// Checks a second of one bucket, at this replica, above which it is leased.
    #[arg(
        long,
        env = "RLS_LEASE_THRESHOLD",
        default_value_t = 100,
        value_name = "N"
    )]
    pub lease_threshold: u32,

    /// How much of a bucket's traffic here one lease holds, and how long unused tokens are
    /// held before they are handed back.
    #[arg(long, env = "RLS_LEASE_SPAN", value_parser = humantime::parse_duration,
          default_value = "10ms", value_name = "DURATION")]
    pub lease_span: Duration,
}

impl LeaseArgs {
    /// The store's leasing, refused where it cannot take effect.
    pub fn options(&self, redis: bool) -> Result<Option<LeaseOptions>, SettingsError> {
        match self.lease {
            LeaseMode::Off => Ok(None),
            LeaseMode::Auto if !redis => Err(SettingsError::Conflict {
                setting: "--lease auto",
                reason: "needs --backend redis: memory buckets are already local",
            }),
            LeaseMode::Auto if self.lease_span.is_zero() => Err(SettingsError::Conflict {
                setting: "--lease-span",
                reason: "must be longer than zero",
            }),
            LeaseMode::Auto => Ok(Some(LeaseOptions {
                threshold: self.lease_threshold,
                span: self.lease_span,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(lease: LeaseMode, span_ms: u64) -> LeaseArgs {
        LeaseArgs {
            lease,
            lease_threshold: 100,
            lease_span: Duration::from_millis(span_ms),
        }
    }

    #[test]
    fn leasing_is_refused_where_it_cannot_take_effect() {
        assert_eq!(args(LeaseMode::Off, 10).options(false).expect("fine"), None);
        assert!(args(LeaseMode::Auto, 10).options(false).is_err());
        assert!(args(LeaseMode::Auto, 0).options(true).is_err());
        let on = args(LeaseMode::Auto, 10).options(true).expect("fine");
        assert_eq!(on.map(|o| o.span), Some(Duration::from_millis(10)));
    }
}
