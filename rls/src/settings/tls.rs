//! `GrpcTlsArgs`: TLS on the gRPC listener, and client certificates (mTLS) — the
//! reference's `GRPC_SERVER_USE_TLS` and `GRPC_CLIENT_TLS_*`.

use std::path::PathBuf;

use clap::Args;

use crate::error::SettingsError;
use crate::tls::ServerTlsFiles;

/// Settings of TLS on the gRPC listener.
#[derive(Debug, Clone, Args)]
pub struct GrpcTlsArgs {
    /// PEM file of the gRPC listener's certificate chain: serve gRPC over TLS. Reloaded
    /// when it changes; new connections get the new certificate.
    #[arg(
        long,
        env = "RLS_GRPC_TLS_CERT",
        value_name = "PEM",
        requires = "grpc_tls_key"
    )]
    pub grpc_tls_cert: Option<PathBuf>,

    /// PEM file of that certificate's private key (reloaded with it).
    #[arg(
        long,
        env = "RLS_GRPC_TLS_KEY",
        value_name = "PEM",
        requires = "grpc_tls_cert"
    )]
    pub grpc_tls_key: Option<PathBuf>,

    /// PEM file of CA certificates: every client must present a certificate one of them
    /// signed (mTLS). Reloaded when it changes.
    #[arg(
        long,
        env = "RLS_GRPC_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "grpc_tls_cert"
    )]
    pub grpc_tls_client_ca: Option<PathBuf>,

    /// A DNS name (or IP address) the client's certificate must carry.
    #[arg(
        long,
        env = "RLS_GRPC_TLS_CLIENT_SAN",
        value_name = "NAME",
        requires = "grpc_tls_client_ca"
    )]
    pub grpc_tls_client_san: Option<String>,
}

impl GrpcTlsArgs {
    /// The listener's TLS files, when TLS is on; refuses a certificate without its key
    /// (or the reverse), and client settings without TLS or a SAN without a CA (the
    /// reference's variables are read after the flags' own checks).
    pub fn files(&self) -> Result<Option<ServerTlsFiles>, SettingsError> {
        let conflict = |setting, reason| Err(SettingsError::Conflict { setting, reason });
        let (cert, key) = match (&self.grpc_tls_cert, &self.grpc_tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (None, None) if self.grpc_tls_client_ca.is_some() => {
                return conflict("--grpc-tls-client-ca", "it needs --grpc-tls-cert");
            }
            (None, None) => return Ok(None),
            _ => return conflict("--grpc-tls-cert", "it goes with --grpc-tls-key"),
        };
        if self.grpc_tls_client_san.is_some() && self.grpc_tls_client_ca.is_none() {
            return conflict("--grpc-tls-client-san", "it needs --grpc-tls-client-ca");
        }
        Ok(Some(ServerTlsFiles {
            cert,
            key,
            client_ca: self.grpc_tls_client_ca.clone(),
            client_san: self.grpc_tls_client_san.clone(),
        }))
    }
}
