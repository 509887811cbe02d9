//! One policy's report: counters over a window, the newest violations, shutdown
//! statistics, and the status conditions that follow from them. Pure: the clock comes
//! in as an argument.

use std::collections::{HashSet, VecDeque};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{
    Budget, Drain, GracefulPolicyStatus, Mode, PodCounts, PropagationStats, RecentViolation,
    RemovalStats, ShutdownStats, TimeSource, Tuning, ViolationCounts, ViolationKind,
};
use crate::recommend;
use crate::shutdown::{self, DisruptionKind, Finding};
use crate::tuning;

/// How many violations the status lists.
pub const RECENT_LIMIT: usize = 20;
/// How many shutdown durations the statistics are computed over.
const SAMPLE_LIMIT: usize = 1000;
/// How many offenders a condition message names.
const NAMED_OFFENDERS: usize = 3;

/// The condition that is False while violations of `kind` are recent, and its reason
/// when True; only the app's kinds have one.
fn condition_of(kind: ViolationKind) -> Option<(&'static str, &'static str)> {
    match kind {
        ViolationKind::BudgetExceeded => Some(("ShutdownsWithinBudget", "WithinBudget")),
        ViolationKind::OomKilled => Some(("NoOOMKills", "NoOOMKills")),
        ViolationKind::Restarted => Some(("NoRestarts", "NoRestarts")),
        _ => None,
    }
}

/// What the status says beyond the report itself.
#[derive(Debug, Clone)]
pub struct PolicyFacts {
    pub generation: Option<i64>,
    pub mode: Mode,
    pub grace_period_seconds: i64,
    pub budget: Budget,
    /// The policy's drain as written (its tuning and Auto's bounds).
    pub drain: Drain,
    /// Why the policy cannot be in force (a selector that does not parse), if so.
    pub invalid: Option<String>,
    pub pods: PodCounts,
}

#[derive(Debug, Clone)]
pub struct Report {
    window_seconds: i64,
    window_start: Option<Time>,
    /// Counts over the window, by kind (in [`ViolationKind::ALL`]'s order).
    counts: [i64; ViolationKind::ALL.len()],
    recent: VecDeque<RecentViolation>,
    /// Violations listed in the status graceful found at start: not counted again.
    restored: HashSet<String>,
    samples: VecDeque<(f64, bool)>,
    /// Statistics from the status found at start, until new shutdowns are seen.
    restored_stats: Option<ShutdownStats>,
    /// Endpoint propagation lags measured, and where their times came from.
    lags: VecDeque<(f64, TimeSource)>,
    /// Removals measured, of the same deletions.
    removals: VecDeque<f64>,
    /// The propagation statistics found at start, until new deletions are measured.
    restored_propagation: Option<PropagationStats>,
}

fn key(v: &RecentViolation) -> String {
    format!("{}/{}/{}/{}", v.pod, v.container, v.kind, v.at.0)
}

impl Report {
    /// A report that carries on from the status graceful wrote before it (re)started.
    pub fn restore(status: Option<&GracefulPolicyStatus>, window_seconds: i64) -> Self {
        let counts = status
            .and_then(|s| s.violations.clone())
            .unwrap_or_default();
        let recent: VecDeque<RecentViolation> = status
            .map(|s| s.recent.iter().cloned().collect())
            .unwrap_or_default();
        let counts_by_kind = ViolationKind::ALL.map(|kind| match kind {
            ViolationKind::BudgetExceeded => counts.budget_exceeded,
            ViolationKind::OomKilled => counts.oom_killed,
            ViolationKind::Restarted => counts.restarts,
            ViolationKind::GraceShortened => counts.grace_shortened,
            ViolationKind::Evicted => counts.evicted,
            ViolationKind::Preempted => counts.preempted,
        });
        Self {
            window_seconds,
            window_start: counts.window_start,
            counts: counts_by_kind,
            restored: recent.iter().map(key).collect(),
            recent,
            samples: VecDeque::new(),
            restored_stats: status.and_then(|s| s.shutdown.clone()),
            lags: VecDeque::new(),
            removals: VecDeque::new(),
            restored_propagation: status.and_then(|s| s.propagation.clone()),
        }
    }

    /// One deletion's endpoint propagation lag.
    pub fn add_lag(&mut self, seconds: f64, source: TimeSource) {
        push_bounded(&mut self.lags, (seconds, source), SAMPLE_LIMIT);
    }

