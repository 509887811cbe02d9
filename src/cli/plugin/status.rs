//! `kubectl graceful status`: one row per policy with its pods, violations,
//! recommendations and readiness. Pure: policies and the names of the pods they govern
//! in, rows out (as a table or as data for `-o yaml|json`).

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::Serialize;

use super::table::{Cell, Tone, render};
use crate::api::{GracefulPolicy, Mode, ViolationCounts};
use crate::recommend::{Recommendation, recommendations};

/// What `status` reports of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub namespace: String,
    pub name: String,
    pub mode: Mode,
    /// The pods labelled with the policy now.
    pub pods: Vec<String>,
    pub violations: ViolationCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_p95_seconds: Option<f64>,
    pub recommendations: Vec<Recommendation>,
    /// The `Ready` condition's status (`True`, `False`), `Unknown` before graceful wrote one.
    pub ready: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ready_message: String,
}

/// The status of each policy; `pods` are the names of governed pods by (namespace, policy).
pub fn policy_statuses(
    policies: &[GracefulPolicy],
    pods: &BTreeMap<(String, String), Vec<String>>,
) -> Vec<PolicyStatus> {
    let mut statuses: Vec<PolicyStatus> = policies
        .iter()
        .map(|policy| {
            let namespace = policy.namespace().unwrap_or_default();
            let name = policy.name_any();
            let status = policy.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map(|c| (c.status.clone(), c.message.clone()));
            let (ready, ready_message) = ready.unwrap_or_else(|| ("Unknown".into(), String::new()));
            PolicyStatus {
                pods: pods
                    .get(&(namespace.clone(), name.clone()))
                    .cloned()
                    .unwrap_or_default(),
                violations: status
                    .and_then(|s| s.violations.clone())
                    .unwrap_or_default(),
                shutdown_p95_seconds: status
                    .and_then(|s| s.shutdown.as_ref())
                    .filter(|s| s.observed > 0)
                    .map(|s| s.p95_seconds),
                recommendations: recommendations(&policy.spec.drain, status),
                mode: policy.spec.mode,
                namespace,
                name,
                ready,
                ready_message,
            }
        })
        .collect();
    statuses.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    statuses
}

/// The table `status` prints; the namespace column only with `-A`, as kubectl does.
pub fn table(statuses: &[PolicyStatus], all_namespaces: bool, colour: bool) -> String {
    let mut headers = vec![
        "NAME",
        "MODE",
        "PODS",
        "VIOLATIONS",
        "SHUTDOWN-P95",
        "RECOMMENDATION",
        "READY",
    ];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<Cell>> = statuses
        .iter()
        .map(|status| {
            let mut row = vec![
                Cell::plain(&status.name),
                Cell::plain(format!("{:?}", status.mode)),
                Cell::plain(status.pods.len().to_string()),
                violations_cell(&status.violations),
                Cell::plain(
                    status
                        .shutdown_p95_seconds
                        .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s")),
                ),
                recommendation_cell(&status.recommendations),
                Cell::toned(
                    &status.ready,
                    match status.ready.as_str() {
                        "True" => Tone::Good,
                        "False" => Tone::Bad,
                        _ => Tone::Plain,
                    },
                ),
            ];
            if all_namespaces {
                row.insert(0, Cell::plain(&status.namespace));
            }
            row
        })
        .collect();
    render(&headers, &rows, colour)
}

fn violations_cell(counts: &ViolationCounts) -> Cell {
    if counts.total == 0 {
        return Cell::plain("0");
    }
    let kinds = [
        ("over budget", counts.budget_exceeded),
        ("OOM", counts.oom_killed),
        ("restarts", counts.restarts),
    ];
    let named: Vec<String> = kinds
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect();
    Cell::toned(
        format!("{} ({})", counts.total, named.join(", ")),
        Tone::Bad,
    )
}

fn recommendation_cell(found: &[Recommendation]) -> Cell {
    let unmet: Vec<String> = found
        .iter()
        .filter(|r| r.is_unmet())
        .map(ToString::to_string)
        .collect();
    if unmet.is_empty() {
        Cell::plain("-")
    } else {
        Cell::toned(unmet.join(", "), Tone::Bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(namespace: &str, name: &str, status: serde_json::Value) -> GracefulPolicy {
        serde_json::from_value(json!({
            "apiVersion": "graceful.dev/v1alpha1",
            "kind": "GracefulPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"drain": {"shutdownBudgetSeconds": 20}},
            "status": status,
        }))
        .unwrap()
    }

    fn sample() -> Vec<PolicyStatus> {
        let policies = [
            policy(
                "shop",
                "web",
                json!({
                    "conditions": [{"type": "Ready", "status": "True", "reason": "InForce", "message": "",
                                    "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                    "violations": {"budgetExceeded": 2, "oomKilled": 0, "restarts": 1, "total": 3},
                    "shutdown": {"observed": 4, "p50Seconds": 10.0, "p95Seconds": 29.5,
                                 "maxSeconds": 30.0, "recommendedBudgetSeconds": 40},
                }),
            ),
            policy("bar", "api", json!({})),
        ];
        let pods = BTreeMap::from([(
            ("shop".to_owned(), "web".to_owned()),
            vec!["web-1".to_owned(), "web-2".to_owned()],
        )]);
        policy_statuses(&policies, &pods)
    }

    #[test]
    fn reports_pods_violations_recommendations_and_readiness() {
        let statuses = sample();
        assert_eq!(
            (statuses[0].namespace.as_str(), statuses[1].name.as_str()),
            ("bar", "web")
        );
        let web = &statuses[1];
        assert_eq!(web.pods, ["web-1", "web-2"]);
        assert_eq!(web.violations.total, 3);
        assert_eq!(web.ready, "True");
        assert_eq!(web.recommendations[0].recommended, 40);
        assert_eq!(statuses[0].ready, "Unknown");
        assert!(statuses[0].recommendations.is_empty());
    }

    #[test]
    fn renders_kubectl_style_with_the_namespace_only_for_all_namespaces() {
        let text = table(&sample(), true, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "NAMESPACE",
                "NAME",
                "MODE",
                "PODS",
                "VIOLATIONS",
                "SHUTDOWN-P95",
                "RECOMMENDATION",
                "READY"
            ]
        );
        assert!(lines[1].starts_with("bar "), "{text}");
        assert!(lines[1].ends_with("Unknown"), "{text}");
        assert!(lines[2].contains("3 (2 over budget, 1 restarts)"), "{text}");
        assert!(lines[2].contains("29.5s"), "{text}");
        assert!(
            lines[2].contains("shutdownBudgetSeconds 20 -> 40"),
            "{text}"
        );
        assert!(!table(&sample(), false, false).contains("NAMESPACE"));
    }
}
