//! `Shard`: one Redis endpoint (a server, or a whole cluster) with its connection, kept
//! up in the background, and its batcher, which sends the checks of concurrent requests
//! as one script call.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    ClientTlsConfig, IntoConnectionInfo, RedisResult, Script, ScriptInvocation, TlsCertificates,
    Value,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::failure::{Cause, Failure, RedisError, client_failure};
use super::script::{CHECK_BUCKETS, REFUND_BUCKETS, header, refund_arg, reply_integers};

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

#[derive(Clone)]
enum Link {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Link {
    async fn invoke(&self, invocation: &ScriptInvocation<'_>) -> RedisResult<Value> {
        // Both connections are cheap handles onto one multiplexed connection per node.
        match self.clone() {
            Link::Server(mut c) => invocation.invoke_async(&mut c).await,
            Link::Cluster(mut c) => invocation.invoke_async(&mut c).await,
        }
    }

    async fn ping(&self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self.clone() {
            Link::Server(mut c) => c.req_packed_command(&ping).await.map(drop),
            Link::Cluster(mut c) => c.req_packed_command(&ping).await.map(drop),
        }
    }
}

/// What the batcher has sent, shared with its shard.
#[derive(Clone, Default)]
struct Counters {
    calls: Arc<AtomicU64>,
    checks: Arc<AtomicU64>,
}

/// One request's part of a script call, waiting in the batcher's queue.
struct Job {
    /// Its keys, in check order.
    keys: Vec<Vec<u8>>,
    /// Its arguments (the per-request part of `CHECK_BUCKETS`'s ARGV).
    args: Vec<Vec<u8>>,
    /// When its caller stops waiting.
    deadline: Instant,
    /// Where its reply goes: three integers per check.
    reply: oneshot::Sender<Result<Vec<i64>, Failure>>,
}

/// A Redis endpoint with its connection and batcher.
pub struct Shard {
    name: Arc<str>,
    link: Arc<ArcSwapOption<Link>>,
    connected: watch::Receiver<bool>,
    counters: Counters,
    jobs: mpsc::Sender<Job>,
    refund: Script,
}

impl Shard {
    /// Starts connecting to `endpoint` in the background (with backoff, for ever) and
    /// starts the batcher. Calls made before the first connection fail at once.
    ///
    /// `deadline` is also the client's response timeout: the client parks commands while
    /// it reconnects, and one parked past its caller's deadline would run on the
    /// reconnected server and charge buckets for a request already answered otherwise.
    pub fn start(endpoint: Endpoint, options: ShardOptions, deadline: Duration) -> Shard {
        let cluster = endpoint.is_cluster();
        let name: Arc<str> = match &endpoint {
            Endpoint::Server(url) => redact(url).into(),
            Endpoint::Cluster(nodes) => format!(
                "cluster {}",
                nodes
                    .iter()
                    .map(|n| redact(n))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into(),
        };
        let link = Arc::new(ArcSwapOption::empty());
        let (signal, connected) = watch::channel(false);
        tokio::spawn(connect(
            endpoint,
            options.clone(),
            deadline,
            link.clone(),
            name.clone(),
            signal,
        ));
        // Bounded: a full queue makes callers wait, and the store's deadline bounds that.
        let (jobs, queue) =
            mpsc::channel(options.batch_max_checks.get() * options.pipeline_depth.get() * 4);
        let counters = Counters::default();
        tokio::spawn(batcher(
            queue,
            name.clone(),
            link.clone(),
            options,
            deadline,
            cluster,
            counters.clone(),
        ));
        Shard {
            name,
            link,
            connected,
            counters,
            jobs,
            refund: Script::new(REFUND_BUCKETS),
        }
    }

    /// True once connected (the client reconnects by itself afterwards).
    pub fn is_connected(&self) -> bool {
        self.link.load().is_some()
    }

    /// Check-script calls sent so far: Redis round trips, for measuring batching.
    pub fn calls(&self) -> u64 {
        self.counters.calls.load(Ordering::Relaxed)
    }

    /// Checks sent so far in those calls.
    pub fn checks(&self) -> u64 {
        self.counters.checks.load(Ordering::Relaxed)
    }

    /// Resolves once the first connection is made.
    pub async fn wait_connected(&self) {
        let mut connected = self.connected.clone();
        let _ = connected.wait_for(|c| *c).await;
    }

    /// Queues one request's part for the next script call and waits for its reply; a
    /// part that could not be answered by `deadline` is not sent.
    pub async fn check(
        &self,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
        deadline: Instant,
    ) -> Result<Vec<i64>, Failure> {
        if !self.is_connected() {
            return Err(self.error(Cause::NotConnected).into());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            keys,
            args,
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

    /// Gives back charges: `(key, charge in ns)`; `now` `None` for the server's time.
    pub async fn refund(
        &self,
        now: Option<u64>,
        keys: Vec<(Vec<u8>, u64)>,
    ) -> Result<(), RedisError> {
        let link = self
            .link
            .load_full()
            .ok_or_else(|| self.error(Cause::NotConnected))?;
        let mut invocation = self.refund.prepare_invoke();
        invocation.arg(header(now, false, false, false, 0));
        for (key, charge) in keys {
            invocation.key(key).arg(refund_arg(charge));
        }
        link.invoke(&invocation)
            .await
            .map(drop)
            .map_err(|e| self.error(Cause::Client(e)))
    }

    /// Sends PING: a readiness probe.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let link = self
            .link
            .load_full()
            .ok_or_else(|| self.error(Cause::NotConnected))?;
        link.ping().await.map_err(|e| self.error(Cause::Client(e)))
    }
}

/// Connects with exponential backoff until it succeeds, then publishes the connection.
async fn connect(
    endpoint: Endpoint,
    options: ShardOptions,
    deadline: Duration,
    link: Arc<ArcSwapOption<Link>>,
    name: Arc<str>,
    signal: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match open(&endpoint, &options, deadline).await {
            Ok(opened) => {
                link.store(Some(Arc::new(opened)));
                let _ = signal.send(true);
                tracing::info!(redis = %name, "connected");
                return;
            }
            Err(error) => {
                tracing::warn!(redis = %name, %error, retry_in = ?backoff, "cannot connect");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn open(
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

/// Collects queued jobs into script calls: up to `batch_max_checks` checks, waiting at
/// most `batch_window` for more, with at most `pipeline_depth` calls in flight.
///
/// A job is sent only while its caller may still get the answer: one whose caller gave
/// up is dropped, and one with less time left than a fast call has recently taken is
/// answered [`Failure::Overload`] at once. Sending it would spend Redis's time on an
/// answer that comes too late and charge buckets for a request answered by the failure
/// mode; when more requests come than Redis can answer in time, those it can are
/// answered.
async fn batcher(
    mut queue: mpsc::Receiver<Job>,
    name: Arc<str>,
    link: Arc<ArcSwapOption<Link>>,
    options: ShardOptions,
    deadline: Duration,
    cluster: bool,
    counters: Counters,
) {
    let script = Script::new(CHECK_BUCKETS);
    let depth = options.pipeline_depth.get();
    let mut round_trip = RoundTrip::new(deadline);
    // The calls in flight are driven here rather than spawned: no task per batch, and a
    // reply wakes this task only, which hands each caller its answer. Each yields its
    // round trip if it succeeded.
    let mut in_flight = FuturesUnordered::new();
    loop {
        let first = tokio::select! {
            Some(took) = in_flight.next(), if !in_flight.is_empty() => {
                round_trip.observe(took);
                continue;
            }
            job = queue.recv(), if in_flight.len() < depth => match job {
                Some(job) => job,
                None => break,
            },
        };
        let now = Instant::now();
        let admit = |job: Job| -> Option<Job> {
            if job.reply.is_closed() {
                return None;
            }
            if round_trip.too_late(now, job.deadline) {
                let _ = job.reply.send(Err(Failure::Overload));
                return None;
            }
            Some(job)
        };
        let mut jobs: Vec<Job> = admit(first).into_iter().collect();
        let mut checks: usize = jobs.iter().map(|j| j.keys.len()).sum();
        let window_end = now + options.batch_window;
        while checks < options.batch_max_checks.get() {
            let next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if !options.batch_window.is_zero() => {
                    tokio::time::timeout_at(window_end, queue.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            let Some(job) = admit(job) else { continue };
            checks += job.keys.len();
            jobs.push(job);
        }
        if jobs.is_empty() {
            continue;
        }
        // A cluster script may touch one slot only: one call per hash tag there (the
        // jobs of one hot descriptor still share a call).
        let groups = if cluster { by_tag(jobs) } else { vec![jobs] };
        counters
            .calls
            .fetch_add(groups.len() as u64, Ordering::Relaxed);
        counters.checks.fetch_add(checks as u64, Ordering::Relaxed);
        let link = link.load_full();
        for jobs in groups {
            let (script, link, name) = (&script, link.clone(), &name);
            in_flight.push(async move {
                let checks: usize = jobs.iter().map(|j| j.keys.len()).sum();
                metrics::histogram!("rls_redis_batch_checks").record(checks as f64);
                metrics::counter!("rls_redis_calls_total").increment(1);
                // Dropped when its last caller stops waiting: a command the client parked
                // for a reconnect is cancelled instead of running later on the
                // reconnected server.
                let latest = jobs.iter().map(|j| j.deadline).max().unwrap_or(now);
                let started = Instant::now();
                let result = match link {
                    Some(link) => tokio::time::timeout_at(latest, call(script, &link, &jobs, name))
                        .await
                        .unwrap_or(Err(Failure::Deadline)),
                    None => Err(RedisError::new(name, Cause::NotConnected).into()),
                };
                let took = result.is_ok().then(|| started.elapsed());
                deliver(jobs, result, name);
                took
            });
        }
    }
    while in_flight.next().await.is_some() {}
}

/// How long a successful script call takes when it goes well, which a job must have left
/// before its deadline to be sent: it falls at once to a faster call and rises by a
/// sixteenth of the difference on a slower one, so it follows the fast end of recent
/// calls and sheds only jobs that would surely be late. Capped at half the deadline: a
/// job that has waited less than that is always sent, so a slow spell never stops calls
/// for good and the estimate keeps learning.
struct RoundTrip {
    /// `None` until a call has succeeded.
    fast: Option<Duration>,
    cap: Duration,
}

impl RoundTrip {
    fn new(deadline: Duration) -> RoundTrip {
        RoundTrip {
            fast: None,
            cap: deadline / 2,
        }
    }

    /// Adds a call's round trip (`None`: it failed, and says nothing of Redis's pace).
    fn observe(&mut self, took: Option<Duration>) {
        self.fast = match (self.fast, took) {
            (Some(fast), Some(took)) if took > fast => Some((fast * 15 + took) / 16),
            (_, Some(took)) => Some(took),
            (fast, None) => fast,
        };
    }

    /// True when a job due at `deadline` could not be answered in time if sent `now`.
    fn too_late(&self, now: Instant, deadline: Instant) -> bool {
        let needed = self.fast.unwrap_or_default().min(self.cap);
        deadline <= now || deadline - now < needed
    }
}

/// Splits jobs by the hash tag of their first key (every key of a job shares it).
fn by_tag(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: Vec<(Vec<u8>, Vec<Job>)> = Vec::new();
    for job in jobs {
        let tag = job
            .keys
            .first()
            .map(|k| hash_tag(k).to_vec())
            .unwrap_or_default();
        match groups.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, group)) => group.push(job),
            None => groups.push((tag, vec![job])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// The part of a key Redis Cluster hashes: between the first `{` and the next `}`.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

async fn call(
    script: &Script,
    link: &Link,
    jobs: &[Job],
    shard: &Arc<str>,
) -> Result<Vec<i64>, Failure> {
    let mut invocation = script.prepare_invoke();
    // ARGV[1] is the number of requests; each job's args start with its header.
    invocation.arg(jobs.len());
    for job in jobs {
        for key in &job.keys {
            invocation.key(key.as_slice());
        }
        for arg in &job.args {
            invocation.arg(arg.as_slice());
        }
    }
    let value = link
        .invoke(&invocation)
        .await
        .map_err(|e| client_failure(shard, e))?;
    reply_integers(value).map_err(|e| RedisError::new(shard, Cause::Reply(e)).into())
}

/// Hands each job its reply (three integers per check, in order).
fn deliver(jobs: Vec<Job>, result: Result<Vec<i64>, Failure>, shard: &Arc<str>) {
    let expected: usize = jobs.iter().map(|j| 3 * j.keys.len()).sum();
    match result {
        Ok(values) if values.len() == expected => {
            let mut values = values.into_iter();
            for job in jobs {
                let reply = values.by_ref().take(3 * job.keys.len()).collect();
                let _ = job.reply.send(Ok(reply));
            }
        }
        Ok(values) => {
            let wrong = format!("{} reply values for {expected} expected", values.len());
            let error = Failure::from(RedisError::new(shard, Cause::Reply(wrong)));
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
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
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{RoundTrip, redact};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_job_is_shed_only_with_less_time_left_than_a_fast_call_takes() {
        let now = Instant::now();
        let mut round_trip = RoundTrip::new(10 * MS);
        // Nothing measured yet: only a job already past its deadline is too late.
        assert!(!round_trip.too_late(now, now + MS / 10));
        assert!(round_trip.too_late(now, now));
        // The first call sets the estimate; a faster one lowers it at once.
        round_trip.observe(Some(3 * MS));
        assert!(round_trip.too_late(now, now + 2 * MS));
        assert!(!round_trip.too_late(now, now + 3 * MS));
        round_trip.observe(Some(2 * MS));
        assert!(round_trip.too_late(now, now + MS + MS / 2));
        assert!(!round_trip.too_late(now, now + 2 * MS));
        // Failed calls say nothing of Redis's pace.
        round_trip.observe(None);
        assert!(!round_trip.too_late(now, now + 2 * MS));
    }

    #[test]
    fn slow_calls_never_shed_a_job_with_half_its_deadline_left() {
        let now = Instant::now();
        let mut round_trip = RoundTrip::new(10 * MS);
        round_trip.observe(Some(MS));
        // One slow call moves the estimate a sixteenth of the way, not all of it.
        round_trip.observe(Some(17 * MS));
        assert!(round_trip.too_late(now, now + 1900 * Duration::from_micros(1)));
        assert!(!round_trip.too_late(now, now + 2 * MS + MS / 10));
        // However slow Redis gets, a job with half its deadline left is sent, so calls
        // go on and the estimate comes down again when Redis does.
        for _ in 0..200 {
            round_trip.observe(Some(50 * MS));
        }
        assert!(round_trip.too_late(now, now + 4 * MS));
        assert!(!round_trip.too_late(now, now + 5 * MS));
        round_trip.observe(Some(MS));
        assert!(!round_trip.too_late(now, now + 2 * MS));
    }

    #[test]
    fn credentials_never_appear_in_names() {
        assert_eq!(
            redact("redis://user:secret@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redact("redis://10.0.0.5:6379"), "redis://10.0.0.5:6379");
        assert_eq!(redact("10.0.0.5:7000"), "10.0.0.5:7000");
    }
}
