//! [`Limit`] and [`Rule`], the validated quota of one descriptor node, with its [`Unit`] and
//! [`Algorithm`]; `rate_limit.rs` holds the checks that make them.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::bounds::{self, Excess};

/// How a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// GCRA token bucket: `requests_per_unit` tokens refill evenly over the period, up to
    /// `burst` tokens.
    #[default]
    TokenBucket,
    /// The reference's epoch-aligned fixed window: at most `requests_per_unit` per window.
    FixedWindow,
}

impl Algorithm {
    /// The name used in quota files: `token_bucket` or `fixed_window`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenBucket => "token_bucket",
            Self::FixedWindow => "fixed_window",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "token_bucket" => Some(Self::TokenBucket),
            "fixed_window" => Some(Self::FixedWindow),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The time unit of a limit. Week, month and year are fixed lengths (7, 30 and 365 days),
/// as in the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// 1 s.
    Second,
    /// 60 s.
    Minute,
    /// 3 600 s.
    Hour,
    /// 86 400 s.
    Day,
    /// 7 days.
    Week,
    /// 30 days.
    Month,
    /// 365 days.
    Year,
}

impl Unit {
    /// Length in seconds.
    pub fn seconds(self) -> u64 {
        const DAY: u64 = 86_400;
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => DAY,
            Self::Week => 7 * DAY,
            Self::Month => 30 * DAY,
            Self::Year => 365 * DAY,
        }
    }

    /// Lowercase name: `"second"`, `"minute"`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    /// Parses a unit name in any case (`second`, `MINUTE`, `Hour`...), as the reference does.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Second,
            Self::Minute,
            Self::Hour,
            Self::Day,
            Self::Week,
            Self::Month,
            Self::Year,
        ]
        .into_iter()
        .find(|unit| unit.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One limit of a descriptor (validated; invalid quotas are unrepresentable).
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    /// `rate_limit.name`: echoed to Envoy, target of other rules' `replaces`.
    pub name: Option<String>,
    /// The unit of the period.
    pub unit: Unit,
    /// The period is `unit × unit_multiplier` (ours; 1 in reference files).
    pub unit_multiplier: NonZeroU32,
    /// Requests allowed per period; 0 blocks everything.
    pub requests_per_unit: u32,
    /// Token-bucket capacity; equals `requests_per_unit` unless given (token bucket only),
    /// and at least 1 when given.
    pub burst: u32,
    /// How the limit counts.
    pub algorithm: Algorithm,
    /// Names of limits that this one drops from a request in which both match.
    pub replaces: Vec<String>,
}

impl Limit {
    /// The period: `unit × unit_multiplier`.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_secs())
    }

    /// The period in seconds.
    pub fn period_secs(&self) -> u64 {
        self.unit.seconds() * u64::from(self.unit_multiplier.get())
    }

    /// The value of this limit that the bucket maths cannot represent exactly, if any (see
    /// [`MAX_TOLERANCE_NANOS`](crate::MAX_TOLERANCE_NANOS) and
    /// [`MAX_WINDOW_SECS`](crate::MAX_WINDOW_SECS)). Quota files are checked when they
    /// load; a limit made otherwise, such as one a request carries, is checked with this.
    pub fn excess(&self) -> Option<Excess> {
        let multiplier = self.unit_multiplier.get();
        match self.algorithm {
            Algorithm::FixedWindow => bounds::window_excess(self.unit.seconds(), multiplier),
            Algorithm::TokenBucket => {
                let unit_nanos = u128::from(self.unit.seconds()) * bounds::NANOS_PER_SEC;
                let period_nanos = unit_nanos * u128::from(multiplier);
                // A burst equal to the rate reads as the default: the period is blamed.
                let burst_given = self.burst != self.requests_per_unit;
                let excess = bounds::token_bucket(
                    self.requests_per_unit,
                    period_nanos,
                    self.burst,
                    burst_given,
                )?;
                Some(bounds::rule_excess(
                    excess,
                    self.requests_per_unit,
                    unit_nanos,
                    multiplier,
                    self.burst,
                ))
            }
        }
    }
}

/// The rule at one descriptor node that has `rate_limit`/`rate_limits`.
#[derive(Debug)]
pub struct Rule {
    /// The limits; a request passes only if all allow it. Empty iff `unlimited`.
    pub limits: Vec<Limit>,
    /// `unlimited: true`: matched requests pass without counting.
    pub unlimited: bool,
    /// Evaluated and counted, but reported OK.
    pub shadow_mode: bool,
    /// Over-limit makes the request over limit only if all quota-mode descriptors are.
    pub quota_mode: bool,
    /// Stats keys include request values (see [`Rule::stats_key_for`]).
    pub detailed_metric: bool,
    /// This node's `value_to_metric` (ancestors' flags also count in
    /// [`Rule::stats_key_for`]).
    pub value_to_metric: bool,
    /// Free-form `metadata`, for Envoy's dynamic metadata.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Per depth of the path from the domain root to this node: `Some(pattern)` when the
    /// node matched at that depth has `share_threshold` (the bucket key then uses the
    /// pattern instead of the request's value), else `None`. Its length is the node's depth
    /// (= number of request entries that reach it).
    pub shared_values: Vec<Option<String>>,
    /// The reference's stats key for this rule: `<domain>.<k1>_<v1>.<k2>`, the matched
    /// composite keys joined by `.` (a default node contributes its key only, a wildcard node
    /// `key_pattern`).
    pub stats_key: String,
    /// Where this rule was defined: `file:line:column`.
    pub origin: String,
    /// Its position among every rule of its [`QuotaSet`](crate::QuotaSet), from 0 to
    /// `rule_count() - 1`: domains in name order, each domain's rules in file order (as
    /// `domains()` and `rules()` list them). Callers index their own per-rule state by it.
    pub index: usize,
    /// Length of the domain prefix of `stats_key` (domains may contain dots).
    pub(crate) domain_len: usize,
    pub(crate) steps: Vec<Step>,
    pub(crate) replaces: Vec<String>,
}

