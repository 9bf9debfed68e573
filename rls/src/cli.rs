//! `Cli`: the `rls` command line — `serve`, `check`, `query`, `render` — and [`command`],
//! which adds the reference variables each reads to its `--help`.

use clap::{ArgMatches, Args, CommandFactory, Parser, Subcommand};

use crate::error::SettingsError;
use crate::settings::{QuotaArgs, Settings, reference};

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
    /// Print the proxy configuration (Envoy or Istio) for the RateLimit resources of quota
    /// files.
    Render(crate::render::RenderArgs),
}

/// The command line as the binary parses it: [`Cli`], with the reference service's
/// variables each subcommand reads listed in its `--help`.
pub fn command() -> clap::Command {
    let with_reference_help = |command: clap::Command| {
        let help = reference::help(&command);
        command.after_long_help(help)
    };
    Cli::command()
        .mut_subcommand("serve", with_reference_help)
        .mut_subcommand("check", with_reference_help)
}

impl Cli {
    /// Fills what flags and `RLS_*` variables left unset from the reference service's
    /// variables, read by `env`; `matches` are the command line's, from [`command`].
    pub fn apply_reference_env(
        &mut self,
        matches: &ArgMatches,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        let Some((_, sub)) = matches.subcommand() else {
            return Ok(());
        };
        match &mut self.command {
            Command::Serve(settings) => settings.apply_reference_env(sub, env),
            Command::Check(args) => args.quotas.apply_reference_env(sub, env),
            Command::Query(_) | Command::Render(_) => Ok(()),
        }
    }
}

/// Arguments of `rls check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The quota files, read as `rls serve` reads them.
    #[command(flatten)]
    pub quotas: QuotaArgs,
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
