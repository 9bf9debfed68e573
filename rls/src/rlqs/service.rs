//! `RlqsService`: Envoy's `envoy.service.rate_limit_quota.v3.RateLimitQuotaService/
//! StreamRateLimitQuotas`. Each stream is a [`Session`] run by a task of its own: reports
//! are read as they come (a bucket seen for the first time is answered at once), and every
//! push interval each of its buckets is assigned again from the backend's totals, so that
//! Envoy's assignments never expire while rls serves, and a changed quota or a shifted
//! demand reaches Envoy within an interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use config::QuotaSet;
use proto::rlqs::rate_limit_quota_response::BucketAction;
use proto::rlqs::rate_limit_quota_service_server::RateLimitQuotaService;
use proto::rlqs::{RateLimitQuotaResponse, RateLimitQuotaUsageReports};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::RlqsOptions;
use super::mapping::BucketMap;
use super::session::{Session, untracked};
use super::state::{ClientId, ShareBackend};

/// Most bucket actions in one response message: a push to thousands of buckets goes out
/// in messages of a bounded size.
pub const MAX_ACTIONS_PER_MESSAGE: usize = 1000;

/// Responses queued for one stream; a stream that reads slower makes its session wait.
const OUTBOX: usize = 8;

/// Where the quota snapshot comes from (the decider, which reloads swap).
pub trait QuotaSource: Send + Sync + 'static {
    /// The snapshot now serving.
    fn quotas(&self) -> Arc<QuotaSet>;
}

impl<S: crate::store::BucketStore> QuotaSource for crate::decide::Decider<S> {
    fn quotas(&self) -> Arc<QuotaSet> {
        crate::decide::Decider::quotas(self)
    }
}

/// What every stream of one server shares.
struct Hub<B> {
    quotas: Arc<dyn QuotaSource>,
    backend: B,
    options: RlqsOptions,
    map: Mutex<Option<Arc<BucketMap>>>,
    origin: Instant,
    /// High half of every client id: this process's, so that replicas' ids differ.
    nonce: u64,
    streams: AtomicU64,
    stop: watch::Receiver<bool>,
}

/// The gRPC Rate Limit Quota Service.
pub struct RlqsService<B> {
    hub: Arc<Hub<B>>,
}

impl<B: ShareBackend> RlqsService<B> {
    /// The largest message its streams may send (`--rlqs-max-message-bytes`).
    pub fn max_message_bytes(&self) -> usize {
        self.hub.options.max_message_bytes.get()
    }

    /// A service assigning the quotas of `quotas` through `backend`; its streams end when
    /// `stop` turns true (the server shuts down), so that Envoy reconnects elsewhere.
    pub fn new(
        quotas: Arc<dyn QuotaSource>,
        backend: B,
        options: RlqsOptions,
        stop: watch::Receiver<bool>,
    ) -> RlqsService<B> {
        use std::hash::{BuildHasher, RandomState};
        RlqsService {
            hub: Arc::new(Hub {
                quotas,
                backend,
                options,
                map: Mutex::new(None),
                origin: Instant::now(),
                nonce: RandomState::new().hash_one(std::process::id()) << 32,
                streams: AtomicU64::new(0),
                stop,
            }),
        }
    }
}

#[tonic::async_trait]
impl<B: ShareBackend> RateLimitQuotaService for RlqsService<B> {
    type StreamRateLimitQuotasStream = ReceiverStream<Result<RateLimitQuotaResponse, Status>>;

    async fn stream_rate_limit_quotas(
        &self,
        request: Request<Streaming<RateLimitQuotaUsageReports>>,
    ) -> Result<Response<Self::StreamRateLimitQuotasStream>, Status> {
        let (out, responses) = mpsc::channel(OUTBOX);
        tokio::spawn(self.hub.clone().run(request.into_inner(), out));
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}

type Outbox = mpsc::Sender<Result<RateLimitQuotaResponse, Status>>;

impl<B: ShareBackend> Hub<B> {
    fn client(&self) -> ClientId {
        self.nonce | (self.streams.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
    }

    /// The bucket mapping of the snapshot now serving, built once per snapshot.
    fn map(&self) -> Arc<BucketMap> {
        let quotas = self.quotas.quotas();
        let mut current = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some(map) if Arc::ptr_eq(map.quotas(), &quotas) => map.clone(),
            _ => {
                let map = Arc::new(BucketMap::new(quotas));
                *current = Some(map.clone());
                map
            }
        }
    }

