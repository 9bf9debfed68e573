//! `XdsArgs`: where the quota rules come from — quota files, or an xDS management server
//! (the reference's `CONFIG_TYPE=GRPC_XDS_SOTW`, as Envoy Gateway runs it) — and how the
//! xDS client reaches that server.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::error::SettingsError;
use crate::tls::ClientTlsFiles;
use crate::xds::{Backoff, XdsOptions};

/// The `--config-source` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConfigSource {
    /// Quota files (`--config`), reloaded when they change.
    Files,
    /// An xDS management server: ADS, state of the world, `RateLimitConfig` resources.
    Xds,
}

/// Settings of the rules' source and of the xDS client.
#[derive(Debug, Clone, Args)]
pub struct XdsArgs {
    /// Where the quota rules come from.
    #[arg(long, env = "RLS_CONFIG_SOURCE", value_enum, default_value_t = ConfigSource::Files)]
    pub config_source: ConfigSource,

    /// The xDS management server: host:port, http://host:port or https://host:port.
    #[arg(
        long,
        env = "RLS_XDS_SERVER",
        value_name = "URL",
        default_value = "localhost:18000"
    )]
    pub xds_server: String,

    /// The node id sent to the xDS server, which picks the rules by it.
    #[arg(long, env = "RLS_XDS_NODE_ID", default_value = "default")]
    pub xds_node_id: String,

    /// Node metadata sent to the xDS server: key=value pairs, comma-separated.
    #[arg(
        long,
        env = "RLS_XDS_NODE_METADATA",
        value_delimiter = ',',
        value_name = "KEY=VALUE",
        value_parser = key_value
    )]
    pub xds_node_metadata: Vec<(String, String)>,

    /// Reach the xDS server over TLS (as an https:// server does).
    #[arg(long, env = "RLS_XDS_TLS", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub xds_tls: bool,

    /// PEM file of the CA certificates that may sign the xDS server's certificate
    /// (default: the system's).
    #[arg(long, env = "RLS_XDS_TLS_CA", value_name = "PEM")]
    pub xds_tls_ca: Option<PathBuf>,

    /// PEM file of the client certificate presented to the xDS server (mTLS).
    #[arg(
        long,
        env = "RLS_XDS_TLS_CERT",
        value_name = "PEM",
        requires = "xds_tls_key"
    )]
    pub xds_tls_cert: Option<PathBuf>,

    /// PEM file of that certificate's private key.
    #[arg(
        long,
        env = "RLS_XDS_TLS_KEY",
        value_name = "PEM",
        requires = "xds_tls_cert"
    )]
    pub xds_tls_key: Option<PathBuf>,

    /// The name the xDS server's certificate must carry (default: the server's host).
    #[arg(long, env = "RLS_XDS_TLS_SAN", value_name = "NAME")]
    pub xds_tls_san: Option<String>,

    /// First wait before connecting again to the xDS server; it doubles, with ±50%
    /// jitter, up to --xds-backoff-max.
    #[arg(long, env = "RLS_XDS_BACKOFF_INITIAL", value_parser = humantime::parse_duration, default_value = "1s")]
    pub xds_backoff_initial: Duration,

    /// Longest wait before connecting again to the xDS server.
    #[arg(long, env = "RLS_XDS_BACKOFF_MAX", value_parser = humantime::parse_duration, default_value = "60s")]
    pub xds_backoff_max: Duration,

    /// Largest xDS response accepted, in bytes; a larger one breaks the stream.
    #[arg(long, env = "RLS_XDS_MAX_MESSAGE_BYTES", default_value_t = 4 << 20)]
    pub xds_max_message_bytes: usize,

    /// Ready, answering with no limits, before the xDS server has sent a first rule set
    /// (otherwise /readyz waits for it).
    #[arg(long, env = "RLS_FORCE_START_WITHOUT_INITIAL_CONFIG", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub force_start_without_initial_config: bool,
}

/// One `key=value` pair.
fn key_value(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{pair:?} is not key=value")),
    }
}

