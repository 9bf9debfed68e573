//! `local`: the `mode: local` rules of a load's resources as the [`LocalSection`] a service
//! embedding the `limiter` crate enforces — rule for rule what `rls render` gives Envoy's
//! `local_ratelimit` filter: the descriptor of [`ResourceRule::descriptor`], the actions
//! that write it, a token bucket of `burst` refilled by `quota` per period, the cost and
//! shadow mode. What Envoy decides by its virtual hosts, the section decides by a condition
//! on the request's `:authority` ([`MatchRule::VirtualHost`]).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::actions::{
    Action, HeaderMatcher, MatchRule, RateLimitActions, VirtualHostMatch, VirtualHosts,
};
use crate::error::{ConfigError, Position};
use crate::local::{
    DEFAULT_MAX_DYNAMIC_DESCRIPTORS, LocalDescriptor, LocalEntry, LocalSection, Percent,
    TokenBucket,
};
use crate::resource::descriptor::{DescriptorEntry, EntryAction};
use crate::resource::model::{HeaderMatch, MatchType, Mode, RateLimitResource, ResourceRule};
use crate::resource::rule::describe;
use crate::resource::validate::RulePlace;

/// Every resource of a load, kept as it is read: the local rules are enforced by virtual
/// host, and every resource's hosts are virtual hosts of the proxy.
#[derive(Debug, Default)]
pub(crate) struct LocalRules {
    resources: Vec<(RateLimitResource, Vec<RulePlace>)>,
}

impl LocalRules {
    /// Adds a resource read from a file, with where its rules are.
    pub(crate) fn add(&mut self, resource: RateLimitResource, places: Vec<RulePlace>) {
        self.resources.push((resource, places));
    }

    /// The first local rule of the load: its `mode`'s key path and position.
    pub(crate) fn first(&self) -> Option<(String, Position)> {
        self.local_rules().next().map(|(_, _, place)| {
            let at = place.mode_at.clone().unwrap_or_else(|| place.at.clone());
            (format!("{}.mode", place.path), at)
        })
    }

    /// The section enforcing every local rule, or `None` when there is none. Two rules
    /// emitting the same descriptor (resources of one domain, with domains merged) are
    /// refused.
    pub(crate) fn section(&self) -> Result<Option<LocalSection>, ConfigError> {
        let mut hosts = VirtualHosts::default();
        let own: Vec<Vec<usize>> = (self.resources.iter())
            .map(|(resource, _)| resource.hosts.iter().map(|h| hosts.add(h)).collect())
            .collect();
        let hosts = Arc::new(hosts);
        let mut seen: HashMap<Vec<LocalEntry>, Position> = HashMap::new();
        let mut descriptors = Vec::new();
        let mut rate_limits = Vec::new();
        for (r, rule, place) in self.local_rules() {
            let host = HeaderMatcher {
                name: ":authority".to_owned(),
                rule: MatchRule::VirtualHost(VirtualHostMatch {
                    all: Arc::clone(&hosts),
                    own: own[r].clone(),
                }),
                invert_match: false,
                treat_missing_as_empty: false,
            };
            let group = u32::try_from(r).unwrap_or(u32::MAX);
            let (descriptor, actions) = local_rule(rule, host, group, place);
            if let Some(first) = seen.insert(descriptor.entries.clone(), place.at.clone()) {
                return Err(ConfigError::DuplicateRuleDescriptor {
                    at: place.at.clone(),
                    path: place.path.clone(),
                    descriptor: describe(&rule.descriptor()),
                    first,
                });
            }
            descriptors.push(descriptor);
            rate_limits.push(actions);
        }
        let Some(first) = descriptors.first() else {
            return Ok(None);
        };
        Ok(Some(LocalSection {
            token_bucket: None,
            origin: first.origin.clone(),
            descriptors,
            rate_limits,
            always_consume_default_token_bucket: false,
            max_dynamic_descriptors: NonZeroU32::new(DEFAULT_MAX_DYNAMIC_DESCRIPTORS)
                .unwrap_or(NonZeroU32::MIN),
            filter_enabled: Percent::ALL,
            filter_enforced: Percent::ALL,
            status: 429,
            rate_limited_as_resource_exhausted: true,
            enable_x_ratelimit_headers: false,
        }))
    }

