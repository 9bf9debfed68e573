//! The reference's variables that Envoy Gateway's Deployment sets beyond the basics: rules
//! from an xDS server, TLS on the gRPC listener, Prometheus metrics on a port of their
//! own, Redis over TLS. Rows of the same table as [`SERVE_VARIABLES`](super::SERVE_VARIABLES).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::{Variables, set};
use crate::settings::Settings;
use crate::settings::xds::ConfigSource;

/// Where the reference serves Prometheus metrics when `PROMETHEUS_ADDR` is unset.
const PROMETHEUS_ADDR: &str = ":9090";

/// The rows.
pub const GATEWAY_VARIABLES: &[Variables<Settings>] = &[
    Variables {
        names: &["CONFIG_TYPE"],
        settings: &["config_source"],
        read: |s, v| match v.text(0).map(|t| t.to_ascii_uppercase()).as_deref() {
            None | Some("FILE") => Ok(()),
            Some("GRPC_XDS_SOTW") => set(&mut s.xds.config_source, Some(ConfigSource::Xds)),
            Some(_) => Err(v.invalid(0, v.raw(0).unwrap_or_default(), "FILE or GRPC_XDS_SOTW")),
        },
    },
    Variables {
        names: &["CONFIG_GRPC_XDS_SERVER_URL"],
        settings: &["xds_server"],
        read: |s, v| set(&mut s.xds.xds_server, v.text(0)),
    },
    Variables {
        names: &["CONFIG_GRPC_XDS_NODE_ID"],
        settings: &["xds_node_id"],
        read: |s, v| set(&mut s.xds.xds_node_id, v.text(0)),
    },
    Variables {
        names: &["CONFIG_GRPC_XDS_NODE_METADATA"],
        settings: &["xds_node_metadata"],
        read: |s, v| {
            let Some(text) = v.text(0).filter(|_| from_xds(s)) else {
                return Ok(());
            };
            let pairs = text.split(',').map(|pair| match pair.split_once('=') {
                Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
                _ => Err(v.invalid(0, text.clone(), "key=value pairs, comma-separated")),
            });
            s.xds.xds_node_metadata = pairs.collect::<Result<_, _>>()?;
            Ok(())
        },
    },
    Variables {
        names: &[
            "CONFIG_GRPC_XDS_SERVER_USE_TLS",
            "CONFIG_GRPC_XDS_CLIENT_TLS_CERT",
            "CONFIG_GRPC_XDS_CLIENT_TLS_KEY",
            "CONFIG_GRPC_XDS_SERVER_TLS_CACERT",
            "CONFIG_GRPC_XDS_SERVER_TLS_SAN",
        ],
        settings: &[
            "xds_tls",
            "xds_tls_cert",
            "xds_tls_key",
            "xds_tls_ca",
            "xds_tls_san",
        ],
        // As in the reference, the files are read only when TLS is on.
        read: |s, v| {
            if !from_xds(s) || v.go_bool(0)? != Some(true) {
                return Ok(());
            }
            s.xds.xds_tls = true;
            s.xds.xds_tls_cert = v.text(1).map(PathBuf::from);
            s.xds.xds_tls_key = v.text(2).map(PathBuf::from);
            s.xds.xds_tls_ca = v.text(3).map(PathBuf::from);
            s.xds.xds_tls_san = v.text(4);
            Ok(())
        },
    },
    Variables {
        names: &[
            "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL",
            "XDS_CLIENT_BACKOFF_MAX_INTERVAL",
        ],
        settings: &["xds_backoff_initial", "xds_backoff_max"],
        read: |s, v| {
            set(&mut s.xds.xds_backoff_initial, v.duration(0)?)?;
            set(&mut s.xds.xds_backoff_max, v.duration(1)?)
        },
    },
    Variables {
        names: &["XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES"],
        settings: &["xds_max_message_bytes"],
        read: |s, v| {
            let bytes = v.text(0).map(|t| match t.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(v.invalid(0, t, "a number of bytes")),
            });
            set(&mut s.xds.xds_max_message_bytes, bytes.transpose()?)
        },
    },
    Variables {
        names: &["FORCE_START_WITHOUT_INITIAL_CONFIG"],
        settings: &["force_start_without_initial_config"],
        read: |s, v| match from_xds(s) {
            true => set(&mut s.xds.force_start_without_initial_config, v.go_bool(0)?),
            false => Ok(()),
        },
    },
    Variables {
        names: &[
            "GRPC_SERVER_USE_TLS",
            "GRPC_SERVER_TLS_CERT",
            "GRPC_SERVER_TLS_KEY",
            "GRPC_CLIENT_TLS_CACERT",
            "GRPC_CLIENT_TLS_SAN",
        ],
        settings: &[
            "grpc_tls_cert",
            "grpc_tls_key",
            "grpc_tls_client_ca",
            "grpc_tls_client_san",
        ],
        read: |s, v| {
            if v.go_bool(0)? != Some(true) {
                return Ok(());
            }
            let (Some(cert), Some(key)) = (v.text(1), v.text(2)) else {
                let expected = "GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY with it";
                return Err(v.invalid(0, "true".into(), expected));
            };
            s.grpc_tls.grpc_tls_cert = Some(cert.into());
            s.grpc_tls.grpc_tls_key = Some(key.into());
            s.grpc_tls.grpc_tls_client_ca = v.text(3).map(PathBuf::from);
            s.grpc_tls.grpc_tls_client_san = v.text(4);
            Ok(())
        },
    },
    Variables {
        names: &["USE_PROMETHEUS", "PROMETHEUS_ADDR", "PROMETHEUS_PATH"],
        settings: &["metrics_addr", "metrics_path"],
        read: |s, v| {
            if v.go_bool(0)? != Some(true) {
                return Ok(());
            }
            let addr = v.text(1).unwrap_or_else(|| PROMETHEUS_ADDR.to_owned());
            let Some(parsed) = listen_addr(&addr) else {
                return Err(v.invalid(1, addr, "[host]:port"));
            };
            s.metrics.metrics_addr = Some(parsed);
            if let Some(path) = v.text(2) {
                if !path.starts_with('/') {
                    return Err(v.invalid(2, path, "a path starting with /"));
                }
                s.metrics.metrics_path = path;
            }
            Ok(())
        },
    },
    Variables {
        names: &[
            "REDIS_TLS",
            "REDIS_TLS_CLIENT_CERT",
            "REDIS_TLS_CLIENT_KEY",
            "REDIS_TLS_CACERT",
        ],
        settings: &[
            "redis_urls",
            "redis_cluster",
            "redis_tls_cert",
            "redis_tls_key",
            "redis_tls_ca",
        ],
        // After REDIS_URL's row: its redis:// URLs become rediss://.
        read: |s, v| {
            if v.go_bool(0)? != Some(true) {
                return Ok(());
            }
            for url in s.redis_urls.iter_mut().chain(&mut s.redis_cluster) {
                if let Some(rest) = url.strip_prefix("redis://") {
                    *url = format!("rediss://{rest}");
                }
            }
            s.redis_tls_cert = v.text(1).map(PathBuf::from);
            s.redis_tls_key = v.text(2).map(PathBuf::from);
            s.redis_tls_ca = v.text(3).map(PathBuf::from);
            Ok(())
        },
    },
];

