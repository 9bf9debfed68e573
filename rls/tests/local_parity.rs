//! One request sequence, decided twice: by a real Envoy on the bootstrap `rls render envoy`
//! prints for a file of RateLimit resources with local rules, and by the `limiter` crate
//! loading the same file (`LocalLimits`, what a Rust service embeds). Every request gets the
//! same verdict from both: the same match (exact, prefix, regex, present, inverted, method,
//! address range, a header on several lines, hosts), `per` buckets, a bucket per virtual
//! host, cost, shadow, quota, and resources charged in load order.
//!
//! Quotas are per hour, so that no token comes back while the test runs (the limiter's
//! clock is a fake one, Envoy's the real one).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use common::envoy::{Bootstrap, Client};
use common::process::rls;
use limiter::{FakeClock, LocalLimits};
use tempfile::TempDir;

const LISTEN: u16 = 10000;

const RESOURCES: &str = "\
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: shop, namespace: parity}
spec:
  hosts: [shop.test, '*.shop.test', 'svc.test:8080']
  rules:
    - name: exact
      mode: local
      match: {path: {matchType: exact, value: /exact}}
      quota: 2
      unit: hour
    - name: prefix-post
      mode: local
      match: {path: {matchType: prefix, value: /p/}, method: POST}
      quota: 2
      unit: hour
    - name: formats
      mode: local
      match: {headers: [{key: x-format, matchType: regex, value: 'pdf|csv'}]}
      cost: 2
      quota: 4
      unit: hour
    - name: not-prod
      mode: local
      match:
        path: {value: /env}
        headers: [{key: x-env, value: prod, invert: true}]
      quota: 2
      unit: hour
    - name: anonymous
      mode: local
      match:
        path: {value: /anon}
        headers: [{key: authorization, matchType: present, invert: true}]
      quota: 1
      unit: hour
    - name: per-key
      mode: local
      match: {path: {value: /key}}
      per: {header: x-key}
      quota: 1
      unit: hour
    - name: per-client
      mode: local
      match: {path: {value: /client}}
      per: {clientAddress: true}
      quota: 1
      unit: hour
    - name: range
      mode: local
      match: {path: {value: /range}, sourceCIDR: 127.0.0.0/31}
      quota: 1
      unit: hour
    - name: lines
      mode: local
      match: {headers: [{key: x-line, matchType: regex, value: b}]}
      quota: 3
      unit: hour
    - name: sh-strict
      mode: local
      match: {path: {value: /sh}}
      quota: 1
      unit: hour
      shadow: true
    - name: sh-enforced
      mode: local
      match: {path: {matchType: prefix, value: /sh}}
      quota: 2
      unit: hour
    - name: both
      mode: local
      match: {path: {matchType: prefix, value: /both/}}
      quota: 2
      unit: hour
    - name: shadowed
      mode: local
      match: {path: {value: /shadow}}
      quota: 1
      unit: hour
      shadow: true
---
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: www, namespace: parity}
spec:
  hosts: [www.shop.test]
  mode: local
  match: {path: {value: /www}}
  quota: 1
  unit: hour
---
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: later, namespace: parity}
spec:
  hosts: [SHOP.Test]    # the host of `shop`: one virtual host, whatever the case
  mode: local
  match: {path: {value: /both/x}}
  quota: 1
  unit: hour
";

