//! The shared GCRA test vectors ([`gcra`]): sequences of (time, cost) and the decision each
//! must get. [`Bucket`](crate::Bucket) passes them, and so must any other implementation
//! of the same maths (the RLS's Redis script does): that is how they are kept to one maths.
//! The format is described in `limiter/tests/vectors.rs`.

use std::time::Duration;

use serde::Deserialize;

use crate::{Decision, Nanos, Rate};

/// The vector file as shipped in `limiter/tests/vectors/gcra.json`.
const GCRA_JSON: &str = include_str!("../tests/vectors/gcra.json");

/// The lease vectors, as shipped in `limiter/tests/vectors/lease.json`.
const LEASE_JSON: &str = include_str!("../tests/vectors/lease.json");

/// The vector file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// A pointer for readers of the JSON to where the format is described.
    pub format: String,
    /// The vectors.
    pub vectors: Vec<Vector>,
}

/// One scenario on one fresh bucket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// The behaviour, as a sentence.
    pub name: String,
    /// The bucket's rate.
    pub rate: RateSpec,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// `requests` per `period_ns` with capacity `burst`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Tokens per period.
    pub requests: u32,
    /// The period in nanoseconds.
    pub period_ns: u64,
    /// The capacity.
    pub burst: u32,
}

impl RateSpec {
    /// The rate as the crate builds it.
    pub fn rate(&self) -> Rate {
        Rate::new(
            self.requests,
            Duration::from_nanos(self.period_ns),
            self.burst,
        )
    }
}

/// One check, or one refund followed by a cost-0 check, at `at_ns`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Nanoseconds since the Unix epoch.
    pub at_ns: Nanos,
    /// Tokens to check (or give back).
    pub cost: u32,
    /// Give `cost` back instead; `expect` is then what a cost-0 check answers after.
    #[serde(default)]
    pub refund: bool,
    /// The expected decision.
    pub expect: Expect,
}

/// An expected decision, as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Allowed or denied.
    pub allowed: bool,
    /// Whole tokens left (0 when denied).
    pub remaining: u32,
    /// Nanoseconds until the bucket is full.
    pub reset_after_ns: Nanos,
    /// Nanoseconds until the same cost would pass; present iff denied.
    pub retry_after_ns: Option<Nanos>,
}

impl Expect {
    /// The decision this expectation describes, or what is malformed about it.
    pub fn decision(&self) -> Result<Decision, String> {
        match (self.allowed, self.retry_after_ns) {
            (true, None) => Ok(Decision::Allowed {
                remaining: self.remaining,
                reset_after: self.reset_after_ns,
            }),
            (false, Some(retry_after)) if self.remaining == 0 => Ok(Decision::Denied {
                retry_after,
                reset_after: self.reset_after_ns,
            }),
            (false, Some(_)) => Err("a denial has remaining 0".into()),
            _ => Err("retry_after_ns must be present iff allowed is false".into()),
        }
    }
}

/// The shared vectors, parsed.
pub fn gcra() -> Result<VectorFile, serde_json::Error> {
    serde_json::from_str(GCRA_JSON)
}

/// The lease vector file: scenarios mixing checks and leases on one fresh bucket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseFile {
    /// A pointer for readers of the JSON to where the format is described.
    pub format: String,
    /// The vectors.
    pub vectors: Vec<LeaseVector>,
}

/// One scenario on one fresh bucket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseVector {
    /// The behaviour, as a sentence.
    pub name: String,
    /// The bucket's rate.
    pub rate: RateSpec,
    /// The steps, in order.
    pub steps: Vec<LeaseStep>,
}

/// At `at_ns`: a lease of up to `lease` tokens that must take `granted` and leave the
/// bucket's arrival time `ahead_ns` ahead of `at_ns`; or a check of `cost` that must get
/// `expect`; or with `refund`, `cost` given back, then `expect` for a cost-0 check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseStep {
    /// Nanoseconds since the Unix epoch.
    pub at_ns: Nanos,
    /// Tokens asked for by a lease.
    pub lease: Option<u64>,
    /// Tokens the lease takes.
    pub granted: Option<u64>,
    /// How far the arrival time is ahead after the lease.
    pub ahead_ns: Option<Nanos>,
    /// Tokens to check (or give back).
    #[serde(default)]
    pub cost: u32,
    /// Give `cost` back instead of checking it.
    #[serde(default)]
    pub refund: bool,
    /// The expected decision of a check.
    pub expect: Option<Expect>,
}

/// The shared lease vectors, parsed.
pub fn lease() -> Result<LeaseFile, serde_json::Error> {
    serde_json::from_str(LEASE_JSON)
}
