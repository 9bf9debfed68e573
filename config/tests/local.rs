//! The `local` section: what loads (with its defaults, and documents without a domain) and
//! every fault refused, each asserting the whole message. The bad files are in
//! tests/bad/local/, named for the fault.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use config::{
    Action, ConfigError, LoadOptions, LocalEntry, MatchRule, Percent, QuotaSet, TokenBucket,
};

fn load(yaml: &str) -> Result<QuotaSet, ConfigError> {
    QuotaSet::from_sources([("page.yaml", yaml)], &LoadOptions::default())
}

/// The message of loading `tests/bad/local/<name>`.
fn load_error(name: &str) -> String {
    let path = format!("tests/bad/local/{name}");
    match QuotaSet::load(Path::new(&path), &LoadOptions::default()) {
        Ok(_) => panic!("{path} loaded, but it should be refused"),
        Err(err) => err.to_string(),
    }
}

fn bucket(max_tokens: u32, tokens_per_fill: u32, fill_interval: Duration) -> TokenBucket {
    TokenBucket {
        max_tokens,
        tokens_per_fill: NonZeroU32::new(tokens_per_fill).unwrap(),
        fill_interval,
    }
}

#[test]
fn a_document_may_hold_only_a_local_section() {
    let set = load("local:\n  token_bucket: {max_tokens: 10, fill_interval: 1s}\n").unwrap();
    assert_eq!(set.domains().count(), 0);
    let local = set.local().unwrap();
    assert_eq!(
        local.token_bucket,
        Some(bucket(10, 1, Duration::from_secs(1)))
    );
    assert_eq!(local.origin, "page.yaml:2:3");
}

#[test]
fn unset_fields_take_the_documented_defaults() {
    let set = load("local:\n  token_bucket: {max_tokens: 10, fill_interval: 1s}\n").unwrap();
    let local = set.local().unwrap();
    assert!(local.always_consume_default_token_bucket);
    assert_eq!(local.max_dynamic_descriptors.get(), 10_000);
    assert_eq!(local.filter_enabled, Percent::ALL);
    assert_eq!(local.filter_enforced, Percent::ALL);
    assert_eq!(local.status, 429);
    assert!(local.rate_limited_as_resource_exhausted);
    assert!(local.enable_x_ratelimit_headers);
    assert!(local.descriptors.is_empty() && local.rate_limits.is_empty());
}

#[test]
fn global_rules_and_local_limits_share_one_document() {
    let yaml = r#"
domain: page
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 50}
local:
  token_bucket: {max_tokens: 100, tokens_per_fill: 20, fill_interval: 0.5s}
  always_consume_default_token_bucket: false
  max_dynamic_descriptors: 500
  filter_enabled: 50
  filter_enforced: 12.5
  status: 503
  rate_limited_as_resource_exhausted: false
  enable_x_ratelimit_headers: OFF
  descriptors:
    - entries: [{key: client}]
      token_bucket: {max_tokens: 5, fill_interval: 1m}
    - entries: [{key: client, value: batch}, {key: path, value: ""}]
      token_bucket: {max_tokens: 0, fill_interval: 1ms}
      shadow_mode: true
  rate_limits:
    - actions:
        - request_headers: {header_name: X-Client, descriptor_key: client, skip_if_absent: true}
        - request_headers: {header_name: ":path", descriptor_key: path}
      hits_addend: -2
    - actions:
        - remote_address: {xff_num_trusted_hops: 1}
        - generic_key: {descriptor_value: api}
        - header_value_match:
            descriptor_value: post
            expect_match: false
            headers: [{name: ":method", exact: POST, invert_match: true}]
