//! `kind: RateLimit` resources: they load as written, beside reference-format documents,
//! and serve as a domain whose rules sit at exactly the descriptors their Envoy actions emit.

use std::path::Path;

use config::resource::{
    Cidr, DescriptorEntry, EntryAction, HeaderMatch, MatchType, Mode, Per, RateLimitResource,
    read_quota_file,
};
use config::{Algorithm, LoadOptions, QuotaSet, Unit};

fn example(name: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (path.display().to_string(), text)
}

fn resources(name: &str) -> Vec<RateLimitResource> {
    let (file, text) = example(name);
    read_quota_file(&file, &text, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .resources
}

/// The entries of a descriptor as `(key, value)` pairs, `*` for a value per request.
fn pairs(entries: &[DescriptorEntry]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| (e.key.clone(), e.value.clone().unwrap_or("*".to_owned())))
        .collect()
}

#[test]
fn the_resource_users_have_today_loads_as_written() {
    let resources = resources("ratelimit-verify-page.yaml");
    let [page] = resources.as_slice() else {
        panic!("one resource: {resources:?}")
    };
    assert_eq!(page.domain, "sm-verify/verify-page");
    assert_eq!(page.stage, 1);
    assert_eq!(
        page.hosts,
        ["sm-verify-page.sm-verify.svc.cluster.local:80"]
    );
    let [rule] = page.rules.as_slice() else {
        panic!("one rule")
    };
    assert_eq!((rule.name.as_str(), rule.mode), ("default", Mode::Global));
    assert_eq!(
        rule.headers,
        [HeaderMatch {
            name: ":path".to_owned(),
            match_type: MatchType::Exact("/Page.Show".to_owned()),
            invert: false,
        }]
    );
    assert_eq!(rule.limit.unit, Unit::Second);
    assert_eq!((rule.limit.requests_per_unit, rule.limit.burst), (800, 800));
    assert_eq!(
        rule.descriptor()[0].action,
        EntryAction::Rule {
            headers: rule.headers.clone()
        }
    );

    let (file, text) = example("ratelimit-verify-page.yaml");
    let set =
        QuotaSet::from_sources([(file.as_str(), text.as_str())], &LoadOptions::default()).unwrap();
    let domain = set.domain("sm-verify/verify-page").unwrap();
    let served = domain
        .resolve(&[("rule", "sm-verify/verify-page/default")])
        .unwrap();
    assert_eq!(served.limits, std::slice::from_ref(&rule.limit));
    assert!(!served.shadow_mode);
}

#[test]
fn each_global_rule_is_served_at_the_descriptor_its_actions_emit() {
    let (file, text) = example("ratelimit-storefront.yaml");
    let set =
        QuotaSet::from_sources([(file.as_str(), text.as_str())], &LoadOptions::default()).unwrap();
    let domain = set.domain("shop/storefront").unwrap();
    let [storefront] = resources("ratelimit-storefront.yaml").try_into().unwrap();
    assert_eq!(storefront.rules.len(), 5);
    for rule in &storefront.rules {
        // A value per request stands for any value.
        let request: Vec<(String, String)> = pairs(&rule.descriptor())
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if v == "*" {
                        "203.0.113.7".to_owned()
                    } else {
                        v
                    },
                )
            })
            .collect();
        let request: Vec<(&str, &str)> = request
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let served = domain
            .resolve(&request)
            .unwrap_or_else(|| panic!("{} is served at {request:?}", rule.name));
        assert_eq!(
            served.limits,
            std::slice::from_ref(&rule.limit),
            "{}",
            rule.name
        );
        assert_eq!(served.shadow_mode, rule.shadow, "{}", rule.name);
        // Only the whole descriptor matches: its first entry alone is no rule.
        if request.len() > 1 {
            assert!(domain.resolve(&request[..1]).is_none(), "{}", rule.name);
        }
    }
    assert_eq!(set.rule_count(), 5);
}

