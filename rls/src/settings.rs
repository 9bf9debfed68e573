//! `Settings`: every knob of `rls serve`, from flags, `RLS_*` environment variables, or the
//! reference service's environment names (for drop-in migration; `docs/migrating.md`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, ValueEnum};

use crate::error::SettingsError;
use crate::store::redis::{OnBackendError, TimeSource};

/// Settings of `rls serve`. Precedence: flag, then `RLS_*` variable, then the reference
/// service's variable (see [`Settings::apply_reference_env`]), then the default.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Quota file, or directory of quota files (every top-level, non-hidden *.yaml / *.yml).
    #[arg(long, env = "RLS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

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

    /// Algorithm of limits whose quota file does not name one.
    #[arg(long, env = "RLS_DEFAULT_ALGORITHM", value_enum, default_value_t = AlgorithmArg::TokenBucket)]
    pub default_algorithm: AlgorithmArg,

    /// Where bucket state lives.
    #[arg(long, env = "RLS_BACKEND", value_enum, default_value_t = BackendKind::Memory)]
    pub backend: BackendKind,

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
    pub backend_timeout: std::time::Duration,

    /// What to answer when the backend fails or misses the deadline.
    #[arg(long, env = "RLS_ON_BACKEND_ERROR", value_enum, default_value_t = OnBackendError::Error)]
    pub on_backend_error: OnBackendError,

    /// How many replicas share each quota: `--on-backend-error local` keeps quota/replicas.
    #[arg(long, env = "RLS_REPLICAS", default_value_t = 1)]
    pub replicas: u32,

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
    #[arg(long, env = "RLS_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,

    /// Buckets remembered as empty or over their limit and answered locally until they
    /// refill (exact); 0 turns the cache off.
    #[arg(long, env = "RLS_OVER_LIMIT_CACHE", default_value_t = 100_000)]
    pub over_limit_cache: usize,

    /// Whose clock the Redis scripts read.
    #[arg(long, env = "RLS_REDIS_TIME", value_enum, default_value_t = TimeSource::Redis)]
    pub redis_time: TimeSource,

    /// Most checks in one Redis script call.
    #[arg(long, env = "RLS_BATCH_MAX_CHECKS", default_value_t = 256)]
    pub batch_max_checks: usize,

    /// How long a batch waits for more checks (0: send what is queued at once).
    #[arg(long, env = "RLS_BATCH_WINDOW", value_parser = humantime::parse_duration, default_value = "0s")]
    pub batch_window: std::time::Duration,

    /// Redis script calls in flight at once per shard.
    #[arg(long, env = "RLS_PIPELINE_DEPTH", default_value_t = 8)]
    pub pipeline_depth: usize,

    /// Global shadow mode: evaluate and count, but always answer OK overall.
    #[arg(long, env = "RLS_SHADOW_MODE", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub shadow_mode: bool,

    /// Add RateLimit-Limit / -Remaining / -Reset headers to every answer that has a limit.
    #[arg(long, env = "RLS_RESPONSE_HEADERS", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub response_headers: bool,

    /// Name of the limit header.
    #[arg(long, env = "RLS_LIMIT_HEADER", default_value = "RateLimit-Limit")]
    pub limit_header: String,

    /// Name of the remaining header.
    #[arg(
        long,
        env = "RLS_REMAINING_HEADER",
        default_value = "RateLimit-Remaining"
    )]
    pub remaining_header: String,

    /// Name of the reset header.
    #[arg(long, env = "RLS_RESET_HEADER", default_value = "RateLimit-Reset")]
    pub reset_header: String,

    /// Let several quota documents add descriptors to one domain.
    #[arg(long, env = "RLS_MERGE_DOMAINS", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub merge_domains: bool,

    /// Fixed window only: when a request would push a counter over its limit, increment only
    /// the counters that go over (the reference's STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT).
    #[arg(long, env = "RLS_STOP_INCREMENT_WHEN_OVER_LIMIT", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub stop_increment_when_over_limit: bool,

    /// Most descriptors one request may carry; more is INVALID_ARGUMENT.
    #[arg(long, env = "RLS_MAX_DESCRIPTORS", default_value_t = 64)]
    pub max_descriptors: usize,

    /// Most entries one descriptor may carry; more is INVALID_ARGUMENT.
    #[arg(long, env = "RLS_MAX_ENTRIES", default_value_t = 32)]
    pub max_entries: usize,

    /// Largest encoded request in bytes; larger is INVALID_ARGUMENT.
    #[arg(long, env = "RLS_MAX_REQUEST_BYTES", default_value_t = 64 * 1024)]
    pub max_request_bytes: usize,

    /// Log filter: a level (error, warn, info, debug, trace) or a tracing directive.
    #[arg(long, env = "RLS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "RLS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The `--default-algorithm` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// GCRA token bucket (exact, no window-edge bursts).
    TokenBucket,
    /// Epoch-aligned fixed windows, exactly like the reference service.
    FixedWindow,
}

