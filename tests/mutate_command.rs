//! `graceful mutate` on realistic manifests, compared with the expected output kept
//! beside them in tests/golden/<case>/. `UPDATE_GOLDEN=1 cargo test --test
//! mutate_command` rewrites the expectations; review the diff before committing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn graceful(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graceful"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("graceful runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn check(dir: &Path, name: &str, actual: &str) {
    let path = dir.join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs from the output",
        path.display()
    );
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 4, "golden cases are missing");
    cases
}

#[test]
fn golden_manifests_and_patches() {
    for dir in cases() {
        let input = if dir.join("input.json").exists() {
            "input.json"
        } else {
            "input.yaml"
        };
        let mut args = vec!["mutate", "-f", input];
        if dir.join("policy.yaml").exists() {
            args.extend(["--policy", "policy.yaml"]);
        }
        let manifest = graceful(&dir, &args);
        assert!(
            manifest.status.success(),
            "{}: {:?}",
            dir.display(),
            manifest
        );
        check(&dir, "manifest.yaml", &text(&manifest.stdout));
        check(&dir, "stderr.txt", &text(&manifest.stderr));

        args.extend(["--output", "patch"]);
        let patch = graceful(&dir, &args);
        assert!(patch.status.success(), "{}: {:?}", dir.display(), patch);
        check(&dir, "patch.json", &text(&patch.stdout));
    }
}

/// The patched manifest is what the apiserver would store after applying the patch:
/// every governed pod template carries the sleep, the grace period and the label.
#[test]
fn the_annotated_deployment_gets_the_recipe() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/deployment-annotated");
    let output = graceful(
        &dir,
        &["mutate", "-f", "input.yaml", "--policy", "policy.yaml"],
    );
    let documents: Vec<serde_json::Value> =
        serde_yaml_ng::Deserializer::from_str(&text(&output.stdout))
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let template = &documents[0]["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["graceful.dev/policy"], "web");
    assert_eq!(template["spec"]["terminationGracePeriodSeconds"], 35);
    for container in template["spec"]["containers"].as_array().unwrap() {
        assert_eq!(container["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    }
    assert_eq!(
        template["spec"]["containers"][0]["readinessProbe"]["periodSeconds"],
        2
    );
    assert!(
        template["spec"]["initContainers"][0]
            .get("lifecycle")
            .is_none()
    );
    assert_eq!(
        documents[1]["kind"], "Service",
        "other documents pass through"
    );
}

fn failure(input: &str, extra: &[&str]) -> String {
    let dir = tempdir();
    std::fs::write(dir.join("input.yaml"), input).unwrap();
    let mut args = vec!["mutate", "-f", "input.yaml"];
    args.extend(extra);
    let output = graceful(&dir, &args);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "nothing half-written on failure");
    text(&output.stderr)
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "graceful-mutate-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn errors_name_the_file_the_document_and_the_field() {
    let bad_field = "kind: Service\n---\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: app, lifecycle: {preStop: {}}}, {image: x}]\n";
    assert_eq!(
        failure(bad_field, &[]),
        "graceful: error: input.yaml: document 2 (Deployment/web): spec.template.spec.containers[1]: missing field `name`\n"
    );

    let stderr = failure("kind: Pod\nspec: [unclosed\n", &[]);
    assert!(
        stderr.starts_with("graceful: error: input.yaml: document 1: not valid YAML or JSON:"),
        "{stderr}"
    );

    let bad_policy = "kind: GracefulPolicy\napiVersion: graceful.dev/v1alpha1\nmetadata: {name: p}\nspec:\n  mode: Sometimes\n";
    let stderr = failure(bad_policy, &[]);
    assert!(
        stderr.starts_with(
            "graceful: error: input.yaml: document 1 (GracefulPolicy/p): spec.mode: unknown variant `Sometimes`"
        ),
        "{stderr}"
    );

    let stderr = failure("kind: Pod\n", &["--policy", "absent.yaml"]);
    assert!(
        stderr.starts_with("graceful: error: reading absent.yaml:"),
        "{stderr}"
    );
}
