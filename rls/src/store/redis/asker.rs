//! `Asker`: asks a list of Redis nodes (sentinels, cluster nodes) one command in turn,
//! keeping a connection to the one that last answered, for the watchers that follow a
//! primary (`sentinel.rs`, `cluster.rs`).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisResult};

use super::connect::redact;

/// Nodes asked in turn.
pub struct Asker {
    nodes: Vec<String>,
    next: usize,
    connection: Option<MultiplexedConnection>,
    timeout: Duration,
}

impl Asker {
    /// Asks `nodes` (URLs), giving each `timeout` to connect and to answer.
    pub fn new(nodes: Vec<String>, timeout: Duration) -> Asker {
        Asker {
            nodes,
            next: 0,
            connection: None,
            timeout,
        }
    }

    /// Runs `command` on the nodes in turn until one's reply gives a value by `found`;
    /// else says why none did (`missing`: what a reply without one lacked).
    pub async fn ask<T: FromRedisValue, R>(
        &mut self,
        command: &Cmd,
        found: impl Fn(T) -> Option<R>,
        missing: &str,
    ) -> Result<R, String> {
        let mut errors = Vec::new();
        for _ in 0..self.nodes.len() {
            let node = redact(&self.nodes[self.next]);
            match self.run::<T>(command).await {
                Ok(reply) => match found(reply) {
                    Some(value) => return Ok(value),
                    None => errors.push(format!("{node}: {missing}")),
                },
                Err(error) => errors.push(format!("{node}: {error}")),
            }
            // This node failed or does not know: the next one, from scratch.
            self.connection = None;
            self.next = (self.next + 1) % self.nodes.len();
        }
        Err(errors.join("; "))
    }

    async fn run<T: FromRedisValue>(&mut self, command: &Cmd) -> RedisResult<T> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let client = redis::Client::open(self.nodes[self.next].as_str())?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let opened = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.connection.insert(opened)
            }
        };
        command.query_async(connection).await
    }
}
