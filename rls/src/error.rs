//! `RlsError`: everything that can go wrong in the server, and the one mapping from errors
//! to gRPC statuses.

use std::net::SocketAddr;

/// An error of the rate limit service.
#[derive(Debug, thiserror::Error)]
pub enum RlsError {
    /// The request is malformed; the message says how.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The bucket store failed (a later Redis backend: unreachable, too slow).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The quota files are invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The settings contradict each other or miss something.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// No quota file location was given.
    #[error("no quota files: pass --config PATH (or set RLS_CONFIG or RUNTIME_ROOT)")]
    NoConfigPath,
    /// A listener could not be bound or served.
    #[error("cannot serve on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl RlsError {
    /// The gRPC status Envoy receives for this error, and what Envoy does with it:
    /// `INVALID_ARGUMENT` marks a malformed request (Envoy treats any error as a failed
    /// call); `UNAVAILABLE` means "try again later", and Envoy's `failure_mode_deny` then
    /// decides whether the request passes (default: it does).
    pub fn to_status(&self) -> tonic::Status {
        // Keep in step with `kind`.
        match self {
            RlsError::InvalidRequest(message) => tonic::Status::invalid_argument(message.clone()),
            RlsError::Unavailable(message) => tonic::Status::unavailable(message.clone()),
            other => tonic::Status::internal(other.to_string()),
        }
    }
}

impl RlsError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RlsError::InvalidRequest(_) => "invalid_request",
            RlsError::Unavailable(_) => "backend",
            _ => "internal",
        }
    }
}

/// A setting given in the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The variable's value has the wrong form.
    #[error("invalid {name} {value:?}: expected {expected}")]
    Invalid {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
}
