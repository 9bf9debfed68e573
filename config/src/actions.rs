//! [`RateLimitActions`]: how a request becomes one descriptor, after Envoy's `RateLimit`
//! and its [`Action`]s (`request_headers`, `remote_address`, `generic_key`,
//! `header_value_match`, and `masked_remote_address` for `kind: RateLimit` rules), and the
//! tests a [`HeaderMatcher`] makes of a value.

use std::net::IpAddr;

use serde_saphyr::Spanned;

use crate::error::ConfigError;
use crate::file::{
    self, ActionDto, HeaderMatcherDto, HeaderValueMatchDto, RateLimitActionsDto, RequestHeadersDto,
};
use crate::matchers::{Regex, VirtualHostMatch};

/// One item of `local.rate_limits`: its actions each add one entry to a request descriptor,
/// in order; if any action yields nothing, the request gets no descriptor from this item.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitActions {
    /// The actions, at least one.
    pub actions: Vec<Action>,
    /// Tokens the descriptor costs: 1 unless given; negative gives tokens back, 0 checks
    /// without taking any.
    pub hits_addend: i64,
}

/// One action of Envoy's `RateLimit.Action` that we support.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `(descriptor_key, the header's value)`. Pseudo-headers `:path` (with the query),
    /// `:method`, `:authority` and `:scheme` read the request line.
    RequestHeaders {
        /// Lowercase header name.
        header_name: String,
        /// The entry key.
        descriptor_key: String,
        /// When the header is absent: skip this action (true) or drop the descriptor (false).
        skip_if_absent: bool,
    },
    /// `("remote_address", client IP)`: the peer's address, or with `xff_num_trusted_hops`
    /// = N > 0 the N-th address from the right of `x-forwarded-for`.
    RemoteAddress {
        /// How many proxies in front of the service append to `x-forwarded-for` and are
        /// trusted; 0 uses the connection's peer.
        xff_num_trusted_hops: u32,
    },
    /// `(descriptor_key, descriptor_value)`, constant.
    GenericKey {
        /// Default `generic_key`.
        descriptor_key: String,
        /// The value.
        descriptor_value: String,
    },
    /// `("masked_remote_address", "<address>/<len>")`: the client address (the connection's
    /// peer) masked to the prefix length of its family, as Envoy's `masked_remote_address`
    /// writes it. Made from a `kind: RateLimit` rule's `match.sourceCIDR`.
    MaskedRemoteAddress {
        /// Leading bits kept of an IPv4 address, at most 32.
        v4_prefix_mask_len: u8,
        /// Leading bits kept of an IPv6 address, at most 128.
        v6_prefix_mask_len: u8,
    },
    /// `(descriptor_key, descriptor_value)` when the headers match (or, with `expect_match`
    /// false, when they do not); otherwise the descriptor is dropped.
    HeaderValueMatch {
        /// Default `header_match`.
        descriptor_key: String,
        /// The value.
        descriptor_value: String,
        /// Default true.
        expect_match: bool,
        /// All must match.
        headers: Vec<HeaderMatcher>,
    },
}

/// Envoy's `HeaderMatcher`, string forms only.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderMatcher {
    /// Lowercase header name (pseudo-headers as in [`Action::RequestHeaders`]).
    pub name: String,
    /// How the value must look.
    pub rule: MatchRule,
    /// Negate the result.
    pub invert_match: bool,
    /// Test an absent header as an empty value (Envoy's `treat_missing_header_as_empty`)
    /// rather than failing every test but `present`. Set by `kind: RateLimit` rules for an
    /// inverted test, never by a `local` section.
    pub treat_missing_as_empty: bool,
}

/// How a [`HeaderMatcher`] tests a header value (case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchRule {
    /// The whole value.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The value ends with this.
    Suffix(String),
    /// The value contains this.
    Contains(String),
    /// The header is present (true) or absent (false).
    Present(bool),
    /// The whole value matches this regular expression (a `kind: RateLimit` rule's
    /// `matchType: regex`).
    Regex(Regex),
    /// The value, a request's `:authority`, selects one of these virtual hosts (a `kind:
    /// RateLimit` resource's `hosts`).
    VirtualHost(VirtualHostMatch),
}

