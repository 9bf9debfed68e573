//! `rls::serve` in the test's process, on loopback ports, with the settings a test
//! chooses (the rules from an xDS server, TLS, ...): what `rls serve` does, without the
//! process.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use proto::common::{RateLimitDescriptor, rate_limit_descriptor::Entry};
use proto::rls::RateLimitRequest;
use rls::{Listeners, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::http;

/// Longest wait for something a running server is to do (turn ready, load a set); far
/// above what it takes.
const BOUND: Duration = Duration::from_secs(30);

/// The future that tells a server to stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server's task and the signal that stops it.
pub struct ServerTask {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), rls::RlsError>>,
}

impl ServerTask {
    /// Spawns `serve`, handing it the future that resolves when [`ServerTask::stop`] is
    /// called.
    pub fn spawn<F>(serve: impl FnOnce(Shutdown) -> F) -> ServerTask
    where
        F: Future<Output = Result<(), rls::RlsError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async move {
            let _ = stopped.await;
        })));
        ServerTask {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("server task")
            .expect("server ends cleanly");
    }
}

/// Polls `check` until it gives something, and returns it; panics, naming `what`, if that
/// takes longer than a bound far above what it needs.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(Instant::now() < deadline, "not in time: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server running in this process.
pub struct Served {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    server: ServerTask,
}

impl Served {
    /// Serves with `settings` (their listener addresses are not used: both listeners
    /// are on free loopback ports).
    pub async fn start(settings: Settings) -> Served {
        let listeners = Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await.expect("bind grpc"),
            http: TcpListener::bind("127.0.0.1:0").await.expect("bind http"),
        };
        let grpc = listeners.grpc.local_addr().expect("grpc addr");
        let http = listeners.http.local_addr().expect("http addr");
        let server = ServerTask::spawn(|shutdown| rls::serve(listeners, settings, shutdown));
        Served { grpc, http, server }
    }

    /// `GET path` on the HTTP port: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http(self.http, "GET", path, "").await
    }

    /// Polls `/readyz` until it answers 200, and returns its body.
    pub async fn wait_ready(&self) -> String {
        eventually("/readyz answers 200", || async {
            let (status, body) = self.get("/readyz").await;
            (status == 200).then_some(body)
        })
        .await
    }

    /// Polls `/config` until `done` holds of it, and returns it.
    pub async fn wait_config(&self, done: impl Fn(&str) -> bool) -> String {
        eventually("/config gets there", || async {
            let (_, body) = self.get("/config").await;
            done(&body).then_some(body)
        })
        .await
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A request of one descriptor with `entries`, in `domain`.
pub fn request(domain: &str, entries: &[(&str, &str)]) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![descriptor(entries)],
        hits_addend: 1,
    }
}

/// A descriptor with `entries`.
pub fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(key, value)| Entry {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect(),
        ..Default::default()
    }
}
