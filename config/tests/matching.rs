//! The reference's matching (`GetLimit`): exact before wildcard before default, wildcards in
//! file order, depth must equal the request's, no backtracking; plus multiple limits and
//! share_threshold patterns.

use config::{Algorithm, Domain, LoadOptions, QuotaSet, Rule, Unit};

fn quotas(yaml: &str) -> QuotaSet {
    QuotaSet::from_sources([("test.yaml", yaml)], &LoadOptions::default())
        .unwrap_or_else(|err| panic!("{err}"))
}

/// `requests_per_unit` of the single limit of the rule `entries` resolve to.
fn limit_of(domain: &Domain, entries: &[(&str, &str)]) -> Option<u32> {
    domain
        .resolve(entries)
        .map(|rule| rule.limits[0].requests_per_unit)
}

const LEVELS: &str = "
domain: d
descriptors:
  - key: path
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: path
    value: /api*
    rate_limit: {unit: second, requests_per_unit: 2}
  - key: path
    value: /api/users
    rate_limit: {unit: second, requests_per_unit: 3}
  - key: path
    value: /api/u*
    rate_limit: {unit: second, requests_per_unit: 4}
  - key: path
    value: /static
    descriptors:
      - key: method
        value: GET
        rate_limit: {unit: second, requests_per_unit: 5}
";

#[test]
fn an_exact_value_beats_a_wildcard_which_beats_the_default() {
    let set = quotas(LEVELS);
    let d = set.domain("d").unwrap();
    assert_eq!(limit_of(d, &[("path", "/api/users")]), Some(3));
    assert_eq!(limit_of(d, &[("path", "/api/orders")]), Some(2));
    assert_eq!(limit_of(d, &[("path", "/home")]), Some(1));
}

#[test]
fn wildcards_are_tried_in_file_order() {
    let set = quotas(LEVELS);
    let d = set.domain("d").unwrap();
    // Both /api* and /api/u* match; /api* comes first in the file.
    assert_eq!(limit_of(d, &[("path", "/api/us")]), Some(2));
}

#[test]
fn an_empty_request_value_matches_only_the_default() {
    let yaml = "
domain: d
descriptors:
  - key: k
    value: '*'
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: k
    rate_limit: {unit: second, requests_per_unit: 2}
  - key: only_wild
    value: '*'
    rate_limit: {unit: second, requests_per_unit: 3}
";
    let set = quotas(yaml);
    let d = set.domain("d").unwrap();
    assert_eq!(limit_of(d, &[("k", "x")]), Some(1));
    assert_eq!(limit_of(d, &[("k", "")]), Some(2));
    assert_eq!(limit_of(d, &[("only_wild", "")]), None);
}

