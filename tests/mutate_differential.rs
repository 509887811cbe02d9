//! `graceful mutate` against the cluster: the same manifests are printed by `graceful
//! mutate` and applied with kubectl to a cluster where graceful's webhook runs, and the
//! pods the controllers create carry exactly what the preview printed for them, on every
//! field graceful changes. The pods need not run, only be created: a Node object of the
//! test's own stands in for a node, for the DaemonSet controller to make a pod for it.

mod support;

use std::process::Command;
use std::time::Duration;

use graceful::api::{APPLIED_ANNOTATION, POLICY_KEY};
use graceful::manifest;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use support::graceful::{Graceful, first_mutated, labelled_namespace};
use support::{POLICY, eventually};

/// One of each kind that makes pods, with init containers, a native sidecar, existing
/// exec and httpGet preStop hooks, and grace periods below and above the policy's 35 s.
/// `{ns}` and `{node}` are filled in.
const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: {ns}, annotations: {graceful.dev/policy: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      initContainers:
        - {name: migrate, image: {image}, command: [sh, -c, "true"]}
        - name: proxy
          image: {image}
          restartPolicy: Always
          command: [sleep, "3600"]
          lifecycle: {preStop: {httpGet: {path: /drain, port: 9901}}}
      containers:
        - name: app
          image: {image}
          command: [sleep, "3600"]
          lifecycle: {preStop: {exec: {command: [sh, -c, "sleep 2"]}}}
          readinessProbe: {exec: {command: ["true"]}}
        - {name: metrics, image: {image}, command: [sleep, "3600"]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: {ns}}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}, annotations: {graceful.dev/policy: web}}
    spec:
      terminationGracePeriodSeconds: 120
      containers:
        - {name: db, image: {image}, command: [sleep, "3600"]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: {ns}, annotations: {graceful.dev/policy: web}}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kubernetes.io/hostname: {node}}
      containers:
        - name: agent
          image: {image}
          command: [sleep, "3600"]
          lifecycle: {preStop: {httpGet: {path: /quit, port: 8080}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: {ns}, annotations: {graceful.dev/policy: web}}
spec:
  template:
    metadata: {labels: {app: once}}
    spec:
      restartPolicy: Never
      containers:
        - {name: once, image: {image}, command: [sleep, "3600"]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: {ns}, annotations: {graceful.dev/policy: web}}
spec:
  schedule: "0 3 * * *"
  suspend: true
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: nightly}}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 40
          containers:
            - {name: report, image: {image}, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
  namespace: {ns}
  labels: {app: solo}
  annotations: {graceful.dev/policy: web}
spec:
  terminationGracePeriodSeconds: 60
  containers:
    - name: solo
      image: {image}

      command: [sleep, "3600"]
      lifecycle: {preStop: {httpGet: {path: /stop, port: 8080}}}
      readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 30}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy, namespace: {ns}, annotations: {graceful.dev/policy: web}}
spec:
  replicas: 1
  selector: {app: legacy}
  template:
    metadata: {labels: {app: legacy}}
    spec:
      containers:
        - {name: legacy, image: {image}, command: [sleep, "3600"]}
"#;

/// The `app` label of each workload's pods, and the kind and name whose template
/// `graceful mutate` printed for them.
const WORKLOADS: [(&str, &str); 7] = [
    ("web", "Deployment"),
    ("db", "StatefulSet"),
    ("agent", "DaemonSet"),
    ("once", "Job"),
    ("nightly", "CronJob"),
    ("solo", "Pod"),
    ("legacy", "ReplicationController"),
];

