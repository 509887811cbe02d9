//! `kubectl graceful` through the real kubectl and apiserver: graceful's binary on the
//! PATH as `kubectl-graceful`, pods admitted by a running graceful, and `status`, `why`
//! and `recommend` read from the cluster, in kubectl's output formats.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use support::graceful::{Graceful, labelled_namespace};
use support::{Cluster, repo};

/// A directory holding the plugin: graceful's binary under kubectl's plugin name.
fn plugin_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graceful-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let link = dir.join("kubectl-graceful");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_graceful"), &link).expect("the plugin link");
    }
    dir
}

/// `kubectl graceful ARGS` with the plugin and kubectl first on the PATH.
fn kubectl_graceful(cluster: &Cluster, args: &[&str]) -> Output {
    let path = std::env::join_paths([plugin_dir(), repo().join("e2e/bin")].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("a PATH");
    Command::new(repo().join("e2e/bin/kubectl"))
        .arg("graceful")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env(
            "KUBECACHEDIR",
            std::env::temp_dir().join("graceful-plugin-cache"),
        )
        .output()
        .expect("kubectl runs")
}

fn ok(cluster: &Cluster, args: &[&str]) -> String {
    let output = kubectl_graceful(cluster, args);
    assert!(
        output.status.success(),
        "kubectl graceful {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut argv = args.to_vec();
    argv.extend(["-o", "json"]);
    serde_json::from_str(&ok(cluster, &argv)).expect("JSON")
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: {graceful.dev/policy: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: app
          image: registry.example/app:1.0
          readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 10}
"#;

/// What graceful's reconciler writes after measuring shutdowns over budget.
const STATUS: &str = r#"{"status": {
  "conditions": [{"type": "Ready", "status": "True", "reason": "InForce", "message": "in force",
                  "lastTransitionTime": "2026-01-01T00:00:00Z"}],
  "violations": {"budgetExceeded": 2, "oomKilled": 0, "restarts": 1, "total": 3},
  "shutdown": {"observed": 5, "p50Seconds": 20.0, "p95Seconds": 31.0, "maxSeconds": 33.0,
               "recommendedBudgetSeconds": 40},
  "recommendations": {
    "preStopSleepSeconds": {"reason": "0 of 5 deletions measured: too few to recommend"},
    "shutdownBudgetSeconds": {"seconds": 40, "reason": "longest shutdown 33.0 s of 5 measured + a fifth, rounded up"}}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_why_and_recommend_read_the_cluster_as_kubectl_does() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let mut graceful = Graceful::start(cluster, "plugin", &[]);
    let label = graceful.register_for(cluster, "plugin");
    let ns = labelled_namespace(cluster, &client, "plugin", "plugin").await;
    cluster.apply_ok(&ns, support::POLICY);
    cluster.apply_ok(&ns, DEPLOYMENT);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = support::eventually(
        "the Deployment's pod, admitted",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .ok()?;
                list.items
                    .into_iter()
                    .find(|p| support::graceful::mutated_for(p, "web"))
            }
        },
    )
    .await;
    let pod_name = pod.metadata.name.clone().expect("a name");
    // The status below stands for the reconciler's: graceful stops writing its own.
    graceful.kill();
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &label]);
    cluster.patch_policy_status(&ns, "web", STATUS);

    // status: a kubectl table (no colour: not a terminal), and the same as data.
    let table = ok(cluster, &["status", "-n", &ns]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{table}");
    assert!(
        !table.contains("NAMESPACE") && !table.contains('\x1b'),
        "{table}"
    );
    let row: Vec<&str> = lines[1]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        row,
        [
            "web",
            "Enforce",
            "1",
            "3 (2 over budget, 1 restarts)",
            "31.0s",
            "shutdownBudgetSeconds 25 -> 40",
            "True"
        ],
        "{table}"
    );
    let status = json(cluster, &["status", "-n", &ns]);
    assert_eq!(status["items"][0]["pods"], serde_json::json!([pod_name]));
    let all = ok(cluster, &["status", "-A", "-o", "yaml"]);
    assert!(all.contains(&format!("namespace: {ns}")), "{all}");
    assert!(ok(cluster, &["status", "-A"]).starts_with("NAMESPACE "));

    // why: the owner's annotation, the record of the admission, nothing to change.
    let why = json(cluster, &["why", &pod_name, "-n", &ns]);
    assert_eq!(why["policy"], "web");
    let because = why["because"].as_str().expect("because");
    // The Deployment's annotation, as its ReplicaSet carries it too.
    assert!(
        because.starts_with("the graceful.dev/policy annotation on ")
            && because.ends_with(" names web"),
        "{because}"
    );
    assert_eq!(why["admitted"]["shutdownBudgetSeconds"], 25);
    assert_eq!(why["ifCreatedNow"], serde_json::json!([]));
    let text = ok(cluster, &["why", &pod_name, "-n", &ns]);
    assert!(text.contains("Governed by: GracefulPolicy web"), "{text}");
    assert!(text.contains("nothing would change"), "{text}");

    // recommend: a command that applies the recommendation, run as printed.
    let commands = ok(cluster, &["recommend", "-n", &ns]);
    assert_eq!(
        commands,
        format!(
            "kubectl patch gracefulpolicy web -n {ns} --type merge -p '{{\"spec\":{{\"drain\":{{\"shutdownBudgetSeconds\":40}}}}}}'\n"
        )
    );
    let applied = Command::new("sh")
        .arg("-c")
        .arg(commands.replace(
            "kubectl ",
            &format!(
                "{} --kubeconfig {} ",
                repo().join("e2e/bin/kubectl").display(),
                cluster.kubeconfig.display()
            ),
        ))
        .output()
        .expect("sh runs");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(
        json(cluster, &["recommend", "-n", &ns])["items"],
        serde_json::json!([])
    );

    // A pod created now would get the longer grace period, 5 + 40 + 5, from the
    // Kubernetes default it had before graceful's first admission.
    let why = json(cluster, &["why", &pod_name, "-n", &ns]);
    let changes = why["ifCreatedNow"].as_array().expect("changes");
    let grace = changes
        .iter()
        .find(|c| c["field"] == "spec.terminationGracePeriodSeconds")
        .unwrap_or_else(|| panic!("no grace period change in {changes:?}"));
    assert_eq!(
        (&grace["from"], &grace["to"]),
        (&Value::from(30), &Value::from(50))
    );

    // kubectl's --context: an unknown one is an error that names it.
    let wrong = kubectl_graceful(cluster, &["status", "--context", "no-such-context"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no-such-context"));
    cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
