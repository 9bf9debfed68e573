//! `RuleStats`: the reference's per-rule counters (`ratelimit_service_rate_limit_*`, as
//! its Prometheus mapping names them), labelled `domain`, `key1`, `key2`, … from the
//! rule's stats key, and bounded by the quota files, never by traffic: request values
//! enter labels only where a rule says `detailed_metric` or `value_to_metric`, and then at
//! most `max_values` of them per rule; the rest count under one `_overflow_` value.
//!
//! A rule's counters are registered on its first hit and kept in the snapshot, so a
//! request of a rule without values formats no label.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use config::Rule;
use dashmap::DashMap;
use metrics::{Counter, Label};

/// Hits of requests a rule counted.
pub const TOTAL_HITS: &str = "ratelimit_service_rate_limit_total_hits";
/// Hits over the limit.
pub const OVER_LIMIT: &str = "ratelimit_service_rate_limit_over_limit";
/// Hits near the limit.
pub const NEAR_LIMIT: &str = "ratelimit_service_rate_limit_near_limit";
/// Hits within the limit.
pub const WITHIN_LIMIT: &str = "ratelimit_service_rate_limit_within_limit";
/// Hits over the limit of a shadow-mode rule.
pub const SHADOW_MODE: &str = "ratelimit_service_rate_limit_shadow_mode";
/// Hits over the limit answered from the over-limit cache.
pub const OVER_LIMIT_WITH_LOCAL_CACHE: &str =
    "ratelimit_service_rate_limit_over_limit_with_local_cache";

/// The value under which a rule counts the values past its `max_values`.
pub const OVERFLOW: &str = "_overflow_";
/// The `key1` under which a domain counts `limit` overrides that match no rule.
pub const OVERRIDE: &str = "_override_";

/// What one descriptor's check came to, for its rule's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Its hits (`hits_addend`).
    pub hits: u32,
    /// Over the limit (whatever the rule's mode made of it).
    pub over: bool,
    /// Answered from the over-limit cache.
    pub cached: bool,
    /// The rule is in shadow mode.
    pub shadow: bool,
    /// Of its hits, those above the near-limit threshold (allowed requests only).
    pub near: u32,
}

/// Hits above `floor(capacity × ratio)` of a request of `hits` that left `remaining` of
/// `capacity`, as the reference counts `near_limit` (capacity: a window's limit, a
/// bucket's burst).
pub fn near_limit_hits(capacity: u32, remaining: u32, hits: u32, ratio: f32) -> u32 {
    // The reference multiplies in single precision too.
    let threshold = (capacity as f32 * ratio).floor() as u32;
    let used_after = capacity.saturating_sub(remaining);
    let used_before = used_after.saturating_sub(hits);
    used_after.saturating_sub(threshold.max(used_before))
}

/// The six counters of one label set.
pub struct RuleCounters {
    total_hits: Counter,
    over_limit: Counter,
    near_limit: Counter,
    within_limit: Counter,
    shadow_mode: Counter,
    over_limit_with_local_cache: Counter,
}

impl RuleCounters {
    /// Registers (or finds) the counters labelled `domain` and `parts` as `key1`, `key2`,
    /// …, each `key` or `key_suffix`, sanitised as the reference sanitises stats names.
    fn register(domain: &str, parts: &[String]) -> RuleCounters {
        let mut labels = Vec::with_capacity(parts.len() + 1);
        labels.push(Label::new("domain", sanitize(domain)));
        for (i, part) in parts.iter().enumerate() {
            labels.push(Label::new(format!("key{}", i + 1), sanitize(part)));
        }
        let counter = |name: &'static str| metrics::counter!(name, labels.iter());
        RuleCounters {
            total_hits: counter(TOTAL_HITS),
            over_limit: counter(OVER_LIMIT),
            near_limit: counter(NEAR_LIMIT),
            within_limit: counter(WITHIN_LIMIT),
            shadow_mode: counter(SHADOW_MODE),
            over_limit_with_local_cache: counter(OVER_LIMIT_WITH_LOCAL_CACHE),
        }
    }

