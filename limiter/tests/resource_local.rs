//! The `mode: local` rules of `kind: RateLimit` resources, enforced by the embedded limiter
//! as Envoy's `local_ratelimit` enforces what `rls render` prints for them: the shipped
//! example (`config/examples/ratelimit-pod-limits.yaml`) rule by rule, the virtual hosts,
//! one filter per resource, reload, and the tower layer. Time is a [`FakeClock`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use limiter::{FakeClock, LocalLimits, Outcome, RateLimitLayer, local};
use tower::{Service, ServiceExt};

const START: u64 = 1_700_000_000_000_000_000;
const HOST: &str = "checkout.example.com";
const ME: [u8; 4] = [192, 0, 2, 1];
const OTHER: [u8; 4] = [192, 0, 2, 2];
const OFFICE: [u8; 4] = [10, 20, 3, 4];

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/examples/ratelimit-pod-limits.yaml")
}

/// The example's limits on a fake clock.
fn pod_limits() -> (LocalLimits, FakeClock) {
    let section = local::read_section(&example()).unwrap_or_else(|e| panic!("{e}"));
    let clock = FakeClock::new(START);
    let limits = LocalLimits::builder(&section).clock(clock.clone()).build();
    (limits, clock)
}

fn limits_of(yaml: &str) -> (LocalLimits, FakeClock) {
    let section = local::parse_section("r.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let clock = FakeClock::new(START);
    let limits = LocalLimits::builder(&section).clock(clock.clone()).build();
    (limits, clock)
}

/// A request from `from` for `method path` on `host`, with `headers`.
fn request(
    from: [u8; 4],
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Request<()> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(()).unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from((from, 40_000)));
    request
}

/// Signed in: the `anonymous` rule does not count these.
const SIGNED: &[(&str, &str)] = &[("authorization", "Bearer t")];

/// How many of `n` identical requests pass before the first refusal, and whether every one
/// after it is refused.
fn passed(limits: &LocalLimits, n: usize, make: impl Fn() -> http::Request<()>) -> usize {
    let verdicts: Vec<bool> = (0..n)
        .map(|_| limits.check_request(&make()).is_denied())
        .collect();
    let first = verdicts.iter().position(|&denied| denied).unwrap_or(n);
    assert!(verdicts[first..].iter().all(|&d| d), "{verdicts:?}");
    first
}

#[test]
fn each_host_keeps_its_own_pod_bucket_and_other_hosts_are_never_limited() {
    let (limits, clock) = pod_limits();
    let get = || request(ME, "GET", HOST, "/", SIGNED);
    assert_eq!(passed(&limits, 150, get), 100, "rule all: burst 100");
    // Other hosts have no rules; hosts are told apart as Envoy's virtual hosts are.
    for host in [
        "other.example.com",
        "checkout.shop.svc.cluster.local",
        "example.com",
    ] {
        let other = || request(ME, "GET", host, "/", SIGNED);
        assert_eq!(passed(&limits, 300, other), 300, "{host}");
    }
    // The host is case-insensitive.
    let upper = request(ME, "GET", "Checkout.Example.COM", "/", SIGNED);
    assert!(limits.check_request(&upper).is_denied());
    // Each host is a virtual host with buckets of its own, as in Envoy.
    let svc = || {
        request(
            ME,
            "GET",
            "checkout.shop.svc.cluster.local:8080",
            "/",
            SIGNED,
        )
    };
    assert_eq!(passed(&limits, 150, svc), 100);
    // 50 a second: one token every 20 ms.
    clock.advance(Duration::from_millis(20));
    assert!(!limits.check_request(&get()).is_denied());
    assert!(limits.check_request(&get()).is_denied());
}

#[test]
fn per_client_address_rules_keep_a_bucket_per_client() {
    let (limits, _) = pod_limits();
    let cart = |from| move || request(from, "GET", HOST, "/cart/items", SIGNED);
    assert_eq!(passed(&limits, 20, cart(ME)), 10);
    assert_eq!(passed(&limits, 20, cart(OTHER)), 10);
    // /cart is a prefix test: /basket is not counted by it.
    let basket = || request(ME, "GET", HOST, "/basket", SIGNED);
    assert_eq!(passed(&limits, 50, basket), 50);
}

