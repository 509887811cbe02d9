//! The mutation engine: from a pod, the policy that governs it and what the server
//! supports, the RFC 6902 patch that applies the policy and a record of what it changes.
//! Pure: no I/O, no clock, no allocation beyond the result.

mod pod;
mod record;

use json_patch::jsonptr::{Pointer, PointerBuf};
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Map, Value, json};

use crate::api::{
    APPLIED_ANNOTATION, Drain, ExistingHooks, GracefulPolicySpec, Mode, POLICY_KEY, PreStopAction,
    Readiness,
};
pub use pod::{
    ContainerView, LifecycleView, OwnerReferenceView, PodMeta, PodSpecView, PodView, ProbeTimings,
};
pub use record::{ChangeRecord, FieldChange};

/// The grace period Kubernetes gives a pod that sets none.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;

/// What the apiserver that admits the pod supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The native `lifecycle.preStop.sleep` action: on by default from Kubernetes 1.30,
    /// GA in 1.34.
    pub native_sleep: bool,
}

impl Capabilities {
    pub fn for_server_version(major: u32, minor: u32) -> Self {
        Self {
            native_sleep: (major, minor) >= (1, 30),
        }
    }
}

impl Default for Capabilities {
    /// Our support floor, Kubernetes 1.34.
    fn default() -> Self {
        Self::for_server_version(1, 34)
    }
}

/// The policy that governs a pod, as the engine needs it.
#[derive(Debug, Clone, Copy)]
pub struct Governing<'a> {
    pub name: &'a str,
    pub spec: &'a GracefulPolicySpec,
}

/// The result of applying a policy to one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// Operations to send back; empty in Audit mode and for a pod already patched.
    pub patch: Patch,
    /// What the policy changes (in Audit mode: would change).
    pub record: ChangeRecord,
    /// Things the user should know, for admission warnings and `graceful mutate`.
    pub warnings: Vec<String>,
}

/// Applies `policy` to `pod`, found at `root` inside the document the patch is for
/// (the empty pointer for a Pod, `/spec/template` for a Deployment).
pub fn mutate(pod: &PodView, root: &Pointer, policy: Governing, caps: Capabilities) -> Mutation {
    let spec = policy.spec;
    let mut edit = Edit::new(root);

    let hook = desired_hook(&spec.drain, caps);
    for (index, container) in pod.spec.containers.iter().enumerate() {
        if !spec.containers.is_empty() && !spec.containers.contains(&container.name) {
            continue;
        }
        let base = ContainerPath::new(index, &container.name);
        if let Some(hook) = &hook {
            edit.pre_stop(&base, container, hook, spec.drain.existing_hooks);
        }
        if let Some(readiness) = &spec.readiness {
            edit.readiness(&base, container, readiness);
        }
    }
    for wanted in &spec.containers {
        if !pod.spec.containers.iter().any(|c| &c.name == wanted) {
            edit.warnings.push(format!(
                "policy {} names container {wanted:?}, which this pod does not have",
                policy.name
            ));
        }
    }
    edit.grace_period(pod.spec.termination_grace_period_seconds, &spec.drain);

    let mut record = ChangeRecord {
        policy: policy.name.to_owned(),
        mode: spec.mode,
        budget: spec.drain.budget,
        changes: std::mem::take(&mut edit.changes),
    };

    if spec.mode == Mode::Audit {
        if !record.changes.is_empty() {
            let fields: Vec<&str> = record.changes.iter().map(|c| c.field.as_str()).collect();
            edit.warnings.push(format!(
                "policy {} is in Audit mode; in Enforce mode it would change {}",
                policy.name,
                fields.join(", ")
            ));
        }
        return Mutation {
            patch: Patch(Vec::new()),
            record,
            warnings: edit.warnings,
        };
    }

    let earlier = pod
        .annotation(APPLIED_ANNOTATION)
        .and_then(|text| serde_json::from_str::<ChangeRecord>(text).ok());
    let recorded = earlier.as_ref().is_some_and(|r| r.policy == policy.name);
    // An already-patched pod yields no operations at all: nothing changed and the record
    // of the earlier pass stays as it is.
    if !record.changes.is_empty() || !recorded {
        if let Some(earlier) = earlier {
            record.merge_earlier(earlier);
        }
        edit.metadata(pod, policy.name, &record);
    }

    Mutation {
        patch: Patch(edit.ops),
        record,
        warnings: edit.warnings,
    }
}

/// The preStop hook the drain asks for, if any: no hook for `None` or a zero sleep.
fn desired_hook(drain: &Drain, caps: Capabilities) -> Option<Value> {
    let seconds = drain.budget.pre_stop_sleep_seconds;
    let exec = match drain.pre_stop {
        PreStopAction::None => return None,
        _ if seconds <= 0 => return None,
        PreStopAction::Exec => true,
        PreStopAction::Auto => !caps.native_sleep,
    };
    Some(if exec {
        json!({"exec": {"command": ["sleep", seconds.to_string()]}})
    } else {
        json!({"sleep": {"seconds": seconds}})
    })
}

/// Where a container lives in the patch, and how the record names it.
struct ContainerPath<'a> {
    index: String,
    name: &'a str,
}

impl<'a> ContainerPath<'a> {
    fn new(index: usize, name: &'a str) -> Self {
        Self {
            index: index.to_string(),
            name,
        }
    }

