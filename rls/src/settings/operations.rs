//! `OperationsArgs`: the settings of running `rls serve` in production — per-rule
//! metrics, draining on SIGTERM, and how long gRPC connections live.

use std::time::Duration;

use clap::Args;

use crate::connections::ConnectionOptions;
use crate::snapshot::StatsOptions;

/// Metrics, draining and connection settings of `rls serve`.
#[derive(Debug, Clone, Args)]
pub struct OperationsArgs {
    /// Hits above this share of a rule's limit count as near_limit in the per-rule
    /// metrics (0 to 1).
    #[arg(long, env = "RLS_NEAR_LIMIT_RATIO", value_name = "RATIO",
          default_value_t = StatsOptions::DEFAULT_NEAR_LIMIT_RATIO, value_parser = parse_ratio)]
    pub near_limit_ratio: f32,

    /// Most request values kept as metric labels per rule with detailed_metric or
    /// value_to_metric; further values count under `_overflow_`.
    #[arg(long, env = "RLS_MAX_METRIC_VALUES", value_name = "N",
          default_value_t = StatsOptions::DEFAULT_MAX_VALUES)]
    pub max_metric_values: usize,

    /// On SIGTERM, how long to keep serving, unready, before refusing new connections, so
    /// that endpoints and proxies move away first.
    #[arg(long, env = "RLS_DRAIN_DELAY", value_parser = humantime::parse_duration, default_value = "5s")]
    pub drain_delay: Duration,

    /// After the drain delay, how long the calls in flight may take to finish; then the
    /// connections still open are closed.
    #[arg(long, env = "RLS_SHUTDOWN_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub shutdown_timeout: Duration,

    /// Tell a gRPC connection to go away (GOAWAY) once it is this old, give or take a
    /// tenth, so that proxies spread their connections over new replicas (0s: never).
    #[arg(long, env = "RLS_MAX_CONNECTION_AGE", value_parser = humantime::parse_duration, default_value = "24h")]
    pub max_connection_age: Duration,

    /// After that GOAWAY, how long the connection's calls may take before it is closed.
    #[arg(long, env = "RLS_MAX_CONNECTION_AGE_GRACE", value_parser = humantime::parse_duration, default_value = "1h")]
    pub max_connection_age_grace: Duration,
}

/// A ratio in [0, 1].
pub fn parse_ratio(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0 to 1, got {text:?}")),
    }
}

impl OperationsArgs {
    /// How per-rule counters are kept.
    pub fn stats(&self) -> StatsOptions {
        StatsOptions {
            near_limit_ratio: self.near_limit_ratio,
            max_values: self.max_metric_values,
        }
    }

    /// How gRPC connections live and end.
    pub fn connections(&self) -> ConnectionOptions {
        ConnectionOptions {
            max_age: Some(self.max_connection_age).filter(|age| !age.is_zero()),
            age_grace: self.max_connection_age_grace,
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_outside_zero_to_one_is_refused() {
        assert_eq!(parse_ratio("0.8"), Ok(0.8));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "NaN", "inf", "most"] {
            assert!(parse_ratio(bad).is_err(), "{bad}");
        }
    }
}
