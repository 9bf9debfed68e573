//! Real Redis for tests: a `redis-server` on a free loopback port, or a local 3-master
//! Redis Cluster, started by the test and stopped when dropped. Persistence is off.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use limiter::FakeClock;
use rls::store::redis::{Endpoint, LeaseOptions, RedisStore};
use tempfile::TempDir;

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn missing(program: &str) -> ! {
    panic!(
        "{program} not found: the Redis tests need it. Install it with \
         `apt-get install redis-server redis-tools` (Debian), or run `bash scripts/test.sh`, \
         which installs it when missing"
    )
}

/// One `redis-server` process.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts a standalone server on a free port and returns once it accepts connections.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a standalone server on `port` (e.g. to restart one that was killed).
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::launch(port, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server with extra arguments (e.g. cluster mode). A free port can be taken
    /// by another process before the server binds it: then it tries another, a few times.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut failures = Vec::new();
        for _ in 0..5 {
            match RedisServer::launch(free_port(), extra) {
                Ok(server) => return server,
                Err(error) => failures.push(error),
            }
        }
        panic!("redis-server did not start: {failures:?}")
    }

    fn launch(port: u16, extra: &[&str]) -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--loglevel", "notice", "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|_| missing("redis-server"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The server's own log says when it accepts connections: no polling, no sleep.
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Ready to accept connections") => break,
                Some(Ok(_)) => continue,
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "redis-server on port {port} ended before it was ready: {other:?}"
                    ));
                }
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Ok(RedisServer {
            port,
            child,
            _dir: dir,
        })
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli -p PORT args...` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// Stops the server abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Pauses or resumes the process (SIGSTOP / SIGCONT): a Redis that stalls.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{signal} {}", self.child.id())])
            .status()
            .expect("sh runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too, and on one already gone it is a no-op.
        self.kill();
    }
}

/// Runs `redis-cli -p port args...`.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|_| missing("redis-cli"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A local Redis Cluster of three masters, no replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-mode servers, joins them, and returns once every node
    /// reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        // A node whose port is over 55535 (its bus port, +10000, would not exist) exits
        // at once: `start_with` then tries another port.
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        create_cluster(&addrs, 0);
        // `--cluster create` returns once the nodes agree on the configuration; each
        // node flips to ok on its own shortly after. Each probe is a process run, bounded.
        for node in &nodes {
            let ok = (0..2000).any(|_| node.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            assert!(ok, "node {} never reported cluster_state:ok", node.port);
        }
        RedisCluster { nodes }
    }

    /// `127.0.0.1:PORT` of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }
}

/// Joins the cluster-mode servers at `addrs` (`host:port`) into one cluster, with
/// `replicas` replicas per primary (`redis-cli --cluster create`).
pub fn create_cluster(addrs: &[String], replicas: usize) {
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(addrs)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .output()
        .unwrap_or_else(|_| missing("redis-cli"));
    let text = String::from_utf8_lossy(&created.stdout);
    assert!(
        created.status.success() && text.contains("All 16384 slots covered"),
        "cluster create failed: {text}"
    );
}

/// A Redis store on `redis` reading `clock`, its keys under `prefix`; with `lease`, every
/// bucket leased (threshold 0) for a 10 ms span.
pub fn store(redis: &RedisServer, clock: &FakeClock, lease: bool, prefix: &str) -> RedisStore {
    let mut options = super::redis_options(vec![Endpoint::Server(redis.url())]);
    options.key_prefix = prefix.into();
    options.clock = Arc::new(clock.clone());
    options.lease = lease.then_some(LeaseOptions {
        threshold: 0,
        span: Duration::from_millis(10),
    });
    RedisStore::new(options)
}
