//! The checks that turn a descriptor's `rate_limit` or `rate_limits` into [`Limit`]s
//! ([`rule_limits`]), so that an invalid limit cannot exist.

use std::collections::HashMap;
use std::num::NonZeroU32;

use serde_saphyr::Spanned;

use crate::error::{ConfigError, Position};
use crate::file::{self, DescriptorDto, RateLimitDto};
use crate::quota::{Algorithm, Limit, Unit};

/// What the limits of one descriptor validate to.
pub(crate) struct RuleLimits {
    pub limits: Vec<Limit>,
    pub unlimited: bool,
    pub replaces: Vec<String>,
}

/// One limit map of a descriptor and its key path.
type Spec<'d> = (&'d Spanned<RateLimitDto>, String);

/// Validates a descriptor's `rate_limit` / `rate_limits` (`None` when it has neither).
/// `path` is the descriptor's key path.
pub(crate) fn rule_limits(
    file: &str,
    path: &str,
    dto: &DescriptorDto,
    default_algorithm: Algorithm,
) -> Result<Option<RuleLimits>, ConfigError> {
    let Some(specs) = specs(file, path, dto)? else {
        return Ok(None);
    };
    let mut limits = Vec::with_capacity(specs.len());
    let mut unlimited = false;
    let mut replaces = Vec::new();
    let mut names: HashMap<&str, Position> = HashMap::new();
    for (spec, spec_path) in &specs {
        let dto = &spec.value;
        if let Some(name) = dto.name.as_ref().filter(|n| !n.value.is_empty()) {
            let at = file::position(file, &name.referenced);
            if let Some(first) = names.insert(&name.value, at.clone()) {
                return Err(ConfigError::DuplicateLimitName {
                    at,
                    path: format!("{spec_path}.name"),
                    name: name.value.clone(),
                    first,
                });
            }
        }
        match limit(file, spec_path, spec, default_algorithm)? {
            Some(limit) => {
                replaces.extend(limit.replaces.iter().cloned());
                limits.push(limit);
            }
            None if specs.len() > 1 => {
                let flag = dto
                    .unlimited
                    .as_ref()
                    .map_or(&spec.referenced, |u| &u.referenced);
                return Err(ConfigError::UnlimitedNotAlone {
                    at: file::position(file, flag),
                    path: format!("{spec_path}.unlimited"),
                });
            }
            None => {
                unlimited = true;
                replaces.extend(replaces_names(file, spec_path, dto)?);
            }
        }
    }
    replaces_not_own(file, &specs, &names)?;
    Ok(Some(RuleLimits {
        limits,
        unlimited,
        replaces,
    }))
}

/// The limit maps of a descriptor with their key paths: its `rate_limit`, or each of its
/// `rate_limits` (not both, and not an empty list); `None` when it has neither.
fn specs<'d>(
    file: &str,
    path: &str,
    dto: &'d DescriptorDto,
) -> Result<Option<Vec<Spec<'d>>>, ConfigError> {
    Ok(Some(match (&dto.rate_limit, &dto.rate_limits) {
        (None, None) => return Ok(None),
        (Some(_), Some(list)) => {
            return Err(ConfigError::RateLimitAndRateLimits {
                at: file::position(file, &list.referenced),
                path: format!("{path}.rate_limits"),
            });
        }
        (Some(one), None) => vec![(one, format!("{path}.rate_limit"))],
        (None, Some(list)) if list.value.is_empty() => {
            return Err(ConfigError::Empty {
                at: file::position(file, &list.referenced),
                path: format!("{path}.rate_limits"),
            });
        }
        (None, Some(list)) => list
            .value
            .iter()
            .enumerate()
            .map(|(i, spec)| (spec, format!("{path}.rate_limits[{i}]")))
            .collect(),
    }))
}

