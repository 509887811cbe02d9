//! Endpoint propagation, measured per governed pod: how long after its deletion began
//! the cluster's API stopped routing to it. Pure: pods and EndpointSlices in, as the
//! watches deliver them, with the time each arrived; measurements out.
//!
//! A deletion starts at `deletionTimestamp - deletionGracePeriodSeconds` (when the
//! kubelet runs the preStop hook). An EndpointSlice stops routing to the pod when it
//! marks the pod's endpoint not `ready` (terminating, or `serving=false`) or removes
//! it. The lag is from the start to the moment the *last* slice that routed to the pod
//! stopped: until then some proxy may still be told to send it new connections.
//!
//! The pod's removal from its slices is measured the same way, from the same start to the
//! moment the last slice that routed to it dropped it (when the EndpointSlice controller
//! saw the pod object go): from then on no proxy can even know the endpoint.
//!
//! The moment is when graceful's watch delivered the change (`WatchEvent`): a proxy
//! watching the API learns it no sooner. A change graceful only sees in a (re)list has
//! no such moment; the slice's `endpoints.kubernetes.io/last-change-trigger-time` is
//! used instead where present (`TriggerTime`), and the pod is not measured otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::tracker::PolicyRef;
use super::uid::Uid;
use crate::api::TimeSource;

/// The label the EndpointSlice controller puts on the slices of a Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// When the change that caused a slice's last update happened.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// A slice, by namespace and name.
pub type SliceKey = (String, String);

/// The part of an EndpointSlice graceful reads: which pods it lists and whether it
/// routes to each; the rest is dropped as soon as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct TrimmedSlice {
    pub key: SliceKey,
    pub trigger_time_ms: Option<i64>,
    /// By pod uid (`targetRef`), whether the endpoint is ready.
    pub endpoints: Vec<(Uid, bool)>,
}

impl TrimmedSlice {
    /// `None` for a slice without a namespace or name.
    pub fn of(slice: &EndpointSlice) -> Option<Self> {
        let meta = &slice.metadata;
        let trigger_time_ms = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRIGGER_TIME_ANNOTATION))
            .and_then(|text| text.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(|time| time.as_millisecond());
        let endpoints = slice
            .endpoints
            .iter()
            .filter_map(|endpoint| {
                let target = endpoint.target_ref.as_ref()?;
                if target.kind.as_deref().is_some_and(|kind| kind != "Pod") {
                    return None;
                }
                // An absent `ready` is ready (the API's own rule).
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                Some((Uid::new(target.uid.as_deref()?), ready))
            })
            .collect();
        Some(Self {
            key: (meta.namespace.clone()?, meta.name.clone()?),
            trigger_time_ms,
            endpoints,
        })
    }
}

/// What a measurement times, from the start of the pod's deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The last slice that routed to the pod stopped routing to it (not `ready`, or
    /// removed): the lag.
    Stopped,
    /// The last of those slices removed it.
    Removed,
}

/// One deletion measured, at one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub policy: PolicyRef,
    pub pod_uid: Uid,
    pub stage: Stage,
    pub lag_seconds: f64,
    pub source: TimeSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stop {
    at_ms: i64,
    source: TimeSource,
}

/// One slice that routed to a pod: when it stopped, and when it removed the pod (each
/// `None` until then; `Some(None)`: at a moment nobody can tell).
#[derive(Debug, Clone, Copy, Default)]
struct Route {
    stopped: Option<Option<Stop>>,
    removed: Option<Option<Stop>>,
}

/// What is known of one governed pod's endpoints.
#[derive(Debug, Clone)]
struct Drain {
    policy: PolicyRef,
    deletion_start_ms: Option<i64>,
    /// Every slice that routed to the pod: a list, as a pod is in one slice of each of
    /// its Services, and the key shared with [`Propagation::slices`].
    slices: Vec<(Arc<SliceKey>, Route)>,
    gone: bool,
    progress: Progress,
}

