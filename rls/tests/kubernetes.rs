//! `deploy/kubernetes` and `deploy/istio` as a cluster would take them: every overlay builds
//! with kubectl's kustomize; every object validates against the Kubernetes OpenAPI schemas
//! (kubernetes-validate, strict) or, for custom resources, against their CRD's own schema;
//! every quota file in a ConfigMap passes `rls check`; and the Deployment's probes and
//! ports are the ones a running `rls serve` answers on.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::manifest::{self, of_kind, validate_custom_resources};
use common::process::{RlsProcess, rls};
use common::tools::{self, workspace};
use serde_json::{Value, json};

const OVERLAYS: [&str; 3] = ["memory", "redis-dev", "redis-external"];

fn kubernetes(path: &str) -> PathBuf {
    workspace().join("deploy/kubernetes").join(path)
}

/// The objects `kubectl kustomize` builds from `dir`, and its YAML.
fn build(dir: &Path) -> (String, Vec<Value>) {
    manifest::kustomize(dir).unwrap_or_else(|e| panic!("kustomize {}: {e}", dir.display()))
}

fn overlay(name: &str) -> Vec<Value> {
    build(&kubernetes(&format!("overlays/{name}"))).1
}

/// An overlay with `components` added (paths from `deploy/`), as their comments tell users
/// to. kustomize takes only relative paths to other kustomizations: the kustomization is
/// written in a folder under `target/`, two levels below the workspace.
fn with_components(overlay: &str, components: &[&str]) -> (String, Vec<Value>) {
    let dir = tempfile::tempdir_in(workspace().join("target")).expect("temp dir");
    let components: Vec<String> = components
        .iter()
        .map(|c| format!("../../deploy/{c}"))
        .collect();
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources: [../../deploy/kubernetes/overlays/{overlay}]\n\
         components: [{}]\n",
        components.join(", ")
    );
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write");
    build(dir.path())
}

fn with_service_monitor(overlay: &str) -> Vec<Value> {
    with_components(overlay, &["kubernetes/components/servicemonitor"]).1
}

/// The overlay `redis-dev` with the Grafana dashboard's component.
fn with_dashboard() -> (String, Vec<Value>) {
    with_components("redis-dev", &["grafana"])
}

fn the<'a>(objects: &'a [Value], kind: &str, wanted: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == wanted)
        .unwrap_or_else(|| panic!("no {kind}/{wanted}"))
}

fn container(objects: &[Value]) -> &Value {
    &the(objects, "Deployment", "rls")["spec"]["template"]["spec"]["containers"][0]
}

/// The container's plain `env` values (not those from Secrets).
fn env(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect()
}

