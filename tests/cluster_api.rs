//! The GracefulPolicy API as a real kube-apiserver enforces it: the CRD installs with
//! kubectl, its schema and CEL rules reject bad policies with messages a user
//! understands, the status subresource works, and the cluster runs Deployments.

#[path = "fixtures/invalid_policies.rs"]
mod invalid_policies;
mod support;

use std::time::Duration;

use graceful::api::{GracefulPolicy, GracefulPolicyStatus, ViolationCounts};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use invalid_policies::{INVALID, LONG_NAME_MESSAGE, policy_yaml};

const POLICY: &str = r#"
apiVersion: graceful.dev/v1alpha1
kind: GracefulPolicy
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  drain:
    preStopSleepSeconds: 5
    shutdownBudgetSeconds: 20
"#;

#[tokio::test]
async fn kubectl_lists_policies_with_their_printer_columns() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "columns").await;
    cluster.apply_ok(&ns, POLICY);

    let table = cluster.kubectl_ok(&["get", "gracefulpolicies", "-n", &ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "MODE", "GRACE", "VIOLATIONS", "READY", "AGE"]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["web", "Enforce"]);

    let wide = cluster.kubectl_ok(&["get", "gp", "-n", &ns, "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MODE",
            "SLEEP",
            "BUDGET",
            "GIVES",
            "TUNING",
            "REC-SLEEP",
            "REC-BUDGET",
            "GRACE",
            "VIOLATIONS",
            "READY",
            "AGE"
        ]
    );
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["web", "Enforce", "5", "20"]);
}

#[tokio::test]
async fn the_apiserver_fills_in_the_defaults() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "defaults").await;
    cluster.apply_ok(
        &ns,
        "apiVersion: graceful.dev/v1alpha1\nkind: GracefulPolicy\nmetadata: {name: bare}\nspec: {}\n",
    );
    let policy = Api::<GracefulPolicy>::namespaced(client, &ns)
        .get("bare")
        .await
        .unwrap();
    let stored = serde_json::to_value(&policy.spec).unwrap();
    assert_eq!(
        stored,
        json!({
            "drain": {"preStopSleepSeconds": 5, "shutdownBudgetSeconds": 20, "safetyMarginSeconds": 5,
                      "preStop": "Auto", "existingHooks": "Keep", "tuning": "Recommend",
                      "recommend": {"dataPlaneAllowanceSeconds": 3, "minObservations": 5},
                      "auto": {"intervalSeconds": 3600,
                               "preStopSleepSeconds": {"min": 1, "max": 60},
                               "shutdownBudgetSeconds": {"min": 5, "max": 600}}},
            "mode": "Enforce",
            "targets": "All",
            "jobs": "Skip",
            "sidecars": {"shutdownSeconds": 5, "names": ["istio-proxy", "linkerd-proxy"],
                         "images": ["istio/proxyv2", "istio-release/proxyv2", "linkerd/proxy"],
                         "meshDrain": "Warn"}
        })
    );
}

#[tokio::test]
async fn invalid_policies_are_rejected_by_the_apiserver_with_a_clear_message() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "invalid").await;
    for (case, spec, message) in INVALID {
        let output = cluster.apply(&ns, &policy_yaml("bad", spec));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{case}: accepted");
        assert!(
            stderr.contains(message),
            "{case}: expected {message:?} in {stderr}"
        );
    }

    let yaml = policy_yaml(&"n".repeat(64), "spec: {}");
    let stderr = String::from_utf8_lossy(&cluster.apply(&ns, &yaml).stderr).into_owned();
    assert!(stderr.contains(LONG_NAME_MESSAGE), "{stderr}");

    let listed = Api::<GracefulPolicy>::namespaced(client, &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(listed.items.is_empty(), "nothing invalid was stored");
}

#[tokio::test]
async fn status_is_its_own_subresource() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "status").await;
    cluster.apply_ok(&ns, POLICY);
    let policies = Api::<GracefulPolicy>::namespaced(client, &ns);
    let before = policies.get("web").await.unwrap();
    let generation = before.metadata.generation.unwrap();

    let status = GracefulPolicyStatus {
        observed_generation: Some(generation),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "InForce".into(),
            message: "governing pods".into(),
            last_transition_time: Time(Timestamp::from_second(1_700_000_000).unwrap()),
            observed_generation: Some(generation),
        }],
        termination_grace_period_seconds: Some(30),
        grace_periods: Some("30-45".into()),
        violations: Some(ViolationCounts {
            budget_exceeded: 1,
            oom_killed: 0,
            restarts: 2,
            total: 3,
            window_seconds: Some(3600),
            window_start: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
            ..ViolationCounts::default()
        }),
        ..GracefulPolicyStatus::default()
    };
    let apply = json!({
        "apiVersion": "graceful.dev/v1alpha1",
        "kind": "GracefulPolicy",
        "status": status,
    });
    policies
        .patch_status(
            "web",
            &PatchParams::apply("graceful").force(),
            &Patch::Apply(&apply),
        )
        .await
        .unwrap();
    let read = policies.get("web").await.unwrap();
    assert_eq!(read.status.as_ref(), Some(&status));
    assert_eq!(
        read.metadata.generation,
        Some(generation),
        "status writes keep the generation"
    );

    let table = cluster.kubectl_ok(&["get", "gp", "web", "-n", &ns, "--no-headers"]);
    let row: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(row[..5], ["web", "Enforce", "30-45", "3", "True"]);

    cluster.kubectl_ok(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Ready",
        "--timeout=10s",
        "gracefulpolicy/web",
    ]);

    // A spec change bumps the generation and leaves the status alone; a status sent
    // through the main resource is ignored.
    let spec_patch = json!({
        "spec": {"drain": {"shutdownBudgetSeconds": 40}},
        "status": {"terminationGracePeriodSeconds": 999}
    });
    policies
        .patch("web", &PatchParams::default(), &Patch::Merge(&spec_patch))
        .await
        .unwrap();
    let after = policies.get("web").await.unwrap();
    assert_eq!(after.metadata.generation, Some(generation + 1));
    assert_eq!(after.spec.drain.budget.shutdown_budget_seconds, 40);
    assert_eq!(after.status.as_ref(), Some(&status));
}

#[tokio::test]
async fn a_deployment_applied_with_kubectl_produces_pods() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "deploy").await;
    cluster.apply_ok(
        &ns,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: registry.example/web:1}]
"#,
    );
    let pods = Api::<Pod>::namespaced(client, &ns);
    let names = support::eventually("2 pods of the Deployment", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            (list.items.len() == 2).then_some(list.items)
        }
    })
    .await;
    for pod in names {
        // No scheduler runs in this cluster: the pods wait for a node.
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    }
}
