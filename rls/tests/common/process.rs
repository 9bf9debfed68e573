//! The `rls` binary as a child process, for tests that run it as users do.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::redis::free_port;

/// A running `rls serve`, killed when dropped.
pub struct RlsProcess {
    pub grpc: u16,
    pub http: u16,
    pub child: Child,
}

/// The `rls` binary.
pub fn rls() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rls"))
}

impl RlsProcess {
    /// Runs `rls serve` on free loopback ports with `args`, and returns once its log has
    /// shown every line in `wait_for` (e.g. "serving", and "connected" for Redis).
    /// Reading the log blocks until then: no polling, no sleeping.
    pub fn start(args: &[&str], wait_for: &[&str]) -> RlsProcess {
        let (grpc, http) = (free_port(), free_port());
        let mut child = rls()
            .arg("serve")
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
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
        while !waiting.is_empty() {
            match lines.next() {
                Some(Ok(line)) => waiting.retain(|w| !line.contains(w)),
                other => panic!("rls serve ended while waiting for {waiting:?}: {other:?}"),
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        RlsProcess { grpc, http, child }
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
