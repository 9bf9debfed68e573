//! [`Spawned`]: a process `loadtest stack` started, killed and reaped when dropped, so that
//! the stack stops what it started however it ends; and how the stack finds and starts
//! `rls` replicas and `redis-server` (single or a three-master cluster) on loopback.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::cpu::CpuList;
use crate::error::HarnessError;

/// How long a started process may take to listen.
pub const READY_WITHIN: Duration = Duration::from_secs(15);

/// A child process, with its output in a log file; killed (by its own pid) and reaped on drop.
#[derive(Debug)]
pub struct Spawned {
    /// What it is, for messages: `rls replica 2`, `redis-server :6380`.
    pub name: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
    child: Child,
}

impl Spawned {
    /// Starts `command` with its output to `log`, on `cpus` when given.
    pub fn start(
        name: &str,
        command: &mut Command,
        log: PathBuf,
        cpus: Option<&CpuList>,
    ) -> Result<Spawned, HarnessError> {
        let out = File::create(&log)
            .map_err(|e| HarnessError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::io(format!("creating {}", log.display()), e))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = match cpus {
            Some(cpus) => cpus.spawn(command)?,
            None => command.spawn(),
        }
        .map_err(|e| HarnessError::io(format!("starting {name}"), e))?;
        Ok(Spawned {
            name: name.to_string(),
            log,
            child,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }

    /// Waits until a line of its log has the field `name` (`grpc_addr=`) and returns the
    /// field's value; fails if the process ends or takes longer than [`READY_WITHIN`].
    pub async fn wait_for_field(&mut self, name: &str) -> Result<String, HarnessError> {
        let log = self.log.clone();
        self.wait_until(&format!("logging {name}"), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let value = text
                .lines()
                .flat_map(str::split_whitespace)
                .find_map(|word| word.strip_prefix(name))
                .map(str::to_string);
            std::future::ready(value)
        })
        .await
    }

    /// Waits until `addr` accepts connections; fails if the process ends or takes longer
    /// than [`READY_WITHIN`].
    pub async fn wait_listening(&mut self, addr: &str) -> Result<(), HarnessError> {
        self.wait_until(&format!("listening on {addr}"), || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(drop)
        })
        .await
    }

    /// Polls `ready` every 50 ms until it gives a value; fails, naming `what` it waited for,
    /// if the process ends first or [`READY_WITHIN`] passes.
    async fn wait_until<T, F: Future<Output = Option<T>>>(
        &mut self,
        what: &str,
        mut ready: impl FnMut() -> F,
    ) -> Result<T, HarnessError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(value) = ready().await {
                return Ok(value);
            }
            if let Some(status) = self.exited() {
                return Err(HarnessError::Process(format!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.name,
                    self.log_tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Process(format!(
                    "{} was not {what} within {} s:\n{}",
                    self.name,
                    READY_WITHIN.as_secs(),
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Only this child, by its pid; then reap it so that no zombie outlives the stack.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free when asked (another process could take it before it is used; on a
/// test machine that does not happen in practice).
pub fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| HarnessError::io("finding a free loopback port", e))
}

/// The `rls` binary: `explicit` if given, else `rls` next to this executable (or one
/// folder up, for test binaries in `target/*/deps`).
pub fn find_rls(explicit: Option<&Path>) -> Result<PathBuf, HarnessError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(HarnessError::Process(format!(
                "--rls-bin {}: no such file",
                path.display()
            )))
        };
    }
    let exe =
        std::env::current_exe().map_err(|e| HarnessError::io("finding this executable", e))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    [dir.join("rls"), dir.join("../rls")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            HarnessError::Process(format!(
                "no rls binary next to {}: build it with `cargo build --release -p rls -p loadtest` \
                 and run target/release/loadtest, or pass --rls-bin PATH",
                exe.display()
            ))
        })
}

/// `name` on `PATH`, if there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What the `rls` binary can serve from, read from `rls serve --help`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RlsFeatures {
    /// `--backend redis --redis-url URL`.
    pub redis: bool,
    /// `--backend redis --redis-cluster host:port,...`.
    pub redis_cluster: bool,
}

impl RlsFeatures {
    /// Reads the help text of `rls serve`.
    pub fn from_help(help: &str) -> RlsFeatures {
        RlsFeatures {
            redis: help.contains("--redis-url"),
            redis_cluster: help.contains("--redis-cluster"),
        }
    }

    /// Runs `rls serve --help`.
    pub fn of(rls: &Path) -> Result<RlsFeatures, HarnessError> {
        let output = Command::new(rls)
            .args(["serve", "--help"])
            .output()
            .map_err(|e| HarnessError::io(format!("running {} serve --help", rls.display()), e))?;
        Ok(RlsFeatures::from_help(&String::from_utf8_lossy(
            &output.stdout,
        )))
    }
}

/// Where an `rls` replica keeps its buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// In its own memory.
    Memory,
    /// One Redis server.
    Redis {
        /// `redis://127.0.0.1:PORT`.
        url: String,
    },
    /// A Redis Cluster.
    RedisCluster {
        /// `host:port` of each master.
        nodes: Vec<String>,
    },
}

impl Backend {
    /// The `rls serve` flags for this backend.
    pub fn flags(&self) -> Vec<String> {
        match self {
            Backend::Memory => vec!["--backend".into(), "memory".into()],
            Backend::Redis { url } => vec![
                "--backend".into(),
                "redis".into(),
                "--redis-url".into(),
                url.clone(),
            ],
            Backend::RedisCluster { nodes } => vec![
                "--backend".into(),
                "redis".into(),
                "--redis-cluster".into(),
                nodes.join(","),
            ],
        }
    }
}

