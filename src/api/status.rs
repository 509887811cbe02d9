use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What graceful observed of the pods a policy governs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GracefulPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (the policy is valid and in force), and one condition per kind of
    /// violation, False with the newest offenders while there are any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The terminationGracePeriodSeconds the policy gives to pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,

    /// Governed pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodCounts>,

    /// Violations counted over the current window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<ViolationCounts>,

    /// The newest violations, newest first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub recent: Vec<RecentViolation>,

    /// Observed shutdown durations of governed containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ShutdownStats>,
}

/// Governed pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodCounts {
    /// Pods the policy governs now.
    pub matched: i64,
    /// Of those, pods that carry the policy's changes.
    pub mutated: i64,
}

/// Violations counted over a time window.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ViolationCounts {
    /// Containers whose shutdown took longer than the budget, or that were SIGKILLed.
    pub budget_exceeded: i64,
    /// Containers killed for exceeding their memory limit.
    pub oom_killed: i64,
    /// Container restarts.
    pub restarts: i64,
    /// The sum of the above.
    pub total: i64,
    /// The length of the window the counts cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    /// When the current window began; the counts start again from zero when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<Time>,
}

/// One violation.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecentViolation {
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// BudgetExceeded, OOMKilled or Restarted.
    pub kind: String,
    /// When it happened.
    pub at: Time,
    /// What was measured.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Observed shutdown durations (the app's part, after the preStop sleep).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownStats {
    /// Shutdowns measured.
    pub observed: i64,
    /// Median shutdown duration.
    pub p50_seconds: f64,
    /// 95th percentile shutdown duration.
    pub p95_seconds: f64,
    /// Longest shutdown duration.
    pub max_seconds: f64,
    /// A shutdownBudgetSeconds that would have covered the observed shutdowns.
    pub recommended_budget_seconds: i64,
}
