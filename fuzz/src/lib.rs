//! The fuzz targets' entry points, one function per target, each taking the fuzzer's bytes:
//!
//! - [`quota_file`]: a quota file (reference-format documents and `kind: RateLimit`
//!   resources), loaded, then served: one request per rule it holds, and its `local`
//!   section built into the embedded limiter and checked.
//! - [`xds_config`]: `RateLimitConfig` resources, as an xDS response delivers them.
//! - [`request_json`]: a proto3-JSON `RateLimitRequest`, as `POST /json` takes it, decided.
//! - [`request_path`]: protobuf `RateLimitRequest`s, as gRPC delivers them, decided one
//!   after another on the memory store with a fixed quota set and an injected clock.
//!
//! Every input is served or refused with an error: a panic, or an answer or error that
//! breaks the invariants asserted here, is a finding. `rls/tests/robustness.rs` includes
//! this file as a module and replays the kept corpus and past findings through these same
//! functions on stable Rust.

use std::sync::{Arc, OnceLock};

use config::{Algorithm, ConfigError, LoadOptions, LocalSection, QuotaSet};
use limiter::local::FixedSampler;
use limiter::{Descriptor, FakeClock, LocalLimits};
use prost::Message;
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::Entry;
use proto::rls::rate_limit_response::Code;
use proto::rls::{RateLimitRequest, RateLimitResponse};
use proto::rls_config::RateLimitConfig;
use rls::decide::{AnswerOptions, Decider};
use rls::error::{ErrorKind, RlsError};
use rls::headers::HeaderNames;
use rls::request::RequestBounds;
use rls::snapshot::StatsOptions;
use rls::store::MemoryStore;

/// A target's entry point: the fuzzer's bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/<name>.rs` and of its directories under
/// `fuzz/corpus/` and `fuzz/artifacts/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("quota_file", quota_file),
    ("xds_config", xds_config),
    ("request_json", request_json),
    ("request_path", request_path),
];

/// The request targets' quota set.
const QUOTAS: &str = include_str!("../quotas.yaml");

/// Where the clock starts: 2023-11-14, in nanoseconds since 1970.
const START: u64 = 1_700_000_000_000_000_000;

/// The clock stays below 2^63 ns (the year 2262): the bound up to which the bucket maths
/// is stated exact (`config/src/bounds.rs`); no clock of a running server reaches it.
const CLOCK_END: u64 = 1 << 63;

/// Loads `data` as one quota file twice: with the default options, and with tight ones
/// (domains merged, fixed windows by default, 3 levels, 60 nodes) that small inputs pass.
/// A refusal must name a place inside the file; a set that loads is served.
pub fn quota_file(data: &[u8]) {
    let tight = LoadOptions {
        merge_domains: true,
        default_algorithm: Algorithm::FixedWindow,
        max_depth: 3,
        max_nodes: 60,
    };
    for options in [LoadOptions::default(), tight] {
        let loaded = match std::str::from_utf8(data) {
            Ok(text) => QuotaSet::from_sources([("fuzz.yaml", text)], &options),
            Err(_) => load_file(data, &options),
        };
        match loaded {
            Ok(quotas) => serve(quotas),
            Err(error) => check_refusal(&error, data),
        }
    }
}

/// Decodes `data` as `RateLimitConfig` resources, each length-delimited (as a stream of
/// them is framed), and builds the set they hold as the xDS client does, with the default
/// options and with domains merged; the resources decoded before any undecodable rest.
pub fn xds_config(data: &[u8]) {
    let mut rest = data;
    let mut configs = Vec::new();
    while !rest.is_empty() {
        match RateLimitConfig::decode_length_delimited(&mut rest) {
            Ok(config) => configs.push(config),
            Err(_) => break,
        }
    }
    let merged = LoadOptions {
        merge_domains: true,
        ..LoadOptions::default()
    };
    for options in [LoadOptions::default(), merged] {
        match QuotaSet::from_rate_limit_configs(&configs, &options) {
            Ok(quotas) => serve(quotas),
            Err(error) => assert!(!error.to_string().is_empty()),
        }
    }
}

