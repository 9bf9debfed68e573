//! `Cli`: the `rls` command line — `serve`, `check`, `query`, `render` — and [`command`],
//! which adds the reference variables each reads to its `--help`; [`as_invoked`], which
//! makes a binary started as `ratelimit` (the reference's name) serve.

use std::ffi::OsString;
use std::path::Path;

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
        .mut_subcommand("render", |render| {
            render
                .mut_subcommand("envoy", with_reference_help)
                .mut_subcommand("istio", with_reference_help)
        })
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
            Command::Render(args) => match sub.subcommand() {
                Some((_, target)) => args.quotas_mut().apply_reference_env(target, env),
                None => Ok(()),
            },
            Command::Query(_) => Ok(()),
        }
    }
}

/// The name the reference's binary has: Envoy Gateway starts `/bin/ratelimit` with no
/// argument, its settings in the environment.
pub const REFERENCE_BINARY: &str = "ratelimit";

/// The command line as `rls` parses it: when the program was started as
/// [`REFERENCE_BINARY`] and no subcommand follows (no argument, or a flag first), `serve`
/// is put before the rest, so that `ratelimit` alone serves as the reference does.
pub fn as_invoked(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let as_reference = args
        .first()
        .and_then(|program| Path::new(program).file_name())
        .is_some_and(|name| name == REFERENCE_BINARY);
    let no_subcommand = args
        .get(1)
        .is_none_or(|first| first.to_string_lossy().starts_with('-'));
    if as_reference && no_subcommand && !is_help_or_version(args.get(1)) {
        args.insert(1, "serve".into());
    }
    args
}

fn is_help_or_version(arg: Option<&OsString>) -> bool {
    arg.is_some_and(|a| ["-h", "--help", "-V", "--version"].iter().any(|f| a == *f))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn invoked(args: &[&str]) -> Vec<String> {
        as_invoked(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ratelimit_alone_or_with_flags_serves_and_rls_is_unchanged() {
        assert_eq!(invoked(&["/bin/ratelimit"]), ["/bin/ratelimit", "serve"]);
        assert_eq!(
            invoked(&["ratelimit", "--grpc-addr", "127.0.0.1:0"]),
            ["ratelimit", "serve", "--grpc-addr", "127.0.0.1:0"]
        );
        assert_eq!(invoked(&["ratelimit", "check"]), ["ratelimit", "check"]);
        assert_eq!(invoked(&["ratelimit", "--help"]), ["ratelimit", "--help"]);
        assert_eq!(invoked(&["/usr/local/bin/rls"]), ["/usr/local/bin/rls"]);
        assert_eq!(invoked(&["rls", "--config", "x"]), ["rls", "--config", "x"]);
    }
}
