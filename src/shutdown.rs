//! How a governed container ended: a shutdown over its budget, an OOM kill, a
//! restart; and what the cluster did to its pod: a grace period cut short, an
//! eviction, a preemption. Pure: pod status in, findings out; the reconciler decides
//! what to count and report.
//!
//! The rules that keep the app from being blamed for what the cluster did:
//! - a deletion with a shorter grace period than the pod's own (`kubectl delete
//!   --grace-period`, an eviction with a grace override, node-pressure eviction, a node
//!   autoscaler) is its own finding, and a SIGKILL at its deadline is not the app's;
//! - the exits of native sidecars (init containers with `restartPolicy: Always`) once
//!   the pod is deleted are expected, whatever their exit code: the kubelet stops them
//!   after the app, with SIGTERM;
//! - an OOM kill is a SIGKILL (exit code 137). A runtime derives `OOMKilled` from the
//!   cgroup's cumulative OOM counter, so after any earlier OOM kill inside the
//!   container it labels the SIGTERM exit of a drain `OOMKilled` too, with exit code
//!   143 (kubernetes#140716): that is a SIGTERM exit, and so is a clean exit so labelled;
//! - evictions and preemptions are counted as such.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{Budget, ShutdownStats};

/// Exit code of a process killed by SIGKILL (128 + 9): what the kubelet does at the
/// end of the grace period, and what the kernel's OOM killer does.
pub const SIGKILL_EXIT_CODE: i32 = 137;

/// finishedAt has second precision and the kubelet kills a moment after the deadline,
/// so "at the deadline" means within this much before it.
const DEADLINE_TOLERANCE_MS: i64 = 1_500;

/// Exit code of a process ended by SIGTERM (128 + 15).
pub const SIGTERM_EXIT_CODE: i32 = 143;

/// A graceful deletion of a pod: the kubelet sends the preStop hook at
/// `deletionTimestamp - deletionGracePeriodSeconds` and SIGKILL at `deletionTimestamp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    pub deadline: Time,
    /// `deletionGracePeriodSeconds`.
    pub grace_period_seconds: i64,
    /// The pod's own `terminationGracePeriodSeconds`.
    pub own_grace_period_seconds: i64,
}

impl Deletion {
    /// When the deletion began: the preStop hook runs, the grace period counts down.
    pub fn started_ms(&self) -> i64 {
        millis(&self.deadline) - self.grace_period_seconds.saturating_mul(1000)
    }

    /// Whoever deleted the pod gave it less time than its own grace period.
    pub fn is_shortened(&self) -> bool {
        self.grace_period_seconds < self.own_grace_period_seconds
    }
}

/// What the cluster did to a pod, as its status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisruptionKind {
    Evicted,
    Preempted,
}

/// Who or what ended a pod, where the API says (its `DisruptionTarget` condition, or
/// the `Evicted` reason the kubelet writes).
#[derive(Debug, Clone, PartialEq)]
pub struct Disruption {
    pub kind: Option<DisruptionKind>,
    /// For a reader: `the Eviction API`, `the kubelet: The node was low on resource:
    /// memory.`, ...
    pub by: String,
    pub at: Option<Time>,
}

