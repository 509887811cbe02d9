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
    printcolumn(name = "Tuning", type_ = "string", json_path = ".spec.drain.tuning", priority = 1, description = "Fixed, Recommend or Auto"),
    printcolumn(name = "Rec-Sleep", type_ = "integer", json_path = ".status.recommendations.preStopSleepSeconds.seconds", priority = 1, description = "the preStop sleep graceful recommends, from the measured endpoint propagation"),
    printcolumn(name = "Rec-Budget", type_ = "integer", json_path = ".status.recommendations.shutdownBudgetSeconds.seconds", priority = 1, description = "the shutdown budget graceful recommends, from the measured shutdowns"),
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

    /// Which app containers are changed: All, or only those Serving traffic (whose ports
    /// back a Service of the namespace).
    #[serde(default)]
    pub targets: Targets,

    /// Whether pods of Jobs (and so CronJobs) that the selector matches are governed. A
    /// Job or CronJob that names the policy in its `graceful.dev/policy` annotation is
    /// governed either way.
    #[serde(default)]
    pub jobs: Jobs,

    /// Containers that are not the app: native sidecars and mesh proxies.
    #[serde(default)]
    pub sidecars: Sidecars,

    /// Environment variables that tell governed containers their shutdown budget. Absent:
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BudgetEnv>,
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

    /// The signal the runtime sends governed containers instead of their image's
    /// STOPSIGNAL (`lifecycle.stopSignal`, for apps that drain on another signal: nginx
    /// drains on SIGQUIT). Absent: the image's. Set only where the apiserver supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<StopSignal>,

    /// Whether graceful only applies the values above (Fixed), also recommends values
    /// from what it measured and says when these are below them (Recommend), or admits
    /// new pods with its recommendations (Auto).
    #[serde(default)]
    pub tuning: Tuning,

    /// How the recommendations are made.
    #[serde(default)]
    pub recommend: Recommend,

    /// The bounds and pace of Auto.
    #[serde(default)]
    pub auto: AutoTuning,
}

/// What graceful does with what it measures of the drain.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tuning {
    /// The policy's values, and no word about them.
    Fixed,
    /// The policy's values; the status recommends values and says when the policy's are
    /// below them.
    #[default]
    Recommend,
    /// New pods get the recommended values, within `auto`'s bounds.
    Auto,
}

/// How the recommendations are made.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Recommend {
    /// Seconds added to the measured endpoint propagation for what the API cannot show:
    /// kube-proxy's sync, an ingress controller's reload, a load balancer's
    /// deregistration (the README lists known values).
    #[serde(default = "default_data_plane_allowance_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub data_plane_allowance_seconds: i64,

    /// Deletions (for the sleep) and shutdowns (for the budget) measured before
    /// graceful recommends a value, and Auto acts.
    #[serde(default = "default_min_observations")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_observations: i64,
}

fn default_data_plane_allowance_seconds() -> i64 {
    3
}
fn default_min_observations() -> i64 {
    5
}

impl Default for Recommend {
    fn default() -> Self {
        Self {
            data_plane_allowance_seconds: default_data_plane_allowance_seconds(),
            min_observations: default_min_observations(),
        }
    }
}

/// The bounds and pace of Auto.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoTuning {
    /// At most one change of each value per this many seconds.
    #[serde(default = "default_auto_interval_seconds")]
    #[schemars(range(min = 0, max = 2_592_000))]
    pub interval_seconds: i64,

    /// The preStop sleeps Auto may give.
    #[serde(default = "default_auto_sleep_bounds")]
    pub pre_stop_sleep_seconds: Bounds,

    /// The shutdown budgets Auto may give.
    #[serde(default = "default_auto_budget_bounds")]
    pub shutdown_budget_seconds: Bounds,
}

fn default_auto_interval_seconds() -> i64 {
    3600
}
fn default_auto_sleep_bounds() -> Bounds {
    Bounds { min: 1, max: 60 }
}
fn default_auto_budget_bounds() -> Bounds {
    Bounds { min: 5, max: 600 }
}

impl Default for AutoTuning {
    fn default() -> Self {
        Self {
            interval_seconds: default_auto_interval_seconds(),
            pre_stop_sleep_seconds: default_auto_sleep_bounds(),
            shutdown_budget_seconds: default_auto_budget_bounds(),
        }
    }
}

/// The smallest and largest value Auto may give, in seconds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("min must not be above max"))]
pub struct Bounds {
    #[schemars(range(min = 0, max = 3600))]
    pub min: i64,
    #[schemars(range(min = 0, max = 3600))]
    pub max: i64,
}