    /// Counts one descriptor's check as the reference does: every hit in `total_hits`;
    /// an allowed request's hits in `within_limit` (and those above the threshold in
    /// `near_limit`); a refused one's in `over_limit`, and also in
    /// `over_limit_with_local_cache` when the cache answered and in `shadow_mode` for a
    /// shadow rule.
    pub fn count(&self, tally: Tally) {
        let hits = u64::from(tally.hits);
        self.total_hits.increment(hits);
        if tally.over {
            self.over_limit.increment(hits);
            if tally.cached {
                self.over_limit_with_local_cache.increment(hits);
            }
            if tally.shadow {
                self.shadow_mode.increment(hits);
            }
        } else {
            self.within_limit.increment(hits);
            if tally.near > 0 {
                self.near_limit.increment(u64::from(tally.near));
            }
        }
    }
}

/// `key` or `key_suffix`.
fn part(key: &str, suffix: Option<&str>) -> String {
    match suffix {
        Some(suffix) => format!("{key}_{suffix}"),
        None => key.to_owned(),
    }
}

/// The parts of `rule`'s stats key for `entries`.
fn parts_of(rule: &Rule, entries: &[(&str, &str)]) -> Vec<String> {
    let mut parts = Vec::new();
    rule.stats_key_parts_for(entries, |key, suffix| parts.push(part(key, suffix)));
    parts
}

/// The parts of `rule`'s own stats key, without request values.
fn plain_parts(rule: &Rule) -> Vec<String> {
    let mut parts = Vec::new();
    rule.stats_key_parts(|key, suffix| parts.push(part(key, suffix)));
    parts
}

/// The counters one request descriptor counts in: the rule's own, or those of a value.
pub enum Counters<'a> {
    /// Held by the snapshot.
    Shared(&'a RuleCounters),
    /// Of one value of a rule with values.
    Value(Arc<RuleCounters>),
}

impl std::ops::Deref for Counters<'_> {
    type Target = RuleCounters;

    fn deref(&self) -> &RuleCounters {
        match self {
            Counters::Shared(counters) => counters,
            Counters::Value(counters) => counters,
        }
    }
}

/// The counters of one rule.
pub enum RuleStats {
    /// A rule whose stats key has no request values: one label set, registered on the
    /// first hit.
    Fixed(OnceLock<Box<RuleCounters>>),
    /// A rule with `detailed_metric` or `value_to_metric`: a label set per value, bounded.
    /// Shared by the snapshots that serve the same rule, so reloads do not reset the
    /// bound.
    ByValue(Arc<ValueSeries>),
}

/// The label sets of one rule with values: at most `max` of them, then `_overflow_`.
pub struct ValueSeries {
    series: DashMap<Box<str>, Arc<RuleCounters>>,
    /// Label sets admitted so far (a race may count one twice: the bound holds).
    admitted: AtomicUsize,
    max: usize,
    overflow: OnceLock<Arc<RuleCounters>>,
    /// The rule's key without values, for `limit` overrides.
    plain: OnceLock<RuleCounters>,
}

impl RuleStats {
    /// Stats for `rule`: `previous` is the same rule's in the snapshot being replaced, if
    /// any, whose values it keeps; `max_values` bounds the values of a rule with values.
    pub fn new(rule: &Rule, previous: Option<&RuleStats>, max_values: usize) -> RuleStats {
        if !rule.stats_key_depends_on_values() {
            return RuleStats::Fixed(OnceLock::new());
        }
        if let Some(RuleStats::ByValue(series)) = previous {
            return RuleStats::ByValue(series.clone());
        }
        RuleStats::ByValue(Arc::new(ValueSeries {
            series: DashMap::new(),
            admitted: AtomicUsize::new(0),
            max: max_values,
            overflow: OnceLock::new(),
            plain: OnceLock::new(),
        }))
    }

    /// The counters of a request descriptor with `entries` that resolved to `rule` (of
    /// `domain`).
    pub fn counters<'a>(
        &'a self,
        domain: &str,
        rule: &Rule,
        entries: &[(&str, &str)],
    ) -> Counters<'a> {
        match self {
            RuleStats::Fixed(once) => Counters::Shared(
                once.get_or_init(|| Box::new(RuleCounters::register(domain, &plain_parts(rule)))),
            ),
            RuleStats::ByValue(series) => Counters::Value(series.counters(domain, rule, entries)),
        }
    }

    /// The counters of a `limit` override of a descriptor that matched `rule`: the rule's
    /// key without request values.
    pub fn override_counters<'a>(&'a self, domain: &str, rule: &Rule) -> Counters<'a> {
        match self {
            RuleStats::Fixed(_) => self.counters(domain, rule, &[]),
            RuleStats::ByValue(series) => Counters::Shared(
                series
                    .plain
                    .get_or_init(|| RuleCounters::register(domain, &plain_parts(rule))),
            ),
        }
    }

    /// How many label sets the rule has registered so far.
    pub fn label_sets(&self) -> usize {
        match self {
            RuleStats::Fixed(once) => usize::from(once.get().is_some()),
            RuleStats::ByValue(series) => {
                series.series.len()
                    + usize::from(series.overflow.get().is_some())
                    + usize::from(series.plain.get().is_some())
            }
        }
    }
}