impl XdsArgs {
    /// The xDS client's options with `--config-source xds`, `None` with files. Refuses
    /// xDS-only settings with files (they could not take effect), TLS files without TLS,
    /// and a server that is not `host:port` or an http(s) URL.
    pub fn options(&self) -> Result<Option<XdsOptions>, SettingsError> {
        if self.config_source == ConfigSource::Files {
            let xds_only = [
                (self.xds_tls, "--xds-tls"),
                (self.xds_tls_ca.is_some(), "--xds-tls-ca"),
                (self.xds_tls_cert.is_some(), "--xds-tls-cert"),
                (self.xds_tls_san.is_some(), "--xds-tls-san"),
                (!self.xds_node_metadata.is_empty(), "--xds-node-metadata"),
                (
                    self.force_start_without_initial_config,
                    "--force-start-without-initial-config",
                ),
            ];
            if let Some((_, flag)) = xds_only.iter().find(|(given, _)| *given) {
                return Err(SettingsError::Conflict {
                    setting: flag,
                    reason: "it needs --config-source xds",
                });
            }
            return Ok(None);
        }
        if self.xds_tls_cert.is_some() != self.xds_tls_key.is_some() {
            return Err(SettingsError::Conflict {
                setting: "--xds-tls-cert",
                reason: "it goes with --xds-tls-key",
            });
        }
        let (tls, uri) = server_uri(&self.xds_server, self.xds_tls)?;
        let files_without_tls =
            self.xds_tls_ca.is_some() || self.xds_tls_cert.is_some() || self.xds_tls_san.is_some();
        if !tls && files_without_tls {
            return Err(SettingsError::Conflict {
                setting: "--xds-tls-ca / --xds-tls-cert / --xds-tls-san",
                reason: "they need --xds-tls or an https:// server",
            });
        }
        if self.xds_backoff_initial.is_zero() || self.xds_backoff_max < self.xds_backoff_initial {
            return Err(SettingsError::Conflict {
                setting: "--xds-backoff-initial",
                reason: "it must be above zero and at most --xds-backoff-max",
            });
        }
        let tls = tls.then(|| ClientTlsFiles {
            ca: self.xds_tls_ca.clone(),
            identity: self.xds_tls_cert.clone().zip(self.xds_tls_key.clone()),
            server_name: self.xds_tls_san.clone(),
        });
        Ok(Some(XdsOptions {
            uri,
            tls,
            node_id: self.xds_node_id.clone(),
            node_metadata: self.xds_node_metadata.clone(),
            backoff: Backoff::new(self.xds_backoff_initial, self.xds_backoff_max),
            max_message_bytes: self.xds_max_message_bytes,
            force_start: self.force_start_without_initial_config,
        }))
    }
}

/// Whether the server is reached over TLS, and its URI: `host:port` becomes `http://` (or
/// `https://` with `tls`); an `https://` URL means TLS.
fn server_uri(server: &str, tls: bool) -> Result<(bool, http::Uri), SettingsError> {
    let invalid = || SettingsError::Invalid {
        name: "--xds-server",
        value: server.to_owned(),
        expected: "host:port, http://host:port or https://host:port",
    };
    let (tls, rest) = match server.split_once("://") {
        None => (tls, server),
        Some(("http", rest)) => (tls, rest),
        Some(("https", rest)) => (true, rest),
        Some(_) => return Err(invalid()),
    };
    let scheme = if tls { "https" } else { "http" };
    let uri: http::Uri = format!("{scheme}://{rest}")
        .parse()
        .map_err(|_| invalid())?;
    let has_port = uri.port_u16().is_some();
    let bare = uri.path() == "/" && uri.query().is_none() && !rest.ends_with('/');
    if !has_port || !bare {
        return Err(invalid());
    }
    Ok((tls, uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_host_and_port_or_an_http_url() {
        let uri = |server, tls| server_uri(server, tls).map(|(t, u)| (t, u.to_string()));
        assert_eq!(
            uri("envoy-gateway:18001", false).expect("valid"),
            (false, "http://envoy-gateway:18001/".to_owned())
        );
        assert_eq!(
            uri("envoy-gateway:18001", true).expect("valid"),
            (true, "https://envoy-gateway:18001/".to_owned())
        );
        assert_eq!(
            uri("https://[::1]:18000", false).expect("valid"),
            (true, "https://[::1]:18000/".to_owned())
        );
        for bad in ["envoy-gateway", "grpc://a:1", "http://a:1/path", ""] {
            assert!(uri(bad, false).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn settings_that_cannot_take_effect_are_refused() {
        let defaults = crate::settings::Settings::defaults().xds;
        assert_eq!(defaults.options().expect("valid"), None, "files by default");
        let refused = |change: fn(&mut XdsArgs)| {
            let mut args = defaults.clone();
            change(&mut args);
            args.options().expect_err("refused").to_string()
        };
        let error = refused(|a| a.force_start_without_initial_config = true);
        assert!(
            error.contains("--force-start-without-initial-config: it needs --config-source xds"),
            "{error}"
        );
        let error = refused(|a| {
            a.config_source = ConfigSource::Xds;
            a.xds_tls_ca = Some("ca.crt".into());
        });
        assert!(
            error.contains("need --xds-tls or an https:// server"),
            "{error}"
        );
        let error = refused(|a| {
            a.config_source = ConfigSource::Xds;
            a.xds_tls_cert = Some("tls.crt".into());
        });
        assert!(
            error.contains("--xds-tls-cert: it goes with --xds-tls-key"),
            "{error}"
        );
        let mut https = defaults.clone();
        https.config_source = ConfigSource::Xds;
        https.xds_server = "https://envoy-gateway:18001".into();
        https.xds_tls_ca = Some("ca.crt".into());
        let options = https.options().expect("valid").expect("xds");
        assert_eq!(options.tls.and_then(|t| t.ca), Some("ca.crt".into()));
    }

    #[test]
    fn metadata_pairs_need_a_key_and_an_equals_sign() {
        assert_eq!(key_value("zone=a=b"), Ok(("zone".into(), "a=b".into())));
        assert!(key_value("zone:a").is_err());
        assert!(key_value("=a").is_err());
    }
}