    /// One deletion's removal from its slices.
    pub fn add_removal(&mut self, seconds: f64) {
        push_bounded(&mut self.removals, seconds, SAMPLE_LIMIT);
    }

    fn propagation(&self) -> Option<PropagationStats> {
        let seconds: Vec<f64> = self.lags.iter().map(|(s, _)| *s).collect();
        let Some(summary) = crate::stats::summary(&seconds) else {
            return self.restored_propagation.clone();
        };
        let removals: Vec<f64> = self.removals.iter().copied().collect();
        let removal = crate::stats::summary(&removals)
            .map(|summary| RemovalStats {
                observed: summary.count,
                p50_seconds: summary.p50,
                p95_seconds: summary.p95,
                max_seconds: summary.max,
            })
            .or_else(|| self.restored_propagation.as_ref()?.removal.clone());
        let sources = |source| self.lags.iter().all(|(_, s)| *s == source);
        let time_source = match (
            sources(TimeSource::WatchEvent),
            sources(TimeSource::TriggerTime),
        ) {
            (true, _) => TimeSource::WatchEvent,
            (_, true) => TimeSource::TriggerTime,
            _ => TimeSource::Mixed,
        };
        Some(PropagationStats {
            observed: summary.count,
            p50_seconds: summary.p50,
            p95_seconds: summary.p95,
            max_seconds: summary.max,
            time_source,
            removal,
        })
    }

    /// Adds what was found on `pod`; returns the violation to announce, or `None` for
    /// a shutdown within budget or a violation counted before.
    pub fn add(
        &mut self,
        pod: &str,
        finding: &Finding,
        budget: Budget,
        now: &Time,
    ) -> Option<RecentViolation> {
        let violation = match finding {
            Finding::Shutdown {
                container,
                seconds,
                killed,
                over_budget,
                at,
            } => {
                if !over_budget {
                    push_bounded(&mut self.samples, (*seconds, *killed), SAMPLE_LIMIT);
                    return None;
                }
                let detail = if *killed {
                    format!(
                        "SIGKILLed at the end of its grace period, {seconds:.1} s after its {} s preStop sleep (budget {} s)",
                        budget.pre_stop_sleep_seconds, budget.shutdown_budget_seconds
                    )
                } else {
                    format!(
                        "shut down in {seconds:.1} s after its {} s preStop sleep (budget {} s)",
                        budget.pre_stop_sleep_seconds, budget.shutdown_budget_seconds
                    )
                };
                violation(
                    pod,
                    container,
                    ViolationKind::BudgetExceeded,
                    at.clone(),
                    detail,
                )
            }
            Finding::GraceShortened {
                own_seconds,
                given_seconds,
                by,
                at,
            } => violation(
                pod,
                "",
                ViolationKind::GraceShortened,
                at.clone(),
                format!(
                    "deleted with a {given_seconds} s grace period instead of its own {own_seconds} s, by {}",
                    by.as_deref()
                        .unwrap_or("an API client (kubectl delete --grace-period, say)")
                ),
            ),
            Finding::Disrupted { kind, by, at } => {
                let (kind, verb) = match kind {
                    DisruptionKind::Evicted => (ViolationKind::Evicted, "evicted"),
                    DisruptionKind::Preempted => (ViolationKind::Preempted, "preempted"),
                };
                violation(
                    pod,
                    "",
                    kind,
                    at.clone().unwrap_or_else(|| now.clone()),
                    format!("{verb} by {by}"),
                )
            }
            Finding::OomKilled { container, at } => violation(
                pod,
                container,
                ViolationKind::OomKilled,
                at.clone(),
                format!("OOMKilled (exit code {})", shutdown::SIGKILL_EXIT_CODE),
            ),
            Finding::Restarted {
                container,
                count,
                reason,
                at,
            } => {
                let times = if *count == 1 { "once" } else { "times" };
                let count_text = if *count == 1 {
                    String::new()
                } else {
                    format!("{count} ")
                };
                let reason = reason.as_deref().unwrap_or("unknown");
                violation(
                    pod,
                    container,
                    ViolationKind::Restarted,
                    at.clone().unwrap_or_else(|| now.clone()),
                    format!("restarted {count_text}{times}; the last run ended with {reason}"),
                )
            }
        };
        if self.restored.contains(&key(&violation)) {
            return None;
        }
        if let Finding::Shutdown {
            seconds, killed, ..
        } = finding
        {
            push_bounded(&mut self.samples, (*seconds, *killed), SAMPLE_LIMIT);
        }
        self.roll_window(now);
        let increment = match finding {
            Finding::Restarted { count, .. } => i64::from(*count),
            _ => 1,
        };
        self.counts[kind_index(violation.kind)] += increment;
        self.recent.push_front(violation.clone());
        self.recent.truncate(RECENT_LIMIT);
        Some(violation)
    }

