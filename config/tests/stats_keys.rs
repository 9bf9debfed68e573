//! Stats keys as the reference names them (REFERENCE §1.6, and its config_test.go cases):
//! composite keys joined by `.`, with `detailed_metric`, `value_to_metric` and
//! `share_threshold` variants built from the request's values.

use config::{LoadOptions, QuotaSet};

fn quotas(yaml: &str) -> QuotaSet {
    QuotaSet::from_sources([("test.yaml", yaml)], &LoadOptions::default())
        .unwrap_or_else(|err| panic!("{err}"))
}

/// (static stats key, key for these entries) of the rule `entries` resolve to; the key's
/// parts, joined, must be the key itself.
fn keys(set: &QuotaSet, entries: &[(&str, &str)]) -> (String, String) {
    let rule = set.domain("test-domain").unwrap().resolve(entries).unwrap();
    let mut joined = String::from("test-domain");
    rule.stats_key_parts_for(entries, |key, suffix| {
        joined.push('.');
        joined.push_str(key);
        if let Some(suffix) = suffix {
            joined.push('_');
            joined.push_str(suffix);
        }
    });
    assert_eq!(joined, rule.stats_key_for(entries), "parts of {entries:?}");
    (rule.stats_key.clone(), rule.stats_key_for(entries))
}

#[test]
fn every_rule_is_numbered_by_its_place_in_the_set() {
    let yaml = "
domain: b
descriptors:
  - {key: k1, rate_limit: {unit: second, requests_per_unit: 1}}
  - {key: k2, rate_limit: {unit: second, requests_per_unit: 1}}
---
domain: a
descriptors:
  - {key: k3, rate_limit: {unit: second, requests_per_unit: 1}}
";
    let set = quotas(yaml);
    let order: Vec<(usize, &str)> = set
        .domains()
        .flat_map(|d| d.rules())
        .map(|r| (r.index, r.stats_key.as_str()))
        .collect();
    assert_eq!(order, [(0, "a.k3"), (1, "b.k1"), (2, "b.k2")]);
}

#[test]
fn stats_keys_join_composite_keys_and_omit_default_values() {
    let yaml = "
domain: test-domain
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: second, requests_per_unit: 5}
      - key: subkey1
        value: subvalue1
        rate_limit: {unit: second, requests_per_unit: 10}
  - key: wild
    value: foo*
    rate_limit: {unit: minute, requests_per_unit: 20}
";
    let set = quotas(yaml);
    let expect = |entries: &[(&str, &str)], key: &str| {
        assert_eq!(keys(&set, entries), (key.to_owned(), key.to_owned()));
        let rule = set.domain("test-domain").unwrap().resolve(entries).unwrap();
        assert!(!rule.stats_key_depends_on_values());
    };
    expect(
        &[("key1", "value1"), ("subkey1", "something")],
        "test-domain.key1_value1.subkey1",
    );
    expect(
        &[("key1", "value1"), ("subkey1", "subvalue1")],
        "test-domain.key1_value1.subkey1_subvalue1",
    );
    expect(&[("wild", "foo1")], "test-domain.wild_foo*");
}

#[test]
fn detailed_metric_puts_the_request_values_in_the_key() {
    let yaml = "
domain: test-domain
descriptors:
  - key: key7
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 70}
  - key: parent
    descriptors:
      - key: child
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 80}
";
    let set = quotas(yaml);
    assert_eq!(
        keys(&set, &[("key7", "unspecified_value")]),
        (
            "test-domain.key7".to_owned(),
            "test-domain.key7_unspecified_value".to_owned()
        )
    );
    assert_eq!(
        keys(&set, &[("parent", "p"), ("child", "c")]).1,
        "test-domain.parent_p.child_c"
    );
}

#[test]
fn detailed_metric_keeps_share_threshold_patterns() {
    let yaml = "
domain: test-domain
descriptors:
  - key: service
    value: svc/*
    share_threshold: true
    descriptors:
      - key: endpoint
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 80}
";
    let set = quotas(yaml);
    assert_eq!(
        keys(&set, &[("service", "svc/a"), ("endpoint", "e1")]).1,
        "test-domain.service_svc/*.endpoint_e1"
    );
}

#[test]
fn value_to_metric_adds_values_where_the_node_asks_for_them() {
    let yaml = "
domain: test-domain
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: method
        rate_limit: {unit: minute, requests_per_unit: 60}
  - key: wild
    value: api/*
    value_to_metric: true
    descriptors:
      - key: method
        value_to_metric: true
        rate_limit: {unit: minute, requests_per_unit: 60}
  - key: plain
    value: p
    descriptors:
      - key: method
        value_to_metric: true
        rate_limit: {unit: minute, requests_per_unit: 60}
";
    let set = quotas(yaml);
    let entries = [("route", "/users"), ("method", "GET")];
    assert_eq!(
        keys(&set, &entries),
        (
            "test-domain.route.method".to_owned(),
            "test-domain.route_/users.method".to_owned()
        )
    );
    assert_eq!(
        keys(&set, &[("wild", "api/v1"), ("method", "POST")]).1,
        "test-domain.wild_api/v1.method_POST"
    );
    assert_eq!(
        keys(&set, &[("plain", "p"), ("method", "PUT")]).1,
        "test-domain.plain_p.method_PUT"
    );
}

#[test]
fn share_threshold_wins_over_value_to_metric() {
    let yaml = "
domain: test-domain
descriptors:
  - key: route
    value: api/*
    share_threshold: true
    value_to_metric: true
    descriptors:
      - key: method
        rate_limit: {unit: minute, requests_per_unit: 60}
";
    let set = quotas(yaml);
    assert_eq!(
        keys(&set, &[("route", "api/v1"), ("method", "GET")]).1,
        "test-domain.route_api/*.method"
    );
}

#[test]
fn domains_with_dots_keep_their_whole_name_in_keys() {
    let yaml = "
domain: edge.example.com
descriptors:
  - key: k
    detailed_metric: true
    rate_limit: {unit: second, requests_per_unit: 1}
";
    let set = QuotaSet::from_sources([("t.yaml", yaml)], &LoadOptions::default()).unwrap();
    let rule = set
        .domain("edge.example.com")
        .unwrap()
        .resolve(&[("k", "v")])
        .unwrap();
    assert_eq!(rule.stats_key_for(&[("k", "v")]), "edge.example.com.k_v");
}
