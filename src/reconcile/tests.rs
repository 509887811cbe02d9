use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde_json::json;

use super::report::{PolicyFacts, RECENT_LIMIT, Report};
use super::tracker::{ObservedPod, PolicyRef, Tracker};
use crate::api::{Budget, GracefulPolicyStatus, Mode, PodCounts, ViolationKind};
use crate::shutdown::fixtures::{at, running, status as container, terminated};
use crate::shutdown::{Deletion, Finding};

mod index;

const BUDGET: Budget = Budget {
    pre_stop_sleep_seconds: 5,
    shutdown_budget_seconds: 25,
};

fn pod(containers: Vec<ContainerStatus>) -> ObservedPod {
    ObservedPod {
        uid: "uid-1".into(),
        name: "web-1".into(),
        policy: PolicyRef::new("shop", "web"),
        budget: None,
        mutated: true,
        grace_period_seconds: 35,
        deletion: None,
        disruption: None,
        containers,
        left_alone: Vec::new(),
        sidecars: Vec::new(),
    }
}

fn deleted(mut pod: ObservedPod) -> ObservedPod {
    pod.deletion = Some(Deletion {
        deadline: at(35),
        grace_period_seconds: 35,
        own_grace_period_seconds: 35,
    });
    pod
}

#[test]
fn a_pod_is_read_from_its_label_record_and_deletion() {
    let record = json!({"policy": "web", "mode": "Enforce", "preStopSleepSeconds": 3,
                        "shutdownBudgetSeconds": 10, "changes": [{"field": "x", "to": 1}]});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
                     "labels": {"graceful.dev/policy": "web"},
                     "annotations": {"graceful.dev/applied": record.to_string()},
                     "deletionTimestamp": "2026-01-01T00:00:35Z", "deletionGracePeriodSeconds": 35},
        "status": {"containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 2}]}
    }))
    .unwrap();
    let observed = ObservedPod::from_pod(&pod).unwrap();
    assert_eq!(observed.policy.to_string(), "shop/web");
    assert_eq!(
        observed.budget,
        Some(Budget {
            pre_stop_sleep_seconds: 3,
            shutdown_budget_seconds: 10
        })
    );
    assert!(observed.mutated);
    assert_eq!(observed.deletion.unwrap().grace_period_seconds, 35);
    assert_eq!(observed.containers[0].restart_count, 2);
    assert_eq!(
        observed.containers[0].image, "",
        "kept: what the tracker reads, no more"
    );

    let unlabelled: Pod = serde_json::from_value(
        json!({"metadata": {"name": "x", "namespace": "shop", "uid": "u2"}}),
    )
    .unwrap();
    assert_eq!(ObservedPod::from_pod(&unlabelled), None);
}

#[test]
fn restarts_before_the_first_sighting_are_not_news_and_later_ones_are() {
    let mut tracker = Tracker::default();
    let first = pod(vec![container(
        running(),
        Some(terminated(1, "Error", 1)),
        3,
    )]);
    assert!(tracker.observe(&first, BUDGET, false).is_empty());
    let again = pod(vec![container(
        running(),
        Some(terminated(1, "Error", 9)),
        4,
    )]);
    let findings = tracker.observe(&again, BUDGET, false);
    assert!(matches!(
        findings.as_slice(),
        [Finding::Restarted { count: 1, .. }]
    ));
    assert!(
        tracker.observe(&again, BUDGET, false).is_empty(),
        "a resync is not a restart"
    );
}

#[test]
fn a_container_of_a_pod_seen_at_creation_starts_from_zero_restarts() {
    let mut tracker = Tracker::default();
    assert!(tracker.observe(&pod(vec![]), BUDGET, false).is_empty());
    let crashed = pod(vec![container(
        running(),
        Some(terminated(2, "Error", 3)),
        1,
    )]);
    let findings = tracker.observe(&crashed, BUDGET, false);
    assert!(matches!(
        findings.as_slice(),
        [Finding::Restarted { count: 1, .. }]
    ));
}

#[test]
fn a_shutdown_is_found_once_however_often_it_is_seen() {
    let mut tracker = Tracker::default();
    tracker.observe(&pod(vec![container(running(), None, 0)]), BUDGET, false);
    let ended = deleted(pod(vec![container(terminated(137, "Error", 35), None, 0)]));
    let findings = tracker.observe(&ended, BUDGET, false);
    assert!(matches!(
        findings.as_slice(),
        [Finding::Shutdown {
            killed: true,
            over_budget: true,
            ..
        }]
    ));
    assert!(tracker.observe(&ended, BUDGET, true).is_empty());
    assert_eq!(tracker.len(), 0, "a pod that is gone is forgotten");
}