    /// `spec.containers[NAME].` followed by `rest`, joined by hand: up to six of these
    /// per container and admission, where `format!` would cost more than the rest of
    /// the record.
    fn field(&self, rest: &[&str]) -> String {
        const PREFIX: &str = "spec.containers[";
        let len = PREFIX.len() + self.name.len() + 2 + rest.iter().map(|r| r.len()).sum::<usize>();
        let mut field = String::with_capacity(len);
        field.push_str(PREFIX);
        field.push_str(self.name);
        field.push_str("].");
        for part in rest {
            field.push_str(part);
        }
        field
    }
}

/// Operations, recorded changes and warnings as they are collected.
struct Edit<'a> {
    root: &'a Pointer,
    ops: Vec<PatchOperation>,
    changes: Vec<FieldChange>,
    warnings: Vec<String>,
}

impl<'a> Edit<'a> {
    fn new(root: &'a Pointer) -> Self {
        Self {
            root,
            ops: Vec::new(),
            changes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn add(&mut self, tokens: &[&str], value: Value) {
        let mut path: PointerBuf = self.root.to_buf();
        for token in tokens {
            path.push_back(*token);
        }
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    /// Adds `value` at `tokens` and records the change of `field`.
    fn change(&mut self, tokens: &[&str], value: Value, field: String, from: Option<Value>) {
        self.changes.push(FieldChange {
            field,
            from,
            to: value.clone(),
        });
        self.add(tokens, value);
    }

    fn pre_stop(
        &mut self,
        at: &ContainerPath,
        container: &ContainerView,
        hook: &Value,
        existing_hooks: ExistingHooks,
    ) {
        let lifecycle = container.lifecycle.as_ref();
        let current = lifecycle.and_then(|l| l.pre_stop.as_ref());
        match current {
            Some(current) if current == hook => return,
            Some(_) if existing_hooks == ExistingHooks::Keep => {
                self.warnings.push(format!(
                    "container {} keeps its own preStop hook (existingHooks: Keep); the policy's sleep is not added",
                    at.name
                ));
                return;
            }
            _ => {}
        }
        let field = at.field(&["lifecycle.preStop"]);
        if lifecycle.is_some() {
            let tokens = ["spec", "containers", &at.index, "lifecycle", "preStop"];
            self.change(&tokens, hook.clone(), field, current.cloned());
        } else {
            self.changes.push(FieldChange {
                field,
                from: None,
                to: hook.clone(),
            });
            let tokens = ["spec", "containers", &at.index, "lifecycle"];
            self.add(&tokens, json!({ "preStop": hook }));
        }
    }

    fn readiness(&mut self, at: &ContainerPath, container: &ContainerView, readiness: &Readiness) {
        let timings = [
            ("periodSeconds", readiness.period_seconds),
            ("failureThreshold", readiness.failure_threshold),
            ("timeoutSeconds", readiness.timeout_seconds),
        ];
        match &container.readiness_probe {
            Some(current) => {
                let have = [
                    current.period_seconds,
                    current.failure_threshold,
                    current.timeout_seconds,
                ];
                for ((name, want), have) in timings.into_iter().zip(have) {
                    let Some(want) = want else { continue };
                    if have == Some(want) {
                        continue;
                    }
                    let tokens = ["spec", "containers", &at.index, "readinessProbe", name];
                    let field = at.field(&["readinessProbe.", name]);
                    self.change(&tokens, json!(want), field, have.map(|h| json!(h)));
                }
            }
            None => {
                let Some(probe) = &readiness.probe else {
                    return;
                };
                let mut value = match serde_json::to_value(probe) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                for (name, want) in timings {
                    if let Some(want) = want {
                        value.insert(name.to_owned(), json!(want));
                    }
                }
                let tokens = ["spec", "containers", &at.index, "readinessProbe"];
                self.change(
                    &tokens,
                    Value::Object(value),
                    at.field(&["readinessProbe"]),
                    None,
                );
            }
        }
    }

    fn grace_period(&mut self, current: Option<i64>, drain: &Drain) {
        let want = drain.grace_period_seconds();
        let effective = current.unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS);
        if want > effective {
            self.change(
                &["spec", "terminationGracePeriodSeconds"],
                json!(want),
                "spec.terminationGracePeriodSeconds".to_owned(),
                current.map(|c| json!(c)),
            );
        } else if effective > want && effective != DEFAULT_GRACE_PERIOD_SECONDS {
            // The Kubernetes default is filled in before admission and cannot be told
            // apart from a choice, so only a grace period the user picked is worth a word.
            self.warnings.push(format!(
                "kept terminationGracePeriodSeconds {effective}: the policy needs {want}, and graceful never shortens a grace period"
            ));
        }
    }

    /// The label that lets the reconciler watch only governed pods, and the record.
    fn metadata(&mut self, pod: &PodView, policy: &str, record: &ChangeRecord) {
        let record = match serde_json::to_string(record) {
            Ok(text) => text,
            Err(error) => {
                self.warnings.push(format!(
                    "could not write the {APPLIED_ANNOTATION} record: {error}"
                ));
                return;
            }
        };
        let Some(meta) = &pod.metadata else {
            self.add(
                &["metadata"],
                json!({
                    "labels": { POLICY_KEY: policy },
                    "annotations": { APPLIED_ANNOTATION: record },
                }),
            );
            return;
        };
        match &meta.labels {
            Some(labels) if labels.get(POLICY_KEY).map(String::as_str) == Some(policy) => {}
            Some(_) => self.add(&["metadata", "labels", POLICY_KEY], json!(policy)),
            None => self.add(&["metadata", "labels"], json!({ POLICY_KEY: policy })),
        }
        match &meta.annotations {
            Some(_) => self.add(
                &["metadata", "annotations", APPLIED_ANNOTATION],
                json!(record),
            ),
            None => self.add(
                &["metadata", "annotations"],
                json!({ APPLIED_ANNOTATION: record }),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
