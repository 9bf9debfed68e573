//! `local`: the `mode: local` rules of a load's resources as the [`LocalSection`] a service
//! embedding the `limiter` crate enforces — rule for rule what `rls render` gives Envoy's
//! `local_ratelimit` filter: the descriptor of [`ResourceRule::descriptor`], the actions
//! that write it, a token bucket of `burst` refilled by `quota` per period, the cost and
//! shadow mode. What Envoy decides by its virtual hosts, the section decides by a condition
//! on the request's `:authority` ([`MatchRule::VirtualHost`]).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::actions::{Action, HeaderMatcher, MatchRule, RateLimitActions};
use crate::error::{ConfigError, Position};
use crate::local::{
    DEFAULT_MAX_DYNAMIC_DESCRIPTORS, LocalDescriptor, LocalEntry, LocalSection, Percent,
    TokenBucket,
};
use crate::matchers::{VirtualHostMatch, VirtualHosts};
use crate::resource::descriptor::{DescriptorEntry, EntryAction};
use crate::resource::model::{HeaderMatch, MatchType, Mode, RateLimitResource, ResourceRule};
use crate::resource::rule::describe;
use crate::resource::validate::RulePlace;

/// The key of the entry that names a local rule's virtual host (last in its descriptor).
const VIRTUAL_HOST_KEY: &str = "virtual_host";

/// Every resource of a load, kept as it is read: the local rules are enforced by virtual
/// host, and every resource's hosts are virtual hosts of the proxy.
#[derive(Debug, Default)]
pub(crate) struct LocalRules {
    resources: Vec<(RateLimitResource, Vec<RulePlace>)>,
}

impl LocalRules {
    /// Adds a resource read from a file, with where its rules are.
    pub(crate) fn add(&mut self, resource: RateLimitResource, places: Vec<RulePlace>) {
        self.resources.push((resource, places));
    }

    /// The first local rule of the load: its `mode`'s key path and position.
    pub(crate) fn first(&self) -> Option<(String, Position)> {
        self.local_rules().next().map(|(_, _, place)| {
            let at = place.mode_at.clone().unwrap_or_else(|| place.at.clone());
            (format!("{}.mode", place.path), at)
        })
    }

    /// The section enforcing every local rule, or `None` when there is none. Two rules
    /// emitting the same descriptor (resources of one domain, with domains merged) are
    /// refused.
    pub(crate) fn section(&self) -> Result<Option<LocalSection>, ConfigError> {
        let mut hosts = VirtualHosts::default();
        let own: Vec<Vec<usize>> = (self.resources.iter())
            .map(|(resource, _)| resource.hosts.iter().map(|h| hosts.add(h)).collect())
            .collect();
        let hosts = Arc::new(hosts);
        let mut seen: HashMap<Vec<LocalEntry>, Position> = HashMap::new();
        let mut descriptors = Vec::new();
        let mut rate_limits = Vec::new();
        for (r, rule, place) in self.local_rules() {
            let group = u32::try_from(r).unwrap_or(u32::MAX);
            // Envoy keeps the buckets of a virtual host's configuration: a rule has its
            // own on each host of its resource.
            for &host in &own[r] {
                let host = VirtualHostMatch {
                    all: Arc::clone(&hosts),
                    own: vec![host],
                };
                let (descriptor, actions) = local_rule(rule, host, group, place);
                if let Some(first) = seen.insert(descriptor.entries.clone(), place.at.clone()) {
                    return Err(ConfigError::DuplicateRuleDescriptor {
                        at: place.at.clone(),
                        path: place.path.clone(),
                        descriptor: describe(&rule.descriptor()),
                        first,
                    });
                }
                descriptors.push(descriptor);
                rate_limits.push(actions);
            }
        }
        let Some(first) = descriptors.first() else {
            return Ok(None);
        };
        Ok(Some(LocalSection {
            token_bucket: None,
            origin: first.origin.clone(),
            descriptors,
            rate_limits,
            always_consume_default_token_bucket: false,
            max_dynamic_descriptors: NonZeroU32::new(DEFAULT_MAX_DYNAMIC_DESCRIPTORS)
                .unwrap_or(NonZeroU32::MIN),
            filter_enabled: Percent::ALL,
            filter_enforced: Percent::ALL,
            status: 429,
            rate_limited_as_resource_exhausted: true,
            enable_x_ratelimit_headers: false,
        }))
    }

