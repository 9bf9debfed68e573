//! What goes into a local check, a request [`Descriptor`], and what comes out, a [`Verdict`]:
//! its [`Outcome`] and the [`Quota`] that the `x-ratelimit-*` headers report.

use std::borrow::Cow;

use crate::clock::Nanos;

/// A request descriptor: `(key, value)` entries, as Envoy's rate-limit actions build them,
/// and what it costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor<'a> {
    /// The entries, in order.
    pub entries: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Tokens to take from the descriptor's bucket: 1 by default; 0 checks without taking;
    /// negative gives `|hits_addend|` tokens back (never past a full bucket).
    pub hits_addend: i64,
}

impl<'a> Descriptor<'a> {
    /// A descriptor of these entries costing one token.
    pub fn new<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<Cow<'a, str>>,
        V: Into<Cow<'a, str>>,
    {
        Descriptor {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            hits_addend: 1,
        }
    }

    /// The same descriptor with another cost.
    pub fn hits(mut self, hits_addend: i64) -> Self {
        self.hits_addend = hits_addend;
        self
    }
}

/// The answer for one request: what to do with it, and the bucket to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub outcome: Outcome,
    /// The bucket the headers describe: the one that refused, else the strictest matched
    /// descriptor's, else the default bucket. `None` when no bucket was consulted.
    pub quota: Option<Quota>,
}

/// What a [`Verdict`] says to do with the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not checked: the request fell outside `filter_enabled`. No token was taken.
    Skipped,
    /// Every bucket charged allowed it.
    Allowed,
    /// Allowed, but a `shadow_mode` descriptor was over its limit.
    Shadowed,
    /// Over a limit but outside `filter_enforced`: let through. The buckets charged before
    /// the refusal keep their charge.
    NotEnforced {
        /// Nanoseconds until the refusing bucket would allow the same cost; `u64::MAX` never.
        retry_after: Nanos,
    },
    /// Over a limit: refuse the request (429, or `RESOURCE_EXHAUSTED` for gRPC).
    Denied {
        /// Nanoseconds until the refusing bucket would allow the same cost; `u64::MAX` never.
        retry_after: Nanos,
    },
}

/// A bucket as the `x-ratelimit-*` headers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// `x-ratelimit-limit`: the bucket's `max_tokens`.
    pub limit: u32,
    /// `x-ratelimit-remaining`: whole tokens left after this request.
    pub remaining: u32,
    /// `x-ratelimit-reset` (in ns): time until the next whole token, 0 when one is left;
    /// `u64::MAX` for a bucket that never refills (`max_tokens: 0`).
    pub reset_after: Nanos,
}

impl Verdict {
    /// A verdict for a request that was not checked.
    pub(crate) const SKIPPED: Verdict = Verdict {
        outcome: Outcome::Skipped,
        quota: None,
    };

    /// True when the request must be refused.
    pub fn is_denied(&self) -> bool {
        matches!(self.outcome, Outcome::Denied { .. })
    }

    /// For a refusal (enforced or not), the wait before the same request could pass.
    pub fn retry_after(&self) -> Option<Nanos> {
        match self.outcome {
            Outcome::Denied { retry_after } | Outcome::NotEnforced { retry_after } => {
                Some(retry_after)
            }
            Outcome::Skipped | Outcome::Allowed | Outcome::Shadowed => None,
        }
    }
}