/// Decodes `data` as `POST /json` does; a request that decodes reads back the same from
/// its own JSON, and is decided twice (the second sees the first's state) with the default
/// answer options and with every option on, each answer written as `/json` writes it.
pub fn request_json(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<RateLimitRequest>(data) else {
        return;
    };
    let json = serde_json::to_vec(&request).expect("a decoded request encodes");
    let again: RateLimitRequest = serde_json::from_slice(&json).expect("and decodes again");
    assert_eq!(again, request, "proto3 JSON round trip");
    for flags in [0, 0x7f] {
        let (decider, _clock) = decider(flags);
        for _ in 0..2 {
            if let Some(answer) = decide(&decider, &request) {
                serde_json::to_vec(&answer).expect("an answer encodes as JSON");
            }
        }
    }
}

/// Decides a run of protobuf requests on one decider. The first byte picks the answer
/// options (bit 0 global shadow mode, 1 response headers, 2 stop-increment, 3 fixed
/// windows for request overrides, 4 global quota mode, 5 dynamic metadata, 6 per-rule
/// counters keeping two values each, with every hit near the limit); then each frame is a clock step (one byte, see
/// [`step`]), a length (two bytes, little-endian) and that many bytes of an encoded
/// request (fewer when the input ends).
pub fn request_path(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let (decider, clock) = decider(flags);
    while let [step_byte, low, high, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*low, *high])).min(tail.len());
        let (message, next) = tail.split_at(len);
        rest = next;
        step(&clock, *step_byte);
        let Ok(request) = RateLimitRequest::decode(message) else {
            continue;
        };
        let again = RateLimitRequest::decode(request.encode_to_vec().as_slice());
        assert_eq!(again.as_ref(), Ok(&request), "protobuf round trip");
        decide(&decider, &request);
    }
}

/// Moves the clock: `0xff` back by a second, any other `b` forward by 2^(b % 64) ns
/// (at most 2^63, about 292 years), staying within `[0, CLOCK_END)`.
fn step(clock: &FakeClock, b: u8) {
    use limiter::Clock;
    let now = clock.now();
    let to = if b == 0xff {
        now.saturating_sub(1_000_000_000)
    } else {
        now.saturating_add(1u64 << (b % 64)).min(CLOCK_END - 1)
    };
    clock.set(to);
}

/// A decider on the fixed quota set, a fresh memory store and a clock at [`START`], with
/// the answer options `flags` picks (see [`request_path`]).
fn decider(flags: u8) -> (Decider<MemoryStore>, FakeClock) {
    let quotas = QuotaSet::from_sources([("quotas.yaml", QUOTAS)], &LoadOptions::default())
        .expect("the request targets' quota set loads");
    let options = AnswerOptions {
        global_shadow: flags & 1 != 0,
        global_quota: flags & 16 != 0,
        dynamic_metadata: flags & 32 != 0,
        stats: if flags & 64 != 0 {
            StatsOptions {
                near_limit_ratio: 0.0,
                max_values: 2,
            }
        } else {
            StatsOptions::default()
        },
        headers: (flags & 2 != 0).then(HeaderNames::default),
        stop_increment: flags & 4 != 0,
        default_algorithm: if flags & 8 != 0 {
            Algorithm::FixedWindow
        } else {
            Algorithm::TokenBucket
        },
        bounds: RequestBounds::DEFAULT,
        max_concurrent: None,
    };
    let clock = FakeClock::new(START);
    let decider = Decider::new(quotas, MemoryStore::new(), Arc::new(clock.clone()), options);
    (decider, clock)
}

/// Decides `request`: an answer with one status per descriptor, or a refusal of the
/// request as malformed (the memory store has no other failure).
fn decide(decider: &Decider<MemoryStore>, request: &RateLimitRequest) -> Option<RateLimitResponse> {
    let outcome = runtime().block_on(decider.decide(request));
    match outcome {
        Ok(answer) => {
            check_answer(request, &answer);
            Some(answer)
        }
        Err(error) => {
            check_error(&error);
            None
        }
    }
}

