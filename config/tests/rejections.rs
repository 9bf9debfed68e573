//! Every fault the reference refuses (test/config/*.yaml of envoyproxy/ratelimit), and the
//! faults of our extensions, each asserting the whole message: file, line, column, key path
//! and what is wrong. The files are in tests/bad/, named for the fault.

use std::path::Path;

use config::{ConfigError, LoadOptions, QuotaSet};

fn load_error_with(path: &str, options: &LoadOptions) -> ConfigError {
    match QuotaSet::load(Path::new(path), options) {
        Ok(_) => panic!("{path} loaded, but it should be refused"),
        Err(err) => err,
    }
}

/// The message of loading `tests/bad/<name>` (cargo runs tests in the crate directory).
fn load_error(name: &str) -> String {
    load_error_with(&format!("tests/bad/{name}"), &LoadOptions::default()).to_string()
}

#[test]
fn an_empty_domain_is_refused() {
    assert_eq!(
        load_error("empty_domain.yaml"),
        "tests/bad/empty_domain.yaml:1:9: domain: must not be empty"
    );
}

#[test]
fn a_missing_domain_is_refused_at_the_top_of_the_document() {
    assert_eq!(
        load_error("missing_domain.yaml"),
        "tests/bad/missing_domain.yaml:1:1: domain: required field is missing"
    );
}

#[test]
fn an_empty_key_is_refused() {
    assert_eq!(
        load_error("empty_key.yaml"),
        "tests/bad/empty_key.yaml:3:10: descriptors[0].key: must not be empty"
    );
}

#[test]
fn a_missing_key_is_refused_at_its_descriptor() {
    assert_eq!(
        load_error("missing_key.yaml"),
        "tests/bad/missing_key.yaml:5:9: descriptors[0].descriptors[0].key: required field is missing"
    );
}

#[test]
fn a_repeated_key_and_value_at_one_level_is_refused() {
    assert_eq!(
        load_error("duplicate_key.yaml"),
        "tests/bad/duplicate_key.yaml:6:5: descriptors[1]: duplicate descriptor composite key \
         \"test-domain.key1_value1\" (first defined at tests/bad/duplicate_key.yaml:3:5)"
    );
}

#[test]
fn an_empty_value_repeats_the_default_of_its_key() {
    assert_eq!(
        load_error("duplicate_nested_key.yaml"),
        "tests/bad/duplicate_nested_key.yaml:8:9: descriptors[0].descriptors[1]: duplicate \
         descriptor composite key \"test-domain.key1_value1.subkey\" (first defined at \
         tests/bad/duplicate_nested_key.yaml:6:9)"
    );
}

#[test]
fn a_unit_on_an_unlimited_limit_is_refused() {
    assert_eq!(
        load_error("unlimited_with_unit.yaml"),
        "tests/bad/unlimited_with_unit.yaml:7:13: descriptors[0].rate_limit.unit: must not be \
         set when unlimited is true"
    );
}

#[test]
fn a_unit_multiplier_on_an_unlimited_limit_is_refused() {
    assert_eq!(
        load_error("unit_multiplier_with_unlimited.yaml"),
        "tests/bad/unit_multiplier_with_unlimited.yaml:6:24: \
         descriptors[0].rate_limit.unit_multiplier: must not be set when unlimited is true"
    );
}

#[test]
fn replaces_naming_its_own_rule_is_refused() {
    assert_eq!(
        load_error("replaces_self.yaml"),
        "tests/bad/replaces_self.yaml:10:17: descriptors[0].rate_limit.replaces[1].name: \
         replaces \"key1_limit\", a limit of this same descriptor"
    );
}

#[test]
fn replaces_with_an_empty_name_is_refused() {
    assert_eq!(
        load_error("replaces_empty.yaml"),
        "tests/bad/replaces_empty.yaml:9:17: descriptors[0].rate_limit.replaces[0].name: must \
         not be empty"
    );
}

#[test]
fn replaces_without_a_name_is_refused() {
    assert_eq!(
        load_error("replaces_without_name.yaml"),
        "tests/bad/replaces_without_name.yaml:8:11: descriptors[0].rate_limit.replaces[0].name: \
         required field is missing"
    );
}

#[test]
fn an_unknown_unit_is_refused_with_the_units_that_exist() {
    assert_eq!(
        load_error("bad_limit_unit.yaml"),
        "tests/bad/bad_limit_unit.yaml:7:17: descriptors[0].descriptors[0].rate_limit.unit: \
         unknown unit \"fortnight\" (expected second, minute, hour, day, week, month or year)"
    );
}

