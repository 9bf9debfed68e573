//! [`Snapshot`]: a [`LocalSection`] compiled for checking — the default bucket, the
//! descriptors ranked strictest first, the lookups that match a request descriptor to its
//! bucket — plus the bucket state, which a reload carries over by descriptor identity.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

use config::{LocalDescriptor, LocalEntry, LocalSection, Percent, RateLimitActions, TokenBucket};

use crate::bounded::BoundedKeyed;
use crate::gcra::{Bucket, Rate};
use crate::local::verdict::Descriptor;

/// gRPC status codes a refusal may carry.
pub(crate) const RESOURCE_EXHAUSTED: u8 = 8;
pub(crate) const UNAVAILABLE: u8 = 14;

/// Everything a check needs, immutable; a reload builds a new one.
pub(crate) struct Snapshot {
    pub default: Option<DefaultRule>,
    /// In file order.
    pub rules: Vec<DescriptorRule>,
    /// Hash of the entries of each descriptor without a wildcard -> its indices in `rules`.
    exact: HashMap<u64, Vec<usize>>,
    hasher: RandomState,
    /// Indices of wildcard descriptors, in file order: the first that matches wins.
    wildcards: Vec<usize>,
    pub actions: Vec<RateLimitActions>,
    pub settings: Settings,
}

/// How to decide and how to answer, from the section's top-level fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub always_consume_default: bool,
    pub filter_enabled: Percent,
    pub filter_enforced: Percent,
    pub status: u16,
    pub grpc_status: u8,
    pub headers: bool,
}

/// The default bucket.
pub(crate) struct DefaultRule {
    pub max_tokens: u32,
    pub rate: Rate,
    pub state: Arc<Bucket>,
}

/// One configured descriptor.
pub(crate) struct DescriptorRule {
    pub entries: Vec<LocalEntry>,
    pub max_tokens: u32,
    pub rate: Rate,
    pub shadow: bool,
    /// Position in the strictest-first order (lowest fill rate first).
    pub rank: usize,
    pub state: State,
    /// Indices of the wildcard entries: their request values key the per-value bucket.
    wildcard_positions: Vec<usize>,
}

/// A descriptor's buckets.
#[derive(Clone)]
pub(crate) enum State {
    One(Arc<Bucket>),
    PerValue(Arc<BoundedKeyed<String>>),
}

/// Envoy's token bucket as GCRA: one token per `fill_interval / tokens_per_fill` (rounded up
/// to the nanosecond, so never faster), at most `max_tokens`, starting full.
pub(crate) fn rate(bucket: &TokenBucket) -> Rate {
    Rate::new(
        bucket.tokens_per_fill.get(),
        bucket.fill_interval,
        bucket.max_tokens,
    )
}

impl Snapshot {
    /// Compiles `section`, taking over the bucket state of `previous` for the default bucket
    /// and for every descriptor whose entries are unchanged.
    pub fn build(section: &LocalSection, previous: Option<&Snapshot>) -> Snapshot {
        let default = section.token_bucket.as_ref().map(|bucket| DefaultRule {
            max_tokens: bucket.max_tokens,
            rate: rate(bucket),
            state: previous
                .and_then(|p| p.default.as_ref())
                .map_or_else(|| Arc::new(Bucket::new()), |d| Arc::clone(&d.state)),
        });
        let ranks = strictest_first(section);
        let capacity = section.max_dynamic_descriptors.get() as usize;
        let hasher = RandomState::new();
        let mut exact: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut wildcards = Vec::new();
        let mut rules = Vec::with_capacity(section.descriptors.len());
        for (index, descriptor) in section.descriptors.iter().enumerate() {
            let rule = DescriptorRule::new(descriptor, ranks[index], previous, capacity);
            if rule.wildcard_positions.is_empty() {
                let entries = descriptor
                    .entries
                    .iter()
                    .map(|e| (e.key.as_str(), e.value.as_deref().unwrap_or_default()));
                exact
                    .entry(hash_entries(&hasher, entries))
                    .or_default()
                    .push(index);
            } else {
                wildcards.push(index);
            }
            rules.push(rule);
        }
        Snapshot {
            default,
            rules,
            exact,
            hasher,
            wildcards,
            actions: section.rate_limits.clone(),
            settings: Settings::of(section),
        }
    }

