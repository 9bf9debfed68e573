//! A Redis Cluster's primaries, followed: the cluster client follows `MOVED` and `ASK`,
//! and a primary that dies (refusing connections) makes it look again; but a primary that
//! vanishes from the network (no answer, no refusal) leaves it waiting on the old address
//! for ever. So the shard asks a node for the slot map (`CLUSTER SLOTS`) every [`POLL`],
//! and when the set of primaries changes, opens a new client (starting from the new
//! primaries) and swaps it in; calls meanwhile get the failure mode.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::Value;

use super::asker::Asker;
use super::connect::{Endpoint, Link, open};
use super::health::Health;
use super::shard::ShardOptions;

/// How often a node is asked for the slot map.
pub const POLL: Duration = Duration::from_millis(250);

/// The primaries (`host:port`) a `CLUSTER SLOTS` reply names.
fn primaries(reply: &Value) -> BTreeSet<String> {
    let Value::Array(ranges) = reply else {
        return BTreeSet::new();
    };
    ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(fields) = range else {
                return None;
            };
            let Some(Value::Array(primary)) = fields.get(2) else {
                return None;
            };
            let host = match primary.first()? {
                Value::BulkString(host) => String::from_utf8_lossy(host).into_owned(),
                Value::SimpleString(host) => host.clone(),
                _ => return None,
            };
            let Some(Value::Int(port)) = primary.get(1) else {
                return None;
            };
            Some(format!("{host}:{port}"))
        })
        .collect()
}

/// `url` (a configured node) with its address replaced by `address`: same scheme and
/// credentials.
fn at_address(url: &str, address: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let credentials = rest.rfind('@').map_or("", |at| &rest[..=at]);
    format!("{scheme}://{credentials}{address}")
}

/// Opens the cluster client and keeps it on the current primaries until the shard is
/// dropped: publishes each client in `link` (and brings `health` up), keeping the previous
/// one until a new one is open.
pub async fn follow(
    nodes: Vec<String>,
    options: ShardOptions,
    deadline: Duration,
    link: Arc<ArcSwapOption<Link>>,
    health: Weak<Health>,
) {
    // A node that does not answer in this time is skipped for the next.
    let timeout = options.connect_timeout.min(Duration::from_millis(500));
    let mut asker = Asker::new(nodes.clone(), timeout);
    let mut slots = redis::cmd("CLUSTER");
    slots.arg("SLOTS");
    let primaries_of = |reply: Value| Some(primaries(&reply)).filter(|p| !p.is_empty());
    let mut known: Option<BTreeSet<String>> = None;
    let mut backoff = POLL;
    loop {
        let Some(name) = health.upgrade().map(|h| h.name().clone()) else {
            return;
        };
        let found = asker.ask(&slots, primaries_of, "no slots").await;
        let moved = match &found {
            Ok(primaries) => known.as_ref() != Some(primaries),
            Err(_) => false,
        };
        if link.load().is_none() || moved {
            // The primaries first: a vanished node among the configured ones would cost
            // a connect timeout.
            let mut start: Vec<String> = match &found {
                Ok(primaries) => primaries.iter().map(|a| at_address(&nodes[0], a)).collect(),
                Err(_) => Vec::new(),
            };
            start.extend(nodes.iter().cloned());
            match open(&Endpoint::Cluster(start), &options, deadline).await {
                Ok(opened) => {
                    link.store(Some(Arc::new(opened)));
                    if let Some(health) = health.upgrade() {
                        health.came_up();
                    }
                    tracing::info!(redis = %name, primaries = ?found.as_ref().ok(),
                        moved = known.is_some(), "connected");
                    known = found.ok();
                    backoff = POLL;
                }
                Err(error) => {
                    tracing::warn!(redis = %name, %error, retry_in = ?backoff, "cannot connect");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_slot_map_names_each_range_s_primary() {
        let range = |a, b, host: &str, port| {
            Value::Array(vec![
                Value::Int(a),
                Value::Int(b),
                Value::Array(vec![bulk(host), Value::Int(port), bulk("id")]),
                Value::Array(vec![bulk("10.0.0.9"), Value::Int(7009), bulk("replica")]),
            ])
        };
        let reply = Value::Array(vec![
            range(0, 5460, "10.0.0.1", 7000),
            range(5461, 10922, "10.0.0.2", 7001),
            range(10923, 16383, "10.0.0.1", 7000),
        ]);
        let found: Vec<String> = primaries(&reply).into_iter().collect();
        assert_eq!(found, ["10.0.0.1:7000", "10.0.0.2:7001"]);
        assert!(primaries(&Value::Nil).is_empty());
    }

    #[test]
    fn a_discovered_primary_keeps_the_configured_scheme_and_credentials() {
        assert_eq!(
            at_address("rediss://u:p@a:7000", "10.0.0.2:7001"),
            "rediss://u:p@10.0.0.2:7001"
        );
        assert_eq!(at_address("redis://a:7000", "b:1"), "redis://b:1");
    }
}
