//! [`BaselineServer`]: a rate limit service that answers OK to every request without deciding
//! anything ([`NoopRls`]). Driven like any RLS, it is the yardstick other results are
//! reported against as ratios: plain gRPC measured the same way in the same run, not a
//! ceiling (it shares the harness's process, and a tuned server can beat it).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::rls::rate_limit_response::{Code, DescriptorStatus};
use proto::rls::rate_limit_service_server::{RateLimitService, RateLimitServiceServer};
use proto::rls::{RateLimitRequest, RateLimitResponse};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::error::HarnessError;

/// Answers OK, with one OK status per descriptor, and counts what it answered.
#[derive(Clone, Debug, Default)]
pub struct NoopRls {
    answered: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl RateLimitService for NoopRls {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let descriptors = request.get_ref().descriptors.len();
        self.answered.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: vec![
                DescriptorStatus {
                    code: Code::Ok as i32,
                    ..DescriptorStatus::default()
                };
                descriptors
            ],
            ..RateLimitResponse::default()
        }))
    }
}

/// Serves `service` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    service: NoopRls,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(service))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// A running baseline server, stopped when dropped.
pub struct BaselineServer {
    /// Where it listens.
    pub addr: SocketAddr,
    answered: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BaselineServer {
    /// Starts a server on `127.0.0.1:0` on the current runtime (for tests: it then shares
    /// the harness's threads).
    pub async fn start() -> Result<BaselineServer, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::io("binding the baseline server", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("binding the baseline server", e))?;
        let service = NoopRls::default();
        let answered = service.answered.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, service, async move {
            let _ = stopped.await;
        }));
        Ok(BaselineServer {
            addr,
            answered,
            stop: Some(stop),
            thread: None,
        })
    }

    /// Starts a server on `127.0.0.1:0` with its own runtime of `threads` threads, as a
    /// separate server process would have: `loadtest run --baseline` measures this one.
    pub fn start_dedicated(threads: usize) -> Result<BaselineServer, HarnessError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| HarnessError::io("binding the baseline server", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("binding the baseline server", e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("baseline")
            .enable_all()
            .build()
            .map_err(|e| HarnessError::io("starting the baseline server's runtime", e))?;
        let service = NoopRls::default();
        let answered = service.answered.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("baseline".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = serve(listener, service, async move {
                        let _ = stopped.await;
                    })
                    .await;
                });
            })
            .map_err(|e| HarnessError::io("starting the baseline server's thread", e))?;
        Ok(BaselineServer {
            addr,
            answered,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A dedicated runtime ends once its server has drained; its thread is left to finish
        // on its own rather than blocking the caller's runtime here.
        drop(self.thread.take());
    }
}

/// `loadtest baseline`: serves the no-op RLS on `listen` until Ctrl-C, printing the address.
pub async fn execute(listen: SocketAddr) -> Result<(), HarnessError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| HarnessError::io(format!("binding {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| HarnessError::io(format!("binding {listen}"), e))?;
    println!("baseline RLS (always OK) listening on {addr}; Ctrl-C stops it");
    serve(listener, NoopRls::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| HarnessError::Process(format!("baseline server failed: {e}")))
}
