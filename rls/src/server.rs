//! `serve`: binds nothing itself (listeners come in bound), loads the quota files, and
//! runs the gRPC and HTTP servers until `shutdown` resolves; then it stops accepting,
//! finishes the calls in flight, and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use limiter::{Clock, SystemClock};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use proto::rls::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::decide::Decider;
use crate::error::RlsError;
use crate::http::{Readiness, router};
use crate::refusal;
use crate::reload::Reloader;
use crate::service::RlsService;
use crate::settings::{BackendKind, Settings};
use crate::store::redis::RedisStore;
use crate::store::{BucketStore, MemoryStore};

/// How often full buckets and ended windows are dropped from the memory store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Names under which `grpc.health.v1` reports: the default, the service's full name,
/// and the reference service's `ratelimit`.
const HEALTH_NAMES: [&str; 3] = [
    "",
    "envoy.service.ratelimit.v3.RateLimitService",
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

/// Serves the quota files named by `settings` on `listeners` until `shutdown` resolves.
/// Refuses to start on an invalid quota file, with the same message as `rls check`.
pub async fn serve(
    listeners: Listeners,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    prometheus();
    let quotas = settings.quotas.load()?;
    tracing::info!(
        domains = quotas.domains().count(),
        rules = quotas.rule_count(),
        "quota files loaded"
    );
    if let Some(path) = &settings.quotas.config {
        crate::reload::log_ignored(path);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let options = settings.answer_options();
    match settings.backend_kind()? {
        BackendKind::Memory => {
            let decider = Arc::new(Decider::new(quotas, MemoryStore::new(), clock, options));
            serve_reloading(listeners, decider, &settings, shutdown).await
        }
        BackendKind::Redis => {
            let store = RedisStore::new(settings.redis_options(clock.clone())?);
            let decider = Arc::new(Decider::new(quotas, store, clock, options));
            serve_reloading(listeners, decider, &settings, shutdown).await
        }
    }
}

/// [`serve_store`], reloading the quota files when they change or on SIGHUP unless the
/// settings turn that off.
async fn serve_reloading<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    let reloader = match (&settings.quotas.config, settings.watch_config) {
        (Some(path), true) => Some(Arc::new(Reloader::start(
            decider.clone(),
            path.clone(),
            settings.quotas.load_options(),
        )?)),
        _ => None,
    };
    let hangups = reloader
        .clone()
        .map(|reloader| tokio::spawn(reload_on_hangup(reloader)));
    let result = serve_store(listeners, decider, shutdown).await;
    if let Some(hangups) = hangups {
        hangups.abort();
    }
    result
}

/// Reloads on every SIGHUP, as daemons conventionally do.
async fn reload_on_hangup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the quota files");
            reloader.reload_now();
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

/// Serves `decider` on `listeners` until `shutdown` resolves: gRPC (the rate limit service
/// and `grpc.health.v1`) and HTTP. On shutdown, readiness and gRPC health turn to not
/// serving, both listeners stop accepting, and calls in flight finish.
pub async fn serve_store<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
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
    let result = run(listeners, decider, shutdown).await;
    sweeper.abort();
    result
}

async fn run<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
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
    let (stop_tx, stop_rx) = watch::channel(false);
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
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listeners.grpc).with_nodelay(Some(true)),
            stopped(),
        );
    let http = axum::serve(listeners.http, router(decider, readiness, prometheus()))
        .with_graceful_shutdown(stopped());
    tracing::info!(%grpc_addr, %http_addr, "serving");
    let (grpc, http) = tokio::join!(grpc, http);
    drain.abort();
    grpc?;
    http.map_err(|source| RlsError::Listen {
        addr: http_addr,
        source,
    })
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
