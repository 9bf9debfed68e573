//! Real processes for failover tests: Redis servers and `redis-sentinel`s on given
//! addresses (inside a network namespace when asked), a network namespace joined to this
//! one by a veth pair so that a server can vanish from the network, and reading a token
//! bucket's stored arrival time straight from a server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

use super::redis::free_port;

/// A Redis process (server or sentinel), killed when dropped.
pub struct Node {
    pub host: String,
    pub port: u16,
    /// The network namespace it runs in, if any.
    pub netns: Option<String>,
    child: Child,
    _dir: TempDir,
}

fn missing(program: &str) -> ! {
    panic!(
        "{program} not found: the failover tests need it. Install it with \
         `apt-get install redis-server redis-sentinel redis-tools` (Debian), or run \
         `bash scripts/test.sh`, which installs them when missing"
    )
}

impl Node {
    /// Starts `program` (`redis-server` or `redis-sentinel`) with the config file `config`
    /// (its port and bind lines are added here) on `host`, in `netns` when given, and
    /// returns once its log shows `ready`. Another free port is tried if it cannot bind.
    pub fn start(
        program: &str,
        host: &str,
        netns: Option<&str>,
        config: &str,
        ready: &str,
    ) -> Node {
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Node::launch(program, host, free_port(), netns, config, ready) {
                Ok(node) => return node,
                Err(error) => failures.push(error),
            }
        }
        panic!("{program} did not start: {failures:?}")
    }

    fn launch(
        program: &str,
        host: &str,
        port: u16,
        netns: Option<&str>,
        config: &str,
        ready: &str,
    ) -> Result<Node, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("node.conf");
        let text = format!(
            "port {port}\nbind {host}\nprotected-mode no\nsave \"\"\nappendonly no\ndir {}\n{config}\n",
            dir.path().display()
        );
        std::fs::write(&file, text).expect("write config");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        let mut child = command
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|_| missing(program));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains(ready) => break,
                Some(Ok(_)) => continue,
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{program} on {host}:{port} ended: {other:?}"));
                }
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Node {
            host: host.to_string(),
            port,
            netns: netns.map(str::to_string),
            child,
            _dir: dir,
        })
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `redis://host:port`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// Runs `redis-cli` against it (from inside its namespace) and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "redis-cli"]);
                c
            }
            None => Command::new("redis-cli"),
        };
        let output = command
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|_| missing("redis-cli"));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `redis-cli` against it with `commands` on its standard input, one a line.
    pub fn cli_stdin(&self, commands: &str) -> String {
        use std::io::Write;
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "redis-cli"]);
                c
            }
            None => Command::new("redis-cli"),
        };
        let mut child = command
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|_| missing("redis-cli"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(commands.as_bytes())
            .expect("write commands");
        drop(stdin);
        let output = child.wait_with_output().expect("redis-cli ends");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Kills it (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls `INFO replication` until it has `field` (bounded: each poll is a process run).
    pub fn wait_for_info(&self, field: &str) {
        let seen = (0..3000).any(|_| self.cli(&["info", "replication"]).contains(field));
        assert!(seen, "{} never showed {field}", self.addr());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary, one replica of it and three sentinels (quorum 2) watching it as `mymaster`.
pub struct SentinelSet {
    pub primary: Node,
    pub replica: Node,
    pub sentinels: Vec<Node>,
}

/// How soon sentinels call a silent primary down: short, so tests take seconds.
pub const DOWN_AFTER_MS: u64 = 500;

impl SentinelSet {
    /// Starts the primary on `primary_host` (in `netns` when given), the replica and the
    /// sentinels on `host`, and returns once the replica is in sync and every sentinel
    /// watches the primary and knows the replica.
    pub fn start(primary_host: &str, netns: Option<&str>, host: &str) -> SentinelSet {
        let primary = Node::start(
            "redis-server",
            primary_host,
            netns,
            "",
            "Ready to accept connections",
        );
        let replica = Node::start(
            "redis-server",
            host,
            None,
            &format!("replicaof {} {}", primary.host, primary.port),
            "Ready to accept connections",
        );
        replica.wait_for_info("master_link_status:up");
        let monitor = format!(
            "sentinel monitor mymaster {} {} 2\n\
             sentinel down-after-milliseconds mymaster {DOWN_AFTER_MS}\n\
             sentinel failover-timeout mymaster 2000\n\
             sentinel parallel-syncs mymaster 1",
            primary.host, primary.port
        );
        let sentinels: Vec<Node> = (0..3)
            .map(|_| Node::start("redis-sentinel", host, None, &monitor, "+monitor master"))
            .collect();
        for sentinel in &sentinels {
            let knows = (0..3000).any(|_| {
                let replicas = sentinel.cli(&["sentinel", "replicas", "mymaster"]);
                replicas.contains(&replica.port.to_string())
                    && sentinel
                        .cli(&["sentinel", "master", "mymaster"])
                        .contains("num-other-sentinels\n2")
            });
            assert!(
                knows,
                "sentinel {} never saw the whole set",
                sentinel.addr()
            );
        }
        SentinelSet {
            primary,
            replica,
            sentinels,
        }
    }

    /// The store's view of it: these sentinels, `mymaster`.
    pub fn sentinel(&self) -> rls::store::redis::Sentinel {
        rls::store::redis::Sentinel {
            nodes: self.sentinels.iter().map(Node::url).collect(),
            master: "mymaster".into(),
            auth: None,
        }
    }
}

/// Whether this machine lets a test make network namespaces: `Err` with the reason when
/// it does not (not root). As root, a failure to make one is a failure, not a skip.
pub fn netns_capability() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err("not root: making network namespaces (ip netns) needs CAP_SYS_ADMIN".into());
    }
    Ok(())
}

/// A network namespace joined to this one by a veth pair: `inner` is the address inside
/// it, `outer` the one on this side. Deleted (with its processes' network) when dropped.
pub struct NetNs {
    pub name: String,
    pub inner: String,
    pub outer: String,
    veth: String,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl NetNs {
    /// Makes a namespace with a /30 of its own in 10.213.0.0/16 (unique per process and
    /// namespace), its loopback up.
    pub fn new() -> NetNs {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = (std::process::id() % 4000) * 16 + NEXT.fetch_add(1, Ordering::Relaxed) % 16;
        let (third, fourth) = ((n / 64) % 256, (n % 64) * 4);
        let name = format!("rlst{n}");
        let veth = format!("rlsv{n}");
        let peer = format!("rlsp{n}");
        let outer = format!("10.213.{third}.{}", fourth + 1);
        let inner = format!("10.213.{third}.{}", fourth + 2);
        // A namespace left by a killed earlier run of the same name goes first.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{outer}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{inner}/30"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        NetNs {
            name,
            inner,
            outer,
            veth,
        }
    }

    /// Cuts the namespace off: its side of the link goes down, so packets to it vanish
    /// (no reset, no refusal) while its processes run on.
    pub fn cut(&self) {
        let peer = self.veth.replace("rlsv", "rlsp");
        ip(&[
            "netns", "exec", &self.name, "ip", "link", "set", &peer, "down",
        ]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The arrival time (GCRA tat, Unix ns) stored under the one token-bucket key of
/// `prefix` on `node` (read by a script there, so from inside its namespace too), or
/// `None` when it has none: a full bucket, or the node cannot be asked.
pub fn stored_tat(node: &Node, prefix: &str) -> Option<u64> {
    // `>dI4`: whole seconds as a big-endian double, then nanoseconds.
    let script = "local k = redis.call('KEYS', ARGV[1])[1] \
        if not k then return '' end \
        local v = redis.call('GET', k) \
        if not v then return '' end \
        local s, n = struct.unpack('>dI4', v) \
        return string.format('%d %d', s, n)";
    // READONLY first: a cluster replica answers for its primary's slots only then (one
    // connection, so the lines go in on stdin; elsewhere it is an error line, skipped).
    let eval = format!("EVAL_RO \"{script}\" 0 \"{prefix}*\"");
    let out = node.cli_stdin(&format!("READONLY\n{eval}\n"));
    let mut parts = out.lines().last().unwrap_or_default().split_whitespace();
    let seconds: u64 = parts.next()?.parse().ok()?;
    let nanos: u64 = parts.next()?.parse().ok()?;
    Some(seconds * 1_000_000_000 + nanos)
}

/// A Redis Cluster of three primaries with one replica each, on `host` (the node at
/// `victim` index in `netns` instead, when given), failing over after half a second.
pub struct ReplicatedCluster {
    pub nodes: Vec<Node>,
}

impl ReplicatedCluster {
    /// Starts six nodes, joins them (`--cluster-replicas 1`), and returns once the cluster
    /// is ok and every replica is in sync.
    pub fn start(host: &str, netns: Option<(&str, &str)>) -> ReplicatedCluster {
        let config = "cluster-enabled yes\ncluster-config-file nodes.conf\n\
                      cluster-node-timeout 500\ncluster-replica-validity-factor 0";
        let nodes: Vec<Node> = (0..6)
            .map(|i| match netns {
                Some((ns, inner)) if i == 0 => {
                    Node::start("redis-server", inner, Some(ns), config, "Ready to accept")
                }
                _ => Node::start("redis-server", host, None, config, "Ready to accept"),
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(Node::addr).collect();
        super::redis::create_cluster(&addrs, 1);
        let cluster = ReplicatedCluster { nodes };
        for node in &cluster.nodes {
            let ok = (0..3000).any(|_| node.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            assert!(ok, "node {} never reported cluster_state:ok", node.addr());
            if node.cli(&["role"]).starts_with("slave") {
                node.wait_for_info("master_link_status:up");
            }
        }
        cluster
    }

    /// The nodes' `redis://` URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Indices of the primary and the replica holding a key of `prefix`.
    pub fn holders(&self, prefix: &str) -> (usize, usize) {
        let holding: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| stored_tat(&self.nodes[i], prefix).is_some())
            .collect();
        let role = |i: usize| self.nodes[i].cli(&["role"]);
        let primary = holding
            .iter()
            .copied()
            .find(|&i| role(i).starts_with("master"));
        let replica = holding
            .iter()
            .copied()
            .find(|&i| role(i).starts_with("slave"));
        match (primary, replica) {
            (Some(p), Some(r)) => (p, r),
            _ => panic!("no primary and replica hold the key: {holding:?}"),
        }
    }
}

impl ReplicatedCluster {
    /// Makes node `index` a primary (`CLUSTER FAILOVER` when it is a replica) and returns
    /// the slot ranges it serves.
    pub fn primary_slots(&self, index: usize) -> Vec<(u16, u16)> {
        let node = &self.nodes[index];
        if node.cli(&["role"]).starts_with("slave") {
            node.cli(&["cluster", "failover"]);
            let promoted = (0..3000).any(|_| node.cli(&["role"]).starts_with("master"));
            assert!(promoted, "{} never became a primary", node.addr());
        }
        let nodes = node.cli(&["cluster", "nodes"]);
        let mine = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .expect("own line");
        mine.split_whitespace()
            .skip(8)
            .filter_map(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect()
    }
}

/// The cluster slot of `key` (CRC16/XMODEM of its `{hash tag}`, mod 16384).
pub fn slot(key: &[u8]) -> u16 {
    let tag = match (
        key.iter().position(|&b| b == b'{'),
        key.iter().position(|&b| b == b'}'),
    ) {
        (Some(open), Some(close)) if close > open + 1 => &key[open + 1..close],
        _ => key,
    };
    let mut crc: u16 = 0;
    for &byte in tag {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}