    /// Runs one stream until Envoy ends it, it breaks, or the server stops.
    async fn run(self: Arc<Self>, mut reports: Streaming<RateLimitQuotaUsageReports>, out: Outbox) {
        let client = self.client();
        let mut session = Session::new(client);
        let mut tick = tokio::time::interval(self.options.push_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stop = self.stop.clone();
        metrics::gauge!("rls_rlqs_streams").increment(1);
        tracing::debug!(client, "rlqs stream opened");
        let refusal = loop {
            tokio::select! {
                report = reports.message() => match report {
                    Ok(Some(report)) => match self.on_report(&mut session, report, &out).await {
                        Ok(true) => {}
                        Ok(false) => break None,
                        Err(status) => break Some(status),
                    },
                    Ok(None) => break None,
                    Err(status) => {
                        let max_bytes = self.options.max_message_bytes.get();
                        if let Some(refusal) = crate::refusal::of_decoder(&status, max_bytes) {
                            break Some(refusal);
                        }
                        tracing::debug!(client, %status, "rlqs stream broken");
                        break None;
                    }
                },
                _ = tick.tick() => {
                    if session.domain().is_some() && !self.push(&mut session, &out).await {
                        break None;
                    }
                }
                _ = stopped(&mut stop) => break None,
            }
        };
        if let Some(status) = refusal {
            tracing::debug!(client, %status, "rlqs stream refused");
            metrics::counter!("rls_rlqs_refused_streams_total").increment(1);
            let _ = out.send(Err(status)).await;
        }
        self.backend.forget(client, &session.shared_keys()).await;
        metrics::gauge!("rls_rlqs_buckets").decrement(session.len() as f64);
        metrics::gauge!("rls_rlqs_streams").decrement(1);
        tracing::debug!(client, "rlqs stream closed");
    }

    /// Reads a report and answers its new buckets at once; false if the stream is gone.
    async fn on_report(
        &self,
        session: &mut Session,
        report: RateLimitQuotaUsageReports,
        out: &Outbox,
    ) -> Result<bool, Status> {
        let now = self.origin.elapsed();
        let map = self.map();
        let options = &self.options;
        let seen = session.report(now, report, &map, options.policy, &options.limits)?;
        if !seen.untracked.is_empty() {
            metrics::counter!("rls_rlqs_untracked_buckets_total")
                .increment(seen.untracked.len() as u64);
        }
        let mut actions: Vec<BucketAction> = seen
            .untracked
            .iter()
            .map(|key| untracked(key, options.policy.unmatched))
            .collect();
        actions.extend(self.assign(session, &seen.new).await);
        Ok(send(out, actions).await)
    }

    /// Abandons the idle buckets and assigns every other one again; false if the stream is
    /// gone.
    async fn push(&self, session: &mut Session, out: &Outbox) -> bool {
        let now = self.origin.elapsed();
        session.remap(&self.map(), self.options.policy);
        let (mut actions, gone) = session.abandon_idle(now, self.options.limits.abandon_after);
        if !gone.is_empty() {
            self.backend.forget(session.client(), &gone).await;
        }
        let all = session.all();
        actions.extend(self.assign(session, &all).await);
        send(out, actions).await
    }

    async fn assign(&self, session: &mut Session, which: &[usize]) -> Vec<BucketAction> {
        let (shared, contributions) = session.contributions(which);
        let splits = if contributions.is_empty() {
            Vec::new()
        } else {
            self.backend.exchange(&contributions).await
        };
        session.assign(which, &shared, &splits, self.options.limits.ttl)
    }
}

/// Resolves once the server stops (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sends `actions` in messages of at most [`MAX_ACTIONS_PER_MESSAGE`]; false if the
/// stream is gone.
async fn send(out: &Outbox, mut actions: Vec<BucketAction>) -> bool {
    while !actions.is_empty() {
        let rest = actions.split_off(actions.len().min(MAX_ACTIONS_PER_MESSAGE));
        let message = RateLimitQuotaResponse {
            bucket_action: std::mem::replace(&mut actions, rest),
        };
        if out.send(Ok(message)).await.is_err() {
            return false;
        }
    }
    true
}