impl ValueSeries {
    fn counters(&self, domain: &str, rule: &Rule, entries: &[(&str, &str)]) -> Arc<RuleCounters> {
        let key = rule.stats_key_for(entries);
        if let Some(found) = self.series.get(key.as_str()) {
            return found.clone();
        }
        let admitted = self.admitted.load(Ordering::Relaxed) < self.max
            && self.admitted.fetch_add(1, Ordering::Relaxed) < self.max;
        if !admitted {
            return self
                .overflow
                .get_or_init(|| {
                    let overflowing: Vec<(&str, &str)> =
                        entries.iter().map(|&(k, _)| (k, OVERFLOW)).collect();
                    Arc::new(RuleCounters::register(
                        domain,
                        &parts_of(rule, &overflowing),
                    ))
                })
                .clone();
        }
        self.series
            .entry(key.into_boxed_str())
            .or_insert_with(|| Arc::new(RuleCounters::register(domain, &parts_of(rule, entries))))
            .clone()
    }
}

/// The counters of `limit` overrides in `domain` whose descriptor matches no rule.
pub fn domain_override_counters(domain: &str) -> RuleCounters {
    RuleCounters::register(domain, &[OVERRIDE.to_owned()])
}

/// A stats name part as the reference sanitises it: `:` and `|` become `_`, and so do the
/// dots of anything shaped like an IPv4 address (`\d{1,3}(\.\d{1,3}){3}`, leftmost first).
pub fn sanitize(part: &str) -> String {
    let mut out: Vec<u8> = part
        .bytes()
        .map(|b| if b == b':' || b == b'|' { b'_' } else { b })
        .collect();
    let mut i = 0;
    while i < out.len() {
        match ipv4_at(&out, i) {
            Some(end) => {
                out[i..end]
                    .iter_mut()
                    .filter(|b| **b == b'.')
                    .for_each(|b| *b = b'_');
                i = end;
            }
            None => i += 1,
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| part.to_owned())
}

/// The end of an IPv4-shaped match starting at `start`: four runs of one to three digits
/// joined by dots, the last run as long as it goes up to three (a greedy regex's match).
fn ipv4_at(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    for group in 0..4 {
        let run = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if run == 0 || (group < 3 && run > 3) {
            return None;
        }
        at += run.min(3);
        if group < 3 {
            if bytes.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_as_the_reference_sanitises_them() {
        assert_eq!(
            sanitize("remote_address_10.0.0.1"),
            "remote_address_10_0_0_1"
        );
        assert_eq!(sanitize("a:b|c"), "a_b_c");
        // The leftmost match of \d{1,3}(\.\d{1,3}){3} starts inside a longer run.
        assert_eq!(sanitize("1234.5.6.7"), "1234_5_6_7");
        assert_eq!(sanitize("ip 1.2.3.4.5"), "ip 1_2_3_4.5");
        for kept in ["path_/v1.2/x", "1.2.3", "a.b.c.d", "héllo.1.2.3"] {
            assert_eq!(sanitize(kept), kept);
        }
    }

    #[test]
    fn near_limit_counts_the_hits_above_the_threshold() {
        // Limit 10, threshold 8: 5 used of 10 is not near; 5 → 9 puts one hit above 8.
        assert_eq!(near_limit_hits(10, 5, 5, 0.8), 0);
        assert_eq!(near_limit_hits(10, 1, 4, 0.8), 1);
        assert_eq!(near_limit_hits(10, 0, 3, 0.8), 2);
        // Already above the threshold: every hit is near.
        assert_eq!(near_limit_hits(10, 0, 1, 0.8), 1);
        // floor(1 × 0.8) = 0: the only hit of a limit of one is near.
        assert_eq!(near_limit_hits(1, 0, 1, 0.8), 1);
        assert_eq!(near_limit_hits(100, 90, 10, 0.0), 10);
        assert_eq!(near_limit_hits(100, 0, 100, 1.0), 0);
    }
}