#[test]
fn a_limit_without_unit_that_is_not_unlimited_is_refused() {
    assert_eq!(
        load_error("missing_unit.yaml"),
        "tests/bad/missing_unit.yaml:5:7: descriptors[0].rate_limit: missing unit (expected \
         second, minute, hour, day, week, month or year, or unlimited: true)"
    );
}

#[test]
fn a_misspelled_descriptor_field_is_refused_with_the_fields_that_exist() {
    assert_eq!(
        load_error("misspelled_key.yaml"),
        "tests/bad/misspelled_key.yaml:5:5: descriptors[0].ratelimit: unknown field \
         \"ratelimit\" (expected one of: key, value, rate_limit, rate_limits, descriptors, \
         shadow_mode, quota_mode, detailed_metric, value_to_metric, share_threshold, metadata)"
    );
}

#[test]
fn a_misspelled_rate_limit_field_is_refused() {
    assert_eq!(
        load_error("misspelled_key2.yaml"),
        "tests/bad/misspelled_key2.yaml:7:7: descriptors[0].rate_limit.requestsperunit: unknown \
         field \"requestsperunit\" (expected one of: unit, requests_per_unit, unlimited, name, \
         replaces, algorithm, burst, unit_multiplier)"
    );
}

#[test]
fn a_list_item_that_is_not_a_map_is_refused() {
    assert_eq!(
        load_error("non_map_list.yaml"),
        "tests/bad/non_map_list.yaml:3:5: descriptors[0]: expected a map, found \"a\""
    );
}

#[test]
fn a_map_where_a_list_belongs_is_refused() {
    assert_eq!(
        load_error("descriptors_not_a_list.yaml"),
        "tests/bad/descriptors_not_a_list.yaml:3:3: descriptors: expected a list, found a map"
    );
}

#[test]
fn a_key_that_is_not_a_string_is_refused() {
    assert_eq!(
        load_error("non_string_key.yaml"),
        "tests/bad/non_string_key.yaml:1:1: 0.25: key 0.25 is not a string"
    );
}

#[test]
fn broken_yaml_is_refused_where_the_parser_stopped() {
    assert_eq!(
        load_error("bad_yaml.yaml"),
        "tests/bad/bad_yaml.yaml:4:4: descriptors[0].key: while parsing a block collection, did \
         not find expected '-' indicator"
    );
}

#[test]
fn the_same_yaml_key_twice_in_one_map_is_refused() {
    assert_eq!(
        load_error("duplicate_yaml_key.yaml"),
        "tests/bad/duplicate_yaml_key.yaml:5:5: descriptors[0].key: duplicate key \"key\" in the \
         same map"
    );
}

#[test]
fn share_threshold_without_a_wildcard_value_is_refused() {
    assert_eq!(
        load_error("share_threshold_without_wildcard.yaml"),
        "tests/bad/share_threshold_without_wildcard.yaml:5:22: descriptors[0].share_threshold: \
         share_threshold needs a value with a `*` wildcard, but value is \"files/index.html\""
    );
}

#[test]
fn a_float_where_an_integer_is_expected_is_refused() {
    assert_eq!(
        load_error("float_requests.yaml"),
        "tests/bad/float_requests.yaml:6:26: descriptors[0].rate_limit.requests_per_unit: \
         expected an integer from 0 to 4294967295, found 2.5"
    );
}

#[test]
fn rate_limit_and_rate_limits_together_are_refused() {
    assert_eq!(
        load_error("rate_limit_and_rate_limits.yaml"),
        "tests/bad/rate_limit_and_rate_limits.yaml:8:7: descriptors[0].rate_limits: rate_limit \
         and rate_limits cannot both be set"
    );
}

#[test]
fn an_empty_rate_limits_list_is_refused() {
    assert_eq!(
        load_error("empty_rate_limits.yaml"),
        "tests/bad/empty_rate_limits.yaml:4:18: descriptors[0].rate_limits: must not be empty"
    );
}

#[test]
fn burst_with_fixed_window_is_refused() {
    assert_eq!(
        load_error("burst_with_fixed_window.yaml"),
        "tests/bad/burst_with_fixed_window.yaml:8:14: descriptors[0].rate_limit.burst: burst is \
         only valid with algorithm token_bucket"
    );
}

#[test]
fn a_zero_unit_multiplier_is_refused() {
    assert_eq!(
        load_error("zero_unit_multiplier.yaml"),
        "tests/bad/zero_unit_multiplier.yaml:6:24: descriptors[0].rate_limit.unit_multiplier: \
         must be at least 1"
    );
}

// Reproduces `burst: 0` being accepted: the bucket then denied every request.
#[test]
fn a_zero_burst_is_refused() {
    assert_eq!(
        load_error("zero_burst.yaml"),
        "tests/bad/zero_burst.yaml:7:14: descriptors[0].rate_limit.burst: must be at least 1 \
         (a bucket of no tokens refuses every request; write requests_per_unit: 0 for that)"
    );
}

