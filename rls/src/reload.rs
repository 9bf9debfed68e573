//! `Reloader`: watches the quota files and, when they change (an edit, a Kubernetes
//! ConfigMap swapping its `..data` link) or on SIGHUP, loads them again and swaps the new
//! snapshot in at once. An invalid change is refused whole: the old snapshot keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{LoadOptions, QuotaSet};
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::decide::Decider;
use crate::error::RlsError;
use crate::snapshot::record_load_duration;
use crate::store::BucketStore;

/// Changes often come in bursts (an editor's write and rename, a ConfigMap's several
/// links): wait this long after the last event before loading.
const SETTLE: Duration = Duration::from_millis(100);

/// What the reloads have done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Reloads that swapped a new snapshot in.
    pub loaded: u64,
    /// Reloads refused because the files were invalid (the old snapshot kept serving).
    pub refused: u64,
    /// The last refusal's message: file, line, column, key path and fault.
    pub last_error: Option<String>,
}

/// A running watcher; dropping it stops watching.
pub struct Reloader {
    status: watch::Receiver<ReloadStatus>,
    trigger: mpsc::Sender<()>,
    _watcher: notify::RecommendedWatcher,
}

impl Reloader {
    /// Watches `path` (a file, or a directory of quota files) and reloads `decider`'s
    /// quotas when it changes.
    pub fn start<S: BucketStore>(
        decider: Arc<Decider<S>>,
        path: PathBuf,
        options: LoadOptions,
    ) -> Result<Reloader, RlsError> {
        let (trigger, events) = mpsc::channel(1);
        let notify_trigger = trigger.clone();
        let target = Target::of(&path);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // A full channel already has a reload pending: nothing is lost by dropping this.
                if event.is_ok_and(|e| !e.kind.is_access() && target.concerns(&e.paths)) {
                    let _ = notify_trigger.try_send(());
                }
            })
            .map_err(|source| RlsError::Watch {
                path: path.clone(),
                source,
            })?;
        // The directory, not the file: editors and ConfigMaps replace files by renaming,
        // which a watch on the file itself would lose.
        let watched = watched_dir(&path);
        watcher
            .watch(&watched, RecursiveMode::NonRecursive)
            .map_err(|source| RlsError::Watch {
                path: watched.clone(),
                source,
            })?;
        // Both results from the start, at zero.
        for result in ["loaded", "refused"] {
            metrics::counter!("rls_config_reloads_total", "result" => result).increment(0);
        }
        let (report, status) = watch::channel(ReloadStatus::default());
        tokio::spawn(reload_on_change(events, decider, path, options, report));
        Ok(Reloader {
            status,
            trigger,
            _watcher: watcher,
        })
    }

    /// Asks for a reload now (what SIGHUP does).
    pub fn reload_now(&self) {
        let _ = self.trigger.try_send(());
    }

    /// The reloads so far; `changed()` on it waits for the next one.
    pub fn status(&self) -> watch::Receiver<ReloadStatus> {
        self.status.clone()
    }
}

/// Which entries of the watched directory are the quota files: the directory may hold
/// others (logs, unrelated files) whose every write must not reload.
#[derive(Clone, Debug)]
enum Target {
    /// One file, by name.
    File(std::ffi::OsString),
    /// A directory: its `.yaml` and `.yml` files, as the loader reads them.
    Dir,
}

impl Target {
    fn of(path: &Path) -> Target {
        match path.file_name() {
            Some(name) if !path.is_dir() => Target::File(name.to_owned()),
            _ => Target::Dir,
        }
    }

    /// True when an event on `paths` may change what the loader reads. A Kubernetes
    /// ConfigMap swaps its files by renaming its `..data` link and `..`-named directories;
    /// an event naming no path (the watcher lost track) counts too.
    fn concerns(&self, paths: &[PathBuf]) -> bool {
        paths.is_empty()
            || paths.iter().any(|path| {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    return true;
                };
                name.starts_with("..")
                    || match self {
                        Target::File(file) => file == name,
                        Target::Dir => config::is_quota_file_name(name),
                    }
            })
    }
}

