//! The watches that keep the webhook's indexes current, and the one bounded read an
//! admission may make when the owner cache has not caught up (see [`super::owners`]
//! for why owners are cached this way).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;

use super::owners::{OwnerIndex, Trimmed, Walk};
use super::policies::{NamespacePolicies, PolicyIndex};
use super::services::{ServiceIndex, TrimmedService};
use super::{Lookup, NotSynced, OwnersError};
use crate::api::GracefulPolicy;
use crate::kinds::Kind;
use crate::metrics::Metrics;
use crate::mutate::Backend;
use crate::resolve::Owner;
use crate::runtime::health::{Component, Health};
use crate::runtime::watch::{self as driver, WatchError};
use k8s_openapi::api::core::v1::Service;

/// How long an admission waits for the one owner it may read from the apiserver; the
/// webhook's own timeout (`timeoutSeconds`) is a few times longer.
pub const OWNER_FETCH_TIMEOUT: Duration = Duration::from_millis(500);

/// The policy and owner indexes, filled by the watches of [`Caches::owner_watches`]
/// and the shared GracefulPolicy watch, or by hand in tests.
pub struct Caches {
    policies: RwLock<PolicyIndex>,
    policies_synced: AtomicBool,
    owners: RwLock<OwnerIndex>,
    services: RwLock<ServiceIndex>,
    /// For the read after a miss; without it a miss is an error.
    client: Option<Client>,
    /// The reads in flight, one per missing owner.
    reads: Reads,
    /// Woken whenever an owner arrives from a watch, for admissions waiting on one.
    arrivals: Notify,
    metrics: Arc<Metrics>,
}

impl Caches {
    pub fn new(client: Option<Client>, metrics: Arc<Metrics>) -> Self {
        Self {
            policies: RwLock::default(),
            policies_synced: AtomicBool::new(false),
            owners: RwLock::default(),
            services: RwLock::default(),
            client,
            reads: Reads::default(),
            arrivals: Notify::new(),
            metrics,
        }
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

    fn policies_mut(&self) -> std::sync::RwLockWriteGuard<'_, PolicyIndex> {
        self.policies
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn owner_applied(&self, kind: Kind, meta: &ObjectMeta) {
        let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
            return;
        };
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.apply(kind, namespace, name, Trimmed::from_meta(meta));
        self.metrics.owner_cache_objects(owners.len());
        drop(owners);
        self.arrivals.notify_waiters();
    }

