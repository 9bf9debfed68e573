//! Envoy Gateway's Deployment, unchanged but for the image: the binary started as
//! `ratelimit` with no argument and only the environment Envoy Gateway sets
//! (internal/infrastructure/kubernetes/ratelimit/resource.go) takes its rules over xDS
//! with mTLS, serves gRPC with TLS, Redis behind it, metrics where `PROMETHEUS_ADDR`
//! says, names the variables it does not read once; and a real Envoy, configured as
//! Envoy Gateway configures it, enforces a quota delivered over xDS through mTLS.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ads::{AdsServer, mutual_tls};
use common::certs::Certs;
use common::envoy::{Bootstrap, Client};
use common::http;
use common::manifest;
use common::redis::RedisServer;
use proto::rls_config::{RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, RateLimitUnit};

/// Longest wait for the process to log what a test waits for.
const LOG_BOUND: Duration = Duration::from_secs(60);

/// The route Envoy Gateway names and keys its descriptors by.
const ROUTE: &str = "httproute/default/backend/rule/0/match/0/www_example_com";

/// The binary under the reference's name, as the image has it at `/bin/ratelimit`.
fn ratelimit(dir: &Path) -> PathBuf {
    let path = dir.join("ratelimit");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rls"), &path).expect("symlink");
    path
}

/// The process, its log as it comes, killed when dropped.
struct Ratelimit {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Ratelimit {
    /// Starts `program` with no argument and `env` alone.
    fn start(program: &Path, env: &[(&str, String)]) -> Ratelimit {
        let mut child = Command::new(program)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ratelimit starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        Ratelimit { child, log }
    }

