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

    /// The terminationGracePeriodSeconds the policy gives to pods whose own is not
    /// longer (graceful never shortens one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,

    /// The grace periods governed pods actually have, in seconds: `35`, or `35-60` when
    /// they differ. Absent while the policy governs no pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_periods: Option<String>,

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

    /// How long after a governed pod's deletion began the cluster's API stopped routing
    /// to it (the last of its EndpointSlices marked it not ready or removed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<PropagationStats>,

    /// The drain values graceful recommends from what it measured (not with
    /// `tuning: Fixed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<Recommendations>,

    /// The values `tuning: Auto` gives new pods, once it has acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoValues>,
}

/// Measured endpoint propagation lags.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PropagationStats {
    /// Deletions measured.
    pub observed: i64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
    pub max_seconds: f64,
    /// Where the times come from.
    pub time_source: TimeSource,
    /// When the same pods were removed from their slices, from the same start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<RemovalStats>,
}

/// Measured removals of deleted pods from their EndpointSlices.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemovalStats {
    /// Deletions measured.
    pub observed: i64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
    pub max_seconds: f64,
}

/// Where the times of endpoint changes come from.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeSource {
    /// When graceful's EndpointSlice watch delivered the change: what every proxy that
    /// watches the API could have known.
    #[default]
    WatchEvent,
    /// The slice's `endpoints.kubernetes.io/last-change-trigger-time`, for changes
    /// graceful only saw in a (re)list.
    TriggerTime,
    /// Some of each.
    Mixed,
}

/// What graceful recommends for the drain.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Recommendations {
    pub pre_stop_sleep_seconds: Advice,
    pub shutdown_budget_seconds: Advice,
}

/// One recommendation and how it was made.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Advice {
    /// The value; absent while too little was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
    /// Its parts, or why there is none yet.
    pub reason: String,
}

/// The values `tuning: Auto` gives; a value Auto has not set yet is the policy's.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoValues {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop_sleep_seconds: Option<AutoValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_budget_seconds: Option<AutoValue>,
}

/// One value Auto gives.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoValue {
    pub seconds: i64,
    /// When Auto last changed it.
    pub changed_at: Time,
    /// The recommendation it followed, and the bound that clamped it.
    pub reason: String,
}

/// Governed pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodCounts {
    /// Pods the policy governs now.
    pub matched: i64,
    /// Of those, pods that carry the policy's changes.
    pub mutated: i64,
    /// The shortest terminationGracePeriodSeconds among them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_grace_period_seconds: Option<i64>,
    /// The longest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grace_period_seconds: Option<i64>,
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
    /// The sum of the above: what the app is to answer for.
    pub total: i64,
    /// Deletions with a shorter grace period than the pod's own (not counted in
    /// `total`: the cluster cut the time short, not the app).
    #[serde(default)]
    pub grace_shortened: i64,
    /// Pods evicted (by the kubelet under node pressure, or through the Eviction API).
    #[serde(default)]
    pub evicted: i64,
    /// Pods preempted for a pod of higher priority.
    #[serde(default)]
    pub preempted: i64,
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
    /// The container's name; absent for what happened to the whole pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// BudgetExceeded, OOMKilled or Restarted (the app's), or GraceShortened, Evicted or
    /// Preempted (the cluster's).
    pub kind: ViolationKind,
    /// When it happened.
    pub at: Time,
    /// What was measured.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What a violation was. The first three are the app's to answer for, and each has a
/// condition; the others are what the cluster did to a pod, told apart so that the app
/// is not blamed for them.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    /// A shutdown took longer than the budget, or was SIGKILLed at the deadline.
    BudgetExceeded,
    /// The kernel's OOM killer ended a container (exit code 137).
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// A container restarted.
    Restarted,
    /// The pod was deleted with a shorter grace period than its own.
    GraceShortened,
    /// The pod was evicted.
    Evicted,
    /// The pod was preempted.
    Preempted,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 6] = [
        ViolationKind::BudgetExceeded,
        ViolationKind::OomKilled,
        ViolationKind::Restarted,
        ViolationKind::GraceShortened,
        ViolationKind::Evicted,
        ViolationKind::Preempted,
    ];

    /// The name on the wire, in Events and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::BudgetExceeded => "BudgetExceeded",
            ViolationKind::OomKilled => "OOMKilled",
            ViolationKind::Restarted => "Restarted",
            ViolationKind::GraceShortened => "GraceShortened",
            ViolationKind::Evicted => "Evicted",
            ViolationKind::Preempted => "Preempted",
        }
    }

    /// Whether the app is to answer for it (rather than the cluster).
    pub fn is_the_apps(self) -> bool {
        matches!(
            self,
            ViolationKind::BudgetExceeded | ViolationKind::OomKilled | ViolationKind::Restarted
        )
    }
}

impl std::fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