fn check_answer(request: &RateLimitRequest, answer: &RateLimitResponse) {
    assert_eq!(answer.statuses.len(), request.descriptors.len());
    let codes = [Code::Ok as i32, Code::OverLimit as i32];
    assert!(codes.contains(&answer.overall_code), "{answer:?}");
    assert!(answer.statuses.iter().all(|s| codes.contains(&s.code)));
    let over = answer
        .statuses
        .iter()
        .any(|s| s.code == Code::OverLimit as i32);
    if answer.overall_code == Code::OverLimit as i32 {
        assert!(over, "over limit with no descriptor over: {answer:?}");
    }
    answer.encode_to_vec();
}

fn check_error(error: &RlsError) {
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    assert!(!error.to_string().is_empty());
}

/// One current-thread runtime per thread: the memory store answers without waiting, so a
/// decision is one poll.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

/// Bytes that are not UTF-8 reach the loader only from a file: written to one of this
/// process's own, then loaded.
fn load_file(data: &[u8], options: &LoadOptions) -> Result<QuotaSet, ConfigError> {
    let path = std::env::temp_dir().join(format!("rls-fuzz-{}.yaml", std::process::id()));
    std::fs::write(&path, data).expect("a temporary file");
    let loaded = QuotaSet::load(&path, options);
    let _ = std::fs::remove_file(&path);
    loaded
}

/// A refusal names a place in the file: line 1 to one past its last, column 1 or more.
/// Lines end as YAML ends them: at `\n`, `\r\n` or a lone `\r`.
fn check_refusal(error: &ConfigError, data: &[u8]) {
    let message = error.to_string();
    assert!(!message.is_empty());
    let Some(at) = error.position() else {
        return;
    };
    let lone_cr = data
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\r' && data.get(i + 1) != Some(&b'\n'))
        .count();
    let lines = data.iter().filter(|&&b| b == b'\n').count() + lone_cr + 1;
    assert!(at.line >= 1 && at.column >= 1, "{message}");
    assert!(
        at.line as usize <= lines,
        "{message}: past the file's {lines} lines"
    );
}

/// Serves a loaded set: describes it as `rls check` does; per domain, one request with a
/// descriptor per rule (the rule's keys, every value `v`), decided twice a second apart;
/// and its `local` section, if any, built and checked.
fn serve(quotas: QuotaSet) {
    let _ = rls::summary::describe(&quotas);
    let mut requests = Vec::new();
    for domain in quotas.domains() {
        let mut descriptors = Vec::new();
        for rule in domain.rules().take(RequestBounds::DEFAULT.max_descriptors) {
            let entries: Vec<(&str, &str)> = rule.keys().map(|key| (key, "v")).collect();
            let _ = domain.resolve(&entries);
            let _ = rule.stats_key_for(&entries);
            descriptors.push(RateLimitDescriptor {
                entries: entries
                    .iter()
                    .map(|(key, value)| Entry {
                        key: (*key).to_owned(),
                        value: (*value).to_owned(),
                    })
                    .collect(),
                ..Default::default()
            });
        }
        requests.push(RateLimitRequest {
            domain: domain.name().to_owned(),
            descriptors,
            hits_addend: 1,
        });
    }
    if let Some(section) = quotas.local() {
        check_local(section);
    }
    let clock = FakeClock::new(START);
    let options = AnswerOptions::default();
    let decider = Decider::new(quotas, MemoryStore::new(), Arc::new(clock.clone()), options);
    for request in &requests {
        decide(&decider, request);
        clock.advance(std::time::Duration::from_secs(1));
        decide(&decider, request);
    }
}

/// Checks each local descriptor's own entries (a value for each wildcard), then an empty
/// request, twice a second apart.
fn check_local(section: &LocalSection) {
    let clock = FakeClock::new(START);
    let limits = LocalLimits::builder(section)
        .clock(clock.clone())
        .sampler(FixedSampler(0))
        .build();
    let mut requests: Vec<Vec<Descriptor<'_>>> = section
        .descriptors
        .iter()
        .map(|d| {
            let entries = d.entries.iter().map(|e| {
                let value = e.value.as_deref().unwrap_or("v");
                (e.key.as_str(), value)
            });
            vec![Descriptor::new(entries)]
        })
        .collect();
    requests.push(Vec::new());
    for request in &requests {
        limits.check(request);
        clock.advance(std::time::Duration::from_secs(1));
        limits.check(request);
    }
}
