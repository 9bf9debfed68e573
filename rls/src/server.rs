//! `serve`: takes its two listeners bound, starts the rules' source (quota files or xDS),
//! and runs the gRPC (plain or TLS), HTTP and metrics servers until `shutdown` resolves;
//! then it stops accepting, finishes the calls in flight, and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use limiter::{Clock, SystemClock};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use proto::rlqs::rate_limit_quota_service_server::RateLimitQuotaServiceServer;
use proto::rls::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use crate::decide::Decider;
use crate::error::RlsError;
use crate::http::{Readiness, metrics_router, router};
use crate::refusal;
use crate::rlqs::{RlqsOptions, RlqsService, RlqsSetup};
use crate::service::RlsService;
use crate::settings::{BackendKind, Settings};
use crate::source::{RuleSource, SourceState};
use crate::store::redis::RedisStore;
use crate::store::{BucketStore, MemoryStore};
use crate::tls::{ServerTls, incoming};

/// How often full buckets and ended windows are dropped from the memory store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Names under which `grpc.health.v1` reports: the default, each service's full name,
/// and the reference service's `ratelimit`.
const HEALTH_NAMES: [&str; 4] = [
    "",
    "envoy.service.ratelimit.v3.RateLimitService",
    "envoy.service.rate_limit_quota.v3.RateLimitQuotaService",
    "ratelimit",
];

/// The two bound listeners.
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// HTTP.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds both listeners at the settings' addresses.
    pub async fn bind(settings: &Settings) -> Result<Listeners, RlsError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RlsError::Listen { addr, source })
        };
        Ok(Listeners {
            grpc: bind(settings.grpc_addr).await?,
            http: bind(settings.http_addr).await?,
        })
    }
}

/// Serves the rules `settings` name (quota files, or an xDS server) on `listeners` until
/// `shutdown` resolves; binds the metrics listener when the settings ask for one. Refuses
/// to start on an invalid quota file, with the same message as `rls check`.
pub async fn serve(
    listeners: Listeners,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    // The recorder first: the Redis shards report their state as soon as they connect.
    prometheus();
    let quotas = RuleSource::initial_quotas(&settings)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let options = settings.answer_options();
    let rlqs = RlqsOptions::from_settings(&settings)?;
    match settings.backend_kind()? {
        BackendKind::Memory => {
            let decider = Arc::new(Decider::new(quotas, MemoryStore::new(), clock, options));
            let rlqs = RlqsSetup::memory(rlqs);
            serve_source(listeners, decider, rlqs, &settings, shutdown).await
        }
        BackendKind::Redis => {
            let store = RedisStore::new(settings.redis_options(clock.clone())?);
            let decider = Arc::new(Decider::new(quotas, store, clock, options));
            let rlqs = RlqsSetup::redis(&decider, rlqs);
            serve_source(listeners, decider, rlqs, &settings, shutdown).await
        }
    }
}

/// [`serve_store_with`], fed by the settings' rule source, with their TLS and metrics
/// listener.
async fn serve_source<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    rlqs: RlqsSetup,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    // The recorder first: the source counts its first rule set at once.
    prometheus();
    let source = RuleSource::start(decider.clone(), settings)?;
    let tls = match settings.grpc_tls.files()? {
        Some(files) => Some(Arc::new(ServerTls::start(files)?)),
        None => None,
    };
    let metrics = match settings.metrics.metrics_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| RlsError::Listen { addr, source })?;
            Some((listener, settings.metrics.metrics_path.clone()))
        }
        None => None,
    };
    let options = ServeOptions {
        tls,
        metrics,
        source: Some(source.state()),
        rlqs: Some(rlqs),
    };
    serve_store_with(listeners, decider, options, shutdown).await
}

