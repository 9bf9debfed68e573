//! [`LocalSection`]: a pod's own limits (the `local` section of a quota document), modelled on
//! Envoy's `LocalRateLimit`: a default [`TokenBucket`], [`LocalDescriptor`]s with their own
//! buckets, and the actions that turn a request into descriptors (`actions`).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::actions::{self, RateLimitActions};
use crate::bounds;
use crate::error::{ConfigError, Position};
use crate::file::{self, LocalDescriptorDto, LocalDto, TokenBucketDto};

/// The shortest `fill_interval` Envoy accepts, kept so a config means the same in both.
pub const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

/// Our default for `max_dynamic_descriptors` (Envoy's is 20, which a few dozen clients
/// already overflow, resetting their buckets on every eviction).
pub const DEFAULT_MAX_DYNAMIC_DESCRIPTORS: u32 = 10_000;

/// A pod's local limits: the `local` section of a quota document, validated.
///
/// Defaults that differ from Envoy's are marked; the reasons are in `docs/quota-files.md`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LocalSection {
    /// The default bucket, charged when no descriptor matched (or always, with
    /// `always_consume_default_token_bucket`). `None`: requests matching no descriptor pass.
    pub token_bucket: Option<TokenBucket>,
    /// Descriptors with their own buckets, in file order.
    pub descriptors: Vec<LocalDescriptor>,
    /// How a request becomes descriptors: each item makes at most one.
    pub rate_limits: Vec<RateLimitActions>,
    /// Charge the default bucket even when a descriptor matched. Default true (as Envoy).
    pub always_consume_default_token_bucket: bool,
    /// Per wildcard descriptor, how many distinct values keep a bucket; the least recently
    /// used beyond that are evicted. Default 10 000 (Envoy: 20).
    pub max_dynamic_descriptors: NonZeroU32,
    /// Share of requests that are checked at all. Default 100% (Envoy: 0%).
    pub filter_enabled: Percent,
    /// Share of over-limit requests that are refused. Default 100% (Envoy: 0%).
    pub filter_enforced: Percent,
    /// HTTP status of a refusal, 400 to 599. Default 429.
    pub status: u16,
    /// gRPC refusals carry `RESOURCE_EXHAUSTED` (true) or `UNAVAILABLE` (false). Default true
    /// (Envoy: false).
    pub rate_limited_as_resource_exhausted: bool,
    /// Send `x-ratelimit-limit`, `-remaining` and `-reset` (Envoy's `DRAFT_VERSION_03`).
    /// Default true (Envoy: `OFF`).
    pub enable_x_ratelimit_headers: bool,
    /// Where the section was defined: `file:line:column`.
    pub origin: String,
}

/// Envoy's `TokenBucket`: holds at most `max_tokens` (its initial fill too), refilled
/// continuously at `tokens_per_fill` per `fill_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenBucket {
    /// Capacity and initial fill; 0 refuses every request.
    pub max_tokens: u32,
    /// Tokens added per `fill_interval` (at least 1; Envoy's default 1).
    pub tokens_per_fill: NonZeroU32,
    /// At least [`MIN_FILL_INTERVAL`] unless `max_tokens` is 0.
    pub fill_interval: Duration,
}

impl TokenBucket {
    /// Whether `self` refills more slowly than `other` (tokens per second), compared exactly.
    pub fn is_slower_than(&self, other: &TokenBucket) -> bool {
        let mine = u128::from(self.tokens_per_fill.get()) * other.fill_interval.as_nanos();
        let theirs = u128::from(other.tokens_per_fill.get()) * self.fill_interval.as_nanos();
        mine < theirs
    }
}

/// Envoy's `LocalRateLimitDescriptor`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalDescriptor {
    /// Matched against a request descriptor: same keys in the same order, and each value
    /// equal unless the entry is a wildcard.
    pub entries: Vec<LocalEntry>,
    /// This descriptor's bucket; one per distinct value when an entry is a wildcard.
    pub token_bucket: TokenBucket,
    /// Charged and reported, but never refuses a request.
    pub shadow_mode: bool,
    /// Matched descriptors are charged group by group, lowest first, as if each group were
    /// a `local_ratelimit` filter of its own in a chain: 0 for a `local` section's; the
    /// index of the resource for the local rules of `kind: RateLimit` resources, which
    /// `rls render` gives one filter each, in load order.
    pub group: u32,
    /// Where the descriptor was defined: `file:line:column`.
    pub origin: String,
}