    /// Each local rule, in load order, with the index of its resource and its place.
    fn local_rules(&self) -> impl Iterator<Item = (usize, &ResourceRule, &RulePlace)> {
        self.resources
            .iter()
            .enumerate()
            .flat_map(|(r, (resource, places))| {
                resource
                    .rules
                    .iter()
                    .zip(places)
                    .filter(|(rule, _)| rule.mode == Mode::Local)
                    .map(move |(rule, place)| (r, rule, place))
            })
    }
}

/// A local rule's descriptor on one virtual host of its resource (`host`), in `group` (its
/// resource's index), and the actions that write it: the rule's entries, the first only
/// on that host, then `(virtual_host, <host>)`, which gives each host its own bucket.
fn local_rule(
    rule: &ResourceRule,
    host: VirtualHostMatch,
    group: u32,
    place: &RulePlace,
) -> (LocalDescriptor, RateLimitActions) {
    let entries = rule.descriptor();
    let limit = &rule.limit;
    let host_name = host.all.name(host.own[0]).to_owned();
    let host = HeaderMatcher {
        name: ":authority".to_owned(),
        rule: MatchRule::VirtualHost(host),
        invert_match: false,
        treat_missing_as_empty: false,
    };
    let mut actions: Vec<Action> = entries.iter().map(|e| action(e, &host)).collect();
    actions.push(Action::GenericKey {
        descriptor_key: VIRTUAL_HOST_KEY.to_owned(),
        descriptor_value: host_name.clone(),
    });
    let descriptor = LocalDescriptor {
        entries: (entries.iter())
            .map(|e| LocalEntry {
                key: e.key.clone(),
                value: e.value.clone(),
            })
            .chain([LocalEntry {
                key: VIRTUAL_HOST_KEY.to_owned(),
                value: Some(host_name),
            }])
            .collect(),
        token_bucket: TokenBucket {
            max_tokens: limit.burst,
            // Validated: a quota is at least 1.
            tokens_per_fill: NonZeroU32::new(limit.requests_per_unit).unwrap_or(NonZeroU32::MIN),
            fill_interval: limit.period(),
        },
        shadow_mode: rule.shadow,
        group,
        origin: place.at.to_string(),
    };
    let actions = RateLimitActions {
        actions,
        hits_addend: i64::from(rule.cost),
    };
    (descriptor, actions)
}

/// The action writing `entry`, as `rls render` writes it for Envoy; the rule's own entry
/// also tests the virtual host, which Envoy has chosen before any action runs.
fn action(entry: &DescriptorEntry, host: &HeaderMatcher) -> Action {
    match &entry.action {
        EntryAction::Rule { headers } => Action::HeaderValueMatch {
            descriptor_key: entry.key.clone(),
            descriptor_value: entry.value.clone().unwrap_or_default(),
            expect_match: true,
            headers: std::iter::once(host.clone())
                .chain(headers.iter().map(matcher))
                .collect(),
        },
        EntryAction::MaskedRemoteAddress(cidr) => {
            let len = cidr.prefix_len;
            let (v4, v6) = if cidr.address.is_ipv4() {
                (len, 128)
            } else {
                (32, len)
            };
            Action::MaskedRemoteAddress {
                v4_prefix_mask_len: v4,
                v6_prefix_mask_len: v6,
            }
        }
        EntryAction::RequestHeader(name) => Action::RequestHeaders {
            header_name: name.clone(),
            descriptor_key: entry.key.clone(),
            skip_if_absent: false,
        },
        EntryAction::RemoteAddress => Action::RemoteAddress {
            xff_num_trusted_hops: 0,
        },
    }
}

