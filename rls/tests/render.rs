//! `rls render` against a real Envoy: every example renders to a bootstrap Envoy accepts,
//! and a rendered bootstrap in front of `rls serve` on the same files limits exactly the
//! requests the resources say, by the quotas they say, through reloads.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::envoy;
use common::process::rls;
use common::tools::workspace;
use tempfile::TempDir;

/// Runs `rls render ARGS`; fails the test unless it succeeds.
fn render(args: &[&str]) -> Output {
    let output = rls()
        .arg("render")
        .args(args)
        .output()
        .expect("rls render runs");
    assert!(
        output.status.success(),
        "rls render {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 YAML")
}

fn examples() -> PathBuf {
    workspace().join("config/examples")
}

/// `rls render envoy` on every example, rls at 127.0.0.1:8081, with `extra` arguments.
fn render_examples(extra: &[&str]) -> Output {
    let config = examples();
    let args = [
        "envoy",
        "--config",
        config.to_str().unwrap(),
        "--rls-address",
        "127.0.0.1:8081",
    ];
    render(&[&args[..], extra].concat())
}

/// A bootstrap of one listener whose connection manager runs `filters` then the router
/// over `hosts` (each given a route answering 200), with `clusters`.
fn bootstrap_with(
    mut filters: Vec<serde_json::Value>,
    mut hosts: Vec<serde_json::Value>,
    clusters: serde_json::Value,
) -> serde_json::Value {
    use serde_json::json;
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }));
    for host in &mut hosts {
        host["routes"] = json!([{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]);
    }
    json!({"static_resources": {
        "clusters": clusters,
        "listeners": [{
            "name": "existing",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "existing",
                    "route_config": {"virtual_hosts": hosts},
                    "http_filters": filters,
                },
            }]}],
        }],
    }})
}

/// Writes `text` to `dir/name` and checks Envoy accepts it.
fn assert_valid(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    if let Err(complaint) = envoy::validate(&path) {
        panic!("envoy refuses {name}: {complaint}\n{text}");
    }
}

#[test]
fn every_example_renders_a_bootstrap_envoy_accepts() {
    let dir = TempDir::new().unwrap();
    let mut rendered = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("ratelimit-") {
            continue;
        }
        let config = path.to_str().unwrap();
        let bootstrap = stdout(&render(&[
            "envoy",
            "--config",
            config,
            "--rls-address",
            "127.0.0.1:8081",
        ]));
        assert!(bootstrap.contains("rls.ratelimit.") || bootstrap.contains("rls.local_ratelimit."));
        assert_valid(dir.path(), &name, &bootstrap);
        let named = [
            "--rls-address",
            "rls.example.internal:8081",
            "--upstream",
            "app.internal:8080",
        ];
        let bootstrap = stdout(&render(
            &[&["envoy", "--config", config][..], &named[..]].concat(),
        ));
        assert_valid(dir.path(), &format!("upstream-{name}"), &bootstrap);
        rendered += 1;
    }
    assert!(rendered >= 3, "the examples hold RateLimit resources");
}

#[test]
fn the_fragment_fits_into_an_existing_bootstrap() {
    let output = render_examples(&["--fragment"]);
    let fragment: serde_json::Value = serde_saphyr::from_str(&stdout(&output)).unwrap();
    let filters = fragment["http_filters"].as_array().unwrap().clone();
    let hosts = fragment["virtual_hosts"].as_array().unwrap().clone();
    let bootstrap = bootstrap_with(filters, hosts, fragment["clusters"].clone());
    let dir = TempDir::new().unwrap();
    assert_valid(dir.path(), "fragment.json", &bootstrap.to_string());
}

#[test]
fn the_same_files_render_the_same_bytes() {
    let config = examples();
    let config = config.to_str().unwrap();
    for args in [
        &[
            "envoy",
            "--config",
            config,
            "--rls-address",
            "127.0.0.1:8081",
        ][..],
        &[
            "envoy",
            "--config",
            config,
            "--rls-address",
            "127.0.0.1:8081",
            "--fragment",
        ][..],
        &["istio", "--config", config][..],
    ] {
        let first = render(args);
        let second = render(args);
        assert_eq!(first.stdout, second.stdout, "{args:?}");
        assert!(!first.stdout.is_empty());
    }
}

