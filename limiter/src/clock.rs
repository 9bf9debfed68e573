//! Time as `Nanos` since the Unix epoch, read through the [`Clock`] trait so tests move it by
//! hand ([`FakeClock`]) while servers use [`SystemClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
///
/// A `u64` lasts until the year 2554; every sum in this crate saturates or widens to `u128`
/// rather than wrapping.
pub type Nanos = u64;

/// A source of the current time. Injected everywhere so that no test waits on the wall clock.
pub trait Clock: Send + Sync + 'static {
    /// The current time. Implementations must never go backwards.
    fn now(&self) -> Nanos;
}

/// Monotonic clock anchored to the Unix epoch at creation (SystemTime once, then Instant
/// elapsed), so windows stay epoch-aligned and time never goes back.
///
/// Reading `SystemTime` on every call would let an NTP step move buckets backwards; reading
/// only `Instant` would lose the epoch alignment fixed windows need. The anchor drifts from the
/// wall clock only by however much the wall clock is later stepped.
#[derive(Clone, Debug)]
pub struct SystemClock {
    /// Epoch time at `start`.
    anchor: Nanos,
    start: Instant,
}

impl SystemClock {
    /// A clock anchored to the wall clock now. A wall clock before 1970 reads as the epoch.
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        SystemClock {
            anchor: saturating_nanos(since_epoch),
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        self.anchor
            .saturating_add(saturating_nanos(self.start.elapsed()))
    }
}

/// A clock tests move by hand; clones share the same time (`Arc<AtomicU64>`).
#[derive(Clone, Debug)]
pub struct FakeClock {
    now: Arc<AtomicU64>,
}

impl FakeClock {
    /// A clock stopped at `start` until moved.
    pub fn new(start: Nanos) -> Self {
        FakeClock {
            now: Arc::new(AtomicU64::new(start)),
        }
    }

    /// Moves the clock (and every clone) forward by `by`, saturating at `u64::MAX`.
    pub fn advance(&self, by: Duration) {
        let by = saturating_nanos(by);
        // fetch_update never fails here: the closure always returns Some.
        let _ = self
            .now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock (and every clone) to `to`. Unlike real clocks this may go backwards, so
    /// tests can probe that the maths tolerates it.
    pub fn set(&self, to: Nanos) {
        self.now.store(to, Ordering::Relaxed);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Nanos {
        self.now.load(Ordering::Relaxed)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Nanos {
        (**self).now()
    }
}

/// `Duration` as whole nanoseconds, `u64::MAX` for durations past 584 years.
pub(crate) fn saturating_nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_clones_share_one_time() {
        let clock = FakeClock::new(5);
        let clone = clock.clone();
        clock.advance(Duration::from_nanos(10));
        assert_eq!(clone.now(), 15);
        clone.set(3);
        assert_eq!(clock.now(), 3);
    }

    #[test]
    fn fake_clock_advance_saturates_instead_of_wrapping() {
        let clock = FakeClock::new(u64::MAX - 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), u64::MAX);
    }

    #[test]
    fn system_clock_is_epoch_aligned_and_never_goes_back() {
        let clock = SystemClock::new();
        let wall = saturating_nanos(SystemTime::now().duration_since(UNIX_EPOCH).unwrap());
        let first = clock.now();
        // Same wall time to within a generous minute: the anchor is the epoch, not boot.
        assert!(first.abs_diff(wall) < 60_000_000_000);
        let mut last = first;
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn arc_dyn_clock_reads_the_inner_clock() {
        let fake = FakeClock::new(42);
        let clock: Arc<dyn Clock> = Arc::new(fake.clone());
        fake.advance(Duration::from_nanos(1));
        assert_eq!(clock.now(), 43);
    }
}
