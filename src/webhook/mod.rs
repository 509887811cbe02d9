//! The mutating admission webhook: `POST /mutate` takes an AdmissionReview v1 for a Pod
//! and answers with a JSON Patch from the policy that governs it.
//!
//! It sits on the path of every pod creation, so it never stands in the way: whatever
//! goes wrong inside graceful (a cache not synced yet, an owner that cannot be read, a
//! policy that cannot be used, a panic) admits the pod unchanged, with a warning, a log
//! line and a metric. Only a body that is not an admission request for a Pod gets a
//! 4xx, which the apiserver treats like any webhook failure (`failurePolicy: Ignore`).
//!
//! The parts: [`review`] reads and writes the wire format, [`policies`] and [`owners`]
//! are the pure indexes, [`admit`] the pure decision, and [`watch`] the I/O that keeps
//! the indexes current.

pub mod admit;
pub mod owners;
pub mod policies;
pub mod review;
pub mod services;
pub mod watch;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::api::POLICY_KEY;
use crate::kinds::Kind;
use crate::metrics::Metrics;
use crate::mutate::{Backend, Capabilities};
use crate::resolve::{Owner, owners_matter};
use admit::{Decision, Failure, Outcome};
use policies::NamespacePolicies;
use review::PodRequest;

/// The largest body accepted: the apiserver's own limit for a request is 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Why the policies of a namespace are not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the GracefulPolicy cache has not synced yet")]
pub struct NotSynced;

/// Why the owners of a pod could not be read; the pod is admitted unchanged. Cloned
/// because one read answers every admission that waits on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OwnersError {
    #[error("{kind}/{name} is not in the owner cache")]
    NotCached { kind: &'static str, name: String },
    #[error("reading {kind}/{name}: {source}")]
    Read {
        kind: &'static str,
        name: String,
        #[source]
        source: Arc<kube::Error>,
    },
    #[error("reading {kind}/{name} took longer than {timeout:?}")]
    Timeout {
        kind: &'static str,
        name: String,
        timeout: std::time::Duration,
    },
}

/// Where the webhook learns about policies and owners; [`watch::Caches`] in service.
pub trait Lookup: Send + Sync + 'static {
    /// The policies of `namespace`: `Ok(None)` when it has none.
    fn policies(&self, namespace: &str) -> Result<Option<Arc<NamespacePolicies>>, NotSynced>;

    /// The owners of a pod whose controller is `controller`, nearest first; an error
    /// says what could not be read.
    fn owners<'a>(
        &'a self,
        namespace: &'a str,
        controller: (Kind, &'a str),
    ) -> BoxFuture<'a, Result<Vec<Owner>, OwnersError>>;

    /// The Services of `namespace`, for policies with `targets: Serving`.
    fn services(&self, namespace: &str) -> Arc<[Backend]>;
}

/// What the handler needs.
pub struct Webhook {
    pub lookup: Arc<dyn Lookup>,
    pub caps: Capabilities,
    pub metrics: Arc<Metrics>,
}

/// The webhook's routes: `POST /mutate`.
pub fn router(webhook: Webhook) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(webhook))
}

async fn mutate(State(webhook): State<Arc<Webhook>>, body: Bytes) -> Response {
    let started = Instant::now();
    let request = match review::parse(&body) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "bad admission request");
            webhook.metrics.admission("bad_request", started.elapsed());
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    let uid = request.uid.clone();
    let namespace = request.namespace.clone();
    let decision = match AssertUnwindSafe(webhook.decide(request))
        .catch_unwind()
        .await
    {
        Ok(decision) => decision,
        Err(panic) => {
            let message = crate::runtime::tasks::panic_message(panic.as_ref());
            let why = format!("graceful failed unexpectedly ({message}); this is a bug");
            Decision::fail_open(uid, Failure::Panic, &why)
        }
    };
    if let Outcome::FailOpen(failure) = decision.outcome {
        webhook.metrics.fail_open(failure.label());
        tracing::warn!(
            uid = %decision.answer.uid,
            %namespace,
            reason = failure.label(),
            warning = decision.answer.warnings.join("; "),
            "pod admitted unchanged"
        );
    }
    webhook
        .metrics
        .admission(decision.outcome.label(), started.elapsed());
    match decision.answer.to_json() {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "could not write the AdmissionReview");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

impl Webhook {
    async fn decide(&self, request: PodRequest) -> Decision {
        let PodRequest {
            uid,
            namespace,
            pod,
            // A dry run is decided like any other: deciding has no side effects.
            dry_run: _,
        } = request;
        let Some(pod) = pod else {
            return Decision::skipped(uid);
        };
        let policies = match self.lookup.policies(&namespace) {
            Ok(Some(policies)) => policies,
            // A namespace without policies is answered at once.
            Ok(None) => return admit::not_governed(uid, Vec::new()),
            Err(error) => return Decision::fail_open(uid, Failure::NotSynced, &error.to_string()),
        };
        let controller = pod
            .controller()
            .and_then(|r| Some((Kind::of(&r.api_version, &r.kind)?, r.name.as_str())));
        let owners = match controller {
            Some(controller) if owners_matter(pod.annotation(POLICY_KEY)) => {
                match self.lookup.owners(&namespace, controller).await {
                    Ok(owners) => owners,
                    Err(why) => {
                        return Decision::fail_open(uid, Failure::Owners, &why.to_string());
                    }
                }
            }
            _ => Vec::new(),
        };
        let services = if policies.needs_services() {
            self.lookup.services(&namespace)
        } else {
            Arc::from([])
        };
        admit::decide(uid, &pod, &policies, &owners, &services, self.caps)
    }
}
