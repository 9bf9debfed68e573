//! `RateLimitConfig` resources (the reference's xDS feed, as Envoy Gateway generates it)
//! load into the same rules as the quota file they mirror, and are refused for the same
//! faults with the same messages, naming the resource where a file names line and column.

use config::{ConfigError, LoadOptions, QuotaSet};
use proto::rls_config::{
    RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, RateLimitReplace, RateLimitUnit,
};

fn node(key: &str, value: &str) -> RateLimitDescriptor {
    RateLimitDescriptor {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn limit(unit: RateLimitUnit, requests_per_unit: u32) -> Option<RateLimitPolicy> {
    Some(RateLimitPolicy {
        unit: unit.into(),
        requests_per_unit,
        ..Default::default()
    })
}

/// `nodes` nested, each the only child of the one before; the limit on the last.
fn chain(
    mut nodes: Vec<RateLimitDescriptor>,
    policy: Option<RateLimitPolicy>,
) -> RateLimitDescriptor {
    let mut last = nodes.pop().expect("one node at least");
    last.rate_limit = policy;
    while let Some(mut parent) = nodes.pop() {
        parent.descriptors = vec![last];
        last = parent;
    }
    last
}

fn resource(name: &str, domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitConfig {
    RateLimitConfig {
        name: name.into(),
        domain: domain.into(),
        descriptors,
    }
}

/// What Envoy Gateway generates for a listener with two routes: one rule matching a header
/// and a client range, in shadow mode; one rule per distinct client address in a range;
/// and one rule with no match (a `generic_key` per route and per rule).
fn gateway_listener() -> RateLimitConfig {
    let mut shadowed = chain(
        vec![
            node("rule-0-match-0", "rule-0-match-0"),
            node("masked_remote_address", "10.0.0.0/8"),
        ],
        limit(RateLimitUnit::Second, 5),
    );
    shadowed.shadow_mode = true;
    shadowed.descriptors[0].shadow_mode = true;
    let distinct = chain(
        vec![
            node("masked_remote_address", "192.168.0.0/16"),
            node("remote_address", ""),
        ],
        limit(RateLimitUnit::Minute, 10),
    );
    let all = chain(
        vec![node("rule-1-match--1", "rule-1-match--1")],
        limit(RateLimitUnit::Hour, 100),
    );
    let mut first = node("default/eg/first-route", "default/eg/first-route");
    first.descriptors = vec![shadowed, distinct];
    let mut second = node("default/eg/second-route", "default/eg/second-route");
    second.descriptors = vec![all];
    resource("default/eg/http", "default/eg/http", vec![first, second])
}

/// The same rules as a quota file.
const GATEWAY_LISTENER_YAML: &str = "
domain: default/eg/http
descriptors:
  - key: default/eg/first-route
    value: default/eg/first-route
    descriptors:
      - key: rule-0-match-0
        value: rule-0-match-0
        shadow_mode: true
        descriptors:
          - key: masked_remote_address
            value: 10.0.0.0/8
            shadow_mode: true
            rate_limit: {unit: second, requests_per_unit: 5}
      - key: masked_remote_address
        value: 192.168.0.0/16
        descriptors:
          - key: remote_address
            rate_limit: {unit: minute, requests_per_unit: 10}
  - key: default/eg/second-route
    value: default/eg/second-route
    descriptors:
      - key: rule-1-match--1
        value: rule-1-match--1
        rate_limit: {unit: hour, requests_per_unit: 100}
";

/// Each rule as one comparable line: stats key, limits, flags.
fn rules(quotas: &QuotaSet) -> Vec<String> {
    quotas
        .domains()
        .flat_map(|d| d.rules())
        .map(|r| {
            format!(
                "{} {:?} unlimited={} shadow={} quota={}",
                r.stats_key, r.limits, r.unlimited, r.shadow_mode, r.quota_mode
            )
        })
        .collect()
}

#[test]
fn envoy_gateway_resources_load_into_the_rules_of_the_same_quota_file() {
    let options = LoadOptions::default();
    let from_xds = QuotaSet::from_rate_limit_configs(&[gateway_listener()], &options)
        .expect("valid resources");
    let from_yaml =
        QuotaSet::from_sources([("eg.yaml", GATEWAY_LISTENER_YAML)], &options).expect("valid file");
    assert_eq!(rules(&from_xds), rules(&from_yaml));
    assert_eq!(from_xds.rule_count(), 3);

    let domain = from_xds
        .domain("default/eg/http")
        .expect("the listener's domain");
    let route = ("default/eg/first-route", "default/eg/first-route");
    let shadowed = domain
        .resolve(&[
            route,
            ("rule-0-match-0", "rule-0-match-0"),
            ("masked_remote_address", "10.0.0.0/8"),
        ])
        .expect("the header rule");
    assert!(shadowed.shadow_mode);
    assert_eq!(shadowed.limits[0].requests_per_unit, 5);
    // One bucket per client: the value-less remote_address matches any address.
    let distinct = domain
        .resolve(&[
            route,
            ("masked_remote_address", "192.168.0.0/16"),
            ("remote_address", "192.168.7.9"),
        ])
        .expect("the per-client rule");
    assert_eq!(distinct.limits[0].requests_per_unit, 10);
    assert_eq!(distinct.origin, "resource \"default/eg/http\"");
    // A client outside the range: Envoy's masked_remote_address writes another value.
    assert!(
        domain
            .resolve(&[
                route,
                ("masked_remote_address", "172.16.0.0/16"),
                ("remote_address", "172.16.0.1")
            ])
            .is_none()
    );
}

#[test]
fn metadata_and_flags_are_carried_and_unlimited_needs_no_unit() {
    let mut tenant = node("tenant", "free");
    tenant.rate_limit = Some(RateLimitPolicy {
        unlimited: true,
        ..Default::default()
    });
    let mut quota = node("user", "");
    quota.rate_limit = limit(RateLimitUnit::Week, 7);
    quota.quota_mode = true;
    quota.detailed_metric = true;
    quota.metadata = Some(proto::wkt::Struct {
        fields: [(
            "plan".to_string(),
            proto::wkt::Value {
                kind: Some(proto::wkt::value::Kind::StringValue("gold".into())),
            },
        )]
        .into(),
    });
    let quotas = QuotaSet::from_rate_limit_configs(
        &[resource("edge", "edge", vec![tenant, quota])],
        &LoadOptions::default(),
    )
    .expect("valid resources");
    let domain = quotas.domain("edge").expect("edge");
    assert!(
        domain
            .resolve(&[("tenant", "free")])
            .expect("tenant")
            .unlimited
    );
    let rule = domain.resolve(&[("user", "ann")]).expect("user");
    assert!(rule.quota_mode && rule.detailed_metric);
    assert_eq!(rule.limits[0].unit, config::Unit::Week);
    let metadata = rule.metadata.as_ref().expect("metadata");
    assert_eq!(metadata["plan"], "gold");
}

/// The message of a refused load, without its place (`file:line:column: ` or
/// `resource "name": `).
fn fault(error: ConfigError) -> String {
    let message = error.to_string();
    let place = error.position().expect("a place").to_string();
    message
        .strip_prefix(&format!("{place}: "))
        .unwrap_or_else(|| panic!("{message:?} does not start with {place:?}"))
        .to_string()
}

fn xds_fault(configs: &[RateLimitConfig], options: &LoadOptions) -> ConfigError {
    match QuotaSet::from_rate_limit_configs(configs, options) {
        Ok(_) => panic!("{configs:?} loaded, but it should be refused"),
        Err(error) => error,
    }
}

fn yaml_fault(yaml: &str) -> ConfigError {
    match QuotaSet::from_sources([("edge.yaml", yaml)], &LoadOptions::default()) {
        Ok(_) => panic!("{yaml} loaded, but it should be refused"),
        Err(error) => error,
    }
}

#[test]
fn a_limit_without_a_unit_is_refused_as_in_a_file() {
    let mut bad = node("path", "/");
    bad.rate_limit = Some(RateLimitPolicy {
        requests_per_unit: 10,
        ..Default::default()
    });
    let error = xds_fault(
        &[resource("edge-routes", "edge", vec![bad])],
        &LoadOptions::default(),
    );
    assert_eq!(
        error.to_string(),
        "resource \"edge-routes\": descriptors[0].rate_limit: missing unit \
         (expected second, minute, hour, day, week, month or year, or unlimited: true)"
    );
    let yaml = "domain: edge\ndescriptors:\n  - key: path\n    value: /\n    rate_limit: {requests_per_unit: 10}\n";
    assert_eq!(fault(error), fault(yaml_fault(yaml)));
}

#[test]
fn the_faults_of_quota_files_are_the_faults_of_resources() {
    let mut empty_key = node("", "x");
    empty_key.rate_limit = limit(RateLimitUnit::Second, 1);
    let mut unknown_unit = node("a", "");
    unknown_unit.rate_limit = Some(RateLimitPolicy {
        unit: 42,
        requests_per_unit: 1,
        ..Default::default()
    });
    let mut unlimited_with_unit = node("a", "");
    unlimited_with_unit.rate_limit = Some(RateLimitPolicy {
        unit: RateLimitUnit::Second.into(),
        unlimited: true,
        ..Default::default()
    });
    let mut replaces_self = node("a", "");
    replaces_self.rate_limit = Some(RateLimitPolicy {
        unit: RateLimitUnit::Second.into(),
        name: "own".into(),
        replaces: vec![RateLimitReplace { name: "own".into() }],
        ..Default::default()
    });
    let mut replaces_nothing = node("a", "");
    replaces_nothing.rate_limit = Some(RateLimitPolicy {
        unit: RateLimitUnit::Second.into(),
        replaces: vec![RateLimitReplace::default()],
        ..Default::default()
    });
    let cases: Vec<(Vec<RateLimitDescriptor>, &str, &str)> = vec![
        (
            vec![node("a", ""), empty_key],
            "descriptors:\n  - key: a\n  - key: ''\n    value: x\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
            "descriptors[1].key: must not be empty",
        ),
        (
            vec![unknown_unit],
            "descriptors:\n  - key: a\n    rate_limit: {unit: '42', requests_per_unit: 1}\n",
            "descriptors[0].rate_limit.unit: unknown unit \"42\" (expected second, minute, hour, day, week, month or year)",
        ),
        (
            vec![unlimited_with_unit],
            "descriptors:\n  - key: a\n    rate_limit: {unit: second, unlimited: true}\n",
            "descriptors[0].rate_limit.unit: must not be set when unlimited is true",
        ),
        (
            vec![replaces_self],
            "descriptors:\n  - key: a\n    rate_limit: {unit: second, name: own, replaces: [{name: own}]}\n",
            "descriptors[0].rate_limit.replaces[0].name: replaces \"own\", a limit of this same descriptor",
        ),
        (
            vec![replaces_nothing],
            "descriptors:\n  - key: a\n    rate_limit: {unit: second, replaces: [{name: ''}]}\n",
            "descriptors[0].rate_limit.replaces[0].name: must not be empty",
        ),
    ];
    for (descriptors, yaml, expected) in cases {
        let error = xds_fault(
            &[resource("r", "edge", descriptors)],
            &LoadOptions::default(),
        );
        assert_eq!(error.to_string(), format!("resource \"r\": {expected}"));
        assert_eq!(
            fault(error),
            fault(yaml_fault(&format!("domain: edge\n{yaml}"))),
            "{yaml}"
        );
    }
}

#[test]
fn a_repeated_composite_key_or_domain_is_refused_naming_both_places() {
    let error = xds_fault(
        &[resource("r", "edge", vec![node("a", "1"), node("a", "1")])],
        &LoadOptions::default(),
    );
    assert_eq!(
        error.to_string(),
        "resource \"r\": descriptors[1]: duplicate descriptor composite key \"edge.a_1\" \
         (first defined at resource \"r\")"
    );
    let two = [
        resource("one", "edge", vec![node("a", "1")]),
        resource("two", "edge", vec![node("b", "1")]),
    ];
    let error = xds_fault(&two, &LoadOptions::default());
    assert_eq!(
        error.to_string(),
        "resource \"two\": domain: duplicate domain \"edge\" (first defined at resource \"one\"; \
         enable domain merging to combine them)"
    );
    let merged = LoadOptions {
        merge_domains: true,
        ..Default::default()
    };
    let quotas = QuotaSet::from_rate_limit_configs(&two, &merged).expect("merged");
    assert_eq!(quotas.domains().count(), 1);
    assert_eq!(
        quotas.files(),
        [
            std::path::PathBuf::from("resource \"one\""),
            "resource \"two\"".into()
        ]
    );
}

#[test]
fn an_empty_response_is_an_empty_set() {
    let quotas =
        QuotaSet::from_rate_limit_configs(&[], &LoadOptions::default()).expect("nothing to refuse");
    assert_eq!(quotas.domains().count(), 0);
    let error = xds_fault(&[resource("r", "", vec![])], &LoadOptions::default());
    assert_eq!(
        error.to_string(),
        "resource \"r\": domain: must not be empty"
    );
}