impl Action {
    /// The value Envoy's `masked_remote_address` writes for a client at `address`: the
    /// address masked to its family's length, then `/` and the length (`192.0.2.0/24`).
    pub fn masked_remote_address(
        address: IpAddr,
        v4_prefix_mask_len: u8,
        v6_prefix_mask_len: u8,
    ) -> String {
        let len = if address.is_ipv4() {
            v4_prefix_mask_len
        } else {
            v6_prefix_mask_len
        };
        format!("{}/{len}", mask(address, len))
    }
}

/// `address` with every bit past the first `len` cleared.
pub(crate) fn mask(address: IpAddr, len: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// Validates one `rate_limits` item at `path`.
pub(crate) fn rate_limit(
    file: &str,
    path: &str,
    item: Spanned<RateLimitActionsDto>,
) -> Result<RateLimitActions, ConfigError> {
    let actions_path = format!("{path}.actions");
    let actions = match item.value.actions {
        None => {
            return Err(ConfigError::Missing {
                at: file::position(file, &item.referenced),
                path: actions_path,
            });
        }
        Some(list) if list.value.is_empty() => {
            return Err(ConfigError::Empty {
                at: file::position(file, &list.referenced),
                path: actions_path,
            });
        }
        Some(list) => list.value,
    };
    let actions = actions
        .into_iter()
        .enumerate()
        .map(|(i, a)| action(file, &format!("{actions_path}[{i}]"), a))
        .collect::<Result<_, _>>()?;
    let hits_addend = match item.value.hits_addend {
        None => 1,
        Some(h) if h.value.unsigned_abs() <= u64::from(u32::MAX) => h.value,
        Some(h) => {
            return Err(ConfigError::OutOfRange {
                at: file::position(file, &h.referenced),
                path: format!("{path}.hits_addend"),
                value: h.value.to_string(),
                expected: "an integer from -4294967295 to 4294967295",
            });
        }
    };
    Ok(RateLimitActions {
        actions,
        hits_addend,
    })
}

/// Validates one action: exactly one kind set, then that kind's fields.
fn action(file: &str, path: &str, dto: Spanned<ActionDto>) -> Result<Action, ConfigError> {
    let ActionDto {
        request_headers,
        remote_address,
        generic_key,
        header_value_match,
    } = dto.value;
    let set = [
        ("request_headers", request_headers.is_some()),
        ("remote_address", remote_address.is_some()),
        ("generic_key", generic_key.is_some()),
        ("header_value_match", header_value_match.is_some()),
    ];
    let found: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    if found.len() != 1 {
        return Err(ConfigError::ActionKinds {
            at: file::position(file, &dto.referenced),
            path: path.to_owned(),
            found: if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            },
        });
    }
    if let Some(a) = request_headers {
        return request_headers_action(file, &format!("{path}.request_headers"), a);
    }
    if let Some(a) = remote_address {
        return Ok(Action::RemoteAddress {
            xff_num_trusted_hops: a.value.xff_num_trusted_hops.unwrap_or(0),
        });
    }
    if let Some(a) = generic_key {
        let at = &a.referenced;
        let a = a.value;
        return Ok(Action::GenericKey {
            descriptor_key: optional_key(a.descriptor_key, "generic_key"),
            descriptor_value: file::required_string(
                file,
                &format!("{path}.generic_key.descriptor_value"),
                at,
                a.descriptor_value,
            )?,
        });
    }
    let Some(a) = header_value_match else {
        unreachable!("exactly one action kind is set");
    };
    header_value_match_action(file, &format!("{path}.header_value_match"), a)
}

