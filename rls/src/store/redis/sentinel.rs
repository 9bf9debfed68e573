//! `Sentinel`: a primary found through Redis Sentinel and followed across failovers.
//!
//! A client opened on one address keeps reconnecting to that address, so after a failover
//! it would talk to a dead server, or to the old primary turned replica. Instead the shard
//! asks the sentinels which server is the primary every [`POLL`], and when the answer
//! changes (and the new server says it is a primary) it opens a client there and swaps it
//! in; calls meanwhile get the failure mode. One command to one sentinel per poll (the
//! first that answers, kept connected), so polling costs the sentinels next to nothing.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::{RedisResult, Value};

use super::asker::Asker;
use super::connect::{Endpoint, Link, open};
use super::health::Health;
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

/// Finds the primary and follows it until the shard is dropped: publishes a client of each
/// new primary in `link` (and brings `health` up), keeping the previous one until a new
/// one is open.
pub async fn follow(
    sentinel: Sentinel,
    options: ShardOptions,
    deadline: Duration,
    link: Arc<ArcSwapOption<Link>>,
    health: Weak<Health>,
) {
    let mut asker = Asker::new(sentinel.nodes.clone(), options.connect_timeout);
    let mut ask = redis::cmd("SENTINEL");
    ask.arg("get-master-addr-by-name").arg(&sentinel.master);
    let missing = format!("no primary named {}", sentinel.master);
    let mut current: Option<(String, u16)> = None;
    // Said once per change, not once per poll.
    let mut last_problem: Option<String> = None;
    loop {
        let Some(name) = health.upgrade().map(|h| h.name().clone()) else {
            return;
        };
        let primary = asker.ask(&ask, |reply: Option<(String, u16)>| reply, &missing);
        let problem = match primary.await {
            Ok(address) if current.as_ref() == Some(&address) => None,
            Ok((host, port)) => {
                let url = sentinel.primary_url(&host, port);
                let endpoint = Endpoint::Server(url);
                match open(&endpoint, &options, deadline).await {
                    Ok(opened) => match is_primary(&opened).await {
                        Ok(true) => {
                            link.store(Some(Arc::new(opened)));
                            if let Some(health) = health.upgrade() {
                                health.came_up();
                            }
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
        if let Some(problem) = &problem
            && last_problem.as_ref() != Some(problem)
        {
            tracing::warn!(redis = %name, %problem, "cannot reach the primary through the sentinels");
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
