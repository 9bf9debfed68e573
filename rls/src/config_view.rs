//! `GET /config`: the quota files serving — their version, when they were loaded, the
//! last refused reload (file, line, column, key path) until a reload is served, and every
//! rule with where it came from — as text, or as JSON with `?format=json`. Built from the
//! snapshot alone, and the rules' source's line (with xDS, the server's address): no other
//! setting (and so no Redis password or TLS key) is shown.

use std::fmt::Write;
use std::time::SystemTime;

use config::{Algorithm, Limit, Rule};
use serde_json::{Value, json};

use crate::snapshot::{Refusal, Snapshot};
use crate::summary::describe;

/// The text page: a header of version, load time and digest, the last refusal if any,
/// then the summary `rls check` prints.
pub fn text(snapshot: &Snapshot, refusal: Option<&Refusal>) -> String {
    let loaded = &snapshot.loaded;
    let mut out = format!(
        "version {}, loaded {}, digest {}\n",
        loaded.version,
        time(loaded.at),
        loaded.digest
    );
    match refusal {
        None => out.push_str("last reload: served\n"),
        Some(refusal) => {
            let _ = writeln!(
                out,
                "last reload: refused at {}; version {} keeps serving",
                time(refusal.at),
                loaded.version
            );
            if let Some(at) = &refusal.position {
                let _ = write!(out, "  at {at}");
                if let Some(path) = &refusal.key_path {
                    let _ = write!(out, ", key path {path}");
                }
                out.push('\n');
            }
            let _ = writeln!(out, "  {}", refusal.message);
        }
    }
    out.push('\n');
    out.push_str(&describe(&snapshot.quotas));
    out
}

/// The JSON page: the same facts, one object, with what the rules' source says of itself
/// (with rules from xDS) as `source`.
pub fn json(snapshot: &Snapshot, refusal: Option<&Refusal>, source: Option<&str>) -> Value {
    let loaded = &snapshot.loaded;
    let quotas = &snapshot.quotas;
    let domains: Vec<Value> = quotas
        .domains()
        .map(|domain| {
            let rules: Vec<Value> = domain.rules().map(rule).collect();
            json!({"name": domain.name(), "rules": rules})
        })
        .collect();
    let files: Vec<String> = quotas
        .files()
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    json!({
        "version": loaded.version,
        "loaded_at": time(loaded.at),
        "digest": loaded.digest,
        "source": source,
        "files": files,
        "last_reload_error": refusal.map(|r| json!({
            "at": time(r.at),
            "message": r.message,
            "file": r.position.as_ref().map(|p| p.file.as_str()),
            "line": r.position.as_ref().map(|p| p.line),
            "column": r.position.as_ref().map(|p| p.column),
            "key_path": r.key_path,
        })),
        "domain_count": quotas.domains().count(),
        "rule_count": quotas.rule_count(),
        "domains": domains,
    })
}

fn rule(rule: &Rule) -> Value {
    let limits: Vec<Value> = rule.limits.iter().map(limit).collect();
    json!({
        "key": rule.stats_key,
        "origin": rule.origin,
        "unlimited": rule.unlimited,
        "limits": limits,
        "shadow_mode": rule.shadow_mode,
        "quota_mode": rule.quota_mode,
        "detailed_metric": rule.detailed_metric,
        "value_to_metric": rule.value_to_metric,
        "share_threshold": rule.shared_values.iter().flatten().collect::<Vec<_>>(),
        "metadata": rule.metadata,
    })
}

fn limit(limit: &Limit) -> Value {
    json!({
        "name": limit.name,
        "requests_per_unit": limit.requests_per_unit,
        "unit": limit.unit.as_str(),
        "unit_multiplier": limit.unit_multiplier.get(),
        "algorithm": match limit.algorithm {
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::FixedWindow => "fixed_window",
        },
        "burst": limit.burst,
        "replaces": limit.replaces,
    })
}

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}
