//! The answer for one pod at CREATE: [`govern`]'s verdict as an admission answer, with
//! fail-open and the outcome for metrics. Pure: the pod, the policies of its namespace
//! and its owners come in; the answer goes out.

use json_patch::jsonptr::Pointer;

use crate::api::Mode;
use crate::govern::{self, Verdict, govern};
use crate::mutate::{Backend, Capabilities, Patch, PodView};
use crate::resolve::{Owner, Source, Ungoverned};

use super::policies::NamespacePolicies;
use super::review::Answer;

/// Every warning graceful gives starts so, for the user to see where it comes from.
const PREFIX: &str = "graceful: ";

/// What became of a request, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not a CREATE: graceful mutates pods only as they are made.
    Skipped,
    NotGoverned,
    /// Governed, and the pod already had everything.
    Unchanged,
    Patched,
    /// Governed by a policy in Audit mode: warnings, no patch.
    Audited,
    /// Admitted unchanged because of an error inside graceful.
    FailOpen(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The policy cache has not been filled yet.
    NotSynced,
    /// A policy that would govern the pod cannot be used.
    Policy,
    /// The pod's owners could not be read.
    Owners,
    /// Graceful panicked (a bug).
    Panic,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Skipped => "skipped",
            Outcome::NotGoverned => "not_governed",
            Outcome::Unchanged => "unchanged",
            Outcome::Patched => "patched",
            Outcome::Audited => "audited",
            Outcome::FailOpen(_) => "fail_open",
        }
    }
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::NotSynced => "not_synced",
            Failure::Policy => "policy",
            Failure::Owners => "owners",
            Failure::Panic => "panic",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub answer: Answer,
    pub outcome: Outcome,
}

impl Decision {
    pub fn skipped(uid: String) -> Self {
        Self {
            answer: Answer {
                uid,
                ..Answer::default()
            },
            outcome: Outcome::Skipped,
        }
    }

    /// The pod is admitted as it is, and the user told why.
    pub fn fail_open(uid: String, failure: Failure, why: &str) -> Self {
        Self {
            answer: Answer {
                uid,
                patch: Patch::default(),
                warnings: vec![format!("{PREFIX}admitted unchanged: {why}")],
            },
            outcome: Outcome::FailOpen(failure),
        }
    }
}

/// The name a pod at CREATE goes by in messages: it often has only a generateName.
pub fn pod_source(pod: &PodView) -> Source {
    let meta = pod.metadata.as_ref();
    let name = meta
        .and_then(|m| m.name.clone())
        .or_else(|| Some(format!("{}*", meta?.generate_name.as_deref()?)))
        .unwrap_or_else(|| "<unnamed>".to_owned());
    Source {
        kind: "Pod".to_owned(),
        name,
    }
}

/// Decides the answer for `pod` from the policies of its namespace and its owners
/// (nearest first).
pub fn decide(
    uid: String,
    pod: &PodView,
    policies: &NamespacePolicies,
    owners: &[Owner],
    services: &[Backend],
    caps: Capabilities,
) -> Decision {
    let source = pod_source(pod);
    let subject = govern::Pod {
        view: pod,
        root: Pointer::root(),
        source: &source,
        owners,
        services,
    };
    let prefixed = |warnings: &[String]| -> Vec<String> {
        warnings.iter().map(|w| format!("{PREFIX}{w}")).collect()
    };
    match govern(subject, policies, caps) {
        Verdict::Unusable(why) => Decision::fail_open(uid, Failure::Policy, &why),
        Verdict::NotGoverned { why, mut warnings } => {
            // Only a name that points nowhere is worth a warning on every pod.
            if matches!(why, Ungoverned::UnknownPolicy { .. }) {
                warnings.push(why.to_string());
            }
            not_governed(uid, prefixed(&warnings))
        }
        Verdict::Governed {
            mode,
            mutation,
            mut warnings,
            ..
        } => {
            warnings.extend(mutation.warnings.iter().cloned());
            let outcome = match (mode, mutation.patch.is_empty()) {
                (Mode::Audit, _) => Outcome::Audited,
                (Mode::Enforce, true) => Outcome::Unchanged,
                (Mode::Enforce, false) => Outcome::Patched,
            };
            Decision {
                answer: Answer {
                    uid,
                    patch: mutation.patch,
                    warnings: prefixed(&warnings),
                },
                outcome,
            }
        }
    }
}

pub fn not_governed(uid: String, warnings: Vec<String>) -> Decision {
    Decision {
        answer: Answer {
            uid,
            patch: Patch::default(),
            warnings,
        },
        outcome: Outcome::NotGoverned,
    }
}
