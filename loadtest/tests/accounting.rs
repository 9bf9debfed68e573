//! The harness's own accounting, against servers whose answers are known: every answer of
//! the no-op baseline is counted once, the warm-up is excluded exactly, overshoot is
//! computed from what a real `rls` allowed, and open-loop latency includes a server's stall.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RlsUnderTest, StallRls, TWENTY_AN_HOUR};
use loadtest::baseline::BaselineServer;
use loadtest::generator::{Plan, connect, drive};
use loadtest::progress::Live;
use loadtest::run::measure;
use loadtest::spec::PhaseSpec;
use loadtest::workload::Workload;

fn phase(descriptor: &str) -> PhaseSpec {
    PhaseSpec {
        domain: "edge".into(),
        descriptors: vec![descriptor.into()],
        concurrency: 8,
        connections: 2,
        duration: Duration::from_millis(600),
        warmup: Duration::from_millis(200),
        ..PhaseSpec::default()
    }
}

fn quotas(yaml: &str) -> config::QuotaSet {
    config::QuotaSet::from_sources([("q.yaml", yaml)], &config::LoadOptions::default())
        .expect("valid quota")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_baseline_server_is_counted_once() {
    let server = BaselineServer::start().await.expect("baseline starts");
    let spec = PhaseSpec {
        keys: 1000,
        descriptors: vec!["user={key}".into(), "path=/a".into()],
        ..phase("unused=x")
    };
    let measured = measure(&[server.addr.to_string()], &spec, None, false, false)
        .await
        .expect("runs");
    let run = &measured.run;
    // The closed loop waits for every request it sent, so nothing is in flight at the end.
    assert_eq!(run.answers + run.warmup_answers, server.answered());
    assert!(run.answers > 0 && run.warmup_answers > 0);
    assert_eq!(run.count("OK"), run.answers);
    assert_eq!(run.decisions, run.answers);
    assert_eq!(run.errors_per_s, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_sends_exactly_its_schedule_and_excludes_the_warm_up_by_scheduled_start() {
    let server = BaselineServer::start().await.expect("baseline starts");
    // 200 a second for 0.25 s of warm-up then 1 s: requests 0..50 are warm-up, 50..250 count.
    let spec = PhaseSpec {
        rate: Some(200.0),
        warmup: Duration::from_millis(250),
        duration: Duration::from_secs(1),
        ..phase("path=/a")
    };
    let measured = measure(&[server.addr.to_string()], &spec, None, false, false)
        .await
        .expect("runs");
    assert_eq!(measured.run.warmup_answers, 50);
    assert_eq!(measured.run.answers, 200);
    assert_eq!(server.answered(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rls_with_a_frozen_clock_allows_exactly_its_quota_and_no_overshoot() {
    let rls = RlsUnderTest::start(TWENTY_AN_HOUR).await;
    let spec = PhaseSpec {
        warmup: Duration::ZERO,
        ..phase("path=/Page.Show")
    };
    let quotas = quotas(TWENTY_AN_HOUR);
    let measured = measure(&[rls.grpc.to_string()], &spec, Some(&quotas), false, false)
        .await
        .expect("runs");
    let run = &measured.run;
    assert_eq!(run.count("OK"), 20);
    assert_eq!(run.count("OVER_LIMIT"), run.answers - 20);
    let accuracy = run.accuracy.as_ref().expect("accuracy with a quota");
    let key = &accuracy.worst[0];
    assert_eq!(key.key, "path=/Page.Show");
    assert_eq!(key.allowed, 20);
    let permitted = 20.0 + 20.0 * accuracy.elapsed_s / 3600.0;
    assert!((key.permitted.expect("bounded") - permitted).abs() < 1e-9);
    assert_eq!(key.overshoot_pct, Some(0.0));
    assert_eq!(accuracy.exceeded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_with_their_own_buckets_show_their_overshoot() {
    let replicas = [
        RlsUnderTest::start(TWENTY_AN_HOUR).await,
        RlsUnderTest::start(TWENTY_AN_HOUR).await,
        RlsUnderTest::start(TWENTY_AN_HOUR).await,
    ];
    let targets: Vec<String> = replicas.iter().map(|r| r.grpc.to_string()).collect();
    let spec = PhaseSpec {
        warmup: Duration::ZERO,
        connections: 3,
        concurrency: 6,
        ..phase("path=/Page.Show")
    };
    let quotas = quotas(TWENTY_AN_HOUR);
    let measured = measure(&targets, &spec, Some(&quotas), false, false)
        .await
        .expect("runs");
    let accuracy = measured
        .run
        .accuracy
        .as_ref()
        .expect("accuracy with a quota");
    // Each replica allows its own 20: 60 in all, where the quota permits 20 and a bit.
    assert_eq!(accuracy.allowed, 60);
    let permitted = 20.0 + 20.0 * accuracy.elapsed_s / 3600.0;
    let expected = (60.0 - permitted) / permitted * 100.0;
    assert!((accuracy.max_overshoot_pct - expected).abs() < 1e-9);
    assert!(accuracy.max_overshoot_pct > 199.0);
    assert_eq!(accuracy.exceeded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_includes_the_stall_of_a_server_that_holds_the_first_request() {
    let stall = Duration::from_millis(400);
    let (addr, _stop) = StallRls::start(stall).await;
    // One worker, 100 requests a second: while request 0 is held, requests 1, 2, ... fall
    // behind their schedule, and request i waits at least 400 ms - 10 ms × i.
    let spec = PhaseSpec {
        rate: Some(100.0),
        concurrency: 1,
        connections: 1,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(1),
        ..phase("path=/a")
    };
    let workload = Arc::new(Workload::build(&spec).expect("builds"));
    let channels = connect(&[addr.to_string()], 1).await.expect("connects");
    let (tally, _) = drive(
        &channels,
        workload,
        &Plan::of(&spec),
        Arc::new(Live::default()),
    )
    .await;
    let stall_us = stall.as_micros() as u64;
    assert!(
        tally.latency.max() >= stall_us,
        "max {} µs",
        tally.latency.max()
    );
    // Requests 0 to 20 each waited at least 200 ms (a closed loop would record only one).
    assert!(tally.latency.count_between(200_000, u64::MAX) >= 21);
    assert_eq!(tally.answers(), 100);
}
