//! `OverLimitCache`: buckets known to be empty, answered locally until they refill.
//!
//! Exact, not a guess: an entry holds what Redis reported (the bucket's tat, or the
//! window's count and end) placed on the local clock at the time the call was *sent*,
//! which is no later than the script ran, so a local answer can only be "denied" when
//! Redis would certainly deny too. Anything else still goes to Redis.

use dashmap::DashMap;
use limiter::{Decision, Nanos, WindowCount};

use crate::store::{Check, Meter};

#[derive(Clone, Copy, Debug)]
enum Known {
    /// A token bucket's tat, on the local clock.
    Tat(Nanos),
    /// A window's count and its end, on the local clock.
    Window { count: u64, end: Nanos },
}

/// A bounded map of buckets known to be over their limit.
pub struct OverLimitCache {
    entries: DashMap<Box<[u8]>, Known>,
    capacity: usize,
}

impl OverLimitCache {
    /// A cache of at most `capacity` buckets; 0 turns it off.
    pub fn new(capacity: usize) -> Self {
        OverLimitCache {
            entries: DashMap::new(),
            capacity,
        }
    }

    /// The local answer for `check` at `now`, if the cache knows it is denied.
    pub fn denied(&self, key: &[u8], check: &Check, now: Nanos) -> Option<Decision> {
        if self.capacity == 0 {
            return None;
        }
        let known = *self.entries.get(key)?;
        let decision = match (known, check.meter) {
            (Known::Tat(tat), Meter::TokenBucket(rate)) => rate.decide(check.cost, tat, now).0,
            (Known::Window { count, end }, Meter::FixedWindow { limit, .. }) if now < end => {
                WindowCount {
                    after: count + u64::from(check.cost),
                    reset_after: end - now,
                }
                .decision(limit)
            }
            _ => return None,
        };
        (!decision.is_allowed()).then_some(decision)
    }

    /// Records a denial Redis answered for a call sent at `sent`.
    pub fn remember(&self, key: &[u8], check: &Check, decision: &Decision, sent: Nanos) {
        if self.capacity == 0 || decision.is_allowed() || self.entries.len() >= self.capacity {
            return;
        }
        let known = match check.meter {
            Meter::TokenBucket(_) => Known::Tat(sent.saturating_add(decision.reset_after())),
            Meter::FixedWindow { limit, .. } => Known::Window {
                // Over means after > limit; what Redis holds is at least that.
                count: u64::from(limit) + 1,
                end: sent.saturating_add(decision.reset_after()),
            },
        };
        self.entries.insert(key.into(), known);
    }

    /// Forgets what a refund may have changed.
    pub fn forget(&self, key: &[u8]) {
        self.entries.remove(key);
    }

    /// Drops entries that no longer deny anything by themselves: tats and window ends
    /// in the past.
    pub fn sweep(&self, now: Nanos) {
        self.entries.retain(|_, known| match *known {
            Known::Tat(tat) => tat > now,
            Known::Window { end, .. } => end > now,
        });
    }

    /// How many buckets are cached.
    #[allow(clippy::len_without_is_empty)] // a metric, not a collection API
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