#[test]
fn stars_match_at_the_start_the_middle_the_end_and_several_times() {
    let yaml = "
domain: d
descriptors:
  - key: host
    value: '*.example.com'
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: route
    value: /api*v1
    rate_limit: {unit: second, requests_per_unit: 2}
  - key: user_agent
    value: curl/*
    rate_limit: {unit: second, requests_per_unit: 3}
  - key: rpc
    value: svc*ep*rpc
    rate_limit: {unit: second, requests_per_unit: 4}
";
    let set = quotas(yaml);
    let d = set.domain("d").unwrap();
    assert_eq!(limit_of(d, &[("host", "api.example.com")]), Some(1));
    assert_eq!(limit_of(d, &[("host", "example.com")]), None);
    assert_eq!(limit_of(d, &[("route", "/api/users/v1")]), Some(2));
    assert_eq!(limit_of(d, &[("route", "/apiv1")]), Some(2));
    assert_eq!(limit_of(d, &[("route", "/api/v2")]), None);
    assert_eq!(limit_of(d, &[("user_agent", "curl/8.5.0")]), Some(3));
    assert_eq!(limit_of(d, &[("user_agent", "wget/1.0")]), None);
    assert_eq!(limit_of(d, &[("rpc", "svc-a.ep-b.rpc")]), Some(4));
    assert_eq!(limit_of(d, &[("rpc", "svc-a.rpc")]), None);
}

#[test]
fn a_wildcard_matches_the_value_only_never_a_longer_key() {
    // Deviation from the reference, whose `wild_foo*` would match key `wild_foo`.
    let yaml = "
domain: d
descriptors:
  - key: wild
    value: foo*
    rate_limit: {unit: second, requests_per_unit: 1}
";
    let set = quotas(yaml);
    let d = set.domain("d").unwrap();
    assert_eq!(limit_of(d, &[("wild", "foo1")]), Some(1));
    assert_eq!(limit_of(d, &[("wild_foo", "x")]), None);
}

#[test]
fn keys_and_values_are_case_sensitive() {
    let set = quotas(LEVELS);
    let d = set.domain("d").unwrap();
    assert_eq!(limit_of(d, &[("PATH", "/home")]), None);
    assert_eq!(limit_of(d, &[("path", "/static"), ("method", "get")]), None);
}

#[test]
fn a_request_deeper_or_shallower_than_a_rule_gets_no_rule() {
    let set = quotas(LEVELS);
    let d = set.domain("d").unwrap();
    assert_eq!(
        limit_of(d, &[("path", "/static"), ("method", "GET")]),
        Some(5)
    );
    // Shallower: /static is a placeholder without a limit.
    assert_eq!(limit_of(d, &[("path", "/static")]), None);
    // Deeper than any rule.
    assert_eq!(limit_of(d, &[("path", "/home"), ("method", "GET")]), None);
    assert_eq!(
        limit_of(d, &[("path", "/static"), ("method", "GET"), ("x", "y")]),
        None
    );
    assert_eq!(limit_of(d, &[]), None);
}

#[test]
fn a_specific_match_never_falls_back_to_a_less_specific_sibling() {
    // The exact /static node is chosen at level one; its children do not know POST, and
    // the default `path` node's children are not consulted.
    let yaml = "
domain: d
descriptors:
  - key: path
    descriptors:
      - key: method
        rate_limit: {unit: second, requests_per_unit: 1}
  - key: path
    value: /static
    descriptors:
      - key: method
        value: GET
        rate_limit: {unit: second, requests_per_unit: 2}
";
    let set = quotas(yaml);
    let d = set.domain("d").unwrap();
    assert_eq!(
        limit_of(d, &[("path", "/static"), ("method", "GET")]),
        Some(2)
    );
    assert_eq!(
        limit_of(d, &[("path", "/static"), ("method", "POST")]),
        None
    );
    assert_eq!(limit_of(d, &[("path", "/x"), ("method", "POST")]), Some(1));
}

#[test]
fn an_unknown_key_or_domain_gets_no_rule() {
    let set = quotas(LEVELS);
    assert!(set.domain("other").is_none());
    assert_eq!(limit_of(set.domain("d").unwrap(), &[("nope", "x")]), None);
}

#[test]
fn share_threshold_depths_carry_their_pattern() {
    let yaml = "
domain: d
descriptors:
  - key: user
    value: user/*
    share_threshold: true
    descriptors:
      - key: resource
        value: res/*
        descriptors:
          - key: action
            rate_limit: {unit: minute, requests_per_unit: 150}
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: file
    value: file/*
    share_threshold: false
    rate_limit: {unit: minute, requests_per_unit: 10}
";
    let set = quotas(yaml);
    let d = set.domain("d").unwrap();
    let rule = d
        .resolve(&[
            ("user", "user/1"),
            ("resource", "res/a"),
            ("action", "read"),
        ])
        .unwrap();
    assert_eq!(
        rule.shared_values,
        vec![Some("user/*".to_owned()), None, None]
    );
    let rule = d.resolve(&[("files", "files/a.txt")]).unwrap();
    assert_eq!(rule.shared_values, vec![Some("files/*".to_owned())]);
    let rule = d.resolve(&[("file", "file/a.txt")]).unwrap();
    assert_eq!(rule.shared_values, vec![None]);
}

#[test]
fn several_limits_on_one_descriptor_are_all_kept() {
    let yaml = "
domain: d
descriptors:
  - key: user
    rate_limits:
      - name: burst
        unit: second
        requests_per_unit: 10
        burst: 20
      - name: sustained
        unit: minute
        unit_multiplier: 5
        requests_per_unit: 1000
        algorithm: fixed_window
";
    let set = quotas(yaml);
    let rule = set
        .domain("d")
        .unwrap()
        .resolve(&[("user", "alice")])
        .unwrap();
    assert!(!rule.unlimited);
    assert_eq!(rule.limits.len(), 2);
    let (short, long) = (&rule.limits[0], &rule.limits[1]);
    assert_eq!(short.name.as_deref(), Some("burst"));
    assert_eq!((short.requests_per_unit, short.burst), (10, 20));
    assert_eq!(short.algorithm, Algorithm::TokenBucket);
    assert_eq!(short.period_secs(), 1);
    assert_eq!(long.name.as_deref(), Some("sustained"));
    assert_eq!((long.requests_per_unit, long.burst), (1000, 1000));
    assert_eq!(long.algorithm, Algorithm::FixedWindow);
    assert_eq!(long.unit, Unit::Minute);
    assert_eq!(long.period(), std::time::Duration::from_secs(300));
}

#[test]
fn reference_fields_default_as_the_reference_does() {
    let yaml = "
domain: d
descriptors:
  - key: blocked
    rate_limit: {unit: SECOND}
  - key: internal
    rate_limit:
      unlimited: true
      name: internal
      replaces: [{name: per_user}]
  - key: flags
    shadow_mode: true
    quota_mode: true
    detailed_metric: true
    metadata: {team: payments, tier: 2}
    rate_limit: {unit: Day, requests_per_unit: 7, name: ''}
";
    let set = quotas(yaml);
    let d = set.domain("d").unwrap();
    let blocked = d.resolve(&[("blocked", "x")]).unwrap();
    assert_eq!(blocked.limits[0].requests_per_unit, 0);
    assert_eq!(blocked.limits[0].unit, Unit::Second);
    assert_eq!(blocked.limits[0].unit_multiplier.get(), 1);
    assert_eq!(blocked.limits[0].algorithm, Algorithm::TokenBucket);
    assert!(!blocked.shadow_mode && !blocked.quota_mode && blocked.metadata.is_none());

    let internal = d.resolve(&[("internal", "x")]).unwrap();
    assert!(internal.unlimited);
    assert!(internal.limits.is_empty());
    assert_eq!(internal.replaces(), ["per_user"]);

    let flags: &Rule = d.resolve(&[("flags", "x")]).unwrap();
    assert!(flags.shadow_mode && flags.quota_mode && flags.detailed_metric);
    assert_eq!(flags.limits[0].unit, Unit::Day);
    assert_eq!(flags.limits[0].name, None);
    let metadata = flags.metadata.as_ref().unwrap();
    assert_eq!(metadata["team"], "payments");
    assert_eq!(metadata["tier"], 2);
    assert_eq!(flags.origin, "test.yaml:11:5");
}

#[test]
fn the_server_default_algorithm_applies_to_limits_that_name_none() {
    let yaml = "
domain: d
descriptors:
  - key: a
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: b
    rate_limit: {unit: second, requests_per_unit: 1, algorithm: token_bucket}
";
    let options = LoadOptions {
        default_algorithm: Algorithm::FixedWindow,
        ..LoadOptions::default()
    };
    let set = QuotaSet::from_sources([("t.yaml", yaml)], &options).unwrap();
    let d = set.domain("d").unwrap();
    assert_eq!(
        d.resolve(&[("a", "x")]).unwrap().limits[0].algorithm,
        Algorithm::FixedWindow
    );
    assert_eq!(
        d.resolve(&[("b", "x")]).unwrap().limits[0].algorithm,
        Algorithm::TokenBucket
    );
}

#[test]
fn units_have_the_reference_lengths() {
    let lengths: Vec<(Unit, u64)> = ["second", "MINUTE", "Hour", "day", "week", "month", "year"]
        .iter()
        .map(|name| {
            let unit = Unit::from_name(name).unwrap();
            (unit, unit.seconds())
        })
        .collect();
    assert_eq!(
        lengths,
        [
            (Unit::Second, 1),
            (Unit::Minute, 60),
            (Unit::Hour, 3_600),
            (Unit::Day, 86_400),
            (Unit::Week, 604_800),
            (Unit::Month, 2_592_000),
            (Unit::Year, 31_536_000),
        ]
    );
    assert_eq!(Unit::Week.as_str(), "week");
    assert_eq!(Unit::from_name("fortnight"), None);
}

#[test]
fn scalars_that_look_like_numbers_are_strings_in_names_keys_and_values() {
    let yaml = "
domain: 42
descriptors:
  - key: 7
    value: 1.5
    rate_limit: {unit: second, requests_per_unit: 1}
";
    let set = quotas(yaml);
    assert_eq!(
        limit_of(set.domain("42").unwrap(), &[("7", "1.5")]),
        Some(1)
    );
}