    /// The descriptor that `request` matches, as Envoy picks it: one with exactly its
    /// entries, else the first wildcard descriptor (file order) with the same keys whose
    /// fixed values are equal.
    pub fn find(&self, request: &Descriptor<'_>) -> Option<usize> {
        let entries = || {
            request
                .entries
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_ref()))
        };
        let same = |rule: &DescriptorRule| {
            rule.entries.len() == request.entries.len()
                && rule.entries.iter().zip(entries()).all(|(e, (k, v))| {
                    e.key == k && e.value.as_deref().is_none_or(|value| value == v)
                })
        };
        if !self.exact.is_empty()
            && let Some(candidates) = self.exact.get(&hash_entries(&self.hasher, entries()))
            && let Some(&index) = candidates.iter().find(|&&i| same(&self.rules[i]))
        {
            return Some(index);
        }
        self.wildcards
            .iter()
            .copied()
            .find(|&i| same(&self.rules[i]))
    }

    /// Runs `f` on the bucket of rule `index` for `request` (which matched it). A per-value
    /// bucket is used under its map's shard lock, so `f` must stay short.
    pub fn with_bucket<R>(
        &self,
        index: usize,
        request: &Descriptor<'_>,
        f: impl FnOnce(&Bucket) -> R,
    ) -> R {
        let rule = &self.rules[index];
        match &rule.state {
            State::One(bucket) => f(bucket),
            State::PerValue(map) => match rule.wildcard_positions[..] {
                [position] => map.with(request.entries[position].1.as_ref(), f),
                _ => {
                    // Length-prefixed, so no two value lists share a key.
                    let mut key = String::new();
                    for &position in &rule.wildcard_positions {
                        let value = request.entries[position].1.as_ref();
                        key.push_str(&value.len().to_string());
                        key.push(':');
                        key.push_str(value);
                    }
                    map.with(key.as_str(), f)
                }
            },
        }
    }

    /// Per-value buckets held now, over every wildcard descriptor.
    pub fn dynamic_buckets(&self) -> usize {
        self.rules
            .iter()
            .map(|rule| match &rule.state {
                State::One(_) => 0,
                State::PerValue(map) => map.len(),
            })
            .sum()
    }
}

impl Settings {
    /// The section's top-level fields.
    fn of(section: &LocalSection) -> Settings {
        Settings {
            always_consume_default: section.always_consume_default_token_bucket,
            filter_enabled: section.filter_enabled,
            filter_enforced: section.filter_enforced,
            status: section.status,
            grpc_status: if section.rate_limited_as_resource_exhausted {
                RESOURCE_EXHAUSTED
            } else {
                UNAVAILABLE
            },
            headers: section.enable_x_ratelimit_headers,
        }
    }
}

impl DescriptorRule {
    /// The rule of `descriptor`, ranked `rank`, with the state of the same entries in
    /// `previous` when there is one (a per-value map resized to `capacity`).
    fn new(
        descriptor: &LocalDescriptor,
        rank: usize,
        previous: Option<&Snapshot>,
        capacity: usize,
    ) -> DescriptorRule {
        let wildcard_positions: Vec<usize> = (descriptor.entries.iter().enumerate())
            .filter(|(_, e)| e.value.is_none())
            .map(|(i, _)| i)
            .collect();
        let old = previous.and_then(|p| p.rules.iter().find(|r| r.entries == descriptor.entries));
        let state = match (old.map(|r| &r.state), wildcard_positions.is_empty()) {
            (Some(State::One(bucket)), true) => State::One(Arc::clone(bucket)),
            (None, true) => State::One(Arc::new(Bucket::new())),
            (Some(State::PerValue(map)), false) => {
                map.set_capacity(capacity);
                State::PerValue(Arc::clone(map))
            }
            (_, _) => State::PerValue(Arc::new(BoundedKeyed::new(capacity))),
        };
        DescriptorRule {
            entries: descriptor.entries.clone(),
            max_tokens: descriptor.token_bucket.max_tokens,
            rate: rate(&descriptor.token_bucket),
            shadow: descriptor.shadow_mode,
            rank,
            state,
            wildcard_positions,
        }
    }
}

/// Each descriptor's rank: group by group (lowest first), and within a group strictest
/// first: a bucket that refuses everything, then by fill rate; ties keep file order (the
/// sort is stable).
fn strictest_first(section: &LocalSection) -> Vec<usize> {
    let mut order: Vec<usize> = (0..section.descriptors.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&section.descriptors[a], &section.descriptors[b]);
        let group = a.group.cmp(&b.group);
        let (a, b) = (&a.token_bucket, &b.token_bucket);
        group
            .then_with(|| (b.max_tokens == 0).cmp(&(a.max_tokens == 0)))
            .then_with(|| match (a.is_slower_than(b), b.is_slower_than(a)) {
                (true, _) => std::cmp::Ordering::Less,
                (_, true) => std::cmp::Ordering::Greater,
                _ => std::cmp::Ordering::Equal,
            })
    });
    let mut ranks = vec![0; order.len()];
    for (rank, &index) in order.iter().enumerate() {
        ranks[index] = rank;
    }
    ranks
}

fn hash_entries<'e>(
    hasher: &RandomState,
    entries: impl Iterator<Item = (&'e str, &'e str)>,
) -> u64 {
    let mut state = hasher.build_hasher();
    for (key, value) in entries {
        // `str` hashes its bytes and a terminator, so entry boundaries are unambiguous.
        key.hash(&mut state);
        value.hash(&mut state);
    }
    state.finish()
}
