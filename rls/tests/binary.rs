//! The `rls` binary as a user runs it: `serve` on the example quota files, `query` against
//! it, `check`, and a clean exit on SIGTERM. Real processes over real sockets.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::process::{RlsProcess, rls};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/examples")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn serve_answers_queries_on_the_examples_and_exits_cleanly_on_sigterm() {
    let config = examples();
    let config = config.to_str().expect("utf-8 path");
    let mut server = RlsProcess::start(&["--config", config], &["serving"]);
    let addr = format!("127.0.0.1:{}", server.grpc);

    let query = |args: &[&str]| {
        rls()
            .args(["query", "--addr", &addr])
            .args(args)
            .output()
            .expect("rls query runs")
    };
    let first = query(&[
        "--domain",
        "edge",
        "--descriptor",
        "remote_address=203.0.113.7",
    ]);
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "query failed: {stderr}");
    assert!(stdout.starts_with("OK\n"), "{stdout}");
    assert!(
        stdout.contains("[0] remote_address=203.0.113.7: OK  limit 50/second (per_ip)"),
        "{stdout}"
    );

    // The server keeps state between queries. On the login rule (10 a minute, a token
    // every 6 s), not the 50-a-second one: the server runs on the real clock, and a loaded
    // machine can take 20 ms between two queries.
    let login = |n: u32| {
        let json = query(&[
            "--domain",
            "edge",
            "--descriptor",
            "path=/api/login,remote_address=203.0.113.7",
            "--json",
        ]);
        let answer: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON answer");
        assert_eq!(answer["overallCode"], "OK", "login {n}");
        answer["statuses"][0]["limitRemaining"].clone()
    };
    assert_eq!(login(1), 9);
    assert_eq!(login(2), 8);

    let refused = query(&["--domain", "", "--descriptor", "a=b"]);
    let (_, stderr) = text(&refused);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("rate limit domain must not be empty"),
        "{stderr}"
    );

    let pid = server.child.id().to_string();
    // The shell's own `kill`: a minimal system may have no kill binary.
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = server.child.wait().expect("server exits");
    assert!(
        status.success(),
        "rls serve exited with {status} on SIGTERM"
    );
}

#[test]
fn check_summarises_the_examples() {
    let output = rls()
        .arg("check")
        .arg("--config")
        .arg(examples())
        .output()
        .expect("runs");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("domain edge"), "{stdout}");
}

#[test]
fn check_and_serve_refuse_an_invalid_file_with_the_same_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n")
        .expect("write");
    let check = rls()
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("runs");
    let serve = rls()
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&file)
        .output()
        .expect("runs");
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(serve.status.code(), Some(1));
    let (_, check_err) = text(&check);
    let (_, serve_err) = text(&serve);
    assert!(check_err.contains("bad.yaml:4:"), "{check_err}");
    assert!(check_err.contains("fortnight"), "{check_err}");
    assert_eq!(check_err.lines().last(), serve_err.lines().last());
}

