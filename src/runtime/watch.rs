//! One driver for every watch: a kind is watched once and each event is handed to
//! every index that needs it (the webhook's caches and the reconciler both read
//! GracefulPolicies, say), as linkerd's policy controller fans its watches out.
//!
//! Transient errors are retried by the watcher's backoff. Two errors are not: a watch
//! the apiserver forbids (graceful's RBAC was changed), and a stream that ends. Either
//! leaves an index that no longer moves, so the driver returns and the process fails
//! (see [`super::tasks`]) rather than go on answering from a stale cache.

use futures::{Stream, StreamExt, future};
use kube::runtime::watcher::{self, Event};
use std::sync::Arc;

use super::health::Component;

/// What a watch feeds. Objects come by reference: one event goes to several indexes.
pub trait Index<K>: Send + Sync {
    /// `object` was created or changed.
    fn apply(&self, object: &K);
    /// `object` is gone; this is its last state.
    fn delete(&self, object: &K);
    /// A (re)list found exactly `objects`: whatever else the index holds is gone.
    fn relist(&self, objects: &[K]);
}

/// Why a watch stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0} ended")]
    Ended(String),
    #[error("{watch} is forbidden: {source}")]
    Forbidden {
        watch: String,
        #[source]
        source: watcher::Error,
    },
}

/// Feeds `events` to `indexes` until the stream ends or is forbidden; `component`
/// (named after the watch) is ready from the first complete list.
pub async fn drive<K>(
    events: impl Stream<Item = watcher::Result<Event<K>>>,
    indexes: &[Arc<dyn Index<K>>],
    component: &Component,
) -> WatchError {
    let name = component.name().to_owned();
    let mut events = std::pin::pin!(events);
    let mut listed: Vec<K> = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(object)) => indexes.iter().for_each(|index| index.apply(&object)),
            Ok(Event::Delete(object)) => indexes.iter().for_each(|index| index.delete(&object)),
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(object)) => listed.push(object),
            Ok(Event::InitDone) => {
                let objects = std::mem::take(&mut listed);
                indexes.iter().for_each(|index| index.relist(&objects));
                tracing::info!(watch = %name, objects = objects.len(), "listed");
                drop(objects);
                super::memory::release_freed();
                component.ready();
            }
            Err(error) if is_forbidden(&error) => {
                let error = WatchError::Forbidden {
                    watch: name,
                    source: error,
                };
                component.failed(&error);
                return error;
            }
            Err(error) => tracing::warn!(watch = %name, %error, "watch failed; retrying"),
        }
    }
    let error = WatchError::Ended(name);
    component.failed(&error);
    error
}

/// Turns each object into what the indexes keep as it arrives (objects that yield
/// nothing are dropped), so that a relist never holds whole objects at once.
pub fn trimmed<K, T>(
    events: impl Stream<Item = watcher::Result<Event<K>>>,
    trim: impl Fn(K) -> Option<T>,
) -> impl Stream<Item = watcher::Result<Event<T>>> {
    events.filter_map(move |event| {
        let event = match event {
            Ok(Event::Apply(object)) => trim(object).map(|t| Ok(Event::Apply(t))),
            Ok(Event::Delete(object)) => trim(object).map(|t| Ok(Event::Delete(t))),
            Ok(Event::InitApply(object)) => trim(object).map(|t| Ok(Event::InitApply(t))),
            Ok(Event::Init) => Some(Ok(Event::Init)),
            Ok(Event::InitDone) => Some(Ok(Event::InitDone)),
            Err(error) => Some(Err(error)),
        };
        future::ready(event)
    })
}

/// The apiserver refused graceful this watch: retrying cannot help until its RBAC
/// changes, and a restart picks up the change as well.
fn is_forbidden(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 403,
        watcher::Error::WatchError(status) => status.code == 403,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::runtime::health::{Health, State};

    /// Remembers what it was told, as "apply a", "delete b", "relist a,b".
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Index<String> for Log {
        fn apply(&self, object: &String) {
            self.0.lock().unwrap().push(format!("apply {object}"));
        }
        fn delete(&self, object: &String) {
            self.0.lock().unwrap().push(format!("delete {object}"));
        }
        fn relist(&self, objects: &[String]) {
            self.0
                .lock()
                .unwrap()
                .push(format!("relist {}", objects.join(",")));
        }
    }

    fn forbidden() -> watcher::Error {
        let status =
            kube::core::Status::failure("cronjobs is forbidden", "Forbidden").with_code(403);
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    #[tokio::test]
    async fn every_index_gets_every_event_and_the_end_of_the_stream_is_a_failure() {
        let health = Arc::new(Health::default());
        let component = health.register("things");
        let (one, two) = (Arc::new(Log::default()), Arc::new(Log::default()));
        let indexes: Vec<Arc<dyn Index<String>>> = vec![one.clone(), two.clone()];
        let events = futures::stream::iter([
            Ok(Event::Init),
            Ok(Event::InitApply("a".to_owned())),
            Ok(Event::InitApply("b".to_owned())),
            Ok(Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Apply("c".to_owned())),
            Ok(Event::Delete("a".to_owned())),
        ]);
        let error = drive(events, &indexes, &component).await;
        assert!(matches!(error, WatchError::Ended(ref name) if name == "things"));
        for log in [one, two] {
            assert_eq!(
                *log.0.lock().unwrap(),
                ["relist a,b", "apply c", "delete a"]
            );
        }
        assert_eq!(
            health.state("things"),
            Some(State::Failed("things ended".to_owned()))
        );
    }

    #[tokio::test]
    async fn trimming_keeps_the_order_and_drops_what_yields_nothing() {
        let events = futures::stream::iter([
            Ok(Event::Init),
            Ok(Event::InitApply(1)),
            Ok(Event::InitApply(-1)),
            Ok(Event::InitDone),
            Ok(Event::Delete(2)),
        ]);
        let trimmed: Vec<String> = trimmed(events, |n: i32| (n > 0).then(|| n.to_string()))
            .map(|event| match event {
                Ok(Event::InitApply(t) | Event::Delete(t) | Event::Apply(t)) => t,
                Ok(Event::Init) => "init".to_owned(),
                Ok(Event::InitDone) => "done".to_owned(),
                Err(_) => "error".to_owned(),
            })
            .collect()
            .await;
        assert_eq!(trimmed, ["init", "1", "done", "2"]);
    }

    #[tokio::test]
    async fn a_forbidden_watch_stops_at_once() {
        let health = Arc::new(Health::default());
        let component = health.register("cronjobs");
        let log = Arc::new(Log::default());
        let indexes: Vec<Arc<dyn Index<String>>> = vec![log.clone()];
        let events = futures::stream::iter([Err(forbidden()), Ok(Event::Apply("late".to_owned()))]);
        let error = drive(events, &indexes, &component).await;
        assert!(matches!(error, WatchError::Forbidden { .. }), "{error}");
        assert!(log.0.lock().unwrap().is_empty());
        assert!(matches!(health.state("cronjobs"), Some(State::Failed(_))));
    }
}
