//! `Settings`: every knob of `rls serve`, from flags or `RLS_*` environment variables, and
//! what each part of the server takes from them; `QuotaArgs`, the quota-loading group
//! `rls check` shares. The reference service's variables are one table:
//! [`reference`](mod@reference).

pub mod answers;
pub mod lease;
pub mod metrics;
pub mod operations;
mod quota;
pub mod reference;
pub mod sentinel;
pub mod tls;
pub mod xds;

pub use quota::{AlgorithmArg, QuotaArgs};

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use limiter::Clock;

use self::answers::AnswerArgs;
use self::operations::OperationsArgs;
use crate::decide::AnswerOptions;
use crate::error::SettingsError;
use crate::headers::HeaderNames;
use crate::request::RequestBounds;
use crate::rlqs::Unmatched;
use crate::server::Lifecycle;
use crate::settings::lease::LeaseArgs;
use crate::settings::sentinel::SentinelArgs;
use crate::store::redis::{
    CONNECT_TIMEOUT, Endpoint, OnBackendError, RedisOptions, ShardOptions, TimeSource, TlsFiles,
    redis_url,
};

/// Settings of `rls serve`. Precedence: flag, then `RLS_*` variable, then the reference
/// service's variable (see [`Settings::apply_reference_env`]), then the default.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// The quota files.
    #[command(flatten)]
    pub quotas: QuotaArgs,

    /// Where the rules come from: quota files or an xDS server.
    #[command(flatten)]
    pub xds: xds::XdsArgs,

    /// TLS on the gRPC listener.
    #[command(flatten)]
    pub grpc_tls: tls::GrpcTlsArgs,

    /// A listener of its own for metrics.
    #[command(flatten)]
    pub metrics: metrics::MetricsArgs,

    /// Reload the quota files when they change (and on SIGHUP); an invalid change is
    /// refused and the previous files keep serving.
    #[arg(long, env = "RLS_WATCH_CONFIG", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "true", default_missing_value = "true")]
    pub watch_config: bool,

    /// Address of the gRPC listener (RateLimitService, grpc.health.v1).
    #[arg(long, env = "RLS_GRPC_ADDR", default_value = "0.0.0.0:8081")]
    pub grpc_addr: SocketAddr,

    /// Address of the HTTP listener (/healthz, /readyz, /json, /metrics, /config).
    #[arg(long, env = "RLS_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Where bucket state lives. Unset: redis when --redis-url or --redis-cluster names a
    /// server, else memory; memory with a Redis server named is refused.
    #[arg(long, env = "RLS_BACKEND", value_enum)]
    pub backend: Option<BackendKind>,

    /// A Redis server (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS,
    /// `redis+unix:///path`). Repeat, or separate with commas, for client-side sharding.
    #[arg(
        long = "redis-url",
        env = "RLS_REDIS_URL",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub redis_urls: Vec<String>,

    /// Nodes of a Redis Cluster, `host:port,host:port,...` (or redis:// URLs).
    #[arg(
        long,
        env = "RLS_REDIS_CLUSTER",
        value_delimiter = ',',
        value_name = "NODES"
    )]
    pub redis_cluster: Vec<String>,

    /// A Redis found through Sentinel.
    #[command(flatten)]
    pub sentinel: SentinelArgs,

    /// PEM file of the CA certificates that may sign the Redis server's certificate, for
    /// `rediss://` (default: the system's roots).
    #[arg(long, env = "RLS_REDIS_TLS_CA", value_name = "PEM")]
    pub redis_tls_ca: Option<PathBuf>,

    /// PEM file of a client certificate, for Redis servers that require one.
    #[arg(
        long,
        env = "RLS_REDIS_TLS_CERT",
        value_name = "PEM",
        requires = "redis_tls_key"
    )]
    pub redis_tls_cert: Option<PathBuf>,

    /// PEM file of the client certificate's private key.
    #[arg(
        long,
        env = "RLS_REDIS_TLS_KEY",
        value_name = "PEM",
        requires = "redis_tls_cert"
    )]
    pub redis_tls_key: Option<PathBuf>,

    /// Prefix of every Redis key.
    #[arg(long, env = "RLS_KEY_PREFIX", default_value = "rls:")]
    pub key_prefix: String,

    /// Deadline of one request's backend work; keep it under Envoy's RLS timeout (20 ms).
    #[arg(long, env = "RLS_BACKEND_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10ms")]
    pub backend_timeout: Duration,

    /// What to answer when the backend fails or misses the deadline.
    #[arg(long, env = "RLS_ON_BACKEND_ERROR", value_enum, default_value_t = OnBackendErrorArg::Error)]
    pub on_backend_error: OnBackendErrorArg,

    /// How many replicas share each quota: `--on-backend-error local` keeps quota/replicas,
    /// rounded down so that the replicas never allow more than the quota (a quota smaller
    /// than the replicas: a share of 0, which denies).
    #[arg(long, env = "RLS_REPLICAS", default_value_t = NonZeroU32::MIN)]
    pub replicas: NonZeroU32,

    /// Requests decided at once; more wait their turn, parked, until one ends or their
    /// caller gives up: oldest first, newest first while callers give up in the line.
    /// 0 (the default): no bound.
    #[arg(
        long,
        env = "RLS_MAX_CONCURRENT_REQUESTS",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_concurrent_requests: usize,

    /// Requests in flight to the backend at once; beyond it the failure mode answers.
    #[arg(long, env = "RLS_MAX_IN_FLIGHT", default_value_t = count(10_000))]
    pub max_in_flight: NonZeroUsize,

    /// Buckets remembered as empty or over their limit and answered locally until they
    /// refill (exact); 0 turns the cache off.
    #[arg(long, env = "RLS_OVER_LIMIT_CACHE", default_value_t = 100_000)]
    pub over_limit_cache: usize,

    /// Whose clock the Redis scripts read.
    #[arg(long, env = "RLS_REDIS_TIME", value_enum, default_value_t = TimeSourceArg::Redis)]
    pub redis_time: TimeSourceArg,

    /// Most checks in one Redis script call.
    #[arg(long, env = "RLS_BATCH_MAX_CHECKS", default_value_t = count(256))]
    pub batch_max_checks: NonZeroUsize,

    /// How long a batch waits for more checks (0: send what is queued at once).
    #[arg(long, env = "RLS_BATCH_WINDOW", value_parser = humantime::parse_duration, default_value = "0s")]
    pub batch_window: Duration,

    /// Leased tokens for hot buckets.
    #[command(flatten)]
    pub leasing: LeaseArgs,

    /// Redis script calls in flight at once per shard.
    #[arg(long, env = "RLS_PIPELINE_DEPTH", default_value_t = count(8))]
    pub pipeline_depth: NonZeroUsize,

    /// Global shadow mode: evaluate and count, but always answer OK overall.
    #[arg(long, env = "RLS_SHADOW_MODE", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub shadow_mode: bool,

    /// Add RateLimit-Limit / -Remaining / -Reset headers to every answer that has a limit.
    #[arg(long, env = "RLS_RESPONSE_HEADERS", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub response_headers: bool,

    /// Name of the limit header.
    #[arg(long, env = "RLS_LIMIT_HEADER", default_value = HeaderNames::LIMIT)]
    pub limit_header: String,

    /// Name of the remaining header.
    #[arg(long, env = "RLS_REMAINING_HEADER", default_value = HeaderNames::REMAINING)]
    pub remaining_header: String,

    /// Name of the reset header.
    #[arg(long, env = "RLS_RESET_HEADER", default_value = HeaderNames::RESET)]
    pub reset_header: String,

    /// Fixed window only: when a request would push a counter over its limit, increment only
    /// the counters that go over (the reference's STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT).
    #[arg(long, env = "RLS_STOP_INCREMENT_WHEN_OVER_LIMIT", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub stop_increment_when_over_limit: bool,

    /// Most descriptors one request may carry; more is INVALID_ARGUMENT.
    #[arg(long, env = "RLS_MAX_DESCRIPTORS", default_value_t = RequestBounds::DEFAULT.max_descriptors)]
    pub max_descriptors: usize,

    /// Most entries one descriptor may carry; more is INVALID_ARGUMENT.
    #[arg(long, env = "RLS_MAX_ENTRIES", default_value_t = RequestBounds::DEFAULT.max_entries)]
    pub max_entries: usize,

    /// Largest request in bytes: the protobuf message on gRPC, the body of POST /json.
    /// Larger is INVALID_ARGUMENT (400 on /json), refused before it is read whole.
    #[arg(long, env = "RLS_MAX_REQUEST_BYTES", default_value_t = RequestBounds::DEFAULT.max_bytes)]
    pub max_request_bytes: usize,

    /// RLQS: what Envoy is told for a bucket that matches no quota rule.
    #[arg(long, env = "RLS_RLQS_UNMATCHED", value_enum, default_value_t = Unmatched::Allow)]
    pub rlqs_unmatched: Unmatched,

    /// RLQS: how often every bucket of every stream is assigned again.
    #[arg(long, env = "RLS_RLQS_PUSH_INTERVAL", value_parser = crate::rlqs::push_interval, default_value = "1s")]
    pub rlqs_push_interval: Duration,

    /// RLQS: how long an assignment holds in Envoy unless renewed (whole seconds, at least
    /// twice the push interval); then Envoy's expired_assignment_behavior applies.
    #[arg(long, env = "RLS_RLQS_ASSIGNMENT_TTL", value_parser = crate::rlqs::whole_seconds, default_value = "5s")]
    pub rlqs_assignment_ttl: Duration,

    /// RLQS: a bucket with no request reported for this long is abandoned and forgotten.
    #[arg(long, env = "RLS_RLQS_ABANDON_AFTER", value_parser = humantime::parse_duration, default_value = "1m")]
    pub rlqs_abandon_after: Duration,

    /// RLQS: most buckets tracked per stream; more are answered as unmatched, untracked.
    #[arg(long, env = "RLS_RLQS_MAX_BUCKETS", default_value_t = 10_000)]
    pub rlqs_max_buckets: usize,

    /// RLQS: largest message a stream may send (a usage report), in bytes; a larger one
    /// ends the stream before it is buffered.
    #[arg(long, env = "RLS_RLQS_MAX_MESSAGE_BYTES", default_value_t = crate::rlqs::DEFAULT_MAX_MESSAGE_BYTES)]
    pub rlqs_max_message_bytes: NonZeroUsize,

    /// Log filter: a level (error, warn, info, debug, trace) or a tracing directive.
    #[arg(long, env = "RLS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "RLS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Global quota mode and dynamic metadata.
    #[command(flatten)]
    pub answers: AnswerArgs,

    /// Per-rule metrics, draining and connection ages.
    #[command(flatten)]
    pub operations: OperationsArgs,
}

