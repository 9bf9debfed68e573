//! Fixed-window counters with exactly envoyproxy/ratelimit's semantics: a [`Window`] counts the
//! hits of one epoch-aligned window and a [`WindowCount`] turns a count into a [`Decision`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::Nanos;
use crate::gcra::Decision;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The longest window, about 34 years: ends are compared mod 2^32 s, which needs every live end
/// within 2^31 s of now. Longer periods are shortened to this, which counts differently from
/// the Redis scripts, so quota files refuse them (this is `config`'s [`config::MAX_WINDOW_SECS`]).
pub const MAX_PERIOD_SECS: u64 = config::MAX_WINDOW_SECS;

/// Count of one epoch-aligned window: window start = now_s - now_s % period_s. One AtomicU64
/// packing (window, count as u32 saturating), reset when the window changes.
///
/// The high 32 bits hold the window's *end* in epoch seconds (mod 2^32) rather than its index,
/// so the state says by itself when it has ended: [`Window::is_expired`] needs no period. The
/// low 32 bits hold the count; a count of 0 is the same as no state, whatever the end says.
/// Ends are compared as serial numbers (RFC 1982), which stays correct past 2106 as long as no
/// state outlives 68 years.
#[derive(Debug, Default)]
pub struct Window {
    // Relaxed ordering: the packed word is the only shared datum (see `Bucket`).
    state: AtomicU64,
}

/// The count of a window after a [`Window::hit`] or [`Window::peek`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCount {
    /// The count after adding this call's hits.
    pub after: u64,
    /// Nanoseconds from now to the end of the window the hits went into.
    pub reset_after: Nanos,
}

impl Window {
    /// A window with no hits.
    pub const fn new() -> Window {
        Window {
            state: AtomicU64::new(0),
        }
    }

    /// Adds `hits` (over-limit hits are still counted, like the reference) and returns the count
    /// after.
    ///
    /// `period_secs` 0 is taken as 1, and above [`MAX_PERIOD_SECS`] as that. A caller whose
    /// `now` is slightly behind another's (read just before a boundary, applied just after) adds
    /// to the newer window rather than moving it back, which would drop the newer window's
    /// count.
    pub fn hit(&self, period_secs: u64, hits: u32, now: Nanos) -> WindowCount {
        if hits == 0 {
            return self.peek(period_secs, now);
        }
        let current_end = window_end(period_secs, now);
        let mut packed = self.state.load(Ordering::Relaxed);
        loop {
            let (end, count) = advance(packed, current_end, hits);
            let count_after = WindowCount {
                after: u64::from(count),
                reset_after: reset_after(end, current_end, now),
            };
            let next = pack(end, count);
            if next == packed {
                return count_after;
            }
            match self.state.compare_exchange_weak(
                packed,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return count_after,
                Err(current) => packed = current,
            }
        }
    }

    /// The current count without adding.
    pub fn peek(&self, period_secs: u64, now: Nanos) -> WindowCount {
        let current_end = window_end(period_secs, now);
        let (end, count) = advance(self.state.load(Ordering::Relaxed), current_end, 0);
        WindowCount {
            after: u64::from(count),
            reset_after: reset_after(end, current_end, now),
        }
    }

    /// True when the stored window has ended or counts nothing: the state can be dropped.
    ///
    /// Takes no period (unlike the first sketch of this API) because the state stores its
    /// window's end.
    pub fn is_expired(&self, now: Nanos) -> bool {
        let (end, count) = unpack(self.state.load(Ordering::Relaxed));
        count == 0 || !is_after(end, truncate(now / NANOS_PER_SEC))
    }
}

impl WindowCount {
    /// OK iff after <= limit; remaining = limit - after (0 when over). retry_after =
    /// reset_after when over.
    pub fn decision(&self, limit: u32) -> Decision {
        match u64::from(limit).checked_sub(self.after) {
            Some(remaining) => Decision::Allowed {
                // remaining <= limit, a u32.
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_after: self.reset_after,
            },
            None => Decision::Denied {
                retry_after: self.reset_after,
                reset_after: self.reset_after,
            },
        }
    }
}

/// The end (epoch seconds) of the window holding `now`.
fn window_end(period_secs: u64, now: Nanos) -> u64 {
    let period = period_secs.clamp(1, MAX_PERIOD_SECS);
    let now_s = now / NANOS_PER_SEC;
    (now_s - now_s % period).saturating_add(period)
}

/// The (end, count) after adding `hits` to the packed state at a time whose window ends at
/// `current_end`.
fn advance(packed: u64, current_end: u64, hits: u32) -> (u32, u32) {
    let (end, count) = unpack(packed);
    let current = truncate(current_end);
    if count > 0 && !is_after(current, end) {
        // The stored window is the current one (or a newer one: see `Window::hit`).
        (end, count.saturating_add(hits))
    } else {
        (current, hits)
    }
}

/// Nanoseconds from `now` to `end`, where `end` is `current_end` truncated to 32 bits or a
/// little after it.
fn reset_after(end: u32, current_end: u64, now: Nanos) -> Nanos {
    let end_s = current_end.saturating_add(u64::from(end.wrapping_sub(truncate(current_end))));
    let end_ns = u128::from(end_s) * u128::from(NANOS_PER_SEC);
    u64::try_from(end_ns.saturating_sub(u128::from(now))).unwrap_or(u64::MAX)
}

/// Serial-number comparison: `a` is later than `b` by less than 2^31 seconds.
fn is_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

fn pack(end: u32, count: u32) -> u64 {
    (u64::from(end) << 32) | u64::from(count)
}

fn unpack(packed: u64) -> (u32, u32) {
    (truncate(packed >> 32), truncate(packed))
}

/// The low 32 bits, on purpose: window ends are stored mod 2^32.
fn truncate(x: u64) -> u32 {
    (x & u64::from(u32::MAX)) as u32
}