    fn owner_deleted(&self, kind: Kind, meta: &ObjectMeta) {
        let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
            return;
        };
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.delete(kind, namespace, name);
        self.metrics.owner_cache_objects(owners.len());
    }

    /// Replaces every owner of `kind`, as after a (re)list.
    pub fn owners_listed(&self, kind: Kind, listed: Vec<(String, String, Trimmed)>) {
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        owners.replace(kind, listed);
        self.metrics.owner_cache_objects(owners.len());
        drop(owners);
        self.arrivals.notify_waiters();
    }

    /// One watch per owner kind, each feeding this cache, each a component of `health`
    /// (ready once listed). The GracefulPolicy watch is shared with the reconciler, so
    /// the caller runs it, with this cache among its indexes.
    pub fn owner_watches(
        self: &Arc<Self>,
        client: &Client,
        health: &Arc<Health>,
    ) -> Vec<(Kind, BoxFuture<'static, WatchError>)> {
        Kind::ALL
            .into_iter()
            .map(|kind| {
                let component = health.register(format!("{} watch", kind.name()));
                let watch = watch_owners(self.clone(), client.clone(), kind, component);
                (kind, watch.boxed())
            })
            .collect()
    }

    /// The Service watch, trimmed on arrival, feeding this cache; a component of
    /// `health`.
    pub fn service_watch(
        self: &Arc<Self>,
        client: &Client,
        health: &Arc<Health>,
    ) -> BoxFuture<'static, WatchError> {
        let component = health.register("Service watch");
        let api = Api::<Service>::all(client.clone());
        let events = driver::trimmed(
            watcher::watcher(api, watcher::Config::default()).default_backoff(),
            |service: Service| TrimmedService::of(&service),
        );
        let indexes: [Arc<dyn driver::Index<TrimmedService>>; 1] = [self.clone()];
        async move { driver::drive(events, &indexes, &component).await }.boxed()
    }

    fn services_mut(&self) -> std::sync::RwLockWriteGuard<'_, ServiceIndex> {
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The walk up from `controller` over the cache as it is now.
    fn walk(&self, namespace: &str, controller: (Kind, &str)) -> Walk {
        self.owners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .walk(namespace, controller, Vec::new())
    }

    /// The read of one owner after a cache miss, shared by every admission that misses
    /// it meanwhile: a burst of pods of one new ReplicaSet makes one request, not one
    /// new connection each (the client speaks HTTP/1.1, one request per connection).
    fn read(&self, namespace: &str, kind: Kind, name: &str) -> Read {
        let key: ReadKey = (kind, namespace.into(), name.into());
        let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(read) = reads.get(&key) {
            return read.clone();
        }
        let read = fetch(
            self.client.clone(),
            self.metrics.clone(),
            self.reads.clone(),
            key.clone(),
        )
        .boxed()
        .shared();
        reads.insert(key, read.clone());
        read
    }

    /// The owners of a pod. After a miss, the read of the missing owner races its
    /// watch event: whichever comes first answers.
    async fn owners_of(
        &self,
        namespace: &str,
        controller: (Kind, &str),
    ) -> Result<Vec<Owner>, OwnersError> {
        let (kind, name) = match self.walk(namespace, controller) {
            Walk::Done(owners) => return Ok(owners),
            Walk::Missing { kind, name, .. } => (kind, name),
        };
        let mut read = self.read(namespace, kind, &name);
        let fetched = loop {
            // Registered before the cache is looked at, so that no arrival is missed.
            let arrival = self.arrivals.notified();
            let mut arrival = std::pin::pin!(arrival);
            arrival.as_mut().enable();
            if let Walk::Done(owners) = self.walk(namespace, controller) {
                return Ok(owners);
            }
            tokio::select! {
                fetched = &mut read => break fetched?,
                () = arrival => {}
            }
        };
        // One read, never more: a second miss above it is an error.
        match self.walk(namespace, controller) {
            Walk::Done(owners) => Ok(owners),
            Walk::Missing {
                found,
                kind: missing,
                name: missing_name,
            } if (missing, missing_name.as_str()) == (kind, name.as_str()) => {
                let Some(fetched) = fetched else {
                    // The owner is gone (the pod is an orphan in the making): nothing
                    // above it.
                    return Ok(found);
                };
                let walk = self
                    .owners
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .walk_from(namespace, (kind, &name), fetched, found);
                match walk {
                    Walk::Done(owners) => Ok(owners),
                    Walk::Missing { kind, name, .. } => Err(OwnersError::NotCached {
                        kind: kind.name(),
                        name,
                    }),
                }
            }
            Walk::Missing { kind, name, .. } => Err(OwnersError::NotCached {
                kind: kind.name(),
                name,
            }),
        }
    }
}

/// An owner being read, by kind, namespace and name.
type ReadKey = (Kind, Box<str>, Box<str>);
type ReadResult = Result<Option<Trimmed>, OwnersError>;
type Read = Shared<BoxFuture<'static, ReadResult>>;
type Reads = Arc<Mutex<HashMap<ReadKey, Read>>>;

/// Reads one owner's metadata: `Ok(None)` when the object is gone. Leaves `reads` when
/// done, so that a later miss reads afresh.
async fn fetch(
    client: Option<Client>,
    metrics: Arc<Metrics>,
    reads: Reads,
    key: ReadKey,
) -> ReadResult {
    let (kind, namespace, name) = &key;
    let result = match client {
        None => Err(OwnersError::NotCached {
            kind: kind.name(),
            name: name.to_string(),
        }),
        Some(client) => {
            let api = Api::<PartialObjectMeta<DynamicObject>>::namespaced_with(
                client,
                namespace,
                &api_resource(*kind),
            );
            let result = match tokio::time::timeout(OWNER_FETCH_TIMEOUT, api.get_opt(name)).await {
                Ok(Ok(Some(object))) => Ok(Some(Trimmed::from_meta(&object.metadata))),
                Ok(Ok(None)) => Ok(None),
                Ok(Err(source)) => Err(OwnersError::Read {
                    kind: kind.name(),
                    name: name.to_string(),
                    source: Arc::new(source),
                }),
                Err(_) => Err(OwnersError::Timeout {
                    kind: kind.name(),
                    name: name.to_string(),
                    timeout: OWNER_FETCH_TIMEOUT,
                }),
            };
            let label = match &result {
                Ok(Some(_)) => "found",
                Ok(None) => "absent",
                Err(_) => "error",
            };
            metrics.owner_fetch(label);
            result
        }
    };
    reads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&key);
    result
}

/// The API of an owner kind. Every kind that owns pods is served at `v1` of its group.
fn api_resource(kind: Kind) -> ApiResource {
    let group = kind.group();
    let api_version = match group {
        "" => "v1".to_owned(),
        group => format!("{group}/v1"),
    };
    ApiResource {
        group: group.to_owned(),
        version: "v1".to_owned(),
        api_version,
        kind: kind.name().to_owned(),
        plural: kind.resource().to_owned(),
    }
}