/// The matcher of a condition, as `rls render` writes Envoy's: an inverted test but
/// `present` tests an absent header as empty.
fn matcher(condition: &HeaderMatch) -> HeaderMatcher {
    let rule = match &condition.match_type {
        MatchType::Exact(value) => MatchRule::Exact(value.clone()),
        MatchType::Prefix(value) => MatchRule::Prefix(value.clone()),
        MatchType::Regex(regex) => MatchRule::Regex(regex.clone()),
        MatchType::Present => MatchRule::Present(true),
    };
    HeaderMatcher {
        name: condition.name.clone(),
        rule,
        invert_match: condition.invert,
        treat_missing_as_empty: condition.invert && condition.match_type != MatchType::Present,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Action, LoadOptions, MatchRule, QuotaSet};

    const HEAD: &str = "apiVersion: quota.rls.dev/v1alpha1\nkind: RateLimit\n";

    fn load(sources: &[(&str, &str)]) -> Result<QuotaSet, crate::ConfigError> {
        let options = LoadOptions {
            merge_domains: true,
            ..LoadOptions::default()
        };
        QuotaSet::from_sources(sources.iter().copied(), &options)
    }

    fn hosts(list: &[&str]) -> crate::VirtualHosts {
        let mut hosts = crate::VirtualHosts::default();
        for host in list {
            hosts.add(host);
        }
        hosts
    }

    #[test]
    fn a_host_is_selected_as_envoy_selects_a_virtual_host() {
        let all = hosts(&[
            "*.example.com",
            "*-api.example.com",
            "shop.example.com",
            "api.*",
            "*",
        ]);
        let select = |authority: &str| all.select(authority);
        assert_eq!(select("shop.example.com"), Some(2));
        assert_eq!(select("SHOP.Example.com"), Some(2));
        // The longest suffix wildcard first, then prefixes, then `*`.
        assert_eq!(select("eu-api.example.com"), Some(1));
        assert_eq!(select("www.example.com"), Some(0));
        assert_eq!(select("api.example.org"), Some(3));
        assert_eq!(select("shop.example.com:80"), Some(4));
        // A `*` stands for at least one character.
        assert_eq!(select(".example.com"), Some(4));
        assert_eq!(hosts(&["*.example.com"]).select(".example.com"), None);
        assert_eq!(hosts(&["api.*"]).select("api."), None);
        assert_eq!(hosts(&["a.test"]).select("b.test"), None);
    }

    #[test]
    fn a_local_rule_becomes_a_descriptor_and_the_actions_rls_render_prints() {
        let yaml = format!(
            "{HEAD}metadata: {{name: page, namespace: web}}\nspec:\n  hosts: [page.test]\n  rules:\n\
             \x20   - name: api\n      mode: local\n      match:\n        path: {{matchType: prefix, value: /api}}\n\
             \x20       sourceCIDR: 10.0.0.0/8\n      per: {{header: x-user}}\n      quota: 10\n\
             \x20     unit: minute\n      burst: 20\n      cost: 2\n      shadow: true\n\
             \x20   - {{name: served, quota: 1, unit: second}}\n"
        );
        let set = load(&[("r.yaml", &yaml)]).unwrap();
        let local = set.local().expect("a local rule makes a section");
        assert_eq!(local.descriptors.len(), 1, "global rules are rls's");
        let descriptor = &local.descriptors[0];
        let entries: Vec<String> = descriptor.entries.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            entries,
            [
                "rule=web/page/api",
                "masked_remote_address=10.0.0.0/8",
                "x-user=*",
                "virtual_host=page.test"
            ]
        );
        assert_eq!(descriptor.token_bucket.max_tokens, 20);
        assert_eq!(descriptor.token_bucket.tokens_per_fill.get(), 10);
        assert_eq!(descriptor.token_bucket.fill_interval.as_secs(), 60);
        assert!(descriptor.shadow_mode);
        assert_eq!(descriptor.origin, "r.yaml:7:7");
        assert!(local.token_bucket.is_none());
        assert!(!local.enable_x_ratelimit_headers);

        let actions = &local.rate_limits[0];
        assert_eq!(actions.hits_addend, 2);
        let Action::HeaderValueMatch {
            headers,
            descriptor_value,
            ..
        } = &actions.actions[0]
        else {
            panic!("{:?}", actions.actions[0]);
        };
        assert_eq!(descriptor_value, "web/page/api");
        assert_eq!(headers[0].name, ":authority");
        assert!(matches!(&headers[0].rule, MatchRule::VirtualHost(h) if h.is_match("page.test")));
        assert_eq!(headers[1].rule, MatchRule::Prefix("/api".to_owned()));
        assert_eq!(
            actions.actions[1],
            Action::MaskedRemoteAddress {
                v4_prefix_mask_len: 8,
                v6_prefix_mask_len: 128
            }
        );
        assert!(
            matches!(&actions.actions[2], Action::RequestHeaders { header_name, .. } if header_name == "x-user")
        );
    }

    #[test]
    fn an_inverted_test_reads_an_absent_header_as_empty_but_present_does_not() {
        let yaml = format!(
            "{HEAD}metadata: {{name: p}}\nspec:\n  hosts: [p.test]\n  mode: local\n  quota: 1\n  unit: hour\n\
             \x20 match:\n    headers:\n      - {{key: x-a, value: a, invert: true}}\n\
             \x20     - {{key: x-b, matchType: present, invert: true}}\n      - {{key: x-c, matchType: regex, value: 'c+'}}\n"
        );
        let set = load(&[("r.yaml", &yaml)]).unwrap();
        let Action::HeaderValueMatch { headers, .. } =
            &set.local().unwrap().rate_limits[0].actions[0]
        else {
            panic!("a header_value_match");
        };
        let empty: Vec<bool> = headers.iter().map(|h| h.treat_missing_as_empty).collect();
        assert_eq!(empty, [false, true, false, false]);
        let MatchRule::Regex(regex) = &headers[3].rule else {
            panic!("{:?}", headers[3]);
        };
        assert!(regex.is_match("ccc") && !regex.is_match("ccd") && !regex.is_match("xc"));
    }

    #[test]
    fn a_local_section_and_local_rules_in_one_load_are_refused() {
        let resource = format!(
            "{HEAD}metadata: {{name: p}}\nspec:\n  hosts: [p.test]\n  rules:\n    - {{name: a, quota: 1, unit: hour}}\n\
             \x20   - {{name: b, mode: local, quota: 1, unit: hour}}\n"
        );
        let section = "local:\n  token_bucket: {max_tokens: 1, fill_interval: 1s}\n";
        let err = load(&[("a.yaml", &resource), ("b.yaml", section)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml:8:23: spec.rules[1].mode: cannot be set together with the local section at \
             b.yaml:2:3 (the embedded limiter enforces either a local section or the local rules \
             of RateLimit resources)"
        );
        // Global rules beside a local section are rls's alone: no conflict.
        let global = format!(
            "{HEAD}metadata: {{name: g}}\nspec: {{hosts: [g.test], quota: 1, unit: hour}}\n"
        );
        let set = load(&[("a.yaml", &global), ("b.yaml", section)]).unwrap();
        assert!(set.local().unwrap().token_bucket.is_some());
    }

    #[test]
    fn two_local_rules_of_one_merged_domain_are_refused() {
        let resource = format!(
            "{HEAD}metadata: {{name: p}}\nspec: {{hosts: [p.test], mode: local, quota: 1, unit: hour}}\n"
        );
        let err = load(&[("a.yaml", &resource), ("b.yaml", &resource)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.yaml:4:7: spec: emits the same descriptor [rule=p/default] as the rule at a.yaml:4:7"
        );
    }

    #[test]
    fn a_local_rule_is_held_to_the_bucket_bounds_with_its_own_field_names() {
        let resource = format!(
            "{HEAD}metadata: {{name: p}}\nspec:\n  hosts: [p.test]\n  mode: local\n  quota: 1\n  unit: year\n  unitMultiplier: 200\n"
        );
        let err = load(&[("a.yaml", &resource)]).unwrap_err().to_string();
        assert!(
            err.starts_with("a.yaml:9:19: spec.unitMultiplier: 200 is too large"),
            "{err}"
        );
    }
}
