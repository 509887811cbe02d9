//! Endpoint propagation measured on the real node: a governed Deployment behind a
//! Service is rolled, and the policy's `status.propagation` holds the time from each old
//! pod's deletion start until its EndpointSlice stopped routing to it. The test watches
//! the same EndpointSlices itself and checks graceful's figures against its own. The
//! policy is in `tuning: Auto`: the next rollout's pods get the recommended sleep, with
//! a line in their record and an Event on the policy.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use graceful::api::{GracefulPolicy, TimeSource};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};

use support::graceful::{Graceful, labelled_namespace};
use support::{TEST_IMAGE, eventually, node_cluster};

const REPLICAS: usize = 3;

fn policy() -> String {
    format!(
        r#"
apiVersion: graceful.dev/v1alpha1
kind: GracefulPolicy
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  drain:
    preStopSleepSeconds: 1
    shutdownBudgetSeconds: 1
    safetyMarginSeconds: 1
    tuning: Auto
    recommend: {{minObservations: {REPLICAS}}}
    auto: {{intervalSeconds: 0}}
"#
    )
}

fn workload(node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      containers:
      - name: app
        image: {TEST_IMAGE}
        imagePullPolicy: Never
        command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
"#
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test]
async fn rolling_a_deployment_fills_status_propagation_and_auto_gives_the_next_pods_the_sleep() {
    let (cluster, node) = node_cluster();
    let client = cluster.client().await;
    let label = format!("propagation-{}", std::process::id());
    let namespace = labelled_namespace(cluster, &client, "propagation", &label).await;
    let graceful = Graceful::start(cluster, "propagation", &[]);
    graceful.register_for(cluster, &label);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let policies: Api<GracefulPolicy> = Api::namespaced(client.clone(), &namespace);
    cluster.apply_ok(&namespace, &policy());
    eventually(
        "the policy in the webhook's cache",
        Duration::from_secs(30),
        || async {
            graceful
                .log()
                .contains("GracefulPolicy changed")
                .then_some(())
        },
    )
    .await;
    cluster.apply_ok(&namespace, &workload(node));

    let ready_pods = || async {
        let listed = pods.list(&Default::default()).await.ok()?;
        let ready: Vec<String> = listed
            .items
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter(|pod| {
                pod.status
                    .iter()
                    .flat_map(|s| s.conditions.iter().flatten())
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .filter_map(|pod| pod.metadata.uid.clone())
            .collect();
        (ready.len() == REPLICAS).then_some(ready)
    };
    let old = eventually("3 ready pods", Duration::from_secs(90), ready_pods).await;

    // The test's own view: when each old pod's deletion started, when its slice stopped
    // routing to it, and when the slice dropped it, as the events reached the test.
    let mut pod_events = watcher(pods.clone(), Default::default())
        .applied_objects()
        .boxed();
    let mut slice_events = watcher(slices.clone(), Default::default())
        .touched_objects()
        .boxed();
    let patch =
        serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"rollout": "1"}}}}});
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &namespace)
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the rollout starts");
    let mut started: BTreeMap<String, i64> = BTreeMap::new();
    let mut stopped: BTreeMap<String, i64> = BTreeMap::new();
    let mut removed: BTreeMap<String, i64> = BTreeMap::new();
    let deadline = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(deadline);
    while removed.len() < REPLICAS || started.len() < REPLICAS {
        tokio::select! {
            Some(Ok(pod)) = pod_events.next() => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let (true, Some(at), Some(grace)) = (
                    old.contains(&uid),
                    pod.metadata.deletion_timestamp.as_ref(),
                    pod.metadata.deletion_grace_period_seconds,
                ) {
                    started.entry(uid).or_insert(at.0.as_millisecond() - grace * 1000);
                }
            }
            Some(Ok(slice)) = slice_events.next() => {
                let arrived = now_ms();
                for uid in old.iter().filter(|uid| started.contains_key(*uid)) {
                    let endpoint = slice.endpoints.iter().find(|e| {
                        e.target_ref.as_ref().and_then(|t| t.uid.as_ref()) == Some(uid)
                    });
                    let routed = endpoint
                        .is_some_and(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
                    if !routed {
                        stopped.entry(uid.clone()).or_insert(arrived);
                    }
                    if endpoint.is_none() {
                        removed.entry(uid.clone()).or_insert(arrived);
                    }
                }
            }
            () = &mut deadline => panic!(
                "the rollout did not end: started {started:?}, stopped {stopped:?}, removed {removed:?}\n{}",
                graceful.log()
            ),
        }
    }
    let since_start = |times: &BTreeMap<String, i64>| -> Vec<f64> {
        (old.iter())
            .map(|uid| (times[uid] - started[uid]) as f64 / 1000.0)
            .collect()
    };
    let seen = since_start(&stopped);
    let seen_max = seen.iter().copied().fold(0.0, f64::max);
    let seen_removed = since_start(&removed);
    let seen_removed_max = seen_removed.iter().copied().fold(0.0, f64::max);

    let propagation = eventually(
        "status.propagation of 3 deletions and their removals",
        Duration::from_secs(60),
        || async {
            let policy = policies.get("web").await.ok()?;
            let status = policy.status?;
            let propagation = status.propagation.clone()?;
            let removed = propagation.removal.as_ref()?.observed;
            (propagation.observed >= REPLICAS as i64 && removed >= REPLICAS as i64)
                .then_some((propagation, status))
        },
    )
    .await;
    let (propagation, status) = propagation;
    println!(
        "propagation: graceful observed {} p50 {:.2} s p95 {:.2} s max {:.2} s ({:?}); the test saw {seen:?}",
        propagation.observed,
        propagation.p50_seconds,
        propagation.p95_seconds,
        propagation.max_seconds,
        propagation.time_source
    );
    assert_eq!(propagation.observed, REPLICAS as i64);
    assert_eq!(propagation.time_source, TimeSource::WatchEvent);
    assert!(propagation.p50_seconds <= propagation.max_seconds);
    assert!(
        propagation.max_seconds < 5.0,
        "a local node propagates in under a few seconds: {propagation:?}"
    );
    // Both watch the same slices; each sees an event a moment after the other.
    assert!(
        (propagation.max_seconds - seen_max).abs() < 0.5,
        "graceful's max {} against the test's {seen_max}",
        propagation.max_seconds
    );
    let removal = propagation.removal.clone().expect("removals");
    println!(
        "removal: graceful p50 {:.2} s max {:.2} s; the test saw {seen_removed:?}",
        removal.p50_seconds, removal.max_seconds
    );
    assert_eq!(removal.observed, REPLICAS as i64);
    // A pod is dropped once it has ended: after its 1 s sleep, not before it stopped.
    assert!(
        removal.max_seconds >= propagation.max_seconds && removal.p50_seconds >= 1.0,
        "{removal:?} against {propagation:?}"
    );
    assert!(
        (removal.max_seconds - seen_removed_max).abs() < 0.5,
        "graceful's removal max {} against the test's {seen_removed_max}",
        removal.max_seconds
    );
    let sleep = status
        .recommendations
        .expect("recommendations")
        .pre_stop_sleep_seconds;
    assert_eq!(
        sleep.seconds,
        Some((propagation.p95_seconds + 3.0).ceil() as i64),
        "{sleep:?}"
    );
    let recommended = sleep.seconds.expect("a recommended sleep");
    let auto = eventually("Auto's sleep", Duration::from_secs(30), || async {
        let status = policies.get("web").await.ok()?.status?;
        status.auto?.pre_stop_sleep_seconds
    })
    .await;
    assert_eq!(auto.seconds, recommended);

    // The next rollout's pods are admitted with it, and say why.
    let patch =
        serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}});
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &namespace)
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the second rollout starts");
    let new_pod = eventually(
        "a pod of the second rollout",
        Duration::from_secs(60),
        || async {
            let listed = pods.list(&Default::default()).await.ok()?;
            listed.items.into_iter().find(|pod| {
                pod.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("rollout"))
                    .is_some_and(|r| r == "2")
            })
        },
    )
    .await;
    let container = &new_pod.spec.as_ref().unwrap().containers[0];
    let slept = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map(|s| s.seconds);
    assert_eq!(slept, Some(recommended), "{container:?}");
    let record = &new_pod.metadata.annotations.as_ref().unwrap()["graceful.dev/applied"];
    assert!(
        record.contains(&format!(
            "tuning Auto: preStopSleepSeconds {recommended} instead of the policy's 1"
        )),
        "{record}"
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &namespace);
    eventually("the AutoTuned Event", Duration::from_secs(30), || async {
        let listed = events.list(&Default::default()).await.ok()?;
        listed
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("AutoTuned"))
            .then_some(())
    })
    .await;

    let sample = format!(
        "graceful_endpoint_propagation_seconds_count{{namespace=\"{namespace}\",policy=\"web\"}}"
    );
    let counted = graceful.metric(&sample).unwrap_or_default();
    assert!(counted >= REPLICAS as f64, "{sample} {counted}");
}
