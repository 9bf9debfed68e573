//! Envoy's `local_ratelimit` filter, decision for decision, as a library: [`LocalLimits`]
//! (a default token bucket and descriptor buckets, checked in-process), the actions that turn
//! an `http::Request` into [`Descriptor`]s, and [`RateLimitLayer`], a tower layer for axum,
//! hyper and tonic services.
//!
//! - `limits`: [`LocalLimits`], its builder, [`read_section`] and [`parse_section`].
//! - `verdict`: [`Descriptor`] in, [`Verdict`] ([`Outcome`], [`Quota`]) out.
//! - `rules`: a section compiled for checking; wildcard descriptors keep per-value buckets in
//!   a [`BoundedKeyed`](crate::BoundedKeyed).
//! - `actions`: `request_headers`, `remote_address`, `generic_key`, `header_value_match`.
//! - `layer`, `headers`, `grpc`: the middleware and the answers it writes.
//! - `sampler`: the randomness behind `filter_enabled`/`filter_enforced`.
//!
//! The quota-file shape is in `docs/quota-files.md` ("Local limits").

mod actions;
mod grpc;
mod headers;
mod layer;
mod limits;
mod rules;
mod sampler;
mod verdict;

pub use headers::{X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET};
pub use layer::{RateLimit, RateLimitLayer, ResponseFuture};
pub use limits::{LocalLimits, LocalLimitsBuilder, parse_section, read_section};
pub use sampler::{FixedSampler, RandomSampler, Sampler};
pub use verdict::{Descriptor, Outcome, Quota, Verdict};
