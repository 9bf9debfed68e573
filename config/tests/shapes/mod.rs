//! Quota files of shapes more than one test binary loads.

/// A parent whose key and value are `len` bytes long, with `children` rules below it.
pub fn long_parent(len: usize, children: usize) -> String {
    let long = "p".repeat(len);
    let mut text =
        format!("domain: d\ndescriptors:\n  - key: {long}\n    value: {long}\n    descriptors:\n");
    for i in 0..children {
        text.push_str(&format!(
            "      - key: c{i}\n        rate_limit: {{unit: day, requests_per_unit: 2}}\n"
        ));
    }
    text
}