/// A count default that is at least one, checked when compiled.
const fn count(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => panic!("a count default must be at least one"),
    }
}

/// The `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// In-process buckets: one replica's own state.
    Memory,
    /// Redis: one quota shared by every replica.
    Redis,
}

/// The `--on-backend-error` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnBackendErrorArg {
    /// `UNAVAILABLE`: the proxy's `failure_mode_deny` decides (Envoy's default: allow).
    Error,
    /// Every descriptor OK.
    Allow,
    /// Every descriptor over its limit.
    Deny,
    /// This replica's share of each quota, in process (`quota / replicas`).
    Local,
}

impl From<OnBackendErrorArg> for OnBackendError {
    fn from(value: OnBackendErrorArg) -> Self {
        match value {
            OnBackendErrorArg::Error => OnBackendError::Error,
            OnBackendErrorArg::Allow => OnBackendError::Allow,
            OnBackendErrorArg::Deny => OnBackendError::Deny,
            OnBackendErrorArg::Local => OnBackendError::Local,
        }
    }
}

/// The `--redis-time` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimeSourceArg {
    /// The Redis server's `TIME`: one clock for every replica (the default).
    Redis,
    /// This process's clock, sent with each call (for clients of a Redis without
    /// `TIME`, and for tests on an injected clock).
    Local,
}