impl LocalDescriptor {
    /// Whether some entry is a wildcard (a bucket per distinct value).
    pub fn is_wildcard(&self) -> bool {
        self.entries.iter().any(|e| e.value.is_none())
    }
}

/// One entry of a [`LocalDescriptor`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocalEntry {
    /// The entry key.
    pub key: String,
    /// The value to match; `None` (written absent or empty) matches any value.
    pub value: Option<String>,
}

impl fmt::Display for LocalEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.key),
            None => write!(f, "{}=*", self.key),
        }
    }
}

/// A share of requests, kept in parts per million (written in percent, 0 to 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u32);

impl Percent {
    /// Every request.
    pub const ALL: Percent = Percent(1_000_000);
    /// No request.
    pub const NONE: Percent = Percent(0);

    /// From parts per million, at most 1 000 000.
    pub fn from_per_million(per_million: u32) -> Option<Percent> {
        (per_million <= 1_000_000).then_some(Percent(per_million))
    }

    /// Parts per million, 0 to 1 000 000.
    pub fn per_million(self) -> u32 {
        self.0
    }

    fn from_percent(percent: f64) -> Option<Percent> {
        // Rounded to whole parts per million; NaN and infinities fail the range check.
        (0.0..=100.0)
            .contains(&percent)
            .then(|| Percent((percent * 10_000.0).round() as u32))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", f64::from(self.0) / 10_000.0)
    }
}

/// Validates a `local` section found at `path` (always `local`) of `file`.
pub(crate) fn section(file: &str, dto: Spanned<LocalDto>) -> Result<LocalSection, ConfigError> {
    let at = file::position(file, &dto.referenced);
    let dto = dto.value;
    let token_bucket = dto
        .token_bucket
        .as_ref()
        .map(|tb| token_bucket(file, "local.token_bucket", tb))
        .transpose()?;
    let descriptors = descriptors(file, dto.descriptors.unwrap_or_default())?;
    if token_bucket.is_none() && descriptors.is_empty() {
        return Err(ConfigError::NothingToLimit {
            at,
            path: "local".to_owned(),
        });
    }
    let rate_limits = dto
        .rate_limits
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, item)| actions::rate_limit(file, &format!("local.rate_limits[{i}]"), item))
        .collect::<Result<_, _>>()?;
    let max_dynamic_descriptors = max_dynamic_descriptors(file, dto.max_dynamic_descriptors)?;
    let status = status(file, dto.status)?;
    let enable_x_ratelimit_headers = x_ratelimit_headers(file, dto.enable_x_ratelimit_headers)?;
    Ok(LocalSection {
        token_bucket,
        descriptors,
        rate_limits,
        always_consume_default_token_bucket: dto
            .always_consume_default_token_bucket
            .unwrap_or(true),
        max_dynamic_descriptors,
        filter_enabled: percent(file, "filter_enabled", dto.filter_enabled)?,
        filter_enforced: percent(file, "filter_enforced", dto.filter_enforced)?,
        status,
        rate_limited_as_resource_exhausted: dto.rate_limited_as_resource_exhausted.unwrap_or(true),
        enable_x_ratelimit_headers,
        origin: at.to_string(),
    })
}

/// `max_dynamic_descriptors`: at least 1, [`DEFAULT_MAX_DYNAMIC_DESCRIPTORS`] when absent.
fn max_dynamic_descriptors(
    file: &str,
    value: Option<Spanned<u32>>,
) -> Result<NonZeroU32, ConfigError> {
    match value {
        None => Ok(NonZeroU32::new(DEFAULT_MAX_DYNAMIC_DESCRIPTORS).unwrap_or(NonZeroU32::MIN)),
        Some(n) => NonZeroU32::new(n.value).ok_or_else(|| ConfigError::OutOfRange {
            at: file::position(file, &n.referenced),
            path: "local.max_dynamic_descriptors".to_owned(),
            value: "0".to_owned(),
            expected: "at least 1",
        }),
    }
}

