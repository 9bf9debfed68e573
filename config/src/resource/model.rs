//! [`RateLimitResource`] and [`ResourceRule`]: a validated `kind: RateLimit` document,
//! what `rls render` prints the proxy half of and what the RLS serves.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::matchers::Regex;
use crate::quota::Limit;

/// The `apiVersion` of the resource.
pub const API_VERSION: &str = "quota.rls.dev/v1alpha1";
/// The `kind` of the resource.
pub const KIND: &str = "RateLimit";

/// A validated `kind: RateLimit` document: a set of hosts and the rules that limit requests
/// to them. It serves as one domain, named [`RateLimitResource::domain`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RateLimitResource {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, if given.
    pub namespace: Option<String>,
    /// The domain the rules are served under: `namespace/name`, or `name` without a
    /// namespace.
    pub domain: String,
    /// Envoy's rate-limit stage (0 to 10) of the rendered filters and route actions.
    pub stage: u32,
    /// The virtual hosts the rules apply to, as written (`host` or `host:port`), in order.
    pub hosts: Vec<String>,
    /// `spec.workloadSelector.labels`: the pods rendered EnvoyFilters patch (empty: every
    /// pod of the namespace).
    pub workload_selector: BTreeMap<String, String>,
    /// The rules, in file order; at least one.
    pub rules: Vec<ResourceRule>,
    /// Where the document starts: `file:line:column`.
    pub origin: String,
}

impl RateLimitResource {
    /// Whether any rule has `mode`.
    pub fn has_mode(&self, mode: Mode) -> bool {
        self.rules.iter().any(|r| r.mode == mode)
    }
}

/// One rule of a resource: which requests it counts, and their quota.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ResourceRule {
    /// The rule's name: `rules[i].name`, else `rule-<i>`; `default` for a rule written
    /// inline in `spec`.
    pub name: String,
    /// `domain/name`: the value of the rule's first descriptor entry, unique among every
    /// rule of every resource (see [`ResourceRule::descriptor`]).
    pub id: String,
    /// Who enforces it.
    pub mode: Mode,
    /// Header conditions (with `match.path` and `match.method` as `:path` and `:method`), all
    /// of which must hold.
    pub headers: Vec<HeaderMatch>,
    /// `match.sourceCIDR`: the client address must be in this range.
    pub source_cidr: Option<Cidr>,
    /// One bucket per distinct value of this, instead of one for all matching requests.
    pub per: Option<Per>,
    /// The quota; its `name` is the rule's `id`, so that `rls` answers name the rule.
    pub limit: Limit,
    /// Hits a matching request takes (`hits_addend`), at least 1 and at most the burst.
    pub cost: u32,
    /// Counted and reported, never refused.
    pub shadow: bool,
    /// Where the rule is defined: `file:line:column`.
    pub origin: String,
}

/// Who enforces a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Envoy asks `rls` (one quota for every proxy).
    Global,
    /// Each proxy (Envoy's `local_ratelimit`) or embedding service keeps its own buckets.
    Local,
}

impl Mode {
    /// `global` or `local`, as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Local => "local",
        }
    }
}

/// A header condition (`match.headers[i]`, or `match.path` / `match.method`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lowercase header name; `:path`, `:method`, `:authority`, `:scheme` read the request
    /// line.
    pub name: String,
    /// How the value is tested.
    pub match_type: MatchType,
    /// The condition holds when the test fails.
    pub invert: bool,
}

/// How a [`HeaderMatch`] tests a header (case-sensitive). Every test but `Present` fails
/// when the header is absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchType {
    /// The whole value.
    Exact(String),
    /// The start of the value.
    Prefix(String),
    /// The whole value matches this regular expression (RE2 syntax, as Envoy's
    /// `safe_regex`).
    Regex(Regex),
    /// The header is present, with any value.
    Present,
}

impl MatchType {
    /// The `matchType` names, in words, for errors.
    pub(crate) const EXPECTED: &'static str = "exact, prefix, regex or present";
}

/// What a rule keeps one bucket per.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Per {
    /// Each distinct value of this (lowercase) header; requests without it are not counted.
    Header(String),
    /// Each client address (Envoy's downstream remote address).
    ClientAddress,
}

/// An address range, `address/prefix_len`, with no bits set past the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address.
    pub address: IpAddr,
    /// Leading bits that must match: at most 32 for IPv4, 128 for IPv6.
    pub prefix_len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}
