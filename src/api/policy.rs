use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::GracefulPolicyStatus;

/// How the pods of one namespace shut down: a preStop sleep so that traffic stops before
/// SIGTERM, a grace period that covers the sleep, the app's own shutdown and a margin,
/// and readiness probes that react fast.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "graceful.dev",
    version = "v1alpha1",
    kind = "GracefulPolicy",
    plural = "gracefulpolicies",
    shortname = "gp",
    category = "graceful",
    namespaced,
    status = "GracefulPolicyStatus",
    derive = "PartialEq",
    doc = "A GracefulPolicy makes the pods it governs shut down without dropping requests, and reports those that still do not.",
    // The policy name becomes a label value on every governed pod.
    validation = Rule::new("size(self.metadata.name) <= 63").message("a GracefulPolicy name must be at most 63 characters: it is written as a label value on governed pods"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode", description = "Enforce mutates pods; Audit only reports"),
    printcolumn(name = "Sleep", type_ = "integer", json_path = ".spec.drain.preStopSleepSeconds", priority = 1, description = "preStop sleep in seconds"),
    printcolumn(name = "Budget", type_ = "integer", json_path = ".spec.drain.shutdownBudgetSeconds", priority = 1, description = "seconds the app gets after SIGTERM"),
    printcolumn(name = "Gives", type_ = "integer", json_path = ".status.terminationGracePeriodSeconds", priority = 1, description = "terminationGracePeriodSeconds the policy gives to pods whose own is not longer"),
    printcolumn(name = "Grace", type_ = "string", json_path = ".status.gracePeriods", description = "terminationGracePeriodSeconds governed pods have (a range when they differ)"),
    printcolumn(name = "Violations", type_ = "integer", json_path = ".status.violations.total", description = "bad shutdowns, OOM kills and restarts in the current window"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GracefulPolicySpec {
    /// Pods of this namespace that the policy governs. Absent: only pods opted in by the
    /// `graceful.dev/policy` annotation; `{}`: every pod of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? has(e.values) && size(e.values) > 0 : e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0))").message("selector operators must be In or NotIn with values, or Exists or DoesNotExist without"))]
    pub selector: Option<LabelSelector>,

    /// The shutdown sequence given to governed pods.
    #[serde(default)]
    pub drain: Drain,

    /// Readiness probe settings for governed containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,

    /// Names of the containers to change; empty means every app container. Init
    /// containers are never changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub containers: Vec<String>,

    /// Enforce changes pods; Audit reports what would change and changes nothing.
    #[serde(default)]
    pub mode: Mode,
}

/// The shutdown sequence. The grace period given to a pod is
/// `preStopSleepSeconds + shutdownBudgetSeconds + safetyMarginSeconds`: the countdown
/// starts before the preStop hook runs, so the sleep lives inside the grace period.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.shutdownBudgetSeconds + self.safetyMarginSeconds >= 1").message("shutdownBudgetSeconds + safetyMarginSeconds must be at least 1: the preStop sleep must end before the grace period does"))]
pub struct Drain {
    /// The preStop sleep and the app's budget after it.
    #[serde(flatten)]
    pub budget: Budget,

    /// Padding after the budget before the kubelet sends SIGKILL.
    #[serde(default = "default_safety_margin_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub safety_margin_seconds: i64,

    /// How the sleep is run.
    #[serde(default)]
    pub pre_stop: PreStopAction,

    /// What happens to a preStop hook a container already has.
    #[serde(default)]
    pub existing_hooks: ExistingHooks,
}

/// The time a container gets to stop: a preStop sleep, then the app's own shutdown
/// after SIGTERM. One type for the policy's spec, the record on each pod and the
/// measurement of its shutdown, with one wire format.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Seconds to wait in preStop before SIGTERM, so that endpoints and load balancers
    /// stop sending traffic first.
    #[serde(default = "default_pre_stop_sleep_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub pre_stop_sleep_seconds: i64,

    /// Seconds the app gets after SIGTERM to finish in-flight work and exit.
    #[serde(default = "default_shutdown_budget_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub shutdown_budget_seconds: i64,
}

fn default_pre_stop_sleep_seconds() -> i64 {
    5
}
fn default_shutdown_budget_seconds() -> i64 {
    20
}
fn default_safety_margin_seconds() -> i64 {
    5
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            pre_stop_sleep_seconds: default_pre_stop_sleep_seconds(),
            shutdown_budget_seconds: default_shutdown_budget_seconds(),
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            budget: Budget::default(),
            safety_margin_seconds: default_safety_margin_seconds(),
            pre_stop: PreStopAction::default(),
            existing_hooks: ExistingHooks::default(),
        }
    }
}

impl Drain {
    /// The grace period this drain needs. Never less than the sleep plus one second:
    /// the apiserver rejects a sleep that is not shorter than the grace period.
    pub fn grace_period_seconds(&self) -> i64 {
        let Budget {
            pre_stop_sleep_seconds: sleep,
            shutdown_budget_seconds: budget,
        } = self.budget;
        let total = sleep
            .saturating_add(budget)
            .saturating_add(self.safety_margin_seconds);
        total.max(sleep.saturating_add(1))
    }
}

/// How the preStop sleep is run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreStopAction {
    /// The kubelet's native `sleep` action (works in distroless images); `exec sleep` on
    /// servers that lack it.
    #[default]
    Auto,
    /// `exec: ["sleep", "N"]`: needs a `sleep` binary in the image.
    Exec,
    /// No preStop hook.
    None,
}

/// What happens to a preStop hook a container already has.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExistingHooks {
    /// Leave the container's own hook in place.
    #[default]
    Keep,
    /// Replace it with the policy's sleep.
    Replace,
}

/// Enforce or only audit.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Change governed pods.
    #[default]
    Enforce,
    /// Report what would change; change nothing.
    Audit,
}

/// Readiness probe settings. The timings are applied to containers that have a readiness
/// probe; `probe` is added to containers that have none.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// How often the probe runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub period_seconds: Option<i32>,
    /// Consecutive failures before the container is marked unready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: Option<i32>,
    /// Seconds after which one probe times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: Option<i32>,
    /// A readiness probe for governed containers that have none (its timings are
    /// overridden by the settings above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}
