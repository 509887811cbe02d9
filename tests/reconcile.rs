//! The reconciler through a real kube-apiserver. No kubelet runs here, so the test
//! plays one, as KWOK does: it creates a Node, binds pods to it, and writes their status
//! through the status subresource; `graceful run` must name the OOM kills, restarts and
//! shutdowns over budget in the policy's status, conditions and Events, and count each
//! once, also across its own restart.

mod support;

use std::time::{Duration, Instant};

use graceful::api::{GracefulPolicy, GracefulPolicyStatus};
use graceful::mutate::{Capabilities, Governing, PodView, mutate};
use json_patch::jsonptr::Pointer;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::graceful::Graceful;

/// Every `graceful run` reconciles every namespace: tests that watch a status take
/// turns, so that only their own instance writes it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The record the webhook would have left on a pod it mutated.
const RECORD: &str = r#"{"policy":"web","mode":"Enforce","preStopSleepSeconds":5,"shutdownBudgetSeconds":25,"changes":[{"field":"spec.terminationGracePeriodSeconds","from":30,"to":35}]}"#;

/// Plays the kubelet of one Node.
struct Kubelet {
    node: String,
    pods: Api<Pod>,
}

impl Kubelet {
    async fn new(client: &Client, namespace: &str) -> Self {
        let node = format!("kubelet-{}", std::process::id());
        let nodes = Api::<Node>::all(client.clone());
        if nodes.get_opt(&node).await.unwrap().is_none() {
            let object: Node = serde_json::from_value(json!({"metadata": {"name": node}})).unwrap();
            nodes.create(&PostParams::default(), &object).await.unwrap();
        }
        Self {
            node,
            pods: Api::namespaced(client.clone(), namespace),
        }
    }

    /// A governed pod, bound to our node from the start (an unbound pod is deleted at
    /// once, not gracefully).
    async fn create(&self, name: &str) {
        let app = json!({"name": "app", "image": "registry.example/app:1"});
        self.create_governed(name, json!([app]), RECORD).await;
    }

    /// A pod of `containers` with the webhook's `record`.
    async fn create_governed(&self, name: &str, containers: Value, record: &str) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"graceful.dev/policy": "web"},
                         "annotations": {"graceful.dev/applied": record}},
            "spec": {"nodeName": self.node, "terminationGracePeriodSeconds": 35,
                     "containers": containers}
        }))
        .unwrap();
        self.pods
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }

    async fn report(&self, name: &str, state: Value, last_state: Value, restarts: i32) {
        self.report_containers(name, &[("app", state, last_state, restarts)])
            .await;
    }

    /// Each container's state, last state and restart count.
    async fn report_containers(&self, name: &str, containers: &[(&str, Value, Value, i32)]) {
        let statuses: Vec<Value> = containers
            .iter()
            .map(|(container, state, last_state, restarts)| {
                json!({"name": container, "image": "registry.example/app:1", "imageID": "",
                       "ready": false, "restartCount": restarts, "state": state,
                       "lastState": last_state})
            })
            .collect();
        let status = json!({"status": {"phase": "Running", "containerStatuses": statuses}});
        self.pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    /// A graceful delete (the apiserver sets the deadline), the container's end as the
    /// kubelet would report it `after` seconds into the grace period, and the final
    /// removal.
    async fn shut_down(&self, name: &str, exit_code: i32, reason: &str, after: i64) {
        self.shut_down_containers(name, &[("app", exit_code, reason, after)])
            .await;
    }

    /// [`Kubelet::shut_down`] with an end (exit code, reason, seconds into the grace
    /// period) for each container.
    async fn shut_down_containers(&self, name: &str, ends: &[(&str, i32, &str, i64)]) {
        self.pods
            .delete(name, &DeleteParams::default().grace_period(35))
            .await
            .unwrap();
        let pod = self.pods.get(name).await.unwrap();
        let deadline = pod.metadata.deletion_timestamp.unwrap().0;
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap();
        let statuses: Vec<(&str, Value, Value, i32)> = ends
            .iter()
            .map(|(container, exit_code, reason, after)| {
                let finished = deadline
                    .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(grace - after))
                    .unwrap();
                let state = json!({"terminated": {"exitCode": exit_code, "reason": reason,
                                                  "finishedAt": rfc3339(finished)}});
                (*container, state, json!({}), 0)
            })
            .collect();
        self.report_containers(name, &statuses).await;
        self.pods
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
}

