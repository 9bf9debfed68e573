//! The xDS rule source, as envoyproxy/ratelimit's `GRPC_XDS_SOTW` provider and Envoy
//! Gateway's feed work: [`start`] subscribes over the Aggregated Discovery Service (state
//! of the world) to `RateLimitConfig` resources, serves each valid set whole (ACK), refuses
//! an invalid one and keeps the previous (NACK, with the error), and reconnects with
//! jittered [`Backoff`] when the stream breaks, serving the last good set meanwhile.
//! [`XdsStatus`] says how it goes.

mod backoff;
mod client;

use std::fmt;

pub use backoff::Backoff;
pub use client::start;

use crate::tls::ClientTlsFiles;

/// How the xDS client reaches its server and introduces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsOptions {
    /// The server: `http://host:port`, or `https://host:port` with `tls`.
    pub uri: http::Uri,
    /// TLS to the server, read again at each connection.
    pub tls: Option<ClientTlsFiles>,
    /// The node id, by which the server picks the rules.
    pub node_id: String,
    /// The node's metadata, string values.
    pub node_metadata: Vec<(String, String)>,
    /// Waits before connecting again.
    pub backoff: Backoff,
    /// Largest response accepted, in bytes.
    pub max_message_bytes: usize,
    /// Ready before a first rule set has arrived.
    pub force_start: bool,
}

/// What the xDS client has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdsStatus {
    /// A stream to the server is open.
    pub connected: bool,
    /// The version of the rule set serving; `None` until one was applied.
    pub version: Option<String>,
    /// Rule sets applied.
    pub applied: u64,
    /// Rule sets refused (NACKed).
    pub refused: u64,
    /// Why the last refused set was refused, until a set is applied again.
    pub last_error: Option<String>,
}

impl fmt::Display for XdsStatus {
    /// One line for `/readyz` and `/config`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "serving version {version:?}")?,
            None => f.write_str("no rule set yet")?,
        }
        let link = if self.connected {
            "connected"
        } else {
            "not connected"
        };
        write!(
            f,
            ", {link}; {} applied, {} refused",
            self.applied, self.refused
        )?;
        if let Some(error) = &self.last_error {
            write!(f, "; last refused: {error}")?;
        }
        Ok(())
    }
}
