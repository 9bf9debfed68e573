//! `Snapshot`: the quota files serving, immutable — the rules, each rule's counters
//! ([`RuleStats`], by [`Rule::index`]), and when and how they were loaded; `Snapshots`:
//! the one serving now, swapped whole on reload, and the last refused reload until one
//! is served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use config::{ConfigError, Position, QuotaSet, Rule};

use crate::stats::rules::{Counters, RuleCounters, RuleStats, domain_override_counters};
use crate::stats::{self, CONFIG_LOAD_DURATION, CONFIG_LOADED, CONFIG_REFUSED, CONFIG_RULES};
use crate::store::keys::identity_hash;

/// How per-rule counters are kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatsOptions {
    /// Hits above `floor(capacity × ratio)` count as `near_limit` (the reference's
    /// `NEAR_LIMIT_RATIO`).
    pub near_limit_ratio: f32,
    /// Most request values kept as labels per rule with `detailed_metric` or
    /// `value_to_metric`; more count under `_overflow_`.
    pub max_values: usize,
}

impl StatsOptions {
    /// The reference's ratio.
    pub const DEFAULT_NEAR_LIMIT_RATIO: f32 = 0.8;
    /// Values per rule.
    pub const DEFAULT_MAX_VALUES: usize = 1000;
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            near_limit_ratio: StatsOptions::DEFAULT_NEAR_LIMIT_RATIO,
            max_values: StatsOptions::DEFAULT_MAX_VALUES,
        }
    }
}

// The ratio is a finite number in [0, 1] (the setting refuses others): equality by bits
// is equality.
impl Eq for StatsOptions {}

/// When and how a snapshot was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadInfo {
    /// 1 for the files loaded at start, one more per reload served.
    pub version: u64,
    /// When the load finished.
    pub at: SystemTime,
    /// A digest of the rules (FNV-1a of their summary): equal on replicas serving the
    /// same rules from the same files.
    pub digest: String,
}

/// A reload that was refused: the previous snapshot kept serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// When.
    pub at: SystemTime,
    /// The whole message.
    pub message: String,
    /// Where: file, line and column, when the fault has a place.
    pub position: Option<Position>,
    /// The key path in the file, when the fault has one.
    pub key_path: Option<String>,
}

impl Refusal {
    /// The refusal of `error`, now.
    pub fn of(error: &ConfigError) -> Refusal {
        Refusal {
            at: SystemTime::now(),
            // With its causes, each once, as the log says it.
            message: config::Report(error).to_string(),
            position: error.position().cloned(),
            key_path: error.key_path().map(str::to_owned),
        }
    }
}

/// The quota files serving.
pub struct Snapshot {
    /// The rules (shared with whoever keeps them past a reload, as RLQS does).
    pub quotas: Arc<QuotaSet>,
    /// When and how they were loaded.
    pub loaded: LoadInfo,
    rules: Vec<RuleStats>,
    /// Per domain, the counters of overrides that match no rule, registered on first use.
    overrides: HashMap<String, OnceLock<RuleCounters>>,
}

impl Snapshot {
    /// A snapshot of `quotas`; `previous` is the one it replaces, whose per-value
    /// counters it keeps for the rules both serve.
    fn new(
        quotas: QuotaSet,
        loaded: LoadInfo,
        options: &StatsOptions,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let before: HashMap<&str, &RuleStats> = previous
            .map(|p| {
                let rules = p.quotas.domains().flat_map(|d| d.rules());
                rules
                    .map(|r| (r.stats_key.as_str(), &p.rules[r.index]))
                    .collect()
            })
            .unwrap_or_default();
        let rules = quotas
            .domains()
            .flat_map(|d| d.rules())
            .map(|rule| {
                let kept = before.get(rule.stats_key.as_str()).copied();
                RuleStats::new(rule, kept, options.max_values)
            })
            .collect();
        let overrides = quotas
            .domains()
            .map(|d| (d.name().to_owned(), OnceLock::new()))
            .collect();
        Snapshot {
            quotas: Arc::new(quotas),
            loaded,
            rules,
            overrides,
        }
    }

