//! The owners of pods, trimmed to what resolution needs. Pure: [`super::watch`] feeds
//! it from metadata-only watches and reads it on admission.
//!
//! Why this design: a pod at CREATE names only its controller (a ReplicaSet, a Job,
//! ...), while the `graceful.dev/policy` annotation that opts it in is usually on the
//! Deployment or CronJob above. Asking the apiserver for each link costs one or two
//! round trips per admission, on the path of every pod creation. Copying the
//! workload's annotation into its pod template when the workload is admitted would need
//! a second webhook on every workload kind and cannot see annotations added with
//! `kubectl annotate` before a plain `rollout restart`. So graceful watches the
//! metadata (not the specs) of the kinds that own pods ([`crate::kinds`]) and keeps, per object, only
//! its annotation (if any) and its controller's kind and name: tens of bytes instead of
//! the kilobytes of a full object with its managed fields, so memory stays bounded in a
//! cluster with many old ReplicaSets. A ReplicaSet made a moment ago may not have
//! reached the cache when its first pods are admitted; the walk then reports the miss,
//! and the caller may fetch that one object (see [`super::watch`]).

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::POLICY_KEY;
use crate::kinds::Kind;
use crate::resolve::{Owner, Source};

/// An owner as the cache keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Its `graceful.dev/policy` annotation.
    pub policy: Option<Box<str>>,
    /// Its controller, when that is a kind graceful follows.
    pub controller: Option<(Kind, Box<str>)>,
}

impl Trimmed {
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        let policy = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(POLICY_KEY))
            .map(|value| value.as_str().into());
        let controller = meta
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .and_then(|r| Some((Kind::of(&r.api_version, &r.kind)?, r.name.as_str().into())));
        Self { policy, controller }
    }
}

/// How far a walk up the owner chain goes; real chains have at most two links.
const MAX_DEPTH: usize = 4;

/// The result of walking up from a pod's controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walk {
    /// Every owner, nearest first.
    Done(Vec<Owner>),
    /// The owners found so far, and the first one the cache does not have.
    Missing {
        found: Vec<Owner>,
        kind: Kind,
        name: String,
    },
}

type ByName = HashMap<Box<str>, Trimmed>;

/// The trimmed owners of each kind, by namespace and name.
#[derive(Debug, Default)]
pub struct OwnerIndex {
    kinds: [HashMap<Box<str>, ByName>; Kind::ALL.len()],
}

impl OwnerIndex {
    fn kind(&self, kind: Kind) -> &HashMap<Box<str>, ByName> {
        &self.kinds[kind as usize]
    }

