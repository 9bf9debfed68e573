//! [`ServerTls`]: the gRPC listener's TLS configuration, built from [`ServerTlsFiles`] and
//! built again when one of them changes (cert-manager and Kubernetes Secrets rotate them in
//! place). Each new connection takes the configuration of the moment; one that fails to
//! build is logged and the previous one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::{bad, certificates, private_key, provider, roots};
use crate::error::{RlsError, SettingsError};
use crate::watch::{FileWatch, settle};

/// The listener's TLS files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate chain, the listener's own first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// CA certificates: clients must present a certificate one of them signed.
    pub client_ca: Option<PathBuf>,
    /// A DNS name or IP address the client certificate must carry (with `client_ca`).
    pub client_san: Option<String>,
}

impl ServerTlsFiles {
    /// A TLS configuration from the files as they are now, offering HTTP/2 only (gRPC).
    pub fn load(&self) -> Result<Arc<ServerConfig>, SettingsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&self.cert, e))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(self.client_verifier(ca)?),
        };
        // Refuses a key that is not the certificate's (a rotation caught half-way).
        let mut config = builder
            .with_single_cert(certificates(&self.cert)?, private_key(&self.key)?)
            .map_err(|e| bad(&self.key, e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    fn client_verifier(&self, ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, SettingsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .build()
                .map_err(|e| bad(ca, e))?;
        let Some(san) = &self.client_san else {
            return Ok(verifier);
        };
        let name = ServerName::try_from(san.clone()).map_err(|e| SettingsError::Invalid {
            name: "--grpc-tls-client-san",
            value: format!("{san} ({e})"),
            expected: "a DNS name or an IP address",
        })?;
        Ok(Arc::new(RequireSan {
            inner: verifier,
            name,
        }))
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }
}

/// The listener's TLS configuration of the moment, rebuilt when its files change; dropping
/// it stops watching them.
pub struct ServerTls {
    current: Arc<ArcSwap<ServerConfig>>,
    _watch: FileWatch,
}

impl ServerTls {
    /// Builds the configuration (an error if the files are not usable now) and watches
    /// the files.
    pub fn start(files: ServerTlsFiles) -> Result<ServerTls, RlsError> {
        let current = Arc::new(ArcSwap::new(files.load()?));
        let (trigger, events) = mpsc::channel(1);
        let watch = FileWatch::start(&files.paths(), trigger)?;
        tokio::spawn(reload_on_change(events, files, current.clone()));
        Ok(ServerTls {
            current,
            _watch: watch,
        })
    }

    /// An acceptor with the configuration of the moment.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

async fn reload_on_change(
    mut events: mpsc::Receiver<()>,
    files: ServerTlsFiles,
    current: Arc<ArcSwap<ServerConfig>>,
) {
    while events.recv().await.is_some() {
        settle(&mut events).await;
        match files.load() {
            Ok(config) => {
                current.store(config);
                tracing::info!(cert = %files.cert.display(), "gRPC TLS certificate reloaded");
                metrics::counter!("rls_tls_reloads_total", "result" => "loaded").increment(1);
            }
            Err(error) => {
                tracing::warn!(%error, "gRPC TLS files refused; the previous certificate keeps serving");
                metrics::counter!("rls_tls_reloads_total", "result" => "refused").increment(1);
            }
        }
    }
}

/// A client verifier that also requires a name among the certificate's subject
/// alternative names, as the reference's `GRPC_CLIENT_TLS_SAN` does (a DNS name, with
/// wildcards, or an IP address).
#[derive(Debug)]
struct RequireSan {
    inner: Arc<dyn ClientCertVerifier>,
    name: ServerName<'static>,
}

impl ClientCertVerifier for RequireSan {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, &self.name)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
