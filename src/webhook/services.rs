//! The trimmed Service cache behind `targets: Serving`: per namespace, whom each Service
//! selects and which ports it sends to, nothing else. Fed by one watch of every Service
//! ([`super::watch`]); an admission reads it and never asks the apiserver. Pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

use crate::mutate::Backend;

/// A Service as the cache keeps it; `backend` is `None` for one without a selector,
/// kept so that its deletion is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrimmedService {
    pub namespace: String,
    pub name: String,
    pub backend: Option<Backend>,
}

impl TrimmedService {
    pub fn of(service: &Service) -> Option<TrimmedService> {
        Some(TrimmedService {
            namespace: service.namespace()?,
            name: service.name_any(),
            backend: Backend::of(service),
        })
    }
}

/// The Services of every namespace, with a shared list per namespace for admissions.
#[derive(Debug, Default)]
pub struct ServiceIndex {
    namespaces: HashMap<String, Namespace>,
}

#[derive(Debug, Default)]
struct Namespace {
    by_name: BTreeMap<String, Backend>,
    /// Rebuilt on each change, handed out without copying.
    shared: Arc<[Backend]>,
}

impl Namespace {
    fn rebuild(&mut self) {
        self.shared = self.by_name.values().cloned().collect();
    }
}

impl ServiceIndex {
    pub fn apply(&mut self, service: TrimmedService) {
        let namespace = self.namespaces.entry(service.namespace).or_default();
        match service.backend {
            Some(backend) => namespace.by_name.insert(service.name, backend),
            None => namespace.by_name.remove(&service.name),
        };
        namespace.rebuild();
    }

    pub fn delete(&mut self, service: &TrimmedService) {
        if let Some(namespace) = self.namespaces.get_mut(&service.namespace) {
            namespace.by_name.remove(&service.name);
            namespace.rebuild();
            if namespace.by_name.is_empty() {
                self.namespaces.remove(&service.namespace);
            }
        }
    }

    pub fn relist(&mut self, services: &[TrimmedService]) {
        self.namespaces.clear();
        for service in services {
            self.apply(service.clone());
        }
    }

    pub fn get(&self, namespace: &str) -> Arc<[Backend]> {
        self.namespaces
            .get(namespace)
            .map_or_else(|| Arc::from([]), |n| n.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mutate::TargetPort;

    fn service(namespace: &str, name: &str, spec: serde_json::Value) -> TrimmedService {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name}, "spec": spec
        }))
        .unwrap();
        TrimmedService::of(&service).unwrap()
    }

    #[test]
    fn services_are_kept_per_namespace_by_selector_and_target_port() {
        let mut index = ServiceIndex::default();
        index.relist(&[
            service(
                "shop",
                "web",
                json!({"selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": "http"}, {"port": 9090}]}),
            ),
            service("shop", "external", json!({"ports": [{"port": 80}]})),
            service(
                "ops",
                "db",
                json!({"selector": {"app": "db"}, "ports": [{"port": 5432, "targetPort": 5433}]}),
            ),
        ]);
        let shop = index.get("shop");
        assert_eq!(shop.len(), 1, "a Service without a selector backs no pod");
        assert_eq!(
            shop[0].ports,
            [TargetPort::Name("http".into()), TargetPort::Number(9090)]
        );
        assert_eq!(index.get("ops")[0].ports, [TargetPort::Number(5433)]);
        index.delete(&service("ops", "db", json!({})));
        assert!(index.get("ops").is_empty());
        index.apply(service("shop", "web", json!({"ports": [{"port": 80}]})));
        assert!(index.get("shop").is_empty(), "losing its selector drops it");
    }
}