#[test]
fn every_overlay_builds_with_kustomize_into_what_it_says() {
    for name in OVERLAYS {
        let objects = overlay(name);
        for (kind, wanted) in [
            ("Deployment", "rls"),
            ("Service", "rls"),
            ("Service", "rls-headless"),
            ("ConfigMap", "rls-quotas"),
            ("ServiceAccount", "rls"),
        ] {
            assert_eq!(
                the(&objects, kind, wanted)["metadata"]["namespace"],
                "rls",
                "{name}"
            );
        }
        let backend = env(container(&objects)).get("RLS_BACKEND").cloned();
        let replicas = &the(&objects, "Deployment", "rls")["spec"]["replicas"];
        let autoscaled = !of_kind(&objects, "HorizontalPodAutoscaler").is_empty();
        match name {
            "memory" => {
                assert_eq!(backend.as_deref(), Some("memory"));
                assert_eq!(*replicas, 1, "one replica's own buckets");
                assert!(
                    !autoscaled,
                    "more replicas would each allow the whole quota"
                );
            }
            _ => {
                assert_eq!(backend.as_deref(), Some("redis"), "{name}");
                assert!(autoscaled, "{name}");
                assert!(replicas.is_null(), "{name}: the autoscaler owns the count");
                assert!(
                    !of_kind(&objects, "PodDisruptionBudget").is_empty(),
                    "{name}"
                );
            }
        }
    }
    let redis = overlay("redis-dev");
    let args = the(&redis, "StatefulSet", "rls-redis")["spec"]["template"]["spec"]["containers"][0]
        ["args"]
        .to_string();
    for setting in [
        r#""--hz","100""#,
        r#""--save","""#,
        r#""--appendonly","no""#,
    ] {
        assert!(
            args.contains(setting),
            "redis-dev runs Redis with {setting}: {args}"
        );
    }
    let external = container(&overlay("redis-external"))["env"].to_string();
    assert!(
        external.contains(r#"{"key":"url","name":"rls-redis"}"#),
        "{external}"
    );
}

#[test]
fn rls_reads_its_quota_files_where_the_config_map_is_mounted() {
    for name in OVERLAYS {
        let objects = overlay(name);
        let pod = &the(&objects, "Deployment", "rls")["spec"]["template"]["spec"];
        let volume = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["configMap"]["name"] == "rls-quotas")
            .expect("a volume of the quota ConfigMap");
        let mount = container(&objects)["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == volume["name"])
            .expect("the quota volume mounted");
        let config = env(container(&objects)).get("RLS_CONFIG").cloned();
        assert_eq!(mount["mountPath"].as_str(), config.as_deref(), "{name}");
    }
}

#[test]
fn every_built_object_validates_against_the_kubernetes_openapi_schemas() {
    let validate = tools::program("kubernetes-validate");
    let builds = OVERLAYS
        .map(|name| (name, build(&kubernetes(&format!("overlays/{name}")))))
        .into_iter()
        .chain([("redis-dev with grafana", with_dashboard())]);
    for (name, (yaml, objects)) in builds {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(yaml.as_bytes()).expect("write");
        let (ok, out, err) = tools::run(Command::new(&validate).arg("--strict").arg(file.path()));
        assert!(ok, "{name}: {out}{err}");
        // A kind it has no schema for is only a warning: none may be left unchecked.
        assert!(!out.contains("WARN"), "{name}: {out}");
        let passed = out
            .lines()
            .filter(|l| l.starts_with("INFO") && l.contains("passed"))
            .count();
        assert_eq!(
            passed,
            objects.len(),
            "{name}: every object checked:\n{out}"
        );
    }
}

#[test]
fn istio_envoy_filters_and_the_service_monitor_validate_against_their_crd_schemas() {
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(workspace().join("deploy/istio")).expect("deploy/istio") {
        objects.extend(manifest::read(&entry.expect("entry").path()));
    }
    assert!(objects.len() >= 3, "the three EnvoyFilters");
    let monitored = with_service_monitor("redis-external");
    objects.extend(of_kind(&monitored, "ServiceMonitor").into_iter().cloned());
    let (ok, report) = validate_custom_resources(&objects.iter().collect::<Vec<_>>());
    assert!(ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("OK")).count(),
        objects.len(),
        "{report}"
    );

    // The validator refuses what the schema refuses: a patch applied to no known place.
    let mut broken = objects[0].clone();
    broken["spec"]["configPatches"][0]["applyTo"] = json!("HTTP_FILTERS");
    let (ok, report) = validate_custom_resources(&[&broken]);
    assert!(!ok && report.contains("applyTo"), "{report}");
}

#[test]
fn the_service_monitor_scrapes_the_port_and_path_of_the_metrics() {
    let objects = with_service_monitor("memory");
    let monitor = of_kind(&objects, "ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    let endpoint = &monitor[0]["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let service = the(&objects, "Service", "rls");
    let port = service["spec"]["ports"].as_array().expect("ports").iter();
    let target = port
        .clone()
        .find(|p| p["name"] == endpoint["port"])
        .expect("named port");
    assert_eq!(
        target["name"], "http",
        "the ServiceMonitor scrapes the http port"
    );
    // The pod annotations, for Prometheus' own discovery, say the same.
    let annotations =
        &the(&objects, "Deployment", "rls")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["prometheus.io/port"],
        container_port(&objects, "http").to_string()
    );
}

#[test]
fn the_grafana_component_ships_the_dashboard_as_the_sidecar_finds_it() {
    let (_, objects) = with_dashboard();
    let map = the(&objects, "ConfigMap", "rls-grafana-dashboard");
    assert_eq!(map["metadata"]["namespace"], "rls");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let file = std::fs::read_to_string(workspace().join("deploy/grafana/rls.json")).expect("read");
    assert_eq!(
        map["data"]["rls.json"],
        file.as_str(),
        "the dashboard, byte for byte"
    );
    // Client-side `kubectl apply` keeps a copy in an annotation of at most 256 KiB.
    assert!(file.len() < 256 * 1024, "{} bytes", file.len());
}

fn container_port(objects: &[Value], port_name: &str) -> u64 {
    container(objects)["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == port_name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {port_name}"))
}

/// The quota files of the ConfigMaps in `objects`, written to a folder.
fn quota_files(objects: &[Value]) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut names = Vec::new();
    for config_map in of_kind(objects, "ConfigMap") {
        for (file, text) in config_map["data"].as_object().into_iter().flatten() {
            std::fs::write(dir.path().join(file), text.as_str().expect("text")).expect("write");
            names.push(file.clone());
        }
    }
    (dir, names)
}

#[test]
fn every_quota_file_in_a_config_map_passes_rls_check() {
    for name in OVERLAYS {
        let (dir, files) = quota_files(&overlay(name));
        assert!(!files.is_empty(), "{name}: a ConfigMap of quota files");
        let (ok, out, err) = tools::run(rls().arg("check").arg("--config").arg(dir.path()));
        assert!(ok, "{name}: rls check {files:?}: {out}{err}");
    }
    // The base ships config/examples/ as they are (copies, for users who copy deploy/).
    let base = kubernetes("base/quotas");
    for entry in std::fs::read_dir(workspace().join("config/examples")).expect("examples") {
        let example = entry.expect("entry").path();
        let copy = base.join(example.file_name().expect("name"));
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(
            read(&copy),
            read(&example),
            "{copy:?} differs from {example:?}"
        );
    }
}

