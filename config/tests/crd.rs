//! The RateLimit CustomResourceDefinition (deploy/crds/ratelimit.yaml) accepts what the
//! loader accepts: every example resource validates against it, and the faults a schema
//! can see are refused by both. kubernetes-validate checks the CRD object itself; it cannot
//! check a custom resource against a CRD, so `tests/crd/validate.py` does that with the
//! jsonschema library kubernetes-validate installs (`scripts/test.sh` installs both).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use config::resource::read_quota_file;
use config::{LoadOptions, QuotaSet};

/// `program` from the test tools' virtualenv (`$RLS_TEST_TOOLS/venv`, default
/// `target/test-tools/venv`, where `scripts/test.sh` installs kubernetes-validate), else
/// from `PATH`.
fn program(name: &str) -> PathBuf {
    let tools = std::env::var_os("RLS_TEST_TOOLS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools"),
        PathBuf::from,
    );
    let installed = tools.join("venv/bin").join(name);
    if installed.is_file() {
        installed
    } else {
        PathBuf::from(name)
    }
}

fn crd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds/ratelimit.yaml")
}

/// Per text, per `kind: RateLimit` document: `None` when the CRD's schema accepts it, else
/// its first error.
fn schema_verdicts(texts: &[String]) -> Vec<Vec<Option<String>>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crd/validate.py");
    // The virtualenv's python has jsonschema and PyYAML, kubernetes-validate's own.
    let mut child = Command::new(program("python3"))
        .arg(&script)
        .arg(crd())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs kubernetes-validate and jsonschema)");
    let input = serde_json::to_vec(texts).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "validate.py failed");
    serde_json::from_slice(&output.stdout).expect("validate.py prints JSON")
}

/// The `*.yaml` files of `dir`, by name, and their texts.
fn yaml_files(dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let texts = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    (files, texts)
}

#[test]
fn the_crd_is_a_valid_custom_resource_definition() {
    let output = Command::new(program("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .arg(crd())
        .output()
        .expect("kubernetes-validate runs (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("passed"), "{stdout}");
}

#[test]
fn every_example_resource_validates_against_the_crd() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let (files, texts) = yaml_files(&dir);
    let verdicts = schema_verdicts(&texts);
    let mut resources = 0;
    for ((file, text), verdicts) in files.iter().zip(&texts).zip(verdicts) {
        let name = file.display().to_string();
        let loaded = read_quota_file(&name, text, &Default::default())
            .unwrap()
            .resources
            .len();
        assert_eq!(verdicts.len(), loaded, "{name}");
        for verdict in verdicts {
            assert_eq!(verdict, None, "{name}");
        }
        resources += loaded;
    }
    assert!(resources >= 3, "the examples hold resources");
}

/// The faults the loader refuses that no schema of the API server can see, and why.
const LOADER_ONLY: &[(&str, &str)] = &[
    (
        "bad_name.yaml",
        "the API server checks metadata.name itself",
    ),
    (
        "wrong_api_version.yaml",
        "the API server serves v1alpha1 only",
    ),
    (
        "bad_regex.yaml",
        "a pattern cannot tell a regex that parses",
    ),
    ("cidr_host_bits.yaml", "a pattern cannot mask an address"),
    ("cost_over_burst.yaml", "a CEL rule the API server runs"),
    (
        "duplicate_host.yaml",
        "x-kubernetes-list-type: set, the API server's",
    ),
    (
        "duplicate_host_case.yaml",
        "a set's items differ in case: rls check",
    ),
    ("same_descriptor.yaml", "two rules of one name: rls check"),
    (
        "same_descriptor_default_name.yaml",
        "two rules of one name: rls check",
    ),
    ("domain_taken.yaml", "a clash with another document"),
];

#[test]
fn the_schema_refuses_what_the_loader_refuses_where_a_schema_can_see_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad/resource");
    let (files, texts) = yaml_files(&dir);
    let verdicts = schema_verdicts(&texts);
    for (file, verdicts) in files.iter().zip(verdicts) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            QuotaSet::load(file, &LoadOptions::default()).is_err(),
            "the loader refuses {name}"
        );
        let refused = verdicts.iter().any(Option::is_some);
        let loader_only = LOADER_ONLY.iter().any(|(f, _)| *f == name);
        assert_eq!(
            refused, !loader_only,
            "{name}: schema verdicts {verdicts:?}"
        );
    }
}

#[test]
fn the_schema_accepts_what_the_loader_accepts() {
    let accepted = [
        // Units in any case; present with invert; a rule without match.
        "spec: {hosts: ['*.example.com'], quota: 1, unit: Minute}",
        "spec:\n  hosts: [a:8080]\n  match:\n    headers: [{key: x-beta, matchType: present, invert: true}]\n  quota: 1\n  unit: HOUR",
        // The form with matchType left out (exact).
        "spec:\n  hosts: [a]\n  match: {headers: [{key: ':path', value: /x}], method: GET, sourceCIDR: 10.0.0.0/8}\n  per: {header: x-user}\n  quota: 5\n  unit: second\n  cost: 5\n  burst: 9",
        "spec:\n  hosts: [a]\n  stage: 10\n  rules:\n    - {name: one, quota: 1, unit: day, mode: local, shadow: true}\n    - {quota: 2, unit: week, algorithm: fixed_window, unitMultiplier: 2}",
    ];
    let texts: Vec<String> = accepted
        .iter()
        .map(|spec| {
            format!(
                "apiVersion: quota.rls.dev/v1alpha1\nkind: RateLimit\nmetadata: {{name: a, namespace: b}}\n{spec}\n"
            )
        })
        .collect();
    let verdicts = schema_verdicts(&texts);
    for (text, verdicts) in texts.iter().zip(verdicts) {
        read_quota_file("case.yaml", text, &Default::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(verdicts, [None], "{text}");
    }
}
