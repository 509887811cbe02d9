//! What graceful reports of real shutdowns, on the real node: a container over its
//! memory limit, one that ignores SIGTERM past its budget and one that crashes are each
//! named in their policy's conditions, counters, recent list and Events; `kubectl wait`
//! works on those conditions; the shutdown percentiles and the recommended budget come
//! from the shutdowns the kubelet carried out. The test prints how long each report
//! took to reach the status after the kubelet reported the violation (BENCHMARKS.md).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use graceful::api::{GracefulPolicy, GracefulPolicyStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use support::graceful::{Graceful, labelled_namespace};
use support::{TEST_IMAGE, eventually, node_cluster};

const POLICY: &str = "reports";
/// Grace period 1 + 2 + 1 = 4 s, so a stubborn container is killed 3 s after its
/// preStop sleep, past its 2 s budget.
const POLICY_YAML: &str = r#"
apiVersion: graceful.dev/v1alpha1
kind: GracefulPolicy
metadata: {name: reports}
spec:
  drain: {preStopSleepSeconds: 1, shutdownBudgetSeconds: 2, safetyMarginSeconds: 1}
"#;

/// Quits at SIGTERM, well within the budget.
const POLITE: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";
/// Ignores SIGTERM (and so does its child), so the kubelet kills it at the deadline.
const STUBBORN: &str = "trap '' TERM; sleep 3600 & wait";
/// Doubles a string until the memory limit stops it.
const HOG: &str = "a=x; while true; do a=\"$a$a\"; done";
/// Fails after a second, and is restarted.
const CRASHER: &str = "sleep 1; exit 3";

/// A pod governed by the policy, pinned to the real node, with a grace period graceful
/// raises to the policy's 4 s.
fn pod(name: &str, node: &str, script: &str, restart: &str, memory: Option<&str>) -> Pod {
    let mut container = json!({"name": "app", "image": TEST_IMAGE, "imagePullPolicy": "Never",
                               "command": ["sh", "-c", script]});
    if let Some(memory) = memory {
        container["resources"] = json!({"limits": {"memory": memory}});
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"graceful.dev/policy": POLICY}},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "restartPolicy": restart,
                 "terminationGracePeriodSeconds": 1, "containers": [container]}
    }))
    .expect("a pod")
}

/// The violation the kubelet reported for a pod, as the test sees it in the API.
fn violation_seen(pod: &Pod) -> Option<&'static str> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let terminated = |state: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        state.and_then(|s| s.terminated.clone())
    };
    if let Some(ended) = terminated(status.state.as_ref()) {
        if ended.reason.as_deref() == Some("OOMKilled") {
            return Some("OOMKilled");
        }
        if pod.metadata.deletion_timestamp.is_some() && ended.exit_code == 137 {
            return Some("BudgetExceeded");
        }
    }
    (status.restart_count > 0).then_some("Restarted")
}

fn counted(status: &GracefulPolicyStatus, kind: &str) -> i64 {
    let Some(violations) = status.violations.as_ref() else {
        return 0;
    };
    match kind {
        "OOMKilled" => violations.oom_killed,
        "BudgetExceeded" => violations.budget_exceeded,
        _ => violations.restarts,
    }
}

/// The condition of `type_` as (status, reason).
fn condition(status: &GracefulPolicyStatus, type_: &str) -> Option<(String, String)> {
    let found = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((found.status.clone(), found.reason.clone()))
}

