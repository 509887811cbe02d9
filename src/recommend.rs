//! What graceful recommends for a policy, from what it measured of the pods the policy
//! governs. Pure: the policy (spec and status) in, the recommendations out. The metrics
//! (`graceful_policy_setting_seconds`, `graceful_policy_recommended_seconds`), their
//! alert, and `kubectl graceful status` and `recommend` all read them from here, so a
//! new recommendation (a preStop sleep, say) is added once, as a [`Setting`].

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::api::{Drain, GracefulPolicyStatus};

/// A setting of `spec.drain` that graceful may recommend a value for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Setting {
    /// From the measured endpoint propagation
    /// (`status.recommendations.preStopSleepSeconds`).
    #[serde(rename = "preStopSleepSeconds")]
    PreStopSleepSeconds,
    /// From the measured shutdowns (`status.recommendations.shutdownBudgetSeconds`, or
    /// with `tuning: Fixed` `status.shutdown.recommendedBudgetSeconds`).
    #[serde(rename = "shutdownBudgetSeconds")]
    ShutdownBudgetSeconds,
}

impl Setting {
    pub const ALL: [Setting; 2] = [Setting::PreStopSleepSeconds, Setting::ShutdownBudgetSeconds];

    /// The field's name under `spec.drain`, also the metrics' `setting` label.
    pub fn field(self) -> &'static str {
        match self {
            Setting::PreStopSleepSeconds => "preStopSleepSeconds",
            Setting::ShutdownBudgetSeconds => "shutdownBudgetSeconds",
        }
    }
}

/// The value a policy has for a setting, and the one graceful recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub setting: Setting,
    pub current: i64,
    pub recommended: i64,
}

impl Recommendation {
    /// The policy gives less than graceful recommends. A recommendation below the
    /// current value is only information: a longer budget costs nothing but time.
    pub fn is_unmet(&self) -> bool {
        self.current < self.recommended
    }
}

impl std::fmt::Display for Recommendation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.setting.field(),
            self.current,
            self.recommended
        )
    }
}

/// Every recommendation graceful has for a policy's `drain`, from its `status`; none
/// before it measured enough. `current` is what new pods get: with `tuning: Auto`, the
/// values Auto set.
pub fn recommendations(
    drain: &Drain,
    status: Option<&GracefulPolicyStatus>,
) -> Vec<Recommendation> {
    let (effective, _) = crate::tuning::effective(drain, status);
    let advised = status.and_then(|s| s.recommendations.as_ref());
    let shutdown = status
        .and_then(|s| s.shutdown.as_ref())
        .filter(|stats| stats.observed > 0);
    Setting::ALL
        .into_iter()
        .filter_map(|setting| {
            let (current, recommended) = match setting {
                Setting::PreStopSleepSeconds => (
                    effective.budget.pre_stop_sleep_seconds,
                    advised.and_then(|r| r.pre_stop_sleep_seconds.seconds),
                ),
                Setting::ShutdownBudgetSeconds => (
                    effective.budget.shutdown_budget_seconds,
                    match advised {
                        Some(r) => r.shutdown_budget_seconds.seconds,
                        None => shutdown.map(|stats| stats.recommended_budget_seconds),
                    },
                ),
            };
            recommended.map(|recommended| Recommendation {
                setting,
                current,
                recommended,
            })
        })
        .collect()
}

/// The JSON merge patch that raises every unmet setting to its recommendation
/// (`kubectl patch gp NAME --type merge -p ...`); `None` when nothing is unmet.
pub fn merge_patch(recommendations: &[Recommendation]) -> Option<Value> {
    let drain: Map<String, Value> = recommendations
        .iter()
        .filter(|r| r.is_unmet())
        .map(|r| (r.setting.field().to_owned(), json!(r.recommended)))
        .collect();
    (!drain.is_empty()).then(|| json!({"spec": {"drain": drain}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ShutdownStats;

    fn for_budget(budget: i64, shutdown: Option<ShutdownStats>) -> Vec<Recommendation> {
        let mut drain = Drain::default();
        drain.budget.shutdown_budget_seconds = budget;
        let status = GracefulPolicyStatus {
            shutdown,
            ..GracefulPolicyStatus::default()
        };
        recommendations(&drain, Some(&status))
    }

    fn measured(observed: i64, recommended: i64) -> Option<ShutdownStats> {
        Some(ShutdownStats {
            observed,
            recommended_budget_seconds: recommended,
            ..ShutdownStats::default()
        })
    }

    #[test]
    fn recommends_the_budget_graceful_measured() {
        let found = for_budget(20, measured(3, 36));
        assert_eq!(
            found,
            [Recommendation {
                setting: Setting::ShutdownBudgetSeconds,
                current: 20,
                recommended: 36
            }]
        );
        assert!(found[0].is_unmet());
        assert_eq!(found[0].to_string(), "shutdownBudgetSeconds 20 -> 36");
        assert_eq!(
            merge_patch(&found),
            Some(json!({"spec": {"drain": {"shutdownBudgetSeconds": 36}}}))
        );
    }

    #[test]
    fn nothing_before_a_shutdown_was_measured() {
        assert!(for_budget(20, None).is_empty());
        assert!(for_budget(20, measured(0, 1)).is_empty());
        assert!(recommendations(&Drain::default(), None).is_empty());
        assert_eq!(merge_patch(&[]), None);
    }

    #[test]
    fn the_sleep_and_the_budget_from_the_recommendations_against_what_auto_gives() {
        use crate::api::{Advice, AutoValue, AutoValues, Recommendations, Tuning};
        let advice = |seconds| Advice {
            seconds,
            reason: String::new(),
        };
        let mut drain = Drain::default();
        drain.budget.pre_stop_sleep_seconds = 0;
        let status = GracefulPolicyStatus {
            recommendations: Some(Recommendations {
                pre_stop_sleep_seconds: advice(Some(4)),
                shutdown_budget_seconds: advice(None),
            }),
            shutdown: measured(3, 36),
            auto: Some(AutoValues {
                pre_stop_sleep_seconds: Some(AutoValue {
                    seconds: 4,
                    changed_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ),
                    reason: String::new(),
                }),
                shutdown_budget_seconds: None,
            }),
            ..GracefulPolicyStatus::default()
        };
        let found = recommendations(&drain, Some(&status));
        assert_eq!(found.len(), 1, "too few shutdowns for a budget: {found:?}");
        assert_eq!((found[0].current, found[0].recommended), (0, 4));
        assert_eq!(
            merge_patch(&found),
            Some(json!({"spec": {"drain": {"preStopSleepSeconds": 4}}}))
        );
        drain.tuning = Tuning::Auto;
        let found = recommendations(&drain, Some(&status));
        assert!(!found[0].is_unmet(), "Auto gives 4");
    }

    #[test]
    fn a_budget_above_the_recommendation_needs_no_edit() {
        let found = for_budget(60, measured(5, 12));
        assert_eq!(found.len(), 1);
        assert!(!found[0].is_unmet());
        assert_eq!(merge_patch(&found), None);
    }
}
