//! The `rls` binary as a child process, for tests that run it as users do.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running `rls serve`, killed when dropped.
pub struct RlsProcess {
    pub grpc: u16,
    pub http: u16,
    pub child: Child,
    /// Every line it has logged so far.
    log: Arc<Mutex<Vec<String>>>,
}

/// The `rls` binary.
pub fn rls() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rls"))
}

impl RlsProcess {
    /// Runs `rls serve` on loopback ports of its own choosing (port 0) with `args`, and
    /// returns once its log has shown every line in `wait_for` (e.g. "serving", and
    /// "connected" for Redis); the ports are read from its "serving" line. Reading the log
    /// blocks until then: no polling, no sleeping. (Ports picked by the test and handed
    /// over could be taken by another process in between.)
    pub fn start(args: &[&str], wait_for: &[&str]) -> RlsProcess {
        RlsProcess::start_on("127.0.0.1:0", args, wait_for)
    }

    /// [`RlsProcess::start`] with gRPC on `grpc_addr`: for a test that stops rls and
    /// starts it again where its clients expect it.
    pub fn start_on(grpc_addr: &str, args: &[&str], wait_for: &[&str]) -> RlsProcess {
        let mut child = rls()
            .arg("serve")
            .args(["--grpc-addr", grpc_addr])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(args)
            .env("RLS_LOG_FORMAT", "text")
            .env("RLS_LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rls serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut waiting: Vec<&str> = wait_for.to_vec();
        let (mut grpc, mut http) = (None, None);
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = |line: String| log.lock().expect("log").push(line);
        while !waiting.is_empty() || grpc.is_none() || http.is_none() {
            match lines.next() {
                Some(Ok(line)) => {
                    waiting.retain(|w| !line.contains(w));
                    grpc = grpc.or_else(|| port_of(&line, "grpc_addr="));
                    http = http.or_else(|| port_of(&line, "http_addr="));
                    keep(line);
                }
                other => panic!("rls serve ended while waiting for {waiting:?}: {other:?}"),
            }
        }
        let rest = log.clone();
        std::thread::spawn(move || {
            lines
                .map_while(Result::ok)
                .for_each(|line| rest.lock().expect("log").push(line))
        });
        RlsProcess {
            grpc: grpc.unwrap_or_default(),
            http: http.unwrap_or_default(),
            child,
            log,
        }
    }

    /// The lines logged so far that contain `text`.
    pub fn logged(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().expect("log");
        log.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    /// Its log so far, one line after another.
    pub fn log(&self) -> String {
        let log = self.log.lock().expect("log");
        log.iter().map(|l| format!("{l}\n")).collect()
    }

    /// `http://127.0.0.1:GRPC`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }
}

impl Drop for RlsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a log field `name` (`grpc_addr=127.0.0.1:PORT`) of `line`.
fn port_of(line: &str, name: &str) -> Option<u16> {
    let field = line.split_whitespace().find_map(|w| w.strip_prefix(name))?;
    field.rsplit(':').next()?.parse().ok()
}
