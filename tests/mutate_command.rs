//! `graceful mutate` on realistic manifests, compared with the expected output kept
//! beside them in tests/golden/<case>/. `UPDATE_GOLDEN=1 cargo test --test
//! mutate_command` rewrites the expectations; review the diff before committing.

#[path = "fixtures/invalid_policies.rs"]
mod invalid_policies;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use graceful::manifest;
use serde_json::{Value, json};

use invalid_policies::{INVALID, LONG_NAME_MESSAGE, policy_yaml};

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

/// The objects of a stream as kubectl reads them, one per document (`Null` for none).
fn values(text: &str) -> Vec<Value> {
    let stream = manifest::read(text).expect("kubectl can read it");
    stream
        .documents
        .into_iter()
        .map(|d| d.value.unwrap_or(Value::Null))
        .collect()
}

fn input_name(dir: &Path) -> &'static str {
    if dir.join("input.json").exists() {
        "input.json"
    } else {
        "input.yaml"
    }
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
        let input = input_name(&dir);
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
    let documents = values(&text(&output.stdout));
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

/// The second pass over pods an injector changed after graceful's first is right (a
/// native proxy's shutdown joins the grace period, the proxies' drains are aligned,
/// nothing lands on a proxy) and a further pass has nothing left to do.
#[test]
fn after_an_injector_graceful_finishes_its_work_once() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mesh-reinvoked");
    let args = [
        "mutate",
        "-f",
        "manifest.yaml",
        "--policy",
        "policy.yaml",
        "-o",
        "patch",
    ];
    let again = graceful(&dir, &args);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout).trim(),
        "[]",
        "a third pass changes nothing"
    );

    let documents = values(&std::fs::read_to_string(dir.join("manifest.yaml")).unwrap());
    let input = values(&std::fs::read_to_string(dir.join("input.yaml")).unwrap());
    let grace: Vec<&Value> = documents
        .iter()
        .map(|d| &d["spec"]["terminationGracePeriodSeconds"])
        .collect();
    assert_eq!(grace, [&Value::Null, &json!(35), &Value::Null, &json!(35)]);
    for (pod, before) in documents.iter().zip(&input) {
        assert_eq!(
            pod["spec"]["initContainers"],
            before["spec"]["initContainers"]
        );
        for container in pod["spec"]["containers"].as_array().unwrap() {
            if container["name"] == "istio-proxy" {
                assert_eq!(container, &before["spec"]["containers"][1]);
            }
        }
    }
    let annotations = |i: usize| &documents[i]["metadata"]["annotations"];
    // The reconciler reads which regular containers the policy left alone from the record.
    let left_alone = |i: usize| -> Value {
        let record = annotations(i)["graceful.dev/applied"].as_str().unwrap();
        serde_json::from_str::<Value>(record).unwrap()["leftAlone"].clone()
    };
    assert_eq!(left_alone(0), json!({"istio-proxy": "sidecar"}));
    assert_eq!(left_alone(2), json!({"linkerd-proxy": "sidecar"}));
    assert!(
        annotations(0)["proxy.istio.io/config"]
            .as_str()
            .unwrap()
            .contains("25s")
    );
    assert!(
        annotations(1)["proxy.istio.io/config"]
            .as_str()
            .unwrap()
            .contains("\"5s\"")
    );
    assert_eq!(
        annotations(2)["config.alpha.linkerd.io/proxy-wait-before-exit-seconds"],
        "25"
    );
    assert_eq!(
        documents[2]["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"],
        json!(["/bin/sleep", "25"])
    );
}

