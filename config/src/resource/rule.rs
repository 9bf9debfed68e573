//! `rule`: one [`RuleDto`] validated into a [`ResourceRule`]: its quota (as a [`Limit`]),
//! mode, cost, and the conditions and `per` that shape its descriptor.

use std::net::IpAddr;
use std::num::NonZeroU32;

use serde_saphyr::{Location, Spanned};

use crate::actions;
use crate::error::ConfigError;
use crate::file;
use crate::matchers::Regex;
use crate::quota::{Algorithm, Limit, Unit};
use crate::resource::descriptor::DescriptorEntry;
use crate::resource::dto::{HeaderMatchDto, MatchDto, PathMatchDto, PerDto, RuleDto};
use crate::resource::model::{Cidr, HeaderMatch, MatchType, Mode, Per, ResourceRule};
use crate::resource::validate::check_name;

/// The largest `hits_addend` Envoy accepts.
const MAX_COST: u32 = 1_000_000_000;

/// Validates the rule at `path` (`spec` for the inline rule), defined at `at`.
pub(crate) fn rule(
    file: &str,
    path: &str,
    at: Location,
    domain: &str,
    default_name: String,
    dto: RuleDto,
) -> Result<ResourceRule, ConfigError> {
    let pos = |location: &Location| file::position(file, location);
    let name = match dto.name.as_ref() {
        None => default_name,
        Some(name) => {
            check_name(
                file,
                &format!("{path}.name"),
                name.referenced,
                &name.value,
                63,
                false,
            )?;
            name.value.clone()
        }
    };
    let mode = match &dto.mode {
        None => Mode::Global,
        Some(m) => [Mode::Global, Mode::Local]
            .into_iter()
            .find(|mode| mode.as_str() == m.value)
            .ok_or_else(|| ConfigError::UnknownValue {
                at: pos(&m.referenced),
                path: format!("{path}.mode"),
                value: m.value.clone(),
                expected: "global or local",
            })?,
    };
    let id = format!("{domain}/{name}");
    let limit = limit(file, path, at, mode, Some(id.clone()), &dto)?;
    within_bounds(file, path, at, &limit, &dto)?;
    let cost = cost(file, path, &limit, dto.cost)?;
    let (headers, source_cidr) = match dto.match_ {
        None => (Vec::new(), None),
        Some(m) => conditions(file, &format!("{path}.match"), m.value)?,
    };
    let per = dto
        .per
        .map(|per| self::per(file, &format!("{path}.per"), per))
        .transpose()?;
    Ok(ResourceRule {
        name,
        id,
        mode,
        headers,
        source_cidr,
        per,
        limit,
        cost,
        shadow: dto.shadow.is_some_and(|s| s.value),
        origin: pos(&at).to_string(),
    })
}

/// `[key=value, key=*]`: a descriptor in errors.
pub(crate) fn describe(entries: &[DescriptorEntry]) -> String {
    let entries: Vec<String> = entries
        .iter()
        .map(|e| format!("{}={}", e.key, e.value.as_deref().unwrap_or("*")))
        .collect();
    format!("[{}]", entries.join(", "))
}

/// The quota fields as a [`Limit`]: `quota` at least 1, `unit` required, and a local rule
/// only a token bucket (Envoy's `local_ratelimit` has no other).
fn limit(
    file: &str,
    path: &str,
    at: Location,
    mode: Mode,
    name: Option<String>,
    dto: &RuleDto,
) -> Result<Limit, ConfigError> {
    let pos = |location: &Location| file::position(file, location);
    let field = |name: &str| format!("{path}.{name}");
    let quota = dto.quota.as_ref().ok_or_else(|| ConfigError::Missing {
        at: pos(&at),
        path: field("quota"),
    })?;
    at_least_one(file, &field("quota"), quota)?;
    let unit = dto.unit.as_ref().ok_or_else(|| ConfigError::Missing {
        at: pos(&at),
        path: field("unit"),
    })?;
    let unit_value = Unit::from_name(&unit.value).ok_or_else(|| ConfigError::UnknownUnit {
        at: pos(&unit.referenced),
        path: field("unit"),
        unit: unit.value.clone(),
    })?;
    let algorithm = match &dto.algorithm {
        None => Algorithm::TokenBucket,
        Some(a) => [Algorithm::TokenBucket, Algorithm::FixedWindow]
            .into_iter()
            .find(|algorithm| algorithm.as_str() == a.value)
            .ok_or_else(|| ConfigError::UnknownAlgorithm {
                at: pos(&a.referenced),
                path: field("algorithm"),
                algorithm: a.value.clone(),
            })?,
    };
    if let (Mode::Local, Algorithm::FixedWindow, Some(a)) = (mode, algorithm, &dto.algorithm) {
        return Err(ConfigError::Conflict {
            at: pos(&a.referenced),
            path: field("algorithm"),
            other: "mode: local (Envoy's local_ratelimit is a token bucket)".to_owned(),
        });
    }
    let burst = match (&dto.burst, algorithm) {
        (None, _) => quota.value,
        (Some(burst), Algorithm::TokenBucket) => at_least_one(file, &field("burst"), burst)?,
        (Some(burst), Algorithm::FixedWindow) => {
            return Err(ConfigError::BurstWithFixedWindow {
                at: pos(&burst.referenced),
                path: field("burst"),
            });
        }
    };
    let unit_multiplier = match &dto.unit_multiplier {
        None => NonZeroU32::MIN,
        Some(m) => NonZeroU32::new(m.value).ok_or_else(|| ConfigError::ZeroUnitMultiplier {
            at: pos(&m.referenced),
            path: field("unitMultiplier"),
        })?,
    };
    Ok(Limit {
        name,
        unit: unit_value,
        unit_multiplier,
        requests_per_unit: quota.value,
        burst,
        algorithm,
        replaces: Vec::new(),
    })
}

