//! The reference's variables that Envoy Gateway's Deployment sets beyond the basics: rules
//! from an xDS server, TLS on the gRPC listener, Prometheus metrics on a port of their
//! own, Redis over TLS. Rows of the same table as [`SERVE_VARIABLES`](super::SERVE_VARIABLES).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::{Values, Variables, set};
use crate::error::SettingsError;
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
            let Some(text) = v.text(0) else {
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
            if v.go_bool(0)? != Some(true) {
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
        read: |s, v| set(&mut s.xds.force_start_without_initial_config, v.go_bool(0)?),
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

impl Values<'_> {
    /// Variable `i` as a Go duration (`10s`, `1m30s`, `500ms`), when set to something.
    fn duration(&self, i: usize) -> Result<Option<std::time::Duration>, SettingsError> {
        let Some(text) = self.text(i) else {
            return Ok(None);
        };
        match humantime::parse_duration(&text) {
            Ok(duration) => Ok(Some(duration)),
            Err(_) => Err(self.invalid(i, text, "a duration such as 10s or 1m30s")),
        }
    }
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
    use super::*;

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
