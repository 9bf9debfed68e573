//! `resource`: a [`ResourceDto`] validated into a [`RateLimitResource`] — the document's
//! identity, hosts and stage here, each rule in `rule`. Errors name the resource's own key
//! paths (`spec.rules[1].quota`).

use std::collections::{BTreeMap, HashMap};

use serde_saphyr::{Location, Spanned};

use crate::error::{ConfigError, Position};
use crate::file;
use crate::resource::dto::{MetadataDto, ResourceDto, SpecDto};
use crate::resource::model::{API_VERSION, KIND, RateLimitResource};
use crate::resource::rule;

/// The highest stage Envoy's rate-limit filters accept.
const MAX_STAGE: u32 = 10;

/// A validated resource and where its parts are, for the quota document it serves as.
pub(crate) struct Validated {
    pub resource: RateLimitResource,
    /// `metadata.name`, where the domain is named.
    pub name_at: Location,
    /// Each rule, in order.
    pub rules_at: Vec<Location>,
    /// Each rule's key path and position, in order, for the faults found once every file
    /// is read.
    pub places: Vec<RulePlace>,
}

/// Where a rule is: its key path (`spec.rules[1]`, or `spec` for the inline rule), the
/// rule, and its `mode` when written.
#[derive(Clone, Debug)]
pub(crate) struct RulePlace {
    pub path: String,
    pub at: Position,
    pub mode_at: Option<Position>,
}

/// Validates one `kind: RateLimit` document of `file`.
pub(crate) fn resource(file: &str, doc: Spanned<ResourceDto>) -> Result<Validated, ConfigError> {
    let root = doc.referenced;
    let doc = doc.value;
    expect_value(file, "apiVersion", &root, doc.api_version, API_VERSION)?;
    expect_value(file, "kind", &root, doc.kind, KIND)?;
    let metadata = doc
        .metadata
        .ok_or_else(|| missing(file, &root, "metadata"))?;
    let name_at = metadata
        .value
        .name
        .as_ref()
        .map_or(metadata.referenced, |n| n.referenced);
    let (name, namespace) = metadata_names(file, metadata)?;
    let domain = match &namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.clone(),
    };
    let spec = doc.spec.ok_or_else(|| missing(file, &root, "spec"))?;
    let spec_at = spec.referenced;
    let mut spec = spec.value;
    let hosts = hosts(file, &spec_at, spec.hosts.take())?;
    let stage = match spec.stage.take() {
        None => 0,
        Some(s) if s.value <= MAX_STAGE => s.value,
        Some(s) => {
            return Err(ConfigError::OutOfRange {
                at: file::position(file, &s.referenced),
                path: "spec.stage".to_owned(),
                value: s.value.to_string(),
                expected: "an integer from 0 to 10",
            });
        }
    };
    let workload_selector = spec
        .workload_selector
        .take()
        .and_then(|s| s.value.labels)
        .unwrap_or_default();
    let (rules, rules_at, places) = rules(file, &spec_at, &domain, spec)?;
    let resource = RateLimitResource {
        name,
        namespace,
        domain,
        stage,
        hosts,
        workload_selector,
        rules,
        origin: file::position(file, &root).to_string(),
    };
    Ok(Validated {
        resource,
        name_at,
        rules_at,
        places,
    })
}

/// `apiVersion` or `kind`: required, and exactly `expected`.
fn expect_value(
    file: &str,
    field: &str,
    root: &Location,
    value: Option<Spanned<String>>,
    expected: &'static str,
) -> Result<(), ConfigError> {
    let value = value.ok_or_else(|| missing(file, root, field))?;
    if value.value == expected {
        return Ok(());
    }
    Err(ConfigError::UnknownValue {
        at: file::position(file, &value.referenced),
        path: field.to_owned(),
        value: value.value,
        expected,
    })
}

fn missing(file: &str, map: &Location, path: &str) -> ConfigError {
    ConfigError::Missing {
        at: file::position(file, map),
        path: path.to_owned(),
    }
}

/// `metadata.name` (a DNS subdomain, as Kubernetes requires) and `metadata.namespace` (a
/// DNS label).
fn metadata_names(
    file: &str,
    metadata: Spanned<MetadataDto>,
) -> Result<(String, Option<String>), ConfigError> {
    let at = metadata.referenced;
    let MetadataDto {
        name, namespace, ..
    } = metadata.value;
    let name_at = name.as_ref().map(|n| n.referenced);
    let name = file::required_string(file, "metadata.name", &at, name)?;
    check_name(
        file,
        "metadata.name",
        name_at.unwrap_or(at),
        &name,
        253,
        true,
    )?;
    let namespace = match namespace {
        None => None,
        Some(ns) => {
            let ns_at = ns.referenced;
            let ns = file::required_string(file, "metadata.namespace", &at, Some(ns))?;
            check_name(file, "metadata.namespace", ns_at, &ns, 63, false)?;
            Some(ns)
        }
    };
    Ok((name, namespace))
}

