//! The parity table: Envoy's `local_ratelimit` rules as scenarios of (time, request, expected
//! outcome, headers), each run through the tower layer on a fake clock with scripted
//! randomness. A step's expectation reads `outcome limit remaining reset retry-after`, the
//! header values (`-` when absent), e.g. `denied 3 0 1 1`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use limiter::local::{self, RateLimit, Sampler};
use limiter::{FakeClock, LocalLimits, Outcome, Verdict};
use tower::{Service, service_fn};

const START: u64 = 1_700_000_000_000_000_000;

struct Scenario {
    /// The Envoy rule it shows, as a sentence.
    rule: &'static str,
    /// The `local` section.
    yaml: &'static str,
    /// Draws the sampler returns, in order (then 0).
    draws: &'static [u32],
    /// (milliseconds after start, request headers `name: value; ...`, expected).
    steps: &'static [(u64, &'static str, &'static str)],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        rule: "the default bucket starts full at max_tokens, tokens_per_fill defaults to 1, and \
               the request after the last token is refused",
        yaml: "token_bucket: {max_tokens: 3, fill_interval: 1s}",
        draws: &[],
        steps: &[
            (0, "", "allowed 3 2 0 -"),
            (0, "", "allowed 3 1 0 -"),
            (0, "", "allowed 3 0 1 -"),
            (0, "", "denied 3 0 1 1"),
            (999, "", "denied 3 0 1 1"),
            (1000, "", "allowed 3 0 1 -"),
        ],
    },
    Scenario {
        rule: "tokens refill continuously at tokens_per_fill per fill_interval, up to max_tokens",
        yaml: "token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 1s}",
        draws: &[],
        steps: &[
            (0, "", "allowed 2 1 0 -"),
            (0, "", "allowed 2 0 1 -"),
            (499, "", "denied 2 0 1 1"),
            (500, "", "allowed 2 0 1 -"),
            (1500, "", "allowed 2 1 0 -"),
            (60_000, "", "allowed 2 1 0 -"),
        ],
    },
    Scenario {
        rule: "an empty value is a wildcard: one bucket per distinct value",
        yaml: "descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]",
        draws: &[],
        steps: &[
            (0, "x-user: alice", "allowed 1 0 60 -"),
            (0, "x-user: alice", "denied 1 0 60 60"),
            (0, "x-user: bob", "allowed 1 0 60 -"),
            // No header, no descriptor, and no default bucket: nothing limits it.
            (0, "", "allowed - - - -"),
        ],
    },
    Scenario {
        rule: "a descriptor with exactly the request's entries wins over a wildcard",
        yaml: "descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
    - entries: [{key: user, value: admin}]
      token_bucket: {max_tokens: 3, fill_interval: 1m}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]",
        draws: &[],
        steps: &[
            (0, "x-user: admin", "allowed 3 2 0 -"),
            (0, "x-user: admin", "allowed 3 1 0 -"),
            (0, "x-user: alice", "allowed 1 0 60 -"),
            (0, "x-user: alice", "denied 1 0 60 60"),
        ],
    },
    Scenario {
        rule: "matched descriptors are charged strictest first, and a refusal stops before the \
               laxer ones are charged",
        yaml: "descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 5, tokens_per_fill: 5, fill_interval: 1s}
    - entries: [{key: tier, value: free}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]
    - actions: [{request_headers: {header_name: x-tier, descriptor_key: tier}}]",
        draws: &[],
        steps: &[
            // The slower tier bucket is charged (and reported) first.
            (0, "x-user: alice; x-tier: free", "allowed 1 0 60 -"),
            (0, "x-user: alice; x-tier: free", "denied 1 0 60 60"),
            // alice's bucket was charged once: the refusal came before it.
            (0, "x-user: alice", "allowed 5 3 0 -"),
        ],
    },
    Scenario {
        rule: "the first refusal denies without refunding buckets already charged",
        yaml: "descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 10, tokens_per_fill: 1, fill_interval: 1s}
    - entries: [{key: burst, value: 'on'}]
      token_bucket: {max_tokens: 1, tokens_per_fill: 10, fill_interval: 1s}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]
    - actions: [{request_headers: {header_name: x-burst, descriptor_key: burst}}]",
        draws: &[],
        steps: &[
            // user refills at 1/s, burst at 10/s: user is charged first.
            (0, "x-user: alice; x-burst: on", "allowed 10 9 0 -"),
            (0, "x-user: alice; x-burst: on", "denied 1 0 1 1"),
            // The refused request's token stays taken from alice's bucket.
            (0, "x-user: alice", "allowed 10 7 0 -"),
        ],
    },
    Scenario {
        rule: "always_consume_default_token_bucket (default true) charges the default bucket \
               even when a descriptor matched",
        yaml: "token_bucket: {max_tokens: 1, fill_interval: 1s}
  descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 10, fill_interval: 1s}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]",
        draws: &[],
        steps: &[
            // Headers report the matched descriptor; the default refuses the second.
            (0, "x-user: alice", "allowed 10 9 0 -"),
            (0, "x-user: bob", "denied 1 0 1 1"),
            (1000, "x-user: bob", "allowed 10 9 0 -"),
        ],
    },
    Scenario {
        rule: "with always_consume_default_token_bucket false the default bucket is charged \
               only when nothing matched",
        yaml: "token_bucket: {max_tokens: 1, fill_interval: 1s}
  always_consume_default_token_bucket: false
  descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 10, fill_interval: 1s}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]",
        draws: &[],
        steps: &[
            (0, "x-user: alice", "allowed 10 9 0 -"),
            (0, "x-user: bob", "allowed 10 9 0 -"),
            (0, "", "allowed 1 0 1 -"),
            (0, "", "denied 1 0 1 1"),
            (0, "x-user: alice", "allowed 10 8 0 -"),
        ],
    },
    Scenario {
        rule: "keys must match in number and order",
        yaml: "token_bucket: {max_tokens: 100, fill_interval: 1s}
  always_consume_default_token_bucket: false
  descriptors:
    - entries: [{key: a, value: '1'}, {key: b, value: '2'}]
      token_bucket: {max_tokens: 1, fill_interval: 1s}
  rate_limits:
    - actions:
        - request_headers: {header_name: x-a, descriptor_key: a, skip_if_absent: true}
        - request_headers: {header_name: x-b, descriptor_key: b, skip_if_absent: true}
    - actions:
        - request_headers: {header_name: x-b, descriptor_key: b}
        - request_headers: {header_name: x-a, descriptor_key: a}",
        draws: &[],
        steps: &[
            // Gives (a,1),(b,2), which matches, and (b,2),(a,1), which does not.
            (0, "x-a: 1; x-b: 2", "allowed 1 0 1 -"),
            (0, "x-a: 1; x-b: 2", "denied 1 0 1 1"),
            // Only (a,1): one entry short of the descriptor; the default bucket decides.
            (0, "x-a: 1", "allowed 100 99 0 -"),
        ],
    },
    Scenario {
        rule: "hits_addend takes several tokens, and a cost above what is left is refused \
               while reporting what is left",
        yaml: "descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 5, tokens_per_fill: 1, fill_interval: 1s}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]
      hits_addend: 3",
        draws: &[],
        steps: &[
            (0, "x-user: alice", "allowed 5 2 0 -"),
            // 3 tokens wanted, 2 left: retry when the third has refilled.
            (0, "x-user: alice", "denied 5 2 0 1"),
            (1000, "x-user: alice", "allowed 5 0 1 -"),
        ],
    },
    Scenario {
        rule: "a cost above max_tokens can never pass: no retry-after",
        yaml: "descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 5, fill_interval: 1s}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]
      hits_addend: 6",
        draws: &[],
        steps: &[(0, "x-user: alice", "denied 5 5 0 -")],
    },
    Scenario {
        rule: "a negative hits_addend gives tokens back, never past max_tokens",
        yaml: "descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 2, fill_interval: 1m}
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]
    - actions: [{request_headers: {header_name: x-refund, descriptor_key: user}}]
      hits_addend: -1",
        draws: &[],
        steps: &[
            (0, "x-user: alice", "allowed 2 1 0 -"),
            (0, "x-user: alice", "allowed 2 0 60 -"),
            (0, "x-user: alice", "denied 2 0 60 60"),
            (0, "x-refund: alice", "allowed 2 1 0 -"),
            (0, "x-refund: alice", "allowed 2 2 0 -"),
            (0, "x-refund: alice", "allowed 2 2 0 -"),
        ],
    },
    Scenario {
        rule: "max_tokens 0 always refuses, with no reset or retry-after",
        yaml: "descriptors:
    - entries: [{key: path, value: /admin}]
      token_bucket: {max_tokens: 0, fill_interval: 1s}
  rate_limits:
    - actions: [{request_headers: {header_name: ':path', descriptor_key: path}}]",
        draws: &[],
        steps: &[
            (0, ":path /admin", "denied 0 0 - -"),
            (3_600_000, ":path /admin", "denied 0 0 - -"),
            (0, ":path /", "allowed - - - -"),
        ],
    },
    Scenario {
        rule: "a shadow_mode descriptor is charged and reported but never refuses",
        yaml: "token_bucket: {max_tokens: 2, fill_interval: 1m}
  descriptors:
    - entries: [{key: user}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
      shadow_mode: true
  rate_limits:
    - actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]",
        draws: &[],
        steps: &[
            (0, "x-user: alice", "allowed 1 0 60 -"),
            (0, "x-user: alice", "shadowed 1 0 60 -"),
            // The default bucket still enforces.
            (0, "x-user: alice", "denied 2 0 60 60"),
        ],
    },
    Scenario {
        rule: "filter_enabled 0% checks nothing and takes no token",
        yaml: "token_bucket: {max_tokens: 1, fill_interval: 1m}
  filter_enabled: 0",
        draws: &[],
        steps: &[(0, "", "skipped - - - -"), (0, "", "skipped - - - -")],
    },
    Scenario {
        rule: "filter_enforced 0% reports a refusal but lets the request through",
        yaml: "token_bucket: {max_tokens: 1, fill_interval: 1m}
  filter_enforced: 0",
        draws: &[],
        steps: &[
            (0, "", "allowed 1 0 60 -"),
            (0, "", "not_enforced 1 0 60 -"),
        ],
    },
    Scenario {
        rule: "fractions draw per request: checked when the draw is below filter_enabled, \
               refused when below filter_enforced",
        yaml: "token_bucket: {max_tokens: 1, fill_interval: 1m}
  filter_enabled: 50
  filter_enforced: 25",
        // enabled? yes; enabled? no; enabled? yes, enforced? no; yes, yes.
        draws: &[100, 600_000, 0, 300_000, 499_999, 249_999],
        steps: &[
            (0, "", "allowed 1 0 60 -"),
            (0, "", "skipped - - - -"),
            (0, "", "not_enforced 1 0 60 -"),
            (0, "", "denied 1 0 60 60"),
        ],
    },
    Scenario {
        rule: "an action that finds nothing drops its descriptor; skip_if_absent drops only \
               the entry",
        yaml: "token_bucket: {max_tokens: 100, fill_interval: 1s}
  always_consume_default_token_bucket: false
  descriptors:
    - entries: [{key: user, value: alice}, {key: tier, value: gold}]
      token_bucket: {max_tokens: 7, fill_interval: 1s}
    - entries: [{key: user, value: alice}]
      token_bucket: {max_tokens: 3, fill_interval: 1s}
  rate_limits:
    - actions:
        - request_headers: {header_name: x-user, descriptor_key: user}
        - request_headers: {header_name: x-tier, descriptor_key: tier, skip_if_absent: true}
    - actions:
        - request_headers: {header_name: x-user, descriptor_key: user}
        - request_headers: {header_name: x-missing, descriptor_key: never}",
        draws: &[],
        steps: &[
            (0, "x-user: alice; x-tier: gold", "allowed 7 6 0 -"),
            (0, "x-user: alice", "allowed 3 2 0 -"),
            (0, "", "allowed 100 99 0 -"),
        ],
    },
    Scenario {
        rule: "header_value_match adds its entry only when the headers match as expected",
        yaml: "descriptors:
    - entries: [{key: header_match, value: writes}]
      token_bucket: {max_tokens: 1, fill_interval: 1m}
  rate_limits:
    - actions:
        - header_value_match:
            descriptor_value: writes
            expect_match: false
            headers: [{name: ':method', exact: GET}]",
        draws: &[],
        steps: &[
            (0, ":method POST", "allowed 1 0 60 -"),
            (0, ":method GET", "allowed - - - -"),
            (0, ":method PUT", "denied 1 0 60 60"),
        ],
    },
    Scenario {
        rule: "enable_x_ratelimit_headers OFF sends no x-ratelimit headers, retry-after stays",
        yaml: "token_bucket: {max_tokens: 1, fill_interval: 1s}
  enable_x_ratelimit_headers: 'OFF'",
        draws: &[],
        steps: &[(0, "", "allowed - - - -"), (0, "", "denied - - - 1")],
    },
];

