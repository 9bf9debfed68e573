//! [`Health`]: `grpc.health.v1` kept in step with readiness. Like `/readyz`, it says
//! `NOT_SERVING` before the rules' source is ready (with rules from xDS, until the first
//! set unless `--force-start-without-initial-config`) and from the start of draining on;
//! `SERVING` otherwise.

use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::http::Readiness;
use crate::source::SourceState;

/// Names under which `grpc.health.v1` reports: the default, each service's full name,
/// and the reference service's `ratelimit`.
pub const HEALTH_NAMES: [&str; 4] = [
    "",
    "envoy.service.ratelimit.v3.RateLimitService",
    "envoy.service.rate_limit_quota.v3.RateLimitQuotaService",
    "ratelimit",
];

/// The health service's reporter and the readiness it reports.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    readiness: Arc<Readiness>,
    /// One report at a time: a report of the source's state taken before draining began
    /// cannot land after the report of the drain.
    reporting: Arc<Mutex<()>>,
}

impl Health {
    /// Reports `readiness` through `reporter`.
    pub fn new(reporter: HealthReporter, readiness: Arc<Readiness>) -> Health {
        Health {
            reporter,
            readiness,
            reporting: Arc::default(),
        }
    }

    /// Reports readiness as it is now, under every name.
    pub async fn report(&self) {
        let _one_at_a_time = self.reporting.lock().await;
        let status = if self.readiness.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in HEALTH_NAMES {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// Reports again each time the rules' source changes, until the task is aborted.
    pub fn follow(&self, mut source: watch::Receiver<SourceState>) -> JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            while source.changed().await.is_ok() {
                health.report().await;
            }
        })
    }
}
