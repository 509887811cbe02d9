//! The `GracefulPolicy` API (`graceful.dev/v1alpha1`) and the well-known keys graceful
//! reads and writes on other objects.

mod policy;
mod status;
mod validate;

pub use policy::{
    AutoTuning, Bounds, Budget, BudgetEnv, BudgetVariable, Drain, EnvFormat, ExistingHooks,
    GracefulPolicy, GracefulPolicySpec, Jobs, MeshDrain, Mode, PreStopAction, Readiness, Recommend,
    Sidecars, StopSignal, Targets, Tuning,
};
pub use status::{
    Advice, AutoValue, AutoValues, GracefulPolicyStatus, PodCounts, PropagationStats,
    RecentViolation, Recommendations, RemovalStats, ShutdownStats, TimeSource, ViolationCounts,
    ViolationKind,
};
pub use validate::{Invalid, validate};

/// Annotation on a pod, its template or an owning workload that names the governing
/// policy (or opts out with [`OPT_OUT`]); also the label graceful puts on governed pods,
/// so that the reconciler can watch exactly those.
pub const POLICY_KEY: &str = "graceful.dev/policy";

/// The value of [`POLICY_KEY`] that opts a workload out of every policy.
pub const OPT_OUT: &str = "false";

/// The annotation the kubelet puts on the mirror of a static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Annotation graceful writes on a mutated pod: what it changed, from what, under which
/// drain settings (a JSON [`crate::mutate::ChangeRecord`]).
pub const APPLIED_ANNOTATION: &str = "graceful.dev/applied";

/// Annotation on the CustomResourceDefinition: the graceful release it comes with.
pub const VERSION_ANNOTATION: &str = "graceful.dev/version";

/// The CustomResourceDefinition of `GracefulPolicy` as YAML, exactly as `crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    let mut crd = GracefulPolicy::crd();
    crd.metadata.annotations = Some(std::collections::BTreeMap::from([(
        VERSION_ANNOTATION.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    )]));
    serde_yaml_ng::to_string(&crd)
}
