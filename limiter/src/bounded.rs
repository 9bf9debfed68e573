//! [`BoundedKeyed`]: per-key token buckets in a map that never holds more than its capacity,
//! so a flood of distinct keys (client addresses, header values) cannot exhaust memory.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::hash::{Hash, RandomState};
use std::sync::Arc;

use quick_cache::UnitWeighter;
use quick_cache::sync::{Cache, DefaultLifecycle};

use crate::clock::Nanos;
use crate::gcra::{Bucket, Decision, Rate};

/// A concurrent map from keys to [`Bucket`]s holding at most `capacity` keys. Past that, a new
/// key evicts a cold one, which comes back later with a full bucket (as Envoy's dynamic
/// descriptors do).
///
/// Built on `quick_cache`: sharded, with no global lock (a check takes one shard's read lock;
/// a new key its write lock). Eviction is approximately least-recently-used and scan
/// resistant (CLOCK-Pro, close to S3-FIFO) rather than strictly LRU: keys seen once are
/// evicted before keys seen again, and a key that comes back soon after its eviction is kept,
/// so a flood of one-off keys does not evict, and so refill, the buckets of clients that keep
/// coming back. Every new key gets a bucket, though one-off keys may lose it at once. Keys hash with std's randomly seeded SipHash, as in
/// [`Keyed`](crate::Keyed), since they usually come from requests.
pub struct BoundedKeyed<K> {
    // Arc: the cache hands out clones of its values, and a check must not hold a shard lock
    // while it runs the bucket's compare-exchange loop.
    cache: Cache<K, Arc<Bucket>, UnitWeighter, RandomState, DefaultLifecycle<K, Arc<Bucket>>>,
}

impl<K: Eq + Hash + Clone> BoundedKeyed<K> {
    /// An empty map for at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        BoundedKeyed {
            cache: Cache::with(
                capacity,
                capacity as u64,
                UnitWeighter,
                RandomState::new(),
                DefaultLifecycle::default(),
            ),
        }
    }

    /// Checks `cost` tokens of `key`'s bucket at `now`, creating a full bucket when the key is
    /// absent (which may evict another key). Looks up by a borrowed form (`&str` for `String`
    /// keys), so a hit allocates nothing.
    pub fn check<Q>(&self, key: &Q, rate: &Rate, cost: u32, now: Nanos) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.bucket(key).check(rate, cost, now)
    }

    /// The bucket of `key`, inserted full when absent. The bucket stays usable after an
    /// eviction; the map just forgets it.
    pub fn bucket<Q>(&self, key: &Q) -> Arc<Bucket>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(bucket) = self.cache.get(key) {
            return bucket;
        }
        // Concurrent misses on one key wait for a single insert, so they share one bucket.
        let inserted = self
            .cache
            .get_or_insert_with::<Q, Infallible>(key, || Ok(Arc::new(Bucket::new())));
        match inserted {
            Ok(bucket) => bucket,
            Err(never) => match never {},
        }
    }

    /// The bucket of `key` if the map holds one.
    pub fn get<Q>(&self, key: &Q) -> Option<Arc<Bucket>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.cache.peek(key)
    }

    /// Changes the capacity (at least 1), evicting keys if the map is now over it.
    pub fn set_capacity(&self, capacity: usize) {
        self.cache.set_capacity(capacity.max(1) as u64);
    }

    /// The most keys the map holds.
    pub fn capacity(&self) -> usize {
        usize::try_from(self.cache.capacity()).unwrap_or(usize::MAX)
    }

    /// How many keys have a bucket now.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

impl<K: Eq + Hash + Clone> std::fmt::Debug for BoundedKeyed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedKeyed")
            .field("len", &self.cache.len())
            .field("capacity", &self.cache.capacity())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const START: Nanos = 1_700_000_000_000_000_000;

    #[test]
    fn a_key_keeps_its_bucket_between_checks() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(10);
        let rate = Rate::new(1, Duration::from_secs(1), 2);
        assert_eq!(map.check("a", &rate, 1, START).remaining(), 1);
        assert_eq!(map.check("a", &rate, 1, START).remaining(), 0);
        assert!(!map.check("a", &rate, 1, START).is_allowed());
        assert_eq!(map.check("b", &rate, 1, START).remaining(), 1);
    }

    #[test]
    fn an_evicted_key_returns_with_a_full_bucket() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(10);
        let rate = Rate::new(1, Duration::from_secs(60), 1);
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        for key in &keys {
            assert!(map.check(key.as_str(), &rate, 1, START).is_allowed());
        }
        assert!(map.len() <= 10);
        let mut returned_full = 0;
        for key in &keys {
            let evicted = map.get(key.as_str()).is_none();
            // Held keys are still drained; evicted ones start over full.
            assert_eq!(
                map.check(key.as_str(), &rate, 1, START).is_allowed(),
                evicted
            );
            returned_full += usize::from(evicted);
        }
        assert!(returned_full >= 10);
    }

    #[test]
    fn a_key_seen_again_outlives_a_flood_of_one_off_keys() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(100);
        let rate = Rate::new(1, Duration::from_secs(60), 2);
        assert!(map.check("busy", &rate, 1, START).is_allowed());
        assert!(map.check("busy", &rate, 1, START).is_allowed());
        for i in 0..100_000 {
            map.check(format!("one-off-{i}").as_str(), &rate, 1, START);
        }
        // Still drained: the flood did not hand it a fresh bucket.
        assert!(!map.check("busy", &rate, 1, START).is_allowed());
    }

    #[test]
    fn the_map_never_holds_more_than_its_capacity() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(100);
        let rate = Rate::new(1, Duration::from_secs(1), 1);
        for i in 0..10_000 {
            map.check(format!("k{i}").as_str(), &rate, 1, START);
            assert!(map.len() <= 100);
        }
        map.set_capacity(10);
        assert!(map.len() <= 10);
        assert_eq!(map.capacity(), 10);
    }
}
