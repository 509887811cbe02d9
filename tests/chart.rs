//! The Helm chart with the real helm (e2e/bin/helm, built from its module): it lints, its
//! defaults render what `kubectl kustomize manifests/` does (Helm's own labels aside),
//! and on the local node `helm install` governs pods, `helm upgrade` changes a value
//! without losing the caBundle graceful injected, and `helm uninstall` leaves the CRD.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;

use support::graceful::first_mutated;
use support::{Cluster, repo};

const CHART: &str = "charts/graceful";

/// The labels Helm's conventions add to every object; kustomize's manifests have none.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

fn helm(kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let mut command = Command::new(repo().join("e2e/bin/helm"));
    command.current_dir(repo()).args(args);
    // helm keeps its own state out of the user's home.
    let home = std::env::temp_dir().join(format!("graceful-helm-{}", std::process::id()));
    for (variable, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(variable, home.join(dir));
    }
    if let Some(kubeconfig) = kubeconfig {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    let output = command
        .output()
        .expect("e2e/bin/helm runs (e2e/cluster build makes it)");
    assert!(
        output.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
        .filter(|value: &Value| !value.is_null())
        .collect()
}

/// Objects by kind, namespace and name, without Helm's labels.
fn by_identity(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|mut object| {
            if let Some(labels) = object["metadata"]["labels"].as_object_mut() {
                labels.retain(|key, _| !HELM_LABELS.contains(&key.as_str()));
            }
            let key = format!(
                "{}/{}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["namespace"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            (key, object)
        })
        .collect()
}

fn kustomize(dir: &str) -> BTreeMap<String, Value> {
    let output = Command::new(repo().join("e2e/bin/kubectl"))
        .args(["kustomize", dir])
        .current_dir(repo())
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    by_identity(documents(&String::from_utf8_lossy(&output.stdout)))
}

fn template(args: &[&str]) -> BTreeMap<String, Value> {
    let mut argv = vec![
        "template",
        "graceful",
        CHART,
        "--namespace",
        "graceful-system",
    ];
    argv.extend(args);
    by_identity(documents(&helm(None, &argv)))
}

fn assert_same(chart: &BTreeMap<String, Value>, kustomized: &BTreeMap<String, Value>) {
    let (ours, theirs): (Vec<&String>, Vec<&String>) =
        (chart.keys().collect(), kustomized.keys().collect());
    assert_eq!(ours, theirs, "the chart renders other objects");
    for (key, object) in chart {
        assert_eq!(object, &kustomized[key], "{key} differs");
    }
}

#[test]
fn the_chart_lints_in_both_certificate_modes() {
    let linted = helm(None, &["lint", "--strict", CHART]);
    assert!(linted.contains("0 chart(s) failed"), "{linted}");
    let linted = helm(
        None,
        &[
            "lint",
            "--strict",
            CHART,
            "--set",
            "certificates.mode=cert-manager",
        ],
    );
    assert!(linted.contains("0 chart(s) failed"), "{linted}");
}

#[test]
fn default_values_render_what_kustomize_builds() {
    let mut kustomized = kustomize("manifests");
    // `helm install --create-namespace` makes the namespace; namespace.create renders it.
    let namespace = kustomized
        .remove("Namespace//graceful-system")
        .expect("manifests/ has the namespace");
    assert_same(&template(&[]), &kustomized);
    // Proxies an injector adds after graceful's pass get a second pass, in both.
    let webhook = &kustomized["MutatingWebhookConfiguration//graceful"]["webhooks"][0];
    assert_eq!(webhook["reinvocationPolicy"], "IfNeeded");

    kustomized.insert("Namespace//graceful-system".into(), namespace);
    assert_same(&template(&["--set", "namespace.create=true"]), &kustomized);
}

#[test]
fn cert_manager_mode_renders_what_the_overlay_builds() {
    let mut kustomized = kustomize("manifests/overlays/cert-manager");
    kustomized.remove("Namespace//graceful-system");
    assert_same(
        &template(&["--set", "certificates.mode=cert-manager"]),
        &kustomized,
    );
}

#[test]
fn values_reach_the_objects() {
    let rendered = template(&[
        "--set",
        "replicas=3",
        "--set",
        "image.tag=9.9.9",
        "--set",
        "webhook.failurePolicy=Fail",
        "--set",
        "webhook.timeoutSeconds=7",
        "--set",
        "webhook.excludedNamespaces={monitoring}",
        "--set",
        "commonLabels.team=platform",
        "--set",
        "commonAnnotations.owner=sre",
        "--set",
        "certificates.validity=90d",
    ]);
    let deployment = &rendered["Deployment/graceful-system/graceful"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/graceful-dev/graceful:9.9.9");
    assert!(
        container["args"]
            .as_array()
            .expect("args")
            .contains(&Value::from("--cert-validity=90d"))
    );
    let webhook = &rendered["MutatingWebhookConfiguration//graceful"]["webhooks"][0];
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(webhook["timeoutSeconds"], 7);
    assert_eq!(
        webhook["namespaceSelector"]["matchExpressions"][0]["values"],
        serde_json::json!(["kube-system", "graceful-system", "monitoring"])
    );
    for object in rendered.values() {
        assert_eq!(object["metadata"]["labels"]["team"], "platform", "{object}");
        assert_eq!(
            object["metadata"]["annotations"]["owner"], "sre",
            "{object}"
        );
    }
}

/// graceful's image from the test build's binary, in the node's containerd.
fn load_image(cluster: &Cluster, reference: &str) {
    let archive = std::env::temp_dir().join(format!("graceful-chart-{}.tar", std::process::id()));
    let output = Command::new(repo().join("e2e/graceful-image"))
        .args([
            "--ref",
            reference,
            "--binary",
            env!("CARGO_BIN_EXE_graceful"),
        ])
        .arg("--out")
        .arg(&archive)
        .output()
        .expect("e2e/graceful-image runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    cluster.load(&archive);
    std::fs::remove_file(&archive).expect("the archive is removed");
}

fn webhook_config(cluster: &Cluster) -> Value {
    let json = cluster.kubectl_ok(&[
        "get",
        "mutatingwebhookconfiguration",
        "graceful",
        "-o",
        "json",
    ]);
    serde_json::from_str(&json).expect("JSON")
}

async fn ca_injected(cluster: &Cluster) -> String {
    support::eventually(
        "graceful's CA in the caBundle",
        Duration::from_secs(60),
        || async {
            let bundle = webhook_config(cluster)["webhooks"][0]["clientConfig"]["caBundle"].clone();
            bundle.as_str().filter(|b| !b.is_empty()).map(str::to_owned)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_uninstall_on_the_node() {
    let (cluster, _node) = support::node_cluster();
    let client = cluster.client().await;
    let release_namespace = format!("graceful-chart-{}", std::process::id());
    let reference = format!("localhost/graceful-chart:{}", std::process::id());
    load_image(cluster, &reference);
    let (repository, tag) = reference.rsplit_once(':').expect("a tag");
    let kubeconfig = Some(cluster.kubeconfig.as_path());
    let (image_repository, image_tag) = (
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
    );

    // --take-ownership: other tests of this cluster leave graceful's cluster-wide RBAC
    // behind, applied by kubectl; a first install on a clean cluster does not need it.
    helm(
        kubeconfig,
        &[
            "install",
            "graceful",
            CHART,
            "--namespace",
            &release_namespace,
            "--create-namespace",
            "--take-ownership",
            "--wait",
            "--timeout",
            "3m",
            "--set",
            &image_repository,
            "--set",
            &image_tag,
            "--set",
            "image.pullPolicy=Never",
        ],
    );
    let bundle = ca_injected(cluster).await;

    let namespace = support::namespace(&client, "chart").await;
    cluster.apply_ok(&namespace, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    first_mutated(&pods, "web").await;

    helm(
        kubeconfig,
        &[
            "upgrade",
            "graceful",
            CHART,
            "--namespace",
            &release_namespace,
            "--reuse-values",
            "--wait",
            "--timeout",
            "3m",
            "--set",
            "webhook.timeoutSeconds=5",
        ],
    );
    let config = webhook_config(cluster);
    assert_eq!(config["webhooks"][0]["timeoutSeconds"], 5);
    assert_eq!(
        config["webhooks"][0]["clientConfig"]["caBundle"].as_str(),
        Some(bundle.as_str()),
        "the upgrade kept the caBundle graceful owns"
    );
    first_mutated(&pods, "web").await;

    helm(
        kubeconfig,
        &[
            "uninstall",
            "graceful",
            "--namespace",
            &release_namespace,
            "--wait",
        ],
    );
    for object in [
        "mutatingwebhookconfiguration/graceful",
        "clusterrole/graceful",
        "clusterrolebinding/graceful",
        "clusterrole/graceful-webhook-ca",
        "clusterrolebinding/graceful-webhook-ca",
    ] {
        let gone = cluster.kubectl_ok(&["get", object, "--ignore-not-found"]);
        assert!(gone.trim().is_empty(), "{object} is left: {gone}");
    }
    let left = cluster.kubectl_ok(&[
        "get", "deployments,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,secrets,leases",
        "-n", &release_namespace, "-o", "name",
    ]);
    let left: Vec<&str> = left.lines().collect();
    // What graceful itself wrote at run time (not Helm's) stays with the namespace.
    assert_eq!(
        left,
        [
            "serviceaccount/default",
            "secret/graceful-webhook-tls",
            "lease.coordination.k8s.io/graceful-reconciler"
        ],
        "helm uninstall left more than graceful's runtime state"
    );
    let crd = cluster.kubectl_ok(&["get", "crd", "gracefulpolicies.graceful.dev", "-o", "name"]);
    assert_eq!(
        crd.trim(),
        "customresourcedefinition.apiextensions.k8s.io/gracefulpolicies.graceful.dev"
    );
    cluster.kubectl_ok(&[
        "delete",
        "namespace",
        &release_namespace,
        &namespace,
        "--wait=false",
    ]);
}
