//! The webhook through a real kube-apiserver: `graceful run` serves it on loopback, the
//! apiserver calls it for every pod the controller-manager creates, and the pods come
//! out patched (or, with graceful stopped, unpatched but created).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;

use support::graceful::{Graceful, governed_pod, labelled_namespace};

fn deployment(name: &str, template_annotation: Option<&str>) -> String {
    let annotations = template_annotation
        .map(|p| format!("annotations: {{graceful.dev/policy: {p}}}"))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata:
      labels: {{app: {name}}}
      {annotations}
    spec:
      containers:
        - name: app
          image: registry.example/app:1.0
          readinessProbe: {{httpGet: {{path: /ready, port: 8080}}, periodSeconds: 10}}
        - name: sidecar
          image: registry.example/sidecar:1.0
"#
    )
}

/// The pods of `app` other than `except`, once there is at least one.
async fn new_pods(client: &Client, namespace: &str, app: &str, except: &[String]) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&format!("app={app}"));
    support::eventually(
        &format!("a new pod of {app}"),
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            let params = params.clone();
            async move {
                let list = pods.list(&params).await.ok()?;
                let fresh: Vec<Pod> = list
                    .items
                    .into_iter()
                    .filter(|p| !except.contains(&p.metadata.name.clone().unwrap_or_default()))
                    .collect();
                (!fresh.is_empty()).then_some(fresh)
            }
        },
    )
    .await
}

/// The policy's drain on every container, and its readiness timings on the first
/// container's probe when the pod has one (`probed`).
fn assert_governed(pod: &Pod, probed: bool) {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("graceful.dev/policy").map(String::as_str),
        Some("web"),
        "{name}"
    );
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let record: Value = serde_json::from_str(&annotations["graceful.dev/applied"]).unwrap();
    assert_eq!(record["policy"], "web");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.termination_grace_period_seconds, Some(35), "{name}");
    for container in &spec.containers {
        let sleep = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.sleep.as_ref())
            .map(|s| s.seconds);
        assert_eq!(sleep, Some(5), "{name}/{}", container.name);
    }
    let probe = spec.containers[0].readiness_probe.as_ref();
    assert_eq!(probe.is_some(), probed, "{name}");
    let Some(probe) = probe else { return };
    assert_eq!(probe.period_seconds, Some(2));
    assert_eq!(probe.failure_threshold, Some(1));
    assert_eq!(probe.timeout_seconds, Some(1));
}

fn assert_untouched(pod: &Pod) {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert!(
        !labels.contains_key("graceful.dev/policy"),
        "{:?}",
        pod.metadata
    );
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert!(spec.containers.iter().all(|c| c.lifecycle.is_none()));
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

#[tokio::test]
async fn pods_are_patched_through_the_apiserver_and_created_without_graceful() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let label = std::process::id().to_string();
    let graceful = Graceful::start(cluster, "webhook", &[]);
    let metrics = graceful.metrics();
    assert!(
        metrics.contains("graceful_owner_cache_objects"),
        "{metrics}"
    );
    let config = graceful.register_for(cluster, &label);
    let shop = labelled_namespace(cluster, &client, "webhook", &label).await;
    let other = labelled_namespace(cluster, &client, "webhook-other", &label).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &shop);

    // A policy created after graceful started governs pods within a second.
    cluster.apply_ok(&shop, support::POLICY);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pod = pods
        .create(&PostParams::default(), &governed_pod("first", "web"))
        .await
        .unwrap();
    assert_governed(&pod, false);

    // A Deployment whose pod template names the policy.
    cluster.apply_ok(&shop, &deployment("templated", Some("web")));
    for pod in new_pods(&client, &shop, "templated", &[]).await {
        assert_governed(&pod, true);
    }

    // A Deployment annotated with kubectl: its next rollout is governed.
    cluster.apply_ok(&shop, &deployment("annotated", None));
    let before = new_pods(&client, &shop, "annotated", &[]).await;
    before.iter().for_each(assert_untouched);
    cluster.kubectl_ok(&[
        "annotate",
        "-n",
        &shop,
        "deployment",
        "annotated",
        "graceful.dev/policy=web",
    ]);
    cluster.kubectl_ok(&["rollout", "restart", "-n", &shop, "deployment", "annotated"]);
    for pod in new_pods(&client, &shop, "annotated", &names(&before)).await {
        assert_governed(&pod, true);
    }

    // The mirror of a static pod is never changed, whatever it names: graceful decides
    // that itself, with no matchCondition in the webhook configuration.
    let mut mirror = governed_pod("mirror", "web");
    let annotations = mirror.metadata.annotations.get_or_insert_default();
    annotations.insert("kubernetes.io/config.mirror".into(), "abc".into());
    mirror.spec.as_mut().unwrap().node_name = Some("a-node".into());
    let mirror = pods.create(&PostParams::default(), &mirror).await.unwrap();
    assert_untouched(&mirror);

    // A policy never governs pods of another namespace.
    let elsewhere = Api::<Pod>::namespaced(client.clone(), &other)
        .create(&PostParams::default(), &governed_pod("elsewhere", "web"))
        .await
        .unwrap();
    assert_untouched(&elsewhere);

    // With graceful stopped, pods are still created, unpatched.
    drop(graceful);
    let created = pods
        .create(
            &PostParams::default(),
            &governed_pod("without-graceful", "web"),
        )
        .await
        .unwrap();
    assert_untouched(&created);

    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &config]);
    for namespace in [&shop, &other] {
        cluster.kubectl_ok(&["delete", "namespace", namespace, "--wait=false"]);
    }
}