/// With meshDrain: Warn the proxies' own settings stay, and each contradiction is named.
#[test]
fn a_contradicting_mesh_drain_is_named_and_kept() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mesh-reinvoked");
    let policy = std::fs::read_to_string(dir.join("policy.yaml"))
        .unwrap()
        .replace("meshDrain: Align", "meshDrain: Warn");
    let scratch = std::env::temp_dir().join(format!("graceful-mesh-warn-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("policy.yaml"), policy).unwrap();
    std::fs::copy(dir.join("input.yaml"), scratch.join("input.yaml")).unwrap();
    let output = graceful(
        &scratch,
        &[
            "mutate",
            "-f",
            "input.yaml",
            "--policy",
            "policy.yaml",
            "-o",
            "patch",
        ],
    );
    std::fs::remove_dir_all(&scratch).unwrap();
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("Pod/web-istio: istio-proxy stops 5s into the shutdown"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("Pod/web-istio-native: istio-proxy drains for 30s after the app has exited"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Pod/web-linkerd: linkerd-proxy stops 10s"),
        "{stderr}"
    );
    assert!(!stderr.contains("web-linkerd-native"), "{stderr}");
    let patches: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!patches.to_string().contains("proxy.istio.io~1config"));
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
    let bad_field = "kind: Service\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: app, lifecycle: {preStop: {}}}, {image: x}]\n";
    assert_eq!(
        failure(bad_field, &[]),
        "graceful: error: input.yaml: document 2 (Deployment/web): spec.template.spec.containers[1]: missing field `name`\n"
    );

    let stderr = failure("kind: Pod\nspec: [unclosed\n", &[]);
    assert!(
        stderr.starts_with("graceful: error: input.yaml: line 3: not valid YAML or JSON:"),
        "{stderr}"
    );

    let bad_policy = "kind: GracefulPolicy\napiVersion: graceful.dev/v1alpha1\nmetadata: {name: p}\nspec:\n  mode: Sometimes\n";
    let stderr = failure(bad_policy, &[]);
    assert!(
        stderr.starts_with(
            "graceful: error: input.yaml: document 1 (GracefulPolicy/p): spec.mode: Unsupported value: \"Sometimes\""
        ),
        "{stderr}"
    );

    let stderr = failure("kind: Pod\n", &["--policy", "absent.yaml"]);
    assert!(
        stderr.starts_with("graceful: error: reading absent.yaml:"),
        "{stderr}"
    );
}

/// Each golden output read back as kubectl reads it: a document with patches holds
/// exactly the input's values with the patches applied, every other document is the
/// input's bytes, and JSON stays JSON.
#[test]
fn golden_outputs_read_back_as_kubectl_reads_them() {
    for dir in cases() {
        let input = std::fs::read_to_string(dir.join(input_name(&dir))).unwrap();
        let output = std::fs::read_to_string(dir.join("manifest.yaml")).unwrap();
        let patches: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("patch.json")).unwrap())
                .unwrap();
        let read_in = manifest::read(&input).unwrap();
        let read_out = manifest::read(&output).unwrap();
        assert_eq!(
            read_in.json,
            read_out.json,
            "{}: JSON stays JSON",
            dir.display()
        );
        assert_eq!(
            read_in.documents.len(),
            read_out.documents.len(),
            "{}",
            dir.display()
        );
        for (index, (before, after)) in read_in
            .documents
            .iter()
            .zip(&read_out.documents)
            .enumerate()
        {
            let number = index as u64 + 1;
            let ours: Vec<&Value> = patches
                .iter()
                .filter(|p| p["document"] == number)
                .map(|p| &p["patch"])
                .collect();
            let case = format!("{} document {number}", dir.display());
            if ours.is_empty() {
                assert_eq!(
                    &input[before.span.clone()],
                    &output[after.span.clone()],
                    "{case}: passed through byte for byte"
                );
                continue;
            }
            let mut expected = before.value.clone().unwrap();
            for patch in ours {
                let patch: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
                json_patch::patch(&mut expected, &patch).unwrap();
            }
            assert_eq!(after.value.as_ref(), Some(&expected), "{case}");
        }
    }
}