#[test]
fn match_per_cost_shadow_and_mode_map_to_entries_and_actions() {
    let [storefront] = resources("ratelimit-storefront.yaml").try_into().unwrap();
    let rule = |name: &str| {
        let rule = storefront.rules.iter().find(|r| r.name == name).unwrap();
        (rule.clone(), pairs(&rule.descriptor()))
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };

    let (login, entries) = rule("login");
    assert_eq!(
        entries,
        owned(&[("rule", "shop/storefront/login"), ("remote_address", "*")])
    );
    assert_eq!(login.per, Some(Per::ClientAddress));
    let names: Vec<&str> = login.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, [":path", ":method"]);

    let (search, entries) = rule("search");
    assert_eq!(
        entries,
        owned(&[("rule", "shop/storefront/search"), ("x-api-key", "*")])
    );
    assert_eq!(
        search.descriptor()[1].action,
        EntryAction::RequestHeader("x-api-key".to_owned())
    );
    assert_eq!(
        (search.limit.requests_per_unit, search.limit.burst),
        (100, 200)
    );

    let (export, _) = rule("export");
    assert_eq!(export.cost, 10);
    assert_eq!(
        export.headers[0].match_type,
        MatchType::Regex(config::Regex::new("csv|xlsx").unwrap())
    );

    let (anonymous, _) = rule("anonymous");
    assert!(anonymous.headers[0].invert);
    assert_eq!(anonymous.headers[0].match_type, MatchType::Present);
    assert_eq!(anonymous.limit.algorithm, Algorithm::FixedWindow);
    assert_eq!(anonymous.limit.period_secs(), 600);

    let (partners, entries) = rule("partners");
    assert!(partners.shadow);
    let cidr = Cidr {
        address: "192.0.2.0".parse().unwrap(),
        prefix_len: 24,
    };
    assert_eq!(partners.source_cidr, Some(cidr));
    assert_eq!(
        entries,
        owned(&[
            ("rule", "shop/storefront/partners"),
            ("masked_remote_address", "192.0.2.0/24"),
            ("remote_address", "*"),
        ])
    );
    assert_eq!(
        partners.descriptor()[1].action,
        EntryAction::MaskedRemoteAddress(cidr)
    );
}

#[test]
fn local_rules_are_loaded_but_not_served() {
    let [pods] = resources("ratelimit-pod-limits.yaml").try_into().unwrap();
    assert!(pods.rules.iter().all(|r| r.mode == Mode::Local));
    assert_eq!(pods.workload_selector["app"], "checkout");
    assert_eq!(pods.stage, 2);
    let (file, text) = example("ratelimit-pod-limits.yaml");
    let set =
        QuotaSet::from_sources([(file.as_str(), text.as_str())], &LoadOptions::default()).unwrap();
    assert_eq!(set.domain("shop/pod-limits").unwrap().rules().count(), 0);
}

#[test]
fn a_file_may_mix_reference_documents_and_resources() {
    let text = "\
# reference format first
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 5}
---
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: page}
spec:
  hosts: [page.example.com]
  quota: 3
  unit: minute
---
domain: api
descriptors: []
";
    let set = QuotaSet::from_sources([("mixed.yaml", text)], &LoadOptions::default()).unwrap();
    let names: Vec<&str> = set.domains().map(|d| d.name()).collect();
    assert_eq!(names, ["api", "edge", "page"]);
    let page = set.domain("page").unwrap();
    let rule = page.resolve(&[("rule", "page/default")]).unwrap();
    assert_eq!(rule.limits[0].requests_per_unit, 3);
    assert_eq!(rule.origin, "mixed.yaml:11:3");
    let contents = read_quota_file("mixed.yaml", text, &Default::default()).unwrap();
    assert_eq!(contents.quota_documents, 2);
    assert_eq!(contents.resources[0].origin, "mixed.yaml:7:1");
}

#[test]
fn errors_after_a_resource_name_their_line_in_the_whole_file() {
    let text = "\
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: page}
spec: {hosts: [a], quota: 3, unit: minute}
---
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: fortnight, requests_per_unit: 5}
";
    let err = QuotaSet::from_sources([("mixed.yaml", text)], &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "mixed.yaml:9:24: descriptors[0].rate_limit.unit: unknown unit \"fortnight\" (expected \
         second, minute, hour, day, week, month or year)"
    );
}
