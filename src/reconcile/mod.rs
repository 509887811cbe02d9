//! The reconciler: watches the pods graceful governs and reports, in each
//! GracefulPolicy's status, the shutdowns over budget, the OOM kills and the restarts,
//! told apart from what the cluster did to the pods.
//!
//! Pod events are processed as they arrive rather than through a reconcile of the
//! policy, because a shutdown is only visible in the last status a pod has before it
//! disappears: a cache of pods would lose it. Every rule lives in the pure [`Index`];
//! this module only feeds it from the watches and does what it says. Each replica keeps
//! its own index from the same events, so that a follower that becomes leader carries
//! on where the old leader stopped; only the leader writes status and publishes Events.

mod events;
mod index;
mod propagation;
mod report;
mod tracker;
mod uid;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use tokio::sync::watch;

use crate::api::{GracefulPolicy, GracefulPolicyStatus, POLICY_KEY, ViolationKind};
use crate::metrics::Metrics;
use crate::runtime::health::Component;
use crate::runtime::watch::{self as driver, WatchError};
pub use events::{EventQueue, Notice, publish_events};
pub use index::{Announcement, Index, Observed, PolicyNotice, Statuses, Update};
pub use propagation::{SERVICE_NAME_LABEL, SliceKey, TrimmedSlice};
pub use tracker::{ObservedPod, PolicyRef};

/// The field manager of every status graceful writes.
pub const FIELD_MANAGER: &str = "graceful";

/// How long one status write may take before it counts as failed (and is retried).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// The window violations are counted over, and conditions stay False after one.
    pub window_seconds: i64,
    /// At most one status write per policy per this interval.
    pub write_interval: Duration,
    /// How often every policy's status is looked at again (windows end with no event).
    pub refresh_interval: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            window_seconds: 3600,
            write_interval: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(30),
        }
    }
}

/// The [`Index`] behind a lock, fed by the policy and pod watches.
pub struct Reconciler {
    index: Mutex<Index>,
    config: ReconcileConfig,
    metrics: Arc<Metrics>,
    events: EventQueue,
    leader: watch::Receiver<bool>,
    /// Reports restore from the status graceful wrote before it started, so pods are
    /// not watched before the policies are listed.
    policies_listed: watch::Sender<bool>,
    /// Slices are read for the governed pods, so they are not watched before the pods
    /// are listed.
    pods_listed: watch::Sender<bool>,
}

fn now() -> Time {
    Time(Timestamp::now())
}

