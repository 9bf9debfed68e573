//! `serve`: binds nothing itself (listeners come in bound), loads the quota files, and
//! runs the gRPC and HTTP servers until `shutdown` resolves; then it drains ([`Lifecycle`]:
//! unready at once, serving for the drain delay, then no new connections and the calls in
//! flight finished) and returns.

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
use tonic_health::ServingStatus;

use crate::connections::{ConnectionOptions, serve_grpc};
use crate::decide::Decider;
use crate::error::RlsError;
use crate::http::{Readiness, router};
use crate::reload::Reloader;
use crate::rlqs::{RlqsOptions, RlqsService, RlqsSetup};
use crate::service::RlsService;
use crate::settings::{BackendKind, Settings};
use crate::snapshot::record_load_duration;
use crate::stats::{DRAINING, prometheus};
use crate::store::redis::RedisStore;
use crate::store::{BucketStore, MemoryStore};

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

/// Serves the quota files named by `settings` on `listeners` until `shutdown` resolves.
/// Refuses to start on an invalid quota file, with the same message as `rls check`.
pub async fn serve(
    listeners: Listeners,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RlsError> {
    let started = Instant::now();
    let quotas = settings.quotas.load()?;
    record_load_duration(started.elapsed());
    tracing::info!(
        domains = quotas.domains().count(),
        rules = quotas.rule_count(),
        "quota files loaded"
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let options = settings.answer_options();
    let rlqs = RlqsOptions::from_settings(&settings)?;
    match settings.backend {
        BackendKind::Memory => {
            let decider = Arc::new(Decider::new(quotas, MemoryStore::new(), clock, options));
            let rlqs = RlqsSetup::memory(rlqs);
            serve_reloading(listeners, decider, rlqs, &settings, shutdown).await
        }
        BackendKind::Redis => {
            let store = RedisStore::new(settings.redis_options(clock.clone())?);
            let decider = Arc::new(Decider::new(quotas, store, clock, options));
            let rlqs = RlqsSetup::redis(&decider, rlqs);
            serve_reloading(listeners, decider, rlqs, &settings, shutdown).await
        }
    }
}

/// [`serve_store`], reloading the quota files when they change or on SIGHUP unless the
/// settings turn that off.
async fn serve_reloading<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    rlqs: RlqsSetup,
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
    let result = serve_with(listeners, decider, rlqs, settings.lifecycle(), shutdown).await;
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
    let rlqs = RlqsSetup::memory(RlqsOptions::default());
    serve_with(listeners, decider, rlqs, Lifecycle::IMMEDIATE, shutdown).await
}

/// Serves `decider` on `listeners` until `shutdown` resolves, with the RLQS service set up
/// as `rlqs` says: gRPC (the rate limit service, RLQS and `grpc.health.v1`) and HTTP.
/// When `shutdown` resolves, readiness and gRPC health turn to not serving at once and
/// everything keeps serving for the drain delay; then the gRPC listener closes, RLQS
/// streams end, every connection is told to go away, and the calls in flight finish
/// (within the shutdown timeout). The HTTP port answers, unready, until then.
pub async fn serve_with<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    rlqs: RlqsSetup,
    lifecycle: Lifecycle,
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
    let result = run(listeners, decider, rlqs, lifecycle, shutdown).await;
    sweeper.abort();
    result
}

async fn run<S: BucketStore>(
    listeners: Listeners,
    decider: Arc<Decider<S>>,
    rlqs: RlqsSetup,
    lifecycle: Lifecycle,
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
    let draining = metrics::gauge!(DRAINING);
    draining.set(0.0);
    let (stop_grpc, grpc_stopped) = watch::channel(false);
    let (stop_http, http_stopped) = watch::channel(false);
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
            for name in HEALTH_NAMES {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!(
                delay = ?lifecycle.drain_delay,
                "shutting down: unready, serving until the drain delay ends"
            );
            tokio::time::sleep(lifecycle.drain_delay).await;
            tracing::info!("drain delay over: refusing new connections, finishing calls in flight");
            let _ = stop_grpc.send(true);
        }
    };
    let mut routes = Routes::builder();
    routes
        .add_service(health_service)
        .add_service(RateLimitServiceServer::new(RlsService::new(
            decider.clone(),
        )))
        .add_service(RateLimitQuotaServiceServer::new(quota_service));
    let routes = routes.routes().prepare();
    let grpc = async {
        let serving = serve_grpc(
            listeners.grpc,
            routes,
            lifecycle.connections,
            stopped(grpc_stopped),
        );
        tokio::join!(serving, drain);
        // gRPC is done: the HTTP port may close too, and the process exit.
        let _ = stop_http.send(true);
    };
    let http = axum::serve(listeners.http, router(decider, readiness, prometheus()))
        .with_graceful_shutdown(stopped(http_stopped));
    tracing::info!(%grpc_addr, %http_addr, "serving");
    let ((), http) = tokio::join!(grpc, http);
    http.map_err(|source| RlsError::Listen {
        addr: http_addr,
        source,
    })
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
