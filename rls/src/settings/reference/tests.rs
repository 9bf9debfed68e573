//! The reference table: what it fills, what `--help` lists, what the migration guide
//! says.

use std::collections::HashMap;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

pub(super) fn settings_from(
    args: &[&str],
    vars: &[(&str, &str)],
) -> Result<Settings, SettingsError> {
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
    assert!(s.shadow_mode && s.response_headers && s.quotas.merge_domains);
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
        s.quotas.config,
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
    assert_eq!(s.backend, Some(BackendKind::Redis));
    assert_eq!(s.redis_urls, ["redis://:s3cret@redis.default.svc:6379"]);
    assert_eq!(s.key_prefix, "rl_");
    // The reference's default backend is Redis: REDIS_URL alone means Redis here too.
    let s = settings_from(&["rls"], &[("REDIS_URL", "redis.default.svc:6379")])
        .expect("valid settings");
    assert_eq!(s.backend_kind().expect("valid"), BackendKind::Redis);
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
    assert_eq!(s.quotas.config, Some(PathBuf::from("quotas")));
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

/// The `serve` command as the binary builds it.
fn serve_command() -> clap::Command {
    crate::cli::command()
        .find_subcommand("serve")
        .expect("a serve subcommand")
        .clone()
}

#[test]
fn every_row_fills_arguments_of_serve() {
    let serve = serve_command();
    for (names, settings) in rows() {
        for id in settings {
            assert!(
                flag(&serve, id).is_some(),
                "{names:?} fill {id}, which is no flag of serve"
            );
        }
    }
}

#[test]
fn serve_help_lists_every_reference_variable() {
    let help = help(&serve_command());
    for (names, _) in rows() {
        for name in names {
            assert!(help.contains(name), "{name} missing from:\n{help}");
        }
    }
    assert!(help.contains("REDIS_URL, REDIS_TYPE, REDIS_AUTH -> --redis-url / --redis-cluster"));
}

/// Splits a Markdown cell such as "`A`, `B`" or "`--a` / `--b`" into its code spans.
fn spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_migration_guide_lists_exactly_the_rows_of_the_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/migrating.md");
    let guide = std::fs::read_to_string(path).expect("docs/migrating.md");
    let (_, section) = guide
        .split_once("## Environment variables")
        .expect("an environment variables section");
    // The table's rows: after its header and separator, until the first other line.
    let documented: Vec<(Vec<String>, Vec<String>, Vec<String>)> = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (spans(cells[1]), spans(cells[2]), spans(cells[3]))
        })
        .collect();
    let serve = serve_command();
    let env = |id: &str| {
        let arg = serve.get_arguments().find(|a| a.get_id() == id);
        let env = arg.and_then(|a| a.get_env()).expect("an RLS_* variable");
        env.to_string_lossy().into_owned()
    };
    let table: Vec<(Vec<String>, Vec<String>, Vec<String>)> = rows()
        .map(|(names, settings)| {
            (
                names.iter().map(|n| n.to_string()).collect(),
                settings.iter().filter_map(|id| flag(&serve, id)).collect(),
                settings.iter().map(|id| env(id)).collect(),
            )
        })
        .collect();
    assert_eq!(documented, table);
}

#[test]
fn check_reads_the_quota_variables_as_serve_does() {
    let check = crate::cli::command()
        .find_subcommand("check")
        .expect("a check subcommand")
        .clone();
    let matches = check
        .clone()
        .try_get_matches_from(["check"])
        .expect("arguments parse");
    let mut quotas = QuotaArgs::from_arg_matches(&matches).expect("matches convert");
    let vars: HashMap<&str, &str> = [
        ("RUNTIME_ROOT", "/srv"),
        ("RUNTIME_APPDIRECTORY", "quotas"),
        ("MERGE_DOMAIN_CONFIG", "1"),
        ("SHADOW_MODE", "true"),
    ]
    .into();
    quotas
        .apply_reference_env(&matches, |name| vars.get(name).map(|v| v.to_string()))
        .expect("valid variables");
    assert_eq!(quotas.config, Some(PathBuf::from("/srv/quotas")));
    assert!(quotas.merge_domains);
    // Its help lists the quota rows only.
    let help = help(&check);
    assert!(help.contains("RUNTIME_ROOT") && help.contains("MERGE_DOMAIN_CONFIG"));
    assert!(!help.contains("SHADOW_MODE"), "{help}");
}

#[test]
fn check_refuses_where_serve_would_take_the_rules_from_xds_and_read_no_files() {
    let check = crate::cli::command()
        .find_subcommand("check")
        .expect("a check subcommand")
        .clone();
    let check_with = |args: &[&str], vars: &[(&str, &str)]| {
        let matches = check
            .clone()
            .try_get_matches_from(args)
            .expect("arguments parse");
        let mut quotas = QuotaArgs::from_arg_matches(&matches).expect("matches convert");
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        quotas
            .apply_reference_env(&matches, |name| vars.get(name).map(|v| v.to_string()))
            .map(|()| quotas.config)
    };
    // Envoy Gateway's Deployment sets both; serve reads no files then.
    let gateway = [
        ("CONFIG_TYPE", "grpc_xds_sotw"),
        ("RUNTIME_ROOT", "/data"),
        ("RUNTIME_SUBDIRECTORY", "ratelimit"),
    ];
    let error = check_with(&["check"], &gateway).expect_err("refused");
    assert!(error.to_string().contains("CONFIG_TYPE"), "{error}");
    assert_eq!(
        check_with(&["check", "--config", "/srv/q"], &gateway).expect("files named"),
        Some(PathBuf::from("/srv/q"))
    );
    // RLS_CONFIG_SOURCE outranks CONFIG_TYPE, for serve as for check.
    let files = [gateway.as_slice(), &[("RLS_CONFIG_SOURCE", "files")]].concat();
    assert_eq!(
        check_with(&["check"], &files).expect("files"),
        Some(PathBuf::from("/data/ratelimit/config"))
    );
    let xds = [("RLS_CONFIG_SOURCE", "xds"), ("RUNTIME_ROOT", "/data")];
    assert!(check_with(&["check"], &xds).is_err());
}