    /// Starts a new window when the current one is over (or there is none).
    fn roll_window(&mut self, now: &Time) {
        let expired = self
            .window_start
            .as_ref()
            .is_none_or(|start| seconds_between(start, now) >= self.window_seconds);
        if expired {
            self.window_start = Some(now.clone());
            self.counts = [0; ViolationKind::ALL.len()];
        }
    }

    /// The status this report and `facts` call for; conditions that keep their status
    /// keep their `lastTransitionTime` from `previous`.
    pub fn status(
        &mut self,
        facts: &PolicyFacts,
        previous: Option<&GracefulPolicyStatus>,
        now: &Time,
    ) -> GracefulPolicyStatus {
        self.roll_window(now);
        let mut conditions = vec![ready(facts)];
        for kind in ViolationKind::ALL {
            if let Some((type_, fine)) = condition_of(kind) {
                conditions.push(self.condition(kind, type_, fine, now));
            }
        }
        for condition in &mut conditions {
            condition.observed_generation = facts.generation;
            condition.last_transition_time = transition_time(condition, previous, now);
        }
        let durations: Vec<f64> = self.samples.iter().map(|(s, _)| *s).collect();
        let any_killed = self.samples.iter().any(|(_, killed)| *killed);
        let shutdown =
            shutdown::stats(&durations, any_killed, facts.budget.shutdown_budget_seconds)
                .or_else(|| self.restored_stats.clone());
        let propagation = self.propagation();
        let recommendations =
            tuning::recommendations(&facts.drain, propagation.as_ref(), shutdown.as_ref());
        let auto = tuning::auto_values(
            &facts.drain,
            recommendations.as_ref(),
            shutdown.as_ref(),
            previous.and_then(|p| p.auto.as_ref()),
            now,
        );
        let count = |kind| self.counts[kind_index(kind)];
        let mut status = GracefulPolicyStatus {
            observed_generation: facts.generation,
            conditions,
            termination_grace_period_seconds: Some(facts.grace_period_seconds),
            grace_periods: grace_periods(&facts.pods),
            pods: Some(facts.pods.clone()),
            violations: Some(ViolationCounts {
                budget_exceeded: count(ViolationKind::BudgetExceeded),
                oom_killed: count(ViolationKind::OomKilled),
                restarts: count(ViolationKind::Restarted),
                total: ViolationKind::ALL
                    .into_iter()
                    .filter(|kind| kind.is_the_apps())
                    .map(count)
                    .sum(),
                grace_shortened: count(ViolationKind::GraceShortened),
                evicted: count(ViolationKind::Evicted),
                preempted: count(ViolationKind::Preempted),
                window_seconds: Some(self.window_seconds),
                window_start: self.window_start.clone(),
            }),
            recent: self.recent.iter().cloned().collect(),
            shutdown,
            propagation,
            recommendations,
            auto,
        };
        if let Some(mut meets) = meets_recommendations(&facts.drain, &status) {
            meets.observed_generation = facts.generation;
            meets.last_transition_time = transition_time(&meets, previous, now);
            status.conditions.push(meets);
        }
        status
    }

    fn condition(&self, kind: ViolationKind, type_: &str, fine: &str, now: &Time) -> Condition {
        let offenders: Vec<&RecentViolation> = self
            .recent
            .iter()
            .filter(|v| v.kind == kind)
            .filter(|v| seconds_between(&v.at, now) < self.window_seconds)
            .collect();
        let (status, reason, message) = match offenders.as_slice() {
            [] => (
                "True",
                fine,
                format!("none in the last {}", window_text(self.window_seconds)),
            ),
            newest => {
                let named: Vec<String> = newest
                    .iter()
                    .take(NAMED_OFFENDERS)
                    .map(|v| format!("{}/{} {}", v.pod, v.container, v.detail))
                    .collect();

                (
                    "False",
                    kind.as_str(),
                    format!(
                        "{} in the last {}; newest: {}",
                        newest.len(),
                        window_text(self.window_seconds),
                        named.join("; ")
                    ),
                )
            }
        };
        condition(type_, status, reason, message)
    }
}

