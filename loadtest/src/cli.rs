//! [`Cli`]: the `loadtest` command line — `run`, `baseline`, `compare`, `stack`, `http`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cpu::Pinning;
use crate::spec::PhaseSpec;

/// Load harness for Envoy rate limit services: throughput, latency and accuracy, as ratios
/// to a no-op server measured the same way.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load one RLS (or several replicas) and report decisions/s, latency, codes and accuracy.
    Run(Box<RunArgs>),
    /// Serve a no-op RLS that answers OK to everything: the yardstick to compare with.
    Baseline(BaselineArgs),
    /// Alternate two services in short rounds (A B A B ...) and report medians and A/B.
    #[command(
        mut_arg("duration", |a| a.default_value("5s").help("Measured time of each round")),
        mut_arg("warmup", |a| a.default_value("1s").help("Warm-up of each round, not counted"))
    )]
    Compare(Box<CompareArgs>),
    /// Start rls replicas (and redis-server) on loopback, run the standard scenarios, and
    /// print their table for BENCHMARKS.md.
    Stack(StackArgs),
    /// Load an HTTP proxy (Envoy with its rate limit filters) and report requests/s,
    /// latency, 2xx and 429, and accuracy against a stated quota.
    #[command(
        mut_arg("keys", |a| a.visible_alias("values")),
        mut_arg("domain", |a| a.hide(true)),
        mut_arg("descriptors", |a| a.hide(true)),
        mut_arg("hits", |a| a.hide(true))
    )]
    Http(Box<crate::http::HttpArgs>),
}

/// Arguments of `loadtest run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A service to load, host:port; repeat for replicas (connections are spread over them).
    #[arg(long = "target", value_name = "HOST:PORT")]
    pub targets: Vec<String>,
    /// Phases from a YAML scenario file instead of the workload flags.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Quota file or directory the service runs with: adds allowed versus permitted per key.
    #[arg(long, value_name = "PATH")]
    pub quota: Option<PathBuf>,
    /// First run the same load against an in-process no-op RLS and report ratios to it.
    #[arg(long)]
    pub baseline: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained report with charts: `.svg` for an image, else HTML.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The workload and its pacing.
    #[command(flatten)]
    pub phase: PhaseSpec,
}

/// Arguments of `loadtest baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Address to serve gRPC on (port 0 picks a free one, printed at start).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
}

/// Arguments of `loadtest compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Service A: host:port of a running service, or a store to start `rls` replicas on
    /// here (`memory`, `redis`, `redis-cluster`, with the Redis it needs).
    #[arg(long)]
    pub a: String,
    /// Service B, as A.
    #[arg(long)]
    pub b: String,
    /// `rls` replicas of each side started here.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// More `rls serve` flags for side A's replicas, space-separated (`--lease auto`).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub a_flags: String,
    /// More `rls serve` flags for side B's replicas.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub b_flags: String,
    /// Quota file the started replicas serve (default: `loadtest stack`'s).
    #[arg(long, value_name = "PATH")]
    pub quota: Option<PathBuf>,
    /// The rls binary for started sides; default: next to this executable.
    #[arg(long, value_name = "PATH")]
    pub rls_bin: Option<PathBuf>,
    /// CPU lists of the processes started and of the harness.
    #[command(flatten)]
    pub pinning: Pinning,
    /// Number of A-then-B pairs of rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The workload of every round and its pacing.
    #[command(flatten)]
    pub phase: PhaseSpec,
}

/// Arguments of `loadtest stack`.
#[derive(Debug, Args)]
pub struct StackArgs {
    /// The rls binary; default: next to this executable (target/release or target/debug).
    #[arg(long, value_name = "PATH")]
    pub rls_bin: Option<PathBuf>,
    /// Measured time of each scenario (and of its baseline run).
    #[arg(long, default_value = "10s", value_parser = crate::spec::parse_duration)]
    pub duration: std::time::Duration,
    /// Warm-up before each measurement.
    #[arg(long, default_value = "2s", value_parser = crate::spec::parse_duration)]
    pub warmup: std::time::Duration,
    /// Requests in flight (closed loop).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections (at least one per replica).
    #[arg(long, default_value_t = 6)]
    pub connections: usize,
    /// Run only these scenarios (comma-separated ids; `loadtest stack --list` shows them).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the results as JSON instead of the Markdown section.
    #[arg(long)]
    pub json: bool,
    /// Also append the Markdown section to this file (e.g. BENCHMARKS.md).
    #[arg(long, value_name = "FILE")]
    pub append: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// CPU lists of the processes started and of the harness.
    #[command(flatten)]
    pub pinning: Pinning,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reads_the_issue_s_example_command() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "run",
            "--target",
            "127.0.0.1:8081",
            "--domain",
            "edge",
            "--descriptor",
            "path=/Page.Show",
            "--concurrency",
            "256",
            "--duration",
            "30s",
        ])
        .expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("run")
        };
        assert_eq!(args.targets, ["127.0.0.1:8081"]);
        assert_eq!(args.phase.concurrency, 256);
        assert_eq!(args.phase.duration, std::time::Duration::from_secs(30));
        assert_eq!(args.phase.warmup, std::time::Duration::from_secs(2));
    }

    #[test]
    fn compare_rounds_are_short_unless_told_otherwise() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "compare",
            "--a",
            "x:1",
            "--b",
            "y:2",
            "--domain",
            "d",
            "--descriptor",
            "k=v",
        ])
        .expect("parses");
        let Command::Compare(args) = cli.command else {
            panic!("compare")
        };
        assert_eq!(args.phase.duration, std::time::Duration::from_secs(5));
        assert_eq!(args.phase.warmup, std::time::Duration::from_secs(1));
    }

    // Reproduces the README and `--help` calling the baseline a ceiling, when rls measured
    // faster than it.
    #[test]
    fn the_baseline_is_described_as_a_yardstick_not_a_ceiling() {
        use clap::CommandFactory;
        let command = Cli::command();
        let baseline = command.find_subcommand("baseline").expect("baseline");
        let about = baseline.get_about().expect("about").to_string();
        assert!(about.contains("yardstick"), "{about}");
        let readme = std::fs::read_to_string("README.md").expect("README");
        assert!(readme.contains("It is a yardstick measured"));
        assert!(
            !readme.contains("the ceiling"),
            "README calls the baseline a ceiling"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
