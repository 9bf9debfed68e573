//! [`RenderArgs`]: the command line of `rls render envoy|istio`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::settings::QuotaArgs;

/// Arguments of `rls render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// What to render.
    #[command(subcommand)]
    pub target: RenderTarget,
}

impl RenderArgs {
    /// The quota files' arguments of the target chosen.
    pub fn quotas_mut(&mut self) -> &mut QuotaArgs {
        match &mut self.target {
            RenderTarget::Envoy(args) => &mut args.quotas,
            RenderTarget::Istio(args) => &mut args.quotas,
        }
    }
}

/// The proxy configuration to print.
#[derive(Debug, Subcommand)]
pub enum RenderTarget {
    /// A runnable Envoy bootstrap (or, with --fragment, the pieces to paste into one).
    Envoy(EnvoyArgs),
    /// Istio EnvoyFilters, one or two per RateLimit resource.
    Istio(IstioArgs),
}

/// Arguments of `rls render envoy`.
#[derive(Debug, Args)]
pub struct EnvoyArgs {
    /// The quota files, read as `rls serve` and `rls check` read them.
    #[command(flatten)]
    pub quotas: QuotaArgs,
    /// Where Envoy reaches rls's gRPC port.
    #[arg(long, value_name = "HOST:PORT")]
    pub rls_address: String,
    /// The listener clients call.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:10000")]
    pub listen: SocketAddr,
    /// The service behind Envoy. Without it the bootstrap answers 200 itself, from a second
    /// listener (--upstream-listen) reached through a cluster: Envoy applies no rate limits
    /// on a route that is itself a direct_response.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: Option<String>,
    /// The address of the bootstrap's own upstream listener, when --upstream is not given.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:10001",
        conflicts_with = "upstream"
    )]
    pub upstream_listen: SocketAddr,
    /// Envoy's admin interface (stats, /ready).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// How long Envoy waits for rls before letting the request through uncounted.
    #[arg(long, value_name = "DURATION", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub rls_timeout: Duration,
    /// Print only what to paste into an existing Envoy config: the HTTP filters, the rls
    /// cluster and each virtual host's rate-limit configuration.
    #[arg(long)]
    pub fragment: bool,
}

/// Arguments of `rls render istio`.
#[derive(Debug, Args)]
pub struct IstioArgs {
    /// The quota files, read as `rls serve` and `rls check` read them.
    #[command(flatten)]
    pub quotas: QuotaArgs,
    /// The rls Service's gRPC port, as host:port; Envoy reaches it through Istio's own
    /// cluster for it, `outbound|PORT||HOST`.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "rls.rls.svc.cluster.local:8081"
    )]
    pub rls_address: String,
    /// How long Envoy waits for rls before letting the request through uncounted.
    #[arg(long, value_name = "DURATION", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub rls_timeout: Duration,
}

/// `host:port` split, the port a number.
pub(crate) fn host_port(address: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{address:?}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow::anyhow!("{address:?}: the port must be a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        anyhow::bail!("{address:?}: expected HOST:PORT");
    }
    Ok((host.to_owned(), port))
}