/// A condition that keeps its status keeps its `lastTransitionTime`.
fn transition_time(
    condition: &Condition,
    previous: Option<&GracefulPolicyStatus>,
    now: &Time,
) -> Time {
    let before = previous
        .into_iter()
        .flat_map(|p| &p.conditions)
        .find(|c| c.type_ == condition.type_);
    match before {
        Some(before) if before.status == condition.status => before.last_transition_time.clone(),
        _ => now.clone(),
    }
}

/// The condition type that is False while the values new pods get are below what
/// graceful recommends.
pub const MEETS_RECOMMENDATIONS: &str = "MeetsRecommendations";

/// `MeetsRecommendations`: False while a value new pods get is below its
/// recommendation, Unknown before anything can be recommended; none with `tuning:
/// Fixed`.
fn meets_recommendations(drain: &Drain, status: &GracefulPolicyStatus) -> Option<Condition> {
    if drain.tuning == Tuning::Fixed {
        return None;
    }
    let found = recommend::recommendations(drain, Some(status));
    let unmet: Vec<String> = found
        .iter()
        .filter(|r| r.is_unmet())
        .map(|r| {
            format!(
                "{} {} is below the recommended {}",
                r.setting.field(),
                r.current,
                r.recommended
            )
        })
        .collect();
    Some(match (found.is_empty(), unmet.is_empty()) {
        (true, _) => condition(
            MEETS_RECOMMENDATIONS,
            "Unknown",
            "TooFewObservations",
            "too little measured to recommend yet (status.recommendations)".to_owned(),
        ),
        (false, true) => condition(
            MEETS_RECOMMENDATIONS,
            "True",
            "MeetsRecommendations",
            "new pods get at least what graceful recommends".to_owned(),
        ),
        (false, false) => condition(
            MEETS_RECOMMENDATIONS,
            "False",
            "BelowRecommendation",
            format!("{} (status.recommendations)", unmet.join("; ")),
        ),
    })
}

/// `35`, or `30-60` when the governed pods differ; `None` without pods.
fn grace_periods(pods: &PodCounts) -> Option<String> {
    match (
        pods.min_grace_period_seconds?,
        pods.max_grace_period_seconds?,
    ) {
        (min, max) if min == max => Some(min.to_string()),
        (min, max) => Some(format!("{min}-{max}")),
    }
}

/// What the policy gives, and what the pods have when that differs: a pod's longer
/// grace period (the Kubernetes default of 30 s included) is never shortened.
fn in_force_message(facts: &PolicyFacts) -> String {
    let gives = facts.grace_period_seconds;
    let pods = &facts.pods;
    match (pods.min_grace_period_seconds, pods.max_grace_period_seconds) {
        (Some(min), Some(max)) if (min, max) != (gives, gives) => format!(
            "the policy gives a {gives} s grace period; governed pods have {} s (a longer one a pod had, the default 30 s included, is kept)",
            grace_periods(pods).unwrap_or_default()
        ),
        (Some(_), Some(_)) => format!("governed pods have a {gives} s grace period"),
        _ => format!("the policy gives a {gives} s grace period; it governs no pod yet"),
    }
}

fn ready(facts: &PolicyFacts) -> Condition {
    match (&facts.invalid, facts.mode) {
        (Some(why), _) => condition("Ready", "False", "Invalid", why.clone()),
        (None, Mode::Enforce) => condition("Ready", "True", "InForce", in_force_message(facts)),
        (None, Mode::Audit) => condition(
            "Ready",
            "True",
            "Auditing",
            "Audit mode: pods are not changed".to_owned(),
        ),
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }
}

fn violation(
    pod: &str,
    container: &str,
    kind: ViolationKind,
    at: Time,
    detail: String,
) -> RecentViolation {
    RecentViolation {
        pod: pod.to_owned(),
        container: container.to_owned(),
        kind,
        at,
        detail,
    }
}

/// `ALL` lists the kinds in declaration order.
fn kind_index(kind: ViolationKind) -> usize {
    kind as usize
}

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, limit: usize) {
    if queue.len() == limit {
        queue.pop_front();
    }
    queue.push_back(value);
}

fn seconds_between(earlier: &Time, later: &Time) -> i64 {
    later.0.as_second() - earlier.0.as_second()
}

fn window_text(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