#[test]
fn reference_format_files_are_named_on_stderr_and_the_resources_still_rendered() {
    let output = render_examples(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for file in ["api.yaml", "edge.yaml"] {
        let line = stderr
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("a note names {file}: {stderr}"));
        assert!(line.contains("no match information"), "{line}");
    }
    assert!(!stderr.contains("examples/ratelimit-"), "{stderr}");
    let yaml = stdout(&output);
    for domain in [
        "sm-verify/verify-page",
        "shop/storefront",
        "shop/pod-limits",
    ] {
        assert!(yaml.contains(domain), "{domain} is rendered");
    }

    let only_reference = examples().join("edge.yaml");
    let output = render(&["istio", "--config", only_reference.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("edge.yaml: 1 document(s) in the reference format"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no kind: RateLimit resource, so the output limits nothing"),
        "{stderr}"
    );
}

#[test]
fn render_reads_the_quota_files_with_the_bounds_check_and_serve_take() {
    let config = examples();
    for target in [
        &["envoy", "--rls-address", "127.0.0.1:8081"][..],
        &["istio"],
    ] {
        let output = rls()
            .arg("render")
            .args(target)
            .args([
                "--config",
                config.to_str().unwrap(),
                "--max-quota-depth",
                "1",
            ])
            .output()
            .expect("rls render runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{target:?}: {stderr}");
        assert!(
            stderr.contains("api.yaml:25:9: descriptors[1].descriptors[0]: descriptors nested more than 1 levels deep"),
            "{target:?}: {stderr}"
        );
    }
}

/// A bootstrap holding what `docs` (EnvoyFilters) patch in: their HTTP filters before the
/// router, a virtual host per VIRTUAL_HOST patch with its merge, and Istio's cluster for
/// rls.
fn bootstrap_of(docs: &[serde_json::Value], rls_cluster: &str) -> serde_json::Value {
    use serde_json::json;
    let mut filters = Vec::new();
    let mut hosts: Vec<serde_json::Value> = Vec::new();
    for doc in docs {
        for patch in doc["spec"]["configPatches"].as_array().unwrap() {
            let value = patch["patch"]["value"].clone();
            match patch["applyTo"].as_str().unwrap() {
                "HTTP_FILTER" => {
                    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
                    assert_eq!(
                        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
                        "envoy.filters.http.router"
                    );
                    filters.push(value);
                }
                "VIRTUAL_HOST" => {
                    assert_eq!(patch["patch"]["operation"], "MERGE");
                    let name = patch["match"]["routeConfiguration"]["vhost"]["name"].clone();
                    let host = match hosts.iter_mut().find(|h| h["name"] == name) {
                        Some(host) => host,
                        None => {
                            hosts.push(json!({"name": name, "domains": [name], "typed_per_filter_config": {}}));
                            hosts.last_mut().unwrap()
                        }
                    };
                    for (filter, config) in value["typed_per_filter_config"].as_object().unwrap() {
                        host["typed_per_filter_config"][filter] = config.clone();
                    }
                }
                other => panic!("unexpected patch {other}"),
            }
        }
    }
    let cluster = json!([{
        "name": rls_cluster,
        "type": "STATIC",
        "load_assignment": {"cluster_name": rls_cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8081}}}}]}]},
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
    }]);
    bootstrap_with(filters, hosts, cluster)
}

#[test]
fn istio_envoy_filters_parse_as_kubernetes_yaml_and_their_envoy_configs_validate() {
    let config = examples();
    let output = render(&[
        "istio",
        "--config",
        config.to_str().unwrap(),
        "--rls-address",
        "rls.platform.svc.cluster.local:9081",
    ]);
    let yaml = stdout(&output);
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let names: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| {
            assert_eq!(d["apiVersion"], "networking.istio.io/v1alpha3");
            assert_eq!(d["kind"], "EnvoyFilter");
            (
                d["metadata"]["namespace"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("shop", "pod-limits-local-ratelimit"),
            ("shop", "storefront-ratelimit"),
            ("sm-verify", "verify-page-ratelimit"),
        ]
    );
    assert_eq!(
        docs[0]["spec"]["workloadSelector"]["labels"]["app"],
        "checkout"
    );
    let patched_hosts: Vec<&str> = docs[1]["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["match"]["routeConfiguration"]["vhost"]["name"].as_str())
        .collect();
    assert_eq!(
        patched_hosts,
        ["storefront.shop.svc.cluster.local:80", "shop.example.com"]
    );
    assert!(yaml.contains("cluster_name: outbound|9081||rls.platform.svc.cluster.local"));

    let bootstrap = bootstrap_of(&docs, "outbound|9081||rls.platform.svc.cluster.local");
    let dir = TempDir::new().unwrap();
    assert_valid(dir.path(), "istio.json", &bootstrap.to_string());
}

#[test]
fn local_rules_without_a_workload_selector_are_noted() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("local.yaml");
    std::fs::write(
        &file,
        "apiVersion: quota.rls.dev/v1alpha1\nkind: RateLimit\nmetadata: {name: page, namespace: web}\n\
         spec: {hosts: [page.web.svc.cluster.local:80], mode: local, quota: 5, unit: second}\n",
    )
    .unwrap();
    let output = render(&["istio", "--config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no spec.workloadSelector, so every pod of namespace web"),
        "{stderr}"
    );
    assert!(!stdout(&output).contains("workloadSelector"));
}

/// The fenced block after `<!-- marker -->` in docs/ratelimit-resource.md.
fn doc_block(marker: &str) -> String {
    let doc = workspace().join("docs/ratelimit-resource.md");
    let doc = std::fs::read_to_string(doc).unwrap();
    let after = doc
        .split_once(&format!("<!-- {marker} -->\n```yaml\n"))
        .unwrap_or_else(|| panic!("the doc has a {marker} block"))
        .1;
    after.split_once("```\n").unwrap().0.to_owned()
}

#[test]
fn the_docs_side_by_side_example_is_what_rls_serves_and_prints() {
    // Run from the workspace root, as the doc's command line is.
    let root = workspace();
    let output = rls()
        .current_dir(&root)
        .args([
            "render",
            "envoy",
            "--config",
            "config/examples/ratelimit-verify-page.yaml",
        ])
        .args([
            "--rls-address",
            "rls.rls.svc.cluster.local:8081",
            "--fragment",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(stdout(&output), doc_block("rendered-fragment"));

    let served = doc_block("served-as");
    let example = root.join("config/examples/ratelimit-verify-page.yaml");
    let example = std::fs::read_to_string(example).unwrap();
    let options = config::LoadOptions::default();
    let from_doc =
        config::QuotaSet::from_sources([("doc.yaml", served.as_str())], &options).unwrap();
    let from_resource =
        config::QuotaSet::from_sources([("page.yaml", example.as_str())], &options).unwrap();
    let request = [("rule", "sm-verify/verify-page/default")];
    let rule = |set: &config::QuotaSet| {
        let rule = set
            .domain("sm-verify/verify-page")
            .unwrap()
            .resolve(&request)
            .unwrap();
        (
            rule.limits.clone(),
            rule.shadow_mode,
            rule.stats_key.clone(),
        )
    };
    assert_eq!(rule(&from_doc), rule(&from_resource));
}
