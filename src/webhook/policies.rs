//! The GracefulPolicies of each namespace, compiled for resolution. Pure: the watch in
//! [`super::watch`] hands it each policy, a namespace's entry is rebuilt from its
//! policies on every change, and an admission only clones an `Arc`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;

use crate::api::{GracefulPolicy, GracefulPolicySpec, Targets};
use crate::resolve::Candidate;

/// The policies of one namespace.
#[derive(Debug, Default)]
pub struct NamespacePolicies {
    /// For [`crate::resolve::resolve`].
    pub candidates: Vec<Candidate>,
    /// The spec of each candidate, by name, with the drain new pods get (`tuning:
    /// Auto`'s values in place of the policy's own once it has set them), and the lines
    /// that say so in each pod's record.
    specs: HashMap<String, (GracefulPolicySpec, Vec<String>)>,
    /// Policies that cannot be used, and why: graceful skips them and says so.
    pub broken: Vec<(String, String)>,
    /// Whether a policy here has `targets: Serving`: only then does an admission need
    /// the namespace's Services.
    serving: bool,
}

impl NamespacePolicies {
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a GracefulPolicy>) -> Self {
        let mut this = Self::default();
        for policy in policies {
            match Candidate::from_policy(policy) {
                Ok(candidate) => {
                    this.serving |= policy.spec.targets == Targets::Serving;
                    let (drain, tuning) =
                        crate::tuning::effective(&policy.spec.drain, policy.status.as_ref());
                    let spec = GracefulPolicySpec {
                        drain,
                        ..policy.spec.clone()
                    };
                    this.specs.insert(candidate.name.clone(), (spec, tuning));
                    this.candidates.push(candidate);
                }
                Err(error) => this.broken.push((
                    policy.name_any(),
                    format!("its spec.selector cannot be used: {error}"),
                )),
            }
        }
        this
    }

    pub fn needs_services(&self) -> bool {
        self.serving
    }

    /// The spec new pods are mutated with, and what the record says of its tuning.
    pub fn spec(&self, name: &str) -> Option<(&GracefulPolicySpec, &[String])> {
        self.specs
            .get(name)
            .map(|(spec, tuning)| (spec, tuning.as_slice()))
    }

    /// Why the policy `name` is not used, if it is broken.
    pub fn broken(&self, name: &str) -> Option<&str> {
        self.broken
            .iter()
            .find(|(broken, _)| broken == name)
            .map(|(_, why)| why.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty() && self.broken.is_empty()
    }
}

/// Every namespace's policies; namespaces without any have no entry.
#[derive(Debug, Default)]
pub struct PolicyIndex {
    namespaces: HashMap<String, Arc<NamespacePolicies>>,
    /// The policies themselves, to rebuild a namespace when one of them changes.
    sources: HashMap<String, BTreeMap<String, GracefulPolicy>>,
}