impl Reconciler {
    pub fn new(
        config: ReconcileConfig,
        metrics: Arc<Metrics>,
        events: EventQueue,
        leader: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            index: Mutex::new(Index::new(config.window_seconds)),
            config,
            metrics,
            events,
            leader,
            policies_listed: watch::channel(false).0,
            pods_listed: watch::channel(false).0,
        })
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Governed pods only: the label the webhook adds lets the apiserver filter.
    pub async fn watch_pods(self: Arc<Self>, client: Client, component: Component) -> WatchError {
        let after = self.policies_listed.subscribe();
        let config = watcher::Config::default().labels(POLICY_KEY);
        self.watch(after, client, config, ObservedPod::from_pod, component)
            .await
    }

    /// The EndpointSlices of Services, trimmed on arrival to the pods they list and
    /// whether they route to each: where the endpoint propagation of governed pods is
    /// measured. Read for the governed pods, so started once they are listed.
    pub async fn watch_endpoint_slices(
        self: Arc<Self>,
        client: Client,
        component: Component,
    ) -> WatchError {
        let after = self.pods_listed.subscribe();
        let config = watcher::Config::default().labels(SERVICE_NAME_LABEL);
        self.watch(after, client, config, TrimmedSlice::of, component)
            .await
    }

    /// Watches every `K` matching `config`, trimmed to `T`, into the index, once `after`
    /// turns true (its sender lives in `self`, so the wait ends).
    async fn watch<K, T>(
        self: Arc<Self>,
        mut after: watch::Receiver<bool>,
        client: Client,
        config: watcher::Config,
        trim: fn(&K) -> Option<T>,
        component: Component,
    ) -> WatchError
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + 'static,
        K::DynamicType: Default,
        Self: driver::Index<T>,
    {
        let _ = after.wait_for(|listed| *listed).await;
        let events = watcher::watcher(Api::<K>::all(client), config).default_backoff();
        let events = driver::trimmed(events, move |object| trim(&object));
        let indexes: [Arc<dyn driver::Index<T>>; 1] = [self];
        driver::drive(events, &indexes, &component).await
    }

    /// Announces what an observation found, and keeps the gauge current.
    fn announce(&self, observed: Observed, tracked: usize) {
        self.metrics.tracked_pods(tracked);
        for (policy, seconds) in observed.shutdowns {
            self.metrics
                .shutdown_observed(&policy.namespace, &policy.name, seconds);
        }
        for (policy, seconds) in observed.propagations {
            self.metrics
                .propagation_observed(&policy.namespace, &policy.name, seconds);
        }
        let leader = *self.leader.borrow();
        for announcement in observed.announcements {
            let Announcement {
                policy, violation, ..
            } = &announcement;
            tracing::info!(%policy, pod = %violation.pod, container = %violation.container,
                kind = %violation.kind, detail = %violation.detail, "violation");
            self.metrics
                .violation(&policy.namespace, &policy.name, violation.kind.as_str());
            if leader {
                self.events.send(announcement);
            }
        }
    }

    fn observe_pods(&self, observe: impl FnOnce(&mut Index, &Time) -> Observed) {
        let mut index = self.index();
        let observed = observe(&mut index, &now());
        let tracked = index.tracked();
        drop(index);
        self.announce(observed, tracked);
    }

    /// Writes the statuses that changed, at most once per policy per write interval,
    /// while this replica leads.
    pub async fn write_statuses(self: Arc<Self>, client: Client) {
        let mut tick = tokio::time::interval(self.config.write_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refreshed = Instant::now();
        let mut was_leader = false;
        loop {
            tick.tick().await;
            if !*self.leader.borrow() {
                was_leader = false;
                continue;
            }
            let found = {
                let mut index = self.index();
                // A new leader, and the periodic refresh, look at every policy.
                if !was_leader || refreshed.elapsed() >= self.config.refresh_interval {
                    index.touch_all();
                    refreshed = Instant::now();
                }
                index.statuses(&now())
            };
            was_leader = true;
            let kinds = ViolationKind::ALL.map(ViolationKind::as_str);
            for (policy, recommended) in &found.reported {
                (self.metrics).policy_reported(
                    &policy.namespace,
                    &policy.name,
                    &kinds,
                    recommended,
                );
            }
            for policy in &found.removed {
                self.metrics.policy_removed(&policy.namespace, &policy.name);
            }
            for notice in found.notices {
                tracing::info!(policy = %notice.policy, reason = notice.reason, note = %notice.note, "policy event");
                self.events.send(notice);
            }
            for update in found.updates {
                self.write_status(&client, update).await;
            }
        }
    }

    async fn write_status(&self, client: &Client, Update { policy, status }: Update) {
        let started = Instant::now();
        let written = tokio::time::timeout(WRITE_TIMEOUT, patch_status(client, &policy, &status));
        let result = match written.await {
            Ok(Ok(())) => "ok",
            Ok(Err(error)) => {
                tracing::warn!(%policy, %error, "writing status");
                "error"
            }
            Err(_) => {
                tracing::warn!(%policy, timeout = ?WRITE_TIMEOUT, "writing status timed out");
                "timeout"
            }
        };
        self.metrics.status_written(result, started.elapsed());
        if result != "ok" {
            self.index().retry(policy);
        }
    }
}

/// Server-side apply of the status subresource, as graceful's field manager.
async fn patch_status(
    client: &Client,
    policy: &PolicyRef,
    status: &GracefulPolicyStatus,
) -> Result<(), kube::Error> {
    let api = Api::<GracefulPolicy>::namespaced(client.clone(), &policy.namespace);
    let apply = serde_json::json!({
        "apiVersion": GracefulPolicy::api_version(&()),
        "kind": GracefulPolicy::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&policy.name, &params, &Patch::Apply(&apply))
        .await
        .map(|_| ())
}

impl driver::Index<GracefulPolicy> for Reconciler {
    fn apply(&self, policy: &GracefulPolicy) {
        self.index().apply_policy(policy);
    }

    fn delete(&self, policy: &GracefulPolicy) {
        self.index().delete_policy(policy);
    }

    fn relist(&self, policies: &[GracefulPolicy]) {
        self.index().relist_policies(policies);
        self.policies_listed.send_replace(true);
    }
}

impl driver::Index<ObservedPod> for Reconciler {
    fn apply(&self, pod: &ObservedPod) {
        self.observe_pods(|index, now| index.apply_pod(pod, now));
    }

    fn delete(&self, pod: &ObservedPod) {
        self.observe_pods(|index, now| index.delete_pod(pod, now));
    }

    fn relist(&self, pods: &[ObservedPod]) {
        self.observe_pods(|index, now| index.relist_pods(pods, now));
        self.pods_listed.send_replace(true);
    }
}

impl driver::Index<TrimmedSlice> for Reconciler {
    fn apply(&self, slice: &TrimmedSlice) {
        self.observe_pods(|index, now| index.apply_slice(slice, now));
    }

    fn delete(&self, slice: &TrimmedSlice) {
        self.observe_pods(|index, now| index.delete_slice(&slice.key, now));
    }

    fn relist(&self, slices: &[TrimmedSlice]) {
        self.observe_pods(|index, _| index.relist_slices(slices));
    }
}

#[cfg(test)]
mod tests;
