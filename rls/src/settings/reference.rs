//! The reference service's environment variables, in one table: each row names the
//! variables, the settings they fill and how their values are read. The table fills the
//! settings ([`Settings::apply_reference_env`], [`QuotaArgs::apply_reference_env`]),
//! lists the variables in `--help` ([`help`]), and a test holds `docs/migrating.md` to it.

use std::fmt::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::ArgMatches;
use clap::parser::ValueSource;

use super::xds::ConfigSource;
use super::{BackendKind, LogFormat, QuotaArgs, Settings};
use crate::error::SettingsError;
use crate::store::redis::redis_url;

mod gateway;
pub mod unread;

pub use gateway::GATEWAY_VARIABLES;

/// Reads a variable of the environment (injected for tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One row of the table: reference variables read together, the settings they fill.
pub struct Variables<T: 'static> {
    /// The reference's names.
    pub names: &'static [&'static str],
    /// The settings they fill, by clap id (the field's name). The row is read only while
    /// every one of them is unset: neither its flag nor its `RLS_*` variable was given.
    pub settings: &'static [&'static str],
    /// Reads the row's variables into the settings.
    read: fn(&mut T, &Values<'_>) -> Result<(), SettingsError>,
}

/// The variables of one row, as the environment holds them.
struct Values<'a> {
    names: &'static [&'static str],
    env: Env<'a>,
}

impl Values<'_> {
    /// Variable `i` of the row, when set, even to nothing.
    fn raw(&self, i: usize) -> Option<String> {
        (self.env)(self.names[i])
    }

    /// Variable `i` of the row, when set to something.
    fn text(&self, i: usize) -> Option<String> {
        self.raw(i).filter(|v| !v.is_empty())
    }

    /// Variable `i` as Go's `strconv.ParseBool` reads it, as the reference does.
    fn go_bool(&self, i: usize) -> Result<Option<bool>, SettingsError> {
        let Some(value) = self.raw(i) else {
            return Ok(None);
        };
        match value.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Some(true)),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Some(false)),
            _ => Err(self.invalid(i, value, "true or false")),
        }
    }

    /// Variable `i` as a Go duration (`24h`, `1m30s`, `500ms`), when set to something.
    fn duration(&self, i: usize) -> Result<Option<std::time::Duration>, SettingsError> {
        let Some(value) = self.text(i) else {
            return Ok(None);
        };
        humantime::parse_duration(&value)
            .map(Some)
            .map_err(|_| self.invalid(i, value, "a duration such as 10s, 1m30s or 24h"))
    }

    /// Variable `i` as a ratio from 0 to 1, when set to something.
    fn ratio(&self, i: usize) -> Result<Option<f32>, SettingsError> {
        let Some(value) = self.text(i) else {
            return Ok(None);
        };
        match super::operations::parse_ratio(&value) {
            Ok(ratio) => Ok(Some(ratio)),
            Err(_) => Err(self.invalid(i, value, "a number from 0 to 1")),
        }
    }

    /// Variable `i`, lowercase, when set to something.
    fn lowercase(&self, i: usize) -> Option<String> {
        self.text(i).map(|v| v.to_ascii_lowercase())
    }

    fn invalid(&self, i: usize, value: String, expected: &'static str) -> SettingsError {
        SettingsError::Invalid {
            name: self.names[i],
            value,
            expected,
        }
    }

    /// Sets `addr` from the row's host (variable 0) and port (variable 1); either may be
    /// missing, the other part then stays as it is.
    fn host_port(&self, addr: &mut SocketAddr) -> Result<(), SettingsError> {
        let current = *addr;
        let (host, port) = (self.text(0), self.text(1));
        if host.is_none() && port.is_none() {
            return Ok(());
        }
        let port_number = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| self.invalid(1, p, "a port number"))?,
            None => current.port(),
        };
        let Some(host) = host else {
            return set(addr, Some(SocketAddr::new(current.ip(), port_number)));
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let resolved = (bare, port_number)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next());
        match resolved {
            Some(resolved) => set(addr, Some(resolved)),
            None => Err(self.invalid(0, host, "an IP address or a resolvable host name")),
        }
    }
}

/// Overwrites `slot` when there is a value.
fn set<T>(slot: &mut T, value: Option<T>) -> Result<(), SettingsError> {
    if let Some(value) = value {
        *slot = value;
    }
    Ok(())
}

/// The variables of the quota files, which `rls check` reads too.
pub const QUOTA_VARIABLES: &[Variables<QuotaArgs>] = &[
    Variables {
        names: &[
            "RUNTIME_ROOT",
            "RUNTIME_SUBDIRECTORY",
            "RUNTIME_APPDIRECTORY",
        ],
        settings: &["config"],
        // The path is ROOT/SUBDIRECTORY/APPDIRECTORY, the last defaulting to "config".
        read: |quotas, v| {
            if let Some(root) = v.text(0) {
                let mut path = PathBuf::from(root);
                if let Some(sub) = v.text(1) {
                    path.push(sub);
                }
                path.push(v.raw(2).unwrap_or_else(|| "config".into()));
                quotas.config = Some(path);
            }
            Ok(())
        },
    },
    Variables {
        names: &["MERGE_DOMAIN_CONFIG"],
        settings: &["merge_domains"],
        read: |quotas, v| set(&mut quotas.merge_domains, v.go_bool(0)?),
    },
];

