//! The reconciler's rules through its pure index: pods and policies in, statuses and
//! announcements out, with no apiserver.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::api::{GracefulPolicy, ViolationKind};
use crate::reconcile::index::{Index, Observed, Update};
use crate::reconcile::tracker::ObservedPod;
use crate::shutdown::fixtures::at;

fn policy(status: Value) -> GracefulPolicy {
    serde_json::from_value(json!({
        "apiVersion": "graceful.dev/v1alpha1", "kind": "GracefulPolicy",
        "metadata": {"name": "web", "namespace": "shop", "uid": "p1", "generation": 1},
        "spec": {"drain": {"preStopSleepSeconds": 5, "shutdownBudgetSeconds": 10, "safetyMarginSeconds": 0}},
        "status": status,
    }))
    .unwrap()
}

/// A governed pod `name` with `extra` merged into it.
fn pod(name: &str, extra: Value) -> ObservedPod {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "labels": {"graceful.dev/policy": "web"}},
        "spec": {"terminationGracePeriodSeconds": 15, "containers": [{"name": "app"}]},
        "status": {"containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true,
                   "restartCount": 0, "state": {"running": {}}}]}
    });
    merge(&mut pod, extra);
    let pod: Pod = serde_json::from_value(pod).unwrap();
    ObservedPod::from_pod(&pod).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

/// A pod deleted with `given` seconds of its own 15 whose app container ended with
/// `exit_code` `after` seconds into the deletion.
fn deleted(name: &str, given: i64, exit_code: i32, after: i64, extra: Value) -> ObservedPod {
    let mut change = json!({
        "metadata": {"deletionTimestamp": rfc3339(given), "deletionGracePeriodSeconds": given},
        "status": {"containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false,
                   "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "reason": "Error",
                   "finishedAt": rfc3339(after)}}}]}
    });
    merge(&mut change, extra);
    pod(name, change)
}

