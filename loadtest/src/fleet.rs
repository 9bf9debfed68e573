//! [`Fleet`]: the processes one measured side runs on — `rls` replicas and the Redis they
//! share (one server or a three-master cluster) — started on loopback, each on its CPU
//! list, and stopped when dropped. `loadtest stack` starts one per scenario, `loadtest
//! compare` one per side it is asked to start.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::cpu::{Pinning, Processes};
use crate::error::HarnessError;
use crate::processes::{Backend, Spawned, create_cluster, find_on_path, start_redis, start_rls};

/// A folder for quota files and logs, removed when dropped.
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// A new folder under the system's temporary one, named for `what` and this process.
    pub fn new(what: &str) -> Result<WorkDir, HarnessError> {
        let dir = std::env::temp_dir().join(format!("loadtest-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        Ok(WorkDir(dir))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to the file `name` in it and returns its path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf, HarnessError> {
        let path = self.0.join(name);
        std::fs::write(&path, text)
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the replicas of a fleet keep their buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Store {
    /// Each replica in its own memory.
    Memory,
    /// One shared redis-server.
    Redis,
    /// A Redis Cluster of three masters.
    RedisCluster,
}

impl FromStr for Store {
    type Err = String;

    fn from_str(text: &str) -> Result<Store, String> {
        match text {
            "memory" => Ok(Store::Memory),
            "redis" => Ok(Store::Redis),
            "redis-cluster" => Ok(Store::RedisCluster),
            _ => Err(format!(
                "`{text}` is neither host:port nor a store to start (memory, redis, redis-cluster)"
            )),
        }
    }
}

/// What a fleet is started from.
pub struct FleetPlan<'a> {
    /// The `rls` binary.
    pub rls: &'a Path,
    /// The quota file the replicas serve.
    pub quota: &'a Path,
    /// Where logs (and cluster files) go.
    pub dir: &'a Path,
    /// The store.
    pub store: Store,
    /// `rls` replicas.
    pub replicas: usize,
    /// More `rls serve` flags (e.g. `--lease auto`).
    pub extra: &'a [String],
    /// CPU lists.
    pub pinning: &'a Pinning,
}

/// Started processes, stopped (each by its own pid) when dropped.
pub struct Fleet {
    /// The replicas' gRPC addresses.
    pub targets: Vec<String>,
    /// Their pids, by kind, for CPU time.
    pub pids: Processes,
    /// The replicas' logs, for the HTTP addresses they print.
    pub rls_logs: Vec<PathBuf>,
    processes: Vec<Spawned>,
}

impl Fleet {
    /// Starts Redis when the store needs it, then the replicas, and waits until each serves.
    pub async fn start(plan: &FleetPlan<'_>) -> Result<Fleet, HarnessError> {
        let mut fleet = Fleet {
            targets: Vec::new(),
            pids: Processes::default(),
            rls_logs: Vec::new(),
            processes: Vec::new(),
        };
        let backend = fleet.start_store(plan).await?;
        for index in 1..=plan.replicas {
            let cpus = plan.pinning.rls_cpus.as_ref();
            let (replica, addr) = start_rls(
                plan.rls, plan.quota, &backend, plan.dir, index, plan.extra, cpus,
            )
            .await?;
            fleet.pids.rls.push(replica.pid());
            fleet.rls_logs.push(replica.log.clone());
            fleet.processes.push(replica);
            fleet.targets.push(addr);
        }
        Ok(fleet)
    }

    async fn start_store(&mut self, plan: &FleetPlan<'_>) -> Result<Backend, HarnessError> {
        let tool = |name: &str, package: &str| {
            find_on_path(name).ok_or_else(|| {
                HarnessError::Process(format!("{name} not found (Debian package {package})"))
            })
        };
        let cpus = plan.pinning.redis_cpus.as_ref();
        match plan.store {
            Store::Memory => Ok(Backend::Memory),
            Store::Redis => {
                let server = tool("redis-server", "redis-server")?;
                let (redis, port) = start_redis(&server, plan.dir, false, cpus).await?;
                self.keep_redis(redis);
                Ok(Backend::Redis {
                    url: format!("redis://127.0.0.1:{port}"),
                })
            }
            Store::RedisCluster => {
                let server = tool("redis-server", "redis-server")?;
                let cli = tool("redis-cli", "redis-tools")?;
                let mut ports = Vec::new();
                for _ in 0..3 {
                    let (node, port) = start_redis(&server, plan.dir, true, cpus).await?;
                    self.keep_redis(node);
                    ports.push(port);
                }
                create_cluster(&cli, &ports).await?;
                Ok(Backend::RedisCluster {
                    nodes: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
                })
            }
        }
    }

    fn keep_redis(&mut self, redis: Spawned) {
        self.pids.redis.push(redis.pid());
        self.processes.push(redis);
    }

    /// Each replica's HTTP address, as its log's `serving` line gives it.
    pub fn http_addrs(&self) -> Vec<String> {
        self.rls_logs
            .iter()
            .filter_map(|log| {
                let text = std::fs::read_to_string(log).ok()?;
                text.split_whitespace()
                    .find_map(|w| w.strip_prefix("http_addr="))
                    .map(str::to_string)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_to_start_are_named_as_on_the_command_line() {
        assert_eq!("memory".parse(), Ok(Store::Memory));
        assert_eq!("redis-cluster".parse(), Ok(Store::RedisCluster));
        assert!("127.0.0.1:8081".parse::<Store>().is_err());
    }
}
