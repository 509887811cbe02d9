//! The reconciler: watches the pods graceful governs and reports, in each
//! GracefulPolicy's status, the shutdowns over budget, the OOM kills and the restarts.
//!
//! Pod events are processed as they arrive rather than through a reconcile of the
//! policy, because a shutdown is only visible in the last status a pod has before it
//! disappears: a cache of pods would lose it. Each replica keeps its own report from
//! the same events, so that a follower that becomes leader carries on where the old
//! leader stopped; only the leader writes status and publishes Events.

mod report;
mod tracker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use crate::api::{
    Drain, GracefulPolicy, GracefulPolicyStatus, POLICY_KEY, PodCounts, RecentViolation,
};
use crate::metrics::Metrics;
use crate::recommend::recommendations;
use crate::resolve::Candidate;
use crate::shutdown::{Budget, Finding};
use report::{PolicyFacts, Report};
use tracker::{ObservedPod, PolicyRef, Tracker};

/// The field manager of every status graceful writes.
pub const FIELD_MANAGER: &str = "graceful";

#[derive(Debug, Clone)]
pub struct Settings {
    /// The window violations are counted over, and conditions stay False after one.
    pub window_seconds: i64,
    /// At most one status write per policy per this interval.
    pub write_interval: Duration,
    /// How often every policy's status is looked at again (windows end with no event).
    pub refresh_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            window_seconds: 3600,
            write_interval: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(30),
        }
    }
}

/// Reports per policy, and what is needed to count each policy's pods.
#[derive(Default)]
struct State {
    tracker: Tracker,
    reports: HashMap<PolicyRef, Report>,
    /// Governed pods by uid: their policy and whether the policy changed them.
    members: HashMap<String, (PolicyRef, bool)>,
    /// Policies whose status may need a write.
    dirty: HashSet<PolicyRef>,
}

struct Reconciler {
    client: Client,
    metrics: Arc<Metrics>,
    settings: Settings,
    policies: Store<GracefulPolicy>,
    state: Mutex<State>,
    leader: watch::Receiver<bool>,
    recorder: Recorder,
}

/// Runs until the process ends; watch errors are retried with backoff.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    settings: Settings,
    leader: watch::Receiver<bool>,
    instance: String,
) {
    let (policies, writer) = reflector::store();
    let reconciler = Arc::new(Reconciler {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: Some(instance),
            },
        ),
        client: client.clone(),
        metrics,
        settings,
        policies,
        state: Mutex::default(),
        leader,
    });
    let policy_events = reflector::reflector(
        writer,
        watcher::watcher(
            Api::<GracefulPolicy>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|policy| {
        match policy {
            Ok(policy) => reconciler.mark_dirty(policy_ref(&policy)),
            Err(error) => tracing::warn!(%error, "watching GracefulPolicies"),
        }
        std::future::ready(())
    });
    futures::join!(
        policy_events,
        reconciler.clone().watch_pods(),
        reconciler.clone().write_statuses(),
    );
}