/// The variables of `rls serve`'s own settings.
pub const SERVE_VARIABLES: &[Variables<Settings>] = &[
    Variables {
        names: &["GRPC_HOST", "GRPC_PORT"],
        settings: &["grpc_addr"],
        read: |s, v| v.host_port(&mut s.grpc_addr),
    },
    Variables {
        names: &["HOST", "PORT"],
        settings: &["http_addr"],
        read: |s, v| v.host_port(&mut s.http_addr),
    },
    Variables {
        names: &["SHADOW_MODE"],
        settings: &["shadow_mode"],
        read: |s, v| set(&mut s.shadow_mode, v.go_bool(0)?),
    },
    Variables {
        names: &["LIMIT_RESPONSE_HEADERS_ENABLED"],
        settings: &["response_headers"],
        read: |s, v| set(&mut s.response_headers, v.go_bool(0)?),
    },
    Variables {
        names: &["LIMIT_LIMIT_HEADER"],
        settings: &["limit_header"],
        read: |s, v| set(&mut s.limit_header, v.text(0)),
    },
    Variables {
        names: &["LIMIT_REMAINING_HEADER"],
        settings: &["remaining_header"],
        read: |s, v| set(&mut s.remaining_header, v.text(0)),
    },
    Variables {
        names: &["LIMIT_RESET_HEADER"],
        settings: &["reset_header"],
        read: |s, v| set(&mut s.reset_header, v.text(0)),
    },
    Variables {
        names: &["STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT"],
        settings: &["stop_increment_when_over_limit"],
        read: |s, v| set(&mut s.stop_increment_when_over_limit, v.go_bool(0)?),
    },
    Variables {
        names: &["LOG_LEVEL"],
        settings: &["log_level"],
        read: |s, v| set(&mut s.log_level, v.lowercase(0)),
    },
    Variables {
        names: &["LOG_FORMAT"],
        settings: &["log_format"],
        read: |s, v| match v.lowercase(0).as_deref() {
            Some("json") => set(&mut s.log_format, Some(LogFormat::Json)),
            Some("text") | None => Ok(()),
            Some(other) => Err(v.invalid(0, other.into(), "text or json")),
        },
    },
    Variables {
        names: &["BACKEND_TYPE", "REDIS_URL"],
        settings: &["backend"],
        // The reference's backend is Redis unless told otherwise: a REDIS_URL alone
        // (Envoy Gateway's Deployment sets no BACKEND_TYPE) means Redis too.
        read: |s, v| match v.lowercase(0).as_deref() {
            Some("redis") => set(&mut s.backend, Some(Some(BackendKind::Redis))),
            None if v.text(1).is_some() => set(&mut s.backend, Some(Some(BackendKind::Redis))),
            None => Ok(()),
            Some(other) => Err(v.invalid(0, other.into(), "redis (memcache is not supported)")),
        },
    },
    Variables {
        names: &["REDIS_URL", "REDIS_TYPE", "REDIS_AUTH"],
        settings: &["redis_urls", "redis_cluster"],
        // REDIS_URL is host:port, or a comma list of nodes with REDIS_TYPE=cluster;
        // REDIS_AUTH a password or user:password.
        read: |s, v| {
            let Some(url) = v.text(0) else {
                return Ok(());
            };
            let auth = v.text(2);
            let with_auth = |node: &str| redis_url(node, auth.as_deref());
            match v.lowercase(1).as_deref() {
                Some("cluster") => s.redis_cluster = url.split(',').map(with_auth).collect(),
                None | Some("single") => s.redis_urls = vec![with_auth(&url)],
                Some(other) => {
                    let expected = "single or cluster (sentinel is not supported)";
                    return Err(v.invalid(1, other.into(), expected));
                }
            }
            Ok(())
        },
    },
    Variables {
        names: &["CACHE_KEY_PREFIX"],
        settings: &["key_prefix"],
        read: |s, v| set(&mut s.key_prefix, v.raw(0)),
    },
    // Answer modes, metrics and connections (settings/answers.rs, settings/operations.rs).
    Variables {
        names: &["QUOTA_MODE"],
        settings: &["quota_mode"],
        read: |s, v| set(&mut s.answers.quota_mode, v.go_bool(0)?),
    },
    Variables {
        names: &["RESPONSE_DYNAMIC_METADATA"],
        settings: &["response_dynamic_metadata"],
        read: |s, v| set(&mut s.answers.response_dynamic_metadata, v.go_bool(0)?),
    },
    Variables {
        names: &["NEAR_LIMIT_RATIO"],
        settings: &["near_limit_ratio"],
        read: |s, v| set(&mut s.operations.near_limit_ratio, v.ratio(0)?),
    },
    Variables {
        names: &["GRPC_MAX_CONNECTION_AGE"],
        settings: &["max_connection_age"],
        read: |s, v| set(&mut s.operations.max_connection_age, v.duration(0)?),
    },
    Variables {
        names: &["GRPC_MAX_CONNECTION_AGE_GRACE"],
        settings: &["max_connection_age_grace"],
        read: |s, v| set(&mut s.operations.max_connection_age_grace, v.duration(0)?),
    },
];

