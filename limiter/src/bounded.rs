//! [`BoundedKeyed`]: per-key token buckets in a map that never holds more than its capacity,
//! so a flood of distinct keys (client addresses, header values) cannot exhaust memory.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;
use parking_lot::RwLock;

use crate::clock::Nanos;
use crate::gcra::{Bucket, Decision, Rate};

/// A concurrent map from keys to [`Bucket`]s holding at most `capacity` keys. Past that, a new
/// key evicts one not used lately, which comes back later with a full bucket (as Envoy's
/// dynamic descriptors do).
///
/// Sharded, with no global lock: a check takes one shard's read lock (a single atomic
/// operation) and charges the bucket, stored inline in the shard's table, with its
/// compare-exchange; only a new key takes the shard's write lock. Nothing is allocated or
/// reference-counted per check.
///
/// Eviction is least-recently-used by the CLOCK approximation, per shard: every key has a
/// "used" bit, set by each check; a hand sweeps the shard's slots, clearing set bits and
/// evicting the first key whose bit is clear. So a key checked since the hand last passed is
/// kept, and the key evicted is one not used for at least a full sweep. A new key starts
/// with its bit clear: a key seen once goes before a key seen again.
///
/// The capacity is the whole map's: a new key is kept without eviction while the map holds
/// fewer keys, wherever it hashes; past that, it evicts within its own shard (keys hash
/// evenly over shards, so shards stay about equally full). The shard count is fixed at
/// construction: a few per CPU, fewer for small capacities (one below 128 keys). Keys hash
/// with std's randomly seeded SipHash, as in [`Keyed`](crate::Keyed), since they usually
/// come from requests.
pub struct BoundedKeyed<K> {
    shards: Box<[CachePadded<RwLock<Shard<K>>>]>,
    hasher: RandomState,
    /// log2 of the shard count.
    shard_bits: u32,
    /// Keys held, over all shards; changed only under a shard's write lock, with the table.
    len: CachePadded<AtomicUsize>,
    capacity: AtomicUsize,
}

struct Shard<K> {
    table: HashTable<Slot<K>>,
    /// The CLOCK hand: the next table slot (bucket index) the sweep looks at.
    hand: usize,
}

struct Slot<K> {
    key: K,
    bucket: Bucket,
    used: AtomicBool,
}

