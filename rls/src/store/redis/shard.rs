//! `Shard`: one Redis endpoint (a server, or a whole cluster) with its [`Connection`] and
//! its [`Batcher`], which sends the checks of concurrent requests as one script call.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use limiter::Nanos;
use redis::{Script, ScriptInvocation, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::batcher::{Batcher, Counters, Job};
use super::connect::{Connection, Endpoint, TlsFiles};
use super::failure::{Cause, Failure, RedisError};
use super::script::{REFUND_BUCKETS, refund_call};

/// Connection and batching settings of a shard.
#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// Certificates for `rediss://`: a CA to verify the server (default: the system's
    /// roots) and a client certificate for mutual TLS.
    pub tls: TlsFiles,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Most checks in one script call.
    pub batch_max_checks: NonZeroUsize,
    /// How long the batcher waits for more checks once it has some; zero sends what is
    /// queued at once (batches then form from the requests that arrive while earlier
    /// calls are in flight). Tokio's timers round up to whole milliseconds, and replies
    /// of calls in flight are handed out after the wait: keep it zero unless measured.
    pub batch_window: Duration,
    /// Script calls in flight at once on this shard.
    pub pipeline_depth: NonZeroUsize,
}

/// A Redis endpoint with its connection and batcher.
pub struct Shard {
    name: Arc<str>,
    connection: Connection,
    counters: Counters,
    jobs: mpsc::Sender<Job>,
    refund: Script,
}

impl Shard {
    /// Starts connecting to `endpoint` in the background (with backoff, until it
    /// succeeds) and starts the batcher. Calls made before the first connection, or while
    /// the shard is down, fail at once.
    /// `deadline` is the backend deadline, which is also the client's response timeout
    /// ([`Connection::start`]).
    pub fn start(endpoint: Endpoint, options: ShardOptions, deadline: Duration) -> Shard {
        let name = endpoint.name();
        let connection = Connection::start(endpoint, options.clone(), deadline, name.clone());
        // Bounded: a full queue makes callers wait, and the store's deadline bounds that.
        let (jobs, queue) =
            mpsc::channel(options.batch_max_checks.get() * options.pipeline_depth.get() * 4);
        let counters = Counters::default();
        let batcher = Batcher {
            queue,
            name: name.clone(),
            connection: connection.clone(),
            options,
            deadline,
            counters: counters.clone(),
        };
        tokio::spawn(batcher.run());
        Shard {
            name,
            connection,
            counters,
            jobs,
            refund: Script::new(REFUND_BUCKETS),
        }
    }

    /// True while the shard answers (its circuit is closed): calls are sent.
    pub fn is_up(&self) -> bool {
        self.connection.health().is_up()
    }

    /// Resolves once the shard is up: connected, or answering again.
    pub async fn wait_up(&self) {
        self.connection.wait_up().await;
    }

    /// Why a call is not sent to this shard, when it is not up.
    fn down(&self) -> Option<RedisError> {
        let health = self.connection.health();
        match (health.is_up(), health.connected_once()) {
            (true, _) => None,
            (false, false) => Some(self.error(Cause::NotConnected)),
            (false, true) => Some(self.error(Cause::Down)),
        }
    }

    /// Check-script calls sent so far: Redis round trips, for measuring batching.
    pub fn calls(&self) -> u64 {
        self.counters.calls.load(Ordering::Relaxed)
    }

    /// Checks sent so far in those calls.
    pub fn checks(&self) -> u64 {
        self.counters.checks.load(Ordering::Relaxed)
    }

    /// Queues one request's part for the next script call and waits for its reply; a
    /// part that could not be answered by `deadline` is not sent. `slot`: in a cluster,
    /// the hash tag all `keys` carry.
    pub async fn check(
        &self,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
        slot: Option<u64>,
        deadline: Instant,
    ) -> Result<Vec<i64>, Failure> {
        if let Some(down) = self.down() {
            return Err(down.into());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            keys,
            args,
            slot,
            deadline,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| self.error(Cause::Stopped))?;
        answer.await.map_err(|_| self.error(Cause::Dropped))?
    }

    /// An error of this shard.
    pub fn error(&self, cause: Cause) -> RedisError {
        RedisError::new(&self.name, cause)
    }

    /// Gives back charges: `(key, charge)`; `now` `None` for the server's time.
    pub async fn refund(
        &self,
        now: Option<Nanos>,
        refunds: Vec<(Vec<u8>, Nanos)>,
    ) -> Result<(), RedisError> {
        self.invoke(&refund_call(&self.refund, now, refunds))
            .await
            .map(drop)
    }

    /// Runs one script call at once, outside the batcher; fails at once while the shard is
    /// down.
    pub async fn invoke(&self, invocation: &ScriptInvocation<'_>) -> Result<Value, RedisError> {
        if let Some(down) = self.down() {
            return Err(down);
        }
        let link = self
            .connection
            .link()
            .ok_or_else(|| self.error(Cause::NotConnected))?;
        link.invoke(invocation)
            .await
            .map_err(|e| self.error(Cause::Client(e)))
    }
}
