//! The watches that keep the webhook's indexes current, and the one bounded read an
//! admission may make when the owner cache has not caught up (see [`super::owners`]
//! for why owners are cached this way).

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::owners::{OwnerIndex, Trimmed, Walk};
use super::policies::{NamespacePolicies, PolicyIndex};
use super::{Lookup, NotSynced};
use crate::api::GracefulPolicy;
use crate::kinds::Kind;
use crate::metrics::Metrics;
use crate::resolve::Owner;

/// How long an admission waits for the one owner it may read from the apiserver; the
/// webhook's own timeout (`timeoutSeconds`) is a few times longer.
pub const OWNER_FETCH_TIMEOUT: Duration = Duration::from_millis(500);

/// The policy and owner indexes, filled by [`Caches::run`] or by hand in tests.
pub struct Caches {
    policies: RwLock<PolicyIndex>,
    policies_synced: AtomicBool,
    owners: RwLock<OwnerIndex>,
    /// One bit per [`Kind`] whose first list has arrived.
    owners_synced: AtomicU8,
    /// For the read after a miss; without it a miss is an error.
    client: Option<Client>,
    metrics: Arc<Metrics>,
}

const ALL_KINDS_SYNCED: u8 = (1 << Kind::ALL.len()) - 1;

impl Caches {
    pub fn new(client: Option<Client>, metrics: Arc<Metrics>) -> Self {
        Self {
            policies: RwLock::default(),
            policies_synced: AtomicBool::new(false),
            owners: RwLock::default(),
            owners_synced: AtomicU8::new(0),
            client,
            metrics,
        }
    }

    /// Both indexes hold what the apiserver listed.
    pub fn is_synced(&self) -> bool {
        self.policies_synced.load(Ordering::Acquire)
            && self.owners_synced.load(Ordering::Acquire) == ALL_KINDS_SYNCED
    }