    /// The counters of a descriptor of `domain` with `entries` that resolved to `rule`.
    pub fn counters<'a>(
        &'a self,
        domain: &str,
        rule: &Rule,
        entries: &[(&str, &str)],
    ) -> Counters<'a> {
        self.rules[rule.index].counters(domain, rule, entries)
    }

    /// The counters of a `limit` override in `domain`, whose entries matched `rule` if
    /// any: the rule's key without values, else the domain's `_override_`.
    pub fn override_counters<'a>(
        &'a self,
        domain: &str,
        rule: Option<&Rule>,
    ) -> Option<Counters<'a>> {
        match rule {
            Some(rule) => Some(self.rules[rule.index].override_counters(domain, rule)),
            None => self.overrides.get(domain).map(|once| {
                Counters::Shared(once.get_or_init(|| domain_override_counters(domain)))
            }),
        }
    }

    /// Label sets the per-rule counters hold, over all rules.
    pub fn label_sets(&self) -> usize {
        self.rules.iter().map(RuleStats::label_sets).sum()
    }
}

/// The snapshot serving, and what the last reload came to.
pub struct Snapshots {
    serving: ArcSwap<Snapshot>,
    refused: ArcSwapOption<Refusal>,
    version: AtomicU64,
    options: StatsOptions,
}

impl Snapshots {
    /// Serves `quotas`, loaded at start (version 1).
    pub fn new(quotas: QuotaSet, options: StatsOptions) -> Snapshots {
        let loaded = load_info(&quotas, 1);
        publish(&quotas, &loaded);
        metrics::gauge!(CONFIG_REFUSED).set(0.0);
        Snapshots {
            serving: ArcSwap::from_pointee(Snapshot::new(quotas, loaded, &options, None)),
            refused: ArcSwapOption::empty(),
            version: AtomicU64::new(1),
            options,
        }
    }

    /// The snapshot serving now.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.serving.load()
    }

    /// The snapshot serving now, to keep.
    pub fn current(&self) -> Arc<Snapshot> {
        self.serving.load_full()
    }

    /// Serves `quotas` from now on (the next version) and clears the last refusal.
    /// Requests in flight finish on the snapshot they started with.
    pub fn replace(&self, quotas: QuotaSet) {
        let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        let loaded = load_info(&quotas, version);
        publish(&quotas, &loaded);
        let previous = self.serving.load_full();
        let next = Snapshot::new(quotas, loaded, &self.options, Some(&previous));
        self.serving.store(Arc::new(next));
        self.refused.store(None);
        metrics::gauge!(CONFIG_REFUSED).set(0.0);
    }

    /// Records a refused reload: shown until a reload is served.
    pub fn refuse(&self, error: &ConfigError) {
        self.record_refusal(Refusal::of(error));
    }

    /// Records a refused reload that has no place in a file (an xDS response that is not
    /// made of rate limit configurations): shown until a reload is served.
    pub fn refuse_because(&self, message: String) {
        self.record_refusal(Refusal {
            at: SystemTime::now(),
            message,
            position: None,
            key_path: None,
        });
    }

    fn record_refusal(&self, refusal: Refusal) {
        self.refused.store(Some(Arc::new(refusal)));
        metrics::gauge!(CONFIG_REFUSED).set(1.0);
    }

    /// The last refused reload, unless a reload has been served since.
    pub fn refusal(&self) -> Option<Arc<Refusal>> {
        self.refused.load_full()
    }

    /// How per-rule counters are kept.
    pub fn options(&self) -> &StatsOptions {
        &self.options
    }
}

/// Records how long a load of the quota files took.
pub fn record_load_duration(took: Duration) {
    metrics::gauge!(CONFIG_LOAD_DURATION).set(took.as_secs_f64());
}

fn load_info(quotas: &QuotaSet, version: u64) -> LoadInfo {
    let digest = identity_hash(crate::summary::describe(quotas).as_bytes());
    LoadInfo {
        version,
        at: SystemTime::now(),
        digest: format!("{digest:016x}"),
    }
}

/// Sets the gauges of the snapshot serving.
fn publish(quotas: &QuotaSet, loaded: &LoadInfo) {
    let at = loaded.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    metrics::gauge!(stats::CONFIG_VERSION).set(loaded.version as f64);
    metrics::gauge!(CONFIG_LOADED).set(at.as_secs_f64());
    metrics::gauge!(CONFIG_RULES).set(quotas.rule_count() as f64);
}
