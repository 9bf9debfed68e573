//! `FileWatch`: a signal when one of a few named files may have changed — an edit, a
//! rename over it, or a Kubernetes Secret or ConfigMap mount swapping its `..data` link —
//! and [`settle`], which waits for a burst of such events to end.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::RlsError;

/// Changes come in bursts (an editor's write and rename, a mount's several links, a
/// certificate and its key written one after the other): wait this long after the last
/// event before acting.
pub const SETTLE: Duration = Duration::from_millis(100);

/// A running watch; dropping it stops watching.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
}

impl FileWatch {
    /// Watches `files` and sends on `trigger` when one of them may have changed. A full
    /// channel already has a change pending, so nothing is lost when a send finds it full.
    pub fn start(files: &[PathBuf], trigger: mpsc::Sender<()>) -> Result<FileWatch, RlsError> {
        let names: BTreeSet<OsString> = files
            .iter()
            .filter_map(|f| f.file_name().map(OsString::from))
            .collect();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access() && concerns(&names, &e.paths)) {
                    let _ = trigger.try_send(());
                }
            })
            .map_err(|source| RlsError::Watch {
                path: files.first().cloned().unwrap_or_default(),
                source,
            })?;
        // Directories, not the files: a file replaced by a rename would lose its watch.
        let dirs: BTreeSet<PathBuf> = files.iter().map(|f| directory(f)).collect();
        for dir in dirs {
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|source| RlsError::Watch { path: dir, source })?;
        }
        Ok(FileWatch { _watcher: watcher })
    }
}

/// Waits until no event has come for [`SETTLE`].
pub async fn settle(events: &mut mpsc::Receiver<()>) {
    while let Ok(Some(())) = tokio::time::timeout(SETTLE, events.recv()).await {}
}

/// True when an event on `paths` may change one of the files named `names`: it names one
/// of them, or a `..`-prefixed entry (a mount's atomic swap), or nothing (the watcher lost
/// track).
fn concerns(names: &BTreeSet<OsString>, paths: &[PathBuf]) -> bool {
    paths.is_empty()
        || paths.iter().any(|path| match path.file_name() {
            None => true,
            Some(name) => names.contains(name) || name.to_string_lossy().starts_with(".."),
        })
}

/// The directory whose entries change when `file` does.
fn directory(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watched_files_and_mount_swaps_concern_it_and_nothing_else() {
        let names: BTreeSet<OsString> = ["tls.crt".into(), "tls.key".into()].into();
        let at = |name: &str| vec![Path::new("/certs").join(name)];
        assert!(concerns(&names, &at("tls.crt")));
        assert!(concerns(&names, &at("tls.key")));
        assert!(concerns(&names, &at("..data")));
        assert!(concerns(&names, &at("..2026_11_21_10_00_00.123")));
        assert!(concerns(&names, &[]));
        assert!(!concerns(&names, &at("ca.crt")));
        assert!(!concerns(&names, &at("tls.crt.tmp")));
    }
}
