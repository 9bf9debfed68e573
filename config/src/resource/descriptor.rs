//! The mapping of a [`ResourceRule`] to the descriptor its Envoy actions emit
//! ([`ResourceRule::descriptor`]), and of a resource to the domain `rls` serves. `rls render`
//! prints the actions from the same entries, so the two halves cannot disagree.

use serde_saphyr::{Location, Spanned};

use crate::file::{DescriptorDto, DomainFile, RateLimitDto};
use crate::resource::model::{Cidr, HeaderMatch, Mode, Per, ResourceRule};
use crate::resource::validate::Validated;

/// The key of every rule's first entry, whose value is the rule's `id`.
pub const RULE_KEY: &str = "rule";
/// The key Envoy's `masked_remote_address` action writes (fixed by Envoy).
pub const MASKED_REMOTE_ADDRESS_KEY: &str = "masked_remote_address";
/// The key Envoy's `remote_address` action writes (fixed by Envoy).
pub const REMOTE_ADDRESS_KEY: &str = "remote_address";

/// One entry of the descriptor a rule emits, and the Envoy action that writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorEntry {
    /// The entry key.
    pub key: String,
    /// The value: fixed, or `None` when each request brings its own (one bucket per value).
    pub value: Option<String>,
    /// The Envoy action that writes this entry.
    pub action: EntryAction,
}

/// The Envoy `RateLimit.Action` that writes a [`DescriptorEntry`]. When an action writes
/// nothing (a header condition fails, a `per` header is absent) Envoy drops the whole
/// descriptor: the rule does not count that request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryAction {
    /// `generic_key` when `headers` is empty; otherwise `header_value_match` over all of them
    /// (written only when every condition holds).
    Rule {
        /// The rule's header conditions.
        headers: Vec<HeaderMatch>,
    },
    /// `masked_remote_address` with the range's prefix length: writes the client address
    /// masked to it, which equals the range when the client is in it.
    MaskedRemoteAddress(Cidr),
    /// `request_headers`: writes the header's value.
    RequestHeader(String),
    /// `remote_address`: writes the client address.
    RemoteAddress,
}

impl ResourceRule {
    /// The descriptor this rule's Envoy actions emit, in order:
    ///
    /// 1. `(rule, <id>)`: the rule's identity, written only when its header conditions hold;
    /// 2. `(masked_remote_address, <cidr>)` with `match.sourceCIDR`;
    /// 3. `(<header>, *)` or `(remote_address, *)` with `per`: one bucket per value.
    ///
    /// `rls` serves the rule at exactly this descriptor, and `rls render` writes the actions.
    pub fn descriptor(&self) -> Vec<DescriptorEntry> {
        let mut entries = vec![DescriptorEntry {
            key: RULE_KEY.to_owned(),
            value: Some(self.id.clone()),
            action: EntryAction::Rule {
                headers: self.headers.clone(),
            },
        }];
        if let Some(cidr) = self.source_cidr {
            entries.push(DescriptorEntry {
                key: MASKED_REMOTE_ADDRESS_KEY.to_owned(),
                value: Some(cidr.to_string()),
                action: EntryAction::MaskedRemoteAddress(cidr),
            });
        }
        match &self.per {
            None => {}
            Some(Per::Header(name)) => entries.push(DescriptorEntry {
                key: name.clone(),
                value: None,
                action: EntryAction::RequestHeader(name.clone()),
            }),
            Some(Per::ClientAddress) => entries.push(DescriptorEntry {
                key: REMOTE_ADDRESS_KEY.to_owned(),
                value: None,
                action: EntryAction::RemoteAddress,
            }),
        }
        entries
    }
}

/// The quota document `rls` serves for `resource`: its domain, and per global rule a
/// descriptor chain ending in the rule's limit. Local rules are the proxies' (or the
/// embedding service's) alone. Positions point at the resource, so an error the tree raises
/// names the right place.
pub(crate) fn domain_document(valid: &Validated, at: Location) -> Spanned<DomainFile> {
    let resource = &valid.resource;
    let descriptors = resource
        .rules
        .iter()
        .zip(&valid.rules_at)
        .filter(|(rule, _)| rule.mode == Mode::Global)
        .map(|(rule, &rule_at)| chain(rule, rule_at))
        .collect();
    let file = DomainFile {
        domain: Some(Spanned::new(
            resource.domain.clone(),
            valid.name_at,
            valid.name_at,
        )),
        descriptors: Some(descriptors),
        ..Default::default()
    };
    Spanned::new(file, at, at)
}

/// The nested descriptors matching `rule.descriptor()`, the limit on the last.
fn chain(rule: &ResourceRule, at: Location) -> Spanned<DescriptorDto> {
    let spanned = |value| Spanned::new(value, at, at);
    let limit = &rule.limit;
    let rate_limit = RateLimitDto {
        unit: Some(spanned(limit.unit.as_str().to_owned())),
        requests_per_unit: Some(Spanned::new(limit.requests_per_unit, at, at)),
        name: limit.name.clone().map(spanned),
        algorithm: Some(spanned(limit.algorithm.as_str().to_owned())),
        burst: (limit.algorithm == crate::Algorithm::TokenBucket)
            .then(|| Spanned::new(limit.burst, at, at)),
        unit_multiplier: Some(Spanned::new(limit.unit_multiplier.get(), at, at)),
        ..Default::default()
    };
    let mut entries = rule.descriptor().into_iter().rev();
    let node = |entry: DescriptorEntry| DescriptorDto {
        key: Some(spanned(entry.key)),
        value: entry.value.map(spanned),
        ..Default::default()
    };
    let last = entries.next().map(node).unwrap_or_default();
    let mut dto = DescriptorDto {
        rate_limit: Some(Spanned::new(rate_limit, at, at)),
        shadow_mode: Some(rule.shadow),
        ..last
    };
    for entry in entries {
        dto = DescriptorDto {
            descriptors: Some(vec![Spanned::new(dto, at, at)]),
            ..node(entry)
        };
    }
    Spanned::new(dto, at, at)
}
