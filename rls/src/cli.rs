//! `Cli`: the `rls` command line — `serve`, `check`, `query`, `render`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::settings::{AlgorithmArg, Settings};

/// Envoy Rate Limit Service: token buckets or fixed windows from declarative quota files.
#[derive(Debug, Parser)]
#[command(name = "rls", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve ShouldRateLimit over gRPC, and health, /json and /metrics over HTTP.
    #[command(after_long_help = REFERENCE_ENV_HELP)]
    Serve(Box<Settings>),
    /// Validate quota files and print a summary; exit 1 with the error otherwise.
    Check(CheckArgs),
    /// Send one ShouldRateLimit request to a running service and print the answer.
    Query(QueryArgs),
    /// Print the proxy configuration (Envoy or Istio) for the RateLimit resources of quota
    /// files.
    Render(crate::render::RenderArgs),
}

/// The reference service's variables `serve` honours when neither the flag nor the
/// `RLS_*` variable is set (docs/migrating.md has the full mapping).
const REFERENCE_ENV_HELP: &str = "\
Also read, for drop-in migration from envoyproxy/ratelimit, when the flag and its RLS_* \
variable are unset:
  RUNTIME_ROOT, RUNTIME_SUBDIRECTORY, RUNTIME_APPDIRECTORY  -> --config
  GRPC_HOST, GRPC_PORT -> --grpc-addr        HOST, PORT -> --http-addr
  SHADOW_MODE -> --shadow-mode               MERGE_DOMAIN_CONFIG -> --merge-domains
  LIMIT_RESPONSE_HEADERS_ENABLED -> --response-headers
  LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER, LIMIT_RESET_HEADER -> the header names
  STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT -> --stop-increment-when-over-limit
  LOG_LEVEL -> --log-level                   LOG_FORMAT -> --log-format";

/// Arguments of `rls check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Quota file, or directory of quota files.
    #[arg(long, env = "RLS_CONFIG", value_name = "PATH")]
    pub config: PathBuf,
    /// Let several quota documents add descriptors to one domain.
    #[arg(long, env = "RLS_MERGE_DOMAINS")]
    pub merge_domains: bool,
    /// Algorithm of limits whose quota file does not name one.
    #[arg(long, env = "RLS_DEFAULT_ALGORITHM", value_enum, default_value_t = AlgorithmArg::TokenBucket)]
    pub default_algorithm: AlgorithmArg,
}

/// Arguments of `rls query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Address of the service: host:port or http://host:port.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub addr: String,
    /// The domain.
    #[arg(long)]
    pub domain: String,
    /// One descriptor as key=value pairs, comma-separated (`path=/a,method=GET`); repeat
    /// the flag for several descriptors. A pair without `=` has an empty value.
    #[arg(long = "descriptor", required = true, value_name = "K=V,...")]
    pub descriptors: Vec<String>,
    /// The request's hits_addend.
    #[arg(long, default_value_t = 1)]
    pub hits: u32,
    /// Print the answer as proto3 JSON.
    #[arg(long)]
    pub json: bool,
}
