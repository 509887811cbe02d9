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
    /// From the measured shutdowns (`status.shutdown.recommendedBudgetSeconds`).
    #[serde(rename = "shutdownBudgetSeconds")]
    ShutdownBudgetSeconds,
}

impl Setting {
    pub const ALL: [Setting; 1] = [Setting::ShutdownBudgetSeconds];

    /// The field's name under `spec.drain`, also the metrics' `setting` label.
    pub fn field(self) -> &'static str {
        match self {
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
/// before it measured anything.
pub fn recommendations(
    drain: &Drain,
    status: Option<&GracefulPolicyStatus>,
) -> Vec<Recommendation> {
    let shutdown = status.and_then(|s| s.shutdown.as_ref());
    Setting::ALL
        .into_iter()
        .filter_map(|setting| match setting {
            Setting::ShutdownBudgetSeconds => {
                shutdown
                    .filter(|stats| stats.observed > 0)
                    .map(|stats| Recommendation {
                        setting,
                        current: drain.budget.shutdown_budget_seconds,
                        recommended: stats.recommended_budget_seconds,
                    })
            }
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
    fn a_budget_above_the_recommendation_needs_no_edit() {
        let found = for_budget(60, measured(5, 12));
        assert_eq!(found.len(), 1);
        assert!(!found[0].is_unmet());
        assert_eq!(merge_patch(&found), None);
    }
}
