//! Rate-limit maths with an injected clock: lock-free GCRA token buckets and fixed-window
//! counters, and a sharded keyed store whose memory tracks only the keys in use. It serves the
//! RLS memory backend and embeddable per-pod limiters alike, and knows nothing of gRPC, Redis or
//! config files.
//!
//! - [`clock`]: [`Nanos`] since the Unix epoch, the [`Clock`] trait, [`SystemClock`],
//!   [`FakeClock`].
//! - [`gcra`]: [`Rate`], [`Bucket`] and the [`Decision`] a check returns.
//! - [`window`]: [`Window`], a fixed-window counter with envoyproxy/ratelimit's semantics.
//! - [`keyed`]: [`Keyed`], per-key buckets or windows, dropped by [`Keyed::sweep`] when
//!   [`Idle`].
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

pub mod clock;
pub mod gcra;
pub mod keyed;
pub mod window;

pub use clock::{Clock, FakeClock, Nanos, SystemClock};
pub use gcra::{Bucket, Decision, Rate};
pub use keyed::{Idle, Keyed};
pub use window::{Window, WindowCount};