/// Returns the scripted draws, then 0.
struct ScriptedSampler(Mutex<VecDeque<u32>>);

impl Sampler for ScriptedSampler {
    fn draw(&self) -> u32 {
        self.0.lock().unwrap().pop_front().unwrap_or(0)
    }
}

/// Polls a future that must be ready at once (the layer and the inner service never wait).
fn now_or_never<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the layer waited"),
    }
}

/// `name: value; ...`, where `:path X` and `:method X` set the request line.
fn request(spec: &str) -> Request<()> {
    let mut builder = Request::builder();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        builder = match part.split_once(' ') {
            Some((":path", path)) => builder.uri(path),
            Some((":method", method)) => builder.method(method),
            _ => {
                let (name, value) = part.split_once(": ").expect("name: value");
                builder.header(name, value)
            }
        };
    }
    builder.body(()).unwrap()
}

fn outcome_name(verdict: Option<&Verdict>) -> &'static str {
    match verdict.map(|v| v.outcome) {
        None => "denied",
        Some(Outcome::Skipped) => "skipped",
        Some(Outcome::Allowed) => "allowed",
        Some(Outcome::Shadowed) => "shadowed",
        Some(Outcome::NotEnforced { .. }) => "not_enforced",
        Some(Outcome::Denied { .. }) => unreachable!("a denied request reached the service"),
    }
}

