//! Everything the reconciler knows and decides, with no I/O: the policies and the
//! governed pods go in, as the watches deliver them; what to announce (violations,
//! shutdown durations) comes out of each observation, and the statuses to write come
//! out of [`Index::statuses`]. The clock is an argument. [`super`] is the thin edge
//! that feeds it and writes what it says.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::propagation::{Measurement, Propagation, SliceKey, Stage, TrimmedSlice};
use super::report::{MEETS_RECOMMENDATIONS, PolicyFacts, Report};
use super::tracker::{ObservedPod, PolicyRef, Tracker};
use super::uid::Uid;
use crate::api::{
    AutoValue, Budget, GracefulPolicy, GracefulPolicyStatus, PodCounts, RecentViolation,
};
use crate::recommend::{Recommendation, recommendations};
use crate::resolve::Candidate;
use crate::shutdown::Finding;

/// A governed pod, as counted in its policy's status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    policy: PolicyRef,
    mutated: bool,
    grace_period_seconds: i64,
}

/// A violation to announce (log, metric, Events), with the pod it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub policy: PolicyRef,
    pub policy_uid: Option<String>,
    pub pod_uid: String,
    pub violation: RecentViolation,
}

/// What one observation brought.
#[derive(Debug, Default, PartialEq)]
pub struct Observed {
    pub announcements: Vec<Announcement>,
    /// Shutdown durations measured, by policy, for the histogram.
    pub shutdowns: Vec<(PolicyRef, f64)>,
    /// Endpoint propagation lags measured, by policy, for the histogram.
    pub propagations: Vec<(PolicyRef, f64)>,
}

impl Observed {
    fn append(&mut self, mut other: Observed) {
        self.announcements.append(&mut other.announcements);
        self.shutdowns.append(&mut other.shutdowns);
        self.propagations.append(&mut other.propagations);
    }
}

/// An Event about a policy itself: Auto changed a value, or the values fell below the
/// recommendations.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyNotice {
    pub policy: PolicyRef,
    pub policy_uid: Option<String>,
    /// `AutoTuned` or `BelowRecommendation`.
    pub reason: &'static str,
    pub note: String,
    pub warning: bool,
}

/// A status to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub policy: PolicyRef,
    pub status: GracefulPolicyStatus,
}

/// What one look at the changed policies found: the statuses to write, and for the
/// metrics, each policy looked at with graceful's recommendations for it, and the
/// policies that are gone.
#[derive(Debug, Default, PartialEq)]
pub struct Statuses {
    pub updates: Vec<Update>,
    pub notices: Vec<PolicyNotice>,
    pub reported: Vec<(PolicyRef, Vec<Recommendation>)>,
    pub removed: Vec<PolicyRef>,
}

pub fn policy_ref(policy: &GracefulPolicy) -> PolicyRef {
    PolicyRef::new(policy.namespace().unwrap_or_default(), policy.name_any())
}

#[derive(Debug)]
pub struct Index {
    window_seconds: i64,
    policies: HashMap<PolicyRef, Arc<GracefulPolicy>>,
    tracker: Tracker,
    propagation: Propagation,
    reports: HashMap<PolicyRef, Report>,
    members: HashMap<Uid, Member>,
    /// Policies whose status may need a write.
    dirty: HashSet<PolicyRef>,
}