    /// Waits for a log line containing `text`, and returns it.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + LOG_BOUND;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(text)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ratelimit exited ({status}):\n{}", self.lines().join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Ratelimit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of the log field `name=` (`grpc_addr=127.0.0.1:PORT`) in `line`.
fn port(line: &str, name: &str) -> u16 {
    let field = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    field
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

/// What Envoy Gateway's translator makes of one rule matching `x-user-id: one`.
fn gateway_rules(per_hour: u32) -> Vec<RateLimitConfig> {
    let rule = RateLimitDescriptor {
        key: "rule-0-match-0".into(),
        value: "rule-0-match-0".into(),
        rate_limit: Some(RateLimitPolicy {
            unit: RateLimitUnit::Hour.into(),
            requests_per_unit: per_hour,
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![RateLimitConfig {
        name: "default/eg/http".into(),
        domain: "default/eg/http".into(),
        descriptors: vec![RateLimitDescriptor {
            key: ROUTE.into(),
            value: ROUTE.into(),
            descriptors: vec![rule],
            ..Default::default()
        }],
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gateways_deployment_runs_rls_and_envoy_enforces_a_quota_from_xds() {
    // Envoy Gateway's secret `envoy-rate-limit` (/certs): one certificate for the gRPC
    // server and the xDS client, the CA that signs Envoy Gateway's and Envoy's.
    let certs = Certs::new();
    certs.authority("ca");
    let tls = certs.leaf("tls", "ca", "DNS:envoy-ratelimit.envoy-gateway-system.svc");
    let xds = certs.leaf("envoy-gateway", "ca", "DNS:envoy-gateway,IP:127.0.0.1");
    let envoy_cert = certs.leaf("envoy", "ca", "DNS:envoy");
    let ca = certs.path("ca.crt");
    let ads = AdsServer::start(Some(mutual_tls(&xds, &ca))).await;
    ads.push("1", gateway_rules(3));
    let redis = RedisServer::start();

    let bin = tempfile::tempdir().expect("temp dir");
    let ca_path = ca.display().to_string();
    let env: Vec<(&str, String)> = vec![
        ("RUNTIME_ROOT", "/data".into()),
        ("RUNTIME_SUBDIRECTORY", "ratelimit".into()),
        ("RUNTIME_IGNOREDOTFILES", "true".into()),
        ("RUNTIME_WATCH_ROOT", "false".into()),
        ("LOG_LEVEL", "info".into()),
        ("USE_STATSD", "false".into()),
        ("CONFIG_TYPE", "GRPC_XDS_SOTW".into()),
        ("CONFIG_GRPC_XDS_SERVER_URL", ads.addr.to_string()),
        ("CONFIG_GRPC_XDS_NODE_ID", "envoy-ratelimit".into()),
        ("GRPC_SERVER_USE_TLS", "true".into()),
        ("GRPC_SERVER_TLS_CERT", tls.cert_str()),
        ("GRPC_SERVER_TLS_KEY", tls.key_str()),
        ("GRPC_SERVER_TLS_CA_CERT", ca_path.clone()),
        ("CONFIG_GRPC_XDS_SERVER_USE_TLS", "true".into()),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_CERT", tls.cert_str()),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_KEY", tls.key_str()),
        ("CONFIG_GRPC_XDS_SERVER_TLS_CACERT", ca_path),
        ("FORCE_START_WITHOUT_INITIAL_CONFIG", "true".into()),
        ("REDIS_SOCKET_TYPE", "tcp".into()),
        ("REDIS_URL", format!("127.0.0.1:{}", redis.port)),
        ("USE_PROMETHEUS", "true".into()),
        (
            "PROMETHEUS_MAPPER_YAML",
            "/etc/statsd-exporter/conf.yaml".into(),
        ),
        // Loopback ports of the process's own choosing, where Envoy Gateway's pod has
        // 8080, 8081 and :19001 (the reference's own variables).
        ("HOST", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("GRPC_HOST", "127.0.0.1".into()),
        ("GRPC_PORT", "0".into()),
        ("PROMETHEUS_ADDR", "127.0.0.1:0".into()),
        // Added as a user adds variables through rateLimitDeployment.container.env: a
        // Redis deadline for a loaded test machine.
        ("RLS_BACKEND_TIMEOUT", "2s".into()),
    ];
    let mut rls = Ratelimit::start(&ratelimit(bin.path()), &env);
    let serving = rls.wait_for("serving grpc_addr=");
    let (grpc, http_port) = (port(&serving, "grpc_addr="), port(&serving, "http_addr="));
    let metrics_port = port(&rls.wait_for("serving metrics"), "metrics_addr=");
    let unread = rls.wait_for("variables that rls does not read");
    for name in [
        "GRPC_SERVER_TLS_CA_CERT",
        "PROMETHEUS_MAPPER_YAML",
        "REDIS_SOCKET_TYPE",
        "RUNTIME_IGNOREDOTFILES",
        "RUNTIME_WATCH_ROOT",
        "USE_STATSD",
    ] {
        assert!(unread.contains(name), "{name} not named in {unread}");
    }
    rls.wait_for("xDS rule set applied");
    let health = ([127, 0, 0, 1], http_port).into();
    let (status, body) = http(health, "GET", "/healthcheck", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("serving version \"1\", connected"), "{body}");

    let bootstrap =
        Bootstrap::file(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gateway/envoy.yaml"))
            .replace("ENVOY_CERT", &envoy_cert.cert_str())
            .replace("ENVOY_KEY", &envoy_cert.key_str())
            .replace("CA_CERT", &certs.path("ca.crt").display().to_string())
            .port(8081, grpc);
    let codes = tokio::task::spawn_blocking(move || {
        let envoy = bootstrap.start();
        let client = Client::new([127, 0, 0, 1]);
        let user = [("x-user-id", "one")];
        let mut codes: Vec<u16> = (0..4)
            .map(|_| client.get(envoy.port(10000), "/", &user).status)
            .collect();
        // Another user matches no rule of the route: never limited.
        codes.push(
            client
                .get(envoy.port(10000), "/", &[("x-user-id", "two")])
                .status,
        );
        codes
    })
    .await
    .expect("envoy requests");
    assert_eq!(codes, [200, 200, 200, 429, 200]);

    let metrics = ([127, 0, 0, 1], metrics_port).into();
    let (status, page) = http(metrics, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("rls_xds_connected 1"), "{page}");
    assert!(
        page.contains("rls_requests_total{code=\"over_limit\"}"),
        "{page}"
    );
    let (status, _) = http(metrics, "GET", "/other", "").await;
    assert_eq!(status, 404, "the metrics listener serves its path only");
    let said_once = rls
        .lines()
        .iter()
        .filter(|l| l.contains("variables that rls does not read"))
        .count();
    assert_eq!(said_once, 1);
}

/// The EnvoyGateway configuration in `deploy/envoy-gateway/envoy-gateway-config.yaml`.
fn envoy_gateway_config() -> (serde_json::Value, serde_json::Value) {
    let path = common::tools::workspace().join("deploy/envoy-gateway/envoy-gateway-config.yaml");
    let objects = manifest::read(&path);
    assert_eq!(objects.len(), 1);
    let configmap = objects[0].clone();
    assert_eq!(configmap["kind"], "ConfigMap");
    assert_eq!(configmap["metadata"]["name"], "envoy-gateway-config");
    assert_eq!(configmap["metadata"]["namespace"], "envoy-gateway-system");
    let text = configmap["data"]["envoy-gateway.yaml"]
        .as_str()
        .expect("envoy-gateway.yaml");
    let config = manifest::documents(text).remove(0);
    (configmap, config)
}

#[test]
fn the_envoy_gateway_snippets_set_rls_as_the_image_with_a_redis_backend() {
    let (_, config) = envoy_gateway_config();
    assert_eq!(config["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    assert_eq!(config["kind"], "EnvoyGateway");
    let container = &config["provider"]["kubernetes"]["rateLimitDeployment"]["container"];
    let image = container["image"].as_str().expect("an image");
    assert_eq!(config["rateLimit"]["backend"]["type"], "Redis");
    // Every variable added is one of rls serve's, with a value it takes.
    let serve = rls::cli::command()
        .find_subcommand("serve")
        .expect("serve")
        .clone();
    for var in container["env"].as_array().expect("env") {
        let (name, value) = (
            var["name"].as_str().expect("name"),
            var["value"].as_str().expect("value"),
        );
        let arg = serve
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name))
            .unwrap_or_else(|| panic!("{name} is no variable of rls serve"));
        let values = arg.get_possible_values();
        assert!(
            values.is_empty() || values.iter().any(|v| v.matches(value, false)),
            "{name}={value}"
        );
    }

    // The Helm values say the same through the chart's own keys.
    let values =
        manifest::read(&common::tools::workspace().join("deploy/envoy-gateway/helm-values.yaml"));
    assert_eq!(values[0]["global"]["images"]["ratelimit"]["image"], image);
    assert_eq!(
        values[0]["config"]["envoyGateway"]["rateLimit"],
        config["rateLimit"]
    );
}

#[test]
fn the_envoy_gateway_configmap_validates_against_the_kubernetes_schemas() {
    let path = common::tools::workspace().join("deploy/envoy-gateway/envoy-gateway-config.yaml");
    let validate = common::tools::program("kubernetes-validate");
    let (ok, out, err) = common::tools::run(Command::new(validate).arg("--strict").arg(&path));
    assert!(
        ok && out.contains("passed") && !out.contains("WARN"),
        "{out}{err}"
    );
}
