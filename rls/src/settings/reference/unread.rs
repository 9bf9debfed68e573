//! The reference's variables that rls does not read: every variable of its settings
//! ([`REFERENCE_NAMES`]) less those of the table's rows. A Deployment written for the
//! reference may set them; [`warn_unread`] names those it sets, once, and serving goes on.

use std::collections::BTreeSet;

/// Every environment variable envoyproxy/ratelimit reads (`src/settings/settings.go`),
/// and `GRPC_SERVER_TLS_CA_CERT`, which Envoy Gateway's Deployment sets though the
/// reference reads `GRPC_CLIENT_TLS_CACERT`.
pub const REFERENCE_NAMES: &[&str] = &[
    "HOST",
    "PORT",
    "DEBUG_HOST",
    "DEBUG_PORT",
    "GRPC_UDS",
    "GRPC_HOST",
    "GRPC_PORT",
    "GRPC_MAX_CONNECTION_AGE",
    "GRPC_MAX_CONNECTION_AGE_GRACE",
    "GRPC_SERVER_USE_TLS",
    "GRPC_SERVER_TLS_CERT",
    "GRPC_SERVER_TLS_KEY",
    "GRPC_CLIENT_TLS_CACERT",
    "GRPC_CLIENT_TLS_SAN",
    "GRPC_SERVER_TLS_CA_CERT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "CONFIG_TYPE",
    "FORCE_START_WITHOUT_INITIAL_CONFIG",
    "CONFIG_GRPC_XDS_NODE_ID",
    "CONFIG_GRPC_XDS_NODE_METADATA",
    "CONFIG_GRPC_XDS_SERVER_URL",
    "CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL",
    "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS",
    "CONFIG_GRPC_XDS_SERVER_USE_TLS",
    "CONFIG_GRPC_XDS_CLIENT_TLS_CERT",
    "CONFIG_GRPC_XDS_CLIENT_TLS_KEY",
    "CONFIG_GRPC_XDS_SERVER_TLS_CACERT",
    "CONFIG_GRPC_XDS_SERVER_TLS_SAN",
    "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL",
    "XDS_CLIENT_BACKOFF_MAX_INTERVAL",
    "XDS_CLIENT_BACKOFF_RANDOM_FACTOR",
    "XDS_CLIENT_BACKOFF_JITTER",
    "XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES",
    "USE_DOG_STATSD",
    "USE_DOG_STATSD_MOGRIFIERS",
    "USE_STATSD",
    "STATSD_HOST",
    "STATSD_PORT",
    "EXTRA_TAGS",
    "STATS_FLUSH_INTERVAL",
    "DISABLE_STATS",
    "USE_PROMETHEUS",
    "PROMETHEUS_ADDR",
    "PROMETHEUS_PATH",
    "PROMETHEUS_MAPPER_YAML",
    "PROMETHEUS_RESPONSE_TIME_AS_MILLISECONDS",
    "RUNTIME_ROOT",
    "RUNTIME_SUBDIRECTORY",
    "RUNTIME_APPDIRECTORY",
    "RUNTIME_IGNOREDOTFILES",
    "RUNTIME_WATCH_ROOT",
    "EXPIRATION_JITTER_MAX_SECONDS",
    "LOCAL_CACHE_SIZE_IN_BYTES",
    "NEAR_LIMIT_RATIO",
    "CACHE_KEY_PREFIX",
    "BACKEND_TYPE",
    "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT",
    "LIMIT_RESPONSE_HEADERS_ENABLED",
    "LIMIT_LIMIT_HEADER",
    "LIMIT_REMAINING_HEADER",
    "LIMIT_RESET_HEADER",
    "HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED",
    "REDIS_SOCKET_TYPE",
    "REDIS_TYPE",
    "REDIS_URL",
    "REDIS_POOL_SIZE",
    "REDIS_AUTH",
    "REDIS_TLS",
    "REDIS_TLS_CLIENT_CERT",
    "REDIS_TLS_CLIENT_KEY",
    "REDIS_TLS_CACERT",
    "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION",
    "REDIS_PIPELINE_WINDOW",
    "REDIS_PIPELINE_LIMIT",
    "REDIS_CLUSTER_PIPELINE_PARALLELISM",
    "REDIS_PERSECOND",
    "REDIS_PERSECOND_SOCKET_TYPE",
    "REDIS_PERSECOND_TYPE",
    "REDIS_PERSECOND_URL",
    "REDIS_PERSECOND_POOL_SIZE",
    "REDIS_PERSECOND_AUTH",
    "REDIS_PERSECOND_TLS",
    "REDIS_SENTINEL_AUTH",
    "REDIS_PERSECOND_SENTINEL_AUTH",
    "REDIS_PERSECOND_PIPELINE_WINDOW",
    "REDIS_PERSECOND_PIPELINE_LIMIT",
    "REDIS_PERSECOND_CLUSTER_PIPELINE_PARALLELISM",
    "REDIS_HEALTH_CHECK_ACTIVE_CONNECTION",
    "REDIS_TIMEOUT",
    "REDIS_PERSECOND_TIMEOUT",
    "REDIS_POOL_ON_EMPTY_BEHAVIOR",
    "REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR",
    "REDIS_STARTUP_INITIAL_INTERVAL",
    "REDIS_STARTUP_MAX_INTERVAL",
    "REDIS_STARTUP_MAX_ELAPSED_TIME",
    "MEMCACHE_HOST_PORT",
    "MEMCACHE_MAX_IDLE_CONNS",
    "MEMCACHE_SRV",
    "MEMCACHE_SRV_REFRESH",
    "MEMCACHE_TLS",
    "MEMCACHE_TLS_CLIENT_CERT",
    "MEMCACHE_TLS_CLIENT_KEY",
    "MEMCACHE_TLS_CACERT",
    "MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION",
    "SHADOW_MODE",
    "QUOTA_MODE",
    "RESPONSE_DYNAMIC_METADATA",
    "MERGE_DOMAIN_CONFIG",
    "TRACING_ENABLED",
    "TRACING_SERVICE_NAME",
    "TRACING_SERVICE_NAMESPACE",
    "TRACING_SERVICE_INSTANCE_ID",
    "TRACING_EXPORTER_PROTOCOL",
    "TRACING_SAMPLING_RATE",
];

