//! Everything the reconciler knows and decides, with no I/O: the policies and the
//! governed pods go in, as the watches deliver them; what to announce (violations,
//! shutdown durations) comes out of each observation, and the statuses to write come
//! out of [`Index::statuses`]. The clock is an argument. [`super`] is the thin edge
//! that feeds it and writes what it says.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::report::{PolicyFacts, Report};
use super::tracker::{ObservedPod, PolicyRef, Tracker};
use crate::api::{Budget, GracefulPolicy, GracefulPolicyStatus, PodCounts, RecentViolation};
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
    pub reported: Vec<(PolicyRef, Vec<Recommendation>)>,
    pub removed: Vec<PolicyRef>,
}

pub fn policy_ref(policy: &GracefulPolicy) -> PolicyRef {
    PolicyRef {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
    }
}

#[derive(Debug)]
pub struct Index {
    window_seconds: i64,
    policies: HashMap<PolicyRef, Arc<GracefulPolicy>>,
    tracker: Tracker,
    reports: HashMap<PolicyRef, Report>,
    members: HashMap<String, Member>,
    /// Policies whose status may need a write.
    dirty: HashSet<PolicyRef>,
}

impl Index {
    pub fn new(window_seconds: i64) -> Self {
        Self {
            window_seconds,
            policies: HashMap::new(),
            tracker: Tracker::default(),
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
            let Observed {
                mut announcements,
                mut shutdowns,
            } = self.observe(pod, false, now);
            observed.announcements.append(&mut announcements);
            observed.shutdowns.append(&mut shutdowns);
        }
        self.tracker.end_relist();
        let listed: HashSet<&str> = pods.iter().map(|pod| pod.uid.as_str()).collect();
        let dirty = &mut self.dirty;
        self.members.retain(|uid, member| {
            let kept = listed.contains(uid.as_str());
            if !kept {
                dirty.insert(member.policy.clone());
            }
            kept
        });
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
            let facts = PolicyFacts {
                generation: policy.metadata.generation,
                mode: policy.spec.mode,
                grace_period_seconds: policy.spec.drain.grace_period_seconds(),
                budget: policy.spec.drain.budget,
                invalid: Candidate::from_policy(&policy)
                    .err()
                    .map(|error| format!("spec.selector: {error}")),
                pods: counts.remove(key).unwrap_or_default(),
            };
            let status = self.report(key).status(&facts, policy.status.as_ref(), now);
            let recommended = recommendations(&policy.spec.drain, Some(&status));
            found.reported.push((key.clone(), recommended));
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

    fn observe(&mut self, pod: &ObservedPod, gone: bool, now: &Time) -> Observed {
        let budget = self.budget_of(pod);
        let findings = self.tracker.observe(pod, budget, gone);
        let member = Member {
            policy: pod.policy.clone(),
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
        let mut observed = Observed::default();
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
                    pod_uid: pod.uid.clone(),
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
