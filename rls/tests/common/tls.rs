//! A gRPC client over TLS that the test opens itself (rustls): it trusts one CA, presents
//! a certificate or none, and records each connection it makes with the certificate the
//! server showed, so that a test can tell new connections from kept ones.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use proto::rls::rate_limit_service_client::RateLimitServiceClient;
use proto::rls::{RateLimitRequest, RateLimitResponse};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use super::certs::Leaf;

/// The name the test servers' certificates carry.
pub const SERVER_NAME: &str = "rls.test";

/// A client of one TLS server.
#[derive(Clone)]
pub struct TlsClient {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    /// The server's certificate, per connection made, in order.
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TlsClient {
    /// Trusts `ca` for [`SERVER_NAME`] at `addr`, presenting `identity` if given.
    pub fn new(addr: SocketAddr, ca: &Path, identity: Option<&Leaf>) -> TlsClient {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
            roots
                .add(cert.expect("CA certificate"))
                .expect("trust anchor");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(leaf) => {
                let chain = CertificateDer::pem_file_iter(&leaf.cert)
                    .expect("cert file")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certificates");
                let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client certificate")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        TlsClient {
            addr,
            config: Arc::new(config),
            seen: Arc::default(),
        }
    }

    /// A channel over one new TLS connection, made now.
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        let client = self.clone();
        let connector = tower::service_fn(move |_: http::Uri| {
            let client = client.clone();
            async move {
                let tcp = TcpStream::connect(client.addr).await?;
                let name = ServerName::try_from(SERVER_NAME).expect("a DNS name");
                let tls = tokio_rustls::TlsConnector::from(client.config.clone())
                    .connect(name, tcp)
                    .await?;
                let shown = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|cert| cert.to_vec())
                    .unwrap_or_default();
                client.seen.lock().expect("lock").push(shown);
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        Endpoint::from_static("http://rls.test")
            .connect_with_connector(connector)
            .await
    }

    /// One `ShouldRateLimit` over a new connection: the answer, or why there is none.
    pub async fn ask_once(&self, request: RateLimitRequest) -> Result<RateLimitResponse, String> {
        let channel = self
            .channel()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        ask(&channel, request).await
    }

    /// The connections made so far.
    pub fn connections(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// The certificate the server showed on the last connection.
    pub fn last_certificate(&self) -> Vec<u8> {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a connection was made")
    }
}

/// One `ShouldRateLimit` on `channel`.
pub async fn ask(
    channel: &Channel,
    request: RateLimitRequest,
) -> Result<RateLimitResponse, String> {
    RateLimitServiceClient::new(channel.clone())
        .should_rate_limit(request)
        .await
        .map(|r| r.into_inner())
        .map_err(|status| format!("{status:?}"))
}
