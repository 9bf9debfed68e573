//! Loading: files, directories (as Kubernetes mounts them), documents, domain merging, and
//! files written for envoyproxy/ratelimit loading unchanged.

use std::fs;
use std::path::{Path, PathBuf};

use config::{Algorithm, LoadOptions, QuotaSet, Unit};

fn limit(yaml_domain: &str, key: &str) -> String {
    format!(
        "domain: {yaml_domain}\ndescriptors:\n  - key: {key}\n    rate_limit: {{unit: second, requests_per_unit: 1}}\n"
    )
}

fn names(set: &QuotaSet) -> Vec<&str> {
    set.domains().map(|d| d.name()).collect()
}

#[test]
fn a_directory_loads_its_yaml_files_in_name_order_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("b.yml"), limit("beta", "k")).unwrap();
    fs::write(root.join("a.yaml"), limit("alpha", "k")).unwrap();
    fs::write(root.join(".hidden.yaml"), "not: [valid").unwrap();
    fs::write(root.join("notes.txt"), "not: [valid").unwrap();
    fs::write(root.join("a.yaml.bak"), "not: [valid").unwrap();
    fs::create_dir(root.join("nested.yaml")).unwrap();
    fs::write(root.join("nested.yaml").join("c.yaml"), "not: [valid").unwrap();

    let set = QuotaSet::load(root, &LoadOptions::default()).unwrap();
    assert_eq!(names(&set), ["alpha", "beta"]);
    assert_eq!(set.files(), [root.join("a.yaml"), root.join("b.yml")]);
    assert_eq!(set.rule_count(), 2);
}

#[cfg(unix)]
#[test]
fn a_configmap_mount_loads_through_its_symlinks_and_skips_data_dirs() {
    // What the kubelet writes: ..2024_01_01/edge.yaml, ..data -> ..2024_01_01,
    // edge.yaml -> ..data/edge.yaml.
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let version = root.join("..2024_01_01_00_00_00.000000000");
    fs::create_dir(&version).unwrap();
    fs::write(version.join("edge.yaml"), limit("edge", "k")).unwrap();
    symlink(&version, root.join("..data")).unwrap();
    symlink(Path::new("..data/edge.yaml"), root.join("edge.yaml")).unwrap();

    let set = QuotaSet::load(root, &LoadOptions::default()).unwrap();
    assert_eq!(names(&set), ["edge"]);
    assert_eq!(set.files(), [root.join("edge.yaml")]);
}

#[test]
fn a_file_holds_several_documents_and_empty_ones_are_skipped() {
    let text = format!(
        "# leading comment only\n---\n{}---\n---\n# nothing here\n---\n{}...\n",
        limit("one", "k"),
        limit("two", "k")
    );
    let set =
        QuotaSet::from_sources([("multi.yaml", text.as_str())], &LoadOptions::default()).unwrap();
    assert_eq!(names(&set), ["one", "two"]);
}