/// One node on the path from the domain root to a rule.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub key: String,
    pub value: StepValue,
    pub value_to_metric: bool,
    pub share_threshold: bool,
}

/// How a node's value matches.
#[derive(Clone, Debug)]
pub(crate) enum StepValue {
    Exact(String),
    Wildcard(String),
    Default,
}

impl Step {
    /// The length of [`Step::composite`], without building it.
    pub fn composite_len(&self) -> usize {
        match &self.value {
            StepValue::Exact(v) | StepValue::Wildcard(v) => self.key.len() + 1 + v.len(),
            StepValue::Default => self.key.len(),
        }
    }

    /// The reference's composite key: `key` or `key_value`.
    pub fn composite(&self) -> String {
        match &self.value {
            StepValue::Exact(v) | StepValue::Wildcard(v) => format!("{}_{v}", self.key),
            StepValue::Default => self.key.clone(),
        }
    }
}

impl Rule {
    /// Every name this rule replaces: its limits' `replaces`, and for an unlimited rule its
    /// own (the reference applies those too).
    pub fn replaces(&self) -> &[String] {
        &self.replaces
    }

    /// The descriptor keys on the path from the domain root to this rule, in order: the
    /// order in which a request's entries must come to reach it.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|step| step.key.as_str())
    }

    /// Whether [`Rule::stats_key_for`] depends on the request's values (`detailed_metric`,
    /// or `value_to_metric` on this node or an ancestor); when false it is `stats_key`.
    pub fn stats_key_depends_on_values(&self) -> bool {
        self.detailed_metric || self.steps.iter().any(|s| s.value_to_metric)
    }

    /// The stats key for a request that resolved to this rule, with the reference's
    /// `detailed_metric` / `value_to_metric` rules: the domain, then each of
    /// [`Rule::stats_key_parts_for`] as `.key` or `.key_suffix`. Sanitising `:`, `|` and
    /// IPv4 dots is the stats sink's job.
    pub fn stats_key_for(&self, entries: &[(&str, &str)]) -> String {
        if !self.stats_key_depends_on_values() {
            return self.stats_key.clone();
        }
        let mut key = String::with_capacity(self.stats_key.len() + 32);
        key.push_str(&self.stats_key[..self.domain_len]);
        self.stats_key_parts_for(entries, |entry_key, suffix| {
            key.push('.');
            key.push_str(entry_key);
            if let Some(suffix) = suffix {
                key.push('_');
                key.push_str(suffix);
            }
        });
        key
    }

    /// The parts of [`Rule::stats_key`] after the domain, one per depth: the rule's own
    /// composite keys, handed to `part` as the key and its value or pattern, if any.
    pub fn stats_key_parts(&self, mut part: impl FnMut(&str, Option<&str>)) {
        for step in &self.steps {
            match &step.value {
                StepValue::Exact(v) | StepValue::Wildcard(v) => part(&step.key, Some(v)),
                StepValue::Default => part(&step.key, None),
            }
        }
    }

    /// The parts of the stats key after the domain, one per depth, handed to `part` as the
    /// entry's key and the suffix the stats key gives it (`key_suffix`), if any. Without
    /// `detailed_metric` or `value_to_metric` the parts are the rule's own composite keys
    /// and `entries` are not read; else `entries` are the request's (key, value) pairs, one
    /// per depth, and:
    ///
    /// - `detailed_metric`: every entry as `key_value` (the request's value), except entries
    ///   at `share_threshold` depths, which use the pattern (`key_pattern`).
    /// - else, per depth: an exact match gives `key_value`; a wildcard match gives
    ///   `key_pattern` unless the node has `value_to_metric` (then `key_value`) and not
    ///   `share_threshold`; a default match gives `key`, or `key_value` with
    ///   `value_to_metric`.
    pub fn stats_key_parts_for(
        &self,
        entries: &[(&str, &str)],
        mut part: impl FnMut(&str, Option<&str>),
    ) {
        if !self.stats_key_depends_on_values() {
            return self.stats_key_parts(part);
        }
        let shared = self.shared_values.iter().any(Option::is_some);
        for (i, &(entry_key, value)) in entries.iter().enumerate() {
            let step = self.steps.get(i);
            let pattern = self.shared_values.get(i).and_then(Option::as_deref);
            let suffix = if self.detailed_metric {
                match pattern {
                    Some(p) => Some(p),
                    // The reference writes `key_` for an empty value here, unless some
                    // depth shares a threshold; kept for identical metric names.
                    None if !shared || !value.is_empty() => Some(value),
                    None => None,
                }
            } else {
                match step.map(|s| (&s.value, s.value_to_metric)) {
                    _ if pattern.is_some() => pattern,
                    Some((StepValue::Wildcard(p), false)) => Some(p.as_str()),
                    Some((StepValue::Default, false)) | None => None,
                    Some((StepValue::Exact(_) | StepValue::Wildcard(_), _))
                    | Some((StepValue::Default, true)) => (!value.is_empty()).then_some(value),
                }
            };
            part(entry_key, suffix);
        }
    }
}
