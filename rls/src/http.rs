//! The HTTP port: `/healthz` (alive), `/readyz` and `/healthcheck` (serving, not draining),
//! `POST /json` (proto3-JSON `ShouldRateLimit`), `/metrics` (Prometheus), `/config` (the
//! quota files serving, `?format=json` as JSON). It answers until the process exits:
//! while gRPC drains, readiness says 503.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use proto::rls::RateLimitRequest;
use proto::rls::rate_limit_response::Code;
use tokio::sync::watch;

use crate::config_view;
use crate::decide::Decider;
use crate::error::{ErrorKind, RlsError};
use crate::outcome::Outcomes;
use crate::source::SourceState;
use crate::store::BucketStore;

/// Whether the server is draining (shutdown started): readiness turns false at once; and
/// what the rules' source says (an xDS source is not ready before its first rule set).
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
    source: OnceLock<watch::Receiver<SourceState>>,
}

impl Readiness {
    /// Marks the server as draining.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Follows what the rules' source says (once; later calls are ignored).
    pub fn follow(&self, source: watch::Receiver<SourceState>) {
        let _ = self.source.set(source);
    }

    /// True once shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// True until shutdown starts, once the rules' source is ready.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.source().ready
    }

    /// What the rules' source says now.
    pub fn source(&self) -> SourceState {
        self.source
            .get()
            .map(|s| s.borrow().clone())
            .unwrap_or_default()
    }
}

struct HttpState<S> {
    decider: Arc<Decider<S>>,
    readiness: Arc<Readiness>,
    metrics: PrometheusHandle,
    outcomes: Outcomes,
}

/// The HTTP routes.
pub fn router<S: BucketStore>(
    decider: Arc<Decider<S>>,
    readiness: Arc<Readiness>,
    metrics: PrometheusHandle,
) -> Router {
    let outcomes = Outcomes::new(decider.store().kind());
    let state = Arc::new(HttpState {
        decider,
        readiness,
        metrics,
        outcomes,
    });
    Router::new()
        .route("/healthz", get(|| async { "OK\n" }))
        .route("/readyz", get(ready::<S>))
        // The reference service's health path, for drop-in probes.
        .route("/healthcheck", get(ready::<S>))
        .route(
            "/json",
            post(json::<S>).layer(DefaultBodyLimit::max(state.decider.bounds().max_bytes)),
        )
        .route("/metrics", get(render_metrics::<S>))
        .route("/config", get(config::<S>))
        .with_state(state)
}

/// Ready while not draining, once the rules' source has rules (an xDS server's first
/// set), and while the store can answer as configured (for Redis: some shard answers, or
/// the failure mode answers by itself). The source's report follows, when it has one.
async fn ready<S: BucketStore>(State(state): State<Arc<HttpState<S>>>) -> Response {
    let source = state.readiness.source();
    let (status, text) = if state.readiness.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !source.ready {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first rule set",
        )
    } else if !state.decider.store().is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "backend unavailable")
    } else {
        (StatusCode::OK, "OK")
    };
    match source.report {
        Some(report) => (status, format!("{text}\n{report}\n")).into_response(),
        None => (status, format!("{text}\n")).into_response(),
    }
}

/// proto3 JSON in and out: 200 OK, 429 over limit, 400 for a body that is not a valid
/// request (a body over `--max-request-bytes` is refused before more of it is read), 503
/// when the backend cannot answer. Every refusal is counted as gRPC's are.
async fn json<S: BucketStore>(
    State(state): State<Arc<HttpState<S>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let in_flight = state.outcomes.start();
    let outcome = match read_request(body, state.decider.bounds().max_bytes) {
        Ok(request) => state.decider.decide(&request).await,
        Err(refused) => Err(refused),
    };
    in_flight.finish(&outcome);
    match outcome {
        Ok(answer) => {
            let status = if answer.overall_code == Code::OverLimit as i32 {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::OK
            };
            match serde_json::to_vec(&answer) {
                Ok(body) => {
                    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                }
                Err(error) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
                }
            }
        }
        Err(error) => {
            let status = match error.kind() {
                ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
                ErrorKind::Backend => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, format!("{error}\n")).into_response()
        }
    }
}

/// The request a `/json` body holds, or why it holds none.
fn read_request(
    body: Result<Bytes, BytesRejection>,
    max_bytes: usize,
) -> Result<RateLimitRequest, RlsError> {
    let body = body.map_err(|rejection| {
        RlsError::InvalidRequest(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is over {max_bytes} bytes, the most allowed")
        } else {
            rejection.body_text()
        })
    })?;
    serde_json::from_slice(&body).map_err(|error| RlsError::InvalidRequest(error.to_string()))
}

async fn render_metrics<S>(State(state): State<Arc<HttpState<S>>>) -> Response {
    prometheus_page(&state.metrics)
}

fn prometheus_page(metrics: &PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}

/// The metrics page alone at `path`, for a listener of its own (the reference's
/// `PROMETHEUS_ADDR` and `PROMETHEUS_PATH`).
pub fn metrics_router(path: &str, metrics: PrometheusHandle) -> Router {
    Router::new().route(path, get(move || async move { prometheus_page(&metrics) }))
}

/// The rules serving, as text (after a `#` line on their source when it has something to
/// say), or as JSON with `?format=json`.
async fn config<S: BucketStore>(State(state): State<Arc<HttpState<S>>>, uri: Uri) -> Response {
    let snapshots = state.decider.snapshots();
    let (snapshot, refusal) = (snapshots.current(), snapshots.refusal());
    let source = state.readiness.source().report;
    let as_json = uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "format=json"));
    if as_json {
        let body = config_view::json(&snapshot, refusal.as_deref(), source.as_deref());
        (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    } else {
        let page = config_view::text(&snapshot, refusal.as_deref());
        match source {
            Some(report) => format!("# {report}\n{page}").into_response(),
            None => page.into_response(),
        }
    }
}