    pub fn apply(&mut self, kind: Kind, namespace: &str, name: &str, owner: Trimmed) {
        self.kinds[kind as usize]
            .entry(namespace.into())
            .or_default()
            .insert(name.into(), owner);
    }

    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) {
        let namespaces = &mut self.kinds[kind as usize];
        if let Some(names) = namespaces.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                namespaces.remove(namespace);
            }
        }
    }

    /// Replaces everything known of `kind`, as after a (re)list.
    pub fn replace(
        &mut self,
        kind: Kind,
        owners: impl IntoIterator<Item = (String, String, Trimmed)>,
    ) {
        let mut fresh: HashMap<Box<str>, ByName> = HashMap::new();
        for (namespace, name, owner) in owners {
            fresh
                .entry(namespace.into())
                .or_default()
                .insert(name.into(), owner);
        }
        self.kinds[kind as usize] = fresh;
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Trimmed> {
        self.kind(kind).get(namespace)?.get(name)
    }

    pub fn len(&self) -> usize {
        self.kinds
            .iter()
            .flat_map(|namespaces| namespaces.values())
            .map(HashMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Walks up from `(kind, name)` in `namespace`, appending to `found`.
    pub fn walk(&self, namespace: &str, start: (Kind, &str), found: Vec<Owner>) -> Walk {
        self.walk_with(start, found, |kind, name| {
            self.get(kind, namespace, name).cloned()
        })
    }

    /// Walks up like [`OwnerIndex::walk`], with `first` standing for the start object
    /// (an object fetched after a miss).
    pub fn walk_from(
        &self,
        namespace: &str,
        start: (Kind, &str),
        first: Trimmed,
        found: Vec<Owner>,
    ) -> Walk {
        let mut first = Some(first);
        self.walk_with(start, found, |kind, name| match first.take() {
            Some(owner) => Some(owner),
            None => self.get(kind, namespace, name).cloned(),
        })
    }

    fn walk_with(
        &self,
        (mut kind, start): (Kind, &str),
        mut found: Vec<Owner>,
        mut lookup: impl FnMut(Kind, &str) -> Option<Trimmed>,
    ) -> Walk {
        let mut name: String = start.to_owned();
        for _ in 0..MAX_DEPTH {
            let Some(owner) = lookup(kind, &name) else {
                return Walk::Missing { found, kind, name };
            };
            found.push(Owner {
                source: Source {
                    kind: kind.name().to_owned(),
                    name,
                },
                policy: owner.policy.map(String::from),
            });
            match owner.controller {
                Some((next, next_name)) => {
                    kind = next;
                    name = next_name.into();
                }
                None => break,
            }
        }
        Walk::Done(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn trimmed(policy: Option<&str>, controller: Option<(Kind, &str)>) -> Trimmed {
        Trimmed {
            policy: policy.map(Into::into),
            controller: controller.map(|(k, n)| (k, n.into())),
        }
    }

    fn owner(kind: &str, name: &str, policy: Option<&str>) -> Owner {
        Owner {
            source: Source {
                kind: kind.into(),
                name: name.into(),
            },
            policy: policy.map(Into::into),
        }
    }

    fn index() -> OwnerIndex {
        let mut index = OwnerIndex::default();
        index.apply(
            Kind::ReplicaSet,
            "shop",
            "web-1",
            trimmed(None, Some((Kind::Deployment, "web"))),
        );
        index.apply(
            Kind::Deployment,
            "shop",
            "web",
            trimmed(Some("drain"), None),
        );
        index.apply(
            Kind::Job,
            "ops",
            "nightly-1",
            trimmed(None, Some((Kind::CronJob, "nightly"))),
        );
        index.apply(Kind::CronJob, "ops", "nightly", trimmed(None, None));
        index
    }

    #[test]
    fn trims_an_object_to_its_annotation_and_controller() {
        let meta = ObjectMeta {
            annotations: Some(
                [
                    (POLICY_KEY.to_owned(), "web".to_owned()),
                    ("other".to_owned(), "x".repeat(1000)),
                ]
                .into(),
            ),
            owner_references: Some(vec![
                OwnerReference {
                    api_version: "example.com/v1".into(),
                    kind: "Rollout".into(),
                    name: "not-controller".into(),
                    ..OwnerReference::default()
                },
                OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "web".into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                },
            ]),
            ..ObjectMeta::default()
        };
        assert_eq!(
            Trimmed::from_meta(&meta),
            trimmed(Some("web"), Some((Kind::Deployment, "web")))
        );
    }

    #[test]
    fn walks_from_a_replicaset_to_its_deployment() {
        assert_eq!(
            index().walk("shop", (Kind::ReplicaSet, "web-1"), Vec::new()),
            Walk::Done(vec![
                owner("ReplicaSet", "web-1", None),
                owner("Deployment", "web", Some("drain"))
            ])
        );
        assert_eq!(
            index().walk("ops", (Kind::Job, "nightly-1"), Vec::new()),
            Walk::Done(vec![
                owner("Job", "nightly-1", None),
                owner("CronJob", "nightly", None)
            ])
        );
    }

    #[test]
    fn namespaces_are_apart() {
        assert_eq!(
            index().walk("ops", (Kind::ReplicaSet, "web-1"), Vec::new()),
            Walk::Missing {
                found: vec![],
                kind: Kind::ReplicaSet,
                name: "web-1".into()
            }
        );
    }

    #[test]
    fn a_new_replicaset_is_a_miss_and_the_fetched_object_continues_the_walk() {
        let index = index();
        let walk = index.walk("shop", (Kind::ReplicaSet, "web-2"), Vec::new());
        assert_eq!(
            walk,
            Walk::Missing {
                found: vec![],
                kind: Kind::ReplicaSet,
                name: "web-2".into()
            }
        );
        let fetched = trimmed(None, Some((Kind::Deployment, "web")));
        assert_eq!(
            index.walk_from("shop", (Kind::ReplicaSet, "web-2"), fetched, Vec::new()),
            Walk::Done(vec![
                owner("ReplicaSet", "web-2", None),
                owner("Deployment", "web", Some("drain"))
            ])
        );
    }

    #[test]
    fn a_missing_deployment_above_a_known_replicaset_is_a_miss_with_what_was_found() {
        let mut index = index();
        index.delete(Kind::Deployment, "shop", "web");
        assert_eq!(
            index.walk("shop", (Kind::ReplicaSet, "web-1"), Vec::new()),
            Walk::Missing {
                found: vec![owner("ReplicaSet", "web-1", None)],
                kind: Kind::Deployment,
                name: "web".into()
            }
        );
    }

    #[test]
    fn a_cycle_ends() {
        let mut index = OwnerIndex::default();
        index.apply(
            Kind::ReplicaSet,
            "x",
            "a",
            trimmed(None, Some((Kind::ReplicaSet, "a"))),
        );
        let Walk::Done(found) = index.walk("x", (Kind::ReplicaSet, "a"), Vec::new()) else {
            panic!("a cycle is walked to the depth limit");
        };
        assert_eq!(found.len(), MAX_DEPTH);
    }

    #[test]
    fn replace_and_delete_keep_the_index_small() {
        let mut index = index();
        assert_eq!(index.len(), 4);
        index.replace(
            Kind::ReplicaSet,
            [("shop".to_owned(), "web-3".to_owned(), Trimmed::default())],
        );
        assert!(index.get(Kind::ReplicaSet, "shop", "web-1").is_none());
        assert!(index.get(Kind::ReplicaSet, "shop", "web-3").is_some());
        index.delete(Kind::ReplicaSet, "shop", "web-3");
        index.delete(Kind::CronJob, "ops", "nightly");
        assert_eq!(index.len(), 2);
        assert!(!index.is_empty());
    }
}
