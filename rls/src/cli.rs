//! `Cli`: the `rls` command line — `serve`, `check`, `query`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::settings::Settings;

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
    Serve(Box<Settings>),
    /// Validate quota files and print a summary; exit 1 with the error otherwise.
    Check(CheckArgs),
    /// Send one ShouldRateLimit request to a running service and print the answer.
    Query(QueryArgs),
}

/// Arguments of `rls check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Quota file, or directory of quota files.
    #[arg(long, env = "RLS_CONFIG", value_name = "PATH")]
    pub config: PathBuf,
    /// Let several quota documents add descriptors to one domain.
    #[arg(long, env = "RLS_MERGE_DOMAINS")]
    pub merge_domains: bool,
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