/// A Kubernetes name: at most `max` lowercase letters, digits and `-` (and `.` when
/// `dots`), starting and ending with a letter or digit. Names never hold `/`, so
/// `namespace/name/rule` is unambiguous.
pub(crate) fn check_name(
    file: &str,
    path: &str,
    at: Location,
    name: &str,
    max: usize,
    dots: bool,
) -> Result<(), ConfigError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    let ends = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let bytes = name.as_bytes();
    let valid = bytes.len() <= max
        && bytes.iter().all(|&b| allowed(b) || (dots && b == b'.'))
        && ends(bytes.first())
        && ends(bytes.last());
    if valid {
        return Ok(());
    }
    Err(ConfigError::InvalidValue {
        at: file::position(file, &at),
        path: path.to_owned(),
        value: name.to_owned(),
        reason: format!(
            "a name is at most {max} lowercase letters, digits{} and '-', starting and ending \
             with a letter or digit",
            if dots { ", '.'" } else { "" }
        ),
    })
}

/// `spec.hosts`: required, non-empty, each a valid virtual-host domain, none twice (in any
/// case).
fn hosts(
    file: &str,
    spec: &Location,
    hosts: Option<Spanned<Vec<Spanned<String>>>>,
) -> Result<Vec<String>, ConfigError> {
    let list = hosts.ok_or_else(|| missing(file, spec, "spec.hosts"))?;
    if list.value.is_empty() {
        return Err(ConfigError::Empty {
            at: file::position(file, &list.referenced),
            path: "spec.hosts".to_owned(),
        });
    }
    let mut seen: HashMap<String, Position> = HashMap::new();
    let mut hosts = Vec::with_capacity(list.value.len());
    for (i, host) in list.value.into_iter().enumerate() {
        let path = format!("spec.hosts[{i}]");
        let at = file::position(file, &host.referenced);
        let invalid = |reason: String| ConfigError::InvalidValue {
            at: at.clone(),
            path: path.clone(),
            value: host.value.clone(),
            reason,
        };
        if host.value.is_empty() {
            return Err(ConfigError::Empty { at, path });
        }
        if let Some(reason) = host_problem(&host.value) {
            return Err(invalid(reason.to_owned()));
        }
        // Envoy and the embedded limiter compare hosts without case.
        if let Some(first) = seen.insert(host.value.to_ascii_lowercase(), at.clone()) {
            return Err(invalid(format!("listed twice (first at {first})")));
        }
        hosts.push(host.value);
    }
    Ok(hosts)
}

/// Why `host` cannot be an Envoy virtual-host domain (`name`, `name:port`, `*.suffix`,
/// `prefix*` or `*`), if it cannot.
fn host_problem(host: &str) -> Option<&'static str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._:[]*".contains(c);
    if !host.chars().all(allowed) {
        return Some("a host is a DNS name or an address, with an optional :port");
    }
    let stars = host.matches('*').count();
    let at_an_end = host.starts_with('*') || host.ends_with('*');
    if stars > 1 || (stars == 1 && !at_an_end) {
        return Some("a `*` may only start or end a host, once");
    }
    None
}

/// The rules and where each is.
type Rules = (
    Vec<crate::resource::ResourceRule>,
    Vec<Location>,
    Vec<RulePlace>,
);

/// The rules: `spec.rules`, or the one rule written inline in `spec` (named `default`).
fn rules(
    file: &str,
    spec_at: &Location,
    domain: &str,
    mut spec: SpecDto,
) -> Result<Rules, ConfigError> {
    let inline = spec.take_inline_rule();
    let items = match (spec.rules, inline) {
        (Some(list), Some(inline)) => {
            let (field, at) = inline.first_field().unwrap_or(("rules", list.referenced));
            return Err(ConfigError::Conflict {
                at: file::position(file, &at),
                path: format!("spec.{field}"),
                other: "spec.rules (write every rule in the list)".to_owned(),
            });
        }
        (None, None) => return Err(missing(file, spec_at, "spec.rules")),
        (None, Some(inline)) => vec![("spec".to_owned(), *spec_at, Some("default"), inline)],
        (Some(list), None) if list.value.is_empty() => {
            return Err(ConfigError::Empty {
                at: file::position(file, &list.referenced),
                path: "spec.rules".to_owned(),
            });
        }
        (Some(list), None) => list
            .value
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                (
                    format!("spec.rules[{i}]"),
                    item.referenced,
                    None,
                    item.value,
                )
            })
            .collect(),
    };
    let mut rules = Vec::with_capacity(items.len());
    let mut locations = Vec::with_capacity(items.len());
    let mut places = Vec::with_capacity(items.len());
    let mut seen: BTreeMap<String, Position> = BTreeMap::new();
    for (i, (path, at, name, dto)) in items.into_iter().enumerate() {
        let default_name = name.map_or_else(|| format!("rule-{i}"), str::to_owned);
        let mode_at = dto
            .mode
            .as_ref()
            .map(|m| file::position(file, &m.referenced));
        let rule = rule::rule(file, &path, at, domain, default_name, dto)?;
        let descriptor = rule::describe(&rule.descriptor());
        let position = file::position(file, &at);
        if let Some(first) = seen.insert(descriptor.clone(), position.clone()) {
            return Err(ConfigError::DuplicateRuleDescriptor {
                at: position,
                path,
                descriptor,
                first,
            });
        }
        rules.push(rule);
        locations.push(at);
        places.push(RulePlace {
            path,
            at: position,
            mode_at,
        });
    }
    Ok((rules, locations, places))
}