/// `replaces` may not name a limit of its own descriptor (the reference: "replaces should
/// not contain name of same descriptor").
fn replaces_not_own(
    file: &str,
    specs: &[Spec<'_>],
    names: &HashMap<&str, Position>,
) -> Result<(), ConfigError> {
    for (spec, spec_path) in specs {
        for (i, entry) in spec.value.replaces.iter().flatten().enumerate() {
            if let Some(name) = &entry.value.name
                && names.contains_key(name.value.as_str())
            {
                return Err(ConfigError::ReplacesOwnRule {
                    at: file::position(file, &name.referenced),
                    path: format!("{spec_path}.replaces[{i}].name"),
                    name: name.value.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Validates one limit map; `None` for `unlimited: true`.
fn limit(
    file: &str,
    path: &str,
    spec: &Spanned<RateLimitDto>,
    default_algorithm: Algorithm,
) -> Result<Option<Limit>, ConfigError> {
    let dto = &spec.value;
    if dto.unlimited.as_ref().is_some_and(|u| u.value) {
        return unlimited(file, path, dto).map(|()| None);
    }
    let unit = unit(file, path, spec)?;
    let algorithm = match &dto.algorithm {
        None => default_algorithm,
        Some(name) => {
            Algorithm::from_name(&name.value).ok_or_else(|| ConfigError::UnknownAlgorithm {
                at: file::position(file, &name.referenced),
                path: format!("{path}.algorithm"),
                algorithm: name.value.clone(),
            })?
        }
    };
    let requests_per_unit = dto.requests_per_unit.as_ref().map_or(0, |r| r.value);
    let burst = burst(file, path, dto, algorithm)?.unwrap_or(requests_per_unit);
    let unit_multiplier = unit_multiplier(file, path, dto)?;
    let limit = Limit {
        name: dto
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .filter(|n| !n.is_empty()),
        unit,
        unit_multiplier,
        requests_per_unit,
        burst,
        algorithm,
        replaces: replaces_names(file, path, dto)?,
    };
    if let Some(excess) = limit.excess() {
        return Err(
            excess.refusal(file, path, &spec.referenced, |field| match field {
                "requests_per_unit" => dto.requests_per_unit.as_ref().map(|v| &v.referenced),
                "burst" => dto.burst.as_ref().map(|v| &v.referenced),
                _ => dto.unit_multiplier.as_ref().map(|v| &v.referenced),
            }),
        );
    }
    Ok(Some(limit))
}

/// An `unlimited: true` limit may not also say how to count.
fn unlimited(file: &str, path: &str, dto: &RateLimitDto) -> Result<(), ConfigError> {
    let conflicts = [
        ("unit", dto.unit.as_ref().map(|s| &s.referenced)),
        ("algorithm", dto.algorithm.as_ref().map(|s| &s.referenced)),
        ("burst", dto.burst.as_ref().map(|s| &s.referenced)),
        (
            "unit_multiplier",
            dto.unit_multiplier.as_ref().map(|s| &s.referenced),
        ),
    ];
    match conflicts.into_iter().find(|(_, l)| l.is_some()) {
        Some((field, Some(location))) => Err(ConfigError::ConflictsWithUnlimited {
            at: file::position(file, location),
            path: format!("{path}.{field}"),
        }),
        _ => Ok(()),
    }
}

/// The required `unit` of a limit that is not unlimited.
fn unit(file: &str, path: &str, spec: &Spanned<RateLimitDto>) -> Result<Unit, ConfigError> {
    match &spec.value.unit {
        None => Err(ConfigError::MissingUnit {
            at: file::position(file, &spec.referenced),
            path: path.to_owned(),
        }),
        Some(unit) => Unit::from_name(&unit.value).ok_or_else(|| ConfigError::UnknownUnit {
            at: file::position(file, &unit.referenced),
            path: format!("{path}.unit"),
            unit: unit.value.clone(),
        }),
    }
}

/// The `burst` written, if any: at least 1, and for token buckets only.
fn burst(
    file: &str,
    path: &str,
    dto: &RateLimitDto,
    algorithm: Algorithm,
) -> Result<Option<u32>, ConfigError> {
    let Some(burst) = &dto.burst else {
        return Ok(None);
    };
    let at = file::position(file, &burst.referenced);
    let path = format!("{path}.burst");
    match algorithm {
        Algorithm::FixedWindow => Err(ConfigError::BurstWithFixedWindow { at, path }),
        Algorithm::TokenBucket if burst.value == 0 => Err(ConfigError::ZeroBurst { at, path }),
        Algorithm::TokenBucket => Ok(Some(burst.value)),
    }
}

/// The `unit_multiplier`, 1 when absent, refused when 0.
fn unit_multiplier(file: &str, path: &str, dto: &RateLimitDto) -> Result<NonZeroU32, ConfigError> {
    match &dto.unit_multiplier {
        None => Ok(NonZeroU32::MIN),
        Some(m) => NonZeroU32::new(m.value).ok_or_else(|| ConfigError::ZeroUnitMultiplier {
            at: file::position(file, &m.referenced),
            path: format!("{path}.unit_multiplier"),
        }),
    }
}
/// The names of a limit's `replaces` entries, each required and non-empty.
fn replaces_names(file: &str, path: &str, dto: &RateLimitDto) -> Result<Vec<String>, ConfigError> {
    let entries = dto.replaces.iter().flatten().enumerate();
    entries
        .map(|(i, entry)| match &entry.value.name {
            None => Err(ConfigError::Missing {
                at: file::position(file, &entry.referenced),
                path: format!("{path}.replaces[{i}].name"),
            }),
            Some(name) if name.value.is_empty() => Err(ConfigError::Empty {
                at: file::position(file, &name.referenced),
                path: format!("{path}.replaces[{i}].name"),
            }),
            Some(name) => Ok(name.value.clone()),
        })
        .collect()
}