fn rfc3339(time: k8s_openapi::jiff::Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn running() -> Value {
    json!({"running": {"startedAt": rfc3339(k8s_openapi::jiff::Timestamp::now())}})
}

/// A run that ended just now.
fn ended(exit_code: i32, reason: &str) -> Value {
    let finished = rfc3339(k8s_openapi::jiff::Timestamp::now());
    json!({"terminated": {"exitCode": exit_code, "reason": reason, "finishedAt": finished}})
}

async fn status_where<F>(
    policies: &Api<GracefulPolicy>,
    what: &str,
    check: F,
) -> GracefulPolicyStatus
where
    F: Fn(&GracefulPolicyStatus) -> bool,
{
    let check = &check;
    support::eventually(what, Duration::from_secs(20), || async move {
        let status = policies.get("web").await.ok()?.status?;
        check(&status).then_some(status)
    })
    .await
}

fn condition<'a>(status: &'a GracefulPolicyStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
    (&c.status, &c.reason, &c.message)
}

fn counts(status: &GracefulPolicyStatus) -> (i64, i64, i64) {
    let v = status.violations.clone().unwrap_or_default();
    (v.budget_exceeded, v.oom_killed, v.restarts)
}

/// Waits until graceful follows `pods` governed pods, so that what the test writes next
/// is a change it sees, not the first sight of a pod.
async fn tracking(graceful: &Graceful, pods: f64) {
    support::eventually(
        "graceful to track the pods",
        Duration::from_secs(20),
        || async { (graceful.metric("graceful_tracked_pods")? >= pods).then_some(()) },
    )
    .await;
}

/// A namespace with the policy `web`, a kubelet played for it and `graceful run`.
struct Scene {
    cluster: &'static support::Cluster,
    client: Client,
    ns: String,
    policies: Api<GracefulPolicy>,
    kubelet: Kubelet,
    graceful: Graceful,
}

impl Scene {
    async fn new(name: &str) -> Self {
        let cluster = support::cluster();
        let client = cluster.client().await;
        let ns = support::namespace(&client, name).await;
        cluster.apply_ok(&ns, support::POLICY);
        Self {
            cluster,
            policies: Api::namespaced(client.clone(), &ns),
            kubelet: Kubelet::new(&client, &ns).await,
            graceful: Graceful::start(cluster, name, &[]),
            client,
            ns,
        }
    }
}

