//! Runs the shared GCRA test vectors in `tests/vectors/gcra.json` against [`Bucket`]. The Redis
//! Lua implementation must pass the same file, which is how the two are kept to one maths.
//!
//! # Format
//!
//! ```text
//! {
//!   "format": "<one line pointing here>",
//!   "vectors": [
//!     {
//!       "name":  "<the behaviour, as a sentence>",
//!       "rate":  { "requests": u32, "period_ns": u64, "burst": u32 },
//!       "steps": [
//!         { "at_ns": u64, "cost": u32, "refund": bool (optional, default false),
//!           "expect": { "allowed": bool, "remaining": u32, "reset_after_ns": u64,
//!                       "retry_after_ns": u64 (present iff allowed is false) } }
//!       ]
//!     }
//!   ]
//! }
//! ```
//!
//! - Each vector starts from a fresh (full) bucket; its steps run in order on that one bucket.
//! - `at_ns` is absolute nanoseconds since the Unix epoch (around 1.7e18), so an implementation
//!   must keep 64-bit integer precision: a Lua number (a double) is exact only to 2^53.
//! - The rate is `requests` per `period_ns` with capacity `burst`: T = ceil(period_ns /
//!   requests), τ = burst × T; `requests == 0` or `burst == 0` denies every positive cost.
//! - A step without `refund` checks `cost` tokens at `at_ns` and must answer `expect`
//!   (`retry_after_ns` 18446744073709551615 = u64::MAX means "never").
//! - A step with `"refund": true` gives `cost` tokens back at `at_ns` (tat moves back by
//!   cost × T, never below now); its `expect` is what a cost-0 check at `at_ns` answers after
//!   the refund.
//!
//! `tests/vectors/lease.json` has the same shape, and its steps may also be leases:
//! `{ "at_ns": u64, "lease": u64, "granted": u64, "ahead_ns": u64 }` takes up to `lease`
//! tokens at `at_ns` in one step ([`limiter::lease::grant`]), which must take `granted` and
//! leave the arrival time `ahead_ns` ahead of `at_ns`. Checks and refunds read as above.

use limiter::vectors::{VectorFile, gcra, lease};
use limiter::{Bucket, Nanos};

fn load() -> VectorFile {
    gcra().expect("tests/vectors/gcra.json parses")
}

#[test]
fn every_shared_vector_passes_on_the_in_memory_bucket() {
    let file = load();
    for vector in &file.vectors {
        let rate = vector.rate.rate();
        let bucket = Bucket::new();
        for (i, step) in vector.steps.iter().enumerate() {
            let expected = step
                .expect
                .decision()
                .unwrap_or_else(|e| panic!("{}: {e}", vector.name));
            let got = if step.refund {
                bucket.refund(&rate, step.cost, step.at_ns);
                bucket.check(&rate, 0, step.at_ns)
            } else {
                bucket.check(&rate, step.cost, step.at_ns)
            };
            assert_eq!(got, expected, "vector {:?}, step {i}", vector.name);
        }
    }
}

#[test]
fn the_shared_vectors_are_many_and_distinctly_named() {
    let file = load();
    assert!(file.format.contains("limiter/tests/vectors.rs"));
    assert!(file.vectors.len() >= 12);
    let mut names: Vec<&str> = file.vectors.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), file.vectors.len());
}

#[test]
fn every_lease_vector_passes_on_the_rust_maths() {
    let file = lease().expect("tests/vectors/lease.json parses");
    assert!(file.format.contains("limiter/tests/vectors.rs"));
    assert!(file.vectors.len() >= 6);
    for vector in &file.vectors {
        let rate = vector.rate.rate();
        // The bucket's one number of state, as a store keeps it.
        let mut tat: Nanos = 0;
        for (i, step) in vector.steps.iter().enumerate() {
            let at = step.at_ns;
            if let Some(want) = step.lease {
                let grant = limiter::lease::grant(&rate, want, tat, at);
                tat = grant.tat;
                let ahead = tat.saturating_sub(at);
                assert_eq!(
                    (Some(grant.granted), Some(ahead)),
                    (step.granted, step.ahead_ns),
                    "vector {:?}, step {i}",
                    vector.name
                );
                continue;
            }
            let expected = step.expect.as_ref().expect("a check's expectation");
            let expected = expected.decision().expect("well formed");
            let got = if step.refund {
                let back = u64::from(step.cost) * rate.interval();
                tat = tat.saturating_sub(back).max(at);
                rate.decide(0, tat, at).0
            } else {
                let (decision, new_tat) = rate.decide(step.cost, tat, at);
                tat = new_tat.unwrap_or(tat);
                decision
            };
            assert_eq!(got, expected, "vector {:?}, step {i}", vector.name);
        }
    }
}