/// What graceful leaves alone, through the apiserver: with `targets: Serving` only the
/// container a Service reaches is changed, a native sidecar gets nothing but its time in
/// the grace period, the apiserver (with ContainerStopSignals) keeps the stop signal,
/// and the pods of a Job the selector matches are not governed.
#[tokio::test]
async fn serving_containers_sidecars_and_jobs_through_the_apiserver() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let label = format!("{}-serving", std::process::id());
    let graceful = Graceful::start(cluster, "webhook-serving", &[]);
    let config = graceful.register_for(cluster, &label);
    let shop = labelled_namespace(cluster, &client, "webhook-serving", &label).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &shop);
    cluster.apply_ok(
        &shop,
        r#"
apiVersion: graceful.dev/v1alpha1
kind: GracefulPolicy
metadata: {name: web}
spec:
  selector: {matchLabels: {tier: web}}
  targets: Serving
  drain: {preStopSleepSeconds: 5, shutdownBudgetSeconds: 20, safetyMarginSeconds: 5, stopSignal: SIGQUIT}
  sidecars: {shutdownSeconds: 10}
---
apiVersion: v1
kind: Service
metadata: {name: storefront}
spec:
  selector: {app: storefront}
  ports: [{port: 80, targetPort: http}]
"#,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "storefront", "labels": {"app": "storefront", "tier": "web"}},
        "spec": {
            "initContainers": [{"name": "shipper", "image": "registry.example/shipper:1", "restartPolicy": "Always"}],
            "containers": [
                {"name": "nginx", "image": "nginx:1.27", "ports": [{"name": "http", "containerPort": 8080}]},
                {"name": "exporter", "image": "registry.example/exporter:1", "ports": [{"containerPort": 9100}]}
            ]
        }
    }))
    .unwrap();
    let pod = support::eventually("the pod governed", Duration::from_secs(30), || {
        let (pods, pod) = (pods.clone(), pod.clone());
        async move {
            let created = pods.create(&PostParams::default(), &pod).await.ok()?;
            if support::graceful::mutated_for(&created, "web") {
                return Some(created);
            }
            let name = created.metadata.name.clone()?;
            pods.delete(&name, &Default::default()).await.ok()?;
            None
        }
    })
    .await;
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.termination_grace_period_seconds,
        Some(40),
        "5 + 20 + 10 + 5"
    );
    assert_eq!(spec.os.as_ref().map(|os| os.name.as_str()), Some("linux"));
    let nginx = spec.containers[0]
        .lifecycle
        .as_ref()
        .expect("nginx is changed");
    assert_eq!(nginx.stop_signal.as_deref(), Some("SIGQUIT"));
    assert!(nginx.pre_stop.is_some());
    assert!(
        spec.containers[1].lifecycle.is_none(),
        "no Service reaches the exporter"
    );
    let init = spec.init_containers.as_ref().unwrap();
    assert!(init[0].lifecycle.is_none(), "nothing on a native sidecar");

    cluster.apply_ok(
        &shop,
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: reindex}
spec:
  template:
    metadata: {labels: {tier: web, app: reindex}}
    spec:
      restartPolicy: Never
      containers: [{name: reindex, image: registry.example/reindex:1, ports: [{name: http, containerPort: 8080}]}]
"#,
    );
    for pod in new_pods(&client, &shop, "reindex", &[]).await {
        assert_untouched(&pod);
    }

    drop(graceful);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &config]);
    cluster.kubectl_ok(&["delete", "namespace", &shop, "--wait=false"]);
}