impl<K: Eq + Hash> BoundedKeyed<K> {
    /// An empty map for at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        // At least 64 keys per shard, so that one shard's share stays a useful LRU.
        let shards = (4 * cpus)
            .next_power_of_two()
            .min(prev_power_of_two((capacity / 64).max(1)));
        let shard_bits = shards.trailing_zeros();
        let shards = (0..shards)
            .map(|_| {
                CachePadded::new(RwLock::new(Shard {
                    table: HashTable::new(),
                    hand: 0,
                }))
            })
            .collect();
        BoundedKeyed {
            shards,
            hasher: RandomState::new(),
            shard_bits,
            len: CachePadded::new(AtomicUsize::new(0)),
            capacity: AtomicUsize::new(capacity),
        }
    }

    /// Checks `cost` tokens of `key`'s bucket at `now`, creating a full bucket when the key is
    /// absent (which may evict another key). Looks up by a borrowed form (`&str` for `String`
    /// keys), so a hit allocates nothing.
    pub fn check<Q>(&self, key: &Q, rate: &Rate, cost: u32, now: Nanos) -> Decision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned + ?Sized,
        Q::Owned: Into<K>,
    {
        self.with(key, |bucket| bucket.check(rate, cost, now))
    }

    /// Runs `f` on the bucket of `key`, inserting a full bucket first when absent (evicting a
    /// key not used lately when the key's shard is full). The key is owned
    /// (`to_owned().into()`) only on a miss.
    ///
    /// `f` runs under the shard's lock: keep it to a few bucket operations, and never touch
    /// this map from inside it (that may deadlock).
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(&Bucket) -> R) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned + ?Sized,
        Q::Owned: Into<K>,
    {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        if let Some(slot) = shard
            .read()
            .table
            .find(hash, |slot| slot.key.borrow() == key)
        {
            slot.touch();
            return f(&slot.bucket);
        }
        let mut shard = shard.write();
        // Another thread may have inserted the key between the two locks: use its bucket.
        if let Some(slot) = shard.table.find(hash, |slot| slot.key.borrow() == key) {
            slot.touch();
            return f(&slot.bucket);
        }
        let capacity = self.capacity.load(Ordering::Relaxed);
        let room = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |len| {
                (len < capacity).then_some(len + 1)
            })
            .is_ok();
        if !room && !shard.evict_one() {
            // The map is full with none of it in this shard (a capacity below the shard
            // count): the key gets a fresh bucket that is not kept.
            return f(&Bucket::new());
        }
        let slot = Slot {
            key: key.to_owned().into(),
            bucket: Bucket::new(),
            used: AtomicBool::new(false),
        };
        let hasher = &self.hasher;
        let entry = shard
            .table
            .insert_unique(hash, slot, |slot| hasher.hash_one(&slot.key));
        f(&entry.get().bucket)
    }

    /// Runs `f` on the bucket of `key` only when the map holds one. Does not count as a use.
    pub fn with_existing<Q, R>(&self, key: &Q, f: impl FnOnce(&Bucket) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash).read();
        let slot = shard.table.find(hash, |slot| slot.key.borrow() == key)?;
        Some(f(&slot.bucket))
    }

    /// True when the map holds a bucket for `key`.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.with_existing(key, |_| ()).is_some()
    }

    /// Changes the capacity (at least 1), evicting keys not used lately, one per shard in
    /// turn, if the map is now over it. The shard count stays.
    pub fn set_capacity(&self, capacity: usize) {
        let capacity = capacity.max(1);
        self.capacity.store(capacity, Ordering::Relaxed);
        while self.len.load(Ordering::Relaxed) > capacity {
            for shard in self.shards.iter() {
                let mut shard = shard.write();
                if self.len.load(Ordering::Relaxed) > capacity && shard.evict_one() {
                    self.len.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The most keys the map holds.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// How many keys have a bucket now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard<K>> {
        // The bits under hashbrown's top seven (its tag), above the ones it indexes with.
        let index = (hash << 7).checked_shr(64 - self.shard_bits).unwrap_or(0);
        &self.shards[index as usize]
    }
}

impl<K> Shard<K> {
    /// Evicts one key: the first the hand finds whose used bit is clear, clearing the bits it
    /// passes. Ends within two sweeps (the first clears every bit). False when the shard is
    /// empty.
    fn evict_one(&mut self) -> bool {
        let slots = self.table.num_buckets();
        if self.table.is_empty() {
            return false;
        }
        loop {
            if self.hand >= slots {
                self.hand = 0;
            }
            let index = self.hand;
            self.hand += 1;
            let Some(slot) = self.table.get_bucket_mut(index) else {
                continue;
            };
            if std::mem::take(slot.used.get_mut()) {
                continue;
            }
            if let Ok(entry) = self.table.get_bucket_entry(index) {
                entry.remove();
            }
            return true;
        }
    }
}

impl<K> Slot<K> {
    /// Marks the key used; writes only when the bit is clear, so a hot key's check reads it.
    fn touch(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }
}

/// The largest power of two `<= n` (n >= 1).
fn prev_power_of_two(n: usize) -> usize {
    1 << n.ilog2()
}

impl<K: Eq + Hash> std::fmt::Debug for BoundedKeyed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedKeyed")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const START: Nanos = 1_700_000_000_000_000_000;

    /// True when the map holds `key` with tokens taken (not a fresh bucket).
    fn charged(map: &BoundedKeyed<String>, key: &str) -> bool {
        map.with_existing(key, |bucket| !bucket.is_full(START))
            .unwrap_or(false)
    }

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
        assert_eq!(map.len(), 10);
        let mut returned_full = 0;
        for key in &keys {
            let evicted = !map.contains(key.as_str());
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
    fn the_key_evicted_is_one_not_used_since_the_others() {
        // One shard below 128 keys: eviction order is the whole map's.
        let map: BoundedKeyed<String> = BoundedKeyed::new(4);
        let rate = Rate::new(1, Duration::from_secs(60), 1);
        for key in ["a", "b", "c", "d"] {
            map.check(key, &rate, 1, START);
        }
        // a, b and d are used again; c is not.
        for key in ["a", "b", "d"] {
            map.check(key, &rate, 1, START);
        }
        map.check("e", &rate, 1, START);
        assert!(!map.contains("c"));
        for key in ["a", "b", "d", "e"] {
            assert!(charged(&map, key), "{key} kept its charged bucket");
        }
    }

    #[test]
    fn a_busy_key_outlives_a_flood_of_one_off_keys() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(100);
        let rate = Rate::new(1, Duration::from_secs(60), 2);
        for i in 0..100_000 {
            // The busy client keeps coming back while the flood goes on.
            if i % 10 == 0 {
                map.check("busy", &rate, 1, START);
            }
            map.check(format!("one-off-{i}").as_str(), &rate, 1, START);
        }
        // Still drained: the flood did not hand it a fresh bucket.
        assert!(charged(&map, "busy"));
        assert!(!map.check("busy", &rate, 1, START).is_allowed());
    }

    #[test]
    fn a_key_left_unused_is_evicted_by_new_keys() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(100);
        let rate = Rate::new(1, Duration::from_secs(60), 1);
        map.check("idle", &rate, 1, START);
        map.check("idle", &rate, 1, START);
        for i in 0..1_000 {
            map.check(format!("new-{i}").as_str(), &rate, 1, START);
        }
        assert!(!map.contains("idle"));
        assert!(map.check("idle", &rate, 1, START).is_allowed());
    }

    #[test]
    fn the_map_never_holds_more_than_its_capacity() {
        for capacity in [1, 7, 100, 1_000, 5_000] {
            let map: BoundedKeyed<String> = BoundedKeyed::new(capacity);
            assert_eq!(map.capacity(), capacity);
            let rate = Rate::new(1, Duration::from_secs(1), 1);
            for i in 0..4 * capacity {
                map.check(format!("k{i}").as_str(), &rate, 1, START);
                assert!(map.len() <= capacity);
            }
            assert_eq!(map.len(), capacity);
            map.set_capacity(capacity / 2);
            assert!(map.len() <= (capacity / 2).max(1));
            assert_eq!(map.capacity(), (capacity / 2).max(1));
        }
    }

    #[test]
    fn keys_up_to_the_capacity_are_all_kept_however_they_hash() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(10_000);
        let rate = Rate::new(1, Duration::from_secs(60), 1);
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        for key in &keys {
            map.check(key.as_str(), &rate, 1, START);
        }
        assert!(keys.iter().all(|key| charged(&map, key)));
    }

    #[test]
    fn a_capacity_below_the_shard_count_still_answers_every_key() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(100_000);
        map.set_capacity(1);
        let rate = Rate::new(1, Duration::from_secs(60), 1);
        for i in 0..100 {
            let key = format!("k{i}");
            assert!(map.check(key.as_str(), &rate, 1, START).is_allowed());
            assert!(map.len() <= 1);
        }
    }

    #[test]
    fn concurrent_checks_of_one_new_key_share_one_bucket() {
        let map: BoundedKeyed<String> = BoundedKeyed::new(1_000);
        let rate = Rate::new(1, Duration::from_secs(3600), 100);
        let allowed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if map.check("shared", &rate, 1, START).is_allowed() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 100);
    }
}
