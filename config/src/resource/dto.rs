//! [`ResourceDto`]: the serde shape of a `kind: RateLimit` document, keeping positions
//! (`Spanned`) wherever a later check may point. Field names are the resource's own
//! (camelCase, as Kubernetes writes them); `validate` turns it into domain types.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// One `kind: RateLimit` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ResourceDto {
    pub api_version: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub metadata: Option<Spanned<MetadataDto>>,
    pub spec: Option<Spanned<SpecDto>>,
}

/// The part of Kubernetes' `ObjectMeta` a resource kept in Git carries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetadataDto {
    pub name: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
    /// Accepted for `kubectl apply`; not used.
    #[expect(
        dead_code,
        reason = "accepted so that resources kept for kubectl load as written"
    )]
    pub labels: Option<BTreeMap<String, String>>,
    /// Accepted for `kubectl apply`; not used.
    #[expect(
        dead_code,
        reason = "accepted so that resources kept for kubectl load as written"
    )]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `spec`: the hosts, the stage, and either one rule written inline or a `rules` list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SpecDto {
    pub hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub stage: Option<Spanned<u32>>,
    pub workload_selector: Option<Spanned<WorkloadSelectorDto>>,
    pub rules: Option<Spanned<Vec<Spanned<RuleDto>>>>,
    // One rule written inline: the fields of `RuleDto` but `name`.
    #[serde(rename = "match")]
    pub match_: Option<Spanned<MatchDto>>,
    pub per: Option<Spanned<PerDto>>,
    pub quota: Option<Spanned<u32>>,
    pub unit: Option<Spanned<String>>,
    pub burst: Option<Spanned<u32>>,
    pub algorithm: Option<Spanned<String>>,
    pub unit_multiplier: Option<Spanned<u32>>,
    pub cost: Option<Spanned<u32>>,
    pub shadow: Option<Spanned<bool>>,
    pub mode: Option<Spanned<String>>,
}

/// Istio's `WorkloadSelector`: which pods the rendered EnvoyFilters patch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkloadSelectorDto {
    pub labels: Option<BTreeMap<String, String>>,
}

/// One item of `spec.rules`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RuleDto {
    pub name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub match_: Option<Spanned<MatchDto>>,
    pub per: Option<Spanned<PerDto>>,
    pub quota: Option<Spanned<u32>>,
    pub unit: Option<Spanned<String>>,
    pub burst: Option<Spanned<u32>>,
    pub algorithm: Option<Spanned<String>>,
    pub unit_multiplier: Option<Spanned<u32>>,
    pub cost: Option<Spanned<u32>>,
    pub shadow: Option<Spanned<bool>>,
    pub mode: Option<Spanned<String>>,
}

impl SpecDto {
    /// Moves the inline rule's fields out, as an unnamed rule; `None` when none is set.
    pub fn take_inline_rule(&mut self) -> Option<RuleDto> {
        let rule = RuleDto {
            name: None,
            match_: self.match_.take(),
            per: self.per.take(),
            quota: self.quota.take(),
            unit: self.unit.take(),
            burst: self.burst.take(),
            algorithm: self.algorithm.take(),
            unit_multiplier: self.unit_multiplier.take(),
            cost: self.cost.take(),
            shadow: self.shadow.take(),
            mode: self.mode.take(),
        };
        rule.first_field().is_some().then_some(rule)
    }
}

impl RuleDto {
    /// The name and position of the first field set, in declaration order.
    pub fn first_field(&self) -> Option<(&'static str, serde_saphyr::Location)> {
        let at = |name, location: Option<serde_saphyr::Location>| location.map(|l| (name, l));
        at("match", self.match_.as_ref().map(|s| s.referenced))
            .or_else(|| at("per", self.per.as_ref().map(|s| s.referenced)))
            .or_else(|| at("quota", self.quota.as_ref().map(|s| s.referenced)))
            .or_else(|| at("unit", self.unit.as_ref().map(|s| s.referenced)))
            .or_else(|| at("burst", self.burst.as_ref().map(|s| s.referenced)))
            .or_else(|| at("algorithm", self.algorithm.as_ref().map(|s| s.referenced)))
            .or_else(|| {
                at(
                    "unitMultiplier",
                    self.unit_multiplier.as_ref().map(|s| s.referenced),
                )
            })
            .or_else(|| at("cost", self.cost.as_ref().map(|s| s.referenced)))
            .or_else(|| at("shadow", self.shadow.as_ref().map(|s| s.referenced)))
            .or_else(|| at("mode", self.mode.as_ref().map(|s| s.referenced)))
    }
}

/// `match`: every condition given must hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MatchDto {
    pub headers: Option<Vec<Spanned<HeaderMatchDto>>>,
    pub path: Option<Spanned<PathMatchDto>>,
    pub method: Option<Spanned<String>>,
    #[serde(rename = "sourceCIDR")]
    pub source_cidr: Option<Spanned<String>>,
}

/// One item of `match.headers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HeaderMatchDto {
    pub key: Option<Spanned<String>>,
    pub match_type: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
    pub invert: Option<bool>,
}

/// `match.path`: a header match on `:path` without the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PathMatchDto {
    pub match_type: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
    pub invert: Option<bool>,
}

/// `per`: exactly one of its fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PerDto {
    pub header: Option<Spanned<String>>,
    pub client_address: Option<Spanned<bool>>,
}
