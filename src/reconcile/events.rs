//! Events for violations: an Event on the pod and one on the policy, each naming the
//! other. Observations hand them to one bounded queue and never wait on the apiserver;
//! when the queue is full the Event is dropped and counted
//! (`graceful_events_dropped_total`), as the status still says what happened.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::mpsc;

use super::Announcement;
use crate::api::GracefulPolicy;
use crate::metrics::Metrics;

/// Violations waiting for their Events; beyond this they are dropped.
pub const QUEUE_CAPACITY: usize = 256;
/// How long publishing one Event may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The sending end: never blocks.
pub struct EventQueue {
    sender: mpsc::Sender<Announcement>,
    metrics: Arc<Metrics>,
}

impl EventQueue {
    /// The queue and its receiving end, for [`publish_events`].
    pub fn new(metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Announcement>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        (Self { sender, metrics }, receiver)
    }

    pub fn send(&self, announcement: Announcement) {
        if self.sender.try_send(announcement).is_err() {
            self.metrics.event_dropped();
        }
    }
}

/// Publishes the queued Events, one at a time, until the queue closes.
pub async fn publish_events(
    mut queue: mpsc::Receiver<Announcement>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
) {
    while let Some(announcement) = queue.recv().await {
        let (pod, policy) = references(&announcement);
        let violation = &announcement.violation;
        let subject = if violation.container.is_empty() {
            violation.pod.clone()
        } else {
            format!("{}/{}", violation.pod, violation.container)
        };
        let note = format!(
            "{subject} {} (GracefulPolicy {})",
            violation.detail, announcement.policy.name
        );
        // The app's violations are warnings; what the cluster did is information.
        let type_ = if violation.kind.is_the_apps() {
            EventType::Warning
        } else {
            EventType::Normal
        };
        for (regarding, related) in [(&pod, &policy), (&policy, &pod)] {
            let event = Event {
                type_,
                reason: violation.kind.as_str().to_owned(),
                note: Some(note.clone()),
                action: "ObserveShutdown".to_owned(),
                secondary: Some(related.clone()),
            };
            let published =
                tokio::time::timeout(PUBLISH_TIMEOUT, recorder.publish(&event, regarding)).await;
            let result = match published {
                Ok(Ok(())) => "ok",
                Ok(Err(error)) => {
                    tracing::warn!(%error, "publishing an Event");
                    "error"
                }
                Err(_) => {
                    tracing::warn!(timeout = ?PUBLISH_TIMEOUT, "publishing an Event timed out");
                    "timeout"
                }
            };
            metrics.event_published(result);
        }
    }
}

fn references(announcement: &Announcement) -> (ObjectReference, ObjectReference) {
    let namespace = Some(announcement.policy.namespace.clone());
    let pod = ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: Some(announcement.violation.pod.clone()),
        namespace: namespace.clone(),
        uid: Some(announcement.pod_uid.clone()),
        ..ObjectReference::default()
    };
    let policy = ObjectReference {
        api_version: Some(GracefulPolicy::api_version(&()).into_owned()),
        kind: Some(GracefulPolicy::kind(&()).into_owned()),
        name: Some(announcement.policy.name.clone()),
        namespace,
        uid: announcement.policy_uid.clone(),
        ..ObjectReference::default()
    };
    (pod, policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RecentViolation, ViolationKind};
    use crate::reconcile::PolicyRef;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn announcement() -> Announcement {
        Announcement {
            policy: PolicyRef {
                namespace: "shop".into(),
                name: "web".into(),
            },
            policy_uid: None,
            pod_uid: "u1".into(),
            violation: RecentViolation {
                pod: "web-1".into(),
                container: "app".into(),
                kind: ViolationKind::OomKilled,
                at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                detail: String::new(),
            },
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let metrics = Arc::new(Metrics::new());
        let (queue, mut receiver) = EventQueue::new(metrics.clone());
        for _ in 0..QUEUE_CAPACITY + 2 {
            queue.send(announcement());
        }
        let text = metrics.encode().unwrap();
        assert!(text.contains("graceful_events_dropped_total 2"), "{text}");
        assert!(
            receiver.try_recv().is_ok(),
            "the first ones wait to be published"
        );
    }
}
