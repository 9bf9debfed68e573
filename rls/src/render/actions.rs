//! The Envoy side of a resource, shared by the bootstrap and the EnvoyFilters: each
//! descriptor entry's `RateLimit.Action`, the HTTP filters a resource adds, and the
//! configuration each of them takes on the resource's virtual hosts.
//!
//! A resource adds its own filters (named for its domain), and each reads its actions from
//! its own per-host configuration (`RateLimitPerRoute.rate_limits`,
//! `LocalRateLimit.rate_limits`), not from the virtual host's `rate_limits`: a filter never
//! evaluates another resource's actions, so a request costs one rls call per resource
//! whose hosts it is for, and none for the others.

use std::time::Duration;

use config::DEFAULT_MAX_DYNAMIC_DESCRIPTORS;
use config::resource::{
    Cidr, DescriptorEntry, EntryAction, HeaderMatch, MatchType, Mode, RateLimitResource,
    ResourceRule,
};
use serde_json::{Value, json};

const RATE_LIMIT: &str = "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";
const RATE_LIMIT_PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute";
const LOCAL_RATE_LIMIT: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
/// The bucket a local per-host configuration must have (Envoy requires one) for the
/// requests that match none of its rules: as large as Envoy allows, so it refuses nothing.
const UNLIMITED_TOKENS: u32 = u32::MAX;

/// The name of the global filter a resource adds.
pub(crate) fn global_filter_name(resource: &RateLimitResource) -> String {
    format!("rls.ratelimit.{}", resource.domain)
}

/// The name of the local filter a resource adds.
pub(crate) fn local_filter_name(resource: &RateLimitResource) -> String {
    format!("rls.local_ratelimit.{}", resource.domain)
}

/// A stats prefix for the resource: its domain with `/` as `.`.
fn stat_prefix(kind: &str, resource: &RateLimitResource) -> String {
    format!("rls_{kind}.{}", resource.domain.replace('/', "."))
}

/// The global filter: asks rls (`cluster`) about the resource's domain, at its stage, fails
/// open after `timeout`.
pub(crate) fn global_filter(
    resource: &RateLimitResource,
    cluster: &str,
    timeout: Duration,
) -> Value {
    json!({
        "name": global_filter_name(resource),
        "typed_config": {
            "@type": RATE_LIMIT,
            "domain": resource.domain,
            "stage": resource.stage,
            "stat_prefix": stat_prefix("ratelimit", resource),
            "timeout": duration(timeout),
            "failure_mode_deny": false,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limited_as_resource_exhausted": true,
            "rate_limit_service": {
                "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": cluster}},
            },
        },
    })
}

/// The local filter: does nothing (no bucket, enabled for no request) but on the hosts
/// whose configuration enables it.
pub(crate) fn local_filter(resource: &RateLimitResource) -> Value {
    json!({
        "name": local_filter_name(resource),
        "typed_config": {
            "@type": LOCAL_RATE_LIMIT,
            "stat_prefix": stat_prefix("local_ratelimit", resource),
            "stage": resource.stage,
        },
    })
}

/// The configuration each of the resource's filters takes on one of its virtual hosts,
/// keyed by filter name (Envoy's `typed_per_filter_config`).
pub(crate) fn per_host_configs(resource: &RateLimitResource) -> serde_json::Map<String, Value> {
    let mut configs = serde_json::Map::new();
    let rules = |mode| resource.rules.iter().filter(move |r| r.mode == mode);
    if resource.has_mode(Mode::Global) {
        let rate_limits: Vec<Value> = rules(Mode::Global).map(rate_limit).collect();
        configs.insert(
            global_filter_name(resource),
            json!({
                "@type": RATE_LIMIT_PER_ROUTE,
                "domain": resource.domain,
                "rate_limits": rate_limits,
            }),
        );
    }
    if resource.has_mode(Mode::Local) {
        let rate_limits: Vec<Value> = rules(Mode::Local).map(rate_limit).collect();
        let descriptors: Vec<Value> = rules(Mode::Local).map(local_descriptor).collect();
        let all = json!({"runtime_key": "rls_local_ratelimit", "default_value": {"numerator": 100, "denominator": "HUNDRED"}});
        configs.insert(
            local_filter_name(resource),
            json!({
                "@type": LOCAL_RATE_LIMIT,
                "stat_prefix": stat_prefix("local_ratelimit", resource),
                "stage": resource.stage,
                "token_bucket": {
                    "max_tokens": UNLIMITED_TOKENS,
                    "tokens_per_fill": UNLIMITED_TOKENS,
                    "fill_interval": "1s",
                },
                "always_consume_default_token_bucket": false,
                "filter_enabled": all,
                "filter_enforced": all,
                "max_dynamic_descriptors": DEFAULT_MAX_DYNAMIC_DESCRIPTORS,
                "rate_limited_as_resource_exhausted": true,
                "rate_limits": rate_limits,
                "descriptors": descriptors,
            }),
        );
    }
    configs
}