/// A percent field of the section (`filter_enabled`, `filter_enforced`): 0 to 100, all
/// when absent.
fn percent(file: &str, field: &str, value: Option<Spanned<f64>>) -> Result<Percent, ConfigError> {
    match value {
        None => Ok(Percent::ALL),
        Some(p) => Percent::from_percent(p.value).ok_or_else(|| ConfigError::OutOfRange {
            at: file::position(file, &p.referenced),
            path: format!("local.{field}"),
            value: p.value.to_string(),
            expected: "a percent from 0 to 100",
        }),
    }
}

/// `status`: an HTTP error status, 429 when absent.
fn status(file: &str, value: Option<Spanned<u16>>) -> Result<u16, ConfigError> {
    match value {
        None => Ok(429),
        Some(s) if (400..=599).contains(&s.value) => Ok(s.value),
        Some(s) => Err(ConfigError::OutOfRange {
            at: file::position(file, &s.referenced),
            path: "local.status".to_owned(),
            value: s.value.to_string(),
            expected: "an HTTP error status from 400 to 599",
        }),
    }
}

/// `enable_x_ratelimit_headers`: `DRAFT_VERSION_03` (the default) or `OFF`, in any case.
fn x_ratelimit_headers(file: &str, value: Option<Spanned<String>>) -> Result<bool, ConfigError> {
    match value {
        None => Ok(true),
        Some(v) if v.value.eq_ignore_ascii_case("DRAFT_VERSION_03") => Ok(true),
        Some(v) if v.value.eq_ignore_ascii_case("OFF") => Ok(false),
        Some(v) => Err(ConfigError::UnknownValue {
            at: file::position(file, &v.referenced),
            path: "local.enable_x_ratelimit_headers".to_owned(),
            value: v.value,
            expected: "DRAFT_VERSION_03 or OFF",
        }),
    }
}

/// Validates the descriptors, refusing two with the same entries.
fn descriptors(
    file: &str,
    dtos: Vec<Spanned<LocalDescriptorDto>>,
) -> Result<Vec<LocalDescriptor>, ConfigError> {
    let mut seen: HashMap<Vec<LocalEntry>, Position> = HashMap::new();
    let mut descriptors = Vec::with_capacity(dtos.len());
    for (i, dto) in dtos.into_iter().enumerate() {
        let path = format!("local.descriptors[{i}]");
        let at = file::position(file, &dto.referenced);
        let descriptor = descriptor(file, &path, at.clone(), dto.value)?;
        if let Some(first) = seen.insert(descriptor.entries.clone(), at.clone()) {
            let entries: Vec<String> = descriptor.entries.iter().map(|e| e.to_string()).collect();
            return Err(ConfigError::DuplicateLocalDescriptor {
                at,
                path,
                entries: format!("[{}]", entries.join(", ")),
                first,
            });
        }
        descriptors.push(descriptor);
    }
    Ok(descriptors)
}

fn descriptor(
    file: &str,
    path: &str,
    at: Position,
    dto: LocalDescriptorDto,
) -> Result<LocalDescriptor, ConfigError> {
    let entries_path = format!("{path}.entries");
    let entries = match dto.entries {
        None => {
            return Err(ConfigError::Missing {
                at,
                path: entries_path,
            });
        }
        Some(list) if list.value.is_empty() => {
            return Err(ConfigError::Empty {
                at: file::position(file, &list.referenced),
                path: entries_path,
            });
        }
        Some(list) => list.value,
    };
    let entries = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let key = file::required_string(
                file,
                &format!("{entries_path}[{i}].key"),
                &entry.referenced,
                entry.value.key,
            )?;
            let value = entry.value.value.map(|v| v.value).filter(|v| !v.is_empty());
            Ok(LocalEntry { key, value })
        })
        .collect::<Result<_, ConfigError>>()?;
    let token_bucket = match &dto.token_bucket {
        None => {
            return Err(ConfigError::Missing {
                at,
                path: format!("{path}.token_bucket"),
            });
        }
        Some(tb) => token_bucket(file, &format!("{path}.token_bucket"), tb)?,
    };
    Ok(LocalDescriptor {
        entries,
        token_bucket,
        shadow_mode: dto.shadow_mode.unwrap_or(false),
        group: 0,
        origin: at.to_string(),
    })
}

