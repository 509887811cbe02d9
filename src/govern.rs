//! Which policy governs a pod, and what it does to it: resolution, then mutation. Pure,
//! and the one step that both the webhook ([`crate::webhook::admit`]) and `graceful
//! mutate` ([`crate::cli::mutate`]) take, so that the preview and the cluster decide
//! alike. Each maps the verdict to its own edge: the webhook to an answer, fail-open and
//! metrics; the command to standard error.

use json_patch::jsonptr::Pointer;

use crate::api::{Jobs, MIRROR_ANNOTATION, Mode, POLICY_KEY};
use crate::kinds::Kind;
use crate::mutate::{Backend, Capabilities, Governing, Mutation, PodView, mutate};
use crate::resolve::{Owner, Reason, Resolution, Source, Subject, Ungoverned, resolve};
use crate::webhook::policies::NamespacePolicies;

/// The pod, where it sits in the object the patch is for, and what it goes by.
#[derive(Debug, Clone, Copy)]
pub struct Pod<'a> {
    pub view: &'a PodView,
    /// The empty pointer for a pod at admission, `/spec/template` in a Deployment.
    pub root: &'a Pointer,
    pub source: &'a Source,
    /// Nearest first.
    pub owners: &'a [Owner],
    /// The Services of its namespace, for policies with `targets: Serving`.
    pub services: &'a [Backend],
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Governed {
        policy: String,
        /// Through which annotation or selector the policy governs the pod.
        reason: Reason,
        mode: Mode,
        mutation: Mutation,
        /// What the user should know besides the mutation's own warnings.
        warnings: Vec<String>,
    },
    NotGoverned {
        why: Ungoverned,
        warnings: Vec<String>,
    },
    /// A policy that would govern the pod cannot be used: graceful admits it unchanged.
    Unusable(String),
}

pub fn govern(pod: Pod<'_>, policies: &NamespacePolicies, caps: Capabilities) -> Verdict {
    // Decided here rather than by a matchCondition of the webhook configuration: CEL
    // there converts every pod to evaluate it, on each admission round (BENCHMARKS.md).
    if pod.view.annotation(MIRROR_ANNOTATION).is_some() {
        return Verdict::NotGoverned {
            why: Ungoverned::MirrorPod,
            warnings: Vec::new(),
        };
    }
    let subject = Subject {
        source: pod.source,
        labels: pod.view.labels(),
        annotation: pod.view.annotation(POLICY_KEY),
        owners: pod.owners,
    };
    let resolution = resolve(subject, &policies.candidates);
    let warnings: Vec<String> = resolution.conflict().into_iter().collect();
    let (policy, reason) = match resolution {
        Resolution::Governed { policy, reason } => (policy, reason),
        Resolution::NotGoverned(Ungoverned::UnknownPolicy { name, on }) => {
            if let Some(why) = policies.broken(&name) {
                return Verdict::Unusable(format!(
                    "{on} names GracefulPolicy {name:?}, which {why}"
                ));
            }
            let why = Ungoverned::UnknownPolicy { name, on };
            return Verdict::NotGoverned { why, warnings };
        }
        Resolution::NotGoverned(Ungoverned::NoPolicy) if !policies.broken.is_empty() => {
            // A policy whose selector cannot be read might have selected this pod.
            let names: Vec<String> = policies
                .broken
                .iter()
                .map(|(name, why)| format!("GracefulPolicy {name:?} {why}"))
                .collect();
            return Verdict::Unusable(names.join("; "));
        }
        Resolution::NotGoverned(why) => return Verdict::NotGoverned { why, warnings },
    };
    let Some((spec, tuning)) = policies.spec(&policy.name) else {
        return Verdict::Unusable(format!(
            "GracefulPolicy {:?} has no spec in the cache",
            policy.name
        ));
    };
    if spec.jobs == Jobs::Skip
        && matches!(reason, Reason::Selector { .. })
        && let Some(job) = job_of(pod)
    {
        let why = Ungoverned::Job {
            job,
            policy: policy.name.clone(),
        };
        return Verdict::NotGoverned { why, warnings };
    }
    let governing = Governing {
        name: &policy.name,
        spec,
        services: pod.services,
        tuning,
    };
    Verdict::Governed {
        policy: policy.name.clone(),
        reason,
        mode: spec.mode,
        mutation: mutate(pod.view, pod.root, governing, caps),
        warnings,
    }
}

/// The Job or CronJob the pod belongs to: its controller, one of its owners, or itself
/// as a template in a manifest.
fn job_of(pod: Pod<'_>) -> Option<Source> {
    // A controller counts only if it is one of the kinds that own pods, in its group.
    let controller = pod
        .view
        .controller()
        .filter(|c| Kind::of(&c.api_version, &c.kind).is_some())
        .map(|c| Source {
            kind: c.kind.clone(),
            name: c.name.clone(),
        });
    let owners = pod.owners.iter().map(|owner| owner.source.clone());
    controller
        .into_iter()
        .chain(std::iter::once(pod.source.clone()))
        .chain(owners)
        .find(|source| {
            [Kind::Job, Kind::CronJob]
                .map(Kind::name)
                .contains(&source.kind.as_str())
        })
}