/// Metadata only, each object trimmed on arrival: the cache never holds a spec or
/// managed fields, even while a relist is gathered.
async fn watch_owners(
    caches: Arc<Caches>,
    client: Client,
    kind: Kind,
    component: Component,
) -> WatchError {
    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client, &api_resource(kind));
    let events = watcher::watcher(api, watcher::Config::default())
        .modify(|object| Trimmed::strip(&mut object.metadata))
        .default_backoff();
    let indexes: [Arc<dyn driver::Index<PartialObjectMeta<DynamicObject>>>; 1] =
        [Arc::new(OwnerFeed { caches, kind })];
    driver::drive(events, &indexes, &component).await
}

/// The owner cache as the index of one kind's watch.
struct OwnerFeed {
    caches: Arc<Caches>,
    kind: Kind,
}

impl driver::Index<PartialObjectMeta<DynamicObject>> for OwnerFeed {
    fn apply(&self, object: &PartialObjectMeta<DynamicObject>) {
        self.caches.owner_applied(self.kind, &object.metadata);
    }

    fn delete(&self, object: &PartialObjectMeta<DynamicObject>) {
        self.caches.owner_deleted(self.kind, &object.metadata);
    }

    fn relist(&self, objects: &[PartialObjectMeta<DynamicObject>]) {
        let listed = objects
            .iter()
            .filter_map(|object| {
                let meta = &object.metadata;
                Some((
                    meta.namespace.clone()?,
                    meta.name.clone()?,
                    Trimmed::from_meta(meta),
                ))
            })
            .collect();
        self.caches.owners_listed(self.kind, listed);
    }
}

impl driver::Index<GracefulPolicy> for Caches {
    fn apply(&self, policy: &GracefulPolicy) {
        self.policies_mut().apply(policy);
        tracing::info!(namespace = ?policy.namespace(), policy = %policy.name_any(), "GracefulPolicy changed");
    }

    fn delete(&self, policy: &GracefulPolicy) {
        self.policies_mut().delete(policy);
        tracing::info!(namespace = ?policy.namespace(), policy = %policy.name_any(), "GracefulPolicy deleted");
    }

    fn relist(&self, policies: &[GracefulPolicy]) {
        self.policies_listed(policies);
    }
}

impl driver::Index<TrimmedService> for Caches {
    fn apply(&self, service: &TrimmedService) {
        self.services_mut().apply(service.clone());
    }

    fn delete(&self, service: &TrimmedService) {
        self.services_mut().delete(service);
    }

    fn relist(&self, services: &[TrimmedService]) {
        self.services_mut().relist(services);
    }
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
    ) -> BoxFuture<'a, Result<Vec<Owner>, OwnersError>> {
        self.owners_of(namespace, controller).boxed()
    }

    fn services(&self, namespace: &str) -> Arc<[Backend]> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// A client of a server that accepts connections, counts them and never answers.
    async fn silent_apiserver() -> (Client, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        let config = kube::Config::new(url.parse().unwrap());
        (Client::try_from(config).unwrap(), accepted)
    }

    fn meta(name: &str, policy: Option<&str>, deployment: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            annotations: policy.map(|p| [(crate::api::POLICY_KEY.to_owned(), p.to_owned())].into()),
            owner_references: deployment.map(|d| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: d.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        }
    }

    #[tokio::test]
    async fn an_owner_arriving_from_its_watch_answers_before_the_read() {
        let (client, _) = silent_apiserver().await;
        let caches = Arc::new(Caches::new(Some(client), Arc::new(Metrics::new())));
        caches.owner_applied(Kind::Deployment, &meta("web", Some("drain"), None));
        let waiting = {
            let caches = caches.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let owners = caches.owners("shop", (Kind::ReplicaSet, "web-1")).await;
                (owners, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        caches.owner_applied(Kind::ReplicaSet, &meta("web-1", None, Some("web")));
        let (owners, took) = waiting.await.unwrap();
        let owners = owners.unwrap();
        assert_eq!(owners.len(), 2);
        assert_eq!(owners[1].policy.as_deref(), Some("drain"));
        assert!(took < OWNER_FETCH_TIMEOUT, "answered by the read's timeout");
    }

    #[tokio::test]
    async fn misses_of_one_owner_share_one_read() {
        let (client, accepted) = silent_apiserver().await;
        let caches = Arc::new(Caches::new(Some(client), Arc::new(Metrics::new())));
        let misses = (0..8).map(|_| caches.owners("shop", (Kind::ReplicaSet, "web-2")));
        for result in futures::future::join_all(misses).await {
            assert!(
                matches!(result, Err(OwnersError::Timeout { .. })),
                "{result:?}"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // Done reads are forgotten: the next miss reads again.
        let _ = caches.owners("shop", (Kind::ReplicaSet, "web-2")).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
