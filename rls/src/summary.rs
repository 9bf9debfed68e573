//! A readable summary of a `QuotaSet`: what `rls check` prints and `GET /config` serves.

use std::fmt::Write;

use config::{Algorithm, Limit, QuotaSet, Rule};

/// One line per rule, grouped by domain, after a count of domains and rules.
pub fn describe(quotas: &QuotaSet) -> String {
    let domains = quotas.domains().count();
    let mut out = format!(
        "{domains} domain{}, {} rule{}\n",
        plural(domains),
        quotas.rule_count(),
        plural(quotas.rule_count())
    );
    for domain in quotas.domains() {
        let _ = writeln!(out, "domain {}", domain.name());
        for rule in domain.rules() {
            let _ = writeln!(out, "  {}", describe_rule(rule));
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `edge.path_/search: 100/minute token_bucket burst 200, shadow_mode` style.
pub fn describe_rule(rule: &Rule) -> String {
    let mut line = format!("{}: ", rule.stats_key);
    if rule.unlimited {
        line.push_str("unlimited");
    } else {
        let limits: Vec<String> = rule.limits.iter().map(describe_limit).collect();
        line.push_str(&limits.join(" + "));
    }
    for (on, flag) in [
        (rule.shadow_mode, "shadow_mode"),
        (rule.quota_mode, "quota_mode"),
    ] {
        if on {
            let _ = write!(line, ", {flag}");
        }
    }
    let _ = write!(line, "  ({})", rule.origin);
    line
}

fn describe_limit(limit: &Limit) -> String {
    let mut text = String::new();
    if let Some(name) = &limit.name {
        let _ = write!(text, "[{name}] ");
    }
    let _ = write!(text, "{}/", limit.requests_per_unit);
    if limit.unit_multiplier.get() > 1 {
        let _ = write!(text, "{} ", limit.unit_multiplier);
    }
    text.push_str(limit.unit.as_str());
    match limit.algorithm {
        Algorithm::TokenBucket => {
            let _ = write!(text, " token_bucket burst {}", limit.burst);
        }
        Algorithm::FixedWindow => text.push_str(" fixed_window"),
    }
    if !limit.replaces.is_empty() {
        let _ = write!(text, " replaces {}", limit.replaces.join(","));
    }
    text
}