/// The limit's bucket maths stays exact (as a quota file's limits must): checked here for
/// every rule, with the resource's own field names, since local rules are never served.
fn within_bounds(
    file: &str,
    path: &str,
    at: Location,
    limit: &Limit,
    dto: &RuleDto,
) -> Result<(), ConfigError> {
    let Some(excess) = limit.excess() else {
        return Ok(());
    };
    let (field, written) = match excess.field {
        "requests_per_unit" => ("quota", dto.quota.as_ref()),
        "burst" => ("burst", dto.burst.as_ref().or(dto.quota.as_ref())),
        _ => ("unitMultiplier", dto.unit_multiplier.as_ref()),
    };
    Err(ConfigError::TooLarge {
        at: file::position(file, written.map_or(&at, |w| &w.referenced)),
        path: format!("{path}.{field}"),
        value: excess.value,
        largest: excess.largest,
        reason: excess.reason,
    })
}

fn at_least_one(file: &str, path: &str, value: &Spanned<u32>) -> Result<u32, ConfigError> {
    if value.value >= 1 {
        return Ok(value.value);
    }
    Err(ConfigError::OutOfRange {
        at: file::position(file, &value.referenced),
        path: path.to_owned(),
        value: value.value.to_string(),
        expected: "at least 1",
    })
}

/// `cost`: 1 unless given; more than the bucket holds could never pass.
fn cost(
    file: &str,
    path: &str,
    limit: &Limit,
    cost: Option<Spanned<u32>>,
) -> Result<u32, ConfigError> {
    let Some(cost) = cost else { return Ok(1) };
    let path = format!("{path}.cost");
    let cost_value = at_least_one(file, &path, &cost)?;
    if cost_value > limit.burst.min(MAX_COST) {
        let expected = if limit.burst < MAX_COST {
            "at most the burst, which is the quota unless burst is given: a request costing more could never pass"
        } else {
            "at most 1000000000, Envoy's largest hits_addend"
        };
        return Err(ConfigError::OutOfRange {
            at: file::position(file, &cost.referenced),
            path,
            value: cost_value.to_string(),
            expected,
        });
    }
    Ok(cost_value)
}

/// `match`: the header conditions (`headers`, then `path`, then `method`) and the address
/// range.
fn conditions(
    file: &str,
    path: &str,
    dto: MatchDto,
) -> Result<(Vec<HeaderMatch>, Option<Cidr>), ConfigError> {
    let mut headers = Vec::new();
    for (i, header) in dto.headers.into_iter().flatten().enumerate() {
        let at = header.referenced;
        let HeaderMatchDto {
            key,
            match_type,
            value,
            invert,
        } = header.value;
        let path = format!("{path}.headers[{i}]");
        let name = actions::header_name(file, &format!("{path}.key"), &at, key)?;
        let match_type = self::match_type(file, &path, at, match_type, value)?;
        headers.push(HeaderMatch {
            name,
            match_type,
            invert: invert.unwrap_or(false),
        });
    }
    if let Some(p) = dto.path {
        let PathMatchDto {
            match_type,
            value,
            invert,
        } = p.value;
        headers.push(HeaderMatch {
            name: ":path".to_owned(),
            match_type: self::match_type(
                file,
                &format!("{path}.path"),
                p.referenced,
                match_type,
                value,
            )?,
            invert: invert.unwrap_or(false),
        });
    }
    if let Some(method) = dto.method {
        let method_path = format!("{path}.method");
        let method_at = method.referenced;
        let method = file::required_string(file, &method_path, &method_at, Some(method))?;
        // Methods are case-sensitive: `get` would never match a GET.
        let token =
            |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
        if !method.bytes().all(token) {
            return Err(ConfigError::InvalidValue {
                at: file::position(file, &method_at),
                path: method_path,
                value: method,
                reason: "a method is case-sensitive and written in capitals (GET, POST)".to_owned(),
            });
        }
        headers.push(HeaderMatch {
            name: ":method".to_owned(),
            match_type: MatchType::Exact(method),
            invert: false,
        });
    }
    let cidr = dto
        .source_cidr
        .map(|c| cidr(file, &format!("{path}.sourceCIDR"), c))
        .transpose()?;
    Ok((headers, cidr))
}

