//! Installing graceful with kubectl, through a real kube-apiserver: the CRDs, the base
//! and every overlay pass a server-side dry run, the local overlay changes only the
//! image, the cert-manager overlay serves mounted files, and graceful's service account
//! may do exactly what the code needs: `graceful run` with nothing more mints its CA,
//! injects it, mutates pods and writes status.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::{Value, json};

use support::Cluster;
use support::graceful::{Graceful, Launch, labelled_namespace, register_webhook};

/// The tests here apply objects named as the manifests name them (the webhook
/// configuration `graceful`); one at a time.
static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SA: &str = "system:serviceaccount:graceful-system:graceful";

/// The objects `kubectl kustomize dir` renders.
fn render(cluster: &Cluster, dir: &str) -> Vec<Value> {
    let yaml = cluster.kubectl_ok(&["kustomize", dir]);
    serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|document| {
            let value: Value = serde::Deserialize::deserialize(document).expect("YAML");
            value
        })
        .collect()
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

/// `kubectl apply --server-side --dry-run=server` of `objects`.
fn dry_run(cluster: &Cluster, objects: &[Value]) -> String {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let output = cluster.kubectl_with_input(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(&list.to_string()),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Namespaced objects cannot be dry-run into a namespace that does not exist.
fn ensure_namespace(cluster: &Cluster) {
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: graceful-system}\n";
    cluster.kubectl_with_input(&["apply", "--server-side", "-f", "-"], Some(yaml));
}

#[test]
fn crds_base_and_every_overlay_pass_a_server_side_dry_run() {
    let _one = INSTALL.blocking_lock();
    let cluster = support::cluster();
    ensure_namespace(cluster);
    let crds = cluster.kubectl_ok(&["apply", "--server-side", "--dry-run=server", "-f", "crds/"]);
    assert!(crds.contains("gracefulpolicies.graceful.dev"), "{crds}");

    let base = render(cluster, "manifests");
    let kinds: Vec<&str> = base.iter().map(kind).collect();
    for expected in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "MutatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(&expected), "{expected} in {kinds:?}");
    }
    let applied = dry_run(cluster, &base);
    assert_eq!(applied.lines().count(), base.len(), "{applied}");

    // The local overlay is the base with the local image, never pulled.
    let local = render(cluster, "manifests/overlays/local");
    dry_run(cluster, &local);
    let mut expected = base.clone();
    for object in &mut expected {
        if kind(object) == "Deployment" {
            let container = &mut object["spec"]["template"]["spec"]["containers"][0];
            container["image"] = "localhost/graceful:dev".into();
            container["imagePullPolicy"] = "Never".into();
        }
    }
    assert_eq!(local, expected);

    let loopback = render(cluster, "manifests/overlays/loopback");
    assert_eq!(loopback.len(), 1);
    dry_run(cluster, &loopback);

    // cert-manager's own kinds need its CRDs; the rest must apply.
    let with_cert_manager = render(cluster, "manifests/overlays/cert-manager");
    let (cert_manager, rest): (Vec<Value>, Vec<Value>) =
        with_cert_manager.into_iter().partition(|object| {
            object["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("cert-manager.io/")
        });
    let mut cert_manager_kinds: Vec<&str> = cert_manager.iter().map(kind).collect();
    cert_manager_kinds.sort_unstable();
    assert_eq!(cert_manager_kinds, ["Certificate", "Issuer"]);
    dry_run(cluster, &rest);
    let deployment = rest
        .iter()
        .find(|o| kind(o) == "Deployment")
        .expect("a Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--tls-cert-file=") && args.contains("--tls-key-file="),
        "{args}"
    );
    let webhook = rest
        .iter()
        .find(|o| kind(o) == "MutatingWebhookConfiguration")
        .expect("a webhook");
    assert_eq!(
        webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "graceful-system/graceful-webhook"
    );
    // graceful's own CA is not used, nor its permissions.
    let names: Vec<&str> = rest
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"graceful-certificates") && !names.contains(&"graceful-webhook-ca"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_account_may_do_what_the_code_needs_and_nothing_more() {
    let _one = INSTALL.lock().await;
    let cluster = support::cluster();
    ensure_namespace(cluster);
    let rbac: Vec<Value> = render(cluster, "manifests")
        .into_iter()
        .filter(|object| {
            matches!(
                kind(object),
                "Namespace"
                    | "ServiceAccount"
                    | "ClusterRole"
                    | "ClusterRoleBinding"
                    | "Role"
                    | "RoleBinding"
            )
        })
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": rbac});
    let output = cluster.kubectl_with_input(
        &["apply", "--server-side", "-f", "-"],
        Some(&list.to_string()),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let can = |args: &str| {
        let mut argv = vec!["auth", "can-i", "--as", SA];
        argv.extend(args.split_whitespace());
        let output = cluster.kubectl(&argv);
        String::from_utf8_lossy(&output.stdout).trim() == "yes"
    };
    let yes = [
        // Policy and owner caches, the reconciler's pod watch.
        "list gracefulpolicies.graceful.dev -A",
        "watch gracefulpolicies.graceful.dev -A",
        "patch gracefulpolicies.graceful.dev --subresource=status -n shop",
        "list pods -A",
        "watch pods -A",
        // The Service cache behind targets: Serving.
        "list services -A",
        "watch services -A",
        "list endpointslices.discovery.k8s.io -A",
        "watch endpointslices.discovery.k8s.io -A",
        "get replicasets.apps -n shop",
        "watch deployments.apps -A",
        "list statefulsets.apps -A",
        "list daemonsets.apps -A",
        "get jobs.batch -n shop",
        "watch cronjobs.batch -A",
        "list replicationcontrollers -A",
        "get replicationcontrollers -n shop",
        // Events on pods and policies.
        "create events.events.k8s.io -n shop",
        "patch events.events.k8s.io -n shop",
        // The status writers' Lease.
        "create leases.coordination.k8s.io -n graceful-system",
        "get leases.coordination.k8s.io/graceful-reconciler -n graceful-system",
        "update leases.coordination.k8s.io/graceful-reconciler -n graceful-system",
        // Its own CA: the Secret and its webhook configuration's caBundle.
        "create secrets -n graceful-system",
        "get secrets/graceful-webhook-tls -n graceful-system",
        "update secrets/graceful-webhook-tls -n graceful-system",
        "get mutatingwebhookconfigurations.admissionregistration.k8s.io/graceful",
        "patch mutatingwebhookconfigurations.admissionregistration.k8s.io/graceful",
    ];
    let no = [
        // Pods are changed by answering the apiserver, never written.
        "create pods -n shop",
        "update pods -n shop",
        "patch pods -n shop",
        "delete pods -n shop",
        // Secrets: only its own, in its own namespace.
        "get secrets -n default",
        "list secrets -n graceful-system",
        "get secrets/other -n graceful-system",
        "update secrets/other -n graceful-system",
        "create secrets -n shop",
        // Policies' spec, in any namespace.
        "update gracefulpolicies.graceful.dev -n shop",
        "patch gracefulpolicies.graceful.dev -n shop",
        "create gracefulpolicies.graceful.dev -n graceful-system",
        "delete gracefulpolicies.graceful.dev -n shop",
        // Only its own webhook configuration and Lease.
        "patch mutatingwebhookconfigurations.admissionregistration.k8s.io/other",
        "update leases.coordination.k8s.io/other -n graceful-system",
        "create leases.coordination.k8s.io -n shop",
        "delete leases.coordination.k8s.io/graceful-reconciler -n graceful-system",
        // Nothing else that graceful does not call.
        "update deployments.apps -n shop",
        "create pods/eviction -n shop",
        "* *",
    ];
    let wrong: Vec<String> = yes
        .iter()
        .filter(|args| !can(args))
        .map(|args| format!("no to {args}"))
        .chain(
            no.iter()
                .filter(|args| can(args))
                .map(|args| format!("yes to {args}")),
        )
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");

    // graceful as the service account, on the host: its own CA, the Lease, the caches,
    // the status writes all work with these permissions alone.
    let kubeconfig = impersonating(cluster);
    let graceful = Graceful::launch(
        cluster,
        &Launch {
            name: "as-service-account",
            namespace: "graceful-system",
            lease: Some("graceful-reconciler"),
            kubeconfig: Some(&kubeconfig),
            args: &["--tls-san", "127.0.0.1"],
            ..Launch::default()
        },
    );
    graceful.wait_ready();
    let label = format!("install-{}", std::process::id());
    register_webhook(cluster, "graceful", &[graceful.webhook_port], None, &label);
    let client = cluster.client().await;
    let namespace = labelled_namespace(cluster, &client, "install", &label).await;
    cluster.apply_ok(&namespace, support::POLICY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    support::graceful::first_mutated(&pods, "web").await;
    // Its own writes: other graceful processes sharing the cluster write status too.
    support::eventually("a status write", Duration::from_secs(30), || {
        let wrote = graceful.metric("graceful_status_writes_total{result=\"ok\"}");
        async move { wrote.filter(|&n| n > 0.0) }
    })
    .await;
    // The series exists at zero from the start.
    assert_eq!(
        graceful.metric("graceful_status_writes_total{result=\"error\"}"),
        Some(0.0)
    );
    let log = graceful.log();
    assert!(!log.contains("forbidden"), "{log}");

    drop(graceful);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", "graceful"]);
    cluster.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
}

/// The cluster's admin kubeconfig, impersonating graceful's service account.
fn impersonating(cluster: &Cluster) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&cluster.kubeconfig).expect("the kubeconfig");
    let mut config: Value = serde_yaml_ng::from_str(&text).expect("a kubeconfig");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"]["as"] = json!(SA);
        user["user"]["as-groups"] = json!([
            "system:serviceaccounts",
            "system:serviceaccounts:graceful-system",
            "system:authenticated"
        ]);
    }
    let path = std::env::temp_dir().join(format!(
        "graceful-install-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(&path, serde_json::to_string(&config).expect("JSON")).expect("written");
    path
}
