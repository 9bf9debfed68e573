//! Every input is served or refused with an error, never a panic: the fuzz targets' kept
//! inputs replayed, and property tests over random quota files (YAML trees shaped like
//! quota files, and free ones), random descriptor sets and huge values, all checked by the
//! fuzz targets' own entry points (`fuzz/src/lib.rs`, included here), on stable Rust.

use std::path::{Path, PathBuf};

use pbjson_types::UInt64Value;
use proptest::prelude::*;
use prost::Message;
use proto::common::RateLimitDescriptor;
use proto::common::rate_limit_descriptor::{Entry, RateLimitOverride};
use proto::rls::RateLimitRequest;

#[path = "../../fuzz/src/lib.rs"]
mod entries;

#[path = "robustness/yaml.rs"]
mod yaml;

use yaml::Yaml;

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = listing
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Each target's corpus (`fuzz/corpus/<target>`) and the inputs that once failed it
/// (`fuzz/artifacts/<target>`, the regression cases).
#[test]
fn every_kept_fuzz_input_is_served_or_refused_without_panicking() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for &(target, entry) in entries::TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(target));
        assert!(
            corpus.len() >= 4,
            "fuzz/corpus/{target} holds {} inputs: the replay would prove little",
            corpus.len()
        );
        let artifacts = inputs(&fuzz.join("artifacts").join(target));
        for file in corpus.iter().chain(&artifacts) {
            let data = std::fs::read(file).expect("a kept input");
            let replayed = std::panic::catch_unwind(|| entry(&data));
            assert!(replayed.is_ok(), "{target} panicked on {}", file.display());
        }
    }
}

/// The keys a request's descriptors use: the request targets' rules' keys, and one no
/// rule has.
const KEYS: &[&str] = &[
    "remote_address",
    "path",
    "tenant",
    "method",
    "user",
    "internal",
    "closed",
    "k",
    "tracked",
    "sub",
    "nobody",
];

/// Values the rules match (exactly, by prefix, none), empty, and long.
fn values() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["/api/users", "/api/", "/login", "/static/x", "POST", "GET", "slow", "v"])
            .prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => "\\PC{0,12}",
        1 => (1usize..=4).prop_map(|k| "x".repeat(k * 20_000)),
    ]
}

/// Numbers at and around the edges of the fields' types.
fn huge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..5,
        Just(u32::MAX),
        Just(u32::MAX - 1),
        Just(1 << 31),
        any::<u32>()
    ]
}

fn huge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..5,
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        any::<u64>()
    ]
}

fn descriptor() -> impl Strategy<Value = RateLimitDescriptor> {
    let entry = (prop::sample::select(KEYS), values()).prop_map(|(key, value)| Entry {
        key: key.to_owned(),
        value,
    });
    // Units past the enum's last (WEEK, 7) arrive from a newer or broken client.
    let limit = (huge_u32(), -1i32..10).prop_map(|(requests_per_unit, unit)| RateLimitOverride {
        requests_per_unit,
        unit,
    });
    (
        prop::collection::vec(entry, 0..5),
        prop::option::weighted(0.2, limit),
        prop::option::weighted(0.2, huge_u64()),
    )
        .prop_map(|(entries, limit, hits_addend)| RateLimitDescriptor {
            entries,
            limit,
            hits_addend: hits_addend.map(|value| UInt64Value { value }),
        })
}

fn request() -> impl Strategy<Value = RateLimitRequest> {
    let domain = prop_oneof![
        4 => Just("edge".to_owned()),
        2 => Just("windows".to_owned()),
        1 => Just(String::new()),
        1 => "[a-z]{1,6}",
    ];
    let descriptors = prop_oneof![
        8 => prop::collection::vec(descriptor(), 0..6),
        1 => prop::collection::vec(descriptor(), 60..70),
    ];
    (domain, descriptors, huge_u32()).prop_map(|(domain, descriptors, hits_addend)| {
        RateLimitRequest {
            domain,
            descriptors,
            hits_addend,
        }
    })
}

