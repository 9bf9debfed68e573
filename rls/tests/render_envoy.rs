//! End to end: `rls serve` and a real Envoy on the bootstrap `rls render envoy` prints from
//! the same RateLimit resources. Requests matching a rule get 429 after its quota; requests
//! that do not match are never limited; `per` keeps a bucket per value, `cost` takes
//! several hits, `shadow` refuses nothing, `local` rules hold with rls stopped, and an
//! edited quota is enforced through rls's reload with the same bootstrap (an invalid edit
//! is refused and the previous quota keeps serving).
//!
//! Quotas are per hour, so that no token comes back while a test runs.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::envoy::{Bootstrap, Client, Envoy};
use common::process::{RlsProcess, rls};
use tempfile::TempDir;

const ME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const THIRD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// The ports the bootstrap is rendered with (`--listen`, `--upstream-listen`, `--admin`):
/// placeholders, which [`Bootstrap`] moves to free loopback ports. rls's gRPC port (an
/// ephemeral one, so never one of these) is kept as it is.
const LISTEN: u16 = 10000;
const UPSTREAM: u16 = 10001;
const ADMIN: u16 = 9901;

const HEADER: &str = "apiVersion: quota.rls.dev/v1alpha1\nkind: RateLimit\n";

/// rls serving a directory of quota files, and Envoy on the bootstrap rendered from it.
struct Stack {
    dir: TempDir,
    rls: Option<RlsProcess>,
    _envoy: Envoy,
    /// Envoy's listener.
    port: u16,
    /// What `rls render envoy` printed, before its placeholder ports were moved.
    bootstrap: String,
}

impl Stack {
    /// Writes `quotas/quotas.yaml`, starts rls on `quotas/` and Envoy on what `rls render
    /// envoy` prints for it.
    fn start(quotas: &str) -> Stack {
        let dir = TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("quotas")).unwrap();
        std::fs::write(dir.path().join("quotas/quotas.yaml"), quotas).unwrap();
        let config = dir.path().join("quotas");
        let rls = RlsProcess::start(&["--config", config.to_str().unwrap()], &["serving"]);
        let bootstrap = render_bootstrap(&config, rls.grpc);
        let envoy = Bootstrap::text(&bootstrap).port(rls.grpc, rls.grpc).start();
        Stack {
            dir,
            rls: Some(rls),
            port: envoy.port(LISTEN),
            _envoy: envoy,
            bootstrap,
        }
    }

    /// The statuses of `n` requests to `host`, one after another.
    fn statuses(
        &self,
        n: usize,
        from: Ipv4Addr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Vec<u16> {
        let client = Client::new(from);
        let headers = [&[("host", host)], headers].concat();
        (0..n)
            .map(|_| client.get(self.port, path, &headers).status)
            .collect()
    }
}