#[test]
fn per_header_rules_keep_a_bucket_per_value_and_skip_requests_without_it() {
    let (limits, _) = pod_limits();
    let pay = |tenant: &'static str| {
        move || request(ME, "POST", HOST, "/pay", &[SIGNED[0], ("x-tenant", tenant)])
    };
    assert_eq!(passed(&limits, 30, pay("acme")), 20);
    assert_eq!(passed(&limits, 30, pay("globex")), 20);
    // Not POST, or no x-tenant: the rule does not count them.
    let get = || request(ME, "GET", HOST, "/pay", &[SIGNED[0], ("x-tenant", "acme")]);
    let untenanted = || request(OTHER, "POST", HOST, "/pay", SIGNED);
    assert_eq!(passed(&limits, 10, get), 10);
    assert_eq!(passed(&limits, 10, untenanted), 10);
}

#[test]
fn a_rule_with_a_cost_takes_that_many_tokens_and_regexes_match_whole_values() {
    let (limits, _) = pod_limits();
    let receipt = |format: &'static str| {
        move || {
            request(
                ME,
                "GET",
                HOST,
                "/r",
                &[SIGNED[0], ("x-receipt-format", format)],
            )
        }
    };
    // 60 tokens, 5 a request; pdf and csv share the rule's one bucket.
    assert_eq!(passed(&limits, 6, receipt("pdf")), 6);
    assert_eq!(passed(&limits, 10, receipt("csv")), 6);
    let (limits, _) = pod_limits();
    assert_eq!(passed(&limits, 40, receipt("pdfx")), 40);
    assert_eq!(passed(&limits, 40, receipt("xpdf")), 40);
}

#[test]
fn an_inverted_present_test_counts_requests_without_the_header() {
    let (limits, _) = pod_limits();
    let anonymous = || request(ME, "GET", HOST, "/", &[]);
    assert_eq!(passed(&limits, 40, anonymous), 30);
    let signed = || request(ME, "GET", HOST, "/", SIGNED);
    assert_eq!(passed(&limits, 10, signed), 10);
}

#[test]
fn a_shadow_rule_lets_everything_through_and_says_so() {
    let (limits, _) = pod_limits();
    let office = || request(OFFICE, "GET", HOST, "/", SIGNED);
    let outcomes: Vec<Outcome> = (0..8)
        .map(|_| limits.check_request(&office()).outcome)
        .collect();
    assert_eq!(outcomes[..5], [Outcome::Allowed; 5]);
    assert_eq!(outcomes[5..], [Outcome::Shadowed; 3]);
    // Outside 10.20.0.0/16 the rule does not count.
    let outside = || request(ME, "GET", HOST, "/", SIGNED);
    assert!(
        (0..8).all(|_| limits.check_request(&outside()).outcome == Outcome::Allowed),
        "outside the range"
    );
}

const TWO_RESOURCES: &str = "
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: wide}
spec:
  hosts: ['*.example.com', shop.example.com]
  mode: local
  quota: 3
  unit: hour
---
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: narrow}
spec:
  hosts: [shop.example.com, 'api.example.*']
  mode: local
  quota: 1
  unit: minute
---
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: elsewhere}
spec:
  hosts: [api.example.com]
  quota: 1
  unit: hour
";

#[test]
fn each_resource_is_a_filter_of_its_own_charged_in_load_order() {
    let (limits, clock) = limits_of(TWO_RESOURCES);
    let shop = || request(ME, "GET", "shop.example.com", "/", &[]);
    // `wide` (3 an hour) is charged before `narrow` (1 a minute), as Envoy runs their
    // filters in load order: its tokens go even when `narrow` refuses.
    assert_eq!(passed(&limits, 3, shop), 1);
    clock.advance(Duration::from_secs(60));
    // `narrow` has a token again; `wide` was charged three times and has none.
    assert!(limits.check_request(&shop()).is_denied());
}

