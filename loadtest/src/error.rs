//! [`HarnessError`]: everything that stops the harness before or while it runs. Failed
//! requests are not errors here: they are answers, counted by gRPC code.

use std::path::PathBuf;

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A flag or scenario value is missing, out of range or inconsistent.
    #[error("invalid workload: {0}")]
    Workload(String),
    /// The scenario file could not be read or parsed.
    #[error("scenario file {}: {message}", path.display())]
    Scenario {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column when the parser gives them.
        message: String,
    },
    /// The quota file could not be loaded.
    #[error("quota file {}", path.display())]
    Quota {
        /// The file or directory.
        path: PathBuf,
        /// The parser's error (file, line, column, key path), boxed: it is large.
        #[source]
        source: Box<config::ConfigError>,
    },
    /// No connection to a target could be made.
    #[error("cannot connect to {target}")]
    Connect {
        /// The `host:port` asked for.
        target: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A local I/O operation failed: binding a listener, writing a report, starting a process.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A process the stack needs is missing, did not start, or did not become ready.
    #[error("{0}")]
    Process(String),
    /// The run finished but no request was answered with a decision.
    #[error("no decision in {answers} answers ({summary})")]
    NoDecisions {
        /// Answers received (all of them errors).
        answers: u64,
        /// The errors by code.
        summary: String,
    },
}

impl HarnessError {
    /// An [`HarnessError::Io`] saying what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            what: what.into(),
            source,
        }
    }
}