/// What graceful changes in a pod: its label and record, its grace period, and per
/// container the preStop hook and the readiness timings, each absent one as the
/// apiserver defaults it (a printed template has no defaults; a created pod has them).
/// The other defaults inside hooks and probes (`scheme`, `successThreshold`) are left
/// out: graceful does not write them.
fn governed_fields(metadata: &Value, spec: &Value) -> Value {
    let containers: Vec<Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|list| spec[list].as_array().cloned().unwrap_or_default())
        .map(|c| {
            let hook = &c["lifecycle"]["preStop"];
            let probe = &c["readinessProbe"];
            json!({
                "name": c["name"],
                "preStop": {
                    "sleep": hook["sleep"],
                    "exec": hook["exec"],
                    "httpGet": {"path": hook["httpGet"]["path"], "port": hook["httpGet"]["port"]},
                },
                "readiness": probe.as_object().map(|_| json!({
                    "periodSeconds": or_default(&probe["periodSeconds"], 10),
                    "failureThreshold": or_default(&probe["failureThreshold"], 3),
                    "timeoutSeconds": or_default(&probe["timeoutSeconds"], 1),
                })),
            })
        })
        .collect();
    let grace = or_default(&spec["terminationGracePeriodSeconds"], 30);
    let applied: Value = metadata["annotations"][APPLIED_ANNOTATION]
        .as_str()
        .map_or(Value::Null, |record| {
            serde_json::from_str(record).expect("the record is JSON")
        });
    json!({
        "label": metadata["labels"][POLICY_KEY],
        "applied": applied,
        "grace": grace,
        "containers": containers,
    })
}

/// A field as the apiserver stores it: `default` when absent.
fn or_default(field: &Value, default: i64) -> Value {
    match field {
        Value::Null => json!(default),
        set => set.clone(),
    }
}

/// The pod template `graceful mutate` printed for each workload, by kind.
fn previewed(manifests: &str, policy: &str) -> Vec<(String, Value)> {
    let dir = std::env::temp_dir().join(format!("graceful-differential-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifests.yaml"), manifests).unwrap();
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_graceful"))
        .current_dir(&dir)
        .args(["mutate", "-f", "manifests.yaml", "--policy", "policy.yaml"])
        .output()
        .expect("graceful runs");
    assert!(output.status.success(), "{output:?}");
    let stream = manifest::read(&String::from_utf8(output.stdout).unwrap()).unwrap();
    manifest::objects(&stream)
        .into_iter()
        .map(|object| {
            let workload = manifest::workload(object.document, object.value)
                .unwrap()
                .expect("every document makes pods");
            let template = workload.root.resolve(object.value).unwrap().clone();
            (workload.source.kind, template)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_create_the_pods_that_mutate_printed() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    let node = format!("differential-{}", std::process::id());
    let object: Node = serde_json::from_value(json!({"metadata": {
        "name": node, "labels": {"kubernetes.io/hostname": node}}}))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &object)
        .await
        .expect("the Node is created");
    let label = format!("differential-{}", std::process::id());
    let ns = labelled_namespace(cluster, &client, "differential", &label).await;
    let graceful = Graceful::start(cluster, "differential", &[]);
    graceful.register_for(cluster, &label);
    let policy = POLICY.replace(
        "metadata: {name: web}",
        &format!("metadata: {{name: web, namespace: {ns}}}"),
    );
    cluster.apply_ok(&ns, &policy);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    first_mutated(&pods, "web").await;

    let manifests = MANIFESTS
        .replace("{ns}", &ns)
        .replace("{node}", &node)
        .replace("{image}", "registry.example/app:1");
    let preview = previewed(&manifests, &policy);
    assert_eq!(preview.len(), WORKLOADS.len());

    cluster.apply_ok(&ns, &manifests);
    cluster.kubectl_ok(&[
        "create",
        "job",
        "-n",
        &ns,
        "manual",
        "--from=cronjob/nightly",
    ]);

    for ((app, kind), (printed_kind, template)) in WORKLOADS.iter().zip(&preview) {
        assert_eq!(kind, printed_kind);
        let selector = ListParams::default().labels(&format!("app={app}"));
        let pod = eventually(
            &format!("a pod of {kind} {app}"),
            Duration::from_secs(60),
            || {
                let pods = pods.clone();
                let selector = selector.clone();
                async move { pods.list(&selector).await.ok()?.items.into_iter().next() }
            },
        )
        .await;
        let pod = serde_json::to_value(&pod).unwrap();
        let expected = governed_fields(&template["metadata"], &template["spec"]);
        let actual = governed_fields(&pod["metadata"], &pod["spec"]);
        assert_eq!(expected["label"], "web", "{kind}: the preview governs it");
        assert_eq!(
            actual, expected,
            "{kind} {app}: the cluster's pod differs from the preview"
        );
    }
    drop(graceful);
    Api::<Node>::all(client)
        .delete(&node, &Default::default())
        .await
        .expect("the Node is deleted");
}
