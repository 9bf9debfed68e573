//! `GatedStore`: a memory store whose every check waits until the test opens the gate,
//! to hold a call in flight for as long as a test needs.

use std::sync::Arc;

use rls::RlsError;
use rls::store::{Batch, BucketStore, MemoryStore, Verdict};
use tokio::sync::Notify;

/// Notifies `entered` when a check arrives, then waits for `gate`.
pub struct GatedStore {
    pub inner: MemoryStore,
    pub entered: Arc<Notify>,
    pub gate: Arc<Notify>,
}

impl GatedStore {
    /// A store and its two signals: (store, entered, gate).
    pub fn new() -> (GatedStore, Arc<Notify>, Arc<Notify>) {
        let (entered, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let store = GatedStore {
            inner: MemoryStore::new(),
            entered: entered.clone(),
            gate: gate.clone(),
        };
        (store, entered, gate)
    }
}

impl BucketStore for GatedStore {
    async fn check(&self, batch: &Batch, shed: bool) -> Result<Verdict, RlsError> {
        self.entered.notify_one();
        self.gate.notified().await;
        self.inner.check(batch, shed).await
    }
}
