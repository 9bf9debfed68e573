//! `Health`: whether a shard answers — a circuit breaker. Up (closed) while its calls
//! succeed; after [`FAILURES_TO_OPEN`] failed calls in a row it is down (open): calls fail
//! at once instead of each waiting out the backend deadline, and [`keep`] probes the shard
//! (`PING`) after a growing back-off until one is answered, which brings it up again. While
//! up and idle, a `PING` every [`HEARTBEAT`] finds a lost shard without traffic (and makes
//! the client reconnect before a request needs it). Each loss and each recovery is logged
//! once; the state is the gauge `rls_redis_shard_up{shard}`.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio::time::Instant;

use super::connect::{Endpoint, Link, open};
use super::shard::ShardOptions;

/// Failed calls in a row that take a shard down. One failure is not enough: a lone
/// error says little; three in a row with none answered in between is a shard that does
/// not answer.
pub const FAILURES_TO_OPEN: u32 = 3;

/// How long a shard whose calls miss their deadline (rather than fail with an error) must
/// have gone without any answer before it is taken down: a loaded machine misses
/// deadlines of calls Redis answers (three in a row happen there, between answers), while
/// a shard that answers nothing for this long is stalled or unreachable.
pub const SILENCE_TO_OPEN: Duration = Duration::from_secs(1);

/// The first wait before probing a shard that went down; each failed probe doubles it, up
/// to [`LONGEST_PROBE_WAIT`].
pub const FIRST_PROBE_WAIT: Duration = Duration::from_millis(100);

/// The longest wait between two probes of a shard that is down.
pub const LONGEST_PROBE_WAIT: Duration = Duration::from_secs(2);

/// How long an up shard may go without an answer before [`keep`] pings it.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A shard's state, shared by its callers, its batcher and its keeper.
pub struct Health {
    name: Arc<str>,
    up: AtomicBool,
    /// Failed calls since the last answer.
    failures: AtomicU32,
    /// When the shard last answered, in milliseconds since `born`.
    answered: AtomicU64,
    born: Instant,
    /// Whether the shard has been up once: its first coming up is "connected", a later
    /// one "recovered".
    connected_once: AtomicBool,
    /// The state, for those who wait on it (tests wait for up, the keeper for down).
    state: watch::Sender<bool>,
}

impl Health {
    /// A shard not connected yet: down.
    pub fn new(name: Arc<str>) -> Health {
        metrics::gauge!("rls_redis_shard_up", "shard" => name.to_string()).set(0.0);
        Health {
            name,
            up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            answered: AtomicU64::new(0),
            born: Instant::now(),
            connected_once: AtomicBool::new(false),
            state: watch::Sender::new(false),
        }
    }

    /// True while the shard answers: calls are sent. False before the first connection
    /// and while it is down: calls fail at once.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// True once the shard has been connected.
    pub fn connected_once(&self) -> bool {
        self.connected_once.load(Ordering::Relaxed)
    }

    /// Resolves once the shard is up.
    pub async fn wait_up(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|up| *up).await;
    }

    /// The shard answered a call (even with an error of its own: it is reachable).
    pub fn answered(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let now = self.born.elapsed().as_millis() as u64;
        self.answered.store(now, Ordering::Relaxed);
    }

    /// A call failed: an error (`late` false: refused, reset, ...), or no answer by its
    /// deadline (`late`). The [`FAILURES_TO_OPEN`]th failure in a row takes the shard
    /// down, if it is an error or the shard has answered nothing for
    /// [`SILENCE_TO_OPEN`].
    pub fn failed(&self, error: &dyn Display, late: bool) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < FAILURES_TO_OPEN || (late && !self.quiet_for(SILENCE_TO_OPEN)) {
            return;
        }
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                redis = %self.name, %error, failures,
                "redis shard lost: failing fast and probing it until it answers"
            );
            self.publish(false);
        }
    }

    /// A probe (or the first connection) was answered: up.
    fn came_up(&self) {
        self.answered();
        if self.up.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.connected_once.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.name, "redis shard recovered");
        } else {
            tracing::info!(redis = %self.name, "connected");
        }
        self.publish(true);
    }

    fn publish(&self, up: bool) {
        metrics::gauge!("rls_redis_shard_up", "shard" => self.name.to_string()).set(if up {
            1.0
        } else {
            0.0
        });
        self.state.send_replace(up);
    }

    /// True when the shard has not answered for `quiet`.
    fn quiet_for(&self, quiet: Duration) -> bool {
        let answered = Duration::from_millis(self.answered.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(answered) >= quiet
    }
}

