//! Events for violations: an Event on the pod and one on the policy, each naming the
//! other; and Events on a policy alone (Auto changed a value, the values fell below the
//! recommendations). Observations hand them to one bounded queue and never wait on the apiserver;
//! when the queue is full the Event is dropped and counted
//! (`graceful_events_dropped_total`), as the status still says what happened.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::mpsc;

use super::{Announcement, PolicyNotice};
use crate::api::GracefulPolicy;
use crate::metrics::Metrics;

/// Violations waiting for their Events; beyond this they are dropped.
pub const QUEUE_CAPACITY: usize = 256;
/// How long publishing one Event may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What an Event is published for.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Violation(Announcement),
    Policy(PolicyNotice),
}

impl From<Announcement> for Notice {
    fn from(announcement: Announcement) -> Self {
        Notice::Violation(announcement)
    }
}

impl From<PolicyNotice> for Notice {
    fn from(notice: PolicyNotice) -> Self {
        Notice::Policy(notice)
    }
}

/// The sending end: never blocks.
pub struct EventQueue {
    sender: mpsc::Sender<Notice>,
    metrics: Arc<Metrics>,
}

impl EventQueue {
    /// The queue and its receiving end, for [`publish_events`].
    pub fn new(metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Notice>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        (Self { sender, metrics }, receiver)
    }

    pub fn send(&self, notice: impl Into<Notice>) {
        if self.sender.try_send(notice.into()).is_err() {
            self.metrics.event_dropped();
        }
    }
}

/// Publishes the queued Events, one at a time, until the queue closes.
pub async fn publish_events(
    mut queue: mpsc::Receiver<Notice>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
) {
    while let Some(notice) = queue.recv().await {
        let announcement = match notice {
            Notice::Violation(announcement) => announcement,
            Notice::Policy(notice) => {
                let type_ = if notice.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                let event = Event {
                    type_,
                    reason: notice.reason.to_owned(),
                    note: Some(notice.note),
                    action: "Tune".to_owned(),
                    secondary: None,
                };
                let policy = policy_reference(&notice.policy, notice.policy_uid);
                publish(&recorder, &metrics, &event, &policy).await;
                continue;
            }
        };
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
            publish(&recorder, &metrics, &event, regarding).await;
        }
    }
}

async fn publish(
    recorder: &Recorder,
    metrics: &Metrics,
    event: &Event,
    regarding: &ObjectReference,
) {
    let published = tokio::time::timeout(PUBLISH_TIMEOUT, recorder.publish(event, regarding)).await;
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

fn references(announcement: &Announcement) -> (ObjectReference, ObjectReference) {
    let pod = ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: Some(announcement.violation.pod.clone()),
        namespace: Some(announcement.policy.namespace.clone()),
        uid: Some(announcement.pod_uid.clone()),
        ..ObjectReference::default()
    };
    let policy = policy_reference(&announcement.policy, announcement.policy_uid.clone());
    (pod, policy)
}

fn policy_reference(policy: &super::PolicyRef, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(GracefulPolicy::api_version(&()).into_owned()),
        kind: Some(GracefulPolicy::kind(&()).into_owned()),
        name: Some(policy.name.clone()),
        namespace: Some(policy.namespace.clone()),
        uid,
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RecentViolation, ViolationKind};
    use crate::reconcile::PolicyRef;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn announcement() -> Announcement {
        Announcement {
            policy: PolicyRef::new("shop", "web"),
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