    /// Replaces every policy, as after a (re)list, and marks the policies synced.
    pub fn policies_listed<'a>(&self, policies: impl IntoIterator<Item = &'a GracefulPolicy>) {
        let index = PolicyIndex::build(policies);
        *self
            .policies
            .write()
            .unwrap_or_else(PoisonError::into_inner) = index;
        self.policies_synced.store(true, Ordering::Release);
    }

    /// Replaces the policies of one namespace.
    pub fn policies_changed<'a>(
        &self,
        namespace: &str,
        policies: impl IntoIterator<Item = &'a GracefulPolicy>,
    ) {
        self.policies
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .update(namespace, policies);
    }

    pub fn owner_applied(&self, kind: Kind, meta: &ObjectMeta) {
        let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
            return;
        };
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.apply(kind, namespace, name, Trimmed::from_meta(meta));
        self.metrics.owner_cache_objects(owners.len());
    }

    fn owner_deleted(&self, kind: Kind, meta: &ObjectMeta) {
        let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
            return;
        };
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.delete(kind, namespace, name);
        self.metrics.owner_cache_objects(owners.len());
    }

    /// Replaces every owner of `kind`, as after a (re)list, and marks it synced.
    pub fn owners_listed(&self, kind: Kind, listed: Vec<(String, String, Trimmed)>) {
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.replace(kind, listed);
        self.metrics.owner_cache_objects(owners.len());
        self.owners_synced
            .fetch_or(1 << kind as u8, Ordering::Release);
    }

    /// Watches policies and owners until the process ends; errors are retried with
    /// backoff by the watchers themselves.
    pub async fn run(self: Arc<Self>, client: Client) {
        futures::join!(
            self.clone().watch_policies(client.clone()),
            self.clone()
                .watch_owners::<ReplicaSet>(client.clone(), Kind::ReplicaSet),
            self.clone()
                .watch_owners::<Deployment>(client.clone(), Kind::Deployment),
            self.clone()
                .watch_owners::<StatefulSet>(client.clone(), Kind::StatefulSet),
            self.clone()
                .watch_owners::<DaemonSet>(client.clone(), Kind::DaemonSet),
            self.clone().watch_owners::<Job>(client.clone(), Kind::Job),
            self.clone()
                .watch_owners::<CronJob>(client.clone(), Kind::CronJob),
            self.clone()
                .watch_owners::<ReplicationController>(client, Kind::ReplicationController),
        );
    }

    async fn watch_policies(self: Arc<Self>, client: Client) {
        let (reader, writer) = reflector::store::<GracefulPolicy>();
        let stream = reflector::reflector(
            writer,
            watcher::watcher(Api::all(client), watcher::Config::default()),
        )
        .default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(policy) | Event::Delete(policy)) => {
                    let namespace = policy.namespace().unwrap_or_default();
                    let all = reader.state();
                    let same = |p: &&GracefulPolicy| p.namespace().as_deref() == Some(&namespace);
                    self.policies_changed(&namespace, all.iter().map(Arc::as_ref).filter(same));
                    tracing::info!(%namespace, policy = %policy.name_any(), "GracefulPolicy changed");
                }
                Ok(Event::InitDone) => {
                    let all = reader.state();
                    self.policies_listed(all.iter().map(Arc::as_ref));
                    tracing::info!(policies = all.len(), "GracefulPolicy cache synced");
                }
                Ok(Event::Init | Event::InitApply(_)) => {}
                Err(error) => tracing::warn!(%error, "GracefulPolicy watch failed; retrying"),
            }
        }
    }

    /// Metadata only, each object trimmed on arrival: the cache never holds a spec or
    /// managed fields.
    async fn watch_owners<K>(self: Arc<Self>, client: Client, kind: Kind)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let stream = watcher::watcher(
            Api::<PartialObjectMeta<K>>::all(client),
            watcher::Config::default(),
        )
        .default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut relisted = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(object)) => self.owner_applied(kind, &object.metadata),
                Ok(Event::Delete(object)) => self.owner_deleted(kind, &object.metadata),
                Ok(Event::Init) => relisted.clear(),
                Ok(Event::InitApply(object)) => {
                    let meta = &object.metadata;
                    if let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) {
                        relisted.push((namespace.clone(), name.clone(), Trimmed::from_meta(meta)));
                    }
                }
                Ok(Event::InitDone) => {
                    let count = relisted.len();
                    self.owners_listed(kind, std::mem::take(&mut relisted));
                    tracing::info!(kind = kind.name(), count, "owner cache synced");
                }
                Err(error) => {
                    tracing::warn!(kind = kind.name(), %error, "owner watch failed; retrying");
                }
            }
        }
    }

    /// The one read after a cache miss: `Ok(None)` when the object is gone.
    async fn fetch(
        &self,
        namespace: &str,
        kind: Kind,
        name: &str,
    ) -> Result<Option<Trimmed>, String> {
        let Some(client) = &self.client else {
            return Err(format!("{}/{name} is not in the owner cache", kind.name()));
        };
        let read = match kind {
            Kind::ReplicaSet => fetch_meta::<ReplicaSet>(client, namespace, name).boxed(),
            Kind::Deployment => fetch_meta::<Deployment>(client, namespace, name).boxed(),
            Kind::StatefulSet => fetch_meta::<StatefulSet>(client, namespace, name).boxed(),
            Kind::DaemonSet => fetch_meta::<DaemonSet>(client, namespace, name).boxed(),
            Kind::Job => fetch_meta::<Job>(client, namespace, name).boxed(),
            Kind::CronJob => fetch_meta::<CronJob>(client, namespace, name).boxed(),
            Kind::ReplicationController => {
                fetch_meta::<ReplicationController>(client, namespace, name).boxed()
            }
        };
        let result = match tokio::time::timeout(OWNER_FETCH_TIMEOUT, read).await {
            Ok(Ok(Some(meta))) => Ok(Some(Trimmed::from_meta(&meta))),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(error)) => Err(format!("reading {}/{name}: {error}", kind.name())),
            Err(_) => Err(format!(
                "reading {}/{name} took longer than {OWNER_FETCH_TIMEOUT:?}",
                kind.name()
            )),
        };
        let label = match &result {
            Ok(Some(_)) => "found",
            Ok(None) => "absent",
            Err(_) => "error",
        };
        self.metrics.owner_fetch(label);
        result
    }

    async fn owners_of(
        &self,
        namespace: &str,
        controller: (Kind, &str),
    ) -> Result<Vec<Owner>, String> {
        let walk = self
            .owners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .walk(namespace, controller, Vec::new());
        let (found, kind, name) = match walk {
            Walk::Done(owners) => return Ok(owners),
            Walk::Missing { found, kind, name } => (found, kind, name),
        };
        // One read, never more: a second miss above it is an error.
        let Some(fetched) = self.fetch(namespace, kind, &name).await? else {
            // The owner is gone (the pod is an orphan in the making): nothing above it.
            return Ok(found);
        };
        let walk = self
            .owners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .walk_from(namespace, (kind, &name), fetched, found);
        match walk {
            Walk::Done(owners) => Ok(owners),
            Walk::Missing { kind, name, .. } => Err(format!(
                "{}/{name} is not in the owner cache yet",
                kind.name()
            )),
        }
    }
}

async fn fetch_meta<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ObjectMeta>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    Ok(api
        .get_metadata_opt(name)
        .await?
        .map(|object| object.metadata))
}

impl Lookup for Caches {
    fn policies(&self, namespace: &str) -> Result<Option<Arc<NamespacePolicies>>, NotSynced> {
        if !self.policies_synced.load(Ordering::Acquire) {
            return Err(NotSynced);
        }
        Ok(self
            .policies
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace))
    }

    fn owners<'a>(
        &'a self,
        namespace: &'a str,
        controller: (Kind, &'a str),
    ) -> BoxFuture<'a, Result<Vec<Owner>, String>> {
        self.owners_of(namespace, controller).boxed()
    }
}
