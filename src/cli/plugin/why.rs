//! `kubectl graceful why POD`: which policy governs the pod and why, what it was
//! admitted with, what happened to it since, and what graceful would change were it
//! created now. Pure: the pod, its owners and its namespace's policies in, the
//! explanation out; resolution and mutation are exactly the webhook's.

use json_patch::jsonptr::Pointer;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{APPLIED_ANNOTATION, GracefulPolicy, POLICY_KEY, RecentViolation};
use crate::govern::{Pod as GovernedPod, Verdict, govern};
use crate::mutate::{Backend, Capabilities, ChangeRecord, FieldChange, PodView};
use crate::resolve::{Owner, Reason, Source};
use crate::webhook::policies::NamespacePolicies;

/// The explanation, also the document of `-o yaml|json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Why {
    pub pod: String,
    pub namespace: String,
    /// The governing policy, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// How that policy was chosen, or why none governs.
    pub because: String,
    /// What graceful recorded at admission (`graceful.dev/applied`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted: Option<ChangeRecord>,
    /// Why the record is absent or unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted_note: Option<String>,
    /// The policy's recent violations of this pod, and the containers' restarts.
    pub since: Vec<String>,
    /// What the webhook would change on this pod now.
    pub if_created_now: Vec<FieldChange>,
    /// Warnings the webhook would give now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Explains `pod`; `owners` nearest first, `policies` those of its namespace.
pub fn explain(
    pod: &Pod,
    owners: &[Owner],
    policies: &[GracefulPolicy],
    services: &[Backend],
    caps: Capabilities,
) -> Result<Why, serde_json::Error> {
    let view: PodView = serde_json::from_value(serde_json::to_value(pod)?)?;
    let name = pod.name_any();
    let source = Source {
        kind: "Pod".into(),
        name: name.clone(),
    };
    let namespace_policies = NamespacePolicies::new(policies);
    let verdict = govern(
        GovernedPod {
            view: &view,
            root: Pointer::root(),
            source: &source,
            owners,
            services,
        },
        &namespace_policies,
        caps,
    );
    let (policy, because) = match &verdict {
        Verdict::Governed { policy, reason, .. } => {
            (Some(policy.clone()), reason_text(policy, reason))
        }
        Verdict::NotGoverned { why, .. } => (None, format!("not governed: {why}")),
        Verdict::Unusable(why) => (None, format!("admitted unchanged: {why}")),
    };
    let governing = policy
        .as_deref()
        .and_then(|name| policies.iter().find(|p| p.name_any() == name));

    let (admitted, admitted_note) = match view.annotation(APPLIED_ANNOTATION) {
        None => (
            None,
            Some(format!(
                "no {APPLIED_ANNOTATION} annotation: graceful did not change this pod at admission"
            )),
        ),
        Some(text) => match serde_json::from_str::<ChangeRecord>(text) {
            Ok(record) => (Some(record), None),
            Err(error) => (
                None,
                Some(format!(
                    "{APPLIED_ANNOTATION} is not graceful's record: {error}"
                )),
            ),
        },
    };

    let mut since: Vec<String> = governing
        .and_then(|p| p.status.as_ref())
        .map(|status| {
            status
                .recent
                .iter()
                .filter(|v| v.pod == name)
                .map(violation_text)
                .collect()
        })
        .unwrap_or_default();
    for container in pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
    {
        if container.restart_count > 0 {
            let reason = container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.reason.clone())
                .unwrap_or_else(|| "unknown reason".into());
            since.push(format!(
                "container {} restarted {} times (last: {reason})",
                container.name, container.restart_count
            ));
        }
    }

    let (if_created_now, warnings) = match verdict {
        Verdict::Governed {
            mutation, warnings, ..
        } => {
            let mut all = warnings;
            all.extend(mutation.warnings);
            (mutation.record.changes, all)
        }
        Verdict::NotGoverned { warnings, .. } => (Vec::new(), warnings),
        Verdict::Unusable(_) => (Vec::new(), Vec::new()),
    };
    Ok(Why {
        pod: name,
        namespace: pod.namespace().unwrap_or_default(),
        policy,
        because,
        admitted,
        admitted_note,
        since,
        if_created_now,
        warnings,
    })
}

