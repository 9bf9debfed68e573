//! [`QuotaSet::from_rate_limit_configs`]: the reference's xDS resources (`RateLimitConfig`,
//! the feed Envoy Gateway serves) turned into the documents a quota file holds and validated
//! by the same code, so that a resource is refused for the same faults as the file it
//! mirrors. Errors name the resource (`resource "name"`) where a file's would name
//! `file:line:column`.

use std::path::PathBuf;

use proto::rls_config::{RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, RateLimitUnit};
use serde_saphyr::{Location, Spanned};

use crate::error::ConfigError;
use crate::file::{DescriptorDto, DomainFile, RateLimitDto, ReplacesDto};
use crate::load::{Assembly, LoadOptions, QuotaSet};

impl QuotaSet {
    /// Builds the set that a state-of-the-world response of `RateLimitConfig` resources
    /// holds: each resource is one document (its domain and descriptors), checked as a
    /// quota file's document is; the whole set is refused on the first fault. With
    /// `merge_domains`, resources of one domain add to it; otherwise a repeated domain is
    /// refused, as in files. Fields the proto lacks (`value_to_metric`, `share_threshold`,
    /// our extensions) take their defaults.
    pub fn from_rate_limit_configs(
        configs: &[RateLimitConfig],
        options: &LoadOptions,
    ) -> Result<QuotaSet, ConfigError> {
        let mut assembly = Assembly::new(options);
        let mut sources = Vec::with_capacity(configs.len());
        for config in configs {
            let name = source_name(config);
            assembly.allow(prost::Message::encoded_len(config));
            assembly.add(&name, spanned(document(config)))?;
            sources.push(PathBuf::from(name));
        }
        assembly.finish(sources)
    }
}

/// How errors and `/config` name a resource.
fn source_name(config: &RateLimitConfig) -> String {
    format!("resource {:?}", config.name)
}

/// A value with no place in a text: errors at it name the resource alone.
fn spanned<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

fn document(config: &RateLimitConfig) -> DomainFile {
    DomainFile {
        domain: Some(spanned(config.domain.clone())),
        descriptors: Some(descriptors(&config.descriptors)),
        local: None,
    }
}

fn descriptors(list: &[RateLimitDescriptor]) -> Vec<Spanned<DescriptorDto>> {
    list.iter().map(|d| spanned(descriptor(d))).collect()
}

/// An empty proto string is an absent field, as the reference reads it (its YAML
/// conversion writes `""`, which its loader takes for "not given").
fn text(value: &str) -> Option<Spanned<String>> {
    (!value.is_empty()).then(|| spanned(value.to_owned()))
}

fn descriptor(d: &RateLimitDescriptor) -> DescriptorDto {
    DescriptorDto {
        // A key is required: an empty one is refused as `key: ""` would be.
        key: Some(spanned(d.key.clone())),
        value: text(&d.value),
        rate_limit: d.rate_limit.as_ref().map(|p| spanned(policy(p))),
        rate_limits: None,
        descriptors: (!d.descriptors.is_empty()).then(|| descriptors(&d.descriptors)),
        shadow_mode: Some(d.shadow_mode),
        quota_mode: Some(d.quota_mode),
        detailed_metric: Some(d.detailed_metric),
        value_to_metric: None,
        share_threshold: None,
        metadata: d.metadata.as_ref().and_then(metadata),
    }
}

/// A `Struct` as the JSON object the YAML `metadata` map becomes.
fn metadata(value: &proto::wkt::Struct) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) if !map.is_empty() => Some(map),
        _ => None,
    }
}

fn policy(p: &RateLimitPolicy) -> RateLimitDto {
    RateLimitDto {
        unit: unit(p.unit).map(spanned),
        requests_per_unit: Some(spanned(p.requests_per_unit)),
        unlimited: Some(spanned(p.unlimited)),
        name: text(&p.name),
        replaces: (!p.replaces.is_empty()).then(|| {
            p.replaces
                .iter()
                .map(|r| {
                    spanned(ReplacesDto {
                        name: Some(spanned(r.name.clone())),
                    })
                })
                .collect()
        }),
        algorithm: None,
        burst: None,
        unit_multiplier: None,
    }
}

/// The unit's name as a quota file writes it; `UNKNOWN` (0, what an unset field reads as)
/// is no unit, as the reference treats it: fine with `unlimited`, refused without. A
/// number the enum does not have keeps its digits, and is refused as an unknown unit.
fn unit(number: i32) -> Option<String> {
    match RateLimitUnit::try_from(number) {
        Ok(RateLimitUnit::Unknown) => None,
        Ok(unit) => Some(unit.as_str_name().to_ascii_lowercase()),
        Err(_) => Some(number.to_string()),
    }
}
