//! `MemoryStore`: one replica's buckets in process, `limiter`'s lock-free GCRA buckets and
//! fixed-window counters in sharded maps. Full buckets and ended windows are swept, so
//! memory tracks only the buckets in use.

use limiter::{Bucket, Decision, Keyed, Nanos, Window};

use super::{Batch, BucketStore, Meter, Verdict, request_denied};
use crate::error::RlsError;

/// The embedded in-memory backend.
#[derive(Default)]
pub struct MemoryStore {
    buckets: Keyed<Box<[u8]>, Bucket>,
    windows: Keyed<Box<[u8]>, Window>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Drops the state of full buckets and ended windows; returns how many were dropped.
    pub fn sweep(&self, now: Nanos) -> usize {
        self.buckets.sweep(now) + self.windows.sweep(now)
    }

    /// How many keys hold state.
    pub fn len(&self) -> usize {
        self.buckets.len() + self.windows.len()
    }

    /// True when no key holds state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous core of [`BucketStore::check`].
    pub fn check_now(&self, batch: &Batch) -> Verdict {
        let now = batch.now;
        let hold = batch.stop_increment.then(|| self.windows_going_over(batch));
        let mut decisions = Vec::with_capacity(batch.checks.len());
        for (i, check) in batch.checks.iter().enumerate() {
            let key = batch.key(check);
            let decision = match check.meter {
                Meter::TokenBucket(rate) => {
                    self.buckets.with(key, |b| b.check(&rate, check.cost, now))
                }
                Meter::FixedWindow { period_secs, limit } => {
                    // In stop-increment mode, once some counter goes over, the others
                    // are only read (the reference's INCRBY 0).
                    let hits = match &hold {
                        Some(over) if over.iter().any(|&o| o) && !over[i] => 0,
                        _ => check.cost,
                    };
                    self.windows
                        .with(key, |w| w.hit(period_secs, hits, now))
                        .decision(limit)
                }
            };
            decisions.push(decision);
        }
        let denied = request_denied(batch, &decisions);
        if denied {
            self.refund(batch, &mut decisions);
        }
        Verdict {
            decisions,
            denied,
            cached: Vec::new(),
        }
    }

    /// Which fixed-window checks would push their counter over the limit.
    fn windows_going_over(&self, batch: &Batch) -> Vec<bool> {
        batch
            .checks
            .iter()
            .map(|check| match check.meter {
                Meter::FixedWindow { period_secs, limit } => {
                    let count = self
                        .windows
                        .with_existing(batch.key(check), |w| w.peek(period_secs, batch.now))
                        .map_or(0, |c| c.after);
                    count + u64::from(check.cost) > u64::from(limit)
                }
                Meter::TokenBucket(_) => false,
            })
            .collect()
    }

    /// Gives back the tokens a denied request took, and reports the buckets as they are
    /// after the refund.
    fn refund(&self, batch: &Batch, decisions: &mut [Decision]) {
        for (check, decision) in batch.checks.iter().zip(decisions.iter_mut()) {
            let (Meter::TokenBucket(rate), Decision::Allowed { .. }) = (check.meter, *decision)
            else {
                continue;
            };
            if check.cost == 0 {
                continue;
            }
            if let Some(after) = self.buckets.with_existing(batch.key(check), |b| {
                b.refund(&rate, check.cost, batch.now);
                b.check(&rate, 0, batch.now)
            }) {
                *decision = after;
            }
        }
    }
}

impl BucketStore for MemoryStore {
    /// Answers at once from process memory: nothing to shed.
    async fn check(&self, batch: &Batch, _shed: bool) -> Result<Verdict, RlsError> {
        Ok(self.check_now(batch))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn sweep(&self, now: Nanos) {
        MemoryStore::sweep(self, now);
        metrics::gauge!("rls_memory_keys").set(self.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Check, Role};
    use limiter::Rate;
    use std::time::Duration;

    const START: Nanos = 1_700_000_000_000_000_000;

    fn token_batch(limits: &[(u32, Role)], cost: u32) -> Batch {
        let mut batch = Batch {
            now: START,
            ..Batch::default()
        };
        for (i, &(per_second, role)) in limits.iter().enumerate() {
            let start = batch.keys.len();
            batch.keys.extend_from_slice(format!("key{i}").as_bytes());
            batch.checks.push(Check {
                key: start..batch.keys.len(),
                identity: 0,
                meter: Meter::TokenBucket(Rate::new(
                    per_second,
                    Duration::from_secs(1),
                    per_second,
                )),
                cost,
                descriptor: i,
                role,
            });
        }
        batch
    }

    #[test]
    fn a_denied_request_takes_no_tokens_from_its_other_buckets() {
        let store = MemoryStore::new();
        let batch = token_batch(&[(10, Role::Enforced), (1, Role::Enforced)], 1);
        let first = store.check_now(&batch).decisions;
        assert_eq!(first[0].remaining(), 9);
        assert!(first[1].is_allowed());
        let second = store.check_now(&batch).decisions;
        assert!(!second[1].is_allowed());
        // The wide bucket was charged and refunded: still 9 left, reported as such.
        assert_eq!(second[0].remaining(), 9);
        assert_eq!(
            store
                .check_now(&token_batch(&[(10, Role::Enforced)], 0))
                .decisions[0]
                .remaining(),
            9
        );
    }

    #[test]
    fn an_allowed_request_keeps_its_charges_even_if_a_shadow_descriptor_is_over() {
        let store = MemoryStore::new();
        let batch = token_batch(&[(10, Role::Enforced), (1, Role::Shadow)], 1);
        store.check_now(&batch);
        let second = store.check_now(&batch).decisions;
        assert!(!second[1].is_allowed());
        assert_eq!(second[0].remaining(), 8);
    }

    #[test]
    fn sweeping_drops_full_buckets_only() {
        let store = MemoryStore::new();
        store.check_now(&token_batch(&[(10, Role::Enforced)], 1));
        assert_eq!(store.len(), 1);
        assert_eq!(store.sweep(START), 0);
        assert_eq!(store.sweep(START + 100_000_000), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn stop_increment_mode_counts_only_the_window_that_goes_over() {
        let store = MemoryStore::new();
        let mut batch = Batch {
            now: START,
            stop_increment: true,
            ..Batch::default()
        };
        for (i, limit) in [(0, 5u32), (1, 1u32)] {
            let start = batch.keys.len();
            batch.keys.push(i as u8);
            batch.checks.push(Check {
                key: start..batch.keys.len(),
                identity: 0,
                meter: Meter::FixedWindow {
                    period_secs: 60,
                    limit,
                },
                cost: 1,
                descriptor: i,
                role: Role::Enforced,
            });
        }
        let first = store.check_now(&batch).decisions;
        assert_eq!((first[0].remaining(), first[1].remaining()), (4, 0));
        let second = store.check_now(&batch).decisions;
        assert!(!second[1].is_allowed());
        // The wide window was only read: still 4 left.
        assert_eq!(second[0].remaining(), 4);
    }
}