#[test]
fn no_files_or_no_domains_is_an_empty_set() {
    let dir = tempfile::tempdir().unwrap();
    let set = QuotaSet::load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(set.rule_count(), 0);
    assert!(set.files().is_empty());

    let set = QuotaSet::from_sources(
        [("empty.yaml", ""), ("comments.yaml", "# none\n")],
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(set.domains().count(), 0);
    assert_eq!(set.files().len(), 2);
    assert_eq!(QuotaSet::default().rule_count(), 0);
}

#[test]
fn a_domain_without_descriptors_is_a_domain_without_rules() {
    let set =
        QuotaSet::from_sources([("d.yaml", "domain: quiet\n")], &LoadOptions::default()).unwrap();
    let domain = set.domain("quiet").unwrap();
    assert_eq!(domain.rules().count(), 0);
    assert!(domain.resolve(&[("k", "v")]).is_none());
}

#[test]
fn merging_domains_adds_later_documents_to_the_same_domain() {
    let options = LoadOptions {
        merge_domains: true,
        ..LoadOptions::default()
    };
    let set = QuotaSet::from_sources(
        [
            ("key1.yaml", limit("test-domain", "key1").as_str()),
            ("key2.yaml", limit("test-domain", "key2").as_str()),
        ],
        &options,
    )
    .unwrap();
    let domain = set.domain("test-domain").unwrap();
    assert!(domain.resolve(&[("key1", "x")]).is_some());
    assert!(domain.resolve(&[("key2", "x")]).is_some());
    let origins: Vec<&str> = domain.rules().map(|r| r.origin.as_str()).collect();
    assert_eq!(origins, ["key1.yaml:3:5", "key2.yaml:3:5"]);
}

#[test]
fn a_load_that_fails_anywhere_keeps_nothing() {
    let result = QuotaSet::from_sources(
        [
            ("good.yaml", limit("good", "k").as_str()),
            ("bad.yaml", "domain: \"\"\n"),
        ],
        &LoadOptions::default(),
    );
    assert_eq!(
        result.unwrap_err().to_string(),
        "bad.yaml:1:9: domain: must not be empty"
    );
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

#[test]
fn files_written_for_the_reference_load_unchanged() {
    let set = QuotaSet::load(&reference_dir(), &LoadOptions::default()).unwrap();
    assert_eq!(
        names(&set),
        [
            "detailed",
            "edge_proxy_per_ip",
            "internal",
            "messaging",
            "mongo_cps",
            "quota",
            "replacing",
            "rl",
            "soft_launch",
            "wildcards"
        ]
    );
    let rpu = |domain: &str, entries: &[(&str, &str)]| {
        set.domain(domain).unwrap().resolve(entries).map(|rule| {
            rule.limits
                .first()
                .map_or(u32::MAX, |l| l.requests_per_unit)
        })
    };
    // The answers the reference's README gives for its examples.
    assert_eq!(rpu("mongo_cps", &[("database", "users")]), Some(500));
    assert_eq!(rpu("mongo_cps", &[("database", "other")]), None);
    let marketing = [("message_type", "marketing"), ("to_number", "2061111111")];
    assert_eq!(rpu("messaging", &marketing), Some(5));
    assert_eq!(rpu("messaging", &[("to_number", "2061111111")]), Some(100));
    assert_eq!(
        rpu("edge_proxy_per_ip", &[("remote_address", "50.0.0.1")]),
        Some(10)
    );
    assert_eq!(
        rpu("edge_proxy_per_ip", &[("remote_address", "50.0.0.5")]),
        Some(0)
    );
    assert_eq!(rpu("internal", &[("ldap", "x")]), Some(u32::MAX));
    assert_eq!(rpu("internal", &[("azure", "x")]), Some(100));
    assert_eq!(rpu("wildcards", &[("key1", "value_2")]), Some(20));

    let shadow = set.domain("soft_launch").unwrap();
    let user_a = shadow
        .resolve(&[("service", "auth"), ("user", "user-a")])
        .unwrap();
    assert!(user_a.shadow_mode);
    assert!(
        shadow
            .resolve(&[("service", "auth"), ("user", "user-c")])
            .is_none()
    );

    let replacing = set.domain("replacing").unwrap();
    let named = replacing
        .resolve(&[("key_1", "value_1"), ("user", "bkthomps")])
        .unwrap();
    assert_eq!(named.limits[0].name.as_deref(), Some("specific_limit"));
    let replacer = replacing
        .resolve(&[("key_2", "value_2"), ("user", "bkthomps")])
        .unwrap();
    assert_eq!(replacer.limits[0].replaces, ["specific_limit"]);

    let rl = set.domain("rl").unwrap();
    assert_eq!(
        rl.resolve(&[("foo", "f"), ("bar", "banned")])
            .unwrap()
            .limits[0]
            .requests_per_unit,
        0
    );
    assert!(
        rl.resolve(&[("foo", "f"), ("baz", "shady")])
            .unwrap()
            .shadow_mode
    );
    assert!(rl.resolve(&[("qux", "q")]).unwrap().unlimited);

    let quota = set.domain("quota").unwrap();
    let service_2 = quota.resolve(&[("service", "service_2")]).unwrap();
    assert!(service_2.quota_mode);
    assert_eq!(service_2.limits[0].unit, Unit::Week);
    // Reference files never choose an algorithm: the server default applies.
    assert!(
        set.domains()
            .flat_map(|d| d.rules())
            .flat_map(|r| &r.limits)
            .all(|l| l.algorithm == Algorithm::TokenBucket && l.unit_multiplier.get() == 1)
    );
}

#[test]
fn the_shipped_examples_load_and_answer_as_their_comments_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let set = QuotaSet::load(&dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        names(&set),
        [
            "api",
            "api-batch",
            "edge",
            "shop/pod-limits",
            "shop/storefront",
            "sm-verify/verify-page"
        ]
    );

    let edge = set.domain("edge").unwrap();
    let per_ip = edge.resolve(&[("remote_address", "203.0.113.7")]).unwrap();
    assert_eq!(per_ip.limits[0].name.as_deref(), Some("per_ip"));
    let login = [("path", "/api/login"), ("remote_address", "203.0.113.7")];
    assert_eq!(edge.resolve(&login).unwrap().limits[0].unit, Unit::Minute);
    assert!(
        edge.resolve(&[("user_agent", "Googlebot/2.1")])
            .unwrap()
            .shadow_mode
    );
    let internal = edge.resolve(&[("source", "internal")]).unwrap();
    assert!(internal.unlimited);
    assert_eq!(internal.replaces(), ["per_ip"]);

    let api = set.domain("api").unwrap();
    let key = &api.resolve(&[("api_key", "k1")]).unwrap().limits[0];
    assert_eq!((key.requests_per_unit, key.burst), (10, 50));
    assert_eq!(api.resolve(&[("tenant", "acme")]).unwrap().limits.len(), 2);
    let writes = &api
        .resolve(&[("tenant", "acme"), ("method", "POST")])
        .unwrap()
        .limits[0];
    assert_eq!(writes.period_secs(), 300);
    let reports = &api
        .resolve(&[("path", "/v1/reports/monthly")])
        .unwrap()
        .limits[0];
    assert_eq!(reports.algorithm, Algorithm::FixedWindow);
    let search = api.resolve(&[("path", "/v1/search/books")]).unwrap();
    assert_eq!(search.shared_values, [Some("/v1/search/*".to_owned())]);
    assert_eq!(search.limits[0].period_secs(), 30);
}