/// Keeps a shard's client: connects (with back-off, until it succeeds) and publishes the
/// client in `link`; then, for as long as `health` lives, probes the shard while it is
/// down and pings it while it is up and quiet. Ends when the shard is dropped.
pub async fn keep(
    endpoint: Endpoint,
    options: ShardOptions,
    deadline: Duration,
    link: Arc<ArcSwapOption<Link>>,
    health: Weak<Health>,
) {
    let Some(opened) = first_connection(&endpoint, &options, deadline, &health).await else {
        return;
    };
    let opened = Arc::new(opened);
    link.store(Some(opened.clone()));
    let Some(mut state) = health.upgrade().map(|h| {
        h.came_up();
        h.state.subscribe()
    }) else {
        return;
    };
    loop {
        tokio::select! {
            // Err once the shard is dropped.
            down = async { state.wait_for(|up| !*up).await.is_ok() } => {
                if !down {
                    return;
                }
            }
            () = tokio::time::sleep(HEARTBEAT) => {
                let Some(health) = health.upgrade() else { return };
                if health.is_up() && health.quiet_for(HEARTBEAT) {
                    match tokio::time::timeout(options.connect_timeout, opened.ping()).await {
                        Ok(Ok(())) => health.answered(),
                        Ok(Err(error)) => health.failed(&error, error.is_timeout()),
                        Err(_) => health.failed(&"heartbeat timed out", true),
                    }
                }
                continue;
            }
        }
        if !probe_until_answered(&opened, options.connect_timeout, &health).await {
            return;
        }
    }
}

/// The first connection, tried with back-off until it succeeds; `None` once the shard is
/// dropped.
async fn first_connection(
    endpoint: &Endpoint,
    options: &ShardOptions,
    deadline: Duration,
    health: &Weak<Health>,
) -> Option<Link> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let error = match open(endpoint, options, deadline).await {
            Ok(opened) => return Some(opened),
            Err(error) => error,
        };
        let name = health.upgrade()?.name.clone();
        tracing::warn!(redis = %name, %error, retry_in = ?backoff, "cannot connect");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Pings the shard after a growing back-off until it answers, then brings it up; false if
/// the shard was dropped meanwhile.
async fn probe_until_answered(link: &Link, timeout: Duration, health: &Weak<Health>) -> bool {
    let mut wait = FIRST_PROBE_WAIT;
    loop {
        tokio::time::sleep(wait).await;
        let answered = matches!(tokio::time::timeout(timeout, link.ping()).await, Ok(Ok(())));
        let Some(health) = health.upgrade() else {
            return false;
        };
        if answered {
            health.came_up();
            return true;
        }
        wait = (wait * 2).min(LONGEST_PROBE_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_goes_down_after_failures_in_a_row_only() {
        let health = Health::new("redis://10.0.0.5:6379".into());
        assert!(!health.is_up(), "down until connected");
        health.came_up();
        assert!(health.is_up() && health.connected_once());
        for _ in 0..FAILURES_TO_OPEN - 1 {
            health.failed(&"broken pipe", false);
        }
        health.answered();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            health.failed(&"broken pipe", false);
        }
        assert!(health.is_up(), "an answer in between resets the count");
        health.failed(&"broken pipe", false);
        assert!(!health.is_up());
        health.came_up();
        assert!(health.is_up());
    }

    // Reproduces healthy shards going down for a moment under load: on a saturated
    // machine three calls in a row missed their deadline between answers.
    #[tokio::test(start_paused = true)]
    async fn missed_deadlines_take_a_shard_down_only_after_a_silence() {
        let health = Health::new("redis://10.0.0.5:6379".into());
        health.came_up();
        for _ in 0..10 * FAILURES_TO_OPEN {
            health.failed(&"backend deadline exceeded", true);
        }
        assert!(health.is_up(), "answered just now");
        tokio::time::advance(SILENCE_TO_OPEN).await;
        health.failed(&"backend deadline exceeded", true);
        assert!(!health.is_up(), "silent for {SILENCE_TO_OPEN:?}");
    }
}