impl PolicyIndex {
    /// The index of all `policies`, as after a (re)list.
    pub fn build<'a>(policies: impl IntoIterator<Item = &'a GracefulPolicy>) -> Self {
        let mut by_namespace: HashMap<String, Vec<&GracefulPolicy>> = HashMap::new();
        for policy in policies {
            by_namespace
                .entry(policy.namespace().unwrap_or_default())
                .or_default()
                .push(policy);
        }
        let mut index = Self::default();
        for (namespace, policies) in by_namespace {
            let sources = policies.iter().map(|p| (p.name_any(), (*p).clone()));
            index.sources.insert(namespace.clone(), sources.collect());
            index.update(&namespace, policies);
        }
        index
    }

    /// `policy` was created or changed.
    pub fn apply(&mut self, policy: &GracefulPolicy) {
        let namespace = policy.namespace().unwrap_or_default();
        self.sources
            .entry(namespace.clone())
            .or_default()
            .insert(policy.name_any(), policy.clone());
        self.rebuild(&namespace);
    }

    /// `policy` is gone.
    pub fn delete(&mut self, policy: &GracefulPolicy) {
        let namespace = policy.namespace().unwrap_or_default();
        if let Some(policies) = self.sources.get_mut(&namespace) {
            policies.remove(&policy.name_any());
        }
        self.rebuild(&namespace);
    }

    fn rebuild(&mut self, namespace: &str) {
        let policies = self.sources.remove(namespace).unwrap_or_default();
        self.update(namespace, policies.values());
        if !policies.is_empty() {
            self.sources.insert(namespace.to_owned(), policies);
        }
    }

    /// Replaces the entry of `namespace` with its current `policies`.
    pub fn update<'a>(
        &mut self,
        namespace: &str,
        policies: impl IntoIterator<Item = &'a GracefulPolicy>,
    ) {
        let compiled = NamespacePolicies::new(policies);
        if compiled.is_empty() {
            self.namespaces.remove(namespace);
        } else {
            self.namespaces
                .insert(namespace.to_owned(), Arc::new(compiled));
        }
    }

    pub fn get(&self, namespace: &str) -> Option<Arc<NamespacePolicies>> {
        self.namespaces.get(namespace).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Mode;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn policy(namespace: &str, name: &str, selector: Option<LabelSelector>) -> GracefulPolicy {
        let mut policy = GracefulPolicy::new(
            name,
            GracefulPolicySpec {
                selector,
                mode: Mode::Audit,
                ..GracefulPolicySpec::default()
            },
        );
        policy.metadata.namespace = Some(namespace.to_owned());
        policy
    }

    #[test]
    fn only_a_namespace_with_a_serving_policy_needs_its_services() {
        let mut serving = policy("shop", "serving", None);
        serving.spec.targets = Targets::Serving;
        let index = PolicyIndex::build(&[policy("ops", "all", None), policy("shop", "all", None)]);
        assert!(!index.get("shop").unwrap().needs_services());
        let index = PolicyIndex::build(&[
            policy("ops", "all", None),
            policy("shop", "all", None),
            serving,
        ]);
        assert!(index.get("shop").unwrap().needs_services());
        assert!(!index.get("ops").unwrap().needs_services());
    }

    #[test]
    fn groups_by_namespace_with_specs() {
        let policies = [
            policy("shop", "web", None),
            policy("shop", "all", Some(LabelSelector::default())),
            policy("ops", "batch", None),
        ];
        let index = PolicyIndex::build(&policies);
        let shop = index.get("shop").unwrap();
        let names: Vec<_> = shop.candidates.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["web", "all"]);
        assert_eq!(shop.spec("web").unwrap().0.mode, Mode::Audit);
        assert!(shop.spec("batch").is_none());
        assert_eq!(index.get("ops").unwrap().candidates.len(), 1);
        assert!(index.get("default").is_none());
    }

    #[test]
    fn an_update_replaces_a_namespace_and_an_empty_one_disappears() {
        let mut index = PolicyIndex::build(&[policy("shop", "web", None)]);
        index.update("shop", &[policy("shop", "api", None)]);
        assert!(index.get("shop").unwrap().spec("web").is_none());
        assert!(index.get("shop").unwrap().spec("api").is_some());
        index.update("shop", &[]);
        assert!(index.get("shop").is_none());
    }

    #[test]
    fn a_policy_applied_or_deleted_rebuilds_its_namespace_only() {
        let mut index =
            PolicyIndex::build(&[policy("shop", "web", None), policy("ops", "batch", None)]);
        index.apply(&policy("shop", "api", None));
        let shop = index.get("shop").unwrap();
        assert!(shop.spec("web").is_some() && shop.spec("api").is_some());
        index.delete(&policy("shop", "web", None));
        index.delete(&policy("shop", "api", None));
        assert!(index.get("shop").is_none());
        assert_eq!(index.get("ops").unwrap().candidates.len(), 1);
    }

    #[test]
    fn a_policy_with_an_unusable_selector_is_kept_aside_with_the_reason() {
        let broken = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        };
        let index = PolicyIndex::build(&[policy("shop", "bad", Some(broken))]);
        let shop = index.get("shop").unwrap();
        assert!(shop.candidates.is_empty());
        assert!(shop.broken("bad").unwrap().contains("spec.selector"));
    }
}