#[test]
fn an_unknown_algorithm_is_refused() {
    assert_eq!(
        load_error("unknown_algorithm.yaml"),
        "tests/bad/unknown_algorithm.yaml:7:18: descriptors[0].rate_limit.algorithm: unknown \
         algorithm \"leaky_bucket\" (expected token_bucket or fixed_window)"
    );
}

#[test]
fn two_limits_of_one_descriptor_with_the_same_name_are_refused() {
    assert_eq!(
        load_error("duplicate_limit_name.yaml"),
        "tests/bad/duplicate_limit_name.yaml:8:15: descriptors[0].rate_limits[1].name: duplicate \
         limit name \"per_user\" in one descriptor (first defined at \
         tests/bad/duplicate_limit_name.yaml:5:15)"
    );
}

#[test]
fn unlimited_beside_another_limit_is_refused() {
    assert_eq!(
        load_error("unlimited_not_alone.yaml"),
        "tests/bad/unlimited_not_alone.yaml:7:20: descriptors[0].rate_limits[1].unlimited: \
         unlimited must be the only limit of its descriptor"
    );
}

#[test]
fn a_domain_in_two_files_is_refused_naming_both() {
    assert_eq!(
        load_error("duplicate_domain"),
        "tests/bad/duplicate_domain/b.yaml:2:9: domain: duplicate domain \"test-domain\" (first \
         defined at tests/bad/duplicate_domain/a.yaml:1:9; enable domain merging to combine them)"
    );
}

#[test]
fn a_domain_in_two_documents_of_one_file_is_refused() {
    assert_eq!(
        load_error("duplicate_domain_in_one_file.yaml"),
        "tests/bad/duplicate_domain_in_one_file.yaml:3:9: domain: duplicate domain \
         \"test-domain\" (first defined at tests/bad/duplicate_domain_in_one_file.yaml:1:9; \
         enable domain merging to combine them)"
    );
}

#[test]
fn merging_domains_still_refuses_a_repeated_top_level_descriptor() {
    let options = LoadOptions {
        merge_domains: true,
        ..LoadOptions::default()
    };
    assert_eq!(
        load_error_with("tests/bad/merge_duplicate_key", &options).to_string(),
        "tests/bad/merge_duplicate_key/b.yaml:5:5: descriptors[1]: duplicate descriptor \
         composite key \"test-domain.key1_value1\" (first defined at \
         tests/bad/merge_duplicate_key/a.yaml:3:5)"
    );
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let err = load_error_with("tests/bad/no_such_file.yaml", &LoadOptions::default());
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert_eq!(err.to_string(), "tests/bad/no_such_file.yaml: cannot read");
}

// Reproduces "No such file or directory (os error 2): No such file or directory (os error
// 2)": the cause was printed by the error's own message and again as its source.
#[test]
fn an_io_error_prints_its_cause_once_in_the_chain() {
    let err = load_error_with("tests/bad/no_such_file.yaml", &LoadOptions::default());
    // As anyhow's `{:#}` and other error reporters print it: each error of the chain.
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(
        chain.starts_with("tests/bad/no_such_file.yaml: cannot read: "),
        "{chain}"
    );
    assert_eq!(chain.matches("(os error").count(), 1, "{chain}");
}

#[test]
fn errors_expose_their_position_and_key_path() {
    let err = load_error_with("tests/bad/bad_limit_unit.yaml", &LoadOptions::default());
    let at = err.position().expect("a position");
    assert_eq!(
        (at.file.as_str(), at.line, at.column),
        ("tests/bad/bad_limit_unit.yaml", 7, 17)
    );
    assert_eq!(
        err.key_path(),
        Some("descriptors[0].descriptors[0].rate_limit.unit")
    );
    assert!(matches!(err, ConfigError::UnknownUnit { ref unit, .. } if unit == "fortnight"));
}

#[test]
fn errors_in_later_documents_and_flow_maps_count_lines_from_the_file_start() {
    let yaml = "domain: a\n---\ndomain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1.5}\n";
    let err = QuotaSet::from_sources([("multi.yaml", yaml)], &LoadOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "multi.yaml:6:51: descriptors[0].rate_limit.requests_per_unit: expected an integer from \
         0 to 4294967295, found 1.5"
    );
}

#[test]
fn a_document_that_is_not_a_map_is_refused() {
    let err = QuotaSet::from_sources([("list.yaml", "- domain: a\n")], &LoadOptions::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "list.yaml:1:1: (root): expected a map, found a list"
    );
}
