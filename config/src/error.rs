//! [`ConfigError`]: every way a quota file can be refused, each naming the file, line,
//! column and key path (`file:line:column: path: message`), so a failed reload can be fixed
//! from the log line alone.

use std::path::PathBuf;

pub use crate::position::Position;

const UNITS: &str = "second, minute, hour, day, week, month or year";

/// Why quota files were refused. A load fails on the first fault found, and nothing of it is
/// kept: a server keeps serving its previous quotas.
///
/// Every variant but [`ConfigError::Io`] carries `at` (where) and, except
/// [`ConfigError::DuplicateDomain`] and [`ConfigError::DuplicateLocal`] whose paths are always
/// `domain` and `local`, `path` — the key path in the document, such as
/// `descriptors[1].rate_limit.unit`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A quota file or directory could not be read. The message names the path; what the
    /// operating system said is the [source](std::error::Error::source), so that a report
    /// of the whole chain (anyhow's `{:#}`) prints it once.
    #[error("{}: cannot read", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The text is not valid YAML, or has a shape no finer variant describes. For syntax
    /// errors `path` is the last node read before the fault.
    #[error("{at}: {path}: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Position,
        /// Key path of the node at (or just before) the fault; `(root)` at the top.
        path: String,
        /// The parser's description.
        message: String,
    },

    /// A key that the quota format does not have (often a misspelling).
    #[error("{at}: {path}: unknown field \"{field}\" (expected one of: {})", .expected.join(", "))]
    UnknownField {
        /// The key.
        at: Position,
        /// Path ending in the unknown key.
        path: String,
        /// The key as written.
        field: String,
        /// The keys allowed in this map.
        expected: Vec<&'static str>,
    },

    /// A map key that YAML reads as a number, boolean or null.
    #[error("{at}: {path}: key {key} is not a string")]
    NonStringKey {
        /// The key.
        at: Position,
        /// Path ending in the key.
        path: String,
        /// The key as written.
        key: String,
    },

    /// A value of the wrong kind: a list item that is not a map, a float where an integer is
    /// expected, a map where a string is expected...
    #[error("{at}: {path}: expected {expected}, found {found}")]
    WrongType {
        /// The value.
        at: Position,
        /// Path of the value.
        path: String,
        /// What the format wants here.
        expected: &'static str,
        /// What the file has (a quoted scalar, `a map` or `a list`).
        found: String,
    },

    /// The same key twice in one YAML map.
    #[error("{at}: {path}: duplicate key \"{key}\" in the same map")]
    DuplicateYamlKey {
        /// The second occurrence.
        at: Position,
        /// Path ending in the key.
        path: String,
        /// The key.
        key: String,
    },

    /// A required field (`domain`, `key`, a `replaces` entry's `name`) is absent.
    #[error("{at}: {path}: required field is missing")]
    Missing {
        /// The map that lacks the field.
        at: Position,
        /// Path ending in the missing field.
        path: String,
    },

    /// A field that must not be empty (`domain`, `key`, a `replaces` name, `rate_limits`)
    /// is empty.
    #[error("{at}: {path}: must not be empty")]
    Empty {
        /// The empty value.
        at: Position,
        /// Path of the value.
        path: String,
    },

    /// Two descriptors with the same key and value at one level.
    #[error(
        "{at}: {path}: duplicate descriptor composite key \"{composite_key}\" (first defined at {first})"
    )]
    DuplicateDescriptor {
        /// The second descriptor.
        at: Position,
        /// Path of the second descriptor.
        path: String,
        /// The reference's name for it: `domain.key_value` (with parents).
        composite_key: String,
        /// The first descriptor.
        first: Position,
    },

    /// The same domain in two documents while domain merging is off.
    #[error(
        "{at}: domain: duplicate domain \"{domain}\" (first defined at {first}; enable domain merging to combine them)"
    )]
    DuplicateDomain {
        /// The second `domain` value.
        at: Position,
        /// The domain name.
        domain: String,
        /// The first `domain` value.
        first: Position,
    },

    /// A `unit` that is not one of the seven units.
    #[error("{at}: {path}: unknown unit \"{unit}\" (expected {UNITS})")]
    UnknownUnit {
        /// The unit value.
        at: Position,
        /// Path ending in `unit`.
        path: String,
        /// The unit as written.
        unit: String,
    },

    /// A limit without `unit` that is not `unlimited`.
    #[error("{at}: {path}: missing unit (expected {UNITS}, or unlimited: true)")]
    MissingUnit {
        /// The limit's map.
        at: Position,
        /// Path of the limit (`...rate_limit`).
        path: String,
    },

    /// `unit` (or one of our period/algorithm fields) given on an `unlimited: true` limit.
    #[error("{at}: {path}: must not be set when unlimited is true")]
    ConflictsWithUnlimited {
        /// The conflicting value.
        at: Position,
        /// Path ending in the conflicting field.
        path: String,
    },

    /// A `replaces` entry naming a limit of its own descriptor.
    #[error("{at}: {path}: replaces \"{name}\", a limit of this same descriptor")]
    ReplacesOwnRule {
        /// The name value.
        at: Position,
        /// Path ending in `replaces[i].name`.
        path: String,
        /// The name.
        name: String,
    },

    /// `share_threshold: true` on a descriptor whose value has no `*`.
    #[error(
        "{at}: {path}: share_threshold needs a value with a `*` wildcard, but value is {value}"
    )]
    ShareThresholdWithoutWildcard {
        /// The share_threshold value.
        at: Position,
        /// Path ending in `share_threshold`.
        path: String,
        /// The descriptor's value, quoted, or `absent`.
        value: String,
    },

    /// Both `rate_limit` and `rate_limits` on one descriptor.
    #[error("{at}: {path}: rate_limit and rate_limits cannot both be set")]
    RateLimitAndRateLimits {
        /// The `rate_limits` value.
        at: Position,
        /// Path ending in `rate_limits`.
        path: String,
    },

    /// `burst` on a `fixed_window` limit.
    #[error("{at}: {path}: burst is only valid with algorithm token_bucket")]
    BurstWithFixedWindow {
        /// The burst value.
        at: Position,
        /// Path ending in `burst`.
        path: String,
    },

    /// `unit_multiplier: 0`.
    #[error("{at}: {path}: must be at least 1")]
    ZeroUnitMultiplier {
        /// The multiplier value.
        at: Position,
        /// Path ending in `unit_multiplier`.
        path: String,
    },

    /// `burst: 0`: a bucket of no tokens would refuse every request, which
    /// `requests_per_unit: 0` already says plainly.
    #[error(
        "{at}: {path}: must be at least 1 (a bucket of no tokens refuses every request; write requests_per_unit: 0 for that)"
    )]
    ZeroBurst {
        /// The burst value.
        at: Position,
        /// Path ending in `burst`.
        path: String,
    },

    /// A period, burst or rate that the bucket maths cannot represent exactly (see
    /// [`MAX_TOLERANCE_NANOS`](crate::MAX_TOLERANCE_NANOS) and
    /// [`MAX_WINDOW_SECS`](crate::MAX_WINDOW_SECS)).
    #[error("{at}: {path}: {value} is too large: {reason}; the largest allowed here is {largest}")]
    TooLarge {
        /// The value (the limit's map when the field is absent).
        at: Position,
        /// Path ending in the field.
        path: String,
        /// The value as written.
        value: String,
        /// The largest value the field may take, the limit's other values unchanged.
        largest: String,
        /// The bound passed, in words.
        reason: &'static str,
    },

    /// An `algorithm` that is neither `token_bucket` nor `fixed_window`.
    #[error(
        "{at}: {path}: unknown algorithm \"{algorithm}\" (expected token_bucket or fixed_window)"
    )]
    UnknownAlgorithm {
        /// The algorithm value.
        at: Position,
        /// Path ending in `algorithm`.
        path: String,
        /// The algorithm as written.
        algorithm: String,
    },

    /// Two limits of one descriptor with the same `name`.
    #[error(
        "{at}: {path}: duplicate limit name \"{name}\" in one descriptor (first defined at {first})"
    )]
    DuplicateLimitName {
        /// The second name.
        at: Position,
        /// Path ending in `name`.
        path: String,
        /// The name.
        name: String,
        /// The first name.
        first: Position,
    },

    /// `unlimited: true` in a `rate_limits` list of more than one limit.
    #[error("{at}: {path}: unlimited must be the only limit of its descriptor")]
    UnlimitedNotAlone {
        /// The unlimited value.
        at: Position,
        /// Path ending in `unlimited`.
        path: String,
    },

    /// A duration that is not `<number><unit>` (`1s`, `500ms`, `0.25s`, `1m`).
    #[error(
        "{at}: {path}: invalid duration \"{value}\" (expected a duration such as 1s, 500ms or 0.25s)"
    )]
    BadDuration {
        /// The duration value.
        at: Position,
        /// Path of the duration.
        path: String,
        /// The value as written.
        value: String,
    },

    /// A token bucket's `fill_interval` below Envoy's minimum of 50 ms.
    #[error("{at}: {path}: fill_interval {value} is shorter than 50ms, the minimum Envoy allows")]
    FillIntervalTooShort {
        /// The fill_interval value.
        at: Position,
        /// Path ending in `fill_interval`.
        path: String,
        /// The value as written.
        value: String,
    },

    /// A number outside what its field allows (a percent above 100, a status below 400, 0
    /// where at least 1 is needed).
    #[error("{at}: {path}: {value} is out of range (expected {expected})")]
    OutOfRange {
        /// The value.
        at: Position,
        /// Path of the value.
        path: String,
        /// The value as written.
        value: String,
        /// The range allowed, in words.
        expected: &'static str,
    },

    /// A string that is not one of its field's values.
    #[error("{at}: {path}: unknown value \"{value}\" (expected {expected})")]
    UnknownValue {
        /// The value.
        at: Position,
        /// Path of the value.
        path: String,
        /// The value as written.
        value: String,
        /// The values allowed, in words.
        expected: &'static str,
    },

    /// A `local` rate-limit action with no action or with several.
    #[error(
        "{at}: {path}: an action needs exactly one of request_headers, remote_address, generic_key or header_value_match (found {found})"
    )]
    ActionKinds {
        /// The action's map.
        at: Position,
        /// Path of the action.
        path: String,
        /// The actions set, or `none`.
        found: String,
    },

    /// A header matcher with no match rule or with several.
    #[error(
        "{at}: {path}: a header matcher needs exactly one of exact, prefix, suffix, contains or present (found {found})"
    )]
    MatcherKinds {
        /// The matcher's map.
        at: Position,
        /// Path of the matcher.
        path: String,
        /// The rules set, or `none`.
        found: String,
    },

    /// A header name that HTTP does not allow (or a pseudo-header other than `:path`,
    /// `:method`, `:authority` and `:scheme`).
    #[error("{at}: {path}: invalid header name \"{name}\"")]
    BadHeaderName {
        /// The name value.
        at: Position,
        /// Path of the name.
        path: String,
        /// The name as written.
        name: String,
    },

    /// Two `local` descriptors with the same entries.
    #[error("{at}: {path}: duplicate local descriptor {entries} (first defined at {first})")]
    DuplicateLocalDescriptor {
        /// The second descriptor.
        at: Position,
        /// Path of the second descriptor.
        path: String,
        /// Its entries, `[key=value, key=*]`.
        entries: String,
        /// The first descriptor.
        first: Position,
    },

    /// A second `local` section in one load (a file or a directory).
    #[error(
        "{at}: local: a second local section (first defined at {first}); one load holds at most one"
    )]
    DuplicateLocal {
        /// The second section.
        at: Position,
        /// The first section.
        first: Position,
    },

    /// A `local` section that limits nothing: no `token_bucket` and no `descriptors`.
    #[error("{at}: {path}: needs a token_bucket, descriptors, or both")]
    NothingToLimit {
        /// The section.
        at: Position,
        /// `local`.
        path: String,
    },

    /// A value its field does not allow, with the reason (a `kind: RateLimit` host, name,
    /// regular expression or address range).
    #[error("{at}: {path}: invalid value {value:?}: {reason}")]
    InvalidValue {
        /// The value.
        at: Position,
        /// Path of the value.
        path: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A field set together with another that excludes it.
    #[error("{at}: {path}: cannot be set together with {other}")]
    Conflict {
        /// The field.
        at: Position,
        /// Path of the field.
        path: String,
        /// The other field, or what excludes this one.
        other: String,
    },

    /// Two rules of a `kind: RateLimit` resource that would emit the same descriptor, so
    /// that a request could not say which one it is counted by.
    #[error("{at}: {path}: emits the same descriptor {descriptor} as the rule at {first}")]
    DuplicateRuleDescriptor {
        /// The second rule.
        at: Position,
        /// Path of the second rule.
        path: String,
        /// The descriptor, `[key=value, key=*]`.
        descriptor: String,
        /// The first rule.
        first: Position,
    },

    /// Descriptors nested deeper than [`LoadOptions::max_depth`](crate::LoadOptions::max_depth).
    #[error(
        "{at}: {path}: descriptors nested more than {max} levels deep (at most {max} are allowed: a request descriptor has at most that many entries)"
    )]
    TooDeep {
        /// The first descriptor past the bound.
        at: Position,
        /// Its key path.
        path: String,
        /// The most levels allowed.
        max: usize,
    },

    /// Maps and lists nested deeper than the descriptors allowed need (deep `metadata`, or
    /// nested lists where a value belongs).
    #[error("{at}: {path}: maps and lists nested more than {max} levels deep (the most allowed)")]
    NestedTooDeep {
        /// Where the parser stopped.
        at: Position,
        /// Key path at (or just before) that point.
        path: String,
        /// The most levels allowed.
        max: usize,
    },

    /// More YAML nodes in one file than [`LoadOptions::max_nodes`](crate::LoadOptions::max_nodes).
    #[error(
        "{at}: {path}: more than {max} YAML nodes (maps, lists and values) in one file (the most allowed)"
    )]
    TooManyNodes {
        /// The node past the bound.
        at: Position,
        /// Its key path.
        path: String,
        /// The most nodes allowed.
        max: usize,
    },

    /// A file that is not UTF-8 text.
    #[error("{at}: {path}: not UTF-8 (quota files are UTF-8 text)")]
    NotUtf8 {
        /// The first byte that is not UTF-8 (its column counts the characters before it).
        at: Position,
        /// Key path of the last node before it.
        path: String,
    },
}