fn rfc3339(seconds: i64) -> String {
    at(seconds).0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn listed(policies: &[GracefulPolicy]) -> Index {
    let mut index = Index::new(3600);
    index.relist_policies(policies);
    index
}

fn only(updates: Vec<Update>) -> Update {
    let [update]: [Update; 1] = updates.try_into().expect("one update");
    update
}

#[test]
fn the_status_tells_the_grace_periods_the_pods_have() {
    let mut index = listed(&[policy(json!(null))]);
    let update = only(index.statuses(&at(0)).updates);
    assert_eq!(update.status.termination_grace_period_seconds, Some(15));
    assert_eq!(update.status.grace_periods, None, "no pod yet");

    index.apply_pod(
        &pod(
            "keeps-default",
            json!({"spec": {"terminationGracePeriodSeconds": 30}}),
        ),
        &at(1),
    );
    index.apply_pod(&pod("patched", json!({})), &at(1));
    let status = only(index.statuses(&at(2)).updates).status;
    assert_eq!(status.grace_periods.as_deref(), Some("15-30"));
    let pods = status.pods.clone().unwrap();
    assert_eq!(
        (
            pods.matched,
            pods.min_grace_period_seconds,
            pods.max_grace_period_seconds
        ),
        (2, Some(15), Some(30))
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        ready.message.contains("governed pods have 15-30 s"),
        "{}",
        ready.message
    );
}

#[test]
fn a_status_is_written_only_when_it_changes_and_again_after_a_failure() {
    let mut index = listed(&[policy(json!(null))]);
    let written = only(index.statuses(&at(0)).updates);
    assert!(
        index.statuses(&at(1)).updates.is_empty(),
        "nothing touched since"
    );
    index.retry(written.policy.clone());
    assert_eq!(only(index.statuses(&at(1)).updates).policy, written.policy);

    // The watch brings the written status back: a refresh finds nothing to write.
    index.apply_policy(&policy(serde_json::to_value(&written.status).unwrap()));
    index.touch_all();
    let found = index.statuses(&at(1));
    assert!(found.updates.is_empty());
    // Its metrics are still set: the policy was looked at, and nothing was measured yet.
    assert_eq!(found.reported, [(written.policy, Vec::new())]);
}

#[test]
fn a_violation_is_announced_counted_once_and_restored_from_status() {
    let mut index = listed(&[policy(json!(null))]);
    index.apply_pod(&pod("web-1", json!({})), &at(0));
    // SIGKILLed at the end of its own grace period.
    let observed = index.delete_pod(&deleted("web-1", 15, 137, 15, json!({})), &at(16));
    let [announcement] = observed.announcements.as_slice() else {
        panic!("{observed:?}");
    };
    assert_eq!(announcement.violation.kind, ViolationKind::BudgetExceeded);
    assert_eq!(announcement.policy_uid.as_deref(), Some("p1"));
    assert_eq!(observed.shutdowns.len(), 1);
    let status = only(index.statuses(&at(17)).updates).status;
    assert_eq!(status.violations.as_ref().unwrap().budget_exceeded, 1);

    // graceful restarts: the same last status is seen again, and not counted again.
    let mut restarted = listed(&[policy(serde_json::to_value(&status).unwrap())]);
    let again = restarted.relist_pods(&[deleted("web-1", 15, 137, 15, json!({}))], &at(20));
    assert!(again.announcements.is_empty(), "{again:?}");
    assert_eq!(restarted.tracked(), 1);
}

#[test]
fn a_pod_without_a_record_is_measured_against_its_policys_budget() {
    let mut index = listed(&[policy(json!(null))]);
    // 5 s sleep, then 12 s: over the policy's 10 s budget (the default one is 20 s).
    let observed = index.delete_pod(&deleted("web-1", 15, 0, 17, json!({})), &at(20));
    assert_eq!(
        observed.announcements[0].violation.kind,
        ViolationKind::BudgetExceeded
    );

    let record = json!({"policy": "web", "mode": "Enforce", "preStopSleepSeconds": 5,
                        "shutdownBudgetSeconds": 15});
    let annotated =
        json!({"metadata": {"annotations": {"graceful.dev/applied": record.to_string()}}});
    let observed = index.delete_pod(&deleted("web-2", 15, 0, 17, annotated), &at(20));
    assert!(observed.announcements.is_empty(), "its own budget was 15 s");
}

#[test]
fn a_shortened_grace_period_is_the_clusters_not_the_apps() {
    let mut index = listed(&[policy(json!(null))]);
    // Drained with 2 s of its 15: SIGKILLed at that deadline.
    let drained = deleted(
        "web-1",
        2,
        137,
        2,
        json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
               "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}]}}),
    );
    let observed = index.delete_pod(&drained, &at(3));
    let kinds: Vec<ViolationKind> = observed
        .announcements
        .iter()
        .map(|a| a.violation.kind)
        .collect();
    assert_eq!(
        kinds,
        [ViolationKind::GraceShortened, ViolationKind::Evicted]
    );
    let shortened = &observed.announcements[0].violation;
    assert!(
        shortened
            .detail
            .contains("2 s grace period instead of its own 15 s, by the Eviction API"),
        "{}",
        shortened.detail
    );
    let counts = only(index.statuses(&at(4)).updates)
        .status
        .violations
        .unwrap();
    assert_eq!(
        (
            counts.budget_exceeded,
            counts.grace_shortened,
            counts.evicted,
            counts.total
        ),
        (0, 1, 1, 0)
    );
}

#[test]
fn the_kubelets_final_deletion_shortens_nothing_and_a_forced_one_does() {
    let shortened = |observed: &Observed| {
        observed
            .announcements
            .iter()
            .filter(|a| a.violation.kind == ViolationKind::GraceShortened)
            .count()
    };
    let mut index = listed(&[policy(json!(null))]);
    // Deleted with its own 15 s, the app ends after 3 s; then the kubelet deletes the pod
    // with a grace period of 0, which the apiserver writes into the pod with the
    // deletion's start kept: the deadline becomes that start.
    let ended = index.apply_pod(&deleted("web-1", 15, 0, 3, json!({})), &at(3));
    assert_eq!(shortened(&ended), 0);
    let removed = index.delete_pod(&deleted("web-1", 0, 0, 3, json!({})), &at(3));
    assert_eq!(shortened(&removed), 0);

    // Forced while its app still ran: that shortened its 15 s to nothing.
    let forced = json!({"metadata": {"deletionTimestamp": rfc3339(5)},
                        "status": {"containerStatuses": [{"name": "app", "image": "i",
                                   "imageID": "", "ready": true, "restartCount": 0,
                                   "state": {"running": {}}}]}});
    let removed = index.delete_pod(&deleted("web-2", 0, 0, 0, forced), &at(5));
    assert_eq!(shortened(&removed), 1);
    let counts = only(index.statuses(&at(6)).updates)
        .status
        .violations
        .unwrap();
    assert_eq!(counts.grace_shortened, 1);
}

#[test]
fn sidecars_exits_at_termination_are_expected_and_their_restarts_count() {
    let mut index = listed(&[policy(json!(null))]);
    let sidecar = |state: Value, restarts: i32| {
        json!({"spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}]},
               "status": {"initContainerStatuses": [{"name": "proxy", "image": "i", "imageID": "",
                          "ready": true, "restartCount": restarts, "state": state,
                          "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}})
    };
    index.apply_pod(&pod("web-1", sidecar(json!({"running": {}}), 0)), &at(0));
    let restarted = index.apply_pod(&pod("web-1", sidecar(json!({"running": {}}), 1)), &at(1));
    assert_eq!(
        restarted.announcements[0].violation.kind,
        ViolationKind::Restarted
    );
    assert_eq!(restarted.announcements[0].violation.container, "proxy");

    // Deleted: the app stops in 3 s, the sidecar after it with 143, or 137 at the end.
    for exit_code in [143, 137, 1] {
        let ended = json!({"terminated": {"exitCode": exit_code, "reason": "Error", "finishedAt": rfc3339(15)}});
        let observed = index.delete_pod(&deleted("web-1", 15, 0, 8, sidecar(ended, 1)), &at(16));
        assert!(
            observed.announcements.is_empty(),
            "exit {exit_code}: {observed:?}"
        );
    }
}

#[test]
fn an_oomkilled_with_exit_143_after_a_drain_is_a_sigterm_exit() {
    let mut index = listed(&[policy(json!(null))]);
    let labelled = |name: &str, restarts: i32| {
        pod(
            name,
            json!({"status": {"containerStatuses": [{"name": "app", "image": "i", "imageID": "",
            "ready": true, "restartCount": restarts, "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 143, "reason": "OOMKilled", "finishedAt": rfc3339(1)}}}]}}),
        )
    };
    index.apply_pod(&labelled("web-1", 0), &at(0));
    let observed = index.apply_pod(&labelled("web-1", 1), &at(2));
    let kinds: Vec<ViolationKind> = observed
        .announcements
        .iter()
        .map(|a| a.violation.kind)
        .collect();
    assert_eq!(kinds, [ViolationKind::Restarted], "no OOM kill");
    assert!(
        observed.announcements[0]
            .violation
            .detail
            .contains("SIGTERM (exit code 143")
    );
}

#[test]
fn evicted_and_preempted_pods_are_counted_as_such() {
    let mut index = listed(&[policy(json!(null))]);
    let evicted = pod(
        "web-1",
        json!({"status": {"phase": "Failed", "reason": "Evicted",
        "message": "The node was low on resource: memory."}}),
    );
    let observed = index.apply_pod(&evicted, &at(1));
    assert_eq!(
        observed.announcements[0].violation.detail,
        "evicted by the kubelet: The node was low on resource: memory."
    );
    assert!(
        index.apply_pod(&evicted, &at(2)).announcements.is_empty(),
        "once"
    );
    let preempted = pod(
        "web-2",
        json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "PreemptionByScheduler", "message": "default-scheduler: preempting to accommodate a higher priority pod"}]}}),
    );
    let observed = index.apply_pod(&preempted, &at(3));
    assert_eq!(
        observed.announcements[0].violation.kind,
        ViolationKind::Preempted
    );
    let counts = only(index.statuses(&at(4)).updates)
        .status
        .violations
        .unwrap();
    assert_eq!((counts.evicted, counts.preempted, counts.total), (1, 1, 0));
}

#[test]
fn a_relist_forgets_pods_and_policies_that_are_gone() {
    let mut index = listed(&[policy(json!(null))]);
    index.apply_pod(&pod("web-1", json!({})), &at(0));
    index.apply_pod(&pod("web-2", json!({})), &at(0));
    index.statuses(&at(0));
    index.relist_pods(&[pod("web-1", json!({}))], &at(1));
    assert_eq!(index.tracked(), 1);
    let update = only(index.statuses(&at(1)).updates);
    assert_eq!(update.status.pods.unwrap().matched, 1);
    index.relist_policies(&[]);
    let found = index.statuses(&at(2));
    assert!(found.updates.is_empty(), "no policy, no status");
    assert_eq!(found.removed, [update.policy], "its metrics go with it");
}

#[test]
fn a_regular_container_the_record_leaves_alone_is_not_measured_as_the_app() {
    // An Istio proxy run as a regular container, killed at the deadline after the app
    // drained in 8 s: the app's shutdown is measured, the proxy's exit is expected,
    // because the webhook recorded that the policy left it alone.
    let ended = |name: &str, exit_code: i32, after: i64| {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": exit_code, "reason": "Error",
                         "finishedAt": rfc3339(after)}}})
    };
    let observe = |left_alone: Value| {
        let record = json!({"policy": "web", "mode": "Enforce", "preStopSleepSeconds": 5,
                            "shutdownBudgetSeconds": 10, "leftAlone": left_alone});
        let mut index = listed(&[policy(json!(null))]);
        let pod = deleted(
            "web-1",
            15,
            0,
            8,
            json!({"metadata": {"annotations": {"graceful.dev/applied": record.to_string()}},
                   "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
                   "status": {"containerStatuses": [ended("app", 0, 8), ended("istio-proxy", 137, 15)]}}),
        );
        let observed = index.delete_pod(&pod, &at(16));
        let kinds: Vec<(String, ViolationKind)> = observed
            .announcements
            .into_iter()
            .map(|a| (a.violation.container, a.violation.kind))
            .collect();
        (kinds, observed.shutdowns.len())
    };
    assert_eq!(
        observe(json!({"istio-proxy": "sidecar"})),
        (Vec::new(), 1),
        "only the app's shutdown is measured"
    );
    let (kinds, shutdowns) = observe(json!({}));
    assert_eq!(shutdowns, 2, "without the record's word, both are");
    assert!(
        kinds.contains(&("istio-proxy".to_owned(), ViolationKind::BudgetExceeded)),
        "{kinds:?}"
    );
}

#[test]
fn endpoint_propagation_fills_the_status_and_auto_follows_it() {
    use crate::reconcile::propagation::TrimmedSlice;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let mut auto = policy(json!(null));
    auto.spec.drain.tuning = crate::api::Tuning::Auto;
    auto.spec.drain.recommend.min_observations = 1;
    auto.spec.drain.budget.pre_stop_sleep_seconds = 0;
    let mut index = listed(std::slice::from_ref(&auto));
    let slice = |ready: bool| TrimmedSlice {
        key: ("shop".into(), "web-abc".into()),
        trigger_time_ms: None,
        endpoints: vec![("uid-web-1".into(), ready)],
    };
    let later = |ms: i64| {
        Time(k8s_openapi::jiff::Timestamp::from_millisecond(at(0).0.as_millisecond() + ms).unwrap())
    };
    index.apply_pod(&pod("web-1", json!({})), &at(0));
    index.apply_slice(&slice(true), &at(0));
    // Deleted with its 15 s: the deletion started at 0; the slice stopped routing 0.8 s later.
    index.apply_pod(&deleted("web-1", 15, 0, 1, json!({})), &at(0));
    let observed = index.apply_slice(&slice(false), &later(800));
    assert_eq!(observed.propagations.len(), 1);
    assert_eq!(observed.propagations[0].1, 0.8);

    let found = index.statuses(&at(1));
    let status = &only(found.updates).status;
    let propagation = status.propagation.as_ref().unwrap();
    assert_eq!((propagation.observed, propagation.p95_seconds), (1, 0.8));
    let sleep = &status
        .recommendations
        .as_ref()
        .unwrap()
        .pre_stop_sleep_seconds;
    assert_eq!(sleep.seconds, Some(4));
    let applied = status
        .auto
        .as_ref()
        .unwrap()
        .pre_stop_sleep_seconds
        .as_ref()
        .unwrap();
    assert_eq!(applied.seconds, 4);
    // The 1 s shutdown is measured too: the budget goes to Auto's lower bound, 5 s.
    let budget = status
        .auto
        .as_ref()
        .unwrap()
        .shutdown_budget_seconds
        .as_ref()
        .unwrap();
    assert_eq!(budget.seconds, 5);
    assert_eq!(
        found.notices.iter().map(|n| n.reason).collect::<Vec<_>>(),
        ["AutoTuned", "AutoTuned"]
    );
    assert!(
        found.notices[0]
            .note
            .contains("preStopSleepSeconds 4 (was 0)"),
        "{:?}",
        found.notices
    );
    let meets = status
        .conditions
        .iter()
        .find(|c| c.type_ == "MeetsRecommendations")
        .unwrap();
    assert_eq!(meets.status, "True", "{meets:?}");

    // The slice drops the pod 6 s after its deletion started: the second stage.
    let removed = TrimmedSlice {
        endpoints: Vec::new(),
        ..slice(false)
    };
    let observed = index.apply_slice(&removed, &later(6000));
    assert!(observed.propagations.is_empty(), "the lag's histogram only");
    let found = index.statuses(&at(7));
    let propagation = only(found.updates).status.propagation.unwrap();
    assert_eq!((propagation.observed, propagation.p95_seconds), (1, 0.8));
    let removal = propagation.removal.expect("the removal measured");
    assert_eq!((removal.observed, removal.max_seconds), (1, 6.0));
}

#[test]
fn values_below_the_recommendations_are_a_condition_and_an_event() {
    let mut index = listed(&[policy(json!({
        "propagation": {"observed": 9, "p50Seconds": 0.2, "p95Seconds": 2.4, "maxSeconds": 2.5,
                        "timeSource": "WatchEvent"}
    }))]);
    let found = index.statuses(&at(0));
    let status = &only(found.updates).status;
    let meets = status
        .conditions
        .iter()
        .find(|c| c.type_ == "MeetsRecommendations")
        .unwrap();
    assert_eq!(
        (meets.status.as_str(), meets.reason.as_str()),
        ("False", "BelowRecommendation")
    );
    assert_eq!(
        meets.message,
        "preStopSleepSeconds 5 is below the recommended 6 (status.recommendations)"
    );
    assert_eq!(found.notices[0].reason, "BelowRecommendation");
}