fn policy_ref(policy: &GracefulPolicy) -> PolicyRef {
    PolicyRef {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

impl Reconciler {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_dirty(&self, policy: PolicyRef) {
        self.state().dirty.insert(policy);
    }

    fn policy(&self, policy: &PolicyRef) -> Option<Arc<GracefulPolicy>> {
        self.policies
            .get(&ObjectRef::new(&policy.name).within(&policy.namespace))
    }

    /// Governed pods only: the label the webhook adds lets the apiserver filter.
    async fn watch_pods(self: Arc<Self>) {
        // Reports restore from the status graceful wrote before it started, so they
        // must not be created before the policies are listed.
        if self.policies.wait_until_ready().await.is_err() {
            return;
        }
        let pods = Api::<Pod>::all(self.client.clone());
        let mut events = std::pin::pin!(
            watcher::watcher(pods, watcher::Config::default().labels(POLICY_KEY)).default_backoff()
        );
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => self.state().tracker.begin_relist(),
                Ok(Event::InitApply(pod) | Event::Apply(pod)) => self.observe(pod, false),
                Ok(Event::Delete(pod)) => self.observe(pod, true),
                Ok(Event::InitDone) => {
                    let mut state = self.state();
                    state.tracker.end_relist();
                    self.metrics.tracked_pods(state.tracker.len());
                }
                Err(error) => tracing::warn!(%error, "watching governed pods"),
            }
        }
    }

    fn observe(&self, pod: Pod, gone: bool) {
        let Some(pod) = ObservedPod::from_pod(pod) else {
            return;
        };
        let policy = self.policy(&pod.policy);
        // Without a policy nothing is reported; the tracker still learns the pod.
        let fallback = budget_of(policy.as_ref().map_or(&Drain::default(), |p| &p.spec.drain));
        let budget = pod.budget.unwrap_or(fallback);
        let now = now();
        let mut announce = Vec::new();
        {
            let mut state = self.state();
            let findings = state.tracker.observe(&pod, fallback, gone);
            self.metrics.tracked_pods(state.tracker.len());
            let member = (!gone).then(|| (pod.policy.clone(), pod.mutated));
            let before = match member {
                Some(member) => state.members.insert(pod.uid.clone(), member),
                None => state.members.remove(&pod.uid),
            };
            if before.is_none() || gone {
                state.dirty.insert(pod.policy.clone());
            }
            if policy.is_none() || findings.is_empty() {
                return;
            }
            let State { reports, dirty, .. } = &mut *state;
            let report = reports.entry(pod.policy.clone()).or_insert_with(|| {
                Report::restore(
                    policy.as_ref().and_then(|p| p.status.as_ref()),
                    self.settings.window_seconds,
                )
            });
            for finding in &findings {
                if let Finding::Shutdown { seconds, .. } = finding {
                    self.metrics.shutdown_observed(
                        &pod.policy.namespace,
                        &pod.policy.name,
                        *seconds,
                    );
                }
                if let Some(violation) = report.add(&pod.name, finding, budget, &now) {
                    announce.push(violation);
                }
            }
            if !announce.is_empty() {
                dirty.insert(pod.policy.clone());
            }
        }
        for violation in announce {
            tracing::info!(policy = %pod.policy, pod = %violation.pod, container = %violation.container,
                kind = %violation.kind, detail = %violation.detail, "violation");
            self.metrics
                .violation(&pod.policy.namespace, &pod.policy.name, &violation.kind);
            if let Some(policy) = policy.as_ref().filter(|_| *self.leader.borrow()) {
                self.publish(policy, &pod, violation);
            }
        }
    }

    /// An Event on the pod and one on the policy, each naming the other.
    fn publish(&self, policy: &GracefulPolicy, pod: &ObservedPod, violation: RecentViolation) {
        let pod_ref = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.policy.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectReference::default()
        };
        let policy_ref = policy.object_ref(&());
        let recorder = self.recorder.clone();
        let note = format!(
            "{}/{} {} (GracefulPolicy {})",
            violation.pod, violation.container, violation.detail, pod.policy.name
        );
        tokio::spawn(async move {
            for (regarding, related) in [(&pod_ref, &policy_ref), (&policy_ref, &pod_ref)] {
                let event = KubeEvent {
                    type_: EventType::Warning,
                    reason: violation.kind.clone(),
                    note: Some(note.clone()),
                    action: "ObserveShutdown".to_owned(),
                    secondary: Some(related.clone()),
                };
                if let Err(error) = recorder.publish(&event, regarding).await {
                    tracing::warn!(%error, "publishing an Event");
                }
            }
        });
    }

    /// Writes the statuses that changed, at most once per policy per write interval,
    /// while this replica leads.
    async fn write_statuses(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.write_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refreshed = Instant::now();
        let mut was_leader = false;
        loop {
            tick.tick().await;
            if !*self.leader.borrow() {
                was_leader = false;
                continue;
            }
            // A new leader, and the periodic refresh, look at every policy.
            if !was_leader || refreshed.elapsed() >= self.settings.refresh_interval {
                let all: Vec<PolicyRef> = self
                    .policies
                    .state()
                    .iter()
                    .map(|p| policy_ref(p))
                    .collect();
                self.state().dirty.extend(all);
                refreshed = Instant::now();
            }
            was_leader = true;
            for (policy, status) in self.statuses_to_write() {
                self.write_status(&policy, status).await;
            }
        }
    }

    /// The statuses that differ from what the policies show.
    fn statuses_to_write(&self) -> Vec<(Arc<GracefulPolicy>, GracefulPolicyStatus)> {
        let mut state = self.state();
        if state.dirty.is_empty() {
            return Vec::new();
        }
        let dirty: Vec<PolicyRef> = state.dirty.drain().collect();
        // Pods are counted for the policies about to be written only.
        let mut counts: HashMap<PolicyRef, PodCounts> = dirty
            .iter()
            .map(|key| (key.clone(), PodCounts::default()))
            .collect();
        for (policy, mutated) in state.members.values() {
            if let Some(count) = counts.get_mut(policy) {
                count.matched += 1;
                count.mutated += i64::from(*mutated);
            }
        }
        let now = now();
        let mut writes = Vec::new();
        for key in dirty {
            let Some(policy) = self.policy(&key) else {
                self.metrics.policy_removed(&key.namespace, &key.name);
                state.reports.remove(&key);
                continue;
            };
            let facts = PolicyFacts {
                generation: policy.metadata.generation,
                mode: policy.spec.mode,
                grace_period_seconds: policy.spec.drain.grace_period_seconds(),
                budget: budget_of(&policy.spec.drain),
                invalid: Candidate::from_policy(&policy)
                    .err()
                    .map(|error| format!("spec.selector: {error}")),
                pods: counts.remove(&key).unwrap_or_default(),
            };
            let report = state.reports.entry(key).or_insert_with(|| {
                Report::restore(policy.status.as_ref(), self.settings.window_seconds)
            });
            let status = report.status(&facts, policy.status.as_ref(), &now);
            let found = recommendations(&policy.spec.drain, Some(&status));
            let namespace = policy.namespace().unwrap_or_default();
            let kinds = report::Kind::ALL.map(report::Kind::as_str);
            (self.metrics).policy_reported(&namespace, &policy.name_any(), &kinds, &found);
            if policy.status.as_ref() != Some(&status) {
                writes.push((policy, status));
            }
        }
        writes
    }

    async fn write_status(&self, policy: &GracefulPolicy, status: GracefulPolicyStatus) {
        let key = policy_ref(policy);
        let api = Api::<GracefulPolicy>::namespaced(self.client.clone(), &key.namespace);
        let apply = serde_json::json!({
            "apiVersion": GracefulPolicy::api_version(&()),
            "kind": GracefulPolicy::kind(&()),
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api
            .patch_status(&key.name, &params, &Patch::Apply(&apply))
            .await
        {
            Ok(_) => self.metrics.status_written("ok"),
            Err(error) => {
                tracing::warn!(policy = %key, %error, "writing status");
                self.metrics.status_written("error");
                self.mark_dirty(key);
            }
        }
    }
}

fn budget_of(drain: &Drain) -> Budget {
    Budget {
        pre_stop_sleep_seconds: drain.pre_stop_sleep_seconds,
        shutdown_budget_seconds: drain.shutdown_budget_seconds,
    }
}

#[cfg(test)]
mod tests;