/// A `request_headers` action at `path`.
fn request_headers_action(
    file: &str,
    path: &str,
    dto: Spanned<RequestHeadersDto>,
) -> Result<Action, ConfigError> {
    let at = &dto.referenced;
    let a = dto.value;
    Ok(Action::RequestHeaders {
        header_name: header_name(file, &format!("{path}.header_name"), at, a.header_name)?,
        descriptor_key: file::required_string(
            file,
            &format!("{path}.descriptor_key"),
            at,
            a.descriptor_key,
        )?,
        skip_if_absent: a.skip_if_absent.unwrap_or(false),
    })
}

/// A `header_value_match` action at `path`: its matchers are required and non-empty.
fn header_value_match_action(
    file: &str,
    path: &str,
    dto: Spanned<HeaderValueMatchDto>,
) -> Result<Action, ConfigError> {
    let at = &dto.referenced;
    let a = dto.value;
    let headers_path = format!("{path}.headers");
    let headers = match a.headers {
        None => {
            return Err(ConfigError::Missing {
                at: file::position(file, at),
                path: headers_path,
            });
        }
        Some(list) if list.value.is_empty() => {
            return Err(ConfigError::Empty {
                at: file::position(file, &list.referenced),
                path: headers_path,
            });
        }
        Some(list) => list.value,
    };
    Ok(Action::HeaderValueMatch {
        descriptor_key: optional_key(a.descriptor_key, "header_match"),
        descriptor_value: file::required_string(
            file,
            &format!("{path}.descriptor_value"),
            at,
            a.descriptor_value,
        )?,
        expect_match: a.expect_match.unwrap_or(true),
        headers: headers
            .into_iter()
            .enumerate()
            .map(|(i, m)| matcher(file, &format!("{headers_path}[{i}]"), m))
            .collect::<Result<_, _>>()?,
    })
}

fn matcher(
    file: &str,
    path: &str,
    dto: Spanned<HeaderMatcherDto>,
) -> Result<HeaderMatcher, ConfigError> {
    let at = dto.referenced;
    let HeaderMatcherDto {
        name,
        exact,
        prefix,
        suffix,
        contains,
        present,
        invert_match,
    } = dto.value;
    let strings = [
        ("exact", exact.map(|s| MatchRule::Exact(s.value))),
        ("prefix", prefix.map(|s| MatchRule::Prefix(s.value))),
        ("suffix", suffix.map(|s| MatchRule::Suffix(s.value))),
        ("contains", contains.map(|s| MatchRule::Contains(s.value))),
        ("present", present.map(|p| MatchRule::Present(p.value))),
    ];
    let mut rules: Vec<(&str, MatchRule)> = strings
        .into_iter()
        .filter_map(|(n, r)| r.map(|r| (n, r)))
        .collect();
    if rules.len() != 1 {
        let found: Vec<&str> = rules.iter().map(|(n, _)| *n).collect();
        return Err(ConfigError::MatcherKinds {
            at: file::position(file, &at),
            path: path.to_owned(),
            found: if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            },
        });
    }
    Ok(HeaderMatcher {
        name: header_name(file, &format!("{path}.name"), &at, name)?,
        rule: rules.remove(0).1,
        invert_match: invert_match.unwrap_or(false),
        treat_missing_as_empty: false,
    })
}

/// A descriptor key that defaults when absent or empty.
fn optional_key(key: Option<Spanned<String>>, default: &str) -> String {
    key.map(|k| k.value)
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A required header name, lowercased: an HTTP token, or one of the pseudo-headers that a
/// request line carries.
pub(crate) fn header_name(
    file: &str,
    path: &str,
    map: &serde_saphyr::Location,
    name: Option<Spanned<String>>,
) -> Result<String, ConfigError> {
    let at = name.as_ref().map(|n| n.referenced);
    let name = file::required_string(file, path, map, name)?;
    let lower = name.to_ascii_lowercase();
    let valid = match lower.strip_prefix(':') {
        Some(pseudo) => matches!(pseudo, "path" | "method" | "authority" | "scheme"),
        // RFC 9110 token characters.
        None => lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
    };
    if !valid {
        return Err(ConfigError::BadHeaderName {
            at: file::position(file, at.as_ref().unwrap_or(map)),
            path: path.to_owned(),
            name,
        });
    }
    Ok(lower)
}