/// How far a pod's measurement has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Progress {
    /// Until every slice has stopped routing to it.
    #[default]
    AwaitingStop,
    /// The lag was measured; the removal is measured for the same pods only.
    AwaitingRemoval,
    /// Both measured, or one could not be: nothing more to measure.
    Done,
}

/// The governed pods and the slices that list them.
#[derive(Debug, Default)]
pub struct Propagation {
    pods: HashMap<Uid, Drain>,
    /// Of each slice, the governed pods it listed last, and whether it routed to each.
    slices: HashMap<Arc<SliceKey>, HashMap<Uid, bool>>,
}

impl Propagation {
    /// A governed pod as it is now; `deletion_start_ms` once it is being deleted.
    pub fn pod(
        &mut self,
        uid: &Uid,
        policy: &PolicyRef,
        deletion_start_ms: Option<i64>,
    ) -> Vec<Measurement> {
        let drain = self.pods.entry(uid.clone()).or_insert_with(|| Drain {
            policy: policy.clone(),
            deletion_start_ms: None,
            slices: Vec::new(),
            gone: false,
            progress: Progress::default(),
        });
        // The first start seen is kept: the kubelet's final removal rewrites the grace
        // period to 0 (and keeps the start, but a clock-less rewrite must not move it).
        drain.deletion_start_ms = drain.deletion_start_ms.or(deletion_start_ms);
        self.settle(uid)
    }

    /// A governed pod is gone. What its slices still say is waited for.
    pub fn pod_gone(&mut self, uid: &Uid) -> Vec<Measurement> {
        let Some(drain) = self.pods.get_mut(uid) else {
            return Vec::new();
        };
        drain.gone = true;
        self.settle(uid)
    }

    /// A slice as it is now; `arrived_ms` is when a live event delivered it, `None` in
    /// a (re)list.
    pub fn slice(&mut self, slice: &TrimmedSlice, arrived_ms: Option<i64>) -> Vec<Measurement> {
        let stop = stop_time(arrived_ms, slice.trigger_time_ms);
        let listed: HashMap<Uid, bool> = slice
            .endpoints
            .iter()
            .filter(|(uid, _)| self.pods.contains_key(uid))
            .cloned()
            .collect();
        let (key, before) = self
            .slices
            .remove_entry(&slice.key)
            .unwrap_or_else(|| (Arc::new(slice.key.clone()), HashMap::new()));
        let mut touched: Vec<Uid> = Vec::new();
        for (uid, ready) in &listed {
            if let Some(drain) = self.pods.get_mut(uid) {
                drain.saw(&key, Some(*ready), stop);
                touched.push(uid.clone());
            }
        }
        for uid in before.keys().filter(|uid| !listed.contains_key(*uid)) {
            if let Some(drain) = self.pods.get_mut(uid) {
                drain.saw(&key, None, stop);
                touched.push(uid.clone());
            }
        }
        if !listed.is_empty() {
            self.slices.insert(key, listed);
        }
        touched.iter().flat_map(|uid| self.settle(uid)).collect()
    }

    /// A slice is gone: it routes to none of its pods any more.
    pub fn slice_gone(&mut self, key: &SliceKey, arrived_ms: Option<i64>) -> Vec<Measurement> {
        let empty = TrimmedSlice {
            key: key.clone(),
            trigger_time_ms: None,
            endpoints: Vec::new(),
        };
        self.slice(&empty, arrived_ms)
    }

    /// Every slice there is, after a (re)list: the ones not listed are gone.
    pub fn relist_slices(&mut self, slices: &[TrimmedSlice]) -> Vec<Measurement> {
        let listed: HashSet<&SliceKey> = slices.iter().map(|s| &s.key).collect();
        let gone: Vec<SliceKey> = (self.slices.keys())
            .filter(|key| !listed.contains(&***key))
            .map(|key| SliceKey::clone(key))
            .collect();
        let mut found: Vec<Measurement> = gone
            .iter()
            .flat_map(|key| self.slice_gone(key, None))
            .collect();
        for slice in slices {
            found.extend(self.slice(slice, None));
        }
        found
    }