// Reproduces "tcp connect error: tcp connect error" and "cannot serve on ADDR: Address
// already in use (os error 98): Address already in use (os error 98)": errors whose text
// repeats their cause's were printed with every cause again.
#[test]
fn errors_say_each_cause_once() {
    // A port nobody listens on: found by binding one and letting it go.
    let closed = common::redis::free_port();
    let query = rls()
        .args(["query", "--addr", &format!("127.0.0.1:{closed}")])
        .args(["--domain", "edge", "--descriptor", "a=b"])
        .output()
        .expect("rls query runs");
    let (_, stderr) = text(&query);
    assert_eq!(query.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("cannot connect to http://127.0.0.1:{closed}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("tcp connect error").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let serve = rls()
        .args(["serve", "--config"])
        .arg(examples())
        .args(["--grpc-addr", &addr, "--http-addr", "127.0.0.1:0"])
        .output()
        .expect("rls serve runs");
    let (_, stderr) = text(&serve);
    assert_eq!(serve.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("cannot serve on {addr}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
}

/// Waits (polling a real process, bounded) for `child` to exit; kills it and fails if it
/// does not.
fn exits(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    for _ in 0..600 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("{what}: still running");
}

// Reproduces a Redis URL that does not parse being accepted at start and retried for
// ever ("cannot connect ... Redis URL did not parse" every few seconds).
#[test]
fn serve_refuses_a_redis_url_that_does_not_parse() {
    let mut serve = rls()
        .args(["serve", "--config"])
        .arg(examples())
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args([
            "--backend",
            "redis",
            "--redis-url",
            "redis://:s3cret@127.0.0.1:99999",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rls serve runs");
    let status = exits(&mut serve, "rls serve with a bad Redis URL");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("invalid Redis URL redis://***@127.0.0.1:99999: "),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

// Reproduces --redis-url without --backend redis being ignored: the replica kept its
// buckets in memory, enforcing the whole quota on its own.
#[test]
fn a_redis_url_alone_keeps_the_buckets_in_redis() {
    let redis = common::redis::RedisServer::start();
    let config = examples();
    let config = config.to_str().expect("utf-8 path");
    // A deadline a loaded machine keeps: an answer of the failure mode would leave no key.
    let server = RlsProcess::start(
        &[
            "--config",
            config,
            "--redis-url",
            &redis.url(),
            "--backend-timeout",
            "10s",
        ],
        &["serving"],
    );
    // Readiness waits for the connection; polled, bounded.
    let ready = (0..200).any(|_| {
        let (code, _) = tokio_http(server.http, "/readyz");
        code == 200 || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            false
        }
    });
    assert!(ready, "rls never turned ready");
    let query = rls()
        .args(["query", "--addr", &format!("127.0.0.1:{}", server.grpc)])
        .args([
            "--domain",
            "edge",
            "--descriptor",
            "remote_address=203.0.113.7",
        ])
        .output()
        .expect("rls query runs");
    assert!(query.status.success(), "{}", text(&query).1);
    assert_ne!(redis.cli(&["DBSIZE"]).trim(), "0", "no bucket in Redis");

    let memory = rls()
        .args(["serve", "--config", config, "--backend", "memory"])
        .args(["--redis-url", &redis.url()])
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .output()
        .expect("rls serve runs");
    assert_eq!(memory.status.code(), Some(1));
    assert!(
        text(&memory).1.contains("--backend memory does not use"),
        "{}",
        text(&memory).1
    );
}

/// GET `path` on the HTTP port `port` of this machine: (status, body).
fn tokio_http(port: u16, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    runtime.block_on(common::http(addr, "GET", path, ""))
}

// Reproduces the README's "other files in the directory, logs say, are ignored" with no
// such line ever logged.
#[test]
fn serve_logs_the_files_it_ignores_in_the_quota_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let quota = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: minute, requests_per_unit: 1}\n";
    std::fs::write(dir.path().join("edge.yaml"), quota).expect("write");
    std::fs::write(dir.path().join("README.md"), "notes").expect("write");
    std::fs::write(dir.path().join(".edge.yaml.swp"), "").expect("write");
    let config = dir.path().to_str().expect("utf-8 path");
    let server = RlsProcess::start(&["--config", config], &["serving"]);
    let ignored = server.logged("ignored in the quota directory");
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert!(ignored[0].contains("\"README.md\""), "{ignored:?}");
    assert!(
        !ignored[0].contains("swp"),
        "hidden files are not listed: {ignored:?}"
    );
    // A reload says it again, with what is there now.
    std::fs::write(dir.path().join("edge.yml.bak"), quota).expect("write");
    std::fs::write(dir.path().join("edge.yaml"), quota.replace("1}", "2}")).expect("write");
    let reloaded = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        !server.logged("quota files reloaded").is_empty()
            && server.logged("ignored in the quota directory").len() == 2
    });
    assert!(reloaded, "no reload seen");
    let again = server.logged("ignored in the quota directory");
    assert!(again[1].contains("\"edge.yml.bak\""), "{again:?}");
}

// Reproduces quota-file depth and size bounds that were no settings, the depth below the
// request's own --max-entries: `rls check` and `rls serve` take them alike, serve reads
// files as deep as its requests reach and refuses a depth below that.
#[test]
fn check_and_serve_take_the_quota_file_bounds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("deep.yaml");
    let deep = "domain: edge\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        descriptors:\n          - key: c\n            rate_limit: {unit: minute, requests_per_unit: 1}\n";
    std::fs::write(&file, deep).expect("write");
    let run = |command: &str, flags: &[&str]| {
        let output = rls()
            .arg(command)
            .arg("--config")
            .arg(&file)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(flags)
            .output()
            .expect("runs");
        (output.status.code(), text(&output).1)
    };
    let check = |flags: &[&str]| {
        let output = rls()
            .arg("check")
            .arg("--config")
            .arg(&file)
            .args(flags)
            .output()
            .expect("runs");
        (output.status.code(), text(&output).1)
    };
    assert_eq!(check(&[]).0, Some(0));
    let (code, stderr) = check(&["--max-quota-depth", "2"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("descriptors nested more than 2 levels deep"),
        "{stderr}"
    );
    let (code, stderr) = check(&["--max-quota-nodes", "10"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("more than 10 YAML nodes"), "{stderr}");
    let (code, stderr) = check(&["--max-quota-depth", "0"]);
    assert_eq!(code, Some(2), "{stderr}");

    let (code, stderr) = run("serve", &["--max-quota-depth", "31"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--max-quota-depth 31 is less than --max-entries 32"),
        "{stderr}"
    );
    let (code, stderr) = run("serve", &["--max-entries", "2"]);
    assert_eq!(code, Some(1), "files are read as deep as requests reach");
    assert!(
        stderr.contains("descriptors nested more than 2 levels deep"),
        "{stderr}"
    );
}

// Reproduces a refused reload logged without its cause.
#[test]
fn a_refused_reload_is_logged_with_each_cause_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.yaml");
    let quota = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: minute, requests_per_unit: 1}\n";
    std::fs::write(&file, quota).expect("write");
    let config = file.to_str().expect("utf-8 path");
    let server = RlsProcess::start(&["--config", config], &["serving"]);
    std::fs::remove_file(&file).expect("remove");
    let os = std::fs::read(&file).expect_err("removed").to_string();
    let refused = (0..200).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        server.logged("quota files refused").pop()
    });
    let line = refused.expect("no refusal logged");
    let said = format!("{config}: cannot read: {os}");
    assert!(line.contains(&said), "{line}");
    assert_eq!(line.matches(&os).count(), 1, "{line}");
}
