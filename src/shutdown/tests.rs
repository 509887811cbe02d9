use k8s_openapi::api::core::v1::ContainerState;

use super::fixtures::{at, running, status, terminated};
use super::*;
use crate::api::Budget;

/// sleep 5 + budget 25 + margin 5: the grace period is 35 s.
const BUDGET: Budget = Budget {
    pre_stop_sleep_seconds: 5,
    shutdown_budget_seconds: 25,
};

fn deletion() -> Deletion {
    Deletion {
        deadline: at(35),
        grace_period_seconds: 35,
        own_grace_period_seconds: 35,
    }
}

fn measured(state: ContainerState) -> Option<(f64, bool, bool)> {
    match shutdown(&status(state, None, 0), &deletion(), BUDGET)? {
        Finding::Shutdown {
            seconds,
            killed,
            over_budget,
            ..
        } => Some((seconds, killed, over_budget)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_shutdown_inside_the_budget_is_measured_after_the_sleep() {
    assert_eq!(
        measured(terminated(0, "Completed", 8)),
        Some((3.0, false, false))
    );
}

#[test]
fn a_shutdown_longer_than_the_budget_is_over_budget() {
    assert_eq!(
        measured(terminated(0, "Completed", 31)),
        Some((26.0, false, true))
    );
}

#[test]
fn a_sigkill_at_the_deadline_always_counts() {
    assert_eq!(
        measured(terminated(137, "Error", 35)),
        Some((30.0, true, true))
    );
    // finishedAt is rounded to the second: a kill just before the deadline counts too.
    assert_eq!(
        measured(terminated(137, "Error", 34)),
        Some((29.0, true, true))
    );
}

#[test]
fn a_sigkill_long_before_the_deadline_is_not_the_kubelets() {
    assert_eq!(
        measured(terminated(137, "Error", 10)),
        Some((5.0, false, false))
    );
}

#[test]
fn an_oom_kill_during_shutdown_is_not_a_deadline_kill() {
    let (_, killed, _) = measured(terminated(137, "OOMKilled", 35)).unwrap();
    assert!(!killed);
}

#[test]
fn a_container_that_ended_before_the_deletion_or_still_runs_is_no_shutdown() {
    assert_eq!(measured(terminated(0, "Completed", -3)), None);
    assert_eq!(measured(running()), None);
}

#[test]
fn an_oom_kill_is_reported_once_it_shows() {
    let findings = incidents(&status(terminated(137, "OOMKilled", 2), None, 0), Some(0));
    assert_eq!(
        findings,
        [Finding::OomKilled {
            container: "app".into(),
            at: at(2)
        }]
    );
}

#[test]
fn a_clean_exit_labelled_oomkilled_is_not_an_oom_kill() {
    let findings = incidents(&status(terminated(0, "OOMKilled", 2), None, 0), Some(0));
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn restarts_since_last_seen_are_counted_with_the_last_reason() {
    let findings = incidents(
        &status(running(), Some(terminated(1, "Error", 4)), 3),
        Some(1),
    );
    assert_eq!(
        findings,
        [Finding::Restarted {
            container: "app".into(),
            count: 2,
            reason: Some("Error".into()),
            at: Some(at(4)),
        }]
    );
}

#[test]
fn a_restart_after_an_oom_kill_is_both() {
    let findings = incidents(
        &status(running(), Some(terminated(137, "OOMKilled", 4)), 1),
        Some(0),
    );
    assert!(matches!(findings[0], Finding::OomKilled { .. }));
    assert!(matches!(findings[1], Finding::Restarted { count: 1, .. }));
}

#[test]
fn an_old_oom_in_last_state_is_not_news_without_a_new_restart() {
    let seen = status(running(), Some(terminated(137, "OOMKilled", 4)), 1);
    assert!(incidents(&seen, Some(1)).is_empty());
}

#[test]
fn restarts_before_a_container_was_first_seen_are_not_news() {
    let findings = incidents(&status(running(), Some(terminated(1, "Error", 4)), 5), None);
    assert!(findings.is_empty());
}

#[test]
fn stats_give_nearest_rank_percentiles_and_a_covering_budget() {
    let seconds: Vec<f64> = (1..=20).map(f64::from).collect();
    let stats = stats(&seconds, false, 25).unwrap();
    assert_eq!(stats.observed, 20);
    assert_eq!(stats.p50_seconds, 10.0);
    assert_eq!(stats.p95_seconds, 19.0);
    assert_eq!(stats.max_seconds, 20.0);
    assert_eq!(stats.recommended_budget_seconds, 24);
}

#[test]
fn a_killed_shutdown_asks_for_at_least_double_the_budget() {
    let stats = stats(&[3.0, 30.0], true, 25).unwrap();
    assert_eq!(stats.recommended_budget_seconds, 50);
    assert_eq!(super::stats(&[], false, 25), None);
}
