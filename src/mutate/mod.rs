//! The mutation engine: from a pod, the policy that governs it and what the server
//! supports, the RFC 6902 patch that applies the policy and a record of what it changes.
//! Pure: no I/O, no clock, no allocation beyond the result.

mod env;
pub mod mesh;
mod patch;
mod pod;
mod record;
mod roles;

use std::collections::BTreeMap;

use json_patch::jsonptr::Pointer;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::api::{
    APPLIED_ANNOTATION, Drain, ExistingHooks, GracefulPolicySpec, MeshDrain, Mode, POLICY_KEY,
    PreStopAction, Readiness, StopSignal,
};
use crate::json::write;
use patch::Entry;
pub use patch::Patch;
pub use pod::{
    ContainerView, EnvVarView, LifecycleView, OwnerReferenceView, PodMeta, PodOsView, PodSpecView,
    PodView, PortView, ProbeTimings,
};
pub use record::{ChangeRecord, FieldChange};
pub use roles::{Backend, Role, TargetPort};

use mesh::{Mesh, Need};

/// The grace period Kubernetes gives a pod that sets none.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;

/// What the apiserver that admits the pod supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The native `lifecycle.preStop.sleep` action: on by default from Kubernetes 1.30,
    /// GA in 1.34.
    pub native_sleep: bool,
    /// `lifecycle.stopSignal` (KEP-4960): in the API from Kubernetes 1.33, behind the
    /// `ContainerStopSignals` feature gate; a server with the gate off drops the field.
    pub stop_signal: bool,
}