/// Logs the entries of the quota directory `path` that the loader does not read (other
/// files, subdirectories), when there are any, so that a file a user meant as quotas
/// (`quotas.json`, `edge.yaml.bak`) is not ignored unseen. Hidden entries (editors' swap
/// files, a ConfigMap's `..data`) are left out of the list.
pub fn log_ignored(path: &Path) {
    let ignored = ignored_entries(path);
    if !ignored.is_empty() {
        tracing::info!(
            dir = %path.display(), ?ignored,
            "ignored in the quota directory: not *.yaml or *.yml quota files"
        );
    }
}

/// The names of the non-hidden entries of `path`, a directory, the loader does not read
/// (empty for a file), in name order.
fn ignored_entries(path: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut ignored: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let read = config::is_quota_file_name(&name) && entry.path().is_file();
            (!read && !name.starts_with('.')).then_some(name)
        })
        .collect();
    ignored.sort();
    ignored
}

/// The directory whose entries change when `path` does.
fn watched_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

async fn reload_on_change<S: BucketStore>(
    mut events: mpsc::Receiver<()>,
    decider: Arc<Decider<S>>,
    path: PathBuf,
    options: LoadOptions,
    report: watch::Sender<ReloadStatus>,
) {
    while events.recv().await.is_some() {
        // Settle: wait until the burst of events is over.
        while let Ok(Some(())) = tokio::time::timeout(SETTLE, events.recv()).await {}
        let (load_path, options) = (path.clone(), options.clone());
        let started = Instant::now();
        let loaded =
            tokio::task::spawn_blocking(move || QuotaSet::load(&load_path, &options)).await;
        record_load_duration(started.elapsed());
        match loaded {
            Ok(Ok(quotas)) => {
                tracing::info!(
                    domains = quotas.domains().count(),
                    rules = quotas.rule_count(),
                    "quota files reloaded"
                );
                log_ignored(&path);
                metrics::counter!("rls_config_reloads_total", "result" => "loaded").increment(1);
                decider.replace_quotas(quotas);
                report.send_modify(|s| s.loaded += 1);
            }
            Ok(Err(error)) => {
                decider.snapshots().refuse(&error);
                // The error with its causes, each once ("edge.yaml: cannot read: No such
                // file or directory (os error 2)").
                let error = config::Report(&error).to_string();
                tracing::error!(%error, "quota files refused; the previous ones keep serving");
                metrics::counter!("rls_config_reloads_total", "result" => "refused").increment(1);
                report.send_modify(|s| {
                    s.refused += 1;
                    s.last_error = Some(error);
                });
            }
            Err(join) => tracing::error!(%join, "quota reload task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names
            .iter()
            .map(|n| Path::new("/etc/rls").join(n))
            .collect()
    }

    #[test]
    fn a_file_target_reloads_for_its_file_and_configmap_swaps_only() {
        let target = Target::File("quotas.yaml".into());
        assert!(target.concerns(&paths(&["quotas.yaml"])));
        assert!(target.concerns(&paths(&["..data"])));
        assert!(target.concerns(&paths(&["..2026_11_21_10_00_00.123"])));
        assert!(target.concerns(&[]));
        // Its own log, another quota file, an editor's swap file: no reload.
        assert!(!target.concerns(&paths(&["rls.log"])));
        assert!(!target.concerns(&paths(&["other.yaml"])));
        assert!(!target.concerns(&paths(&[".quotas.yaml.swp"])));
        // A rename names both ends: one of them is the file.
        assert!(target.concerns(&paths(&["quotas.yaml.tmp", "quotas.yaml"])));
    }

    #[test]
    fn the_entries_the_loader_does_not_read_are_listed_except_hidden_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in [
            "edge.yaml",
            "api.yml",
            "README.md",
            "edge.yaml.bak",
            ".edge.swp",
        ] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        std::fs::create_dir(dir.path().join("old.yaml")).expect("mkdir");
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        assert_eq!(
            ignored_entries(dir.path()),
            ["README.md", "edge.yaml.bak", "old.yaml"]
        );
        assert!(ignored_entries(&dir.path().join("edge.yaml")).is_empty());
    }

    #[test]
    fn a_directory_target_reloads_for_the_files_the_loader_reads() {
        let target = Target::Dir;
        assert!(target.concerns(&paths(&["edge.yaml"])));
        assert!(target.concerns(&paths(&["edge.yml"])));
        assert!(target.concerns(&paths(&["..data"])));
        assert!(!target.concerns(&paths(&["rls.log"])));
        assert!(!target.concerns(&paths(&["README.md"])));
        assert!(!target.concerns(&paths(&[".edge.yaml.swp"])));
    }
}
