//! What the default install never sends to graceful's webhook, so that `graceful mutate`
//! does not promise a change the cluster will not make. Pure. The same rule is written
//! in `manifests/base/webhook/webhook.yaml` (its `namespaceSelector`); a test reads that
//! file and holds the two together. Every other pod reaches graceful, which leaves
//! opted-out and mirror pods alone itself ([`crate::govern`]).

/// Namespaces the webhook's `namespaceSelector` leaves out: the cluster's own, and
/// graceful's, whose pods must start even when graceful cannot answer.
pub const SKIPPED_NAMESPACES: [&str; 2] = ["kube-system", "graceful-system"];

/// Why the installed webhook would never see a pod in `namespace`, if it would not.
pub fn skipped(namespace: &str) -> Option<String> {
    SKIPPED_NAMESPACES.contains(&namespace).then(|| {
        format!(
            "the installed webhook never sees pods in namespace {namespace} (its namespaceSelector leaves out {})",
            SKIPPED_NAMESPACES.join(" and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use serde_json::json;

    const WEBHOOK: &str = include_str!("../manifests/base/webhook/webhook.yaml");

    #[test]
    fn the_rule_is_that_of_the_installed_webhook() {
        let stream = manifest::read(WEBHOOK).unwrap();
        let config = manifest::objects(&stream)[0].value.clone();
        let webhook = &config["webhooks"][0];
        let expression = &webhook["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(expression["key"], "kubernetes.io/metadata.name");
        assert_eq!(expression["operator"], "NotIn");
        assert_eq!(expression["values"], json!(SKIPPED_NAMESPACES));
        // Nothing else keeps a pod from graceful, so nothing else is said offline.
        assert!(webhook.get("matchConditions").is_none(), "{webhook}");
        assert!(webhook.get("objectSelector").is_none(), "{webhook}");
    }

    #[test]
    fn says_which_namespaces_the_webhook_never_sees() {
        assert!(skipped("shop").is_none());
        let system = skipped("kube-system").unwrap();
        assert!(system.contains("namespace kube-system"), "{system}");
        assert!(skipped("graceful-system").is_some());
    }
}
