//! What the default install never sends to graceful's webhook, so that `graceful mutate`
//! does not promise a change the cluster will not make. Pure. The same rules are written
//! in `manifests/base/webhook/webhook.yaml` (its `namespaceSelector` and
//! `matchConditions`); a test reads that file and holds the two together.

use crate::api::{OPT_OUT, POLICY_KEY};
use crate::mutate::PodView;

/// Namespaces the webhook's `namespaceSelector` leaves out: the cluster's own, and
/// graceful's, whose pods must start even when graceful cannot answer.
pub const SKIPPED_NAMESPACES: [&str; 2] = ["kube-system", "graceful-system"];

/// The annotation the kubelet puts on the mirror of a static pod.
const MIRROR_KEY: &str = "kubernetes.io/config.mirror";

/// Why the installed webhook would never see `pod` in `namespace`, if it would not.
pub fn skipped(namespace: &str, pod: &PodView) -> Option<String> {
    if SKIPPED_NAMESPACES.contains(&namespace) {
        return Some(format!(
            "the installed webhook never sees pods in namespace {namespace} (its namespaceSelector leaves out {})",
            SKIPPED_NAMESPACES.join(" and ")
        ));
    }
    if pod.annotation(POLICY_KEY) == Some(OPT_OUT) {
        return Some(format!(
            "the installed webhook skips this pod (matchCondition not-opted-out: {POLICY_KEY}: \"{OPT_OUT}\")"
        ));
    }
    if pod.annotation(MIRROR_KEY).is_some() {
        return Some(format!(
            "the installed webhook skips this pod (matchCondition not-a-mirror-pod: {MIRROR_KEY})"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use serde_json::{Value, json};

    const WEBHOOK: &str = include_str!("../manifests/base/webhook/webhook.yaml");

    fn pod(annotations: Value) -> PodView {
        serde_json::from_value(json!({
            "metadata": {"annotations": annotations},
            "spec": {"containers": [{"name": "app"}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_rules_are_those_of_the_installed_webhook() {
        let stream = manifest::read(WEBHOOK).unwrap();
        let config = manifest::objects(&stream)[0].value.clone();
        let webhook = &config["webhooks"][0];
        let expression = &webhook["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(expression["key"], "kubernetes.io/metadata.name");
        assert_eq!(expression["operator"], "NotIn");
        assert_eq!(expression["values"], json!(SKIPPED_NAMESPACES));
        let conditions: Vec<(&str, &str)> = webhook["matchConditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap(),
                    c["expression"].as_str().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = conditions.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["not-opted-out", "not-a-mirror-pod"]);
        assert!(
            conditions[0]
                .1
                .contains(&format!("['{POLICY_KEY}'] != '{OPT_OUT}'"))
        );
        assert!(conditions[1].1.contains(&format!("'{MIRROR_KEY}' in")));
    }

    #[test]
    fn says_what_the_webhook_would_skip() {
        let plain = pod(json!({}));
        assert!(skipped("shop", &plain).is_none());
        let system = skipped("kube-system", &plain).unwrap();
        assert!(system.contains("namespace kube-system"), "{system}");
        assert!(skipped("graceful-system", &plain).is_some());
        let opted_out = skipped("shop", &pod(json!({POLICY_KEY: OPT_OUT}))).unwrap();
        assert!(opted_out.contains("not-opted-out"), "{opted_out}");
        let mirror = skipped("shop", &pod(json!({MIRROR_KEY: "abc"}))).unwrap();
        assert!(mirror.contains("not-a-mirror-pod"), "{mirror}");
        assert!(skipped("shop", &pod(json!({POLICY_KEY: "web"}))).is_none());
    }
}
