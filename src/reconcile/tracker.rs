//! What the reconciler remembers of each governed pod between two observations, so
//! that every shutdown, OOM kill and restart is found exactly once. Pure.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};

use crate::api::{APPLIED_ANNOTATION, Budget, POLICY_KEY};
use crate::mutate::{ChangeRecord, DEFAULT_GRACE_PERIOD_SECONDS};
use crate::shutdown::{self, Deletion, Disruption, Finding};

use super::uid::Uid;

/// A policy, by namespace and name: one pointer, as every governed pod the reconciler
/// keeps names its policy, and they share one copy (see `Index::intern`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef(Arc<PolicyName>);

#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyName {
    pub namespace: String,
    pub name: String,
}

impl PolicyRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self(Arc::new(PolicyName {
            namespace: namespace.into(),
            name: name.into(),
        }))
    }
}

impl Deref for PolicyRef {
    type Target = PolicyName;

    fn deref(&self) -> &PolicyName {
        &self.0
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The part of a governed Pod the reconciler reads; the rest of the watched object is
/// dropped as soon as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedPod {
    pub uid: Uid,
    pub name: String,
    pub policy: PolicyRef,
    /// The drain the pod was admitted under, from its record; `None` when the record is
    /// missing or unreadable (the policy's current drain is used then).
    pub budget: Option<Budget>,
    /// Whether the policy changed anything on the pod.
    pub mutated: bool,
    /// Its `terminationGracePeriodSeconds` (the Kubernetes default when absent).
    pub grace_period_seconds: i64,
    pub deletion: Option<Deletion>,
    /// Who or what ended it, where its status says.
    pub disruption: Option<Disruption>,
    /// The regular containers: the apps, and those the record says the policy left
    /// alone.
    pub containers: Vec<ContainerStatus>,
    /// The regular containers the policy left alone (mesh proxies and other sidecars,
    /// opted out, not named, not serving), by name, from the record: how they exit
    /// once the pod is deleted is not the app's shutdown.
    pub left_alone: Vec<String>,
    /// Native sidecars: init containers with `restartPolicy: Always`.
    pub sidecars: Vec<ContainerStatus>,
}

impl ObservedPod {
    /// `None` for a pod without a uid, namespace or `graceful.dev/policy` label.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        let record = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(APPLIED_ANNOTATION))
            .and_then(|text| serde_json::from_str::<ChangeRecord>(text).ok());
        let policy = PolicyRef::new(
            meta.namespace.clone()?,
            meta.labels.as_ref()?.get(POLICY_KEY)?.clone(),
        );
        let spec = pod.spec.as_ref();
        let grace_period_seconds = spec
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS);
        let deletion = match (&meta.deletion_timestamp, meta.deletion_grace_period_seconds) {
            (Some(deadline), Some(given)) => Some(Deletion {
                deadline: deadline.clone(),
                grace_period_seconds: given,
                own_grace_period_seconds: grace_period_seconds,
            }),
            _ => None,
        };
        let sidecar_names: Vec<&str> = spec
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| is_sidecar(c))
            .map(|c| c.name.as_str())
            .collect();
        let status = pod.status.as_ref();
        Some(Self {
            uid: Uid::new(meta.uid.as_deref()?),
            name: meta.name.clone().unwrap_or_default(),
            budget: record.as_ref().map(|r| r.budget),
            mutated: record.as_ref().is_some_and(|r| !r.changes.is_empty()),
            left_alone: record
                .map(|r| r.left_alone.into_keys().collect())
                .unwrap_or_default(),
            policy,
            grace_period_seconds,
            deletion,
            disruption: status.and_then(shutdown::disruption),
            // Collected from the list itself, whose exact length sizes the vector.
            containers: status
                .and_then(|s| s.container_statuses.as_ref())
                .map(|statuses| statuses.iter().map(trimmed).collect())
                .unwrap_or_default(),
            sidecars: status
                .and_then(|s| s.init_container_statuses.as_ref())
                .into_iter()
                .flatten()
                .filter(|c| sidecar_names.contains(&c.name.as_str()))
                .map(trimmed)
                .collect(),
        })
    }
}

/// What the tracker reads of a container's status (see [`shutdown`]): a relist holds
/// every governed pod's at once, and the image, ids and resources are most of it.
fn trimmed(status: &ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        name: status.name.clone(),
        restart_count: status.restart_count,
        state: status.state.clone(),
        last_state: status.last_state.clone(),
        ..ContainerStatus::default()
    }
}