/// The address rls binds for `variable` in this container: its env value, else the default.
fn address(container: &Value, variable: &str, default: SocketAddr) -> SocketAddr {
    env(container)
        .get(variable)
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{variable}={v}: {e}")))
        .unwrap_or(default)
}

#[test]
fn a_terminating_pod_drains_and_exits_within_its_grace_period() {
    let defaults = rls::Settings::defaults().operations;
    for name in OVERLAYS {
        let objects = overlay(name);
        let pod = &the(&objects, "Deployment", "rls")["spec"]["template"]["spec"];
        let container = container(&objects);
        let duration = |variable: &str, default| {
            env(container).get(variable).map_or(default, |v| {
                humantime::parse_duration(v).unwrap_or_else(|e| panic!("{variable}={v}: {e}"))
            })
        };
        let drain = duration("RLS_DRAIN_DELAY", defaults.drain_delay);
        let finish = duration("RLS_SHUTDOWN_TIMEOUT", defaults.shutdown_timeout);
        let grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace period");
        // A second to spare for the process to exit after the calls have finished.
        assert!(
            (drain + finish).as_secs() < grace,
            "{name}: drain {drain:?} + shutdown {finish:?} does not fit in {grace} s"
        );
        assert!(
            drain.as_secs() >= 5,
            "{name}: proxies need time to move away"
        );
        // The delay is rls's own: a preStop hook would add to it unseen.
        assert!(
            container["lifecycle"]["preStop"].is_null(),
            "{name}: a preStop hook"
        );
    }
}

#[tokio::test]
async fn the_deployment_probes_and_ports_are_what_rls_serve_answers_on() {
    let defaults = rls::Settings::defaults();
    for name in OVERLAYS {
        let objects = overlay(name);
        let container = container(&objects);
        let http = address(container, "RLS_HTTP_ADDR", defaults.http_addr);
        let grpc = address(container, "RLS_GRPC_ADDR", defaults.grpc_addr);
        assert_eq!(
            container_port(&objects, "http"),
            u64::from(http.port()),
            "{name}"
        );
        assert_eq!(
            container_port(&objects, "grpc"),
            u64::from(grpc.port()),
            "{name}"
        );
        for service in of_kind(&objects, "Service")
            .into_iter()
            .filter(|s| s["metadata"]["name"] != "rls-redis")
        {
            for port in service["spec"]["ports"].as_array().expect("ports") {
                let target = port["targetPort"].as_str().expect("named target port");
                assert_eq!(
                    port["name"],
                    target,
                    "{}: Istio reads the protocol from the name",
                    manifest::name(service)
                );
                container_port(&objects, target);
            }
        }

        // Ask a running rls, on the quota files of the ConfigMap, each probe's path on the
        // port the probe names.
        let (quotas, _) = quota_files(&objects);
        let server = RlsProcess::start(
            &["--config", quotas.path().to_str().expect("utf-8")],
            &["serving"],
        );
        // The probe's port, by name or number, as the running rls's port of that role.
        let port_of = |port: &Value| {
            let number = match port {
                Value::String(named) => container_port(&objects, named),
                other => other.as_u64().expect("a port name or number"),
            };
            match number {
                n if n == u64::from(http.port()) => server.http,
                n if n == u64::from(grpc.port()) => server.grpc,
                n => panic!("{name}: port {n} is neither rls's HTTP nor its gRPC port"),
            }
        };
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let get = &container[probe]["httpGet"];
            let path = get["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {probe} path"));
            let port = port_of(&get["port"]);
            let (status, body) = common::http(([127, 0, 0, 1], port).into(), "GET", path, "").await;
            assert_eq!(status, 200, "{name}: {probe} GET {path}: {body}");
        }
        let (status, _) =
            common::http(([127, 0, 0, 1], server.http).into(), "GET", "/nothing", "").await;
        assert_eq!(status, 404, "a path rls does not serve fails its probe");
        // The grpc port speaks gRPC: a ShouldRateLimit is answered.
        let mut client = proto::rls::rate_limit_service_client::RateLimitServiceClient::connect(
            server.endpoint(),
        )
        .await
        .expect("connect");
        let request: proto::rls::RateLimitRequest = serde_json::from_value(json!({
            "domain": "edge",
            "descriptors": [{"entries": [{"key": "remote_address", "value": "192.0.2.1"}]}]
        }))
        .expect("request");
        let answer = client.should_rate_limit(request).await;
        assert!(answer.is_ok(), "{name}: {answer:?}");
    }
}
