//! Per-key state with memory bounded by use: [`Keyed`] maps keys to buckets or windows and
//! [`Keyed::sweep`] drops every state that is [`Idle`] (equal to no state).

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::hash::Hash;

use dashmap::DashMap;

use crate::clock::Nanos;
use crate::gcra::Bucket;
use crate::window::Window;

/// State that can tell when it is the same as no state, so a store may drop it.
pub trait Idle {
    /// True when this state equals "no state" at `now` (full bucket, ended window) and can be
    /// dropped.
    fn is_idle(&self, now: Nanos) -> bool;
}

impl Idle for Bucket {
    fn is_idle(&self, now: Nanos) -> bool {
        self.is_full(now)
    }
}

impl Idle for Window {
    fn is_idle(&self, now: Nanos) -> bool {
        self.is_expired(now)
    }
}

/// A sharded map (dashmap) from keys to per-key state. No lock is held across keys; a check
/// takes one shard read lock briefly (a write lock only when inserting a new key).
///
/// Keys usually come from requests, so the map keeps std's randomly seeded SipHash: a faster
/// unkeyed hash would let a client aim many keys at one shard.
pub struct Keyed<K, V> {
    map: DashMap<K, V, RandomState>,
}

impl<K: Eq + Hash, V: Default + Idle> Keyed<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Keyed {
            map: DashMap::new(),
        }
    }

    /// Runs `f` on the state of `key`, inserting a default state first when absent. Looks up by
    /// a borrowed form so a hit allocates nothing.
    ///
    /// The key is owned (`to_owned().into()`) only on a miss. `Into` rather than
    /// `ToOwned<Owned = K>` so that `Box<[u8]>` keys can be looked up by `&[u8]` (whose owned
    /// form is a `Vec<u8>`) and `Box<str>` keys by `&str`.
    ///
    /// `f` runs under the key's shard lock: keep it to a few atomic operations, and never touch
    /// this map from inside it (that may deadlock).
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned + ?Sized,
        Q::Owned: Into<K>,
    {
        if let Some(state) = self.map.get(key) {
            return f(&state);
        }
        // Another thread may insert the same key between the miss and here; `entry` then finds
        // its state instead of replacing it. The write lock is downgraded before `f` runs.
        let state = self
            .map
            .entry(key.to_owned().into())
            .or_default()
            .downgrade();
        f(&state)
    }

    /// Runs `f` only when `key` has state.
    pub fn with_existing<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|state| f(&state))
    }

    /// Drops every idle state; returns how many were dropped. Memory thereby tracks only keys in
    /// use.
    ///
    /// Takes each shard's write lock in turn, so no check can charge a state between the idle
    /// test and its removal. When the map has shrunk to under a quarter of its capacity, the
    /// tables are shrunk too (a rehash of what is left), so a past spike of keys does not pin
    /// memory.
    pub fn sweep(&self, now: Nanos) -> usize {
        // Counted in the closure: len() before and after would also count concurrent inserts.
        let mut dropped = 0;
        self.map.retain(|_, state| {
            let idle = state.is_idle(now);
            dropped += usize::from(idle);
            !idle
        });
        if self.map.len().saturating_mul(4) < self.map.capacity() {
            self.map.shrink_to_fit();
        }
        dropped
    }

    /// How many keys have state.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key has state.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K: Eq + Hash, V: Default + Idle> Default for Keyed<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash, V> std::fmt::Debug for Keyed<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Listing every key would take every shard lock and could print millions of lines.
        f.debug_struct("Keyed")
            .field("len", &self.map.len())
            .finish_non_exhaustive()
    }
}