#[test]
fn every_scenario_of_the_parity_table_holds() {
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        let yaml = format!("local:\n  {}\n", scenario.yaml);
        let section = local::parse_section("parity.yaml", &yaml)
            .unwrap_or_else(|e| panic!("{}: {e}", scenario.rule));
        let clock = FakeClock::new(START);
        let sampler = ScriptedSampler(Mutex::new(scenario.draws.iter().copied().collect()));
        let limits = LocalLimits::builder(&section)
            .clock(clock.clone())
            .sampler(sampler)
            .build();
        // The inner service names the outcome it was handed, so passes can be told apart.
        let inner = service_fn(|req: Request<()>| async move {
            let name = outcome_name(req.extensions().get::<Verdict>());
            Ok::<_, std::convert::Infallible>(Response::new(name.to_owned()))
        });
        let mut service = RateLimit::new(inner, limits);
        for (i, &(ms, headers, expected)) in scenario.steps.iter().enumerate() {
            clock.set(START + ms * 1_000_000);
            let response = now_or_never(service.call(request(headers))).unwrap();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
            };
            let outcome = match response.status().as_u16() {
                200 => response.body().clone(),
                429 => "denied".to_owned(),
                other => format!("status {other}"),
            };
            let got = format!(
                "{outcome} {} {} {} {}",
                header("x-ratelimit-limit"),
                header("x-ratelimit-remaining"),
                header("x-ratelimit-reset"),
                header("retry-after"),
            );
            if got != expected {
                failures.push(format!(
                    "{}\n  step {i} at {ms} ms [{headers}]: expected {expected}, got {got}",
                    scenario.rule
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_refused_request_never_reaches_the_service() {
    let section = local::parse_section(
        "p.yaml",
        "local:\n  token_bucket: {max_tokens: 1, fill_interval: 1s}\n",
    )
    .unwrap();
    let limits = LocalLimits::builder(&section)
        .clock(FakeClock::new(START))
        .build();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let mut service = RateLimit::new(
        service_fn(|_: Request<()>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(
                String::new(),
            )))
        }),
        limits,
    );
    for _ in 0..3 {
        now_or_never(service.call(request(""))).unwrap();
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
}
