//! Kubernetes and Istio manifests as JSON values: YAML documents read from a file or built
//! with `kubectl kustomize`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::tools;

/// The non-empty documents of a YAML stream.
pub fn documents(text: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The documents of a YAML file.
pub fn read(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    documents(&text)
}

/// `kubectl kustomize dir`: the built objects, or kubectl's complaint.
pub fn kustomize(dir: &Path) -> Result<(String, Vec<Value>), String> {
    let (ok, out, err) = tools::run(
        Command::new(tools::program("kubectl"))
            .arg("kustomize")
            .arg(dir),
    );
    if ok {
        let objects = documents(&out);
        Ok((out, objects))
    } else {
        Err(err)
    }
}

/// `kind/name` of an object, for messages.
pub fn name(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Runs `rls/tests/kubernetes/crds.mjs` on `objects`: (success, its report).
pub fn validate_custom_resources(objects: &[&Value]) -> (bool, String) {
    let script = tools::workspace().join("rls/tests/kubernetes/crds.mjs");
    let mut child = Command::new(tools::program("node"))
        .arg(script)
        .arg(tools::node_modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node starts");
    let input = serde_json::to_vec(objects).expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write");
    let output = child.wait_with_output().expect("node ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
