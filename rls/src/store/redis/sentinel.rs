//! `Sentinel`: a primary found through Redis Sentinel and followed across failovers.
//!
//! A client opened on one address keeps reconnecting to that address, so after a failover
//! it would talk to a dead server, or to the old primary turned replica. Instead the shard
//! asks the sentinels which server is the primary every [`POLL`], and when the answer
//! changes (and the new server says it is a primary) it opens a client there and swaps it
//! in; calls meanwhile get the failure mode. One command to one sentinel per poll (the
//! first that answers, kept connected), so polling costs the sentinels next to nothing.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};
use tokio::sync::watch;

use super::connect::{Endpoint, Link, open};
use super::shard::ShardOptions;

/// How often the sentinels are asked for the primary.
pub const POLL: Duration = Duration::from_millis(250);

/// A primary known by the name its sentinels monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentinel {
    /// The sentinels, as URLs (`redis://[user:password@]host:port`; credentials are the
    /// sentinels' own). `rediss://` sentinels mean TLS to the primary too.
    pub nodes: Vec<String>,
    /// The name of the primary the sentinels monitor (`sentinel monitor NAME ...`).
    pub master: String,
    /// The primary's credentials: a password, or `user:password`.
    pub auth: Option<String>,
}

impl Sentinel {
    /// The URL of the primary at `host:port`, with its credentials and TLS as configured.
    fn primary_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.nodes.iter().any(|n| n.starts_with("rediss://")) {
            "rediss"
        } else {
            "redis"
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        match &self.auth {
            Some(auth) if auth.contains(':') => format!("{scheme}://{auth}@{host}:{port}"),
            Some(password) => format!("{scheme}://:{password}@{host}:{port}"),
            None => format!("{scheme}://{host}:{port}"),
        }
    }
}

/// Asks the sentinels in turn, keeping a connection to the one that last answered.
struct Asker {
    sentinel: Sentinel,
    next: usize,
    connection: Option<MultiplexedConnection>,
    timeout: Duration,
}

impl Asker {
    /// The primary's `(host, port)`, from the first sentinel that knows it.
    async fn primary(&mut self) -> Result<(String, u16), String> {
        let mut errors = Vec::new();
        for _ in 0..self.sentinel.nodes.len() {
            match self.ask().await {
                Ok(Some(address)) => return Ok(address),
                Ok(None) => errors.push(format!(
                    "{}: no primary named {}",
                    super::connect::redact(&self.sentinel.nodes[self.next]),
                    self.sentinel.master
                )),
                Err(error) => errors.push(format!(
                    "{}: {error}",
                    super::connect::redact(&self.sentinel.nodes[self.next])
                )),
            }
            // This sentinel failed or does not know the name: the next one, from scratch.
            self.connection = None;
            self.next = (self.next + 1) % self.sentinel.nodes.len();
        }
        Err(errors.join("; "))
    }

    async fn ask(&mut self) -> RedisResult<Option<(String, u16)>> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let client = redis::Client::open(self.sentinel.nodes[self.next].as_str())?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let opened = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.connection.insert(opened)
            }
        };
        let reply: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.sentinel.master)
            .query_async(connection)
            .await?;
        Ok(reply)
    }
}

/// Whether the server behind `link` says it is a primary (`ROLE`): just after a failover
/// the sentinels may name a server that is still turning from replica into primary.
async fn is_primary(link: &Link) -> RedisResult<bool> {
    let Link::Server(manager) = link else {
        return Ok(false);
    };
    let role: Value = redis::cmd("ROLE").query_async(&mut manager.clone()).await?;
    Ok(match role {
        Value::Array(items) => matches!(items.first(),
            Some(Value::BulkString(kind)) if kind.as_slice() == b"master"),
        _ => false,
    })
}

/// Finds the primary and follows it for ever: publishes a client of each new primary in
/// `link` (and `true` on `connected`), keeping the previous one until a new one is open.
pub async fn follow(
    sentinel: Sentinel,
    options: ShardOptions,
    deadline: Duration,
    link: Arc<ArcSwapOption<Link>>,
    name: Arc<str>,
    connected: watch::Sender<bool>,
) {
    let mut asker = Asker {
        sentinel,
        next: 0,
        connection: None,
        timeout: options.connect_timeout,
    };
    let mut current: Option<(String, u16)> = None;
    // Said once per change, not once per poll.
    let mut last_problem: Option<String> = None;
    loop {
        let problem = match asker.primary().await {
            Ok(address) if current.as_ref() == Some(&address) => None,
            Ok((host, port)) => {
                let url = asker.sentinel.primary_url(&host, port);
                let endpoint = Endpoint::Server(url);
                match open(&endpoint, &options, deadline).await {
                    Ok(opened) => match is_primary(&opened).await {
                        Ok(true) => {
                            link.store(Some(Arc::new(opened)));
                            let _ = connected.send(true);
                            let previous = current.replace((host.clone(), port));
                            tracing::info!(redis = %name, primary = %endpoint.name(),
                                failover = previous.is_some(), "connected to the primary");
                            None
                        }
                        Ok(false) => Some(format!("{host}:{port} is not a primary yet")),
                        Err(error) => Some(format!("{host}:{port}: {error}")),
                    },
                    Err(error) => Some(format!("{host}:{port}: {error}")),
                }
            }
            Err(error) => Some(error),
        };
        if problem.is_some() && problem != last_problem {
            if let Some(problem) = &problem {
                tracing::warn!(redis = %name, %problem, "cannot reach the primary through the sentinels");
            }
        }
        last_problem = problem;
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(nodes: &[&str], auth: Option<&str>) -> Sentinel {
        Sentinel {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            master: "mymaster".into(),
            auth: auth.map(str::to_string),
        }
    }

    #[test]
    fn the_primary_gets_its_own_credentials_and_the_sentinels_tls() {
        let plain = sentinel(&["redis://:sentinel-secret@s1:26379"], Some("p"));
        assert_eq!(
            plain.primary_url("10.0.0.5", 6379),
            "redis://:p@10.0.0.5:6379"
        );
        let tls = sentinel(&["rediss://s1:26379"], Some("u:p"));
        assert_eq!(tls.primary_url("::1", 6380), "rediss://u:p@[::1]:6380");
        assert_eq!(
            sentinel(&["redis://s1:26379"], None).primary_url("h", 1),
            "redis://h:1"
        );
    }
}