/// `matchType` (default `exact`) and `value` (required but for `present`, which takes none).
fn match_type(
    file: &str,
    path: &str,
    at: Location,
    match_type: Option<Spanned<String>>,
    value: Option<Spanned<String>>,
) -> Result<MatchType, ConfigError> {
    let pos = |location: &Location| file::position(file, location);
    let kind = match_type.as_ref().map_or("exact", |m| m.value.as_str());
    if kind == "present" {
        return match value {
            None => Ok(MatchType::Present),
            Some(v) => Err(ConfigError::Conflict {
                at: pos(&v.referenced),
                path: format!("{path}.value"),
                other: "matchType: present".to_owned(),
            }),
        };
    }
    if !matches!(kind, "exact" | "prefix" | "regex") {
        let m = match_type.as_ref().map_or(at, |m| m.referenced);
        return Err(ConfigError::UnknownValue {
            at: pos(&m),
            path: format!("{path}.matchType"),
            value: kind.to_owned(),
            expected: MatchType::EXPECTED,
        });
    }
    let value_path = format!("{path}.value");
    let value_at = value.as_ref().map_or(at, |v| v.referenced);
    let value = file::required_string(file, &value_path, &at, value)?;
    match kind {
        "exact" => Ok(MatchType::Exact(value)),
        "prefix" => Ok(MatchType::Prefix(value)),
        _ => {
            // The pattern alone first: wrapped to match whole values, an unbalanced `)`
            // could pair with the wrapper.
            let compiled = regex_syntax::Parser::new()
                .parse(&value)
                .map_err(|err| first_line(&err.to_string()).to_owned())
                .and_then(|_| Regex::new(&value));
            compiled
                .map(MatchType::Regex)
                .map_err(|reason| ConfigError::InvalidValue {
                    at: pos(&value_at),
                    path: value_path,
                    value,
                    reason: format!("not a regular expression: {reason}"),
                })
        }
    }
}

/// regex-syntax's messages draw the pattern over several lines; the last says what is wrong.
fn first_line(message: &str) -> &str {
    message
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map_or(message, |l| l.trim_start_matches("error:").trim())
}

/// `address/prefix_len` with no host bits set.
fn cidr(file: &str, path: &str, value: Spanned<String>) -> Result<Cidr, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidValue {
        at: file::position(file, &value.referenced),
        path: path.to_owned(),
        value: value.value.clone(),
        reason,
    };
    let (address, len) = value
        .value
        .split_once('/')
        .ok_or_else(|| invalid("expected an address range such as 10.0.0.0/8".to_owned()))?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| invalid(format!("{address:?} is not an IP address")))?;
    let bits: u8 = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = len
        .parse::<u8>()
        .ok()
        .filter(|&l| l <= bits)
        .ok_or_else(|| invalid(format!("the prefix length must be from 0 to {bits}")))?;
    let cidr = Cidr {
        address,
        prefix_len,
    };
    let network = actions::mask(address, prefix_len);
    if network != address {
        return Err(invalid(format!(
            "bits are set past the prefix; the range is {network}/{prefix_len}"
        )));
    }
    Ok(cidr)
}

/// `per`: exactly one of `header` and `clientAddress: true`.
fn per(file: &str, path: &str, dto: Spanned<PerDto>) -> Result<Per, ConfigError> {
    let at = dto.referenced;
    match (dto.value.header, dto.value.client_address) {
        (Some(header), None) => {
            let name = actions::header_name(file, &format!("{path}.header"), &at, Some(header))?;
            Ok(Per::Header(name))
        }
        (None, Some(flag)) if flag.value => Ok(Per::ClientAddress),
        (None, Some(flag)) => Err(ConfigError::InvalidValue {
            at: file::position(file, &flag.referenced),
            path: format!("{path}.clientAddress"),
            value: "false".to_owned(),
            reason: "omit per for one bucket shared by every client".to_owned(),
        }),
        (Some(_), Some(flag)) => Err(ConfigError::Conflict {
            at: file::position(file, &flag.referenced),
            path: format!("{path}.clientAddress"),
            other: format!("{path}.header"),
        }),
        (None, None) => Err(ConfigError::InvalidValue {
            at: file::position(file, &at),
            path: path.to_owned(),
            value: "{}".to_owned(),
            reason: "set header, or clientAddress: true".to_owned(),
        }),
    }
}
