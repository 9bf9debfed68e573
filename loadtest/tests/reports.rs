//! What every report of `loadtest run` carries: the date, command line, targets, quota and
//! commit (JSON, HTML, SVG and text alike); a `--report` path that cannot be written,
//! refused before any load; and a ratio on every row of the `--baseline` table.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{RlsUnderTest, TWENTY_AN_HOUR, loadtest, output};
use loadtest::report::render_text;
use loadtest::run::measure;
use loadtest::spec::PhaseSpec;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `loadtest run` against `target` for a short phase, with `extra` arguments.
fn run_command(target: &str, extra: &[&str]) -> Command {
    let mut command = loadtest();
    command
        .args(["run", "--target", target])
        .args(["--domain", "edge", "--descriptor", "path=/x"])
        .args(["--concurrency", "2", "--connections", "1"])
        .args(["--duration", "300ms", "--warmup", "0s", "--quiet"])
        .args(extra);
    command
}

// Reproduces reports that said nothing of when, how, against what and at which commit they
// were measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_carries_the_date_command_targets_quota_and_commit() {
    let rls = RlsUnderTest::start(TWENTY_AN_HOUR).await;
    let target = rls.grpc.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let quota = dir.path().join("quota.yaml");
    std::fs::write(&quota, TWENTY_AN_HOUR).expect("quota written");
    let quota = quota.display().to_string();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_owned(), |o| text(&o.stdout).trim().to_owned());

    for (format, json) in [("html", true), ("svg", false)] {
        let report = dir.path().join(format!("report.{format}"));
        let report = report.display().to_string();
        let mut extra = vec!["--quota", &quota, "--report", &report];
        if json {
            extra.push("--json");
        }
        let out = output(run_command(&target, &extra)).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let written = std::fs::read_to_string(&report).expect("report written");
        let shown = if json {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            let provenance = &json["provenance"];
            assert_eq!(provenance["targets"], serde_json::json!([target]));
            assert_eq!(provenance["quota"], quota.as_str());
            assert_eq!(provenance["commit"], commit.as_str());
            let command = provenance["command"].as_str().expect("command");
            assert!(command.starts_with("loadtest run --target "), "{command}");
            assert!(command.contains(&report), "{command}");
            let date = provenance["date"].as_str().expect("date");
            assert!(date.len() == 23 && date.ends_with(" UTC"), "{date}");
            date.to_owned()
        } else {
            // The text output starts with the same lines.
            let stdout = text(&out.stdout);
            assert!(stdout.starts_with("measured on "), "{stdout}");
            assert!(stdout.contains(&format!("targets: {target}; quota: {quota}")));
            stdout[12..35].to_owned()
        };
        // The report file says it too (SVG text and HTML escape nothing here).
        for needle in [
            format!("measured on {shown}, commit {commit}"),
            "command: loadtest run --target ".to_owned(),
            format!("targets: {target}; quota: {quota}"),
        ] {
            assert!(written.contains(&needle), "{format} lacks {needle:?}");
        }
    }
}

// Reproduces `--report` into a missing folder failing only after the whole run.
#[test]
fn a_report_path_that_cannot_be_written_is_refused_before_the_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("no-such-folder").join("report.html");
    // Nobody listens there: a run would fail to connect, so the report is checked first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let out = run_command(
        &format!("127.0.0.1:{port}"),
        &["--report", &report.display().to_string()],
    )
    .output()
    .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot write the report {}", report.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot connect"), "{stderr}");

    // A run that fails leaves no report file it created.
    let report = dir.path().join("report.html");
    let out = run_command(
        &format!("127.0.0.1:{port}"),
        &["--report", &report.display().to_string()],
    )
    .output()
    .expect("runs");
    assert!(text(&out.stderr).contains("cannot connect"));
    assert!(!report.exists());
}

// Reproduces a `--baseline` table whose p90, max, answers and code rows had no ratio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_table_has_a_ratio_on_every_row() {
    let rls = RlsUnderTest::start(TWENTY_AN_HOUR).await;
    let spec = PhaseSpec {
        domain: "edge".into(),
        descriptors: vec!["path=/x".into()],
        concurrency: 2,
        connections: 1,
        duration: Duration::from_millis(400),
        warmup: Duration::ZERO,
        ..PhaseSpec::default()
    };
    let measured = measure(&[rls.grpc.to_string()], &spec, None, true, false)
        .await
        .expect("runs");
    let printed = render_text(&measured, None);
    let table: Vec<Vec<&str>> = printed
        .lines()
        .skip_while(|line| !line.contains("ratio"))
        .skip(1)
        .map(|line| {
            line.trim_start()
                .split("   ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect()
        })
        .collect();
    let mut labels: Vec<&str> = table.iter().map(|row| row[0]).collect();
    // Codes come in the run's order, then those only the baseline answered with.
    labels[7..9].sort_unstable();
    assert_eq!(
        labels,
        [
            "decisions/s",
            "latency p50",
            "latency p90",
            "latency p99",
            "latency p99.9",
            "latency max",
            "answers",
            "OK",
            "OVER_LIMIT",
            "warm-up answers (not counted)"
        ],
        "{printed}"
    );
    for row in &table {
        assert_eq!(row.len(), 4, "{row:?} in\n{printed}");
        let ratio = row[3];
        assert!(ratio == "-" || ratio.parse::<f64>().is_ok(), "{row:?}");
    }
    // The baseline answers OK to everything: no OVER_LIMIT, so no ratio to it.
    let over_limit = table.iter().find(|row| row[0] == "OVER_LIMIT").unwrap();
    assert_eq!((over_limit[2], over_limit[3]), ("0", "-"));
    let ratios = measured.ratio_to_baseline.expect("ratios");
    assert!(ratios.p90.is_some() && ratios.max.is_some());
}
