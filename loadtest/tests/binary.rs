//! The `loadtest` binary as a user runs it, against a real in-process `rls`: `run` with JSON
//! and an HTML report, `baseline` as a process, `compare` of the two, and the errors a user
//! sees first.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use common::{RlsUnderTest, TWENTY_AN_HOUR, loadtest, output};

/// A child this test started, killed (by its pid) and reaped however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_rls_prints_codes_and_accuracy_as_json_and_writes_a_self_contained_report() {
    let rls = RlsUnderTest::start(TWENTY_AN_HOUR).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let quota = dir.path().join("quota.yaml");
    std::fs::write(&quota, TWENTY_AN_HOUR).expect("quota written");
    let report = dir.path().join("report.html");

    let mut command = loadtest();
    command
        .args(["run", "--target", &rls.grpc.to_string()])
        .args(["--domain", "edge", "--descriptor", "path=/Page.Show"])
        .args(["--concurrency", "4", "--connections", "2"])
        .args(["--duration", "1s", "--warmup", "0s", "--json", "--quiet"])
        .arg("--quota")
        .arg(&quota)
        .arg("--report")
        .arg(&report);
    let out = output(command).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let run = &json["phases"][0]["run"];
    let answers = run["answers"].as_u64().expect("answers");
    assert_eq!(
        run["codes"][0],
        serde_json::json!({"code": "OK", "count": 20})
    );
    assert_eq!(run["codes"][1]["code"], "OVER_LIMIT");
    assert_eq!(run["codes"][1]["count"].as_u64(), Some(answers - 20));
    assert!(run["latency"]["p99_us"].as_u64().expect("p99") > 0);
    assert!(run["decisions_per_s"].as_f64().expect("rate") > 0.0);
    let key = &run["accuracy"]["worst"][0];
    assert_eq!(key["key"], "path=/Page.Show");
    assert_eq!(key["allowed"], 20);
    assert_eq!(key["overshoot_pct"], 0.0);
    assert!(json["phases"][0]["baseline"].is_null());

    let html = std::fs::read_to_string(&report).expect("report written");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("OVER_LIMIT"));
    // Self-contained: no script, nothing fetched.
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_alternates_the_baseline_process_and_rls_and_reports_medians() {
    let rls = RlsUnderTest::start(TWENTY_AN_HOUR).await;
    let mut baseline = KillOnDrop(
        loadtest()
            .args(["baseline", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("baseline starts"),
    );
    let first = BufReader::new(baseline.0.stdout.take().expect("stdout"))
        .lines()
        .next()
        .expect("a line")
        .expect("readable");
    // "baseline RLS (always OK) listening on 127.0.0.1:PORT; Ctrl-C stops it"
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_suffix(';').filter(|w| w.starts_with("127.0.0.1:")))
        .expect("address in the first line")
        .to_string();

    let mut command = loadtest();
    command
        .args(["compare", "--a", &addr, "--b", &rls.grpc.to_string()])
        .args(["--domain", "edge", "--descriptor", "path=/x"])
        .args(["--rounds", "2", "--duration", "300ms", "--warmup", "0s"])
        .args([
            "--concurrency",
            "2",
            "--connections",
            "1",
            "--json",
            "--quiet",
        ]);
    let out = output(command).await;
    drop(baseline);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let sides: Vec<&str> = json["rounds"]
        .as_array()
        .expect("rounds")
        .iter()
        .map(|r| r["side"].as_str().expect("side"))
        .collect();
    assert_eq!(sides, ["A", "B", "A", "B"]);
    let decisions = &json["medians"][0];
    assert_eq!(decisions["figure"], "decisions/s");
    assert!(decisions["a"].as_f64().expect("a") > 0.0);
    assert!(decisions["b"].as_f64().expect("b") > 0.0);
    assert!(decisions["a_over_b"].as_f64().expect("ratio") > 0.0);
}

#[test]
fn run_without_a_target_or_against_nothing_says_what_is_wrong() {
    let out = loadtest()
        .args(["run", "--domain", "edge", "--descriptor", "a=b"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--target is required"),
        "{}",
        text(&out.stderr)
    );

    // A port nobody listens on: found by binding one and letting it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let out = loadtest()
        .args(["run", "--target", &format!("127.0.0.1:{port}")])
        .args(["--domain", "edge", "--descriptor", "a=b", "--quiet"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot connect to 127.0.0.1:"), "{stderr}");
    // Regression: hyper wraps the connect error in one of the same text, and the chain
    // read "tcp connect error: tcp connect error: Connection refused".
    assert_eq!(stderr.matches("tcp connect error").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
}

#[test]
fn stack_lists_its_standard_scenarios() {
    let out = loadtest().args(["stack", "--list"]).output().expect("runs");
    assert!(out.status.success());
    let listed = text(&out.stdout);
    for id in [
        "memory-hot",
        "memory-100k",
        "redis-hot",
        "redis-zipf",
        "redis-cluster",
        "replicas-memory",
    ] {
        assert!(listed.contains(id), "{listed}");
    }
}
