//! `rls::serve` in the test's process, on loopback ports, with the settings a test
//! chooses (the rules from an xDS server, TLS, ...): what `rls serve` does, without the
//! process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::common::{RateLimitDescriptor, rate_limit_descriptor::Entry};
use proto::rls::RateLimitRequest;
use rls::{Listeners, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::http;

/// Longest wait for the server to turn ready.
const READY_BOUND: Duration = Duration::from_secs(30);

/// A server running in this process.
pub struct Served {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), rls::RlsError>>,
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
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(rls::serve(listeners, settings, async move {
            let _ = stopped.await;
        }));
        Served {
            grpc,
            http,
            stop: Some(stop),
            task,
        }
    }

    /// `GET path` on the HTTP port: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http(self.http, "GET", path, "").await
    }

    /// Polls `/readyz` until it answers 200, and returns its body. Panics, with the last
    /// answer, if that takes longer than a bound far above what it needs.
    pub async fn wait_ready(&self) -> String {
        let deadline = Instant::now() + READY_BOUND;
        loop {
            let (status, body) = self.get("/readyz").await;
            if status == 200 {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "not ready in time: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/config` until `done` holds of it, and returns it.
    pub async fn wait_config(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + READY_BOUND;
        loop {
            let (_, body) = self.get("/config").await;
            if done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/config never got there:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
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