/// Envoy's `RateLimit` for a rule: its actions in descriptor order and its cost. No
/// `stage`: Envoy takes none on a filter's own `rate_limits`, which only that filter reads.
fn rate_limit(rule: &ResourceRule) -> Value {
    let actions: Vec<Value> = rule.descriptor().iter().map(action).collect();
    let mut rate_limit = json!({"actions": actions});
    if rule.cost != 1 {
        rate_limit["hits_addend"] = json!({"number": rule.cost});
    }
    rate_limit
}

/// The action that writes `entry`.
fn action(entry: &DescriptorEntry) -> Value {
    let key = &entry.key;
    let value = entry.value.as_deref().unwrap_or_default();
    match &entry.action {
        EntryAction::Rule { headers } if headers.is_empty() => json!({
            "generic_key": {"descriptor_key": key, "descriptor_value": value},
        }),
        EntryAction::Rule { headers } => json!({
            "header_value_match": {
                "descriptor_key": key,
                "descriptor_value": value,
                "expect_match": true,
                "headers": headers.iter().map(header_matcher).collect::<Vec<_>>(),
            },
        }),
        EntryAction::MaskedRemoteAddress(cidr) => masked_remote_address(cidr),
        EntryAction::RequestHeader(name) => json!({
            "request_headers": {"header_name": name, "descriptor_key": key},
        }),
        EntryAction::RemoteAddress => json!({"remote_address": {}}),
    }
}

/// Masks the client address to the range's length: the result is the range exactly when
/// the client is in it. The other family keeps its full length, so it never equals it.
fn masked_remote_address(cidr: &Cidr) -> Value {
    let field = if cidr.address.is_ipv4() {
        "v4_prefix_mask_len"
    } else {
        "v6_prefix_mask_len"
    };
    json!({"masked_remote_address": {field: cidr.prefix_len}})
}

/// Envoy's `HeaderMatcher` for a condition.
fn header_matcher(condition: &HeaderMatch) -> Value {
    let mut matcher = json!({"name": condition.name});
    match &condition.match_type {
        MatchType::Exact(value) => matcher["string_match"] = json!({"exact": value}),
        MatchType::Prefix(value) => matcher["string_match"] = json!({"prefix": value}),
        MatchType::Regex(regex) => {
            matcher["string_match"] = json!({"safe_regex": {"regex": regex.as_str()}});
        }
        MatchType::Present => matcher["present_match"] = json!(true),
    }
    if condition.invert {
        matcher["invert_match"] = json!(true);
        // Envoy fails a test on an absent header even when inverted, unless told to test
        // it as empty: then "not exactly X" holds for a request without the header.
        if condition.match_type != MatchType::Present {
            matcher["treat_missing_header_as_empty"] = json!(true);
        }
    }
    matcher
}

/// Envoy's `LocalRateLimitDescriptor` for a local rule: the same entries (an empty value
/// per request value), a token bucket of `burst` refilled by `quota` per period.
fn local_descriptor(rule: &ResourceRule) -> Value {
    let entries: Vec<Value> = rule
        .descriptor()
        .iter()
        .map(|e| json!({"key": e.key, "value": e.value.as_deref().unwrap_or_default()}))
        .collect();
    let limit = &rule.limit;
    let mut descriptor = json!({
        "entries": entries,
        "token_bucket": {
            "max_tokens": limit.burst,
            "tokens_per_fill": limit.requests_per_unit,
            "fill_interval": duration(limit.period()),
        },
    });
    if rule.shadow {
        descriptor["shadow_mode"] = json!(true);
    }
    descriptor
}

/// A protobuf JSON duration: `20ms` as `0.020s`, `1h` as `3600s`.
pub(crate) fn duration(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => format!("{}s", d.as_secs()),
        nanos => {
            let fraction = format!("{nanos:09}");
            format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_protobuf_json() {
        assert_eq!(duration(Duration::from_millis(20)), "0.02s");
        assert_eq!(duration(Duration::from_secs(3600)), "3600s");
        assert_eq!(duration(Duration::new(1, 5)), "1.000000005s");
    }
}