/// Every row of the table, as (variables, settings).
pub fn rows() -> impl Iterator<Item = (&'static [&'static str], &'static [&'static str])> {
    let quota = QUOTA_VARIABLES.iter().map(|r| (r.names, r.settings));
    let serve = SERVE_VARIABLES.iter().chain(GATEWAY_VARIABLES);
    quota.chain(serve.map(|r| (r.names, r.settings)))
}

/// Reads each row of `rows` whose settings `matches` left unset into `target`.
fn apply<T>(
    rows: &[Variables<T>],
    target: &mut T,
    matches: &ArgMatches,
    env: Env<'_>,
) -> Result<(), SettingsError> {
    let unset = |id: &&str| {
        matches!(
            matches.value_source(id),
            None | Some(ValueSource::DefaultValue)
        )
    };
    for row in rows {
        if row.settings.iter().all(unset) {
            (row.read)(
                target,
                &Values {
                    names: row.names,
                    env,
                },
            )?;
        }
    }
    Ok(())
}

impl QuotaArgs {
    /// Fills every quota setting still at its default from the reference service's
    /// variables ([`QUOTA_VARIABLES`]), as `rls serve` does. `matches` tells which
    /// settings came from a flag or an `RLS_*` variable; `env` reads the environment.
    /// Where `rls serve` would take its rules from an xDS server (`RLS_CONFIG_SOURCE=xds`
    /// or `CONFIG_TYPE=GRPC_XDS_SOTW`) and so read no quota files, whatever `RUNTIME_ROOT`
    /// says, `--config` (or `RLS_CONFIG`) must name the files: `rls check` then refuses
    /// rather than check files `serve` would not load.
    pub fn apply_reference_env(
        &mut self,
        matches: &ArgMatches,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        if rules_from_xds(&env) && !config_given(matches) {
            return Err(SettingsError::Conflict {
                setting: "CONFIG_TYPE",
                reason: "the environment takes the rules from an xDS server, and rls serve \
                         reads no quota files with it: pass --config to check some",
            });
        }
        apply(QUOTA_VARIABLES, self, matches, &env)
    }
}

/// Whether `rls serve`, given the environment `env` and no `--config-source` flag, takes
/// its rules from an xDS server: `RLS_CONFIG_SOURCE`, else `CONFIG_TYPE`.
fn rules_from_xds(env: &impl Fn(&str) -> Option<String>) -> bool {
    match env("RLS_CONFIG_SOURCE") {
        Some(source) => source.eq_ignore_ascii_case("xds"),
        None => env("CONFIG_TYPE").is_some_and(|t| t.eq_ignore_ascii_case("GRPC_XDS_SOTW")),
    }
}

/// Whether `--config` came from the command line or `RLS_CONFIG`.
fn config_given(matches: &ArgMatches) -> bool {
    matches!(
        matches.value_source("config"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

impl Settings {
    /// Fills every setting still at its default from the reference service's variable of
    /// the same meaning ([`QUOTA_VARIABLES`], [`SERVE_VARIABLES`], [`GATEWAY_VARIABLES`]). `matches` tells which
    /// settings came from a flag or an `RLS_*` variable; `env` reads the environment.
    pub fn apply_reference_env(
        &mut self,
        matches: &ArgMatches,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        apply(QUOTA_VARIABLES, &mut self.quotas, matches, &env)?;
        apply(SERVE_VARIABLES, self, matches, &env)?;
        apply(GATEWAY_VARIABLES, self, matches, &env)?;
        // The reference reads no quota files with CONFIG_TYPE=GRPC_XDS_SOTW, whatever
        // RUNTIME_ROOT says (Envoy Gateway sets both); a --config given is refused later.
        if self.xds.config_source == ConfigSource::Xds && !config_given(matches) {
            self.quotas.config = None;
        }
        Ok(())
    }
}

/// The `--help` lines of `command`'s reference variables: every row whose settings are
/// all arguments of `command`, with their flags as `command` names them.
pub fn help(command: &clap::Command) -> String {
    let mut out = String::from(
        "Also read, for drop-in migration from envoyproxy/ratelimit, when the flag and its RLS_*\n\
         variable are unset (docs/migrating.md has the full mapping):\n",
    );
    for (names, settings) in rows() {
        let flags: Option<Vec<String>> = settings.iter().map(|id| flag(command, id)).collect();
        if let Some(flags) = flags {
            let _ = writeln!(out, "  {} -> {}", names.join(", "), flags.join(" / "));
        }
    }
    out
}

/// `--flag` of the argument `id` of `command`.
fn flag(command: &clap::Command, id: &str) -> Option<String> {
    let arg = command.get_arguments().find(|a| a.get_id() == id)?;
    arg.get_long().map(|long| format!("--{long}"))
}

#[cfg(test)]
mod tests;