#[tokio::test]
async fn violations_land_in_status_conditions_and_events_once() {
    let _serial = SERIAL.lock().await;
    let Scene {
        cluster,
        client,
        ns,
        policies,
        kubelet,
        graceful,
    } = Scene::new("reconcile").await;

    let ready = status_where(&policies, "a status", |s| condition(s, "Ready").0 == "True").await;
    assert_eq!(ready.termination_grace_period_seconds, Some(35));
    assert_eq!(counts(&ready), (0, 0, 0));

    for name in ["oom", "crashy", "killed", "clean"] {
        kubelet.create(name).await;
    }
    tracking(&graceful, 4.0).await;
    for name in ["oom", "crashy", "killed", "clean"] {
        kubelet.report(name, running(), json!({}), 0).await;
    }
    let pods = status_where(&policies, "4 pods", |s| {
        s.pods.as_ref().is_some_and(|p| p.matched == 4)
    })
    .await;
    assert_eq!(pods.pods.unwrap().mutated, 4);

    // An OOM kill and the restart that follows.
    let changed = Instant::now();
    kubelet
        .report("oom", running(), ended(137, "OOMKilled"), 1)
        .await;
    let status = status_where(&policies, "the OOM kill", |s| counts(s).1 == 1).await;
    let to_condition = changed.elapsed();
    let (state, reason, message) = condition(&status, "NoOOMKills");
    assert_eq!((state, reason), ("False", "OOMKilled"));
    assert!(message.contains("oom/app OOMKilled"), "{message}");
    assert_eq!(status.recent[0].pod, "oom");
    cluster.kubectl_ok(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=NoOOMKills=false",
        "--timeout=10s",
        "gp/web",
    ]);
    eprintln!("status change to condition: {to_condition:?}");

    // Two restarts after crashes.
    kubelet
        .report("crashy", running(), ended(2, "Error"), 2)
        .await;
    let status = status_where(&policies, "the restarts", |s| counts(s).2 == 3).await;
    let (state, _, message) = condition(&status, "NoRestarts");
    assert_eq!(state, "False");
    assert!(
        message.contains("crashy/app restarted 2 times; the last run ended with Error"),
        "{message}"
    );

    // A container SIGKILLed at the end of its grace period, one that finished in time.
    kubelet.shut_down("killed", 137, "Error", 35).await;
    kubelet.shut_down("clean", 0, "Completed", 8).await;
    let status = status_where(&policies, "the shutdowns", |s| {
        s.shutdown.as_ref().is_some_and(|d| d.observed == 2)
    })
    .await;
    assert_eq!(counts(&status).0, 1);
    let (state, reason, message) = condition(&status, "ShutdownsWithinBudget");
    assert_eq!((state, reason), ("False", "BudgetExceeded"));
    assert!(
        message.contains("killed/app SIGKILLed at the end of its grace period"),
        "{message}"
    );
    let shutdown = status.shutdown.clone().unwrap();
    assert_eq!((shutdown.p50_seconds, shutdown.max_seconds), (3.0, 30.0));
    assert_eq!(shutdown.recommended_budget_seconds, 50);
    assert_eq!(status.violations.as_ref().unwrap().total, 5);

    // Each violation is an Event on the pod and one on the policy.
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let listed = support::eventually("the Events", Duration::from_secs(10), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        (list.items.len() >= 6).then_some(list.items)
    })
    .await;
    for (kind, pod) in [
        ("OOMKilled", "oom"),
        ("Restarted", "crashy"),
        ("BudgetExceeded", "killed"),
    ] {
        for regarding in ["Pod", "GracefulPolicy"] {
            assert!(
                listed.iter().any(|e| e.reason.as_deref() == Some(kind)
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(regarding)
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.starts_with(&format!("{pod}/app")))),
                "no {kind} Event on the {regarding} for {pod}: {listed:?}"
            );
        }
    }

    // graceful restarts: the pods still show what happened, and nothing counts twice.
    drop(graceful);
    let graceful = Graceful::start(cluster, "reconcile", &[]);
    tracking(&graceful, 2.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = policies.get("web").await.unwrap().status.unwrap();
    assert_eq!(counts(&after), (1, 1, 3), "{after:?}");
    assert_eq!(after.recent, status.recent);
    // The kubelet's deletions with a grace period of 0, after the containers ended,
    // shortened nothing.
    assert_eq!(after.violations.as_ref().unwrap().grace_shortened, 0);

    // ...and what happens next still counts.
    kubelet
        .report("crashy", running(), ended(2, "Error"), 3)
        .await;
    let status = status_where(&policies, "one more restart", |s| counts(s).2 == 4).await;
    assert_eq!(status.recent[0].pod, "crashy");
    drop(graceful);
    cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test]
async fn the_status_follows_the_generation_and_the_mode() {
    let _serial = SERIAL.lock().await;
    let cluster = support::cluster();
    let client = cluster.client().await;
    let ns = support::namespace(&client, "generation").await;
    cluster.apply_ok(&ns, support::POLICY);
    let policies = Api::<GracefulPolicy>::namespaced(client.clone(), &ns);
    let graceful = Graceful::start(cluster, "generation", &[]);
    let status = status_where(&policies, "Ready", |s| condition(s, "Ready").0 == "True").await;
    let generation = policies.get("web").await.unwrap().metadata.generation;
    assert_eq!(status.observed_generation, generation);
    assert_eq!(condition(&status, "Ready").1, "InForce");

    let audit = json!({"spec": {"mode": "Audit", "drain": {"shutdownBudgetSeconds": 40}}});
    policies
        .patch("web", &PatchParams::default(), &Patch::Merge(&audit))
        .await
        .unwrap();
    let next = generation.map(|g| g + 1);
    let status = status_where(&policies, "the next generation", |s| {
        s.observed_generation == next
    })
    .await;
    assert_eq!(condition(&status, "Ready").1, "Auditing");
    assert_eq!(status.termination_grace_period_seconds, Some(50));
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == next)
    );
    drop(graceful);
    cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test]
