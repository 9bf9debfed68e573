//! Rate limits decided in-process: lock-free GCRA token buckets and fixed-window counters
//! with an injected clock, keyed stores (unbounded with a sweep, or bounded), and the
//! per-pod limits a Rust service embeds — Envoy's `local_ratelimit` filter as a tower layer,
//! read from the `local` section of a quota file or from the `mode: local` rules of its
//! `kind: RateLimit` resources (`docs/ratelimit-resource.md`). It serves the RLS memory
//! backend too, and knows nothing of gRPC stacks or Redis.
//!
//! - [`clock`]: [`Nanos`] since the Unix epoch, the [`Clock`] trait, [`SystemClock`],
//!   [`FakeClock`].
//! - [`gcra`]: [`Rate`], [`Bucket`] and the [`Decision`] a check returns.
//! - [`window`]: [`Window`], a fixed-window counter with envoyproxy/ratelimit's semantics.
//! - [`keyed`]: [`Keyed`], per-key buckets or windows, dropped by [`Keyed::sweep`] when
//!   [`Idle`].
//! - [`bounded`]: [`BoundedKeyed`], per-key buckets in a map of bounded size.
//! - [`local`]: [`LocalLimits`] and [`RateLimitLayer`].
//!
//! A service adds per-pod limits in a few lines (`examples/axum_service.rs` is a whole one):
//!
//! ```no_run
//! # fn app() -> Result<axum::Router, limiter::LimiterError> {
//! let limits = limiter::LocalLimits::from_quota_file("quotas/page.yaml")?;
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .layer(limiter::RateLimitLayer::new(limits));
//! # Ok(app)
//! # }
//! ```
//!
//! The bucket underneath, used directly:
//!
//! ```
//! use std::time::Duration;
//! use limiter::{Bucket, Clock, FakeClock, Rate};
//!
//! let rate = Rate::new(10, Duration::from_secs(1), 2); // 10/s, at most 2 at once
//! let bucket = Bucket::new();
//! let clock = FakeClock::new(1_700_000_000_000_000_000);
//!
//! assert_eq!(bucket.check(&rate, 1, clock.now()).remaining(), 1);
//! assert!(bucket.check(&rate, 1, clock.now()).is_allowed());
//! let denied = bucket.check(&rate, 1, clock.now());
//! assert_eq!(denied.retry_after(), Some(100_000_000)); // one token per 100 ms
//!
//! clock.advance(Duration::from_millis(100));
//! assert!(bucket.check(&rate, 1, clock.now()).is_allowed());
//! ```

pub mod bounded;
pub mod clock;
mod error;
pub mod gcra;
pub mod keyed;
pub mod local;
pub mod vectors;
pub mod window;

pub use bounded::BoundedKeyed;
pub use clock::{Clock, FakeClock, Nanos, SystemClock};
pub use error::LimiterError;
pub use gcra::{Bucket, Decision, Rate};
pub use keyed::{Idle, Keyed};
pub use local::{Descriptor, LocalLimits, Outcome, Quota, RateLimitLayer, Verdict};
pub use window::{Window, WindowCount};
