//! One admission through the webhook's router, from the request body to the
//! AdmissionReview answer: a 3-container Deployment pod at CREATE, governed through its
//! Deployment's annotation (owner cache hit), patched in Enforce mode.

#[path = "../tests/fixtures/admission.rs"]
mod fixtures;

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use graceful::api::Mode;
use graceful::kinds::Kind;
use graceful::metrics::Metrics;
use graceful::mutate::Capabilities;
use graceful::webhook::watch::Caches;
use graceful::webhook::{Webhook, review, router};
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use tower::ServiceExt;

fn caches(metrics: Arc<Metrics>) -> Arc<Caches> {
    let caches = Caches::new(None, metrics);
    // The fixture's 25 s budget gives a 35 s grace period: one more change to write.
    let policy = fixtures::policy("web", Mode::Enforce, None);
    caches.policies_listed(&[policy]);
    let meta = |name: &str, annotation: Option<&str>, owner: Option<&str>| ObjectMeta {
        name: Some(name.into()),
        namespace: Some("shop".into()),
        annotations: annotation.map(|a| [("graceful.dev/policy".to_owned(), a.to_owned())].into()),
        owner_references: owner.map(|o| {
            vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: o.into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]
        }),
        ..ObjectMeta::default()
    };
    caches.owner_applied(
        Kind::ReplicaSet,
        &meta("checkout-7d9f8b6c5", None, Some("checkout")),
    );
    caches.owner_applied(Kind::Deployment, &meta("checkout", Some("web"), None));
    Arc::new(caches)
}

fn admission(c: &mut Criterion) {
    let body = fixtures::review("CREATE", false, &fixtures::three_container_pod());
    let metrics = Arc::new(Metrics::new());
    let app = router(Webhook {
        lookup: caches(metrics.clone()),
        caps: Capabilities::default(),
        metrics,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");

    c.bench_function("parse the review envelope and PodView", |b| {
        b.iter(|| review::parse(black_box(&body)).expect("a review"));
    });
    c.bench_function("admission: body to AdmissionReview answer (router)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = Request::post("/mutate")
                    .body(Body::from(body.clone()))
                    .expect("a request");
                let response = app.clone().oneshot(request).await.expect("a response");
                let bytes = response.into_body().collect().await.expect("a body");
                black_box(bytes.to_bytes())
            })
        });
    });
}

criterion_group!(benches, admission);
criterion_main!(benches);