async fn an_eviction_that_shortens_the_grace_period_is_the_clusters_not_the_apps() {
    let _serial = SERIAL.lock().await;
    let Scene {
        cluster,
        client: _,
        ns,
        policies,
        kubelet,
        graceful,
    } = Scene::new("evicted").await;
    kubelet.create("drained").await;
    tracking(&graceful, 1.0).await;
    kubelet.report("drained", running(), json!({}), 0).await;
    let status = status_where(&policies, "the pod's grace period", |s| {
        s.grace_periods.is_some()
    })
    .await;
    assert_eq!(status.grace_periods.as_deref(), Some("35"));

    // A drain through the Eviction API with 3 s of the pod's 35: the apiserver marks
    // the pod (DisruptionTarget) and deletes it; it is SIGKILLed at that deadline.
    // By hand: kube's `Api::evict` sends `delete_options`, which the apiserver ignores.
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": "drained", "namespace": ns},
                          "deleteOptions": {"gracePeriodSeconds": 3}});
    kubelet
        .pods
        .create_subresource::<Value, Value>(
            "eviction",
            "drained",
            &PostParams::default(),
            &eviction,
        )
        .await
        .unwrap();
    let pod = kubelet.pods.get("drained").await.unwrap();
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(3));
    let deadline = pod.metadata.deletion_timestamp.unwrap().0;
    kubelet
        .report(
            "drained",
            json!({"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": rfc3339(deadline)}}),
            json!({}),
            0,
        )
        .await;
    kubelet
        .pods
        .delete("drained", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();

    let status = status_where(&policies, "the eviction", |s| {
        s.violations.as_ref().is_some_and(|v| v.evicted == 1)
    })
    .await;
    let counts = status.violations.clone().unwrap();
    assert_eq!(
        (counts.grace_shortened, counts.budget_exceeded, counts.total),
        (1, 0, 0),
        "{status:?}"
    );
    let shortened = status
        .recent
        .iter()
        .find(|v| v.kind == graceful::api::ViolationKind::GraceShortened)
        .unwrap_or_else(|| panic!("{status:?}"));
    assert!(
        shortened
            .detail
            .contains("a 3 s grace period instead of its own 35 s, by the Eviction API"),
        "{}",
        shortened.detail
    );
    assert_eq!(condition(&status, "ShutdownsWithinBudget").0, "True");
    drop(graceful);
    cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

/// An Istio proxy injected as a regular container, SIGKILLed at the deadline after the
/// app drained: the record graceful's engine writes for the pod says the policy left
/// the proxy alone, so only the app's shutdown is measured and nothing is over budget.
#[tokio::test]
async fn a_mesh_proxy_run_as_a_regular_container_is_not_measured_as_the_app() {
    let _serial = SERIAL.lock().await;
    let Scene {
        cluster,
        client: _,
        ns,
        policies,
        kubelet,
        graceful,
    } = Scene::new("reconcile-proxy").await;

    let containers = json!([{"name": "app", "image": "registry.example/app:1"},
                            {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"}]);
    let policy: GracefulPolicy = serde_yaml_ng::from_str(support::POLICY).unwrap();
    let view: PodView =
        serde_json::from_value(json!({"spec": {"containers": containers}})).unwrap();
    let governing = Governing {
        name: "web",
        spec: &policy.spec,
        services: &[],
        tuning: &[],
    };
    let mutation = mutate(&view, Pointer::root(), governing, Capabilities::default());
    let record = serde_json::to_string(&mutation.record).unwrap();
    assert!(
        record.contains(r#""leftAlone":{"istio-proxy":"sidecar"}"#),
        "{record}"
    );
    kubelet.create_governed("meshed", containers, &record).await;
    tracking(&graceful, 1.0).await;
    kubelet
        .report_containers(
            "meshed",
            &[
                ("app", running(), json!({}), 0),
                ("istio-proxy", running(), json!({}), 0),
            ],
        )
        .await;
    kubelet
        .shut_down_containers(
            "meshed",
            &[
                ("app", 0, "Completed", 8),
                ("istio-proxy", 137, "Error", 35),
            ],
        )
        .await;

    let status = status_where(&policies, "the shutdown", |s| {
        s.shutdown.as_ref().is_some_and(|d| d.observed >= 1)
    })
    .await;
    assert_eq!(status.shutdown.as_ref().unwrap().observed, 1, "{status:?}");
    assert_eq!(counts(&status), (0, 0, 0), "{status:?}");
    assert_eq!(condition(&status, "ShutdownsWithinBudget").0, "True");
    drop(graceful);
    cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
