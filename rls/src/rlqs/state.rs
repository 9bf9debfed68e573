//! `ShareBackend`: where the weights of every Envoy reporting a bucket meet, so that each
//! replica splits a quota among all of them — in this process ([`MemoryShares`], for one
//! replica) or in Redis (`redis.rs`, for several).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::assign::Grant;

/// One stream (one Envoy), unique over the replicas sharing a backend.
pub type ClientId = u64;

/// An Envoy's weight on a bucket ([`super::assign::weight`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    /// The bucket's shared state ([`super::mapping::Target::Shared`]).
    pub key: Arc<[u8]>,
    /// The Envoy.
    pub client: ClientId,
    /// Its weight.
    pub weight: f64,
}

/// All the live weights on a bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Totals {
    /// Their sum.
    pub weight: f64,
    /// How many Envoys they are.
    pub clients: u32,
    /// The part of the quota they split: 1, or `1 / replicas` when the backend failed and
    /// `--on-backend-error local` splits this replica's part among its own Envoys.
    pub scale: f64,
}

/// What the backend says about one contribution's bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Split {
    /// Split the quota by these totals.
    Totals(Totals),
    /// The backend failed: push this instead (`--on-backend-error allow` or `deny`).
    Fallback(Grant),
    /// The backend failed: push nothing, so that Envoy's assignment expires and its
    /// `expired_assignment_behavior` decides (`--on-backend-error error`).
    Hold,
}

/// Where the weights meet.
pub trait ShareBackend: Send + Sync + 'static {
    /// Records `contributions` (each replaces the same Envoy's earlier weight on that
    /// bucket, and lives for the backend's lifetime of a weight unless renewed) and
    /// returns, for each, the totals of its bucket over every live weight.
    fn exchange(&self, contributions: &[Contribution]) -> impl Future<Output = Vec<Split>> + Send;

    /// Drops `client`'s weights on `keys` (its stream ended).
    fn forget(&self, client: ClientId, keys: &[Arc<[u8]>]) -> impl Future<Output = ()> + Send;
}

/// Per bucket, per Envoy: its weight and until when it counts.
type Weights = HashMap<Arc<[u8]>, HashMap<ClientId, (f64, Instant)>>;

/// Weights in this process: one replica's Envoys only. A weight not renewed within its
/// lifetime (its session stalled) no longer counts.
pub struct MemoryShares {
    lifetime: Duration,
    buckets: Mutex<Weights>,
}

impl MemoryShares {
    /// Weights live for `lifetime` unless renewed.
    pub fn new(lifetime: Duration) -> MemoryShares {
        MemoryShares {
            lifetime,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Buckets with at least one live weight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no bucket has a weight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Weights> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`ShareBackend::exchange`], at once.
    pub fn exchange_now(&self, contributions: &[Contribution]) -> Vec<Totals> {
        let now = Instant::now();
        let mut buckets = self.lock();
        for c in contributions {
            let clients = buckets.entry(c.key.clone()).or_default();
            clients.insert(c.client, (c.weight, now + self.lifetime));
        }
        let mut totals: HashMap<&[u8], Totals> = HashMap::new();
        contributions
            .iter()
            .map(|c| {
                *totals.entry(&c.key).or_insert_with(|| {
                    let clients = buckets.get_mut(&c.key).expect("inserted above");
                    clients.retain(|_, (_, expires)| *expires > now);
                    Totals {
                        weight: clients.values().map(|(w, _)| w).sum(),
                        clients: clients.len() as u32,
                        scale: 1.0,
                    }
                })
            })
            .collect()
    }

    /// [`ShareBackend::forget`], at once; also drops buckets whose weights all expired.
    pub fn forget_now(&self, client: ClientId, keys: &[Arc<[u8]>]) {
        let now = Instant::now();
        let mut buckets = self.lock();
        for key in keys {
            if let Some(clients) = buckets.get_mut(key) {
                clients.remove(&client);
            }
        }
        buckets.retain(|_, clients| {
            clients.retain(|_, (_, expires)| *expires > now);
            !clients.is_empty()
        });
    }
}

impl ShareBackend for MemoryShares {
    async fn exchange(&self, contributions: &[Contribution]) -> Vec<Split> {
        self.exchange_now(contributions)
            .into_iter()
            .map(Split::Totals)
            .collect()
    }

    async fn forget(&self, client: ClientId, keys: &[Arc<[u8]>]) {
        self.forget_now(client, keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(key: &Arc<[u8]>, client: ClientId, weight: f64) -> Contribution {
        Contribution {
            key: key.clone(),
            client,
            weight,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_envoy_sees_the_weights_of_all_envoys_on_its_bucket() {
        let shares = MemoryShares::new(Duration::from_secs(5));
        let (a, b): (Arc<[u8]>, Arc<[u8]>) = (Arc::from(&b"a"[..]), Arc::from(&b"b"[..]));
        shares.exchange_now(&[weight(&a, 1, 30.0), weight(&b, 1, 5.0)]);
        let totals = shares.exchange_now(&[weight(&a, 2, 10.0)]);
        assert_eq!((totals[0].weight, totals[0].clients), (40.0, 2));
        // A renewed weight replaces the old one.
        let totals = shares.exchange_now(&[weight(&a, 1, 20.0), weight(&a, 2, 10.0)]);
        assert_eq!(totals[0], totals[1]);
        assert_eq!((totals[0].weight, totals[0].clients), (30.0, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_weight_not_renewed_in_time_or_forgotten_no_longer_counts() {
        let shares = MemoryShares::new(Duration::from_secs(5));
        let a: Arc<[u8]> = Arc::from(&b"a"[..]);
        shares.exchange_now(&[weight(&a, 1, 30.0), weight(&a, 3, 1.0)]);
        tokio::time::advance(Duration::from_secs(6)).await;
        let totals = shares.exchange_now(&[weight(&a, 2, 10.0)]);
        assert_eq!((totals[0].weight, totals[0].clients), (10.0, 1));
        shares.forget_now(2, std::slice::from_ref(&a));
        assert!(shares.is_empty());
    }
}