/// A native sidecar: an init container that runs beside the app.
fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// Lists rather than maps: a pod has a container or two and most have found nothing,
/// and an empty or one-entry list is a fraction of a map's size.
#[derive(Debug, Default)]
struct Remembered {
    /// By container name (`sidecar/` and the name for a native sidecar).
    restart_counts: Vec<(Box<str>, i32)>,
    /// Shutdowns and OOM kills already found, by container and time.
    found: Vec<Box<str>>,
    swept: bool,
}

impl Remembered {
    /// Keeps `count` as the restarts of `container`; the count it had before, if any.
    fn restarts(&mut self, container: &str, count: i32) -> Option<i32> {
        match self
            .restart_counts
            .iter_mut()
            .find(|(c, _)| **c == *container)
        {
            Some((_, before)) => Some(std::mem::replace(before, count)),
            None => {
                // One at a time: a first push would make room for four.
                self.restart_counts.reserve_exact(1);
                self.restart_counts.push((container.into(), count));
                None
            }
        }
    }

    /// Whether `finding` is new: found the first time it is asked about.
    fn first(&mut self, finding: &str) -> bool {
        let new = !self.found.iter().any(|f| **f == *finding);
        if new {
            self.found.reserve_exact(1);
            self.found.push(finding.into());
        }
        new
    }
}

/// Every governed pod seen, by uid.
#[derive(Debug, Default)]
pub struct Tracker {
    pods: HashMap<Uid, Remembered>,
}

impl Tracker {
    /// What is new about `pod` since it was last seen, measured against `budget`.
    /// `gone`: this is the last status before the pod disappeared.
    pub fn observe(&mut self, pod: &ObservedPod, budget: Budget, gone: bool) -> Vec<Finding> {
        // A container that appears in a pod seen before started from zero restarts; in
        // a pod seen for the first time (graceful just started) its past is not news.
        let known = self.pods.contains_key(&pod.uid);
        let remembered = self.pods.entry(pod.uid.clone()).or_default();
        remembered.swept = false;
        let mut findings = Vec::new();
        // Sidecars and the other containers the policy left alone restart and get
        // OOM-killed like any container while the pod runs; once it is deleted, how
        // they exit is expected.
        for status in &pod.containers {
            let previous = remembered
                .restarts(&status.name, status.restart_count)
                .or(known.then_some(0));
            let app = !pod.left_alone.contains(&status.name);
            if app || pod.deletion.is_none() {
                findings.extend(shutdown::incidents(status, previous));
            }
            if app && let Some(deletion) = &pod.deletion {
                findings.extend(shutdown::shutdown(status, deletion, budget));
            }
        }
        for status in &pod.sidecars {
            let previous = remembered
                .restarts(&format!("sidecar/{}", status.name), status.restart_count)
                .or(known.then_some(0));
            if pod.deletion.is_none() {
                findings.extend(shutdown::incidents(status, previous));
            }
        }
        if let Some(deletion) = &pod.deletion {
            findings.extend(shutdown::grace_shortened(
                deletion,
                pod.disruption.as_ref(),
                &pod.containers,
            ));
        }
        if let Some(disruption) = &pod.disruption
            && let Some(kind) = disruption.kind
        {
            findings.push(Finding::Disrupted {
                kind,
                by: disruption.by.clone(),
                at: disruption.at.clone(),
            });
        }
        // A shutdown, an OOM kill or a disruption stays in the status until the pod is
        // gone: keep only the first sighting.
        findings.retain(|finding| match finding {
            Finding::Shutdown { container, .. } => {
                remembered.first(&format!("shutdown/{container}"))
            }
            Finding::OomKilled { container, at } => {
                remembered.first(&format!("oom/{container}/{}", at.0))
            }
            Finding::GraceShortened { .. } => remembered.first("grace"),
            Finding::Disrupted { .. } => remembered.first("disrupted"),
            Finding::Restarted { .. } => true,
        });
        if gone {
            self.pods.remove(&pod.uid);
        }
        findings
    }

    /// A relist is starting: pods not seen again before [`Tracker::end_relist`] were
    /// deleted while the watch was down, and are forgotten.
    pub fn begin_relist(&mut self) {
        for remembered in self.pods.values_mut() {
            remembered.swept = true;
        }
    }

    pub fn end_relist(&mut self) {
        self.pods.retain(|_, remembered| !remembered.swept);
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }
}