    /// Each local rule, in load order, with the index of its resource and its place.
    fn local_rules(&self) -> impl Iterator<Item = (usize, &ResourceRule, &RulePlace)> {
        self.resources
            .iter()
            .enumerate()
            .flat_map(|(r, (resource, places))| {
                resource
                    .rules
                    .iter()
                    .zip(places)
                    .filter(|(rule, _)| rule.mode == Mode::Local)
                    .map(move |(rule, place)| (r, rule, place))
            })
    }
}

/// A local rule's descriptor (in `group`, its resource's index) and the actions that
/// write it, the first only on the resource's virtual hosts (`host`).
fn local_rule(
    rule: &ResourceRule,
    host: HeaderMatcher,
    group: u32,
    place: &RulePlace,
) -> (LocalDescriptor, RateLimitActions) {
    let entries = rule.descriptor();
    let limit = &rule.limit;
    let descriptor = LocalDescriptor {
        entries: (entries.iter())
            .map(|e| LocalEntry {
                key: e.key.clone(),
                value: e.value.clone(),
            })
            .collect(),
        token_bucket: TokenBucket {
            max_tokens: limit.burst,
            // Validated: a quota is at least 1.
            tokens_per_fill: NonZeroU32::new(limit.requests_per_unit).unwrap_or(NonZeroU32::MIN),
            fill_interval: limit.period(),
        },
        shadow_mode: rule.shadow,
        group,
        origin: place.at.to_string(),
    };
    let actions = RateLimitActions {
        actions: entries.iter().map(|e| action(e, &host)).collect(),
        hits_addend: i64::from(rule.cost),
    };
    (descriptor, actions)
}

/// The action writing `entry`, as `rls render` writes it for Envoy; the rule's own entry
/// also tests the virtual host, which Envoy has chosen before any action runs.
fn action(entry: &DescriptorEntry, host: &HeaderMatcher) -> Action {
    match &entry.action {
        EntryAction::Rule { headers } => Action::HeaderValueMatch {
            descriptor_key: entry.key.clone(),
            descriptor_value: entry.value.clone().unwrap_or_default(),
            expect_match: true,
            headers: std::iter::once(host.clone())
                .chain(headers.iter().map(matcher))
                .collect(),
        },
        EntryAction::MaskedRemoteAddress(cidr) => {
            let len = cidr.prefix_len;
            let (v4, v6) = if cidr.address.is_ipv4() {
                (len, 128)
            } else {
                (32, len)
            };
            Action::MaskedRemoteAddress {
                v4_prefix_mask_len: v4,
                v6_prefix_mask_len: v6,
            }
        }
        EntryAction::RequestHeader(name) => Action::RequestHeaders {
            header_name: name.clone(),
            descriptor_key: entry.key.clone(),
            skip_if_absent: false,
        },
        EntryAction::RemoteAddress => Action::RemoteAddress {
            xff_num_trusted_hops: 0,
        },
    }
}

/// The matcher of a condition, as `rls render` writes Envoy's: an inverted test but
/// `present` tests an absent header as empty.
fn matcher(condition: &HeaderMatch) -> HeaderMatcher {
    let rule = match &condition.match_type {
        MatchType::Exact(value) => MatchRule::Exact(value.clone()),
        MatchType::Prefix(value) => MatchRule::Prefix(value.clone()),
        MatchType::Regex(regex) => MatchRule::Regex(regex.clone()),
        MatchType::Present => MatchRule::Present(true),
    };
    HeaderMatcher {
        name: condition.name.clone(),
        rule,
        invert_match: condition.invert,
        treat_missing_as_empty: condition.invert && condition.match_type != MatchType::Present,
    }
}
