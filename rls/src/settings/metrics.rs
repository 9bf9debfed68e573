//! `MetricsArgs`: a listener of its own for Prometheus metrics — the reference's
//! `USE_PROMETHEUS`, `PROMETHEUS_ADDR` and `PROMETHEUS_PATH`, as Envoy Gateway sets them.

use std::net::SocketAddr;

use clap::Args;

/// Settings of the metrics listener.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on this address too, at --metrics-path (the HTTP port's
    /// /metrics stays).
    #[arg(long, env = "RLS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// The path of the metrics page on --metrics-addr.
    #[arg(
        long,
        env = "RLS_METRICS_PATH",
        default_value = "/metrics",
        value_parser = path,
        requires = "metrics_addr"
    )]
    pub metrics_path: String,
}

/// A path: it starts with `/`.
fn path(value: &str) -> Result<String, String> {
    if value.starts_with('/') {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} does not start with /"))
    }
}