/// `request_path`'s input: the options byte, then per request a clock step, its length
/// and its encoding.
fn frames(flags: u8, requests: &[(u8, RateLimitRequest)]) -> Vec<u8> {
    let mut data = vec![flags];
    for (step, request) in requests {
        let encoded = request.encode_to_vec();
        let len = u16::try_from(encoded.len()).unwrap_or(u16::MAX);
        data.push(*step);
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(&encoded[..usize::from(len)]);
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Runs of random requests (descriptors on every rule kind, none, too many; huge hits,
    /// overrides and values), over gRPC's encoding and `/json`'s, with every answer option.
    #[test]
    fn random_descriptor_sets_are_answered_or_refused_as_invalid(
        flags in 0u8..128,
        run in prop::collection::vec((any::<u8>(), request()), 1..6),
    ) {
        entries::request_path(&frames(flags, &run));
        // proto3 JSON has no name for a unit past the enum's: such a request has no
        // JSON form.
        for json in run.iter().filter_map(|(_, request)| serde_json::to_vec(request).ok()) {
            entries::request_json(&json);
        }
    }

    /// Quota files with the shape of real ones and random, often huge or mistyped, values.
    #[test]
    fn random_quota_files_are_served_or_refused_at_a_place_in_the_file(
        file in yaml::quota_file(),
        flow in any::<bool>(),
    ) {
        let text = file.render(flow);
        entries::quota_file(text.as_bytes());
    }

    /// Any tree of maps, lists and scalars, with the quota files' keys among others.
    #[test]
    fn random_yaml_trees_are_refused_or_served(tree in yaml::tree(), flow in any::<bool>()) {
        let text = Yaml::Map(vec![("domain".to_owned(), Yaml::plain("d")), ("descriptors".to_owned(), tree.clone())]).render(flow);
        entries::quota_file(text.as_bytes());
        entries::quota_file(tree.render(flow).as_bytes());
    }
}

/// Values far past every bound: each is refused with an error or served, never a panic.
#[test]
fn huge_values_are_refused_or_served() {
    let huge_value = "v".repeat(1 << 20);
    let request = RateLimitRequest {
        domain: "edge".to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "path".to_owned(),
                value: huge_value.clone(),
            }],
            limit: Some(RateLimitOverride {
                requests_per_unit: u32::MAX,
                unit: i32::MAX,
            }),
            hits_addend: Some(UInt64Value { value: u64::MAX }),
        }],
        hits_addend: u32::MAX,
    };
    let in_range = RateLimitRequest {
        descriptors: vec![RateLimitDescriptor {
            limit: Some(RateLimitOverride {
                requests_per_unit: u32::MAX,
                unit: 6,
            }),
            ..request.descriptors[0].clone()
        }],
        ..request.clone()
    };
    entries::request_json(&serde_json::to_vec(&in_range).unwrap());
    let mut encoded = vec![0];
    for step in [0, 63, 0xff] {
        let small = RateLimitRequest {
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: "remote_address".to_owned(),
                    value: "x".repeat(60_000),
                }],
                hits_addend: Some(UInt64Value { value: u64::MAX }),
                ..Default::default()
            }],
            ..request.clone()
        };
        encoded.extend(&frames(0, &[(step, small)])[1..]);
    }
    entries::request_path(&encoded);
    let numbers = [
        "4294967296",
        "18446744073709551616",
        "99999999999999999999999999999999",
        "-1",
        "1e400",
        ".nan",
        "0x7fffffff",
    ];
    for number in numbers {
        for field in ["requests_per_unit", "burst", "unit_multiplier"] {
            let text = format!(
                "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {{unit: second, requests_per_unit: 1, {field}: {number}}}\n"
            );
            entries::quota_file(text.as_bytes());
        }
    }
    let deep = format!(
        "domain: d\ndescriptors: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    entries::quota_file(deep.as_bytes());
    let long = format!(
        "domain: d\ndescriptors:\n  - key: k\n    value: {huge_value}\n    rate_limit: {{unit: day, requests_per_unit: 1}}\n"
    );
    entries::quota_file(long.as_bytes());
}