impl Index {
    pub fn new(window_seconds: i64) -> Self {
        Self {
            window_seconds,
            policies: HashMap::new(),
            tracker: Tracker::default(),
            propagation: Propagation::default(),
            reports: HashMap::new(),
            members: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    pub fn apply_policy(&mut self, policy: &GracefulPolicy) {
        let key = policy_ref(policy);
        self.policies.insert(key.clone(), Arc::new(policy.clone()));
        self.dirty.insert(key);
    }

    pub fn delete_policy(&mut self, policy: &GracefulPolicy) {
        let key = policy_ref(policy);
        self.policies.remove(&key);
        self.reports.remove(&key);
        // Looked at once more, to be named among the removed.
        self.dirty.insert(key);
    }

    /// Every policy there is, after a (re)list.
    pub fn relist_policies(&mut self, policies: &[GracefulPolicy]) {
        self.policies = policies
            .iter()
            .map(|policy| (policy_ref(policy), Arc::new(policy.clone())))
            .collect();
        let policies = &self.policies;
        let gone: Vec<PolicyRef> = (self.reports.keys())
            .filter(|key| !policies.contains_key(key))
            .cloned()
            .collect();
        for key in gone {
            self.reports.remove(&key);
            self.dirty.insert(key);
        }
        self.touch_all();
    }

    /// A governed pod as it is now.
    pub fn apply_pod(&mut self, pod: &ObservedPod, now: &Time) -> Observed {
        self.observe(pod, false, now)
    }

    /// The last state of a governed pod that is gone.
    pub fn delete_pod(&mut self, pod: &ObservedPod, now: &Time) -> Observed {
        self.observe(pod, true, now)
    }

    /// Every governed pod there is, after a (re)list: pods not among them were deleted
    /// while the watch was down, and are forgotten.
    pub fn relist_pods(&mut self, pods: &[ObservedPod], now: &Time) -> Observed {
        self.tracker.begin_relist();
        let mut observed = Observed::default();
        for pod in pods {
            observed.append(self.observe(pod, false, now));
        }
        self.tracker.end_relist();
        let listed: HashSet<&Uid> = pods.iter().map(|pod| &pod.uid).collect();
        self.propagation.retain_pods(&listed);
        let dirty = &mut self.dirty;
        self.members.retain(|uid, member| {
            let kept = listed.contains(uid);
            if !kept {
                dirty.insert(member.policy.clone());
            }
            kept
        });
        observed
    }

    /// An EndpointSlice as a live event delivered it at `now`.
    pub fn apply_slice(&mut self, slice: &TrimmedSlice, now: &Time) -> Observed {
        let found = self.propagation.slice(slice, Some(now.0.as_millisecond()));
        self.measured(found)
    }

    /// An EndpointSlice deleted, as a live event delivered it at `now`.
    pub fn delete_slice(&mut self, slice: &SliceKey, now: &Time) -> Observed {
        let found = self
            .propagation
            .slice_gone(slice, Some(now.0.as_millisecond()));
        self.measured(found)
    }

    /// Every EndpointSlice there is, after a (re)list.
    pub fn relist_slices(&mut self, slices: &[TrimmedSlice]) -> Observed {
        let found = self.propagation.relist_slices(slices);
        self.measured(found)
    }

    /// Adds measured lags and removals to their policies' reports.
    fn measured(&mut self, found: Vec<Measurement>) -> Observed {
        let mut observed = Observed::default();
        for measurement in found {
            if !self.policies.contains_key(&measurement.policy) {
                continue;
            }
            let report = self.report(&measurement.policy);
            match measurement.stage {
                Stage::Stopped => report.add_lag(measurement.lag_seconds, measurement.source),
                Stage::Removed => report.add_removal(measurement.lag_seconds),
            }
            self.dirty.insert(measurement.policy.clone());
            if measurement.stage == Stage::Stopped {
                observed
                    .propagations
                    .push((measurement.policy, measurement.lag_seconds));
            }
        }
        observed
    }

    /// Governed pods followed.
    pub fn tracked(&self) -> usize {
        self.tracker.len()
    }

    /// Every policy's status is looked at again at the next [`Index::statuses`] (a new
    /// leader, the periodic refresh: windows end with no event).
    pub fn touch_all(&mut self) {
        self.dirty.extend(self.policies.keys().cloned());
    }

    /// A write of this policy's status failed: try again next time.
    pub fn retry(&mut self, policy: PolicyRef) {
        self.dirty.insert(policy);
    }

    /// The statuses of the policies touched since the last call that differ from what
    /// the policies show.
    pub fn statuses(&mut self, now: &Time) -> Statuses {
        let mut found = Statuses::default();
        if self.dirty.is_empty() {
            return found;
        }
        let dirty: Vec<PolicyRef> = self.dirty.drain().collect();
        let mut counts: HashMap<&PolicyRef, PodCounts> = dirty
            .iter()
            .map(|key| (key, PodCounts::default()))
            .collect();
        for member in self.members.values() {
            if let Some(count) = counts.get_mut(&member.policy) {
                count.matched += 1;
                count.mutated += i64::from(member.mutated);
                let grace = Some(member.grace_period_seconds);
                count.min_grace_period_seconds =
                    count.min_grace_period_seconds.min(grace).or(grace);
                count.max_grace_period_seconds = count.max_grace_period_seconds.max(grace);
            }
        }
        for key in &dirty {
            let Some(policy) = self.policies.get(key).cloned() else {
                found.removed.push(key.clone());
                continue;
            };
            let (drain, _) = crate::tuning::effective(&policy.spec.drain, policy.status.as_ref());
            let facts = PolicyFacts {
                generation: policy.metadata.generation,
                mode: policy.spec.mode,
                grace_period_seconds: drain.grace_period_seconds(),
                budget: drain.budget,
                drain: policy.spec.drain.clone(),
                invalid: Candidate::from_policy(&policy)
                    .err()
                    .map(|error| format!("spec.selector: {error}")),
                pods: counts.remove(key).unwrap_or_default(),
            };
            let status = self.report(key).status(&facts, policy.status.as_ref(), now);
            let recommended = recommendations(&policy.spec.drain, Some(&status));
            found.reported.push((key.clone(), recommended));
            found.notices.extend(notices(key, &policy, &status));
            if policy.status.as_ref() != Some(&status) {
                found.updates.push(Update {
                    policy: key.clone(),
                    status,
                });
            }
        }
        found
    }

    /// The policy's report, restored from the status graceful wrote before it
    /// (re)started the first time it is needed.
    fn report(&mut self, key: &PolicyRef) -> &mut Report {
        let window_seconds = self.window_seconds;
        let status = self.policies.get(key).and_then(|p| p.status.as_ref());
        self.reports
            .entry(key.clone())
            .or_insert_with(|| Report::restore(status, window_seconds))
    }

    /// The copy of `policy` the index keeps: each pod arrives with a copy of its own,
    /// and what is kept of every pod of one policy shares one.
    fn intern(&self, policy: &PolicyRef) -> PolicyRef {
        let kept = (self.policies.get_key_value(policy).map(|(kept, _)| kept))
            .or_else(|| self.reports.get_key_value(policy).map(|(kept, _)| kept));
        kept.unwrap_or(policy).clone()
    }

    fn observe(&mut self, pod: &ObservedPod, gone: bool, now: &Time) -> Observed {
        let policy = self.intern(&pod.policy);
        let started = pod.deletion.as_ref().map(|d| d.started_ms());
        let mut measured = self.propagation.pod(&pod.uid, &policy, started);
        if gone {
            measured.extend(self.propagation.pod_gone(&pod.uid));
        }
        let mut observed = self.measured(measured);
        let budget = self.budget_of(pod);
        let findings = self.tracker.observe(pod, budget, gone);
        let member = Member {
            policy,
            mutated: pod.mutated,
            grace_period_seconds: pod.grace_period_seconds,
        };
        let before = if gone {
            self.members.remove(&pod.uid)
        } else {
            self.members.insert(pod.uid.clone(), member.clone())
        };
        if gone || before.as_ref() != Some(&member) {
            self.dirty.insert(pod.policy.clone());
        }
        // Without a policy nothing is reported; the tracker still learns the pod.
        let Some(policy_uid) = self
            .policies
            .get(&pod.policy)
            .map(|p| p.metadata.uid.clone())
        else {
            return observed;
        };
        if findings.is_empty() {
            return observed;
        }
        let report = self.report(&pod.policy);
        for finding in &findings {
            if let Finding::Shutdown { seconds, .. } = finding {
                observed.shutdowns.push((pod.policy.clone(), *seconds));
            }
            if let Some(violation) = report.add(&pod.name, finding, budget, now) {
                observed.announcements.push(Announcement {
                    policy: pod.policy.clone(),
                    policy_uid: policy_uid.clone(),
                    pod_uid: pod.uid.to_string(),
                    violation,
                });
            }
        }
        if !observed.announcements.is_empty() {
            self.dirty.insert(pod.policy.clone());
        }
        observed
    }

    /// The drain the pod was admitted under; its policy's current one when the pod has
    /// no record, and the default when there is no policy either.
    fn budget_of(&self, pod: &ObservedPod) -> Budget {
        pod.budget.unwrap_or_else(|| {
            self.policies
                .get(&pod.policy)
                .map_or_else(Budget::default, |p| p.spec.drain.budget)
        })
    }
}

/// The Events a new status calls for: each value Auto changed, and the values falling
/// below the recommendations.
fn notices(
    key: &PolicyRef,
    policy: &GracefulPolicy,
    status: &GracefulPolicyStatus,
) -> Vec<PolicyNotice> {
    let previous = policy.status.as_ref();
    let notice = |reason, note, warning| PolicyNotice {
        policy: key.clone(),
        policy_uid: policy.metadata.uid.clone(),
        reason,
        note,
        warning,
    };
    let mut found = Vec::new();
    let before = previous.and_then(|p| p.auto.clone()).unwrap_or_default();
    let after = status.auto.clone().unwrap_or_default();
    let own = policy.spec.drain.budget;
    for (field, before, after, own) in [
        (
            "preStopSleepSeconds",
            before.pre_stop_sleep_seconds,
            after.pre_stop_sleep_seconds,
            own.pre_stop_sleep_seconds,
        ),
        (
            "shutdownBudgetSeconds",
            before.shutdown_budget_seconds,
            after.shutdown_budget_seconds,
            own.shutdown_budget_seconds,
        ),
    ] {
        if let Some(AutoValue {
            seconds, reason, ..
        }) = &after
        {
            let was = before.as_ref().map_or(own, |b| b.seconds);
            if before.as_ref().map(|b| b.seconds) != Some(*seconds) {
                let note =
                    format!("tuning Auto: new pods get {field} {seconds} (was {was}): {reason}");
                found.push(notice("AutoTuned", note, false));
            }
        }
    }
    let meets = |s: Option<&GracefulPolicyStatus>| {
        s.into_iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == MEETS_RECOMMENDATIONS)
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    if let Some((now, message)) = meets(Some(status))
        && now == "False"
        && meets(previous).map(|(before, _)| before) != Some(now)
    {
        found.push(notice("BelowRecommendation", message, true));
    }
    found
}
