//! Every fault of a `kind: RateLimit` resource, each asserting the whole message: file,
//! line, column, the resource's key path and what is wrong. The files are in
//! tests/bad/resource/, named for the fault.

use std::path::Path;

use config::{LoadOptions, QuotaSet};

/// The message of loading `tests/bad/resource/<name>` (cargo runs tests in the crate
/// directory).
fn load_error(name: &str) -> String {
    let path = format!("tests/bad/resource/{name}");
    match QuotaSet::load(Path::new(&path), &LoadOptions::default()) {
        Ok(_) => panic!("{path} loaded, but it should be refused"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn an_unknown_match_type_is_refused() {
    assert_eq!(
        load_error("unknown_match_type.yaml"),
        "tests/bad/resource/unknown_match_type.yaml:11:20: spec.match.headers[0].matchType: \
         unknown value \"suffix\" (expected exact, prefix, regex or present)"
    );
}

#[test]
fn a_quota_of_zero_is_refused() {
    assert_eq!(
        load_error("zero_quota.yaml"),
        "tests/bad/resource/zero_quota.yaml:8:10: spec.quota: 0 is out of range (expected at \
         least 1)"
    );
}

#[test]
fn an_empty_host_list_is_refused() {
    assert_eq!(
        load_error("empty_hosts.yaml"),
        "tests/bad/resource/empty_hosts.yaml:7:10: spec.hosts: must not be empty"
    );
}

#[test]
fn two_rules_emitting_the_same_descriptor_are_refused() {
    assert_eq!(
        load_error("same_descriptor.yaml"),
        "tests/bad/resource/same_descriptor.yaml:13:7: spec.rules[1]: emits the same \
         descriptor [rule=web/page/reads] as the rule at \
         tests/bad/resource/same_descriptor.yaml:9:7"
    );
}

#[test]
fn a_name_equal_to_another_rules_default_name_is_the_same_descriptor() {
    assert_eq!(
        load_error("same_descriptor_default_name.yaml"),
        "tests/bad/resource/same_descriptor_default_name.yaml:12:7: spec.rules[1]: emits the \
         same descriptor [rule=web/page/rule-0] as the rule at \
         tests/bad/resource/same_descriptor_default_name.yaml:9:7"
    );
}

#[test]
fn a_misspelled_rule_field_is_refused_with_the_fields_that_exist() {
    assert_eq!(
        load_error("misspelled_field.yaml"),
        "tests/bad/resource/misspelled_field.yaml:10:7: spec.rules[0].qouta: unknown field \
         \"qouta\" (expected one of: name, match, per, quota, unit, burst, algorithm, \
         unitMultiplier, cost, shadow, mode)"
    );
}

#[test]
fn another_api_version_is_refused() {
    assert_eq!(
        load_error("wrong_api_version.yaml"),
        "tests/bad/resource/wrong_api_version.yaml:1:13: apiVersion: unknown value \
         \"quota.rls.dev/v1\" (expected quota.rls.dev/v1alpha1)"
    );
}

#[test]
fn an_inline_rule_and_a_rules_list_are_refused_together() {
    assert_eq!(
        load_error("inline_and_rules.yaml"),
        "tests/bad/resource/inline_and_rules.yaml:8:10: spec.quota: cannot be set together \
         with spec.rules (write every rule in the list)"
    );
}

#[test]
fn an_address_range_with_host_bits_is_refused_with_the_range_meant() {
    assert_eq!(
        load_error("cidr_host_bits.yaml"),
        "tests/bad/resource/cidr_host_bits.yaml:8:23: spec.match.sourceCIDR: invalid value \
         \"10.1.2.3/8\": bits are set past the prefix; the range is 10.0.0.0/8"
    );
}

#[test]
fn a_regex_that_does_not_parse_is_refused() {
    assert_eq!(
        load_error("bad_regex.yaml"),
        "tests/bad/resource/bad_regex.yaml:10:50: spec.match.headers[0].value: invalid value \
         \"csv|(xlsx\": not a regular expression: unclosed group"
    );
}

#[test]
fn a_local_fixed_window_is_refused() {
    assert_eq!(
        load_error("local_fixed_window.yaml"),
        "tests/bad/resource/local_fixed_window.yaml:9:14: spec.algorithm: cannot be set \
         together with mode: local (Envoy's local_ratelimit is a token bucket)"
    );
}

#[test]
fn a_cost_above_the_burst_is_refused() {
    assert_eq!(
        load_error("cost_over_burst.yaml"),
        "tests/bad/resource/cost_over_burst.yaml:8:9: spec.cost: 20 is out of range (expected \
         at most the burst, which is the quota unless burst is given: a request costing more \
         could never pass)"
    );
}

#[test]
fn a_missing_unit_is_refused_at_its_rule() {
    assert_eq!(
        load_error("missing_unit.yaml"),
        "tests/bad/resource/missing_unit.yaml:7:3: spec.unit: required field is missing"
    );
}

#[test]
fn a_value_with_match_type_present_is_refused() {
    assert_eq!(
        load_error("present_with_value.yaml"),
        "tests/bad/resource/present_with_value.yaml:10:50: spec.match.headers[0].value: cannot \
         be set together with matchType: present"
    );
}

#[test]
fn a_host_listed_twice_is_refused() {
    assert_eq!(
        load_error("duplicate_host.yaml"),
        "tests/bad/resource/duplicate_host.yaml:7:41: spec.hosts[2]: invalid value \
         \"a.example.com\": listed twice (first at tests/bad/resource/duplicate_host.yaml:7:11)"
    );
}

#[test]
fn a_host_listed_twice_in_another_case_is_refused() {
    assert_eq!(
        load_error("duplicate_host_case.yaml"),
        "tests/bad/resource/duplicate_host_case.yaml:7:26: spec.hosts[1]: invalid value \
         \"A.Example.com\": listed twice (first at \
         tests/bad/resource/duplicate_host_case.yaml:7:11)"
    );
}

#[test]
fn an_unknown_mode_is_refused() {
    assert_eq!(
        load_error("unknown_mode.yaml"),
        "tests/bad/resource/unknown_mode.yaml:10:9: spec.mode: unknown value \"regional\" \
         (expected global or local)"
    );
}

#[test]
fn a_domain_already_defined_is_refused_at_the_resource_name() {
    assert_eq!(
        load_error("domain_taken.yaml"),
        "tests/bad/resource/domain_taken.yaml:7:9: domain: duplicate domain \"web/page\" (first \
         defined at tests/bad/resource/domain_taken.yaml:1:9; enable domain merging to combine \
         them)"
    );
}

#[test]
fn a_per_without_header_or_client_address_is_refused() {
    assert_eq!(
        load_error("per_without_kind.yaml"),
        "tests/bad/resource/per_without_kind.yaml:8:8: spec.per: invalid value \"{}\": set \
         header, or clientAddress: true"
    );
}

#[test]
fn a_stage_above_ten_is_refused() {
    assert_eq!(
        load_error("stage_too_high.yaml"),
        "tests/bad/resource/stage_too_high.yaml:8:10: spec.stage: 11 is out of range (expected \
         an integer from 0 to 10)"
    );
}

#[test]
fn a_name_kubernetes_would_refuse_is_refused() {
    assert_eq!(
        load_error("bad_name.yaml"),
        "tests/bad/resource/bad_name.yaml:4:9: metadata.name: invalid value \"Page_1\": a name \
         is at most 253 lowercase letters, digits, '.' and '-', starting and ending with a \
         letter or digit"
    );
}

#[test]
fn a_method_in_lowercase_is_refused() {
    assert_eq!(
        load_error("lowercase_method.yaml"),
        "tests/bad/resource/lowercase_method.yaml:6:19: spec.match.method: invalid value \
         \"get\": a method is case-sensitive and written in capitals (GET, POST)"
    );
}

#[test]
fn every_file_here_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir("tests/bad/resource")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let source = include_str!("resource_rejections.rs");
    for file in files {
        assert!(
            source.contains(&format!("load_error(\"{file}\")")),
            "{file} has no test"
        );
    }
}
