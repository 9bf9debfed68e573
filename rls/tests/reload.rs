//! Hot reload with real files and the operating system's file events: a change is served
//! at once, an invalid change is refused whole while the old rules keep serving, and a
//! Kubernetes ConfigMap's `..data` swap is seen.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use config::{LoadOptions, QuotaSet};
use limiter::FakeClock;
use proto::rls::RateLimitRequest;
use rls::decide::{AnswerOptions, Decider};
use rls::query::parse_descriptor;
use rls::reload::{ReloadStatus, Reloader};
use rls::store::MemoryStore;
use tokio::sync::watch;

fn quota(per_minute: u32) -> String {
    format!(
        "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {{unit: minute, requests_per_unit: {per_minute}}}\n"
    )
}

fn decider(path: &Path) -> Arc<Decider<MemoryStore>> {
    let quotas = QuotaSet::load(path, &LoadOptions::default()).expect("valid quotas");
    let clock = Arc::new(FakeClock::new(1_700_000_000_000_000_000));
    Arc::new(Decider::new(
        quotas,
        MemoryStore::new(),
        clock,
        AnswerOptions::default(),
    ))
}

/// The limit the decider now reports for `path=/a`.
async fn limit(decider: &Decider<MemoryStore>) -> u32 {
    let request = RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![parse_descriptor("path=/a")],
        hits_addend: 1,
    };
    let answer = decider.decide(&request).await.expect("answer");
    answer.statuses[0]
        .current_limit
        .as_ref()
        .map_or(0, |l| l.requests_per_unit)
}

/// Waits until `done` holds for the reload status; the guard fails the test instead of
/// letting it hang, it measures nothing.
async fn until(
    status: &mut watch::Receiver<ReloadStatus>,
    done: impl Fn(&ReloadStatus) -> bool,
) -> ReloadStatus {
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| done(s)))
        .await
        .expect("the reload happens")
        .expect("the reloader runs")
        .clone()
}

#[tokio::test]
async fn a_changed_quota_file_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, quota(1)).expect("write");
    let decider = decider(&file);
    let reloader =
        Reloader::start(decider.clone(), file.clone(), LoadOptions::default()).expect("watch");
    let mut status = reloader.status();
    assert_eq!(limit(&decider).await, 1);

    std::fs::write(&file, quota(5)).expect("rewrite");
    until(&mut status, |s| s.loaded >= 1).await;
    assert_eq!(limit(&decider).await, 5);
}

#[tokio::test]
async fn an_invalid_change_is_refused_and_the_old_rules_keep_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, quota(3)).expect("write");
    let decider = decider(dir.path());
    let reloader = Reloader::start(
        decider.clone(),
        dir.path().to_path_buf(),
        LoadOptions::default(),
    )
    .expect("watch");
    let mut status = reloader.status();

    let broken = quota(3).replace("unit: minute", "unit: fortnight");
    std::fs::write(&file, broken).expect("rewrite");
    let refused = until(&mut status, |s| s.refused >= 1).await;
    let error = refused.last_error.expect("the refusal says why");
    assert!(
        error.contains("edge.yaml:4:") && error.contains("fortnight"),
        "{error}"
    );
    assert_eq!(refused.loaded, 0);
    assert_eq!(limit(&decider).await, 3);
}

#[cfg(unix)]
#[tokio::test]
async fn a_configmap_data_swap_is_seen() {
    use std::os::unix::fs::symlink;
    // A ConfigMap volume: edge.yaml -> ..data/edge.yaml, ..data -> ..<timestamp>; an
    // update writes a new timestamped directory and renames a new ..data link over it.
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::create_dir(root.join("..v1")).expect("mkdir");
    std::fs::write(root.join("..v1/edge.yaml"), quota(2)).expect("write");
    symlink("..v1", root.join("..data")).expect("link");
    symlink("..data/edge.yaml", root.join("edge.yaml")).expect("link");
    let decider = decider(root);
    let reloader = Reloader::start(decider.clone(), root.to_path_buf(), LoadOptions::default())
        .expect("watch");
    let mut status = reloader.status();
    assert_eq!(limit(&decider).await, 2);

    std::fs::create_dir(root.join("..v2")).expect("mkdir");
    std::fs::write(root.join("..v2/edge.yaml"), quota(7)).expect("write");
    symlink("..v2", root.join("..data_tmp")).expect("link");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
    until(&mut status, |s| s.loaded >= 1).await;
    assert_eq!(limit(&decider).await, 7);
}

#[tokio::test]
async fn a_reload_can_be_asked_for_without_a_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, quota(4)).expect("write");
    let decider = decider(&file);
    let reloader = Reloader::start(decider.clone(), file, LoadOptions::default()).expect("watch");
    let mut status = reloader.status();
    reloader.reload_now();
    until(&mut status, |s| s.loaded >= 1).await;
    assert_eq!(limit(&decider).await, 4);
}

// Reproduces a refused reload said without its cause ("edge.yaml: cannot read", not why).
#[tokio::test]
async fn a_refused_reload_says_each_cause_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, quota(6)).expect("write");
    let decider = decider(&file);
    let reloader =
        Reloader::start(decider.clone(), file.clone(), LoadOptions::default()).expect("watch");
    let mut status = reloader.status();

    std::fs::remove_file(&file).expect("remove");
    let refused = until(&mut status, |s| s.refused >= 1).await;
    let os = std::fs::read(&file).expect_err("removed").to_string();
    assert_eq!(
        refused.last_error.expect("the refusal says why"),
        format!("{}: cannot read: {os}", file.display())
    );
    assert_eq!(limit(&decider).await, 6);
}
