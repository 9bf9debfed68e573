//! `ConnectionOptions` and [`serve_grpc`]: the gRPC port's accept loop, one HTTP/2
//! connection at a time. tonic's own server has a maximum connection age, but without
//! jitter, and with a grace period it closes the connection at age + grace without ever
//! sending a GOAWAY; Envoy must be told to go away (GOAWAY, then its calls finish) to
//! move to a new connection, so the loop is ours: hyper's graceful shutdown per
//! connection, at its own jittered age and on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::body::Body;
use tower::Service;

use crate::stats::{GRPC_CONNECTIONS, GRPC_CONNECTIONS_AGED};
use crate::tls::GrpcStream;

/// How long connections live and how they end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// Tell a connection to go away (GOAWAY) once it is this old, give or take a tenth
    /// (the reference's `GRPC_MAX_CONNECTION_AGE`, gRPC's jitter); `None`: never.
    pub max_age: Option<Duration>,
    /// After the GOAWAY of its age, how long a connection's calls may take to finish
    /// before it is closed (`GRPC_MAX_CONNECTION_AGE_GRACE`).
    pub age_grace: Duration,
    /// On shutdown, how long the calls in flight may take to finish before every
    /// connection still open is closed.
    pub shutdown_timeout: Duration,
}

/// Serves `routes` (tonic's, with their layers) on the connections of `incoming` (the gRPC listener's, plain or TLS:
/// [`crate::tls::incoming`]) until `stop` resolves; then stops accepting (the listener
/// closes), tells every connection to go away and returns once their calls have finished,
/// or when `shutdown_timeout` has passed, closing those still open.
pub async fn serve_grpc<S>(
    mut incoming: Pin<Box<dyn Stream<Item = io::Result<GrpcStream>> + Send>>,
    routes: S,
    options: ConnectionOptions,
    stop: impl Future<Output = ()>,
) where
    S: GrpcService,
{
    let (going_away, told) = watch::channel(false);
    let mut connections = JoinSet::new();
    let open = metrics::gauge!(GRPC_CONNECTIONS);
    metrics::counter!(GRPC_CONNECTIONS_AGED).increment(0);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => open.decrement(1),
            accepted = incoming.next() => match accepted {
                Some(Ok(stream)) => {
                    open.increment(1);
                    let age = options.max_age.map(jitter);
                    let told = told.clone();
                    connections.spawn(serve_connection(stream, routes.clone(), age, options.age_grace, told));
                }
                // A failed accept (out of descriptors, a connection reset before it was
                // taken) concerns that connection alone.
                Some(Err(error)) => tracing::debug!(%error, "accept failed"),
                // The listener is gone: serve the connections open until told to stop.
                None => {
                    (&mut stop).await;
                    break;
                }
            },
        }
    }
    drop(incoming);
    let _ = going_away.send(true);
    let finished = async {
        while connections.join_next().await.is_some() {
            open.decrement(1);
        }
    };
    if tokio::time::timeout(options.shutdown_timeout, finished)
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "calls still in flight at the shutdown timeout: closing their connections"
        );
        open.decrement(connections.len() as f64);
        connections.shutdown().await;
    }
}

/// One connection: served until it ends, told to go away at `age` (then closed `grace`
/// later if still open) or when `going_away` turns true (then left to finish).
async fn serve_connection<S: GrpcService>(
    stream: GrpcStream,
    routes: S,
    age: Option<Duration>,
    grace: Duration,
    mut going_away: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(None);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(routes));
    tokio::pin!(connection);
    let mut phase = match age {
        Some(_) => Phase::Young,
        None => Phase::Ageless,
    };
    let timer = tokio::time::sleep(age.unwrap_or_default());
    tokio::pin!(timer);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = &mut timer, if matches!(phase, Phase::Young | Phase::Aged) => {
                if phase == Phase::Aged {
                    tracing::debug!("connection still open at the end of its grace: closed");
                    return;
                }
                phase = Phase::Aged;
                metrics::counter!(GRPC_CONNECTIONS_AGED).increment(1);
                connection.as_mut().graceful_shutdown();
                timer.as_mut().reset(tokio::time::Instant::now() + grace);
            }
            Ok(_) = going_away.wait_for(|away| *away), if matches!(phase, Phase::Young | Phase::Ageless) => {
                phase = Phase::Leaving;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The gRPC services as one connection serves them: tonic's routes, with layers.
pub trait GrpcService:
    Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> GrpcService for S where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No maximum age.
    Ageless,
    /// Younger than its maximum age.
    Young,
    /// Told to go away for its age: closed at the end of the grace.
    Aged,
    /// Told to go away because the server shuts down.
    Leaving,
}

/// `age` give or take a tenth, drawn anew for each connection, so that connections opened
/// together (a rollout, a restarted proxy) do not all go away at once.
fn jitter(age: Duration) -> Duration {
    // A fresh random hasher state is a random number without a dependency.
    let draw = std::collections::hash_map::RandomState::new().hash_one(0u8);
    // In [-1, 1].
    let unit = (draw % 2001) as f64 / 1000.0 - 1.0;
    age.mul_f64(1.0 + unit / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_jittered_within_a_tenth_and_not_all_equal() {
        let age = Duration::from_secs(100);
        let drawn: Vec<Duration> = (0..64).map(|_| jitter(age)).collect();
        for d in &drawn {
            assert!(
                *d >= Duration::from_secs(90) && *d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
        assert!(drawn.iter().any(|d| *d != drawn[0]), "no jitter: {drawn:?}");
    }
}
