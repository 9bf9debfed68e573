//! Time as `Nanos` since the Unix epoch, read through the [`Clock`] trait so tests move it by
//! hand ([`FakeClock`]) while servers use [`SystemClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Monotonic clock anchored to the Unix epoch at creation: `SystemTime` read once, then the
/// time elapsed on the CPU's counter, so windows stay epoch-aligned and time never goes
/// back.
///
/// Reading `SystemTime` on every call would let an NTP step move buckets backwards; reading
/// only a monotonic clock would lose the epoch alignment fixed windows need. The anchor
/// drifts from the wall clock only by however much the wall clock is later stepped.
///
/// The elapsed time comes from [`quanta`], as governor's clock does: the CPU's invariant
/// time-stamp counter scaled to nanoseconds (one instruction, where `Instant::now` costs a
/// vDSO call, about 30 ns on a VM), or `CLOCK_MONOTONIC` where the CPU has no invariant
/// counter. A thread never sees it go back: each thread keeps the latest counter reading it
/// saw and never reports less, which holds even should the counter of the core a thread
/// moves to lag. Across threads it is as monotonic as the cores' counters are in step, which
/// the kernel checks at boot before using the counter as its own clock.
#[derive(Clone, Debug)]
pub struct SystemClock {
    /// Epoch time at `start`.
    anchor: Nanos,
    counter: quanta::Clock,
    /// The counter's reading at `anchor`.
    start: u64,
}

thread_local! {
    /// The latest counter reading of this thread, over every [`SystemClock`] (they share
    /// the counter).
    static LATEST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl SystemClock {
    /// A clock anchored to the wall clock now. A wall clock before 1970 reads as the epoch.
    pub fn new() -> Self {
        SystemClock::on(quanta::Clock::new())
    }

    /// A clock reading `counter` (a mocked one in tests).
    fn on(counter: quanta::Clock) -> Self {
        let start = counter.raw();
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        SystemClock {
            anchor: saturating_nanos(since_epoch),
            counter,
            start,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Nanos {
        let raw = LATEST.with(|latest| {
            let raw = self.counter.raw().max(latest.get());
            latest.set(raw);
            raw
        });
        // 0 for a reading at or before `start`: never before the anchor.
        let elapsed = self.counter.delta_as_nanos(self.start, raw);
        self.anchor.saturating_add(elapsed)
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

    /// Runs `f` on a thread of its own, so that the mocked counter's readings do not meet
    /// the real counter's in the thread's latest reading.
    fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().expect("no panic");
    }

    #[test]
    fn system_clock_counts_from_its_anchor() {
        on_fresh_thread(|| {
            let (counter, mock) = quanta::Clock::mock();
            mock.increment(1_000);
            let clock = SystemClock::on(counter);
            let anchor = clock.now();
            mock.increment(2_500);
            assert_eq!(clock.now(), anchor + 2_500);
        });
    }

    #[test]
    fn system_clock_holds_its_time_when_the_counter_steps_back() {
        on_fresh_thread(|| {
            let (counter, mock) = quanta::Clock::mock();
            mock.increment(1_000);
            let clock = SystemClock::on(counter);
            let anchor = clock.now();
            mock.increment(500);
            assert_eq!(clock.now(), anchor + 500);
            // A core whose counter lags: the thread still sees the time it saw.
            mock.decrement(200);
            assert_eq!(clock.now(), anchor + 500);
            mock.increment(300);
            assert_eq!(clock.now(), anchor + 600);
            // Below the reading at the anchor: still never before it.
            let (counter, mock) = quanta::Clock::mock();
            mock.increment(1_000_000);
            let late = SystemClock::on(counter);
            mock.decrement(1_000_000);
            assert!(late.now() >= late.anchor);
        });
    }

    #[test]
    fn system_clocks_on_two_threads_never_go_back() {
        let clock = SystemClock::new();
        let readings = |clock: SystemClock| {
            move || {
                let mut last = clock.now();
                for _ in 0..100_000 {
                    let now = clock.now();
                    assert!(now >= last, "{now} < {last}");
                    last = now;
                }
            }
        };
        let other = std::thread::spawn(readings(clock.clone()));
        readings(clock)();
        other.join().expect("no panic");
    }

    #[test]
    fn arc_dyn_clock_reads_the_inner_clock() {
        let fake = FakeClock::new(42);
        let clock: Arc<dyn Clock> = Arc::new(fake.clone());
        fake.advance(Duration::from_nanos(1));
        assert_eq!(clock.now(), 43);
    }
}