impl From<AlgorithmArg> for config::Algorithm {
    fn from(value: AlgorithmArg) -> Self {
        match value {
            AlgorithmArg::TokenBucket => config::Algorithm::TokenBucket,
            AlgorithmArg::FixedWindow => config::Algorithm::FixedWindow,
        }
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

    /// Fills every setting still at its default from the reference service's environment
    /// variable of the same meaning (`SHADOW_MODE`, `GRPC_PORT`, `RUNTIME_ROOT`, ...).
    /// `matches` tells which settings came from a flag or an `RLS_*` variable; `env` reads
    /// the environment (injected for tests).
    pub fn apply_reference_env(
        &mut self,
        matches: &ArgMatches,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        let unset = |id: &str| {
            matches!(
                matches.value_source(id),
                None | Some(ValueSource::DefaultValue)
            )
        };
        let flag = |name: &str| -> Result<Option<bool>, SettingsError> {
            env(name).map(|v| parse_go_bool(name, &v)).transpose()
        };
        let bools: [(&str, &str, &mut bool); 4] = [
            ("shadow_mode", "SHADOW_MODE", &mut self.shadow_mode),
            (
                "response_headers",
                "LIMIT_RESPONSE_HEADERS_ENABLED",
                &mut self.response_headers,
            ),
            (
                "merge_domains",
                "MERGE_DOMAIN_CONFIG",
                &mut self.merge_domains,
            ),
            (
                "stop_increment_when_over_limit",
                "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT",
                &mut self.stop_increment_when_over_limit,
            ),
        ];
        for (id, name, slot) in bools {
            if unset(id)
                && let Some(value) = flag(name)?
            {
                *slot = value;
            }
        }
        let strings: [(&str, &str, &mut String); 4] = [
            ("limit_header", "LIMIT_LIMIT_HEADER", &mut self.limit_header),
            (
                "remaining_header",
                "LIMIT_REMAINING_HEADER",
                &mut self.remaining_header,
            ),
            ("reset_header", "LIMIT_RESET_HEADER", &mut self.reset_header),
            ("log_level", "LOG_LEVEL", &mut self.log_level),
        ];
        for (id, name, slot) in strings {
            if unset(id)
                && let Some(value) = env(name).filter(|v| !v.is_empty())
            {
                *slot = if id == "log_level" {
                    value.to_ascii_lowercase()
                } else {
                    value
                };
            }
        }
        if unset("log_format") {
            match env("LOG_FORMAT").map(|v| v.to_ascii_lowercase()).as_deref() {
                Some("json") => self.log_format = LogFormat::Json,
                Some("text") | Some("") | None => {}
                Some(other) => {
                    return Err(SettingsError::Invalid {
                        name: "LOG_FORMAT".into(),
                        value: other.into(),
                        expected: "text or json",
                    });
                }
            }
        }
        if unset("grpc_addr")
            && let Some(addr) = host_port(&env, "GRPC_HOST", "GRPC_PORT", self.grpc_addr)?
        {
            self.grpc_addr = addr;
        }
        if unset("http_addr")
            && let Some(addr) = host_port(&env, "HOST", "PORT", self.http_addr)?
        {
            self.http_addr = addr;
        }
        self.apply_reference_redis_env(&unset, &env)?;
        // The reference reads RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY, the
        // last defaulting to "config".
        if self.config.is_none()
            && let Some(root) = env("RUNTIME_ROOT").filter(|v| !v.is_empty())
        {
            let mut path = PathBuf::from(root);
            if let Some(sub) = env("RUNTIME_SUBDIRECTORY").filter(|v| !v.is_empty()) {
                path.push(sub);
            }
            path.push(env("RUNTIME_APPDIRECTORY").unwrap_or_else(|| "config".into()));
            self.config = Some(path);
        }
        Ok(())
    }
}

impl Settings {
    /// The reference's backend variables: `BACKEND_TYPE`, `REDIS_URL` (host:port, a
    /// comma list when `REDIS_TYPE=cluster`), `REDIS_AUTH` (password or user:password),
    /// `CACHE_KEY_PREFIX`.
    fn apply_reference_redis_env(
        &mut self,
        unset: &impl Fn(&str) -> bool,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        if unset("backend") {
            match env("BACKEND_TYPE")
                .map(|v| v.to_ascii_lowercase())
                .as_deref()
            {
                Some("redis") => self.backend = BackendKind::Redis,
                None | Some("") => {}
                Some(other) => {
                    return Err(SettingsError::Invalid {
                        name: "BACKEND_TYPE".into(),
                        value: other.into(),
                        expected: "redis (memcache is not supported)",
                    });
                }
            }
        }
        if unset("key_prefix")
            && let Some(prefix) = env("CACHE_KEY_PREFIX")
        {
            self.key_prefix = prefix;
        }
        let Some(url) = env("REDIS_URL").filter(|v| !v.is_empty()) else {
            return Ok(());
        };
        if !(unset("redis_urls") && unset("redis_cluster")) {
            return Ok(());
        }
        let auth = env("REDIS_AUTH").filter(|v| !v.is_empty());
        let with_auth = |node: &str| {
            let node = node.trim();
            match (&auth, node.contains("://")) {
                (_, true) => node.to_string(),
                (Some(auth), false) if auth.contains(':') => format!("redis://{auth}@{node}"),
                (Some(password), false) => format!("redis://:{password}@{node}"),
                (None, false) => format!("redis://{node}"),
            }
        };
        match env("REDIS_TYPE").map(|v| v.to_ascii_lowercase()).as_deref() {
            Some("cluster") => self.redis_cluster = url.split(',').map(with_auth).collect(),
            None | Some("") | Some("single") => self.redis_urls = vec![with_auth(&url)],
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "REDIS_TYPE".into(),
                    value: other.into(),
                    expected: "single or cluster (sentinel is not supported)",
                });
            }
        }
        Ok(())
    }
}

