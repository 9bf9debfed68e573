//! One million distinct wildcard values keep the per-value map within its bound, in entries
//! and in resident memory. Its own test binary, so no other test shares the process.

use limiter::{Descriptor, FakeClock, LocalLimits, local};

/// Resident set size in KiB (Linux; `None` elsewhere).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_million_distinct_wildcard_values_stay_within_max_dynamic_descriptors() {
    let section = local::parse_section(
        "flood.yaml",
        "local:
  max_dynamic_descriptors: 10000
  descriptors:
    - entries: [{key: remote_address}]
      token_bucket: {max_tokens: 5, fill_interval: 1s}
",
    )
    .unwrap();
    let limits = LocalLimits::builder(&section)
        .clock(FakeClock::new(1_700_000_000_000_000_000))
        .build();
    let mut value = String::new();
    let mut check = |i: u32| {
        value.clear();
        value.push_str(&std::net::Ipv4Addr::from(i).to_string());
        let request = [Descriptor::new([("remote_address", value.as_str())])];
        assert!(!limits.check(&request).is_denied());
    };
    // Fill the map to its bound first, so what follows measures growth past it.
    for i in 0..20_000 {
        check(i);
    }
    let before = rss_kib();
    for i in 20_000..1_000_000 {
        check(i);
        if i % 100_000 == 0 {
            assert!(limits.dynamic_buckets() <= 10_000);
        }
    }
    assert!(limits.dynamic_buckets() <= 10_000);
    if let (Some(before), Some(after)) = (before, rss_kib()) {
        // An unbounded map of a million keys would take ~100 MiB; allow noise of 16 MiB.
        assert!(
            after.saturating_sub(before) < 16 * 1024,
            "{before} KiB -> {after} KiB"
        );
    }
}