/// True with rules from xDS. The rows of settings that only the xDS source has read
/// nothing otherwise, as the reference ignores them with files: rls refuses such settings
/// given as flags, and a Deployment for the reference must not stop on them.
fn from_xds(s: &Settings) -> bool {
    s.xds.config_source == ConfigSource::Xds
}

/// A listening address as Go writes it: `:port` (every interface) or `host:port`.
fn listen_addr(text: &str) -> Option<SocketAddr> {
    let text = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    text.to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::super::tests::settings_from;
    use super::*;
    use crate::settings::BackendKind;

    /// What Envoy Gateway's Deployment sets (resource.go), with Redis over TLS.
    const ENVOY_GATEWAY: &[(&str, &str)] = &[
        ("RUNTIME_ROOT", "/data"),
        ("RUNTIME_SUBDIRECTORY", "ratelimit"),
        ("RUNTIME_WATCH_ROOT", "false"),
        ("LOG_LEVEL", "info"),
        ("USE_STATSD", "false"),
        ("CONFIG_TYPE", "GRPC_XDS_SOTW"),
        ("CONFIG_GRPC_XDS_SERVER_URL", "envoy-gateway:18001"),
        ("CONFIG_GRPC_XDS_NODE_ID", "envoy-ratelimit"),
        ("GRPC_SERVER_USE_TLS", "true"),
        ("GRPC_SERVER_TLS_CERT", "/certs/tls.crt"),
        ("GRPC_SERVER_TLS_KEY", "/certs/tls.key"),
        ("GRPC_SERVER_TLS_CA_CERT", "/certs/ca.crt"),
        ("CONFIG_GRPC_XDS_SERVER_USE_TLS", "true"),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "/certs/tls.crt"),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "/certs/tls.key"),
        ("CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "/certs/ca.crt"),
        ("FORCE_START_WITHOUT_INITIAL_CONFIG", "true"),
        ("REDIS_SOCKET_TYPE", "tcp"),
        ("REDIS_URL", "redis.redis-system.svc.cluster.local:6379"),
        ("REDIS_TLS", "true"),
        ("REDIS_TLS_CLIENT_CERT", "/redis-certs/tls.crt"),
        ("REDIS_TLS_CLIENT_KEY", "/redis-certs/tls.key"),
        ("USE_PROMETHEUS", "true"),
        ("PROMETHEUS_ADDR", ":19001"),
        ("PROMETHEUS_MAPPER_YAML", "/etc/statsd-exporter/conf.yaml"),
    ];

    #[test]
    fn envoy_gateways_environment_fills_every_setting_it_means() {
        let s = settings_from(&["rls"], ENVOY_GATEWAY).expect("valid settings");
        assert_eq!(s.xds.config_source, ConfigSource::Xds);
        assert_eq!(s.quotas.config, None, "no quota files with the xDS source");
        let xds = s.xds.options().expect("valid").expect("the xDS source");
        assert_eq!(xds.uri.to_string(), "https://envoy-gateway:18001/");
        assert_eq!(xds.node_id, "envoy-ratelimit");
        assert!(xds.force_start);
        let tls = xds.tls.expect("TLS to the xDS server");
        assert_eq!(tls.ca, Some("/certs/ca.crt".into()));
        assert_eq!(
            tls.identity,
            Some(("/certs/tls.crt".into(), "/certs/tls.key".into()))
        );
        assert_eq!(tls.server_name, None);
        let grpc = s.grpc_tls.files().expect("valid").expect("TLS on gRPC");
        assert_eq!(grpc.cert, PathBuf::from("/certs/tls.crt"));
        assert_eq!(
            grpc.client_ca, None,
            "GRPC_SERVER_TLS_CA_CERT is not the reference's"
        );
        assert_eq!(s.backend_kind().expect("valid"), BackendKind::Redis);
        let url = "rediss://redis.redis-system.svc.cluster.local:6379";
        assert_eq!(s.redis_urls, [url]);
        assert_eq!(s.redis_tls_cert, Some("/redis-certs/tls.crt".into()));
        assert_eq!(s.metrics.metrics_addr, listen_addr(":19001"));
        assert_eq!(s.metrics.metrics_path, "/metrics");
    }

    #[test]
    fn tls_files_are_read_only_when_tls_is_on_and_then_needed() {
        let off = [
            ("GRPC_SERVER_USE_TLS", "false"),
            ("GRPC_SERVER_TLS_CERT", "/certs/tls.crt"),
            ("CONFIG_GRPC_XDS_SERVER_USE_TLS", "0"),
            ("CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "/certs/ca.crt"),
        ];
        let s = settings_from(&["rls"], &off).expect("valid settings");
        assert_eq!(s.grpc_tls.grpc_tls_cert, None);
        assert_eq!(s.xds.xds_tls_ca, None);
        let error =
            settings_from(&["rls"], &[("GRPC_SERVER_USE_TLS", "true")]).expect_err("no cert");
        assert!(
            error.to_string().starts_with("invalid GRPC_SERVER_USE_TLS"),
            "{error}"
        );
    }

    #[test]
    fn go_forms_are_read_and_anything_else_is_refused_naming_the_variable() {
        let s = settings_from(
            &["rls"],
            &[
                ("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "500ms"),
                ("XDS_CLIENT_BACKOFF_MAX_INTERVAL", "1m30s"),
                ("XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES", "1048576"),
                ("CONFIG_TYPE", "GRPC_XDS_SOTW"),
                ("CONFIG_GRPC_XDS_NODE_METADATA", "cluster=eg,zone=a"),
                ("USE_PROMETHEUS", "true"),
            ],
        )
        .expect("valid settings");
        assert_eq!(
            s.xds.xds_backoff_initial,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(s.xds.xds_backoff_max, std::time::Duration::from_secs(90));
        assert_eq!(s.xds.xds_max_message_bytes, 1 << 20);
        assert_eq!(s.xds.xds_node_metadata[1], ("zone".into(), "a".into()));
        assert_eq!(
            s.metrics.metrics_addr,
            listen_addr(":9090"),
            "the reference's default"
        );
        for (name, value) in [
            ("CONFIG_TYPE", "GRPC_XDS_DELTA"),
            ("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "soon"),
            ("CONFIG_GRPC_XDS_NODE_METADATA", "zone:a"),
            ("XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES", "0"),
        ] {
            let vars = [("CONFIG_TYPE", "GRPC_XDS_SOTW"), (name, value)];
            let error = settings_from(&["rls"], &vars).expect_err(name);
            assert!(
                error.to_string().starts_with(&format!("invalid {name}")),
                "{error}"
            );
        }
    }

    #[test]
    fn xds_variables_with_quota_files_are_not_read() {
        let s = settings_from(
            &["rls"],
            &[
                ("FORCE_START_WITHOUT_INITIAL_CONFIG", "true"),
                ("CONFIG_GRPC_XDS_SERVER_USE_TLS", "true"),
                ("CONFIG_GRPC_XDS_NODE_METADATA", "zone=a"),
                ("RUNTIME_ROOT", "/srv"),
            ],
        )
        .expect("valid settings");
        assert_eq!(s.xds.options().expect("usable"), None);
        assert_eq!(s.quotas.config, Some(PathBuf::from("/srv/config")));
    }

    #[test]
    fn flags_given_are_kept_and_a_config_path_with_xds_is_refused_later() {
        let s = settings_from(
            &[
                "rls",
                "--config",
                "quotas",
                "--metrics-addr",
                "127.0.0.1:9000",
            ],
            &[("CONFIG_TYPE", "GRPC_XDS_SOTW"), ("USE_PROMETHEUS", "true")],
        )
        .expect("valid settings");
        assert_eq!(s.quotas.config, Some(PathBuf::from("quotas")));
        assert_eq!(s.metrics.metrics_addr, listen_addr("127.0.0.1:9000"));
        let error = crate::source::RuleSource::initial_quotas(&s).expect_err("both sources");
        assert!(error.to_string().contains("--config"), "{error}");
    }

    #[test]
    fn go_listen_addresses_are_read_as_go_writes_them() {
        assert_eq!(
            listen_addr(":19001"),
            Some("0.0.0.0:19001".parse().expect("addr"))
        );
        assert_eq!(
            listen_addr("127.0.0.1:9090"),
            Some("127.0.0.1:9090".parse().expect("addr"))
        );
        assert_eq!(listen_addr("19001"), None);
    }
}
