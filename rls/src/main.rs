//! The `rls` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

use clap::FromArgMatches;
use rls::cli::{Cli, Command};
use rls::settings::LogFormat;
use rls::{Listeners, Settings};

/// Requests allocate on one worker thread and free on another (the batcher answers the
/// callers): glibc's malloc serialises that on its arena locks, mimalloc frees to the
/// owning thread's heap without a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = rls::cli::command().get_matches_from(rls::cli::as_invoked(std::env::args_os()));
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let result = match cli.apply_reference_env(&matches, |name| std::env::var(name).ok()) {
        Ok(()) => run(cli.command),
        Err(error) => Err(error.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", config::Report(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(settings) => run_serve(*settings),
        Command::Check(args) => {
            print!("{}", rls::summary::describe(&args.quotas.load()?));
            Ok(())
        }
        Command::Render(args) => rls::render::run(&args).map(|rendered| {
            for note in &rendered.notes {
                eprintln!("note: {note}");
            }
            print!("{}", rendered.yaml);
        }),
        Command::Query(args) => {
            let text = runtime()?.block_on(rls::query::run(&args))?;
            print!("{text}");
            Ok(())
        }
    }
}

fn run_serve(settings: Settings) -> anyhow::Result<()> {
    init_tracing(&settings)?;
    rls::settings::reference::unread::warn_unread(|name| std::env::var(name).ok());
    runtime()?.block_on(async {
        let shutdown = shutdown_signal()?;
        let listeners = Listeners::bind(&settings).await?;
        rls::serve(listeners, settings, shutdown).await?;
        Ok(())
    })
}

/// The server's runtime. Without Tokio's LIFO slot (an unstable option: the workspace's
/// `.cargo/config.toml` builds with `--cfg tokio_unstable`): a finished request wakes its
/// HTTP/2 connection task, which the LIFO slot would run at once to write that one
/// response; queued behind the other ready requests, it writes the responses of all of
/// them in one `writev`: a seventh as many writes under load and up to 30% more answers
/// a second (BENCHMARKS.md, with what it costs: a lone request waits 10–30 µs longer,
/// and Redis-bound requests of four descriptors lose when the server shares its core).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    Ok(builder.enable_all().build()?)
}

fn init_tracing(settings: &Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)?;
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed now, before anything is
/// served: a SIGTERM that comes before the future is first polled drains the server too,
/// instead of killing the process.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[cfg(test)]
mod tests {
    #[test]
    #[expect(
        clippy::assertions_on_constants,
        reason = "the build's cfg is what is tested: a test failure names the fix"
    )]
    fn the_server_is_built_with_tokio_unstable_to_turn_the_lifo_slot_off() {
        assert!(
            cfg!(tokio_unstable),
            "build with `--cfg tokio_unstable` (set in .cargo/config.toml; a RUSTFLAGS \
             variable replaces it: add the flag there too)"
        );
    }
}
