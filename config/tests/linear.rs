//! The loader's work grows linearly with its input. Work is counted, not timed: the
//! allocations made and the bytes allocated while loading (on every thread: a load runs on
//! a thread of its own), for files of each shape at one size and at eight times it. A
//! linear loader spends about the same per byte at both; a quadratic one eight times more.
//!
//! One test in this binary: the counters are the process's.

mod shapes;

use std::alloc::System;

use config::{LoadOptions, QuotaSet};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static COUNTED: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations (and growths) and bytes allocated while loading `text`.
fn work(text: &str) -> (usize, usize) {
    let region = Region::new(COUNTED);
    let loaded = QuotaSet::from_sources([("q.yaml", text)], &LoadOptions::default());
    drop(loaded);
    let change = region.change();
    let grown = usize::try_from(change.bytes_reallocated).unwrap_or(0);
    (
        change.allocations + change.reallocations,
        change.bytes_allocated + grown,
    )
}

/// A file of some shape, larger as `n` grows.
type Shape = fn(usize) -> String;

/// `n` sibling descriptors, each with a limit.
fn siblings(n: usize) -> String {
    let mut text = String::from("domain: d\ndescriptors:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - key: k{i}\n    rate_limit: {{unit: second, requests_per_unit: 1}}\n"
        ));
    }
    text
}

/// `n` descriptors, each the top of a chain four levels deep.
fn nested(n: usize) -> String {
    let mut text = String::from("domain: d\ndescriptors:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - key: a{i}\n    descriptors:\n      - key: b\n        descriptors:\n          \
             - key: c\n            value: v\n            descriptors:\n              - key: d\n\
             \x20               rate_limit: {{unit: minute, requests_per_unit: 5, burst: 9}}\n"
        ));
    }
    text
}

/// `n` documents of one domain each.
fn documents(n: usize) -> String {
    (0..n)
        .map(|i| format!("---\ndomain: d{i}\ndescriptors: [{{key: k, rate_limit: {{unit: hour, requests_per_unit: 3}}}}]\n"))
        .collect()
}

/// A parent whose key and value are `n` × 16 bytes long, with `n` children.
fn long_parent(n: usize) -> String {
    shapes::long_parent(16 * n, n)
}

/// `n` entries of a `metadata` map under a key `n` × 16 bytes long (an explicit key: YAML
/// reads a plain key up to 1024 characters long).
fn long_metadata(n: usize) -> String {
    let long = "m".repeat(16 * n);
    let mut text = format!(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {{unit: day, requests_per_unit: 2}}\n    metadata:\n      ? {long}\n      :\n"
    );
    for i in 0..n {
        text.push_str(&format!("        e{i}: {i}\n"));
    }
    text
}

/// `text` with a fault at its end, so that a refusal reads the whole file first (and
/// the error's place is found by reading it again).
fn broken(text: String) -> String {
    text + "  - key: last\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n"
}

#[test]
fn loading_costs_the_same_per_byte_in_a_file_eight_times_larger() {
    let shapes: [(&str, Shape); 5] = [
        ("siblings", siblings),
        ("nested", nested),
        ("documents", documents),
        ("long_parent", long_parent),
        ("long_metadata", long_metadata),
    ];
    const SMALL: usize = 250;
    for (name, shape) in shapes {
        for faulty in [false, true] {
            let make = |n| {
                let text = shape(n);
                if faulty { broken(text) } else { text }
            };
            let (small, large) = (make(SMALL), make(8 * SMALL));
            let loads =
                QuotaSet::from_sources([("q.yaml", small.as_str())], &LoadOptions::default());
            // A long parent's children would keep more of their paths than its text allows.
            let refused = faulty || name == "long_parent";
            assert_eq!(loads.is_err(), refused, "{name}: {:?}", loads.err());
            let (small_work, large_work) = (work(&small), work(&large));
            let per_byte = |(allocations, bytes): (usize, usize), text: &str| {
                (
                    allocations as f64 / text.len() as f64,
                    bytes as f64 / text.len() as f64,
                )
            };
            let (small_allocs, small_bytes) = per_byte(small_work, &small);
            let (large_allocs, large_bytes) = per_byte(large_work, &large);
            let case = format!(
                "{name} (fault at the end: {faulty}): {small_work:?} for {} bytes, \
                 {large_work:?} for {} bytes",
                small.len(),
                large.len()
            );
            assert!(
                large_allocs <= 1.5 * small_allocs,
                "allocations per byte grew: {case}"
            );
            // Every rule keeps its whole path: a long parent's children are bounded by
            // the load's path budget, which grows with the text.
            assert!(
                large_bytes <= 1.5 * small_bytes,
                "bytes per byte grew: {case}"
            );
        }
    }
}