"#;
    let set = load(yaml).unwrap();
    assert_eq!(set.rule_count(), 1);
    let local = set.local().unwrap();
    assert_eq!(
        local.token_bucket,
        Some(bucket(100, 20, Duration::from_millis(500)))
    );
    assert!(!local.always_consume_default_token_bucket);
    assert_eq!(local.max_dynamic_descriptors.get(), 500);
    assert_eq!(local.filter_enabled.per_million(), 500_000);
    assert_eq!(local.filter_enforced.per_million(), 125_000);
    assert_eq!(local.status, 503);
    assert!(!local.rate_limited_as_resource_exhausted);
    assert!(!local.enable_x_ratelimit_headers);

    let [client, batch] = &local.descriptors[..] else {
        panic!("two descriptors")
    };
    assert!(client.is_wildcard() && !client.shadow_mode);
    assert_eq!(client.token_bucket, bucket(5, 1, Duration::from_secs(60)));
    // An empty value is a wildcard; max_tokens 0 needs no valid fill interval.
    assert_eq!(
        batch.entries,
        [
            LocalEntry {
                key: "client".into(),
                value: Some("batch".into())
            },
            LocalEntry {
                key: "path".into(),
                value: None
            },
        ]
    );
    assert!(batch.shadow_mode && batch.token_bucket.max_tokens == 0);

    let [headers, address] = &local.rate_limits[..] else {
        panic!("two rate limits")
    };
    assert_eq!(headers.hits_addend, -2);
    assert_eq!(
        headers.actions[0],
        Action::RequestHeaders {
            header_name: "x-client".into(),
            descriptor_key: "client".into(),
            skip_if_absent: true,
        }
    );
    assert_eq!(address.hits_addend, 1);
    assert_eq!(
        address.actions[0],
        Action::RemoteAddress {
            xff_num_trusted_hops: 1
        }
    );
    assert_eq!(
        address.actions[1],
        Action::GenericKey {
            descriptor_key: "generic_key".into(),
            descriptor_value: "api".into(),
        }
    );
    let Action::HeaderValueMatch {
        descriptor_key,
        expect_match,
        headers,
        ..
    } = &address.actions[2]
    else {
        panic!("a header_value_match")
    };
    assert_eq!(descriptor_key, "header_match");
    assert!(!expect_match);
    assert_eq!(headers[0].rule, MatchRule::Exact("POST".into()));
    assert!(headers[0].invert_match);
}

#[test]
fn the_rls_view_of_a_file_with_a_local_section_is_unchanged() {
    let with = "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n";
    let local = format!("{with}local:\n  token_bucket: {{max_tokens: 1, fill_interval: 1s}}\n");
    let (a, b) = (load(with).unwrap(), load(&local).unwrap());
    assert_eq!(a.rule_count(), b.rule_count());
    assert!(b.domain("d").unwrap().resolve(&[("k", "v")]).is_some());
    assert!(a.local().is_none());
}

#[test]
fn a_fill_interval_below_50_ms_is_refused() {
    assert_eq!(
        load_error("short_fill_interval.yaml"),
        "tests/bad/local/short_fill_interval.yaml:4:20: local.token_bucket.fill_interval: \
         fill_interval 20ms is shorter than 50ms, the minimum Envoy allows"
    );
}

#[test]
fn a_duration_without_a_unit_is_refused() {
    assert_eq!(
        load_error("bad_duration.yaml"),
        "tests/bad/local/bad_duration.yaml:2:48: local.token_bucket.fill_interval: invalid \
         duration \"10\" (expected a duration such as 1s, 500ms or 0.25s)"
    );
}

#[test]
fn a_descriptor_with_empty_entries_is_refused() {
    assert_eq!(
        load_error("descriptor_without_entries.yaml"),
        "tests/bad/local/descriptor_without_entries.yaml:3:16: local.descriptors[0].entries: \
         must not be empty"
    );
}

#[test]
fn a_descriptor_without_entries_is_refused_at_its_map() {
    assert_eq!(
        load_error("descriptor_missing_entries.yaml"),
        "tests/bad/local/descriptor_missing_entries.yaml:3:7: local.descriptors[0].entries: \
         required field is missing"
    );
}

#[test]
fn two_descriptors_with_the_same_entries_are_refused_naming_both() {
    // An absent value and an empty one are the same wildcard.
    assert_eq!(
        load_error("duplicate_descriptor.yaml"),
        "tests/bad/local/duplicate_descriptor.yaml:5:7: local.descriptors[1]: duplicate local \
         descriptor [client=*] (first defined at tests/bad/local/duplicate_descriptor.yaml:3:7)"
    );
}

