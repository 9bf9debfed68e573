//! [`DomainFile`]: the serde shape of one YAML document (the reference's keys plus ours),
//! keeping positions (`Spanned`) wherever a later check may point at a value. Only YAML
//! types are checked here; `tree` and `quota` validate it into domain types.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::{ConfigError, Position};

/// One `---` document: one domain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DomainFile {
    pub domain: Option<Spanned<String>>,
    pub descriptors: Option<Vec<Spanned<DescriptorDto>>>,
}

/// One entry of a `descriptors` list.
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitDto {
    pub unit: Option<Spanned<String>>,
    pub requests_per_unit: Option<u32>,
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

/// Parses every non-empty document of `text`; `file` names it in errors.
pub(crate) fn parse_documents(
    file: &str,
    text: &str,
) -> Result<Vec<Spanned<DomainFile>>, ConfigError> {
    // Snippets would copy source windows into the error; ours names file:line:column.
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_multiple_with_options(text, options)
        .map_err(|err| crate::yaml_error::convert(file, text, &err))
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