/// Reads the disruption from a pod's status; `None` when it names none.
pub fn disruption(status: &PodStatus) -> Option<Disruption> {
    let target = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    let reason = status.reason.as_deref();
    let kubelet_message = || match status.message.as_deref() {
        Some(message) if !message.is_empty() => format!("the kubelet: {message}"),
        _ => "the kubelet".to_owned(),
    };
    let (kind, by) = match (reason, target.and_then(|c| c.reason.as_deref())) {
        // Node-pressure eviction: the kubelet fails the pod and says why.
        (Some("Evicted"), _) => (Some(DisruptionKind::Evicted), kubelet_message()),
        // The kubelet admitting a critical pod in place of this one.
        (Some("Preempting"), _) => (Some(DisruptionKind::Preempted), kubelet_message()),
        (_, Some("EvictionByEvictionAPI")) => {
            (Some(DisruptionKind::Evicted), "the Eviction API".to_owned())
        }
        (_, Some("PreemptionByScheduler")) => (
            Some(DisruptionKind::Preempted),
            target
                .and_then(|c| c.message.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "the scheduler".to_owned()),
        ),
        (_, Some("DeletionByTaintManager")) => {
            (None, "the taint manager (a NoExecute taint)".to_owned())
        }
        (_, Some("DeletionByPodGC")) => (None, "the pod garbage collector".to_owned()),
        (_, Some("TerminationByKubelet")) => (None, kubelet_message()),
        (_, Some(other)) => (None, other.to_owned()),
        (_, None) => return None,
    };
    Some(Disruption {
        kind,
        by,
        at: target.and_then(|c| c.last_transition_time.clone()),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A container of a deleted pod finished; `seconds` is the app's part, after the
    /// preStop sleep.
    Shutdown {
        container: String,
        seconds: f64,
        /// SIGKILLed at the end of the grace period: the true duration is unknown.
        killed: bool,
        over_budget: bool,
        at: Time,
    },
    /// The pod was deleted with less time than its own grace period.
    GraceShortened {
        own_seconds: i64,
        given_seconds: i64,
        /// Who shortened it, where the API says.
        by: Option<String>,
        at: Time,
    },
    /// The pod was evicted or preempted.
    Disrupted {
        kind: DisruptionKind,
        by: String,
        at: Option<Time>,
    },
    OomKilled {
        container: String,
        at: Time,
    },
    Restarted {
        container: String,
        /// How many restarts since the container was last seen.
        count: i32,
        /// Why the previous run ended (`Error`, `OOMKilled`, `Completed`, ...).
        reason: Option<String>,
        /// When the previous run ended, when known.
        at: Option<Time>,
    },
}

/// What a deleted pod's last container status says of its shutdown, if it has
/// terminated since the deletion began.
pub fn shutdown(status: &ContainerStatus, deletion: &Deletion, budget: Budget) -> Option<Finding> {
    let terminated = status.state.as_ref()?.terminated.as_ref()?;
    let finished = terminated.finished_at.as_ref()?;
    let elapsed_ms = millis(finished) - deletion.started_ms();
    if elapsed_ms < 0 {
        // It ended before the deletion: a completed Job, a crash, not a shutdown.
        return None;
    }
    // A SIGKILL at a deadline someone else shortened is not the app's: it is measured
    // like any shutdown, and the shortening is a finding of its own.
    let killed = terminated.exit_code == SIGKILL_EXIT_CODE
        && terminated.reason.as_deref() != Some("OOMKilled")
        && !deletion.is_shortened()
        && millis(finished) >= millis(&deletion.deadline) - DEADLINE_TOLERANCE_MS;
    let app_ms = elapsed_ms - budget.pre_stop_sleep_seconds.saturating_mul(1000);
    let seconds = app_ms.max(0) as f64 / 1000.0;
    Some(Finding::Shutdown {
        container: status.name.clone(),
        seconds,
        killed,
        over_budget: killed || app_ms > budget.shutdown_budget_seconds.saturating_mul(1000),
        at: finished.clone(),
    })
}

/// A deletion shorter than the pod's own grace period, with who shortened it.
///
/// Once every container of a deleted pod has ended, the kubelet deletes the pod with a
/// grace period of 0, which the apiserver writes into the pod (keeping the deletion's
/// start) before it removes it. That ends a shutdown and shortens nothing.
pub fn grace_shortened(
    deletion: &Deletion,
    disruption: Option<&Disruption>,
    containers: &[ContainerStatus],
) -> Option<Finding> {
    let kubelets_removal = deletion.grace_period_seconds == 0 && all_ended(containers);
    if !deletion.is_shortened() || kubelets_removal {
        return None;
    }
    let started = k8s_openapi::jiff::Timestamp::from_millisecond(deletion.started_ms())
        .map_or_else(|_| epoch(), Time);
    Some(Finding::GraceShortened {
        own_seconds: deletion.own_grace_period_seconds,
        given_seconds: deletion.grace_period_seconds,
        by: disruption.map(|d| d.by.clone()),
        at: started,
    })
}

/// Every container (at least one) has ended.
fn all_ended(containers: &[ContainerStatus]) -> bool {
    !containers.is_empty()
        && containers.iter().all(|status| {
            status
                .state
                .as_ref()
                .is_some_and(|state| state.terminated.is_some())
        })
}

/// OOM kills and restarts of a container since it was last seen with
/// `previous_restart_count` (`None`: never seen, so restarts before now are not news).
pub fn incidents(status: &ContainerStatus, previous_restart_count: Option<i32>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let current = status.state.as_ref().and_then(|s| s.terminated.as_ref());
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let restarts = previous_restart_count.map_or(0, |before| status.restart_count - before);

    // A container that ended by OOM and has not restarted (yet, or ever) shows it in
    // `state`; one that restarted shows it in `lastState`.
    let oom_ended = current.filter(|t| is_oom_kill(t));
    let oom_restarted = last.filter(|t| restarts > 0 && is_oom_kill(t));
    if let Some(terminated) = oom_ended.or(oom_restarted) {
        findings.push(Finding::OomKilled {
            container: status.name.clone(),
            at: terminated.finished_at.clone().unwrap_or_else(epoch),
        });
    }
    if restarts > 0 {
        findings.push(Finding::Restarted {
            container: status.name.clone(),
            count: restarts,
            reason: last.map(ended_with),
            at: last.and_then(|t| t.finished_at.clone()),
        });
    }
    findings
}

/// Only a SIGKILL labelled OOMKilled is an OOM kill (see the module's rules).
fn is_oom_kill(terminated: &ContainerStateTerminated) -> bool {
    terminated.reason.as_deref() == Some("OOMKilled") && terminated.exit_code == SIGKILL_EXIT_CODE
}

/// Why a run ended, for a reader: the runtime's reason, except an `OOMKilled` that was
/// no OOM kill (kubernetes#140716).
fn ended_with(terminated: &ContainerStateTerminated) -> String {
    match terminated.reason.as_deref() {
        Some("OOMKilled") if terminated.exit_code == SIGTERM_EXIT_CODE => {
            "SIGTERM (exit code 143; the runtime's OOMKilled is kubernetes#140716)".to_owned()
        }
        Some("OOMKilled") if !is_oom_kill(terminated) => {
            format!(
                "exit code {} (labelled OOMKilled, but no OOM kill)",
                terminated.exit_code
            )
        }
        Some(reason) => reason.to_owned(),
        None => format!("exit code {}", terminated.exit_code),
    }
}

fn millis(time: &Time) -> i64 {
    time.0.as_millisecond()
}

fn epoch() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// Percentiles of observed shutdowns and a budget that would have covered them: the
/// longest plus a fifth, rounded up, and at least double the current budget when a
/// container was killed at the deadline (its true duration is unknown).
pub fn stats(seconds: &[f64], any_killed: bool, current_budget: i64) -> Option<ShutdownStats> {
    let summary = crate::stats::summary(seconds)?;
    let longest = seconds.iter().copied().fold(0.0, f64::max);
    let mut recommended = (longest * 1.2).ceil() as i64;
    if any_killed {
        recommended = recommended.max(current_budget.saturating_mul(2));
    }
    Some(ShutdownStats {
        observed: summary.count,
        p50_seconds: summary.p50,
        p95_seconds: summary.p95,
        max_seconds: summary.max,
        recommended_budget_seconds: recommended.max(1),
    })
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