/// `rls render envoy` for the files of `dir`, rls on `grpc`, Envoy's ports the
/// placeholders.
fn render_bootstrap(dir: &Path, grpc: u16) -> String {
    let output = rls()
        .args(["render", "envoy", "--config"])
        .arg(dir)
        .args(["--rls-address", &format!("127.0.0.1:{grpc}")])
        .args(["--listen", &format!("127.0.0.1:{LISTEN}")])
        .args(["--upstream-listen", &format!("127.0.0.1:{UPSTREAM}")])
        .args(["--admin", &format!("127.0.0.1:{ADMIN}")])
        // Generous: a loaded test machine must not turn a decision into fail-open.
        .args(["--rls-timeout", "2s"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const GLOBAL: &str = "\
metadata: {name: shop, namespace: e2e}
spec:
  hosts: [shop.test]
  stage: 1
  rules:
    - name: checkout
      match: {path: {matchType: exact, value: /checkout}}
      quota: 3
      unit: hour
    - name: api
      match: {path: {matchType: prefix, value: /api/}}
      per: {header: x-api-key}
      quota: 2
      unit: hour
    - name: anonymous
      match:
        path: {value: /anon}
        headers: [{key: x-user, matchType: present, invert: true}]
      quota: 2
      unit: hour
    - name: not-gold
      match:
        path: {value: /tier}
        headers: [{key: x-tier, value: gold, invert: true}]
      quota: 1
      unit: hour
    - name: export
      match: {headers: [{key: x-format, matchType: regex, value: csv|xlsx}]}
      cost: 3
      quota: 6
      unit: hour
    - name: beta
      match: {path: {value: /beta}}
      shadow: true
      quota: 1
      unit: hour
    - name: per-client
      match: {path: {value: /per-client}, sourceCIDR: 127.0.0.0/8}
      per: {clientAddress: true}
      quota: 1
      unit: hour
    - name: elsewhere
      match: {sourceCIDR: 10.0.0.0/8}
      quota: 1
      unit: hour
";

#[test]
fn global_rules_limit_exactly_the_requests_they_match() {
    let stack = Stack::start(&format!("{HEADER}{GLOBAL}"));
    let host = "shop.test";
    let s = |n, from, host, path, headers| stack.statuses(n, from, host, path, headers);

    // An exact path: 3 an hour, shared by every client.
    assert_eq!(s(2, ME, host, "/checkout", &[]), [200, 200]);
    assert_eq!(s(2, OTHER, host, "/checkout", &[]), [200, 429]);
    // Another path, another host: never limited.
    assert_eq!(s(5, ME, host, "/checkout/more", &[]), [200; 5]);
    assert_eq!(s(5, ME, "other.test", "/checkout", &[]), [200; 5]);

    // A bucket per API key; requests without one are not counted.
    assert_eq!(
        s(3, ME, host, "/api/orders", &[("x-api-key", "a")]),
        [200, 200, 429]
    );
    assert_eq!(
        s(2, ME, host, "/api/items", &[("x-api-key", "b")]),
        [200, 200]
    );
    assert_eq!(s(4, ME, host, "/api/orders", &[]), [200; 4]);

    // An inverted header: only requests without x-user count.
    assert_eq!(s(4, ME, host, "/anon", &[("x-user", "ann")]), [200; 4]);
    assert_eq!(s(3, ME, host, "/anon", &[]), [200, 200, 429]);

    // An inverted exact value: gold is never counted; another value or none is.
    assert_eq!(s(3, ME, host, "/tier", &[("x-tier", "gold")]), [200; 3]);
    assert_eq!(s(1, ME, host, "/tier", &[("x-tier", "silver")]), [200]);
    assert_eq!(s(1, ME, host, "/tier", &[]), [429]);

    // Each export takes 3 of 6 hits; other formats are not counted.
    assert_eq!(
        s(3, ME, host, "/report", &[("x-format", "csv")]),
        [200, 200, 429]
    );
    assert_eq!(s(3, ME, host, "/report", &[("x-format", "pdf")]), [200; 3]);

    // Shadow: counted, never refused.
    assert_eq!(s(4, ME, host, "/beta", &[]), [200; 4]);

    // In the range: a bucket per client address. Out of it: the `elsewhere` rule (1 an
    // hour, 10.0.0.0/8) has let every request above through.
    assert_eq!(s(2, OTHER, host, "/per-client", &[]), [200, 429]);
    assert_eq!(s(2, THIRD, host, "/per-client", &[]), [200, 429]);
    assert!(stack.bootstrap.contains("v4_prefix_mask_len: 8"));
}

const LOCAL: &str = "\
metadata: {name: pods, namespace: e2e}
spec:
  hosts: [pods.test]
  rules:
    - name: all
      mode: local
      match: {path: {matchType: prefix, value: /all}}
      quota: 3
      unit: hour
    - name: cart
      mode: local
      match: {path: {matchType: prefix, value: /cart}}
      per: {clientAddress: true}
      quota: 1
      unit: hour
    - name: heavy
      mode: local
      match: {path: {value: /heavy}}
      cost: 2
      quota: 4
      unit: hour
    - name: shadowed
      mode: local
      match: {path: {value: /shadowed}}
      shadow: true
      quota: 1
      unit: hour
    - name: global
      match: {path: {value: /global}}
      quota: 1
      unit: hour
";

#[test]
fn local_rules_hold_in_envoy_with_rls_stopped() {
    let mut stack = Stack::start(&format!("{HEADER}{LOCAL}"));
    let host = "pods.test";
    // With rls up, the global rule holds.
    assert_eq!(stack.statuses(2, ME, host, "/global", &[]), [200, 429]);

    drop(stack.rls.take());
    // Without it, the global rule fails open...
    assert_eq!(stack.statuses(2, ME, host, "/global", &[]), [200, 200]);
    // ...and the local ones hold: 3 in all, 1 per client, the shadowed one never
    // refuses, the heavy one costs 2.
    assert_eq!(
        stack.statuses(4, ME, host, "/all/x", &[]),
        [200, 200, 200, 429]
    );
    assert_eq!(stack.statuses(2, OTHER, host, "/cart", &[]), [200, 429]);
    assert_eq!(stack.statuses(2, THIRD, host, "/cart", &[]), [200, 429]);
    assert_eq!(stack.statuses(3, ME, host, "/shadowed", &[]), [200; 3]);
    // Each request takes 2 of 4 tokens.
    assert_eq!(stack.statuses(3, ME, host, "/heavy", &[]), [200, 200, 429]);
    // Other hosts and paths: never.
    assert_eq!(stack.statuses(4, ME, "else.test", "/all", &[]), [200; 4]);
}

const RELOADED: &str = "\
metadata: {name: reloaded, namespace: e2e}
spec:
  hosts: [reload.test]
  match: {path: {value: /r}}
  per: {header: x-key}
  quota: QUOTA
  unit: hour
";

#[test]
fn an_edited_quota_is_enforced_through_the_reload_with_the_same_bootstrap() {
    let stack = Stack::start(&format!("{HEADER}{}", RELOADED.replace("QUOTA", "2")));
    let host = "reload.test";
    let before = [("x-key", "before")];
    assert_eq!(stack.statuses(3, ME, host, "/r", &before), [200, 200, 429]);

    let quotas = stack.dir.path().join("quotas");
    let file = quotas.join("quotas.yaml");
    std::fs::write(&file, format!("{HEADER}{}", RELOADED.replace("QUOTA", "5"))).unwrap();
    let http = stack.rls.as_ref().unwrap().http;
    wait_for_config(http, "5/hour");

    // Only the quota changed: rendered again from the same arguments, the bootstrap is
    // byte for byte the one Envoy was started on, so the edit needs nothing of Envoy.
    let grpc = stack.rls.as_ref().unwrap().grpc;
    assert_eq!(render_bootstrap(&quotas, grpc), stack.bootstrap);
    // A new key gets the new quota.
    let after = [("x-key", "after")];
    let statuses = stack.statuses(6, ME, host, "/r", &after);
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);

    // A quota of 0 is refused whole: the quota of 5 keeps serving.
    std::fs::write(&file, format!("{HEADER}{}", RELOADED.replace("QUOTA", "0"))).unwrap();
    wait_for_metric(http, "rls_config_reloads_total{result=\"refused\"} 1");
    wait_for_config(http, "5/hour");
    let refused = [("x-key", "refused")];
    let statuses = stack.statuses(6, ME, host, "/r", &refused);
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
}

/// Polls `GET path` on rls's HTTP port until its body satisfies `found` (a reload is seen
/// by the watcher within milliseconds; the bound only keeps a broken reload from hanging
/// the test).
fn wait_for(http: u16, path: &str, what: &str, found: impl Fn(&str) -> bool) {
    let client = Client::new(ME);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = client.get(http, path, &[]).body;
        if found(&body) {
            return;
        }
        assert!(Instant::now() < deadline, "rls never {what}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls rls's `/metrics` until it has the line `line`.
fn wait_for_metric(http: u16, line: &str) {
    wait_for(http, "/metrics", &format!("reported {line}"), |body| {
        body.lines().any(|l| l == line)
    });
}

/// Polls rls's `/config` until it lists `text`.
fn wait_for_config(http: u16, text: &str) {
    wait_for(http, "/config", &format!("served {text}"), |body| {
        body.contains(text)
    });
}
