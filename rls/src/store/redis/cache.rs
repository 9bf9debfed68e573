//! `OverLimitCache`: buckets known to be empty, answered locally until they refill, and
//! one question to Redis at a time for a bucket that may have refilled.
//!
//! Exact, not a guess: an entry holds what Redis reported (the bucket's tat, or the
//! window's count and end) placed on the local clock at the time the call was *sent*,
//! which is no later than the script ran, so a local answer can only be "denied" when
//! Redis would certainly deny too. Anything else still goes to Redis.
//!
//! A token bucket is remembered whenever Redis leaves it empty (denied, or allowed with
//! nothing left), not only when it denies: that is when the next check is sure to be
//! denied too. A window is remembered once denied.
//! When a remembered bucket may have refilled, the first check to see it is the *probe*:
//! it asks Redis, and checks of the same bucket that come while it is in flight wait for
//! its answer and then look again, at a time after the answer arrived. For a hot key over
//! its limit this makes one call per refilled token instead of one per request that
//! arrives during a round trip.

use std::sync::Arc;

use dashmap::DashMap;
use limiter::{Clock, Decision, Nanos, WindowCount};
use tokio::sync::watch;

use crate::store::{Check, Meter};

#[derive(Clone, Copy, Debug)]
enum Known {
    /// A token bucket's tat, on the local clock.
    Tat(Nanos),
    /// A window's count and its end, on the local clock.
    Window { count: u64, end: Nanos },
}

impl Known {
    /// The later of two facts about one bucket: both are lower bounds of what Redis holds,
    /// so the greater is too.
    fn merge(self, other: Known) -> Known {
        match (self, other) {
            (Known::Tat(a), Known::Tat(b)) => Known::Tat(a.max(b)),
            // The later window, or the higher count of the same one.
            (Known::Window { count: a, end: x }, Known::Window { count: b, end: y }) => {
                if (y, b) > (x, a) { other } else { self }
            }
            _ => other,
        }
    }
}

struct Entry {
    known: Known,
    /// Closes when the probe in flight for this bucket has its answer (or gave up).
    probe: Option<watch::Receiver<()>>,
}

impl Entry {
    fn probe_in_flight(&self) -> Option<&watch::Receiver<()>> {
        // `has_changed` fails once the probe's sender is dropped.
        self.probe.as_ref().filter(|rx| rx.has_changed().is_ok())
    }
}

/// What the cache says about one check.
pub enum Lookup {
    /// Redis would certainly deny it: answer this locally.
    Denied(Decision),
    /// Another check is asking Redis about this bucket: wait for the receiver to close,
    /// then look again.
    Wait(watch::Receiver<()>),
    /// Ask Redis. With a probe, checks of the same bucket wait for this answer: keep the
    /// probe until the answer is remembered, then drop it.
    Ask(Option<Probe>),
}

/// Held by the check asking Redis on behalf of others; dropping it wakes them.
pub struct Probe {
    _done: watch::Sender<()>,
}

/// A bounded map of buckets known to be empty.
pub struct OverLimitCache {
    entries: DashMap<Box<[u8]>, Entry>,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl OverLimitCache {
    /// A cache of at most `capacity` buckets; 0 turns it off. `clock` is the clock of the
    /// batches' `now`: a check that waited for a probe is decided at its reading.
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        OverLimitCache {
            entries: DashMap::new(),
            capacity,
            clock,
        }
    }

    /// The time to decide at after waiting for a probe: no earlier than the request's own
    /// time, and after the probe's answer arrived.
    pub fn after_wait(&self, now: Nanos) -> Nanos {
        now.max(self.clock.now())
    }

    /// What to do with `check` at `now`. With `may_wait` false (a check that has waited
    /// once already), the check neither waits nor becomes a probe: it asks Redis itself.
    /// So a probe has never waited, and a check waits at most one round trip.
    pub fn lookup(&self, key: &[u8], check: &Check, now: Nanos, may_wait: bool) -> Lookup {
        if self.capacity == 0 {
            return Lookup::Ask(None);
        }
        {
            let Some(entry) = self.entries.get(key) else {
                return Lookup::Ask(None);
            };
            if let Some(decision) = denies(entry.known, check, now) {
                return Lookup::Denied(decision);
            }
            if !may_wait {
                return Lookup::Ask(None);
            }
            if let Some(probe) = entry.probe_in_flight() {
                return Lookup::Wait(probe.clone());
            }
        }
        // The bucket may have refilled and nobody is asking: this check becomes the probe
        // (under the entry's write lock, so only one does).
        let Some(mut entry) = self.entries.get_mut(key) else {
            return Lookup::Ask(None);
        };
        if let Some(probe) = entry.probe_in_flight() {
            return Lookup::Wait(probe.clone());
        }
        let (sender, receiver) = watch::channel(());
        entry.probe = Some(receiver);
        Lookup::Ask(Some(Probe { _done: sender }))
    }

    /// Records what Redis answered for a call sent at `sent`: a token bucket it left
    /// empty (denied, or allowed with nothing left), a window it denied.
    ///
    /// Not a window it allowed to its limit: as in the reference, the request that goes
    /// over a window is still counted in Redis, so it must reach Redis.
    pub fn remember(&self, key: &[u8], check: &Check, decision: &Decision, sent: Nanos) {
        if self.capacity == 0 || decision.remaining() > 0 {
            return;
        }
        let known = match (check.meter, decision) {
            // Allowed or denied, the tat Redis holds is `reset_after` ahead of its now.
            (Meter::TokenBucket(_), _) => Known::Tat(sent.saturating_add(decision.reset_after())),
            (Meter::FixedWindow { .. }, Decision::Allowed { .. }) => return,
            (Meter::FixedWindow { limit, .. }, Decision::Denied { .. }) => Known::Window {
                // Over means after > limit; what Redis holds is at least that.
                count: u64::from(limit) + 1,
                end: sent.saturating_add(decision.reset_after()),
            },
        };
        let merge = |entry: &mut Entry| entry.known = entry.known.merge(known);
        // A key already held is updated without copying it.
        if let Some(mut entry) = self.entries.get_mut(key) {
            merge(&mut entry);
        } else if self.entries.len() < self.capacity {
            self.entries
                .entry(key.into())
                .and_modify(merge)
                .or_insert(Entry { known, probe: None });
        }
    }

    /// Forgets what a refund may have changed.
    pub fn forget(&self, key: &[u8]) {
        self.entries.remove(key);
    }

    /// Drops entries that no longer deny anything by themselves (tats and window ends in
    /// the past) and have no probe in flight.
    pub fn sweep(&self, now: Nanos) {
        self.entries.retain(|_, entry| {
            entry.probe_in_flight().is_some()
                || match entry.known {
                    Known::Tat(tat) => tat > now,
                    Known::Window { end, .. } => end > now,
                }
        });
    }

    /// How many buckets are cached.
    #[allow(clippy::len_without_is_empty)] // a metric, not a collection API
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The decision for `check` at `now` when what is known of its bucket denies it.
fn denies(known: Known, check: &Check, now: Nanos) -> Option<Decision> {
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