/// The YAML 1.1 case keeps what kubectl read: octal modes, quoted yes/no/on, anchors.
#[test]
fn yaml_1_1_values_survive_the_mutation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/yaml11");
    let output = graceful(
        &dir,
        &["mutate", "-f", "input.yaml", "--policy", "policy.yaml"],
    );
    assert!(output.status.success(), "{output:?}");
    let documents = values(&text(&output.stdout));
    let deployment = &documents[2];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["spec"]["revisionHistoryLimit"], 8);
    let template = &deployment["spec"]["template"];
    assert_eq!(template["spec"]["volumes"][0]["secret"]["defaultMode"], 256);
    assert_eq!(
        template["spec"]["volumes"][1]["configMap"]["defaultMode"],
        420
    );
    assert_eq!(
        template["metadata"]["annotations"]["sidecar.example/inject"],
        "yes"
    );
    assert_eq!(template["metadata"]["annotations"]["tilde"], "~");
    let containers = template["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers[0]["env"][0]["value"], "on");
    assert_eq!(
        containers[0]["args"][2], "off",
        "a quoted off stays a string"
    );
    assert_eq!(containers[0]["ports"][0]["containerPort"], 8080);
    assert_eq!(containers[1]["name"], "proxy");
    assert_eq!(containers[1]["image"], "registry.example/proxy:2");
    assert_eq!(
        containers[1]["env"], containers[0]["env"],
        "merged from the anchor"
    );
    for container in containers {
        assert_eq!(container["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    }
    assert_eq!(template["metadata"]["labels"]["graceful.dev/policy"], "web");
    assert_eq!(template["metadata"]["labels"]["app"], "web");
    assert_eq!(documents[0]["data"]["flag"], "yes");
    assert_eq!(
        documents[1]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-tls-verify-client"],
        "on"
    );
}

/// The paths of a List item's patch start at the List document's root.
#[test]
fn list_items_are_patched_from_the_list_root() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/list-json");
    let output = graceful(
        &dir,
        &[
            "mutate",
            "-f",
            "input.json",
            "--policy",
            "policy.yaml",
            "-o",
            "patch",
        ],
    );
    let patches: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["document"], 1);
    for operation in patches[0]["patch"].as_array().unwrap() {
        let path = operation["path"].as_str().unwrap();
        assert!(path.starts_with("/items/1/spec/template/"), "{path}");
    }
}

/// Every policy the apiserver rejects (tests/cluster_api.rs) is rejected offline too,
/// with the same words, on one line that names the file and the policy.
#[test]
fn invalid_policies_are_rejected_as_the_apiserver_rejects_them() {
    let dir = tempdir();
    std::fs::write(
        dir.join("input.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app}]}\n",
    )
    .unwrap();
    let mut cases: Vec<(String, String)> = INVALID
        .iter()
        .map(|(_, spec, message)| (policy_yaml("bad", spec), (*message).to_owned()))
        .collect();
    let long = "n".repeat(64);
    cases.push((policy_yaml(&long, "spec: {}"), LONG_NAME_MESSAGE.to_owned()));
    for (yaml, message) in cases {
        std::fs::write(dir.join("policy.yaml"), &yaml).unwrap();
        let output = graceful(
            &dir,
            &["mutate", "-f", "input.yaml", "--policy", "policy.yaml"],
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{yaml}: accepted");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("graceful: error: policy.yaml: document 1 (GracefulPolicy/"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&message),
            "expected {message:?} in {stderr}"
        );
    }
}

/// The preview says when the default install would never send a pod to the webhook, and
/// leaves the mirror of a static pod alone as the webhook does.
#[test]
fn pods_the_installed_webhook_skips_are_named() {
    let dir = tempdir();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: dns, namespace: kube-system, annotations: {graceful.dev/policy: web}}\nspec: {containers: [{name: app}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: mirror, namespace: shop, annotations: {kubernetes.io/config.mirror: abc, graceful.dev/policy: web}}\nspec: {containers: [{name: app}]}\n---\napiVersion: graceful.dev/v1alpha1\nkind: GracefulPolicy\nmetadata: {name: web, namespace: shop}\nspec: {drain: {preStopSleepSeconds: 5}}\n";
    std::fs::write(dir.join("skipped.yaml"), pod).unwrap();
    let output = graceful(&dir, &["mutate", "-f", "skipped.yaml"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), pod, "nothing is changed");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "graceful: Pod/dns: the installed webhook never sees pods in namespace kube-system"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("graceful: Pod/mirror: not governed: it is the mirror of a static pod (kubernetes.io/config.mirror)"),
        "{stderr}"
    );
}