/// Go's `strconv.ParseBool`, which the reference uses for its boolean variables.
fn parse_go_bool(name: &str, value: &str) -> Result<bool, SettingsError> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(SettingsError::Invalid {
            name: name.into(),
            value: other.into(),
            expected: "true or false",
        }),
    }
}

/// Builds an address from the reference's separate host and port variables; either may be
/// missing, the other part then comes from `current`.
fn host_port(
    env: &impl Fn(&str) -> Option<String>,
    host_var: &str,
    port_var: &str,
    current: SocketAddr,
) -> Result<Option<SocketAddr>, SettingsError> {
    let host = env(host_var).filter(|v| !v.is_empty());
    let port = env(port_var).filter(|v| !v.is_empty());
    if host.is_none() && port.is_none() {
        return Ok(None);
    }
    let port_number = match &port {
        Some(p) => p.parse::<u16>().map_err(|_| SettingsError::Invalid {
            name: port_var.into(),
            value: p.clone(),
            expected: "a port number",
        })?,
        None => current.port(),
    };
    let Some(host) = host else {
        return Ok(Some(SocketAddr::new(current.ip(), port_number)));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved = (bare, port_number)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next());
    resolved.map(Some).ok_or_else(|| SettingsError::Invalid {
        name: host_var.into(),
        value: host.clone(),
        expected: "an IP address or a resolvable host name",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};
    use std::collections::HashMap;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn settings_from(args: &[&str], vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let matches = Cli::command()
            .try_get_matches_from(args.iter().copied())
            .expect("arguments parse");
        let mut settings = Cli::from_arg_matches(&matches)
            .expect("matches convert")
            .settings;
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings.apply_reference_env(&matches, |name| vars.get(name).cloned())?;
        Ok(settings)
    }

    #[test]
    fn reference_variables_fill_settings_left_at_their_defaults() {
        let s = settings_from(
            &["rls"],
            &[
                ("SHADOW_MODE", "true"),
                ("LIMIT_RESPONSE_HEADERS_ENABLED", "1"),
                ("LIMIT_LIMIT_HEADER", "X-Limit"),
                ("LIMIT_REMAINING_HEADER", "X-Left"),
                ("LIMIT_RESET_HEADER", "X-Reset"),
                ("MERGE_DOMAIN_CONFIG", "True"),
                ("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "t"),
                ("GRPC_HOST", "127.0.0.1"),
                ("GRPC_PORT", "9081"),
                ("PORT", "9080"),
                ("LOG_LEVEL", "WARN"),
                ("LOG_FORMAT", "json"),
                ("RUNTIME_ROOT", "/srv/runtime_data/current"),
                ("RUNTIME_SUBDIRECTORY", "ratelimit"),
            ],
        )
        .expect("valid settings");
        assert!(s.shadow_mode && s.response_headers && s.merge_domains);
        assert!(s.stop_increment_when_over_limit);
        assert_eq!(
            (
                s.limit_header.as_str(),
                s.remaining_header.as_str(),
                s.reset_header.as_str()
            ),
            ("X-Limit", "X-Left", "X-Reset")
        );
        assert_eq!(s.grpc_addr, "127.0.0.1:9081".parse().expect("addr"));
        assert_eq!(s.http_addr, "0.0.0.0:9080".parse().expect("addr"));
        assert_eq!(s.log_level, "warn");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(
            s.config,
            Some(PathBuf::from("/srv/runtime_data/current/ratelimit/config"))
        );
    }

    #[test]
    fn reference_redis_variables_select_the_redis_backend() {
        let s = settings_from(
            &["rls"],
            &[
                ("BACKEND_TYPE", "redis"),
                ("REDIS_URL", "redis.default.svc:6379"),
                ("REDIS_AUTH", "s3cret"),
                ("CACHE_KEY_PREFIX", "rl_"),
            ],
        )
        .expect("valid settings");
        assert_eq!(s.backend, BackendKind::Redis);
        assert_eq!(s.redis_urls, ["redis://:s3cret@redis.default.svc:6379"]);
        assert_eq!(s.key_prefix, "rl_");
        let s = settings_from(
            &["rls"],
            &[("REDIS_TYPE", "cluster"), ("REDIS_URL", "a:7000,b:7001")],
        )
        .expect("valid settings");
        assert_eq!(s.redis_cluster, ["redis://a:7000", "redis://b:7001"]);
    }

    #[test]
    fn flags_win_over_reference_variables() {
        let s = settings_from(
            &[
                "rls",
                "--shadow-mode=false",
                "--grpc-addr",
                "127.0.0.1:7000",
                "--config",
                "quotas",
            ],
            &[
                ("SHADOW_MODE", "true"),
                ("GRPC_PORT", "9081"),
                ("RUNTIME_ROOT", "/srv"),
            ],
        )
        .expect("valid settings");
        assert!(!s.shadow_mode);
        assert_eq!(s.grpc_addr, "127.0.0.1:7000".parse().expect("addr"));
        assert_eq!(s.config, Some(PathBuf::from("quotas")));
    }

    #[test]
    fn a_malformed_reference_variable_is_an_error_naming_it() {
        let err = settings_from(&["rls"], &[("GRPC_PORT", "eighty")]).expect_err("bad port");
        assert_eq!(
            err.to_string(),
            "invalid GRPC_PORT \"eighty\": expected a port number"
        );
        let err = settings_from(&["rls"], &[("SHADOW_MODE", "yes please")]).expect_err("bad bool");
        assert_eq!(
            err.to_string(),
            "invalid SHADOW_MODE \"yes please\": expected true or false"
        );
    }

    #[test]
    fn defaults_match_the_documented_ports_and_headers() {
        let s = Settings::defaults();
        assert_eq!(s.grpc_addr.port(), 8081);
        assert_eq!(s.http_addr.port(), 8080);
        assert_eq!(s.limit_header, "RateLimit-Limit");
        assert_eq!(s.default_algorithm, AlgorithmArg::TokenBucket);
        assert!(!s.shadow_mode && !s.response_headers);
    }
}