impl Bounds {
    pub fn clamp(self, seconds: i64) -> i64 {
        seconds.clamp(self.min, self.max.max(self.min))
    }
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
            stop_signal: None,
            tuning: Tuning::default(),
            recommend: Recommend::default(),
            auto: AutoTuning::default(),
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

/// Signals an app can be stopped with (`lifecycle.stopSignal` on Linux).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum StopSignal {
    SIGTERM,
    SIGQUIT,
    SIGINT,
    SIGHUP,
    SIGUSR1,
    SIGUSR2,
    SIGWINCH,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::SIGTERM => "SIGTERM",
            StopSignal::SIGQUIT => "SIGQUIT",
            StopSignal::SIGINT => "SIGINT",
            StopSignal::SIGHUP => "SIGHUP",
            StopSignal::SIGUSR1 => "SIGUSR1",
            StopSignal::SIGUSR2 => "SIGUSR2",
            StopSignal::SIGWINCH => "SIGWINCH",
        }
    }
}

/// Which app containers a policy changes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Targets {
    /// Every app container (or those named in `containers`).
    #[default]
    All,
    /// Only app containers with a port that a Service of the namespace selects the pod
    /// for; the others serve no traffic and need no drain.
    Serving,
}

/// Whether Job pods that a policy's selector matches are governed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jobs {
    /// Not governed: a Job serves no traffic, and a longer grace period only delays it.
    #[default]
    Skip,
    /// Governed like any other pod.
    Include,
}

/// Containers handled as sidecars, not as apps: graceful puts no sleep, readiness,
/// variable or stop signal on them, and gives them time to stop after the app.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sidecars {
    /// Seconds the native sidecars (init containers with `restartPolicy: Always`) get to
    /// stop after the app containers have exited; added to the grace period of pods
    /// that have any.
    #[serde(default = "default_sidecar_shutdown_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub shutdown_seconds: i64,

    /// Names of containers handled as sidecars (mesh proxies injected as regular
    /// containers, say). Replaces the default list when set.
    #[serde(default = "default_sidecar_names")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub names: Vec<String>,

    /// Images of containers handled as sidecars: an image whose repository is, or ends
    /// in `/` and, one of these. Replaces the default list when set.
    #[serde(default = "default_sidecar_images")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub images: Vec<String>,

    /// What graceful does when a mesh proxy's own drain setting on the pod (Istio's
    /// `terminationDrainDuration`, Linkerd's `proxy-wait-before-exit-seconds`)
    /// contradicts the policy.
    #[serde(default)]
    pub mesh_drain: MeshDrain,
}

fn default_sidecar_shutdown_seconds() -> i64 {
    5
}
fn default_sidecar_names() -> Vec<String> {
    vec!["istio-proxy".to_owned(), "linkerd-proxy".to_owned()]
}
fn default_sidecar_images() -> Vec<String> {
    ["istio/proxyv2", "istio-release/proxyv2", "linkerd/proxy"]
        .map(str::to_owned)
        .to_vec()
}

impl Default for Sidecars {
    fn default() -> Self {
        Self {
            shutdown_seconds: default_sidecar_shutdown_seconds(),
            names: default_sidecar_names(),
            images: default_sidecar_images(),
            mesh_drain: MeshDrain::default(),
        }
    }
}

/// What happens to a mesh proxy's drain setting that contradicts the policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MeshDrain {
    /// Keep it, and warn.
    #[default]
    Warn,
    /// Rewrite it to what the policy's arithmetic needs.
    Align,
}

/// Variables that tell governed containers their shutdown budget. A variable the
/// container already sets is never overwritten.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetEnv {
    /// `GRACEFUL_PRESTOP_SLEEP_SECONDS`, `GRACEFUL_SHUTDOWN_BUDGET_SECONDS` and
    /// `GRACEFUL_TERMINATION_GRACE_PERIOD_SECONDS`.
    #[serde(default = "default_true")]
    pub standard: bool,

    /// More variables that receive the shutdown budget, each in its format (Spring
    /// Boot's `SPRING_LIFECYCLE_TIMEOUT_PER_SHUTDOWN_PHASE` as a `Duration`, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(v, self.exists_one(w, w.name == v.name))").message("budget variable names must be unique"))]
    pub budget: Vec<BudgetVariable>,
}

fn default_true() -> bool {
    true
}

/// One variable that receives the shutdown budget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.name.matches('^[A-Za-z_][A-Za-z0-9_.-]*$')").message("a variable name must start with a letter or an underscore and hold only letters, digits, '_', '-' and '.'"))]
pub struct BudgetVariable {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default)]
    pub format: EnvFormat,
}

/// How a budget is written into a variable.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EnvFormat {
    /// Whole seconds: `20`.
    #[default]
    Seconds,
    /// A duration with its unit, as Spring Boot and Go's `time.ParseDuration` read it:
    /// `20s`.
    Duration,
    /// Milliseconds: `20000`.
    Milliseconds,
}

impl EnvFormat {
    pub fn write(self, seconds: i64) -> String {
        match self {
            EnvFormat::Seconds => seconds.to_string(),
            EnvFormat::Duration => format!("{seconds}s"),
            EnvFormat::Milliseconds => seconds.saturating_mul(1000).to_string(),
        }
    }
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