/// Which pod shows which violation, and which condition it turns False.
const EXPECTED: [(&str, &str, &str); 3] = [
    ("hog", "OOMKilled", "NoOOMKills"),
    ("crasher", "Restarted", "NoRestarts"),
    ("stubborn", "BudgetExceeded", "ShutdownsWithinBudget"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_violations_reach_the_status_conditions_and_events() {
    let (cluster, node) = node_cluster();
    let client = cluster.client().await;
    let label = format!("reports-{}", std::process::id());
    let namespace = labelled_namespace(cluster, &client, "reports", &label).await;
    let graceful = Graceful::start(cluster, "reports", &[]);
    graceful.register_for(cluster, &label);
    cluster.apply_ok(&namespace, POLICY_YAML);
    let policies: Api<GracefulPolicy> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    // Watched from the start: the pods for when the kubelet reports a violation, the
    // policy for when graceful counts it.
    let mut pod_updates = watcher(pods.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut policy_updates = watcher(policies.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();

    let polite = ["polite-1", "polite-2"];
    let mut to_create = vec![
        pod("hog", node, HOG, "Never", Some("32Mi")),
        pod("crasher", node, CRASHER, "Always", None),
        pod("stubborn", node, STUBBORN, "Always", None),
    ];
    to_create.extend(
        polite
            .iter()
            .map(|name| pod(name, node, POLITE, "Always", None)),
    );
    for pod in &to_create {
        let created = pods
            .create(&PostParams::default(), pod)
            .await
            .expect("the pod is created");
        let governed = created.metadata.labels.unwrap_or_default();
        assert_eq!(
            governed.get("graceful.dev/policy").map(String::as_str),
            Some(POLICY),
            "the webhook governed {:?}",
            created.metadata.name
        );
    }
    // The three that shut down do so once running, each from a delete.
    for name in polite.iter().copied().chain(["stubborn"]) {
        eventually(
            &format!("{name} running"),
            Duration::from_secs(60),
            || async {
                let pod = pods.get(name).await.ok()?;
                let status = pod.status?.container_statuses?.into_iter().next()?;
                status.state?.running.map(|_| ())
            },
        )
        .await;
        pods.delete(name, &DeleteParams::default())
            .await
            .expect("the delete is accepted");
    }

    // When each violation was first in the API (the kubelet's report) and first in the
    // policy's counters (graceful's).
    let mut reported: BTreeMap<&str, Instant> = BTreeMap::new();
    let mut counted_at: BTreeMap<&str, Instant> = BTreeMap::new();
    let mut status = GracefulPolicyStatus::default();
    let deadline = tokio::time::sleep(Duration::from_secs(90));
    tokio::pin!(deadline);
    while counted_at.len() < EXPECTED.len()
        || status.shutdown.as_ref().is_none_or(|s| s.observed < 3)
    {
        tokio::select! {
            Some(update) = pod_updates.next() => {
                let Ok(pod) = update else { continue };
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Some(kind) = violation_seen(&pod)
                    && EXPECTED.iter().any(|(p, k, _)| *p == name && *k == kind)
                {
                    reported.entry(kind).or_insert_with(Instant::now);
                }
            }
            Some(update) = policy_updates.next() => {
                let Ok(policy) = update else { continue };
                status = policy.status.unwrap_or_default();
                for (_, kind, _) in EXPECTED {
                    if counted(&status, kind) > 0 {
                        counted_at.entry(kind).or_insert_with(Instant::now);
                    }
                }
            }
            () = &mut deadline => panic!(
                "not every violation was counted in 90 s: reported {reported:?}, \
                 counted {counted_at:?}, status {status:?}\n{}", graceful.log()
            ),
        }
    }
    for (_, kind, _) in EXPECTED {
        match (reported.get(kind), counted_at.get(kind)) {
            (Some(seen), Some(counted)) => println!(
                "{kind}: in the policy's status {:.2?} after the kubelet reported it",
                counted.saturating_duration_since(*seen)
            ),
            _ => println!("{kind}: counted; the kubelet's report was not seen in between"),
        }
    }

    // Named in the conditions, the counters and the recent list.
    for (pod, kind, type_) in EXPECTED {
        assert_eq!(
            condition(&status, type_),
            Some(("False".to_owned(), kind.to_owned())),
            "{status:?}"
        );
        assert!(
            status
                .recent
                .iter()
                .any(|v| v.pod == pod && v.kind.as_str() == kind),
            "{pod} not in the recent list as {kind}: {:?}",
            status.recent
        );
        let output = cluster.kubectl(&[
            "wait",
            "-n",
            &namespace,
            &format!("--for=condition={type_}=False"),
            "--timeout=10s",
            &format!("gracefulpolicy/{POLICY}"),
        ]);
        assert!(output.status.success(), "kubectl wait for {type_}=False");
    }
    assert_eq!(
        condition(&status, "Ready"),
        Some(("True".to_owned(), "InForce".to_owned()))
    );

    // The shutdowns, from timestamps of one-second precision: two polite ones soon
    // after the preStop sleep, and one killed at the deadline, 3 s after it and over
    // the 2 s budget; the recommended budget covers it and at least doubles the budget.
    let shutdown = status.shutdown.clone().expect("shutdown statistics");
    println!("shutdowns: {shutdown:?}");
    assert!(shutdown.observed >= 3, "{shutdown:?}");
    assert!(shutdown.max_seconds >= 3.0, "the killed one: {shutdown:?}");
    assert!(
        shutdown.p50_seconds < shutdown.max_seconds,
        "the median is a polite shutdown: {shutdown:?}"
    );
    assert!(
        shutdown.recommended_budget_seconds as f64 >= shutdown.max_seconds
            && shutdown.recommended_budget_seconds >= 4,
        "{shutdown:?}"
    );

    // And as Events on each pod.
    let events = Api::<Event>::namespaced(client.clone(), &namespace);
    let listed = eventually("the Events", Duration::from_secs(10), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let on_pods = |pod: &str, kind: &str| {
            list.items.iter().any(|e| {
                e.reason.as_deref() == Some(kind)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)
            })
        };
        EXPECTED
            .iter()
            .all(|(pod, kind, _)| on_pods(pod, kind))
            .then_some(list.items.len())
    })
    .await;
    assert!(listed >= EXPECTED.len());
}
