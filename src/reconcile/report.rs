//! One policy's report: counters over a window, the newest violations, shutdown
//! statistics, and the status conditions that follow from them. Pure: the clock comes
//! in as an argument.

use std::collections::{HashSet, VecDeque};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{
    GracefulPolicyStatus, Mode, PodCounts, RecentViolation, ShutdownStats, ViolationCounts,
};
use crate::shutdown::{self, Budget, Finding};

/// How many violations the status lists.
pub const RECENT_LIMIT: usize = 20;
/// How many shutdown durations the statistics are computed over.
const SAMPLE_LIMIT: usize = 1000;
/// How many offenders a condition message names.
const NAMED_OFFENDERS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BudgetExceeded,
    OomKilled,
    Restarted,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::BudgetExceeded, Kind::OomKilled, Kind::Restarted];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BudgetExceeded => "BudgetExceeded",
            Kind::OomKilled => "OOMKilled",
            Kind::Restarted => "Restarted",
        }
    }

    /// The condition that is False while violations of this kind are recent, and its
    /// reason when True.
    fn condition(self) -> (&'static str, &'static str) {
        match self {
            Kind::BudgetExceeded => ("ShutdownsWithinBudget", "WithinBudget"),
            Kind::OomKilled => ("NoOOMKills", "NoOOMKills"),
            Kind::Restarted => ("NoRestarts", "NoRestarts"),
        }
    }
}

/// What the status says beyond the report itself.
#[derive(Debug, Clone)]
pub struct PolicyFacts {
    pub generation: Option<i64>,
    pub mode: Mode,
    pub grace_period_seconds: i64,
    pub budget: Budget,
    /// Why the policy cannot be in force (a selector that does not parse), if so.
    pub invalid: Option<String>,
    pub pods: PodCounts,
}

#[derive(Debug, Clone)]
pub struct Report {
    window_seconds: i64,
    window_start: Option<Time>,
    budget_exceeded: i64,
    oom_killed: i64,
    restarts: i64,
    recent: VecDeque<RecentViolation>,
    /// Violations listed in the status graceful found at start: not counted again.
    restored: HashSet<String>,
    samples: VecDeque<(f64, bool)>,
    /// Statistics from the status found at start, until new shutdowns are seen.
    restored_stats: Option<ShutdownStats>,
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
        Self {
            window_seconds,
            window_start: counts.window_start,
            budget_exceeded: counts.budget_exceeded,
            oom_killed: counts.oom_killed,
            restarts: counts.restarts,
            restored: recent.iter().map(key).collect(),
            recent,
            samples: VecDeque::new(),
            restored_stats: status.and_then(|s| s.shutdown.clone()),
        }
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
                violation(pod, container, Kind::BudgetExceeded, at.clone(), detail)
            }
            Finding::OomKilled { container, at } => violation(
                pod,
                container,
                Kind::OomKilled,
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
                    Kind::Restarted,
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
        match kind_of(&violation) {
            Some(Kind::BudgetExceeded) => self.budget_exceeded += increment,
            Some(Kind::OomKilled) => self.oom_killed += increment,
            Some(Kind::Restarted) => self.restarts += increment,
            None => {}
        }
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
            self.budget_exceeded = 0;
            self.oom_killed = 0;
            self.restarts = 0;
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
        for kind in Kind::ALL {
            conditions.push(self.condition(kind, now));
        }
        for condition in &mut conditions {
            condition.observed_generation = facts.generation;
            let before = previous
                .into_iter()
                .flat_map(|p| &p.conditions)
                .find(|c| c.type_ == condition.type_);
            condition.last_transition_time = match before {
                Some(before) if before.status == condition.status => {
                    before.last_transition_time.clone()
                }
                _ => now.clone(),
            };
        }
        let durations: Vec<f64> = self.samples.iter().map(|(s, _)| *s).collect();
        let any_killed = self.samples.iter().any(|(_, killed)| *killed);
        GracefulPolicyStatus {
            observed_generation: facts.generation,
            conditions,
            termination_grace_period_seconds: Some(facts.grace_period_seconds),
            pods: Some(facts.pods.clone()),
            violations: Some(ViolationCounts {
                budget_exceeded: self.budget_exceeded,
                oom_killed: self.oom_killed,
                restarts: self.restarts,
                total: self.budget_exceeded + self.oom_killed + self.restarts,
                window_seconds: Some(self.window_seconds),
                window_start: self.window_start.clone(),
            }),
            recent: self.recent.iter().cloned().collect(),
            shutdown: shutdown::stats(&durations, any_killed, facts.budget.shutdown_budget_seconds)
                .or_else(|| self.restored_stats.clone()),
        }
    }

    fn condition(&self, kind: Kind, now: &Time) -> Condition {
        let (type_, fine) = kind.condition();
        let offenders: Vec<&RecentViolation> = self
            .recent
            .iter()
            .filter(|v| v.kind == kind.as_str())
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

fn ready(facts: &PolicyFacts) -> Condition {
    match (&facts.invalid, facts.mode) {
        (Some(why), _) => condition("Ready", "False", "Invalid", why.clone()),
        (None, Mode::Enforce) => condition(
            "Ready",
            "True",
            "InForce",
            format!(
                "governed pods get a {} s grace period",
                facts.grace_period_seconds
            ),
        ),
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

fn violation(pod: &str, container: &str, kind: Kind, at: Time, detail: String) -> RecentViolation {
    RecentViolation {
        pod: pod.to_owned(),
        container: container.to_owned(),
        kind: kind.as_str().to_owned(),
        at,
        detail,
    }
}

fn kind_of(violation: &RecentViolation) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == violation.kind)
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