/// One request: from, method, host, path, extra headers.
type Step = (
    Ipv4Addr,
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The sequence: each kind of rule past its quota, and requests no rule counts.
fn steps() -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut add = |n: usize, from, method, host, path, headers: &[(&'static str, &'static str)]| {
        for _ in 0..n {
            steps.push((from, method, host, path, headers.to_vec()));
        }
    };
    add(3, A, "GET", "shop.test", "/exact", &[]);
    add(2, A, "GET", "shop.test", "/exact?q", &[]);
    add(2, A, "GET", "SHOP.test", "/exact", &[]);
    add(3, A, "GET", "eu.shop.test", "/exact", &[]);
    add(3, A, "GET", "svc.test:8080", "/exact", &[]);
    add(2, A, "GET", "svc.test", "/exact", &[]);
    add(2, A, "GET", "other.test", "/exact", &[]);
    add(3, A, "POST", "shop.test", "/p/1", &[]);
    add(2, A, "GET", "shop.test", "/p/1", &[]);
    add(3, A, "GET", "shop.test", "/f", &[("x-format", "pdf")]);
    add(2, A, "GET", "shop.test", "/f", &[("x-format", "pdfx")]);
    add(
        2,
        A,
        "GET",
        "shop.test",
        "/f",
        &[("x-format", "pdf"), ("x-format", "csv")],
    );
    add(
        4,
        A,
        "GET",
        "shop.test",
        "/l",
        &[("x-line", "a"), ("x-line", "b")],
    );
    add(2, A, "GET", "shop.test", "/env", &[("x-env", "prod")]);
    add(3, A, "GET", "shop.test", "/env", &[]);
    add(2, A, "GET", "shop.test", "/anon", &[("authorization", "t")]);
    add(2, A, "GET", "shop.test", "/anon", &[]);
    add(2, A, "GET", "shop.test", "/key", &[("x-key", "one")]);
    add(2, A, "GET", "shop.test", "/key", &[("x-key", "two")]);
    add(2, A, "GET", "shop.test", "/key", &[]);
    // A `per` header on two lines: its first line keys the bucket.
    let (one_three, four_one) = (
        [("x-key", "one"), ("x-key", "three")],
        [("x-key", "four"), ("x-key", "one")],
    );
    add(1, A, "GET", "shop.test", "/key", &one_three);
    add(1, A, "GET", "shop.test", "/key", &four_one);
    add(2, A, "GET", "shop.test", "/client", &[]);
    add(2, B, "GET", "shop.test", "/client", &[]);
    add(2, A, "GET", "shop.test", "/range", &[]);
    add(2, B, "GET", "shop.test", "/range", &[]);
    add(3, A, "GET", "shop.test", "/shadow", &[]);
    add(2, A, "GET", "www.shop.test", "/www", &[]);
    add(2, A, "GET", "www.shop.test", "/exact", &[]);
    // Two resources' filters in load order: `shop`'s bucket is charged before `later`
    // refuses, so /both/y finds it empty.
    add(2, A, "GET", "shop.test", "/both/x", &[]);
    add(1, A, "GET", "shop.test", "/both/y", &[]);
    // A stricter shadowed rule's refusal does not stop the enforced one from counting.
    add(4, A, "GET", "shop.test", "/sh", &[]);
    steps
}

/// `rls render envoy` for `file`; no global rule, so rls is never called.
fn render(file: &Path) -> String {
    let output = rls()
        .args(["render", "envoy", "--config"])
        .arg(file)
        .args(["--rls-address", "127.0.0.1:9"])
        .args(["--listen", &format!("127.0.0.1:{LISTEN}")])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn limiter_status(limits: &LocalLimits, (from, method, host, path, headers): &Step) -> u16 {
    let mut request = http::Request::builder()
        .method(*method)
        .uri(*path)
        .header("host", *host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from((*from, 40_000)));
    if limits.check_request(&request).is_denied() {
        429
    } else {
        200
    }
}

#[test]
fn the_embedded_limiter_and_envoy_give_every_request_the_same_verdict() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("quotas.yaml");
    std::fs::write(&file, RESOURCES).unwrap();
    let envoy = Bootstrap::text(render(&file)).start();
    let port = envoy.port(LISTEN);
    let section = limiter::local::read_section(&file).unwrap_or_else(|e| panic!("{e}"));
    let limits = LocalLimits::builder(&section)
        .clock(FakeClock::new(1_700_000_000_000_000_000))
        .build();

    let steps = steps();
    let mut by_envoy = Vec::new();
    let mut by_limiter = Vec::new();
    for step in &steps {
        let (from, method, host, path, headers) = step;
        let headers = [&[("host", *host)], headers.as_slice()].concat();
        by_envoy.push(
            Client::new(*from)
                .request(method, port, path, &headers)
                .status,
        );
        by_limiter.push(limiter_status(&limits, step));
    }
    let differ: Vec<String> = (steps.iter().zip(by_envoy.iter().zip(&by_limiter)))
        .enumerate()
        .filter(|(_, (_, (e, l)))| e != l)
        .map(|(i, (step, (e, l)))| format!("#{i} {step:?}: envoy {e}, limiter {l}"))
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // Not a sequence nothing limits.
    let refused = by_envoy.iter().filter(|&&s| s == 429).count();
    assert!(refused >= 10 && refused < steps.len() / 2, "{by_envoy:?}");
}
