//! Which policy governs a pod. Pure: the pod's labels and annotations, its owners'
//! annotations and the policies of its namespace come in as data.
//!
//! The rules, in order:
//! 1. The nearest `graceful.dev/policy` annotation wins: the pod's own (which includes its
//!    template's), then each owner from the nearest (ReplicaSet) to the farthest
//!    (Deployment). `"false"` opts out; a name picks that policy of the pod's namespace.
//! 2. Otherwise the policies whose selector matches the pod's labels. When several do,
//!    the oldest wins (then the smallest name), so that a new policy never takes pods
//!    from an existing one, and every replica of graceful decides the same way; the
//!    others are reported.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::core::{ParseExpressionError, Selector, SelectorExt};

use crate::api::{GracefulPolicy, MIRROR_ANNOTATION, OPT_OUT, POLICY_KEY};

/// A policy as resolution sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub created: Option<Time>,
    /// `None`: the policy governs only pods that name it.
    pub selector: Option<Selector>,
}

/// Where a `graceful.dev/policy` annotation was found, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// An owner of the pod and its `graceful.dev/policy` annotation, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub source: Source,
    pub policy: Option<String>,
}

/// What resolution needs to know of a pod.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub source: &'a Source,
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The pod's own `graceful.dev/policy` annotation.
    pub annotation: Option<&'a str>,
    /// Nearest first.
    pub owners: &'a [Owner],
}

#[derive(Debug, Clone, PartialEq)]
pub enum Resolution<'a> {
    Governed {
        policy: &'a Candidate,
        reason: Reason,
    },
    NotGoverned(Ungoverned),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Named by the annotation on this object.
    Annotation(Source),
    /// Selected by the policy's selector; `others` matched too and lost.
    Selector { others: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ungoverned {
    /// No annotation and no matching selector.
    NoPolicy,
    /// `graceful.dev/policy: "false"` on this object.
    OptedOut(Source),
    /// The annotation on this object names a policy the namespace does not have.
    UnknownPolicy { name: String, on: Source },
    /// The policy's selector matches a pod of a Job, and the policy skips Jobs.
    Job { job: Source, policy: String },
    /// The kubelet's mirror of a static pod: its spec comes from a file on the node.
    MirrorPod,
}

impl Resolution<'_> {
    /// A warning for the user when other policies select the pod too.
    pub fn conflict(&self) -> Option<String> {
        match self {
            Resolution::Governed {
                policy,
                reason: Reason::Selector { others },
            } if !others.is_empty() => Some(format!(
                "GracefulPolicies {} also select this pod; {} governs it (the oldest wins); name one with the {POLICY_KEY} annotation to choose",
                others.join(", "),
                policy.name
            )),
            _ => None,
        }
    }
}

impl std::fmt::Display for Ungoverned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ungoverned::NoPolicy => write!(
                f,
                "no GracefulPolicy of its namespace selects it and it has no {POLICY_KEY} annotation"
            ),
            Ungoverned::OptedOut(on) => write!(f, "{on} opts out with {POLICY_KEY}: \"{OPT_OUT}\""),
            Ungoverned::UnknownPolicy { name, on } => write!(
                f,
                "{on} names GracefulPolicy {name:?} in {POLICY_KEY}, but its namespace has no such policy"
            ),
            Ungoverned::Job { job, policy } => write!(
                f,
                "it belongs to {job}, and GracefulPolicy {policy:?} skips Jobs (jobs: Skip; annotate the Job with {POLICY_KEY}, or set jobs: Include)"
            ),
            Ungoverned::MirrorPod => write!(
                f,
                "it is the mirror of a static pod ({MIRROR_ANNOTATION}): the kubelet runs it from a file on the node, which a change here would not reach"
            ),
        }
    }
}

impl Candidate {
    /// The candidate for a policy; an error for a selector the apiserver let through but
    /// that selects nothing sensible (`In` without values, say).
    pub fn from_policy(policy: &GracefulPolicy) -> Result<Self, ParseExpressionError> {
        Ok(Self {
            name: policy.name_any(),
            created: policy.metadata.creation_timestamp.clone(),
            selector: policy
                .spec
                .selector
                .clone()
                .map(Selector::try_from)
                .transpose()?,
        })
    }
}

/// Whether the pod's owners can change its resolution: not when the pod has an annotation
/// of its own, which is the nearest (rule 1). Lets the webhook skip reading owners.
pub fn owners_matter(own_annotation: Option<&str>) -> bool {
    own_annotation.is_none()
}

pub fn resolve<'a>(subject: Subject<'_>, policies: &'a [Candidate]) -> Resolution<'a> {
    let own = subject.annotation.map(|value| (subject.source, value));
    let owned = subject
        .owners
        .iter()
        .filter_map(|owner| Some((&owner.source, owner.policy.as_deref()?)));
    if let Some((on, value)) = own.into_iter().chain(owned).next() {
        return by_annotation(value, on, policies);
    }
    by_selector(subject.labels, policies)
}

fn by_annotation<'a>(value: &str, on: &Source, policies: &'a [Candidate]) -> Resolution<'a> {
    if value == OPT_OUT {
        return Resolution::NotGoverned(Ungoverned::OptedOut(on.clone()));
    }
    match policies.iter().find(|p| p.name == value) {
        Some(policy) => Resolution::Governed {
            policy,
            reason: Reason::Annotation(on.clone()),
        },
        None => Resolution::NotGoverned(Ungoverned::UnknownPolicy {
            name: value.to_owned(),
            on: on.clone(),
        }),
    }
}

fn by_selector<'a>(
    labels: Option<&BTreeMap<String, String>>,
    policies: &'a [Candidate],
) -> Resolution<'a> {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let mut matching: Vec<&Candidate> = policies
        .iter()
        .filter(|p| p.selector.as_ref().is_some_and(|s| s.matches(labels)))
        .collect();
    // `None` (no creation time yet) sorts first; both replicas see the same data.
    matching.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    let mut matching = matching.into_iter();
    match matching.next() {
        Some(policy) => Resolution::Governed {
            policy,
            reason: Reason::Selector {
                others: matching.map(|p| p.name.clone()).collect(),
            },
        },
        None => Resolution::NotGoverned(Ungoverned::NoPolicy),
    }
}

#[cfg(test)]
mod tests;
