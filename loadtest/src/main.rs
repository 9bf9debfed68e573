//! `loadtest`: parse the command line, run the subcommand, turn its error into exit code 1.

use clap::Parser;
use loadtest::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => loadtest::run::execute(args).await,
        Command::Baseline(args) => loadtest::baseline::execute(args.listen).await,
        Command::Compare(args) => loadtest::compare::execute(args).await,
        Command::Stack(args) => loadtest::stack::execute(args).await,
        Command::Http(args) => loadtest::http::execute(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadtest: {}", config::Report(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