/// The reference's variables that no row of the table reads.
pub fn unread_names() -> Vec<&'static str> {
    let read: BTreeSet<&str> = super::rows()
        .flat_map(|(names, _)| names.iter().copied())
        .collect();
    let mut unread: Vec<&str> = REFERENCE_NAMES
        .iter()
        .copied()
        .filter(|name| !read.contains(name))
        .collect();
    unread.sort_unstable();
    unread
}

/// The unread variables `env` sets, in name order.
pub fn set_but_unread(env: impl Fn(&str) -> Option<String>) -> Vec<&'static str> {
    unread_names()
        .into_iter()
        .filter(|name| env(name).is_some())
        .collect()
}

/// Logs, in one line, the reference's variables `env` sets that rls does not read; not
/// an error: a Deployment written for the reference keeps working.
pub fn warn_unread(env: impl Fn(&str) -> Option<String>) {
    let unread = set_but_unread(env);
    if !unread.is_empty() {
        tracing::warn!(
            variables = %unread.join(", "),
            "envoyproxy/ratelimit variables that rls does not read (docs/migrating.md says what takes their place)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_reads_variables_of_the_reference() {
        for (names, _) in super::super::rows() {
            for name in names {
                assert!(
                    REFERENCE_NAMES.contains(name),
                    "{name} is no reference variable"
                );
            }
        }
    }

    #[test]
    fn only_set_variables_without_a_row_are_named() {
        let env = |name: &str| {
            [
                "USE_STATSD",
                "REDIS_SOCKET_TYPE",
                "SHADOW_MODE",
                "NOT_A_REFERENCE_VARIABLE",
            ]
            .contains(&name)
            .then(|| "x".to_owned())
        };
        assert_eq!(set_but_unread(env), ["REDIS_SOCKET_TYPE", "USE_STATSD"]);
    }

    #[test]
    fn the_migration_guide_lists_exactly_the_unread_variables() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/migrating.md");
        let guide = std::fs::read_to_string(path).expect("docs/migrating.md");
        let (_, section) = guide
            .split_once("### Variables rls does not read")
            .expect("a section of the variables rls does not read");
        // The first cell of each row of its table, after the header and separator.
        let mut listed: Vec<&str> = section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2)
            .flat_map(|line| {
                let cell = line.split('|').nth(1).unwrap_or_default();
                cell.split('`').skip(1).step_by(2)
            })
            .collect();
        listed.sort_unstable();
        let mut unread = unread_names();
        unread.sort_unstable();
        assert_eq!(listed, unread);
    }
}