impl Capabilities {
    pub fn for_server_version(major: u32, minor: u32) -> Self {
        Self {
            native_sleep: (major, minor) >= (1, 30),
            stop_signal: (major, minor) >= (1, 33),
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
    /// The Services of the pod's namespace, for `targets: Serving`.
    pub services: &'a [Backend],
    /// How `tuning: Auto` set the drain in `spec`, a line per value, for the record.
    pub tuning: &'a [String],
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

/// The grace period `spec` needs for `pod`: the drain's, plus the sidecars' shutdown
/// after the app when the pod has native sidecars (they are stopped only once every app
/// container has exited, inside the same grace period).
pub fn grace_period_needed(spec: &GracefulPolicySpec, pod: &PodView) -> i64 {
    let drain = spec.drain.grace_period_seconds();
    if pod
        .spec
        .init_containers
        .iter()
        .any(ContainerView::is_native_sidecar)
    {
        drain.saturating_add(spec.sidecars.shutdown_seconds)
    } else {
        drain
    }
}

/// Applies `policy` to `pod`, found at `root` inside the document the patch is for
/// (the empty pointer for a Pod, `/spec/template` for a Deployment).
pub fn mutate(pod: &PodView, root: &Pointer, policy: Governing, caps: Capabilities) -> Mutation {
    let spec = policy.spec;
    let mut edit = Edit::new(root);
    let earlier = pod
        .annotation(APPLIED_ANNOTATION)
        .and_then(|text| serde_json::from_str::<ChangeRecord>(text).ok())
        .filter(|r| r.policy == policy.name);

    let want = grace_period_needed(spec, pod);
    let current = pod.spec.termination_grace_period_seconds;
    let grace = want.max(current.unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS));
    let hook = desired_hook(&spec.drain, caps);
    let variables = env::wanted(spec, grace);
    let mut apps: Vec<(usize, &ContainerView)> = Vec::new();
    let mut left_alone = BTreeMap::new();
    for (index, container) in pod.spec.containers.iter().enumerate() {
        match Role::of(container, pod, policy) {
            Role::App => apps.push((index, container)),
            role => {
                left_alone.insert(container.name.clone(), role);
            }
        }
    }
    let signal = if apps.is_empty() {
        None
    } else {
        stop_signal(spec, pod, caps, &mut edit)
    };
    for (index, container) in apps {
        let base = ContainerPath::new(index, &container.name);
        let mut lifecycle = container.lifecycle.is_some();
        if let Some(hook) = &hook {
            edit.pre_stop(
                &base,
                container,
                hook,
                spec.drain.existing_hooks,
                &mut lifecycle,
            );
        }
        if let Some(signal) = signal {
            edit.stop_signal(&base, container, signal, &mut lifecycle);
        }
        if let Some(readiness) = &spec.readiness {
            edit.readiness(&base, container, readiness);
        }
        if !variables.is_empty() {
            edit.env(&base, container, &variables, earlier.as_ref());
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
    edit.meshes(pod, spec);
    edit.grace_period(current, want);

    let mut record = ChangeRecord {
        policy: policy.name.to_owned(),
        mode: spec.mode,
        budget: spec.drain.budget,
        left_alone,
        tuning: policy.tuning.to_vec(),
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
            patch: Patch::default(),
            record,
            warnings: edit.warnings,
        };
    }

    // An already-patched pod yields no operations at all: nothing changed and the record
    // of the earlier pass stays as it is. A container added since (an injected proxy) is
    // still recorded as left alone.
    let rewrite = earlier
        .as_ref()
        .is_none_or(|e| !record.changes.is_empty() || e.left_alone != record.left_alone);
    if rewrite {
        if let Some(earlier) = earlier {
            record.merge_earlier(earlier);
        }
        edit.metadata(pod, policy.name, &record);
    }

    Mutation {
        patch: edit.patch,
        record,
        warnings: edit.warnings,
    }
}

/// The stop signal to set on app containers, if the policy asks for one and the pod can
/// take it; the apiserver accepts `lifecycle.stopSignal` only on pods that name their OS.
fn stop_signal(
    spec: &GracefulPolicySpec,
    pod: &PodView,
    caps: Capabilities,
    edit: &mut Edit,
) -> Option<StopSignal> {
    let signal = spec.drain.stop_signal?;
    if !caps.stop_signal {
        edit.warnings.push(format!(
            "stopSignal {} is not set: this Kubernetes version has no lifecycle.stopSignal (1.33+ with the ContainerStopSignals feature gate)",
            signal.name()
        ));
        return None;
    }
    match pod.spec.os.as_ref().map(|os| os.name.as_str()) {
        Some("linux") => {}
        Some(other) => {
            edit.warnings.push(format!(
                "stopSignal {} is not set: pods on {other} take no stop signal but SIGTERM",
                signal.name()
            ));
            return None;
        }
        None => edit.change(
            &["spec", "os"],
            json!({"name": "linux"}),
            "spec.os".to_owned(),
            None,
        ),
    }
    Some(signal)
}

fn contradiction(container: &str, mesh: Mesh, seconds: f64, need: Need) -> String {
    let (key, setting) = (mesh.annotation(), mesh.setting());
    match need {
        Need::AtLeast(want) => format!(
            "{container} stops {seconds}s into the shutdown ({setting} in {key}), before the app's preStop sleep and shutdown budget ({want}s) are over: set it to at least {want}, or sidecars.meshDrain: Align"
        ),
        Need::AtMost(want) => format!(
            "{container} drains for {seconds}s after the app has exited ({setting} in {key}), longer than sidecars.shutdownSeconds ({want}): set it to at most {want}s, raise shutdownSeconds, or sidecars.meshDrain: Align"
        ),
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
    patch: Patch,
    changes: Vec<FieldChange>,
    warnings: Vec<String>,
}

impl<'a> Edit<'a> {
    fn new(root: &'a Pointer) -> Self {
        Self {
            root,
            patch: Patch::default(),
            changes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Adds `value` at `tokens`; a value that cannot be written (none the engine makes)
    /// is left out with a warning.
    fn add(&mut self, tokens: &[&str], value: &impl Serialize) {
        self.add_with(tokens, |out| serde_json::to_writer(out, value));
    }

    /// [`Edit::add`] with a value that `write` writes as JSON.
    fn add_with(
        &mut self,
        tokens: &[&str],
        write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    ) {
        if let Err(error) = self.patch.add_with(self.root, tokens, write) {
            self.warnings
                .push(format!("could not write {}: {error}", tokens.join("/")));
        }
    }

    /// Adds `value` at `tokens` and records the change of `field`.
    fn change(&mut self, tokens: &[&str], value: Value, field: String, from: Option<Value>) {
        self.add_with(tokens, |out| {
            write::write_value(out, &value, write::Text::Plain)
        });
        self.changes.push(FieldChange {
            field,
            from,
            to: value,
        });
    }

    fn pre_stop(
        &mut self,
        at: &ContainerPath,
        container: &ContainerView,
        hook: &Value,
        existing_hooks: ExistingHooks,
        exists: &mut bool,
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
        self.lifecycle(at, exists, "preStop", hook.clone(), field, current.cloned());
    }

    /// Sets `lifecycle.KEY` of a container, adding `lifecycle` itself when the container
    /// (or an earlier operation of this pass) has none.
    fn lifecycle(
        &mut self,
        at: &ContainerPath,
        exists: &mut bool,
        key: &str,
        value: Value,
        field: String,
        from: Option<Value>,
    ) {
        if *exists {
            let tokens = ["spec", "containers", &at.index, "lifecycle", key];
            self.change(&tokens, value, field, from);
        } else {
            let tokens = ["spec", "containers", &at.index, "lifecycle"];
            self.add_with(&tokens, |out| {
                patch::write_entry(out, key, |out| {
                    write::write_value(out, &value, write::Text::Plain)
                })
            });
            self.changes.push(FieldChange {
                field,
                from: None,
                to: value,
            });
            *exists = true;
        }
    }

    /// The policy's stop signal; a container's own is kept.
    fn stop_signal(
        &mut self,
        at: &ContainerPath,
        container: &ContainerView,
        signal: StopSignal,
        lifecycle: &mut bool,
    ) {
        let current = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.stop_signal.as_deref());
        match current {
            Some(current) if current == signal.name() => {}
            Some(current) => self.warnings.push(format!(
                "container {} keeps its own stopSignal {current}; the policy's {} is not set",
                at.name,
                signal.name()
            )),
            None => {
                let field = at.field(&["lifecycle.stopSignal"]);
                self.lifecycle(
                    at,
                    lifecycle,
                    "stopSignal",
                    json!(signal.name()),
                    field,
                    None,
                );
            }
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

    fn grace_period(&mut self, current: Option<i64>, want: i64) {
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

    /// The budget variables, appended to the container's own; the whole list is written
    /// so that the patch stays the same when applied twice. A variable the container
    /// sets is kept, unless an earlier pass of this policy wrote it (its grace period
    /// changes when an injector adds a native sidecar after that pass).
    fn env(
        &mut self,
        at: &ContainerPath,
        container: &ContainerView,
        wanted: &[env::Variable],
        earlier: Option<&ChangeRecord>,
    ) {
        if !container.env_from.is_empty() {
            self.warnings.push(format!(
                "container {} takes variables from envFrom, which graceful cannot read: its budget variables are not set, so that none it sets is overwritten",
                at.name
            ));
            return;
        }
        let mut changed = Vec::new();
        let current = container.env.as_deref().unwrap_or_default();
        let mut list: Vec<Value> = current.iter().map(EnvVarView::to_json).collect();
        for variable in wanted {
            let field = at.field(&["env[", &variable.name, "]"]);
            let to = json!(variable.value);
            let Some(index) = current.iter().position(|v| v.name == variable.name) else {
                list.push(json!({"name": variable.name, "value": variable.value}));
                changed.push(FieldChange {
                    field,
                    from: None,
                    to,
                });
                continue;
            };
            let existing = &current[index];
            // Only a plain value can be graceful's own.
            let have = match (&existing.value, &existing.value_from) {
                (Some(value), None) => Some(json!(value)),
                _ => None,
            };
            if have.as_ref() == Some(&to) {
                continue;
            }
            let ours = have.is_some()
                && earlier.is_some_and(|record| {
                    record
                        .changes
                        .iter()
                        .any(|c| c.field == field && Some(&c.to) == have.as_ref())
                });
            if ours {
                list[index] = json!({"name": variable.name, "value": variable.value});
                changed.push(FieldChange {
                    field,
                    from: have,
                    to,
                });
            } else {
                self.warnings.push(format!(
                    "container {} sets {} itself; graceful keeps it (the policy would set {})",
                    at.name, variable.name, variable.value
                ));
            }
        }
        if changed.is_empty() {
            return;
        }
        self.changes.append(&mut changed);
        self.add(&["spec", "containers", &at.index, "env"], &list);
    }

    /// Mesh proxies whose own drain setting on the pod contradicts the policy: a
    /// warning, or with `meshDrain: Align` the setting rewritten.
    fn meshes(&mut self, pod: &PodView, spec: &GracefulPolicySpec) {
        let app = spec
            .drain
            .budget
            .pre_stop_sleep_seconds
            .saturating_add(spec.drain.budget.shutdown_budget_seconds);
        let regular = pod.spec.containers.iter().enumerate().map(|c| (c, false));
        let native = pod
            .spec
            .init_containers
            .iter()
            .filter(|c| c.is_native_sidecar())
            .enumerate()
            .map(|c| (c, true));
        for ((index, container), native) in regular.chain(native) {
            let Some(mesh) = Mesh::of(container) else {
                continue;
            };
            let Some(need) = Need::of(mesh, native, app, spec.sidecars.shutdown_seconds) else {
                continue;
            };
            let key = mesh.annotation();
            let Some(text) = pod.annotation(key) else {
                continue;
            };
            let seconds = match mesh::read(mesh, text) {
                Ok(seconds) => seconds,
                Err(error) => {
                    self.warnings.push(format!("{}: {error}", container.name));
                    continue;
                }
            };
            if need.holds(seconds) {
                continue;
            }
            if spec.sidecars.mesh_drain == MeshDrain::Warn {
                self.warnings
                    .push(contradiction(&container.name, mesh, seconds, need));
                continue;
            }
            match mesh::write(mesh, text, need.seconds()) {
                Ok(aligned) => self.change(
                    &["metadata", "annotations", key],
                    json!(aligned),
                    format!("metadata.annotations[{key}]"),
                    Some(json!(text)),
                ),
                Err(error) => {
                    self.warnings.push(format!("{}: {error}", container.name));
                    continue;
                }
            }
            if mesh == Mesh::Linkerd && !native {
                self.linkerd_wait(index, container, need.seconds());
            }
        }
    }

    /// The injector wrote Linkerd's wait into the proxy's preStop hook as it read the
    /// annotation; a proxy already injected gets the aligned wait there too.
    fn linkerd_wait(&mut self, index: usize, container: &ContainerView, seconds: i64) {
        let hook = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref());
        let Some(command) = hook.and_then(|h| h["exec"]["command"].as_array()) else {
            return;
        };
        let [sleep, _] = command.as_slice() else {
            return;
        };
        if sleep.as_str().is_none_or(|s| !s.ends_with("sleep")) {
            return;
        }
        let at = ContainerPath::new(index, &container.name);
        let tokens = [
            "spec",
            "containers",
            &at.index,
            "lifecycle",
            "preStop",
            "exec",
            "command",
        ];
        self.change(
            &tokens,
            json!([sleep, seconds.to_string()]),
            at.field(&["lifecycle.preStop.exec.command"]),
            Some(Value::Array(command.clone())),
        );
    }

    /// The label that lets the reconciler watch only governed pods, and the record.
    fn metadata(&mut self, pod: &PodView, policy: &str, record: &ChangeRecord) {
        let record = |out: &mut Vec<u8>| patch::json_text(out, record);
        let written = match &pod.metadata {
            None => self.patch.add_with(self.root, &["metadata"], |out| {
                out.extend_from_slice(br#"{"labels":"#);
                serde_json::to_writer(&mut *out, &Entry(POLICY_KEY, policy))?;
                out.extend_from_slice(br#","annotations":"#);
                patch::write_entry(out, APPLIED_ANNOTATION, record)?;
                out.push(b'}');
                Ok(())
            }),
            Some(meta) => {
                match &meta.labels {
                    Some(labels) if labels.get(POLICY_KEY).map(String::as_str) == Some(policy) => {}
                    Some(_) => self.add(&["metadata", "labels", POLICY_KEY], &policy),
                    None => self.add(&["metadata", "labels"], &Entry(POLICY_KEY, policy)),
                }
                match &meta.annotations {
                    Some(_) => self.patch.add_with(
                        self.root,
                        &["metadata", "annotations", APPLIED_ANNOTATION],
                        record,
                    ),
                    None => self
                        .patch
                        .add_with(self.root, &["metadata", "annotations"], |out| {
                            patch::write_entry(out, APPLIED_ANNOTATION, record)
                        }),
                }
            }
        };
        if let Err(error) = written {
            self.warnings.push(format!(
                "could not write the {APPLIED_ANNOTATION} record: {error}"
            ));
        }
    }
}

#[cfg(test)]
mod tests;