#[test]
fn a_token_bucket_without_max_tokens_is_refused() {
    assert_eq!(
        load_error("missing_max_tokens.yaml"),
        "tests/bad/local/missing_max_tokens.yaml:3:5: local.token_bucket.max_tokens: required \
         field is missing"
    );
}

#[test]
fn zero_tokens_per_fill_is_refused() {
    assert_eq!(
        load_error("zero_tokens_per_fill.yaml"),
        "tests/bad/local/zero_tokens_per_fill.yaml:2:50: local.token_bucket.tokens_per_fill: 0 \
         is out of range (expected at least 1)"
    );
}

#[test]
fn a_misspelled_local_field_is_refused_with_the_fields_that_exist() {
    assert_eq!(
        load_error("misspelled_field.yaml"),
        "tests/bad/local/misspelled_field.yaml:3:3: local.max_dynamic_descriptor: unknown field \
         \"max_dynamic_descriptor\" (expected one of: token_bucket, descriptors, rate_limits, \
         always_consume_default_token_bucket, max_dynamic_descriptors, filter_enabled, \
         filter_enforced, status, rate_limited_as_resource_exhausted, enable_x_ratelimit_headers)"
    );
}

#[test]
fn a_section_that_limits_nothing_is_refused() {
    assert_eq!(
        load_error("nothing_to_limit.yaml"),
        "tests/bad/local/nothing_to_limit.yaml:2:3: local: needs a token_bucket, descriptors, \
         or both"
    );
}

#[test]
fn a_percent_above_100_is_refused() {
    assert_eq!(
        load_error("percent_above_100.yaml"),
        "tests/bad/local/percent_above_100.yaml:3:20: local.filter_enforced: 150 is out of \
         range (expected a percent from 0 to 100)"
    );
}

#[test]
fn a_status_that_is_not_an_error_is_refused() {
    assert_eq!(
        load_error("status_below_400.yaml"),
        "tests/bad/local/status_below_400.yaml:3:11: local.status: 200 is out of range \
         (expected an HTTP error status from 400 to 599)"
    );
}

#[test]
fn an_unknown_header_mode_is_refused() {
    assert_eq!(
        load_error("unknown_headers_mode.yaml"),
        "tests/bad/local/unknown_headers_mode.yaml:3:31: local.enable_x_ratelimit_headers: \
         unknown value \"DRAFT_VERSION_02\" (expected DRAFT_VERSION_03 or OFF)"
    );
}

#[test]
fn an_action_of_two_kinds_is_refused() {
    assert_eq!(
        load_error("two_actions_in_one.yaml"),
        "tests/bad/local/two_actions_in_one.yaml:5:11: local.rate_limits[0].actions[0]: an \
         action needs exactly one of request_headers, remote_address, generic_key or \
         header_value_match (found remote_address, generic_key)"
    );
}

#[test]
fn an_invalid_header_name_is_refused() {
    assert_eq!(
        load_error("bad_header_name.yaml"),
        "tests/bad/local/bad_header_name.yaml:5:42: \
         local.rate_limits[0].actions[0].request_headers.header_name: invalid header name \
         \"x user\""
    );
}

#[test]
fn global_descriptors_still_need_a_domain_beside_a_local_section() {
    assert_eq!(
        load_error("descriptors_without_domain.yaml"),
        "tests/bad/local/descriptors_without_domain.yaml:1:1: domain: required field is missing"
    );
}

#[test]
fn a_second_local_section_in_one_load_is_refused_naming_both() {
    let err = QuotaSet::load(
        Path::new("tests/bad/local/two_sections"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.key_path(), Some("local"));
    assert_eq!(
        err.to_string(),
        "tests/bad/local/two_sections/b.yaml:2:3: local: a second local section (first defined \
         at tests/bad/local/two_sections/a.yaml:3:3); one load holds at most one"
    );
}

#[test]
fn a_wrong_type_in_the_local_section_names_its_path() {
    let err = load("local:\n  token_bucket: {max_tokens: 5, fill_interval: 1s}\n  status: many\n")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "page.yaml:3:11: local.status: expected an integer from 0 to 65535, found \"many\""
    );
}
