//! `RlsError`: everything that can go wrong in the server, what it means to the caller
//! ([`ErrorKind`]), and the one mapping from errors to gRPC statuses; `SettingsError`: a
//! setting that cannot be used.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::store::redis::Failure;

/// An error of the rate limit service.
#[derive(Debug, thiserror::Error)]
pub enum RlsError {
    /// The request is malformed; the message says how.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The bucket store could not answer (Redis unreachable, too slow, overloaded) and its
    /// failure mode is to say so.
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] Failure),
    /// The quota files are invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A setting cannot be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),
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
    /// The quota files cannot be watched for changes.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: notify::Error,
    },
    /// The gRPC transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What an error means to the caller who sent the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed: sending it again gets the same answer.
    InvalidRequest,
    /// The backend could not answer now.
    Backend,
    /// Anything else: the server's own fault.
    Internal,
}

impl ErrorKind {
    /// The `kind` label of `rls_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Backend => "backend",
            ErrorKind::Internal => "internal",
        }
    }
}

impl RlsError {
    /// The one match over the variants: what the error means, and what the caller is told
    /// (the cause alone where the kind already says the rest).
    fn meaning(&self) -> (ErrorKind, &dyn Display) {
        match self {
            RlsError::InvalidRequest(message) => (ErrorKind::InvalidRequest, message),
            RlsError::Unavailable(failure) => (ErrorKind::Backend, failure),
            other => (ErrorKind::Internal, other),
        }
    }

    /// What the error means to the caller.
    pub fn kind(&self) -> ErrorKind {
        self.meaning().0
    }

    /// The gRPC status Envoy receives for this error, and what Envoy does with it:
    /// `INVALID_ARGUMENT` marks a malformed request (Envoy treats any error as a failed
    /// call); `UNAVAILABLE` means "try again later", and Envoy's `failure_mode_deny` then
    /// decides whether the request passes (default: it does).
    pub fn to_status(&self) -> tonic::Status {
        let (kind, told) = self.meaning();
        let message = told.to_string();
        match kind {
            ErrorKind::InvalidRequest => tonic::Status::invalid_argument(message),
            ErrorKind::Backend => tonic::Status::unavailable(message),
            ErrorKind::Internal => tonic::Status::internal(message),
        }
    }
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A reference variable's value has the wrong form.
    #[error("invalid {name} {value:?}: expected {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// `--backend redis` without a server.
    #[error(
        "invalid settings: --backend redis needs --redis-url URL (repeatable) or --redis-cluster NODES"
    )]
    NoRedisServer,
    /// Quota files bounded shallower than the request descriptors they must match.
    #[error(
        "invalid settings: --max-quota-depth {depth} is less than --max-entries {entries}: \
         a request descriptor of {entries} entries is matched only by a rule {entries} levels \
         deep, which the quota files could not hold; raise --max-quota-depth to at least \
         {entries} or lower --max-entries"
    )]
    DepthBelowEntries {
        /// `--max-quota-depth`.
        depth: usize,
        /// `--max-entries`.
        entries: usize,
    },
    /// Request descriptors longer than any quota file may nest.
    #[error(
        "invalid settings: --max-entries {entries} needs quota files nested {entries} levels \
         deep, and they are read at most {most} levels deep: lower --max-entries to {most} or less"
    )]
    EntriesBeyondDepth {
        /// `--max-entries`.
        entries: usize,
        /// The deepest a quota file may nest.
        most: usize,
    },
    /// A Redis server named for the memory backend, where it would be ignored.
    #[error(
        "invalid settings: --backend memory does not use the Redis server given \
         (--redis-url or --redis-cluster, or REDIS_URL): drop --backend memory to use Redis, \
         or drop the Redis server to keep buckets in memory"
    )]
    RedisForMemory,
    /// A Redis URL that does not parse; named without its password.
    #[error("invalid settings: invalid Redis URL {url}: {reason}")]
    RedisUrl {
        /// The URL, without its password.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Both client-side shards and a cluster.
    #[error("invalid settings: give either --redis-url or --redis-cluster, not both")]
    TwoRedisTopologies,
    /// A setting given where it cannot take effect.
    #[error("invalid settings: {setting}: {reason}")]
    Conflict {
        /// The setting (its flag).
        setting: &'static str,
        /// Why it cannot take effect.
        reason: &'static str,
    },
    /// A TLS file that cannot be used: no certificate in it, a malformed key, a key that
    /// is not the certificate's.
    #[error("invalid settings: {}: {reason}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file a setting names cannot be read.
    #[error("invalid settings: cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_request_is_invalid_argument_with_its_message_alone() {
        let error = RlsError::InvalidRequest("descriptors[0] has no entries".into());
        assert_eq!(error.kind().label(), "invalid_request");
        let status = error.to_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "descriptors[0] has no entries");
    }

    #[test]
    fn a_backend_failure_is_unavailable_and_anything_else_internal() {
        let error = RlsError::Unavailable(Failure::Deadline);
        assert_eq!(error.kind(), ErrorKind::Backend);
        let status = error.to_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "backend deadline exceeded");
        let status = RlsError::NoConfigPath.to_status();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().starts_with("no quota files"));
    }
}
