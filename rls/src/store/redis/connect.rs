//! `Connection`: how a shard reaches Redis — its [`Endpoint`] (a server or a cluster, by
//! URL, with TLS files), opening the client (kept, and watched over, by `health.rs`), calls
//! on it ([`Link`]), and the endpoint's name in logs and errors, without credentials.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    ClientTlsConfig, IntoConnectionInfo, RedisResult, ScriptInvocation, TlsCertificates, Value,
};

use super::health::{self, Health};
use super::shard::ShardOptions;

/// Where a shard's commands go.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// One server: `redis://`, `rediss://` or `redis+unix://`.
    Server(String),
    /// A Redis Cluster, by some of its nodes.
    Cluster(Vec<String>),
}

impl Endpoint {
    /// True for a Redis Cluster: a script may touch the keys of one slot only.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Endpoint::Cluster(_))
    }
}

/// How long one connection attempt may take, unless told otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The URL of a Redis node given as `host:port` or as a URL: a node without a scheme gets
/// `redis://`, and `auth` (a password, or `user:password`) as its credentials.
pub fn redis_url(node: &str, auth: Option<&str>) -> String {
    let node = node.trim();
    match auth {
        _ if node.contains("://") => node.to_string(),
        Some(auth) if auth.contains(':') => format!("redis://{auth}@{node}"),
        Some(password) => format!("redis://:{password}@{node}"),
        None => format!("redis://{node}"),
    }
}

impl Endpoint {
    /// Parses every URL of the endpoint as the client will: the first that does not
    /// parse, without its password, and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let urls = match self {
            Endpoint::Server(url) => std::slice::from_ref(url),
            Endpoint::Cluster(nodes) => nodes.as_slice(),
        };
        for url in urls {
            url.as_str()
                .into_connection_info()
                .map_err(|error| (redact(url), error.to_string()))?;
        }
        Ok(())
    }

    /// The endpoint as logs and errors name it: its URLs without passwords.
    pub fn name(&self) -> Arc<str> {
        match self {
            Endpoint::Server(url) => redact(url).into(),
            Endpoint::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|n| redact(n)).collect();
                format!("cluster {}", nodes.join(",")).into()
            }
        }
    }
}

/// PEM contents for TLS to Redis; empty: system roots, no client certificate.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// CA certificates that may sign the server's certificate.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key, for servers that require one.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    fn certificates(&self) -> Option<TlsCertificates> {
        if self.ca.is_none() && self.client.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.ca.clone(),
        })
    }
}

/// An open client: cheap to clone, a handle onto one multiplexed connection per node.
#[derive(Clone)]
pub enum Link {
    /// One server, reconnected by the client.
    Server(ConnectionManager),
    /// A cluster, routed by the client.
    Cluster(ClusterConnection),
}

impl Link {
    /// Runs a script call. On one server, a call whose connection turned out dropped
    /// (Redis restarted, the connection was reset) is sent once more: the client reconnects
    /// on that error, and the second goes out on the new connection within the caller's
    /// deadline, so that the first request after a restart is answered, not failed with
    /// `broken pipe`. A call that ran before its connection dropped then counts twice,
    /// which errs towards denying. A cluster client retries by itself.
    pub async fn invoke(&self, invocation: &ScriptInvocation<'_>) -> RedisResult<Value> {
        match self.clone() {
            Link::Server(mut c) => {
                let first = invocation.invoke_async(&mut c).await;
                match first {
                    Err(error) if error.is_connection_dropped() => {
                        invocation.invoke_async(&mut c).await
                    }
                    other => other,
                }
            }
            Link::Cluster(mut c) => invocation.invoke_async(&mut c).await,
        }
    }

    /// `PING`: whether the shard answers (for a cluster, as the client routes it); on one
    /// server sent once more when its connection turned out dropped, as calls are.
    pub async fn ping(&self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self.clone() {
            Link::Server(mut c) => match ping.query_async(&mut c).await {
                Err(error) if error.is_connection_dropped() => ping.query_async(&mut c).await,
                other => other,
            },
            Link::Cluster(mut c) => ping.query_async(&mut c).await,
        }
    }
}

/// A shard's client, opened in the background: empty until the first connection is made,
/// and its [`Health`].
#[derive(Clone)]
pub struct Connection {
    link: Arc<ArcSwapOption<Link>>,
    health: Arc<Health>,
}

impl Connection {
    /// Starts connecting to `endpoint` in the background (with backoff, until it
    /// succeeds), then keeps watch over it ([`health::keep`]) until the connection is
    /// dropped.
    ///
    /// `deadline` is the client's response timeout: the client parks commands while it
    /// reconnects, and one parked past its caller's deadline would run on the reconnected
    /// server and charge buckets for a request already answered otherwise.
    pub fn start(
        endpoint: Endpoint,
        options: ShardOptions,
        deadline: Duration,
        name: Arc<str>,
    ) -> Connection {
        let link = Arc::new(ArcSwapOption::empty());
        let health = Arc::new(Health::new(name));
        tokio::spawn(health::keep(
            endpoint,
            options,
            deadline,
            link.clone(),
            Arc::downgrade(&health),
        ));
        Connection { link, health }
    }

    /// The client, once connected (it reconnects by itself afterwards).
    pub fn link(&self) -> Option<Arc<Link>> {
        self.link.load_full()
    }

    /// Whether the shard answers.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Resolves once the shard is up (connected, or answering again).
    pub async fn wait_up(&self) {
        self.health.wait_up().await;
    }
}

/// Opens a client of `endpoint`.
pub async fn open(
    endpoint: &Endpoint,
    options: &ShardOptions,
    deadline: Duration,
) -> RedisResult<Link> {
    let tcp = TcpSettings::default().set_nodelay(true);
    match endpoint {
        Endpoint::Server(url) => {
            let info = url.as_str().into_connection_info()?.set_tcp_settings(tcp);
            let client = match options.tls.certificates() {
                Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                None => redis::Client::open(info)?,
            };
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(deadline))
                .set_connection_timeout(Some(options.connect_timeout))
                .set_pipeline_buffer_size(4096)
                .set_max_delay(Duration::from_secs(2));
            let manager = tokio::time::timeout(
                options.connect_timeout,
                ConnectionManager::new_with_config(client, config),
            )
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
            Ok(Link::Server(manager))
        }
        Endpoint::Cluster(nodes) => {
            let mut builder = ClusterClient::builder(nodes.clone())
                .connection_timeout(options.connect_timeout)
                .response_timeout(deadline)
                .tcp_settings(tcp);
            if let Some(certificates) = options.tls.certificates() {
                builder = builder.certs(certificates);
            }
            let client = builder.build()?;
            let connection =
                tokio::time::timeout(options.connect_timeout, client.get_async_connection())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((redis::ErrorKind::Io, "connect timed out"))
                    })??;
            Ok(Link::Cluster(connection))
        }
    }
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_appear_in_names() {
        assert_eq!(
            redact("redis://user:secret@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redact("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
        assert_eq!(redact("10.0.0.5:7000"), "10.0.0.5:7000");
    }
    #[test]
    fn nodes_without_a_scheme_get_redis_and_the_credentials() {
        assert_eq!(redis_url(" a:7000", None), "redis://a:7000");
        assert_eq!(
            redis_url("a:7000", Some("s3cret")),
            "redis://:s3cret@a:7000"
        );
        assert_eq!(redis_url("a:7000", Some("u:p")), "redis://u:p@a:7000");
        assert_eq!(redis_url("rediss://a:7000", Some("u:p")), "rediss://a:7000");
    }
}
