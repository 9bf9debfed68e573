//! What the rls benchmarks share: a quota large enough that nothing is denied, and
//! descriptors to ask about.

#![allow(dead_code)] // each benchmark uses a part

use config::{LoadOptions, QuotaSet};
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::Entry;
use proto::rls::RateLimitRequest;

/// Token buckets at every depth, and one fixed window.
pub const QUOTAS: &str = "
domain: bench
descriptors:
  - key: path
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: user
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: tenant
    descriptors:
      - key: method
        rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: region
    rate_limit: {algorithm: fixed_window, unit: second, requests_per_unit: 1000000000}
";

/// [`QUOTAS`], loaded.
pub fn quotas() -> QuotaSet {
    QuotaSet::from_sources([("bench.yaml", QUOTAS)], &LoadOptions::default())
        .expect("bench quotas are valid")
}

/// A descriptor of `(key, value)` entries.
pub fn descriptor(pairs: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: pairs
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..RateLimitDescriptor::default()
    }
}

/// A request for the bench domain.
pub fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: "bench".into(),
        descriptors,
        hits_addend: 1,
    }
}

/// The four-descriptor request both benchmarks use: a path, a user, a nested pair and a
/// fixed window.
pub fn four_descriptors(user: &str) -> RateLimitRequest {
    request(vec![
        descriptor(&[("user", user)]),
        descriptor(&[("path", "/api/users")]),
        descriptor(&[("tenant", user), ("method", "GET")]),
        descriptor(&[("region", "eu-west-1")]),
    ])
}
