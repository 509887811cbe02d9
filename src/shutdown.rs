//! How a governed container ended: a shutdown over its budget, an OOM kill, a restart.
//! Pure: pod status in, findings out; the reconciler decides what to count and report.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::ShutdownStats;

/// Exit code of a process killed by SIGKILL (128 + 9): what the kubelet does at the
/// end of the grace period, and what the kernel's OOM killer does.
pub const SIGKILL_EXIT_CODE: i32 = 137;

/// finishedAt has second precision and the kubelet kills a moment after the deadline,
/// so "at the deadline" means within this much before it.
const DEADLINE_TOLERANCE_MS: i64 = 1_500;

/// The drain a pod was admitted under (from its `graceful.dev/applied` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub pre_stop_sleep_seconds: i64,
    pub shutdown_budget_seconds: i64,
}

/// A graceful deletion of a pod: the kubelet sends the preStop hook at
/// `deletionTimestamp - deletionGracePeriodSeconds` and SIGKILL at `deletionTimestamp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    pub deadline: Time,
    pub grace_period_seconds: i64,
}

impl Deletion {
    fn started_ms(&self) -> i64 {
        millis(&self.deadline) - self.grace_period_seconds.saturating_mul(1000)
    }
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
    OomKilled {
        container: String,
        at: Time,
    },
    Restarted {
        container: String,
        /// How many restarts since the container was last seen.
        count: i32,
        /// The reason the previous run ended (`Error`, `OOMKilled`, `Completed`, ...).
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
    let killed = terminated.exit_code == SIGKILL_EXIT_CODE
        && terminated.reason.as_deref() != Some("OOMKilled")
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
            reason: last.and_then(|t| t.reason.clone()),
            at: last.and_then(|t| t.finished_at.clone()),
        });
    }
    findings
}

/// The runtime has been seen to label a clean exit after a drain as OOMKilled: only a
/// SIGKILL counts.
fn is_oom_kill(terminated: &ContainerStateTerminated) -> bool {
    terminated.reason.as_deref() == Some("OOMKilled") && terminated.exit_code == SIGKILL_EXIT_CODE
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
    if seconds.is_empty() {
        return None;
    }
    let mut sorted = seconds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank =
        |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    let max = sorted[sorted.len() - 1];
    let mut recommended = (max * 1.2).ceil() as i64;
    if any_killed {
        recommended = recommended.max(current_budget.saturating_mul(2));
    }
    Some(ShutdownStats {
        observed: sorted.len() as i64,
        p50_seconds: round2(rank(0.50)),
        p95_seconds: round2(rank(0.95)),
        max_seconds: round2(max),
        recommended_budget_seconds: recommended.max(1),
    })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
