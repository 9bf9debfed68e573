//! Parsing never panics, and every refusal of damaged input still names a real place.

use config::{LoadOptions, QuotaSet};
use proptest::prelude::*;

const VALID: &str = "domain: edge
descriptors:
  - key: path
    value: /api/*
    share_threshold: true
    descriptors:
      - key: remote_address
        rate_limits:
          - {unit: second, requests_per_unit: 5, burst: 10}
          - name: hourly
            unit: hour
            requests_per_unit: 100
            replaces: [{name: other}]
  - key: source
    rate_limit: {unlimited: true}
";

/// Checks that an error message has the `file:line:column: path: message` shape, with a
/// line inside the text. (A key path may itself hold `:`, so only its presence is checked.)
fn check_error_shape(text: &str, message: &str) -> Result<(), TestCaseError> {
    let fail = || TestCaseError::fail(format!("not file:line:column: path: message: {message:?}"));
    let rest = message.strip_prefix("fuzz.yaml:").ok_or_else(fail)?;
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts.next().and_then(|l| l.parse().ok()).ok_or_else(fail)?;
    let column: usize = parts.next().and_then(|c| c.parse().ok()).ok_or_else(fail)?;
    prop_assert!(
        line >= 1 && line <= text.lines().count() + 1,
        "line in {message:?}"
    );
    prop_assert!(column >= 1, "column in {message:?}");
    let tail = parts.next().ok_or_else(fail)?;
    let (path, what) = tail
        .strip_prefix(' ')
        .and_then(|t| t.split_once(": "))
        .ok_or_else(fail)?;
    prop_assert!(!path.is_empty() && !what.is_empty(), "{message:?}");
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_text_is_loaded_or_refused_without_panicking(text in "\\PC{0,200}") {
        let _ = QuotaSet::from_sources([("fuzz.yaml", text.as_str())], &LoadOptions::default());
    }

    #[test]
    fn a_damaged_valid_file_is_refused_with_a_real_position(cut in 0..VALID.len(), len in 1usize..8, insert in "[ :\\-\\[\\]{}a*0.]{0,3}") {
        let end = (cut + len).min(VALID.len());
        if !VALID.is_char_boundary(cut) || !VALID.is_char_boundary(end) {
            return Ok(());
        }
        let text = format!("{}{}{}", &VALID[..cut], insert, &VALID[end..]);
        if let Err(err) = QuotaSet::from_sources([("fuzz.yaml", text.as_str())], &LoadOptions::default()) {
            check_error_shape(&text, &err.to_string())?;
        }
    }
}

#[test]
fn the_undamaged_file_loads() {
    let set = QuotaSet::from_sources([("fuzz.yaml", VALID)], &LoadOptions::default()).unwrap();
    assert_eq!(set.rule_count(), 2);
}