/// Starts `rls serve` on loopback ports it picks itself (port 0), waits until its log says
/// it serves, and returns it with its gRPC address read from that line. (A port picked
/// here and handed over could be taken by another process in between.)
pub async fn start_rls(
    rls: &Path,
    quota: &Path,
    backend: &Backend,
    dir: &Path,
    index: usize,
    extra: &[String],
    cpus: Option<&CpuList>,
) -> Result<(Spawned, String), HarnessError> {
    let mut command = Command::new(rls);
    command
        .arg("serve")
        .arg("--config")
        .arg(quota)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(backend.flags())
        .args(extra)
        // Warnings, and the server's own "serving" line with the bound addresses.
        .env("RLS_LOG_LEVEL", "warn,rls::server=info")
        .env("RLS_LOG_FORMAT", "text");
    let name = format!("rls replica {index}");
    let log = dir.join(format!("rls-{index}.log"));
    let mut spawned = Spawned::start(&name, &mut command, log, cpus)?;
    let grpc = spawned.wait_for_field("grpc_addr=").await?;
    Ok((spawned, grpc))
}

/// Spawns `redis-server` on a free loopback port (see [`start_redis`]).
fn spawn_redis(
    redis_server: &Path,
    dir: &Path,
    cluster: bool,
    cpus: Option<&CpuList>,
) -> Result<(Spawned, u16), HarnessError> {
    let mut port = free_port()?;
    // A cluster node also listens on port + 10000, so its port must be 55535 or less.
    for _ in 0..100 {
        if !cluster || port <= 55_535 {
            break;
        }
        port = free_port()?;
    }
    let mut command = Command::new(redis_server);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        // As docs/redis.md recommends: expiry in 2.5 ms steps instead of 25 ms stalls.
        .args(["--hz", "100"])
        .arg("--dir")
        .arg(dir);
    if cluster {
        command.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
        ]);
    }
    let name = format!("redis-server :{port}");
    let log = dir.join(format!("redis-{port}.log"));
    let spawned = Spawned::start(&name, &mut command, log, cpus)?;
    Ok((spawned, port))
}

/// Starts `redis-server` on a free loopback port, without persistence; with `cluster`, as a
/// cluster node; waits until it listens. Returns it and its port. A server that exits
/// before listening (another process took the port first) is tried again on another
/// port, up to five times. On `cpus` when given.
pub async fn start_redis(
    redis_server: &Path,
    dir: &Path,
    cluster: bool,
    cpus: Option<&CpuList>,
) -> Result<(Spawned, u16), HarnessError> {
    let mut attempt = 1;
    loop {
        let (mut spawned, port) = spawn_redis(redis_server, dir, cluster, cpus)?;
        match spawned.wait_listening(&format!("127.0.0.1:{port}")).await {
            Ok(()) => return Ok((spawned, port)),
            Err(_) if attempt < 5 && spawned.exited().is_some() => attempt += 1,
            Err(error) => return Err(error),
        }
    }
}

/// Joins cluster nodes into one cluster of masters (`redis-cli --cluster create`) and waits
/// until it reports `cluster_state:ok`.
pub async fn create_cluster(redis_cli: &Path, ports: &[u16]) -> Result<(), HarnessError> {
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = Command::new(redis_cli);
    create.arg("--cluster").arg("create").args(&nodes).args([
        "--cluster-replicas",
        "0",
        "--cluster-yes",
    ]);
    let output = blocking_output(create, "redis-cli --cluster create").await?;
    if !output.status.success() {
        return Err(HarnessError::Process(format!(
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        )));
    }
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let mut info = Command::new(redis_cli);
        info.args(["-p", &ports[0].to_string(), "cluster", "info"]);
        let output = blocking_output(info, "redis-cli cluster info").await?;
        if String::from_utf8_lossy(&output.stdout).contains("cluster_state:ok") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Process(format!(
                "the Redis cluster on {} did not reach cluster_state:ok within {} s",
                nodes.join(","),
                READY_WITHIN.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn blocking_output(
    mut command: Command,
    what: &'static str,
) -> Result<std::process::Output, HarnessError> {
    tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| HarnessError::Process(format!("{what}: {e}")))?
        .map_err(|e| HarnessError::io(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_support_is_read_from_the_flags_rls_serve_documents() {
        let memory_only = "      --backend <BACKEND>\n          - memory: In-process buckets\n";
        assert_eq!(RlsFeatures::from_help(memory_only), RlsFeatures::default());
        let redis =
            "--backend <BACKEND>\n - redis: shared\n--redis-url <URL>\n--redis-cluster <NODES>\n";
        assert_eq!(
            RlsFeatures::from_help(redis),
            RlsFeatures {
                redis: true,
                redis_cluster: true
            }
        );
    }

    #[test]
    fn backends_become_the_rls_serve_flags_of_the_redis_issue() {
        let cluster = Backend::RedisCluster {
            nodes: vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()],
        };
        assert_eq!(
            cluster.flags(),
            [
                "--backend",
                "redis",
                "--redis-cluster",
                "127.0.0.1:7000,127.0.0.1:7001"
            ]
        );
        assert_eq!(Backend::Memory.flags(), ["--backend", "memory"]);
    }

    #[test]
    fn an_explicit_rls_binary_that_does_not_exist_is_refused() {
        let error = find_rls(Some(Path::new("/nonexistent/rls"))).unwrap_err();
        assert!(error.to_string().contains("no such file"), "{error}");
    }
}