/// What a server has beyond its two listeners.
#[derive(Default)]
pub struct ServeOptions {
    /// TLS on the gRPC listener.
    pub tls: Option<Arc<ServerTls>>,
    /// A listener of its own for the metrics page, and its path.
    pub metrics: Option<(TcpListener, String)>,
    /// What the rules' source says, for `/readyz` and `/config`.
    pub source: Option<watch::Receiver<SourceState>>,
    /// The RLQS service's options and where its weights meet (default: in this process,
    /// with the default options).
    pub rlqs: Option<RlqsSetup>,
}

/// Serves `decider` on `listeners` until `shutdown` resolves: gRPC (the rate limit service
/// and `grpc.health.v1`) and HTTP. On shutdown, readiness and gRPC health turn to not
/// serving, both listeners stop accepting, and calls in flight finish.
pub async fn serve_store<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    serve_store_with(listeners, decider, ServeOptions::default(), shutdown).await
}

/// [`serve_store`] with the RLQS service set up as `rlqs` says.
pub async fn serve_with<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    rlqs: RlqsSetup,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    let options = ServeOptions {
        rlqs: Some(rlqs),
        ..ServeOptions::default()
    };
    serve_store_with(listeners, decider, options, shutdown).await
}

/// [`serve_store`] with TLS, a metrics listener, a rule source's readiness and RLQS set up.
pub async fn serve_store_with<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    let sweeper = {
        let decider = decider.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                decider.store().sweep(decider.clock().now());
            }
        })
    };
    let result = run(listeners, decider, options, shutdown).await;
    sweeper.abort();
    result
}

async fn run<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    let grpc_addr = local_addr(&listeners.grpc);
    let http_addr = local_addr(&listeners.http);
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in HEALTH_NAMES {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let readiness = Arc::new(Readiness::default());
    if let Some(source) = options.source {
        readiness.follow(source);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let rlqs = options
        .rlqs
        .unwrap_or_else(|| RlqsSetup::memory(RlqsOptions::default()));
    let quota_service =
        RlqsService::new(decider.clone(), rlqs.shares, rlqs.options, stop_rx.clone());
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let drain = {
        let readiness = readiness.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight calls");
            readiness.drain();
            for name in HEALTH_NAMES {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            let _ = stop_tx.send(true);
        })
    };

    // The decoders refuse a message over --max-request-bytes from its length, before
    // buffering it; the health service's messages are bounded alike.
    let max_bytes = decider.bounds().max_bytes;
    let grpc = tonic::transport::Server::builder()
        .layer(refusal::undecodable(max_bytes))
        .add_service(health_service.max_decoding_message_size(max_bytes))
        .add_service(
            RateLimitServiceServer::new(RlsService::new(decider.clone()))
                .max_decoding_message_size(max_bytes),
        )
        .add_service(RateLimitQuotaServiceServer::new(quota_service))
        .serve_with_incoming_shutdown(incoming(listeners.grpc, options.tls), stopped());
    let http = axum::serve(listeners.http, router(decider, readiness, prometheus()))
        .with_graceful_shutdown(stopped());
    let metrics = serve_metrics(options.metrics, stopped());
    tracing::info!(%grpc_addr, %http_addr, "serving");
    let (grpc, http, metrics) = tokio::join!(grpc, http, metrics);
    drain.abort();
    grpc?;
    metrics?;
    http.map_err(|source| RlsError::Listen {
        addr: http_addr,
        source,
    })
}

/// Serves the metrics page on a listener of its own, when there is one, until `stopped`.
async fn serve_metrics(
    listener: Option<(TcpListener, String)>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    let Some((listener, path)) = listener else {
        return Ok(());
    };
    let addr = local_addr(&listener);
    tracing::info!(metrics_addr = %addr, %path, "serving metrics");
    axum::serve(listener, metrics_router(&path, prometheus()))
        .with_graceful_shutdown(stopped)
        .await
        .map_err(|source| RlsError::Listen { addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// The process's Prometheus recorder, installed on first use (several servers in one
/// test process share it). Metrics recorded before it is installed are lost: [`serve`]
/// installs it before it builds the store, whose shards report their state at once.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