#[test]
fn a_request_counts_for_the_resources_of_the_one_virtual_host_it_selects() {
    let (limits, _) = limits_of(TWO_RESOURCES);
    // www.example.com selects *.example.com: only `wide`.
    let www = || request(ME, "GET", "www.example.com", "/", &[]);
    assert_eq!(passed(&limits, 5, www), 3);
    // api.example.com selects itself, a host of the global `elsewhere` only: no local
    // rule counts it, though `*.example.com` and `api.example.*` would match it.
    let api = || request(ME, "GET", "api.example.com", "/", &[]);
    assert_eq!(passed(&limits, 10, api), 10);
    // api.example.org selects `api.example.*`: `narrow`.
    let org = || request(ME, "GET", "api.example.org", "/", &[]);
    assert_eq!(passed(&limits, 3, org), 1);
    // No Host at all selects nothing.
    let mut bare = request(ME, "GET", "x", "/", &[]);
    bare.headers_mut().remove("host");
    assert!(!limits.check_request(&bare).is_denied());
}

#[test]
fn a_reload_keeps_each_rules_bucket_and_applies_its_new_quota() {
    let dir = std::env::temp_dir().join(format!("limiter-resource-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("quotas.yaml");
    let resource = |quota: u32| {
        format!(
            "apiVersion: quota.rls.dev/v1alpha1\nkind: RateLimit\nmetadata: {{name: page}}\n\
             spec:\n  hosts: [page.test]\n  rules:\n    - {{name: one, mode: local, quota: {quota}, unit: hour}}\n"
        )
    };
    std::fs::write(&file, resource(2)).unwrap();
    assert!(LocalLimits::from_quota_file(&file).is_ok());
    let clock = FakeClock::new(START);
    let section = local::read_section(&file).unwrap();
    let limits = LocalLimits::builder(&section).clock(clock.clone()).build();
    let page = || request(ME, "GET", "page.test", "/", &[]);
    assert_eq!(passed(&limits, 4, page), 2);
    // A broken edit changes nothing.
    std::fs::write(&file, resource(0)).unwrap();
    let refused = limits
        .reload_from_quota_file(&file)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("spec.rules[0].quota"), "{refused}");
    assert!(limits.check_request(&page()).is_denied());
    // A larger quota: the same bucket, still empty, now refilled 5 an hour (one token
    // every 12 minutes, where the old quota took 30).
    std::fs::write(&file, resource(5)).unwrap();
    limits.reload_from_quota_file(&file).unwrap();
    assert!(limits.check_request(&page()).is_denied());
    clock.advance(Duration::from_secs(12 * 60));
    assert_eq!(passed(&limits, 3, page), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_tower_layer_answers_429_for_a_refused_local_rule() {
    let (limits, _) = pod_limits();
    let service = tower::service_fn(|_: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    });
    let mut service = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::new(limits))
        .service(service);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (parts, ()) = request(ME, "GET", HOST, "/cart", SIGNED).into_parts();
        let request = http::Request::from_parts(parts, String::new());
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [[200; 10].as_slice(), &[429, 429]].concat());
}

#[test]
fn an_inverted_test_counts_requests_without_the_header_and_any_line_of_a_header_matches() {
    let (limits, _) = limits_of(
        "
apiVersion: quota.rls.dev/v1alpha1
kind: RateLimit
metadata: {name: env}
spec:
  hosts: [h.test]
  rules:
    - name: not-prod
      mode: local
      match: {headers: [{key: x-env, value: prod, invert: true}]}
      quota: 2
      unit: hour
    - name: tags
      mode: local
      match: {headers: [{key: x-tag, matchType: regex, value: b}]}
      quota: 1
      unit: hour
",
    );
    let env = |value: Option<&'static str>| {
        move || {
            let headers: Vec<(&str, &str)> = value.map(|v| ("x-env", v)).into_iter().collect();
            request(ME, "GET", "h.test", "/", &headers)
        }
    };
    assert_eq!(passed(&limits, 5, env(Some("prod"))), 5);
    // An absent header is tested as empty, which is not "prod": counted.
    assert_eq!(passed(&limits, 5, env(None)), 2);
    // A header sent on two lines passes when one line does, as in Envoy.
    let tags = || {
        let mut request = request(
            ME,
            "GET",
            "h.test",
            "/",
            &[("x-env", "prod"), ("x-tag", "a")],
        );
        request
            .headers_mut()
            .append("x-tag", http::HeaderValue::from_static("b"));
        request
    };
    assert_eq!(passed(&limits, 3, tags), 1);
}