fn reason_text(policy: &str, reason: &Reason) -> String {
    match reason {
        Reason::Annotation(on) => {
            format!("the {POLICY_KEY} annotation on {on} names {policy}")
        }
        Reason::Selector { others } if others.is_empty() => {
            format!("the selector of GracefulPolicy {policy} matches its labels")
        }
        Reason::Selector { others } => format!(
            "the selector of GracefulPolicy {policy} matches its labels; {} match too, and the oldest wins",
            others.join(", ")
        ),
    }
}

fn violation_text(violation: &RecentViolation) -> String {
    let detail = if violation.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", violation.detail)
    };
    format!(
        "{} {} container {}{detail}",
        violation.at.0, violation.kind, violation.container
    )
}

/// The explanation as text, for people.
pub fn text(why: &Why) -> String {
    let mut out = format!("Pod {}/{}\n", why.namespace, why.pod);
    match &why.policy {
        Some(policy) => out.push_str(&format!(
            "Governed by: GracefulPolicy {policy}\n  because {}\n",
            why.because
        )),
        None => out.push_str(&format!("Governed by: nothing\n  {}\n", why.because)),
    }
    out.push_str("Admitted with:\n");
    match (&why.admitted, &why.admitted_note) {
        (Some(record), _) => {
            out.push_str(&format!(
                "  policy {} ({:?}), preStop sleep {}s, budget {}s\n",
                record.policy,
                record.mode,
                record.budget.pre_stop_sleep_seconds,
                record.budget.shutdown_budget_seconds
            ));
            for change in &record.changes {
                out.push_str(&format!("  {}\n", change_text(change)));
            }
        }
        (None, Some(note)) => out.push_str(&format!("  {note}\n")),
        (None, None) => {}
    }
    out.push_str("Since:\n");
    if why.since.is_empty() {
        out.push_str("  nothing graceful counts as a violation\n");
    }
    for line in &why.since {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("If created now:\n");
    if why.policy.is_none() {
        out.push_str("  graceful would not change it\n");
    } else if why.if_created_now.is_empty() {
        out.push_str("  nothing would change: the pod has everything its policy gives\n");
    }
    for change in &why.if_created_now {
        out.push_str(&format!("  {}\n", change_text(change)));
    }
    for warning in &why.warnings {
        out.push_str(&format!("  warning: {warning}\n"));
    }
    out
}

fn change_text(change: &FieldChange) -> String {
    match &change.from {
        Some(from) => format!("{}: {from} -> {}", change.field, change.to),
        None => format!("{}: (unset) -> {}", change.field, change.to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, spec: serde_json::Value, status: serde_json::Value) -> GracefulPolicy {
        serde_json::from_value(json!({
            "apiVersion": "graceful.dev/v1alpha1",
            "kind": "GracefulPolicy",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn pod(annotations: serde_json::Value, grace: i64, restarts: i32) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}, "annotations": annotations},
            "spec": {"terminationGracePeriodSeconds": grace, "containers": [{
                "name": "app", "image": "app",
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}]},
            "status": {"containerStatuses": [{
                "name": "app", "image": "app", "imageID": "", "ready": true, "restartCount": restarts,
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]},
        }))
        .unwrap()
    }

    const RECORD: &str = r#"{"policy":"web","mode":"Enforce","preStopSleepSeconds":5,"shutdownBudgetSeconds":20,"changes":[{"field":"spec.terminationGracePeriodSeconds","from":30,"to":30}]}"#;

    fn web(budget: i64) -> GracefulPolicy {
        policy(
            "web",
            json!({"selector": {"matchLabels": {"app": "web"}}, "drain": {"shutdownBudgetSeconds": budget}}),
            json!({"recent": [
                {"pod": "web-1", "container": "app", "kind": "OOMKilled", "at": "2026-01-01T01:00:00Z"},
                {"pod": "other", "container": "app", "kind": "Restarted", "at": "2026-01-01T01:00:00Z"}]}),
        )
    }

    #[test]
    fn a_policy_that_cannot_be_used_is_named_as_the_webhook_would() {
        let broken = policy(
            "any",
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
            json!(null),
        );
        let why = explain(
            &pod(json!({}), 30, 0),
            &[],
            &[broken],
            &[],
            Capabilities::default(),
        )
        .unwrap();
        assert_eq!(why.policy, None);
        assert!(
            why.because
                .starts_with("admitted unchanged: GracefulPolicy \"any\""),
            "{}",
            why.because
        );
        assert!(why.if_created_now.is_empty());
    }

    #[test]
    fn names_the_policy_the_record_and_what_happened_since() {
        let why = explain(
            &pod(json!({APPLIED_ANNOTATION: RECORD}), 30, 2),
            &[],
            &[web(20)],
            &[],
            Capabilities::default(),
        )
        .unwrap();
        assert_eq!(why.policy.as_deref(), Some("web"));
        assert_eq!(
            why.because,
            "the selector of GracefulPolicy web matches its labels"
        );
        assert_eq!(
            why.admitted
                .as_ref()
                .map(|r| r.budget.shutdown_budget_seconds),
            Some(20)
        );
        assert_eq!(why.since.len(), 2, "{:?}", why.since);
        assert!(why.since[0].contains("OOMKilled container app"));
        assert_eq!(
            why.since[1],
            "container app restarted 2 times (last: OOMKilled)"
        );
        assert!(why.if_created_now.is_empty(), "{:?}", why.if_created_now);
        assert!(text(&why).contains("nothing would change"));
    }

    #[test]
    fn a_policy_changed_since_admission_shows_what_a_new_pod_gets() {
        let why = explain(
            &pod(json!({APPLIED_ANNOTATION: RECORD}), 30, 0),
            &[],
            &[web(50)],
            &[],
            Capabilities::default(),
        )
        .unwrap();
        let grace = why
            .if_created_now
            .iter()
            .find(|c| c.field == "spec.terminationGracePeriodSeconds")
            .expect("the grace period changes");
        assert_eq!(
            (grace.from.clone(), grace.to.clone()),
            (Some(json!(30)), json!(60))
        );
        assert!(
            text(&why).contains("spec.terminationGracePeriodSeconds: 30 -> 60"),
            "{}",
            text(&why)
        );
    }

    #[test]
    fn an_owner_annotation_wins_and_says_so() {
        let owners = [Owner {
            source: Source {
                kind: "Deployment".into(),
                name: "web".into(),
            },
            policy: Some("slow".into()),
        }];
        let slow = policy("slow", json!({}), json!({}));
        let why = explain(
            &pod(json!({}), 30, 0),
            &owners,
            &[web(20), slow],
            &[],
            Capabilities::default(),
        )
        .unwrap();
        assert_eq!(why.policy.as_deref(), Some("slow"));
        assert_eq!(
            why.because,
            "the graceful.dev/policy annotation on Deployment/web names slow"
        );
        assert!(why.admitted.is_none());
        assert!(
            why.admitted_note
                .as_deref()
                .is_some_and(|n| n.contains("did not change this pod"))
        );
    }

    #[test]
    fn an_ungoverned_pod_says_why() {
        let why = explain(
            &pod(json!({POLICY_KEY: "false"}), 30, 0),
            &[],
            &[web(20)],
            &[],
            Capabilities::default(),
        )
        .unwrap();
        assert_eq!(why.policy, None);
        assert!(
            why.because.starts_with("not governed: Pod/web-1 opts out"),
            "{}",
            why.because
        );
        assert!(text(&why).contains("graceful would not change it"));
    }
}