#[test]
fn an_oom_kill_that_stays_in_the_status_is_found_once() {
    let mut tracker = Tracker::default();
    tracker.observe(&pod(vec![]), BUDGET, false);
    let oom = pod(vec![container(terminated(137, "OOMKilled", 4), None, 0)]);
    assert_eq!(tracker.observe(&oom, BUDGET, false).len(), 1);
    assert!(tracker.observe(&oom, BUDGET, false).is_empty());
}

#[test]
fn a_relist_forgets_the_pods_it_does_not_see_again() {
    let mut tracker = Tracker::default();
    let mut other = pod(vec![]);
    other.uid = "uid-2".into();
    tracker.observe(&pod(vec![container(running(), None, 0)]), BUDGET, false);
    tracker.observe(&other, BUDGET, false);
    tracker.begin_relist();
    tracker.observe(&pod(vec![container(running(), None, 0)]), BUDGET, false);
    tracker.end_relist();
    assert_eq!(tracker.len(), 1);
    let restarted = pod(vec![container(
        running(),
        Some(terminated(1, "Error", 5)),
        1,
    )]);
    assert_eq!(
        tracker.observe(&restarted, BUDGET, false).len(),
        1,
        "a pod seen again keeps its restart count"
    );
}

fn facts(mode: Mode) -> PolicyFacts {
    PolicyFacts {
        generation: Some(2),
        mode,
        grace_period_seconds: 35,
        budget: BUDGET,
        drain: crate::api::Drain::default(),
        invalid: None,
        pods: PodCounts {
            matched: 3,
            mutated: 3,
            min_grace_period_seconds: Some(35),
            max_grace_period_seconds: Some(35),
        },
    }
}

fn over_budget(container: &str, at_second: i64, killed: bool) -> Finding {
    Finding::Shutdown {
        container: container.into(),
        seconds: 31.0,
        killed,
        over_budget: true,
        at: at(at_second),
    }
}

fn condition<'a>(
    status: &'a GracefulPolicyStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

#[test]
fn a_quiet_policy_is_ready_with_every_condition_true() {
    let mut report = Report::restore(None, 3600);
    let status = report.status(&facts(Mode::Enforce), None, &at(0));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.termination_grace_period_seconds, Some(35));
    for (type_, reason) in [
        ("Ready", "InForce"),
        ("ShutdownsWithinBudget", "WithinBudget"),
        ("NoOOMKills", "NoOOMKills"),
        ("NoRestarts", "NoRestarts"),
    ] {
        let c = condition(&status, type_);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reason));
        assert_eq!(c.observed_generation, Some(2));
    }
    assert_eq!(status.violations.unwrap().total, 0);
    assert_eq!(status.shutdown, None);
}

#[test]
fn violations_are_counted_listed_and_named_in_the_conditions() {
    let mut report = Report::restore(None, 3600);
    let within = Finding::Shutdown {
        container: "app".into(),
        seconds: 3.0,
        killed: false,
        over_budget: false,
        at: at(1),
    };
    assert_eq!(report.add("web-0", &within, BUDGET, &at(1)), None);
    let announced = report
        .add("web-1", &over_budget("app", 2, true), BUDGET, &at(2))
        .unwrap();
    assert_eq!(announced.kind, ViolationKind::BudgetExceeded);
    assert!(
        announced
            .detail
            .starts_with("SIGKILLed at the end of its grace period")
    );
    report.add(
        "web-2",
        &Finding::OomKilled {
            container: "app".into(),
            at: at(3),
        },
        BUDGET,
        &at(3),
    );
    report.add(
        "web-3",
        &Finding::Restarted {
            container: "app".into(),
            count: 2,
            reason: Some("Error".into()),
            at: Some(at(4)),
        },
        BUDGET,
        &at(4),
    );

    let status = report.status(&facts(Mode::Enforce), None, &at(5));
    let counts = status.violations.clone().unwrap();
    assert_eq!(
        (
            counts.budget_exceeded,
            counts.oom_killed,
            counts.restarts,
            counts.total
        ),
        (1, 1, 2, 4)
    );
    let kinds: Vec<&str> = status.recent.iter().map(|v| v.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["Restarted", "OOMKilled", "BudgetExceeded"],
        "newest first"
    );
    let budget = condition(&status, "ShutdownsWithinBudget");
    assert_eq!(
        (budget.status.as_str(), budget.reason.as_str()),
        ("False", "BudgetExceeded")
    );
    assert!(
        budget
            .message
            .starts_with("1 in the last 1h; newest: web-1/app SIGKILLed"),
        "{}",
        budget.message
    );
    assert_eq!(condition(&status, "NoOOMKills").status, "False");
    let restarts = condition(&status, "NoRestarts");
    assert!(
        restarts
            .message
            .contains("web-3/app restarted 2 times; the last run ended with Error"),
        "{}",
        restarts.message
    );
    let shutdown = status.shutdown.unwrap();
    assert_eq!(shutdown.observed, 2);
    assert_eq!(shutdown.max_seconds, 31.0);
    assert_eq!(
        shutdown.recommended_budget_seconds, 50,
        "a kill asks for double the budget"
    );
}

