//! What the reconciler remembers of each governed pod between two observations, so
//! that every shutdown, OOM kill and restart is found exactly once. Pure.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::api::{APPLIED_ANNOTATION, POLICY_KEY};
use crate::mutate::ChangeRecord;
use crate::shutdown::{self, Budget, Deletion, Finding};

/// A policy, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
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
    pub uid: String,
    pub name: String,
    pub policy: PolicyRef,
    /// The drain the pod was admitted under, from its record; `None` when the record is
    /// missing or unreadable (the policy's current drain is used then).
    pub budget: Option<Budget>,
    /// Whether the policy changed anything on the pod.
    pub mutated: bool,
    pub deletion: Option<Deletion>,
    pub containers: Vec<ContainerStatus>,
}

impl ObservedPod {
    /// `None` for a pod without a uid, namespace or `graceful.dev/policy` label.
    pub fn from_pod(pod: Pod) -> Option<Self> {
        let meta = pod.metadata;
        let record = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(APPLIED_ANNOTATION))
            .and_then(|text| serde_json::from_str::<ChangeRecord>(text).ok());
        let policy = PolicyRef {
            namespace: meta.namespace?,
            name: meta.labels?.remove(POLICY_KEY)?,
        };
        let deletion = match (meta.deletion_timestamp, meta.deletion_grace_period_seconds) {
            (Some(deadline), Some(grace_period_seconds)) => Some(Deletion {
                deadline,
                grace_period_seconds,
            }),
            _ => None,
        };
        Some(Self {
            uid: meta.uid?,
            name: meta.name.unwrap_or_default(),
            budget: record.as_ref().map(|r| Budget {
                pre_stop_sleep_seconds: r.pre_stop_sleep_seconds,
                shutdown_budget_seconds: r.shutdown_budget_seconds,
            }),
            mutated: record.is_some_and(|r| !r.changes.is_empty()),
            policy,
            deletion,
            containers: pod
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default(),
        })
    }
}

#[derive(Debug, Default)]
struct Remembered {
    restart_counts: HashMap<String, i32>,
    /// Shutdowns and OOM kills already found, by container and time.
    found: HashSet<String>,
    swept: bool,
}

/// Every governed pod seen, by uid.
#[derive(Debug, Default)]
pub struct Tracker {
    pods: HashMap<String, Remembered>,
}

impl Tracker {
    /// What is new about `pod` since it was last seen. `gone`: this is the last status
    /// before the pod disappeared. `fallback`: the budget when the pod has no record.
    pub fn observe(&mut self, pod: &ObservedPod, fallback: Budget, gone: bool) -> Vec<Finding> {
        let budget = pod.budget.unwrap_or(fallback);
        // A container that appears in a pod seen before started from zero restarts; in
        // a pod seen for the first time (graceful just started) its past is not news.
        let known = self.pods.contains_key(&pod.uid);
        let remembered = self.pods.entry(pod.uid.clone()).or_default();
        remembered.swept = false;
        let mut findings = Vec::new();
        for status in &pod.containers {
            let previous = remembered
                .restart_counts
                .insert(status.name.clone(), status.restart_count)
                .or(known.then_some(0));
            findings.extend(shutdown::incidents(status, previous));
            if let Some(deletion) = &pod.deletion {
                findings.extend(shutdown::shutdown(status, deletion, budget));
            }
        }
        // A shutdown or an OOM kill stays in the status until the pod is gone: keep
        // only the first sighting.
        findings.retain(|finding| match finding {
            Finding::Shutdown { container, .. } => {
                remembered.found.insert(format!("shutdown/{container}"))
            }
            Finding::OomKilled { container, at } => {
                remembered.found.insert(format!("oom/{container}/{}", at.0))
            }
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
