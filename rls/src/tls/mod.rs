//! TLS: [`ServerTls`], the gRPC listener's rustls configuration, rebuilt from its files
//! when they change (new connections get the new certificate, open ones keep theirs);
//! [`incoming`], the listener's connections, plain or TLS; [`ClientTlsFiles`], the xDS
//! client's. Every file is PEM; the crypto is rustls on ring, as for Redis.

mod incoming;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use incoming::{GrpcStream, incoming};
pub use server::{ServerTls, ServerTlsFiles};

use crate::error::SettingsError;

/// The xDS client's TLS files, read again at each connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// CA certificates that may sign the server's certificate; `None`: the system's.
    pub ca: Option<PathBuf>,
    /// Client certificate and key, presented to the server.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry; `None`: the server's host.
    pub server_name: Option<String>,
}

impl ClientTlsFiles {
    /// tonic's client TLS settings from the files as they are now.
    pub fn tonic_config(&self) -> Result<tonic::transport::ClientTlsConfig, SettingsError> {
        let mut config = tonic::transport::ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => {
                // Parsed here so that a bad file is named, not found at the handshake.
                certificates(ca)?;
                config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?))
            }
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            certificates(cert)?;
            private_key(key)?;
            config = config.identity(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
}

/// The crypto of every TLS configuration rls builds.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path).map_err(|source| SettingsError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, reason: impl ToString) -> SettingsError {
    SettingsError::Certificate {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The certificates of a PEM file; none is an error.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, SettingsError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, e))?;
    if certificates.is_empty() {
        return Err(bad(path, "no certificate in the file"));
    }
    Ok(certificates)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, SettingsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| bad(path, e))
}

/// The CA certificates of a PEM file, as trust anchors.
fn roots(path: &Path) -> Result<RootCertStore, SettingsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots.add(certificate).map_err(|e| bad(path, e))?;
    }
    Ok(roots)
}