#[test]
fn conditions_recover_after_the_window_and_keep_their_transition_time_meanwhile() {
    let mut report = Report::restore(None, 600);
    report.add("web-1", &over_budget("app", 10, false), BUDGET, &at(10));
    let first = report.status(&facts(Mode::Enforce), None, &at(10));
    let second = report.status(&facts(Mode::Enforce), Some(&first), &at(100));
    let c = condition(&second, "ShutdownsWithinBudget");
    assert_eq!(c.status, "False");
    assert_eq!(
        c.last_transition_time,
        at(10),
        "unchanged status keeps its time"
    );

    let later = report.status(&facts(Mode::Enforce), Some(&second), &at(700));
    let c = condition(&later, "ShutdownsWithinBudget");
    assert_eq!(
        (c.status.as_str(), c.last_transition_time.clone()),
        ("True", at(700))
    );
    assert_eq!(
        later.violations.unwrap().total,
        0,
        "a new window starts from zero"
    );
    assert_eq!(
        later.recent.len(),
        1,
        "the list keeps the newest regardless"
    );
}

#[test]
fn a_restored_report_does_not_count_again_what_its_status_lists() {
    let mut before = Report::restore(None, 3600);
    before.add("web-1", &over_budget("app", 10, false), BUDGET, &at(10));
    let status = before.status(&facts(Mode::Enforce), None, &at(11));

    let mut after = Report::restore(Some(&status), 3600);
    assert_eq!(
        after.add("web-1", &over_budget("app", 10, false), BUDGET, &at(20)),
        None
    );
    assert!(
        after
            .add("web-2", &over_budget("app", 15, false), BUDGET, &at(20))
            .is_some()
    );
    let restored = after.status(&facts(Mode::Enforce), Some(&status), &at(21));
    assert_eq!(restored.violations.unwrap().budget_exceeded, 2);
    assert_eq!(
        restored.shutdown.unwrap().observed,
        1,
        "statistics start again from the shutdowns seen since"
    );

    let mut idle = Report::restore(Some(&status), 3600);
    let carried = idle.status(&facts(Mode::Enforce), Some(&status), &at(30));
    assert_eq!(
        carried.shutdown, status.shutdown,
        "until then they carry over"
    );
}

#[test]
fn the_recent_list_is_bounded() {
    let mut report = Report::restore(None, 3600);
    for i in 0..(RECENT_LIMIT as i64 + 5) {
        report.add(
            &format!("web-{i}"),
            &over_budget("app", i, false),
            BUDGET,
            &at(i),
        );
    }
    let status = report.status(&facts(Mode::Enforce), None, &at(100));
    assert_eq!(status.recent.len(), RECENT_LIMIT);
    assert_eq!(status.recent[0].pod, format!("web-{}", RECENT_LIMIT + 4));
    assert_eq!(
        status.violations.unwrap().budget_exceeded,
        RECENT_LIMIT as i64 + 5
    );
}

#[test]
fn ready_says_audit_and_invalid() {
    let mut report = Report::restore(None, 3600);
    let audit = report.status(&facts(Mode::Audit), None, &at(0));
    assert_eq!(condition(&audit, "Ready").reason, "Auditing");
    let mut broken = facts(Mode::Enforce);
    broken.invalid = Some("spec.selector: bad operator".into());
    let invalid = report.status(&broken, None, &at(0));
    let ready = condition(&invalid, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Invalid")
    );
}