/// Validates a `token_bucket` map at `path`.
fn token_bucket(
    file: &str,
    path: &str,
    dto: &Spanned<TokenBucketDto>,
) -> Result<TokenBucket, ConfigError> {
    let at = |location| file::position(file, location);
    let missing = |field: &str| ConfigError::Missing {
        at: at(&dto.referenced),
        path: format!("{path}.{field}"),
    };
    let max_tokens = dto
        .value
        .max_tokens
        .as_ref()
        .ok_or_else(|| missing("max_tokens"))?;
    let tokens_per_fill = match &dto.value.tokens_per_fill {
        None => NonZeroU32::MIN,
        Some(n) => NonZeroU32::new(n.value).ok_or_else(|| ConfigError::OutOfRange {
            at: at(&n.referenced),
            path: format!("{path}.tokens_per_fill"),
            value: "0".to_owned(),
            expected: "at least 1",
        })?,
    };
    let interval = dto
        .value
        .fill_interval
        .as_ref()
        .ok_or_else(|| missing("fill_interval"))?;
    let fill_interval =
        parse_duration(&interval.value).ok_or_else(|| ConfigError::BadDuration {
            at: at(&interval.referenced),
            path: format!("{path}.fill_interval"),
            value: interval.value.clone(),
        })?;
    // Envoy skips the minimum for a bucket that refuses everything anyway.
    if max_tokens.value > 0 && fill_interval < MIN_FILL_INTERVAL {
        return Err(ConfigError::FillIntervalTooShort {
            at: at(&interval.referenced),
            path: format!("{path}.fill_interval"),
            value: interval.value.clone(),
        });
    }
    let written = &interval.value;
    if let Some(excess) = bounds::local_excess(
        tokens_per_fill.get(),
        fill_interval,
        written,
        max_tokens.value,
    ) {
        return Err(
            excess.refusal(file, path, &dto.referenced, |field| match field {
                "tokens_per_fill" => dto.value.tokens_per_fill.as_ref().map(|v| &v.referenced),
                "max_tokens" => Some(&max_tokens.referenced),
                _ => Some(&interval.referenced),
            }),
        );
    }
    Ok(TokenBucket {
        max_tokens: max_tokens.value,
        tokens_per_fill,
        fill_interval,
    })
}

/// A duration as `humantime` writes it (`1s`, `500ms`, `1m 30s`) or as protobuf JSON does
/// (decimal seconds: `0.25s`, `1.5s`). Exact to the nanosecond; `None` for anything else.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(seconds) = text.strip_suffix('s')
        && let Some((whole, fraction)) = seconds.split_once('.')
    {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(fraction) || fraction.len() > 9 {
            return None;
        }
        let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
        return Some(Duration::new(whole.parse().ok()?, nanos));
    }
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_humantime_and_protobuf_forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1s"), Some(ms(1000)));
        assert_eq!(parse_duration("500ms"), Some(ms(500)));
        assert_eq!(parse_duration("1m 30s"), Some(ms(90_000)));
        assert_eq!(parse_duration("0.25s"), Some(ms(250)));
        assert_eq!(parse_duration("1.000000001s"), Some(Duration::new(1, 1)));
        for bad in ["", "1", "s", ".5s", "1.s", "1.0000000001s", "-1s", "fast"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn percents_round_to_parts_per_million() {
        assert_eq!(Percent::from_percent(100.0), Some(Percent::ALL));
        assert_eq!(
            Percent::from_percent(12.5).map(Percent::per_million),
            Some(125_000)
        );
        assert_eq!(
            Percent::from_percent(0.00001).map(Percent::per_million),
            Some(0)
        );
        assert_eq!(Percent::from_percent(100.1), None);
        assert_eq!(Percent::from_percent(f64::NAN), None);
        assert_eq!(Percent(125_000).to_string(), "12.5%");
    }

    #[test]
    fn slower_buckets_compare_by_tokens_per_second() {
        let bucket = |tokens_per_fill, ms| TokenBucket {
            max_tokens: 1,
            tokens_per_fill: NonZeroU32::new(tokens_per_fill).unwrap(),
            fill_interval: Duration::from_millis(ms),
        };
        assert!(bucket(1, 1000).is_slower_than(&bucket(3, 1000)));
        assert!(bucket(10, 60_000).is_slower_than(&bucket(1, 1000)));
        assert!(!bucket(2, 2000).is_slower_than(&bucket(1, 1000)));
    }
}
