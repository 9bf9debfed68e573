//! Quota files: loads the YAML that envoyproxy/ratelimit reads (unchanged, refused for the
//! same faults, every error naming `file:line:column: key.path`), plus our extensions
//! (`algorithm`, `burst`, `unit_multiplier`, several limits per descriptor, and a `local`
//! section of per-pod limits) and `kind: RateLimit` resources, into an immutable
//! [`QuotaSet`] whose [`Domain::resolve`] finds the rule for a request's descriptor without
//! allocating. The formats are described in `docs/quota-files.md` and
//! `docs/ratelimit-resource.md`.
//!
//! Modules: `load` ([`QuotaSet`], files and directories), `tree` ([`Domain`], matching),
//! `quota` ([`Rule`], [`Limit`], [`Unit`], [`Algorithm`]), `rate_limit` (the checks that
//! make limits), `bounds` (the largest limits the
//! bucket maths keeps exact, [`Excess`]), `local` ([`LocalSection`], after
//! Envoy's `LocalRateLimit`), `actions` ([`RateLimitActions`], [`Action`]), `matchers` ([`Regex`],
//! [`VirtualHosts`]: the tests `kind: RateLimit` rules add), `file` (the
//! serde shape), `error` ([`ConfigError`]), [`resource`] (`kind: RateLimit` documents,
//! mapped to a domain and descriptor rules), `xds` (the reference's `RateLimitConfig`
//! resources, checked as quota files: [`QuotaSet::from_rate_limit_configs`]), `report`
//! ([`Report`]: an error and its causes, each said once, as the binaries print errors).
//!
//! ```
//! use config::{LoadOptions, QuotaSet, Unit};
//!
//! let yaml = "
//! domain: edge
//! descriptors:
//!   - key: user_agent
//!     value: curl/*
//!     rate_limit: {unit: minute, requests_per_unit: 10}
//! ";
//! let quotas = QuotaSet::from_sources([("edge.yaml", yaml)], &LoadOptions::default())?;
//! let rule = quotas.domain("edge").unwrap().resolve(&[("user_agent", "curl/8.5")]).unwrap();
//! assert_eq!(rule.limits[0].unit, Unit::Minute);
//! assert_eq!(rule.limits[0].requests_per_unit, 10);
//! assert_eq!(rule.stats_key, "edge.user_agent_curl/*");
//! # Ok::<(), config::ConfigError>(())
//! ```

mod actions;
mod bounds;
mod budget;
mod error;
mod file;
mod load;
mod local;
mod matchers;
mod pattern;
mod position;
mod quota;
mod rate_limit;
mod report;
pub mod resource;
mod tree;
mod xds;
mod yaml_error;
mod yaml_nodes;

pub use actions::{Action, HeaderMatcher, MatchRule, RateLimitActions};
pub use bounds::{Excess, MAX_TOLERANCE_NANOS, MAX_WINDOW_SECS};
pub use budget::{METADATA_NESTING, PATH_BYTES_FLOOR, PATH_BYTES_PER_BYTE};
pub use error::{ConfigError, Position};
pub use load::{
    DEFAULT_MAX_DEPTH, DEFAULT_MAX_NODES, LoadOptions, MOST_MAX_DEPTH, QuotaSet, is_quota_file_name,
};
pub use local::{
    DEFAULT_MAX_DYNAMIC_DESCRIPTORS, LocalDescriptor, LocalEntry, LocalSection, MIN_FILL_INTERVAL,
    Percent, TokenBucket,
};
pub use matchers::{Regex, VirtualHostMatch, VirtualHosts};
pub use quota::{Algorithm, Limit, Rule, Unit};
pub use report::Report;
pub use tree::Domain;
