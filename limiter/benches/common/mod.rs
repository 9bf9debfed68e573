//! What the limiter benchmarks share: one rate, its governor twin, and the naive
//! baseline (one lock around a map of tats, the same GCRA maths).

#![allow(dead_code)] // each benchmark uses a part

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::Quota;
use limiter::{Nanos, Rate};

/// High enough that nothing is ever denied: the benchmarks time checks, not denials.
pub const PER_SECOND: u32 = 1_000_000_000;

/// `PER_SECOND` per second.
pub fn rate() -> Rate {
    Rate::new(PER_SECOND, Duration::from_secs(1), PER_SECOND)
}

/// The same rate for governor.
pub fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(PER_SECOND).expect("non-zero"))
}

/// The obvious implementation: one lock around a map of tats.
pub struct NaiveStore<K> {
    tats: Mutex<HashMap<K, Nanos>>,
}

impl<K> Default for NaiveStore<K> {
    fn default() -> Self {
        NaiveStore {
            tats: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq> NaiveStore<K> {
    /// Checks `cost` on `key`'s bucket, inserting it when new.
    pub fn check<Q>(&self, key: &Q, rate: &Rate, cost: u32, now: Nanos) -> bool
    where
        K: Borrow<Q> + for<'a> From<&'a Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut tats = self.tats.lock().expect("not poisoned");
        let tat = match tats.get_mut(key) {
            Some(tat) => tat,
            None => tats.entry(K::from(key)).or_insert(0),
        };
        naive_gcra(tat, rate, cost, now)
    }
}

/// GCRA on a plain tat.
pub fn naive_gcra(tat: &mut Nanos, rate: &Rate, cost: u32, now: Nanos) -> bool {
    let new = (*tat).max(now) + u64::from(cost) * rate.interval();
    let allowed = new - now <= rate.tolerance();
    if allowed {
        *tat = new;
    }
    allowed
}