    /// Every governed pod there is, after a (re)list of pods: the others are forgotten.
    pub fn retain_pods(&mut self, listed: &HashSet<&Uid>) {
        self.pods.retain(|uid, _| listed.contains(uid));
        for pods in self.slices.values_mut() {
            pods.retain(|uid, _| listed.contains(uid));
        }
        self.slices.retain(|_, pods| !pods.is_empty());
    }

    /// Governed pods followed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Measures the pod once every slice that routed to it has stopped, and again once
    /// every one has removed it; forgets it once it is gone and no slice lists it.
    fn settle(&mut self, uid: &Uid) -> Vec<Measurement> {
        let Some(drain) = self.pods.get_mut(uid) else {
            return Vec::new();
        };
        let found = (drain.measure().into_iter())
            .map(|(stage, lag_seconds, source)| Measurement {
                policy: drain.policy.clone(),
                pod_uid: uid.clone(),
                stage,
                lag_seconds,
                source,
            })
            .collect();
        let listed = self.slices.values().any(|pods| pods.contains_key(uid));
        if drain.gone && !listed {
            self.pods.remove(uid);
        }
        found
    }
}

/// When a change became known: its arrival in a live event, else the slice's trigger
/// time, else never.
fn stop_time(arrived_ms: Option<i64>, trigger_time_ms: Option<i64>) -> Option<Stop> {
    match (arrived_ms, trigger_time_ms) {
        (Some(at_ms), _) => Some(Stop {
            at_ms,
            source: TimeSource::WatchEvent,
        }),
        (None, Some(at_ms)) => Some(Stop {
            at_ms,
            source: TimeSource::TriggerTime,
        }),
        (None, None) => None,
    }
}

impl Drain {
    /// `slice` lists the pod as `ready` (`Some(true)`), as not ready (`Some(false)`),
    /// or not at all (`None`).
    fn saw(&mut self, slice: &Arc<SliceKey>, listed: Option<bool>, stop: Option<Stop>) {
        let route = self.slices.iter_mut().find(|(key, _)| key == slice);
        if listed == Some(true) {
            // Routing (again): a stop before this does not count.
            match route {
                Some((_, route)) => *route = Route::default(),
                None => {
                    // One at a time: a first push would make room for four.
                    self.slices.reserve_exact(1);
                    self.slices.push((slice.clone(), Route::default()));
                }
            }
        } else if let Some((_, route)) = route {
            route.stopped.get_or_insert(stop);
            if listed.is_none() {
                route.removed.get_or_insert(stop);
            }
        }
    }

    /// Each stage's lag and time source, once each: when the deletion's start is known
    /// and every slice that routed to the pod has stopped (removed it). Nothing for a
    /// pod that no slice routed to, one that stopped being routed before its deletion
    /// (it was not ready), or one with a stop nobody can time.
    fn measure(&mut self) -> Vec<(Stage, f64, TimeSource)> {
        let mut found = Vec::new();
        let Some(start) = self.deletion_start_ms else {
            return found;
        };
        if self.slices.is_empty() {
            return found;
        }
        if self.progress == Progress::AwaitingStop {
            let Some(stops) = self.slices.iter().map(|(_, r)| r.stopped).collect() else {
                return found;
            };
            self.progress = match lag_to_last(start, stops) {
                Some((lag, source)) => {
                    found.push((Stage::Stopped, lag, source));
                    Progress::AwaitingRemoval
                }
                None => Progress::Done,
            };
        }
        if self.progress == Progress::AwaitingRemoval
            && let Some(removals) = self.slices.iter().map(|(_, r)| r.removed).collect()
        {
            self.progress = Progress::Done;
            found.extend(
                lag_to_last(start, removals).map(|(lag, source)| (Stage::Removed, lag, source)),
            );
        }
        found
    }
}

