//! `deploy/Dockerfile`, checked without a Docker engine (none runs where the tests do):
//! its build context holds exactly what it copies, that copy is a workspace whose lockfile
//! resolves and which has the binaries the image takes, and the image's user, ports and
//! command are the ones `deploy/kubernetes` and `rls serve` use.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::manifest;
use common::tools::{self, workspace};

fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(workspace().join("deploy/Dockerfile")).expect("Dockerfile");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(instruction, rest)| (instruction.to_string(), rest.trim().to_string()))
        .collect()
}

fn instructions(name: &str) -> Vec<String> {
    dockerfile()
        .into_iter()
        .filter(|(i, _)| i == name)
        .map(|(_, rest)| rest)
        .collect()
}

/// The sources of the `COPY` lines that take from the build context (not `--from`).
fn context_sources() -> BTreeSet<String> {
    instructions("COPY")
        .iter()
        .filter(|rest| !rest.starts_with("--"))
        .flat_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_build_context_lets_in_exactly_what_the_dockerfile_copies() {
    let ignore = std::fs::read_to_string(workspace().join("deploy/Dockerfile.dockerignore"))
        .expect("Dockerfile.dockerignore");
    let let_in: BTreeSet<String> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(str::to_string)
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        "everything else is left out"
    );
    let copied = context_sources();
    assert_eq!(copied, let_in);
    for source in &copied {
        assert!(
            workspace().join(source).exists(),
            "COPY {source}: no such path"
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        if from.file_name().is_some_and(|n| n == "target") {
            return; // the ignore file's **/target
        }
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

#[test]
fn the_copied_workspace_resolves_with_its_lockfile_and_holds_the_binaries_the_image_takes() {
    let context = tempfile::tempdir().expect("temp dir");
    for source in context_sources() {
        copy_tree(&workspace().join(&source), &context.path().join(&source));
    }
    let (ok, out, err) = tools::run(
        Command::new(env!("CARGO"))
            .args(["metadata", "--locked", "--offline", "--format-version", "1"])
            .current_dir(context.path()),
    );
    assert!(ok, "cargo metadata in the copied context: {err}");
    let metadata: serde_json::Value = serde_json::from_str(&out).expect("metadata json");
    let binaries: BTreeSet<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["source"].is_null())
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();

    let run = instructions("RUN").join(" ");
    let copied: BTreeSet<String> = instructions("COPY")
        .into_iter()
        .filter(|rest| rest.starts_with("--from=build"))
        .flat_map(|rest| {
            rest.split_whitespace()
                .filter_map(|w| w.strip_prefix("/src/target/release/").map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        copied,
        BTreeSet::from(["loadtest".to_string(), "rls".to_string()]),
        "the image holds rls and loadtest"
    );
    for binary in &copied {
        assert!(
            binaries.contains(binary),
            "no binary {binary} in {binaries:?}"
        );
        assert!(
            run.contains(&format!("-p {binary}")),
            "{run} builds {binary}"
        );
    }
    assert!(
        run.contains("--release") && run.contains("--locked"),
        "{run}"
    );
}

#[test]
fn the_image_runs_rls_serve_as_the_deployments_user_on_rls_default_ports() {
    assert_eq!(instructions("ENTRYPOINT"), [r#"["rls"]"#]);
    assert_eq!(instructions("CMD"), [r#"["serve"]"#]);

    let defaults = rls::Settings::defaults();
    let exposed = instructions("EXPOSE").join(" ");
    let expected = format!(
        "{} {}",
        defaults.grpc_addr.port(),
        defaults.http_addr.port()
    );
    assert_eq!(exposed, expected, "gRPC then HTTP, as rls serve binds them");

    let deployment = manifest::read(&workspace().join("deploy/kubernetes/base/deployment.yaml"));
    let pod = &deployment[0]["spec"]["template"]["spec"];
    let user = format!(
        "{}:{}",
        pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    );
    assert_eq!(
        instructions("USER"),
        [user],
        "the image's user is the one the pods run as"
    );
    assert_eq!(pod["containers"][0]["args"], serde_json::json!(["serve"]));
}

#[test]
fn the_image_answers_to_the_path_envoy_gateway_runs() {
    // Envoy Gateway's Deployment runs `/bin/ratelimit` with no argument; rls serves when
    // started under that name (rls::cli::as_invoked). The link is made in the build stage
    // and its directory copied.
    let name = rls::cli::REFERENCE_BINARY;
    let link = format!("ln -s /usr/local/bin/rls /out/bin/{name}");
    assert!(
        instructions("RUN").iter().any(|r| r.contains(&link)),
        "no `{link}`"
    );
    let copy = "--from=build /out/bin/ /bin/".to_string();
    assert!(instructions("COPY").contains(&copy), "no `COPY {copy}`");
    let to_local_bin = instructions("COPY")
        .iter()
        .any(|c| c.contains("/src/target/release/rls") && c.ends_with("/usr/local/bin/"));
    assert!(to_local_bin, "the link's target is where rls is copied");
}
