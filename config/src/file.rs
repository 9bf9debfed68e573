//! [`DomainFile`]: the serde shape of one YAML document (the reference's keys plus ours),
//! keeping positions (`Spanned`) wherever a later check may point at a value. Only YAML
//! types are checked here; `tree`, `quota`, `local` and `actions` validate it into domain
//! types.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::{ConfigError, Position};
use crate::load::LoadOptions;

/// One `---` document: one domain, this pod's local limits, or both.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DomainFile {
    pub domain: Option<Spanned<String>>,
    pub descriptors: Option<Vec<Spanned<DescriptorDto>>>,
    /// Ours: per-pod limits for the embedded limiter, after Envoy's `LocalRateLimit`. The
    /// RLS ignores it.
    pub local: Option<Spanned<LocalDto>>,
}

/// One entry of a `descriptors` list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DescriptorDto {
    pub key: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
    pub rate_limit: Option<Spanned<RateLimitDto>>,
    /// Ours: several limits on one descriptor.
    pub rate_limits: Option<Spanned<Vec<Spanned<RateLimitDto>>>>,
    pub descriptors: Option<Vec<Spanned<DescriptorDto>>>,
    pub shadow_mode: Option<bool>,
    pub quota_mode: Option<bool>,
    pub detailed_metric: Option<bool>,
    pub value_to_metric: Option<bool>,
    pub share_threshold: Option<Spanned<bool>>,
    /// Free-form; returned to Envoy as dynamic metadata.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A `rate_limit` map, or one item of `rate_limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitDto {
    pub unit: Option<Spanned<String>>,
    pub requests_per_unit: Option<Spanned<u32>>,
    pub unlimited: Option<Spanned<bool>>,
    pub name: Option<Spanned<String>>,
    pub replaces: Option<Vec<Spanned<ReplacesDto>>>,
    /// Ours: `token_bucket` or `fixed_window`.
    pub algorithm: Option<Spanned<String>>,
    /// Ours: token-bucket capacity.
    pub burst: Option<Spanned<u32>>,
    /// Ours: the period is `unit × unit_multiplier`.
    pub unit_multiplier: Option<Spanned<u32>>,
}

/// One `replaces` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplacesDto {
    pub name: Option<Spanned<String>>,
}

/// A `local` section (Envoy's `LocalRateLimit`, the fields we support).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalDto {
    pub token_bucket: Option<Spanned<TokenBucketDto>>,
    pub descriptors: Option<Vec<Spanned<LocalDescriptorDto>>>,
    pub rate_limits: Option<Vec<Spanned<RateLimitActionsDto>>>,
    pub always_consume_default_token_bucket: Option<bool>,
    pub max_dynamic_descriptors: Option<Spanned<u32>>,
    /// Percent, 0 to 100.
    pub filter_enabled: Option<Spanned<f64>>,
    /// Percent, 0 to 100.
    pub filter_enforced: Option<Spanned<f64>>,
    pub status: Option<Spanned<u16>>,
    pub rate_limited_as_resource_exhausted: Option<bool>,
    /// `OFF` or `DRAFT_VERSION_03`.
    pub enable_x_ratelimit_headers: Option<Spanned<String>>,
}

/// Envoy's `TokenBucket`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBucketDto {
    pub max_tokens: Option<Spanned<u32>>,
    pub tokens_per_fill: Option<Spanned<u32>>,
    /// A duration: `1s`, `500ms`, `0.25s`.
    pub fill_interval: Option<Spanned<String>>,
}

/// Envoy's `LocalRateLimitDescriptor`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalDescriptorDto {
    pub entries: Option<Spanned<Vec<Spanned<EntryDto>>>>,
    pub token_bucket: Option<Spanned<TokenBucketDto>>,
    pub shadow_mode: Option<bool>,
}

/// One `{key, value}` of a local descriptor; an absent or empty value is a wildcard.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryDto {
    pub key: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
}

/// Envoy's `RateLimit`: actions that together make one request descriptor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitActionsDto {
    pub actions: Option<Spanned<Vec<Spanned<ActionDto>>>>,
    pub hits_addend: Option<Spanned<i64>>,
}

/// Envoy's `RateLimit.Action`: exactly one field set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionDto {
    pub request_headers: Option<Spanned<RequestHeadersDto>>,
    pub remote_address: Option<Spanned<RemoteAddressDto>>,
    pub generic_key: Option<Spanned<GenericKeyDto>>,
    pub header_value_match: Option<Spanned<HeaderValueMatchDto>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestHeadersDto {
    pub header_name: Option<Spanned<String>>,
    pub descriptor_key: Option<Spanned<String>>,
    pub skip_if_absent: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteAddressDto {
    pub xff_num_trusted_hops: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenericKeyDto {
    pub descriptor_value: Option<Spanned<String>>,
    pub descriptor_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderValueMatchDto {
    pub descriptor_value: Option<Spanned<String>>,
    pub descriptor_key: Option<Spanned<String>>,
    pub expect_match: Option<bool>,
    pub headers: Option<Spanned<Vec<Spanned<HeaderMatcherDto>>>>,
}

/// Envoy's `HeaderMatcher`, the string forms: one of exact, prefix, suffix, contains, present.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderMatcherDto {
    pub name: Option<Spanned<String>>,
    pub exact: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub suffix: Option<Spanned<String>>,
    pub contains: Option<Spanned<String>>,
    pub present: Option<Spanned<bool>>,
    pub invert_match: Option<bool>,
}

/// Parses every non-empty document of `text` within the bounds of `load`; `file` names it
/// in errors.
pub(crate) fn parse_documents(
    file: &str,
    text: &str,
    load: &LoadOptions,
) -> Result<Vec<Spanned<DomainFile>>, ConfigError> {
    // Snippets would copy source windows into the error; ours names file:line:column.
    let options = serde_saphyr::options! {
        with_snippet: false,
        budget: Some(crate::budget::yaml_budget(load)),
    };
    serde_saphyr::from_str_multiple_with_options(text, options)
        .map_err(|err| crate::yaml_error::convert(file, text, &err, load))
}

/// A serde-saphyr location as a [`Position`] in `file`.
pub(crate) fn position(file: &str, location: &serde_saphyr::Location) -> Position {
    Position {
        file: file.to_owned(),
        line: saturate(location.line()),
        column: saturate(location.column()),
    }
}

/// serde-saphyr keeps positions as `u32` and widens them; this narrows them back.
pub(crate) fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A string field that must be present and non-empty: `Missing` at the start of its map
/// (`map`), `Empty` at the value.
pub(crate) fn required_string(
    file: &str,
    path: &str,
    map: &serde_saphyr::Location,
    value: Option<Spanned<String>>,
) -> Result<String, ConfigError> {
    match value {
        None => Err(ConfigError::Missing {
            at: position(file, map),
            path: path.to_owned(),
        }),
        Some(v) if v.value.is_empty() => Err(ConfigError::Empty {
            at: position(file, &v.referenced),
            path: path.to_owned(),
        }),
        Some(v) => Ok(v.value),
    }
}