/// From `start` to the last of `times`, and where the times came from; `None` if one
/// cannot be timed or the last came before the start.
fn lag_to_last(start: i64, times: Vec<Option<Stop>>) -> Option<(f64, TimeSource)> {
    let stops: Vec<Stop> = times.into_iter().collect::<Option<_>>()?;
    let last = stops.iter().map(|stop| stop.at_ms).max()?;
    if last < start {
        return None;
    }
    let source = match (
        stops.iter().all(|s| s.source == TimeSource::WatchEvent),
        stops.iter().all(|s| s.source == TimeSource::TriggerTime),
    ) {
        (true, _) => TimeSource::WatchEvent,
        (_, true) => TimeSource::TriggerTime,
        _ => TimeSource::Mixed,
    };
    Some(((last - start) as f64 / 1000.0, source))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy() -> PolicyRef {
        PolicyRef::new("shop", "web")
    }

    fn slice(name: &str, endpoints: &[(&str, bool)]) -> TrimmedSlice {
        TrimmedSlice {
            key: ("shop".into(), name.into()),
            trigger_time_ms: None,
            endpoints: endpoints
                .iter()
                .map(|(uid, ready)| (Uid::new(uid), *ready))
                .collect(),
        }
    }

    #[test]
    fn a_slice_is_read_by_target_pod_and_readiness() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web-abc",
                         "labels": {"kubernetes.io/service-name": "web"},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:01.5Z"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "a", "uid": "u-a"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}, "targetRef": {"kind": "Pod", "name": "b", "uid": "u-b"}},
                {"addresses": ["10.0.0.3"], "targetRef": {"kind": "Pod", "name": "c", "uid": "u-c"}},
                {"addresses": ["10.0.0.4"]}
            ]
        }))
        .unwrap();
        let trimmed = TrimmedSlice::of(&slice).unwrap();
        assert_eq!(trimmed.key, ("shop".to_owned(), "web-abc".to_owned()));
        assert_eq!(trimmed.trigger_time_ms, Some(1_767_225_601_500));
        assert_eq!(
            trimmed.endpoints,
            [
                ("u-a".into(), true),
                ("u-b".into(), false),
                ("u-c".into(), true)
            ]
        );
    }

    #[test]
    fn the_lag_runs_to_the_last_slice_that_stopped_routing() {
        let mut propagation = Propagation::default();
        propagation.pod(&"u1".into(), &policy(), None);
        propagation.pod(&"u2".into(), &policy(), None);
        assert!(
            propagation
                .slice(&slice("a", &[("u1", true), ("u2", true)]), Some(100))
                .is_empty()
        );
        assert!(
            propagation
                .slice(&slice("b", &[("u1", true), ("other", true)]), Some(100))
                .is_empty()
        );
        // Deleted at 1000: slice a marks it terminating at 1300, slice b removes it at 1800.
        assert!(
            propagation
                .pod(&"u1".into(), &policy(), Some(1000))
                .is_empty()
        );
        let a = propagation.slice(&slice("a", &[("u1", false), ("u2", true)]), Some(1300));
        assert!(a.is_empty(), "slice b still routes to it");
        let b = propagation.slice(&slice("b", &[("other", true)]), Some(1800));
        assert_eq!(
            b,
            [Measurement {
                policy: policy(),
                pod_uid: "u1".into(),
                stage: Stage::Stopped,
                lag_seconds: 0.8,
                source: TimeSource::WatchEvent
            }]
        );
        // The lag is measured once; the removal from slice a, the last to list it, is the
        // second stage; the pod's end adds nothing.
        assert_eq!(
            propagation.slice(&slice("a", &[("u2", true)]), Some(2000)),
            [Measurement {
                policy: policy(),
                pod_uid: "u1".into(),
                stage: Stage::Removed,
                lag_seconds: 1.0,
                source: TimeSource::WatchEvent
            }]
        );
        assert!(propagation.pod_gone(&"u1".into()).is_empty());
        assert!(
            propagation
                .slice(&slice("a", &[("u2", true)]), Some(2100))
                .is_empty()
        );
        assert_eq!(propagation.len(), 1, "u1 is forgotten");
    }

    #[test]
    fn slices_may_stop_before_the_pod_watch_shows_the_deletion() {
        let mut propagation = Propagation::default();
        propagation.pod(&"u1".into(), &policy(), None);
        propagation.slice(&slice("a", &[("u1", true)]), Some(0));
        assert!(
            propagation
                .slice(&slice("a", &[("u1", false)]), Some(1250))
                .is_empty()
        );
        let found = propagation.pod(&"u1".into(), &policy(), Some(1000));
        assert_eq!(found.len(), 1, "stopped, not removed: {found:?}");
        assert_eq!(
            (found[0].stage, found[0].lag_seconds),
            (Stage::Stopped, 0.25)
        );
    }

    #[test]
    fn a_pod_that_was_not_ready_or_not_routed_is_not_measured() {
        let mut propagation = Propagation::default();
        propagation.pod(&"unready".into(), &policy(), None);
        propagation.pod(&"alone".into(), &policy(), None);
        propagation.slice(&slice("a", &[("unready", true)]), Some(0));
        propagation.slice(&slice("a", &[("unready", false)]), Some(500));
        assert!(
            propagation
                .pod(&"unready".into(), &policy(), Some(1000))
                .is_empty()
        );
        assert!(
            propagation
                .pod(&"alone".into(), &policy(), Some(1000))
                .is_empty()
        );
        assert!(propagation.pod_gone(&"alone".into()).is_empty());
        // Nor its removal.
        assert!(propagation.slice(&slice("a", &[]), Some(2000)).is_empty());
        // Ready again, then deleted: the earlier stop does not count.
        let mut again = Propagation::default();
        again.pod(&"u".into(), &policy(), None);
        again.slice(&slice("a", &[("u", false)]), Some(0));
        again.slice(&slice("a", &[("u", true)]), Some(10));
        again.pod(&"u".into(), &policy(), Some(1000));
        let found = again.slice(&slice("a", &[]), Some(3000));
        let stages: Vec<(Stage, f64)> = found.iter().map(|m| (m.stage, m.lag_seconds)).collect();
        assert_eq!(stages, [(Stage::Stopped, 2.0), (Stage::Removed, 2.0)]);
    }

    #[test]
    fn a_relist_times_changes_by_the_trigger_time_or_not_at_all() {
        let mut propagation = Propagation::default();
        for uid in ["u1", "u2"] {
            propagation.pod(&Uid::new(uid), &policy(), None);
        }
        propagation.slice(&slice("a", &[("u1", true)]), Some(0));
        propagation.slice(&slice("b", &[("u2", true)]), Some(0));
        propagation.pod(&"u1".into(), &policy(), Some(1000));
        propagation.pod(&"u2".into(), &policy(), Some(1000));
        let mut timed = slice("a", &[("u1", false)]);
        timed.trigger_time_ms = Some(1400);
        // Slice b is gone from the list, with no time to tell when.
        let found = propagation.relist_slices(&[timed]);
        assert_eq!(
            found,
            [Measurement {
                policy: policy(),
                pod_uid: "u1".into(),
                stage: Stage::Stopped,
                lag_seconds: 0.4,
                source: TimeSource::TriggerTime
            }]
        );
    }

    #[test]
    fn a_gone_pod_waits_for_its_slices_and_pods_not_relisted_are_forgotten() {
        let mut propagation = Propagation::default();
        propagation.pod(&"u1".into(), &policy(), None);
        propagation.slice(&slice("a", &[("u1", true)]), Some(0));
        propagation.pod(&"u1".into(), &policy(), Some(1000));
        assert!(propagation.pod_gone(&"u1".into()).is_empty());
        assert_eq!(propagation.len(), 1, "slice a still lists it");
        let found = propagation.slice_gone(&("shop".into(), "a".into()), Some(1500));
        let stages: Vec<(Stage, f64)> = found.iter().map(|m| (m.stage, m.lag_seconds)).collect();
        assert_eq!(stages, [(Stage::Stopped, 0.5), (Stage::Removed, 0.5)]);
        assert!(propagation.is_empty());

        propagation.pod(&"u2".into(), &policy(), None);
        propagation.slice(&slice("a", &[("u2", true)]), Some(0));
        propagation.retain_pods(&std::collections::HashSet::new());
        assert!(propagation.is_empty());
        assert!(propagation.slices.is_empty());
    }
}