impl From<TimeSourceArg> for TimeSource {
    fn from(value: TimeSourceArg) -> Self {
        match value {
            TimeSourceArg::Redis => TimeSource::Redis,
            TimeSourceArg::Local => TimeSource::Local,
        }
    }
}

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// Settings as they are with no flag and no variable set: what tests start from.
    pub fn defaults() -> Settings {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        // Parsing an empty command line cannot fail: every argument has a default.
        let only = <Only as clap::Parser>::try_parse_from(["rls"]);
        only.map(|o| o.settings)
            .unwrap_or_else(|e| panic!("defaults must parse: {e}"))
    }

    /// How answers are shaped.
    pub fn answer_options(&self) -> AnswerOptions {
        AnswerOptions {
            global_shadow: self.shadow_mode,
            global_quota: self.answers.quota_mode,
            dynamic_metadata: self.answers.response_dynamic_metadata,
            stats: self.operations.stats(),
            headers: self.response_headers.then(|| HeaderNames {
                limit: self.limit_header.clone(),
                remaining: self.remaining_header.clone(),
                reset: self.reset_header.clone(),
            }),
            stop_increment: self.stop_increment_when_over_limit,
            default_algorithm: self.quotas.default_algorithm.into(),
            bounds: RequestBounds {
                max_descriptors: self.max_descriptors,
                max_entries: self.max_entries,
                max_bytes: self.max_request_bytes,
            },
            max_concurrent: NonZeroUsize::new(self.max_concurrent_requests),
        }
    }

    /// How the server drains on SIGTERM and how long its gRPC connections live.
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            drain_delay: self.operations.drain_delay,
            connections: self.operations.connections(),
        }
    }

    /// Where bucket state lives: `--backend` when given, else Redis when a Redis server is
    /// named (as the reference service, whose default backend is Redis, reads `REDIS_URL`),
    /// else memory. A Redis server named for the memory backend would be ignored, and every
    /// replica would enforce the whole quota on its own: refused.
    pub fn backend_kind(&self) -> Result<BackendKind, SettingsError> {
        let redis_named = !self.redis_urls.is_empty()
            || !self.redis_cluster.is_empty()
            || !self.sentinel.redis_sentinel.is_empty();
        match (self.backend, redis_named) {
            (Some(BackendKind::Memory), true) => Err(SettingsError::RedisForMemory),
            (Some(kind), _) => Ok(kind),
            (None, true) => Ok(BackendKind::Redis),
            (None, false) => Ok(BackendKind::Memory),
        }
    }

    /// The Redis store's settings, deciding on `clock`; refuses a Redis backend without
    /// (or with two kinds of) servers, and a server URL that does not parse.
    pub fn redis_options(&self, clock: Arc<dyn Clock>) -> Result<RedisOptions, SettingsError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| SettingsError::Unreadable {
                path: path.clone(),
                source,
            })
        };
        let tls = TlsFiles {
            ca: self.redis_tls_ca.as_ref().map(read).transpose()?,
            client: match (&self.redis_tls_cert, &self.redis_tls_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            },
        };
        Ok(RedisOptions {
            endpoints: self.redis_endpoints()?,
            key_prefix: self.key_prefix.clone(),
            timeout: self.backend_timeout,
            on_error: self.on_backend_error.into(),
            replicas: self.replicas,
            max_in_flight: self.max_in_flight,
            over_limit_cache: self.over_limit_cache,
            time: self.redis_time.into(),
            shard: ShardOptions {
                tls,
                connect_timeout: CONNECT_TIMEOUT,
                batch_max_checks: self.batch_max_checks,
                batch_window: self.batch_window,
                pipeline_depth: self.pipeline_depth,
            },
            clock,
            lease: self.leasing.options(true)?,
        })
    }

    /// The Redis servers: one shard per `--redis-url`, one cluster, or one primary found
    /// through Sentinel; every URL parsed now, so that a typo stops the start rather than
    /// being retried for ever.
    fn redis_endpoints(&self) -> Result<Vec<Endpoint>, SettingsError> {
        let sentinel = self.sentinel.sentinel()?;
        let endpoints = match (
            self.redis_urls.as_slice(),
            self.redis_cluster.as_slice(),
            sentinel,
        ) {
            ([], [], None) => return Err(SettingsError::NoRedisServer),
            (urls, [], None) => urls.iter().map(|u| Endpoint::Server(u.clone())).collect(),
            ([], nodes, None) => vec![Endpoint::Cluster(
                nodes.iter().map(|node| redis_url(node, None)).collect(),
            )],
            ([], [], Some(sentinel)) => vec![Endpoint::Sentinel(sentinel)],
            _ => return Err(SettingsError::TwoRedisTopologies),
        };
        for endpoint in &endpoints {
            endpoint
                .check()
                .map_err(|(url, reason)| SettingsError::RedisUrl { url, reason })?;
        }
        Ok(endpoints)
    }
}

#[cfg(test)]
mod tests;
