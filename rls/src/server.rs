//! `serve`: takes its two listeners bound, starts the rules' source (quota files or xDS),
//! and runs the gRPC (plain or TLS), HTTP and metrics servers until `shutdown` resolves;
//! then it drains ([`Lifecycle`]: unready at once, serving for the drain delay, then no
//! new connections and the calls in flight finished) and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use limiter::{Clock, SystemClock};
use proto::rlqs::rate_limit_quota_service_server::RateLimitQuotaServiceServer;
use proto::rls::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic_health::pb::health_server::HealthServer;
use tower::Layer;

use crate::connections::{ConnectionOptions, GrpcService, serve_grpc};
use crate::decide::Decider;
use crate::error::RlsError;
use crate::health::Health;
use crate::http::{Readiness, metrics_router, router};
use crate::refusal;
use crate::rlqs::{RlqsOptions, RlqsService, RlqsSetup, ShareBackend};
use crate::service::RlsService;
use crate::settings::{BackendKind, Settings};
use crate::snapshot::record_load_duration;
use crate::source::{RuleSource, SourceState};
use crate::stats::{DRAINING, prometheus};
use crate::store::redis::RedisStore;
use crate::store::{BucketStore, MemoryStore};
use crate::tls::{ServerTls, incoming};

/// How often full buckets and ended windows are dropped from the memory store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

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
    // The recorder first: the load's duration is recorded at once, and the Redis shards
    // report their state as soon as they connect.
    prometheus();
    let started = Instant::now();
    let quotas = RuleSource::initial_quotas(&settings)?;
    record_load_duration(started.elapsed());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let options = settings.answer_options();
    let rlqs = RlqsOptions::from_settings(&settings)?;
    match settings.backend_kind()? {
        BackendKind::Memory => {
            // Refuses Redis-only settings that could not take effect here.
            settings.leasing.options(false)?;
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
        lifecycle: settings.lifecycle(),
    };
    serve_store_with(listeners, decider, options, shutdown).await
}

/// What a server has beyond its two listeners; by default none of it, and
/// [`Lifecycle::IMMEDIATE`].
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
    /// How the server drains and its gRPC connections live.
    pub lifecycle: Lifecycle,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            metrics: None,
            source: None,
            rlqs: None,
            lifecycle: Lifecycle::IMMEDIATE,
        }
    }
}

/// How the server drains and ends once shutdown begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// How long to keep serving, unready, before refusing new connections.
    pub drain_delay: Duration,
    /// How gRPC connections live, and how long their calls may take to finish at the end.
    pub connections: ConnectionOptions,
}

impl Lifecycle {
    /// No drain delay, no maximum connection age, ten seconds for the calls in flight:
    /// what an embedded or test server wants.
    pub const IMMEDIATE: Lifecycle = Lifecycle {
        drain_delay: Duration::ZERO,
        connections: ConnectionOptions {
            max_age: None,
            age_grace: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(10),
        },
    };
}

/// Serves `decider` on `listeners` until `shutdown` resolves, with
/// the RLQS service on memory and [`Lifecycle::IMMEDIATE`]: see [`serve_with`].
pub async fn serve_store<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    serve_store_with(listeners, decider, ServeOptions::default(), shutdown).await
}

/// [`serve_store_with`] with the RLQS service set up as `rlqs` says and `lifecycle`.
pub async fn serve_with<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    rlqs: RlqsSetup,
    lifecycle: Lifecycle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    let options = ServeOptions {
        rlqs: Some(rlqs),
        lifecycle,
        ..ServeOptions::default()
    };
    serve_store_with(listeners, decider, options, shutdown).await
}

/// Serves `decider` on `listeners` until `shutdown` resolves, as `options` say: gRPC (the
/// rate limit service, RLQS and `grpc.health.v1`, plain or TLS), HTTP, and metrics on a
/// listener of their own if given. When `shutdown` resolves, readiness and gRPC health
/// turn to not serving at once and everything keeps serving for the drain delay; then
/// the gRPC listener closes, RLQS streams end, every connection is told to go away, and
/// the calls in flight finish (within the shutdown timeout). The HTTP ports answer,
/// unready, until then.
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
    let result = run(listeners, decider.clone(), options, shutdown).await;
    sweeper.abort();
    decider.store().release().await;
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
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Arc::new(Readiness::default());
    let health = Health::new(reporter, readiness.clone());
    let following = options.source.map(|source| {
        readiness.follow(source.clone());
        health.follow(source)
    });
    health.report().await;
    let lifecycle = options.lifecycle;
    let draining = metrics::gauge!(DRAINING);
    draining.set(0.0);
    let (stop_grpc, grpc_stopped) = watch::channel(false);
    let (stop_http, http_stopped) = watch::channel(false);
    let rlqs = options
        .rlqs
        .unwrap_or_else(|| RlqsSetup::memory(RlqsOptions::default()));
    // RLQS streams never end by themselves: they end when the gRPC port stops.
    let quota_service = RlqsService::new(
        decider.clone(),
        rlqs.shares,
        rlqs.options,
        grpc_stopped.clone(),
    );
    let drain = {
        let readiness = readiness.clone();
        async move {
            shutdown.await;
            readiness.drain();
            draining.set(1.0);
            health.report().await;
            tracing::info!(
                delay = ?lifecycle.drain_delay,
                "shutting down: unready, serving until the drain delay ends"
            );
            tokio::time::sleep(lifecycle.drain_delay).await;
            tracing::info!("drain delay over: refusing new connections, finishing calls in flight");
            let _ = stop_grpc.send(true);
        }
    };
    let service = grpc_service(&decider, health_service, quota_service);
    let grpc = async {
        let serving = serve_grpc(
            incoming(listeners.grpc, options.tls),
            service,
            lifecycle.connections,
            stopped(grpc_stopped),
        );
        tokio::join!(serving, drain);
        // gRPC is done: the HTTP ports may close too, and the process exit.
        let _ = stop_http.send(true);
    };
    let http = axum::serve(listeners.http, router(decider, readiness, prometheus()))
        .with_graceful_shutdown(stopped(http_stopped.clone()));
    let metrics = serve_metrics(options.metrics, stopped(http_stopped));
    tracing::info!(%grpc_addr, %http_addr, "serving");
    let ((), http, metrics) = tokio::join!(grpc, http, metrics);
    if let Some(following) = following {
        following.abort();
    }
    metrics?;
    http.map_err(|source| RlsError::Listen {
        addr: http_addr,
        source,
    })
}

/// The gRPC services: the rate limit service, RLQS and health. Their decoders refuse a
/// message over --max-request-bytes (RLQS: --rlqs-max-message-bytes) from its length,
/// before buffering it (the health service's messages are bounded alike), and the refusal
/// is answered `INVALID_ARGUMENT`.
fn grpc_service<S: BucketStore, H: tonic_health::pb::health_server::Health>(
    decider: &Arc<Decider<S>>,
    health: HealthServer<H>,
    quotas: RlqsService<impl ShareBackend>,
) -> impl GrpcService {
    let max_bytes = decider.bounds().max_bytes;
    let mut routes = Routes::builder();
    routes
        .add_service(health.max_decoding_message_size(max_bytes))
        .add_service(
            RateLimitServiceServer::new(RlsService::new(decider.clone()))
                .max_decoding_message_size(max_bytes),
        )
        .add_service({
            let max_bytes = quotas.max_message_bytes();
            RateLimitQuotaServiceServer::new(quotas).max_decoding_message_size(max_bytes)
        });
    refusal::undecodable(max_bytes).layer(routes.routes().prepare())
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
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
