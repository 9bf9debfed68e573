//! An xDS management server for tests: the Aggregated Discovery Service (state of the
//! world) on a loopback port, serving the `RateLimitConfig` set the test pushes, the way
//! go-control-plane's snapshot cache does for Envoy Gateway: a set is sent when the client
//! lacks its version, one response at a time, each answered (ACK or NACK) before the
//! next; a NACKed version is not sent again. Every request the client sends is kept for
//! the test to read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use proto::RATE_LIMIT_CONFIG_TYPE_URL;
use proto::rls_config::RateLimitConfig;
use proto::xds::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use proto::xds::{DiscoveryRequest, DiscoveryResponse};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::certs::Leaf;

/// Longest wait for the client's next request.
const REQUEST_BOUND: Duration = Duration::from_secs(30);

/// A version of the rule set: `None` until the test pushes one.
type Snapshot = Option<(String, Vec<RateLimitConfig>)>;

/// A running management server.
pub struct AdsServer {
    pub addr: SocketAddr,
    snapshot: Arc<watch::Sender<Snapshot>>,
    requests: Mutex<mpsc::UnboundedReceiver<DiscoveryRequest>>,
    kill: watch::Sender<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AdsServer {
    /// A server on a free loopback port, plain or with `tls`.
    pub async fn start(tls: Option<ServerTlsConfig>) -> AdsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let snapshot = Arc::new(watch::channel(None).0);
        AdsServer::serve(listener, snapshot, tls)
    }

    /// Stops serving: open streams end with an error, the port is closed. The set pushed
    /// so far stays, for [`AdsServer::restart`].
    pub async fn stop(mut self) -> (SocketAddr, Arc<watch::Sender<Snapshot>>) {
        let _ = self.kill.send(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("server task");
        (self.addr, self.snapshot.clone())
    }

    /// Serves again on the port of a stopped server, with what it had.
    pub async fn restart(
        (addr, snapshot): (SocketAddr, Arc<watch::Sender<Snapshot>>),
        tls: Option<ServerTlsConfig>,
    ) -> AdsServer {
        let listener = TcpListener::bind(addr).await.expect("bind the same port");
        AdsServer::serve(listener, snapshot, tls)
    }

    fn serve(
        listener: TcpListener,
        snapshot: Arc<watch::Sender<Snapshot>>,
        tls: Option<ServerTlsConfig>,
    ) -> AdsServer {
        let addr = listener.local_addr().expect("addr");
        let (record, requests) = mpsc::unbounded_channel();
        let (kill, killed) = watch::channel(false);
        let service = Ads {
            snapshot: snapshot.subscribe(),
            record,
            killed,
            nonce: Arc::new(AtomicU64::new(0)),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).expect("server TLS");
        }
        let server = builder
            .add_service(AggregatedDiscoveryServiceServer::new(service))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        AdsServer {
            addr,
            snapshot,
            requests: Mutex::new(requests),
            kill,
            stop: Some(stop),
            task,
        }
    }

    /// `http://addr`, or `https://` with TLS.
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Makes `resources` the set, at `version`.
    pub fn push(&self, version: &str, resources: Vec<RateLimitConfig>) {
        self.snapshot
            .send_replace(Some((version.to_owned(), resources)));
    }

    /// The client's next request (a subscription, an ACK or a NACK).
    pub async fn next_request(&self) -> DiscoveryRequest {
        let mut requests = self.requests.lock().await;
        tokio::time::timeout(REQUEST_BOUND, requests.recv())
            .await
            .expect("the client sent a request in time")
            .expect("the server is running")
    }
}

/// TLS for a server presenting `identity` that asks each client for a certificate `ca`
/// signed, as Envoy Gateway's xDS server does.
pub fn mutual_tls(identity: &Leaf, ca: &std::path::Path) -> ServerTlsConfig {
    let read = |path: &std::path::Path| std::fs::read(path).expect("read a TLS file");
    ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read(&identity.cert),
            read(&identity.key),
        ))
        .client_ca_root(Certificate::from_pem(read(ca)))
}

struct Ads {
    snapshot: watch::Receiver<Snapshot>,
    record: mpsc::UnboundedSender<DiscoveryRequest>,
    killed: watch::Receiver<bool>,
    nonce: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (send, responses) = mpsc::channel(4);
        let stream = Stream {
            incoming: request.into_inner(),
            send,
            snapshot: self.snapshot.clone(),
            record: self.record.clone(),
            nonce: self.nonce.clone(),
        };
        let mut killed = self.killed.clone();
        tokio::spawn(async move {
            let send = stream.send.clone();
            let killed = async move { killed.wait_for(|k| *k).await.is_ok() };
            tokio::select! {
                () = stream.run() => {}
                true = killed => {
                    let _ = send.send(Err(Status::unavailable("server stopping"))).await;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}

/// One client's stream.
struct Stream {
    incoming: Streaming<DiscoveryRequest>,
    send: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    snapshot: watch::Receiver<Snapshot>,
    record: mpsc::UnboundedSender<DiscoveryRequest>,
    nonce: Arc<AtomicU64>,
}

impl Stream {
    async fn run(mut self) {
        let Some(first) = self.receive().await else {
            return;
        };
        // What the client serves, and what was last sent to it.
        let mut has = first.version_info;
        let mut sent: Option<String> = None;
        loop {
            let wanted = |s: &Snapshot| {
                s.as_ref()
                    .is_some_and(|(v, _)| *v != has && Some(v) != sent.as_ref())
            };
            // Cloned at once: the watch's value is locked while borrowed.
            let current = self.snapshot.wait_for(wanted).await.map(|s| s.clone());
            let Ok(Some((version, resources))) = current else {
                return;
            };
            let response = DiscoveryResponse {
                version_info: version.clone(),
                resources: resources.iter().map(any).collect(),
                type_url: RATE_LIMIT_CONFIG_TYPE_URL.to_owned(),
                nonce: self.nonce.fetch_add(1, Ordering::Relaxed).to_string(),
                ..Default::default()
            };
            if self.send.send(Ok(response)).await.is_err() {
                return;
            }
            sent = Some(version);
            let Some(reply) = self.receive().await else {
                return;
            };
            if reply.error_detail.is_none() {
                has = reply.version_info;
            }
        }
    }

    /// The client's next request, kept for the test.
    async fn receive(&mut self) -> Option<DiscoveryRequest> {
        let request = self.incoming.message().await.ok()??;
        let _ = self.record.send(request.clone());
        Some(request)
    }
}

fn any(config: &RateLimitConfig) -> proto::wkt::Any {
    proto::wkt::Any {
        type_url: RATE_LIMIT_CONFIG_TYPE_URL.to_owned(),
        value: config.encode_to_vec().into(),
    }
}
