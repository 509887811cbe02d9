//! The webhook's router, request by request, without a cluster: every bad input, each
//! policy mode, and every way graceful fails open.

#[path = "fixtures/admission.rs"]
mod fixtures;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use futures::future::BoxFuture;
use graceful::api::Mode;
use graceful::kinds::Kind;
use graceful::metrics::Metrics;
use graceful::mutate::{Backend, Capabilities};
use graceful::resolve::Owner;
use graceful::webhook::policies::NamespacePolicies;
use graceful::webhook::watch::Caches;
use graceful::webhook::{Lookup, NotSynced, OwnersError, Webhook, router};
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Policies `web` (Enforce, by name only) and `observe` (Audit, by name only) in
/// `shop`; Deployment `checkout` names `web` through its ReplicaSet.
fn caches(metrics: Arc<Metrics>) -> Arc<Caches> {
    let caches = Caches::new(None, metrics);
    caches.policies_listed(&[
        fixtures::policy("web", Mode::Enforce, None),
        fixtures::policy("observe", Mode::Audit, None),
    ]);
    for kind in Kind::ALL {
        caches.owners_listed(kind, Vec::new());
    }
    caches.owner_applied(
        Kind::ReplicaSet,
        &fixtures::meta("checkout-7d9f8b6c5", None, Some("checkout")),
    );
    caches.owner_applied(
        Kind::Deployment,
        &fixtures::meta("checkout", Some("web"), None),
    );
    Arc::new(caches)
}

fn app_with(lookup: Arc<dyn Lookup>, metrics: Arc<Metrics>) -> Router {
    router(Webhook {
        lookup,
        caps: Capabilities::default(),
        metrics,
    })
}

fn app() -> Router {
    let metrics = Arc::new(Metrics::new());
    app_with(caches(metrics.clone()), metrics)
}

async fn post(app: Router, body: impl Into<Body>) -> (StatusCode, Vec<u8>) {
    let request = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// The response of a 200 answer, checked to allow and to echo the uid.
async fn answer(app: Router, body: Vec<u8>) -> Value {
    let (status, body) = post(app, body).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let review: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = review["response"].clone();
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    response
}

fn patch_of(response: &Value) -> Option<Vec<Value>> {
    let encoded = response["patch"].as_str()?;
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn warnings(response: &Value) -> Vec<String> {
    serde_json::from_value(response["warnings"].clone()).unwrap_or_default()
}

fn pod_with_policy(name: &str) -> Value {
    let mut pod = fixtures::three_container_pod();
    pod["metadata"]["annotations"]["graceful.dev/policy"] = json!(name);
    pod
}

async fn assert_bad_request(body: impl Into<Body>, expected: &str) {
    let (status, body) = post(app(), body).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains(expected), "{text:?} should say {expected:?}");
}

#[tokio::test]
async fn not_json_is_a_400() {
    assert_bad_request("this is not json", "not an AdmissionReview in JSON").await;
}

#[tokio::test]
async fn another_document_is_a_400() {
    let body = serde_json::to_vec(&fixtures::three_container_pod()).unwrap();
    assert_bad_request(
        body,
        "expected apiVersion admission.k8s.io/v1 kind AdmissionReview",
    )
    .await;
    let v1beta1 =
        json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}});
    assert_bad_request(v1beta1.to_string(), "got admission.k8s.io/v1beta1").await;
    let empty = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    assert_bad_request(empty.to_string(), "has no request").await;
    let no_uid =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}});
    assert_bad_request(no_uid.to_string(), "has no uid").await;
}

#[tokio::test]
async fn another_kind_is_a_400() {
    let mut review: Value =
        serde_json::from_slice(&fixtures::review("CREATE", false, &json!({}))).unwrap();
    review["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    assert_bad_request(review.to_string(), "for a apps/v1 Deployment").await;
}

#[tokio::test]
async fn an_object_that_is_not_a_pod_is_a_400() {
    let body = fixtures::review(
        "CREATE",
        false,
        &json!({"metadata": {"name": "x"}, "spec": {}}),
    );
    assert_bad_request(body, "the object is not a Pod").await;
    let body = fixtures::review("CREATE", false, &json!("a string"));
    assert_bad_request(body, "the object is not a Pod").await;
}

#[tokio::test]
async fn a_create_without_object_is_a_400() {
    let body = fixtures::review("CREATE", false, &Value::Null);
    assert_bad_request(body, "carries no object").await;
}

#[tokio::test]
async fn a_huge_body_is_refused_with_413() {
    let mut pod = fixtures::three_container_pod();
    pod["metadata"]["annotations"]["big"] = json!("x".repeat(4 * 1024 * 1024));
    let (status, _) = post(app(), fixtures::review("CREATE", false, &pod)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_update_is_allowed_untouched() {
    let response = answer(
        app(),
        fixtures::review("UPDATE", false, &pod_with_policy("web")),
    )
    .await;
    assert_eq!(patch_of(&response), None);
    assert_eq!(response.get("patchType"), None);
}

#[tokio::test]
async fn enforce_patches_through_the_deployment_annotation() {
    let pod = fixtures::three_container_pod();
    let response = answer(app(), fixtures::review("CREATE", false, &pod)).await;
    let patch = patch_of(&response).expect("a patch");
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(patch)).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    assert_eq!(patched["metadata"]["labels"]["graceful.dev/policy"], "web");
    assert!(patched["metadata"]["annotations"]["graceful.dev/applied"].is_string());
    assert_eq!(patched["spec"]["terminationGracePeriodSeconds"], 35);
    for container in patched["spec"]["containers"].as_array().unwrap() {
        assert_eq!(
            container["lifecycle"]["preStop"],
            json!({"sleep": {"seconds": 5}})
        );
        assert_eq!(container["readinessProbe"]["periodSeconds"], 2);
        assert_eq!(container["readinessProbe"]["failureThreshold"], 1);
    }
}

/// What the installed webhook once skipped with matchConditions, graceful skips itself.
#[tokio::test]
async fn opted_out_and_mirror_pods_are_left_alone_without_a_warning() {
    let mut mirror = pod_with_policy("web");
    mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!("abc");
    for pod in [pod_with_policy("false"), mirror] {
        let response = answer(app(), fixtures::review("CREATE", false, &pod)).await;
        assert_eq!(patch_of(&response), None, "{pod}");
        assert!(warnings(&response).is_empty(), "{response}");
    }
}

#[tokio::test]
async fn a_dry_run_is_answered_like_any_other() {
    let pod = pod_with_policy("web");
    let real = answer(app(), fixtures::review("CREATE", false, &pod)).await;
    let dry = answer(app(), fixtures::review("CREATE", true, &pod)).await;
    assert!(patch_of(&dry).is_some());
    assert_eq!(real, dry);
}

#[tokio::test]
async fn audit_warns_and_does_not_patch() {
    let response = answer(
        app(),
        fixtures::review("CREATE", false, &pod_with_policy("observe")),
    )
    .await;
    assert_eq!(patch_of(&response), None);
    let warnings = warnings(&response);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("graceful: policy observe is in Audit mode")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn an_unknown_policy_is_named_in_a_warning() {
    let response = answer(
        app(),
        fixtures::review("CREATE", false, &pod_with_policy("nope")),
    )
    .await;
    assert_eq!(patch_of(&response), None);
    assert!(warnings(&response)[0].contains("names GracefulPolicy \"nope\""));
}

#[tokio::test]
async fn selector_conflicts_are_reported() {
    let metrics = Arc::new(Metrics::new());
    let caches = Caches::new(None, metrics.clone());
    let all = || Some(LabelSelector::default());
    caches.policies_listed(&[
        fixtures::policy("first", Mode::Enforce, all()),
        fixtures::policy("second", Mode::Enforce, all()),
    ]);
    let mut pod = fixtures::three_container_pod();
    pod["metadata"]["ownerReferences"] = json!([]);
    let response = answer(
        app_with(Arc::new(caches), metrics),
        fixtures::review("CREATE", false, &pod),
    )
    .await;
    assert!(patch_of(&response).is_some());
    assert!(warnings(&response)[0].contains("GracefulPolicies second also select this pod"));
}

#[tokio::test]
async fn unsynced_caches_admit_unchanged_with_a_warning() {
    let metrics = Arc::new(Metrics::new());
    let app = app_with(
        Arc::new(Caches::new(None, metrics.clone())),
        metrics.clone(),
    );
    let response = answer(
        app,
        fixtures::review("CREATE", false, &pod_with_policy("web")),
    )
    .await;
    assert_eq!(patch_of(&response), None);
    assert_eq!(
        warnings(&response),
        ["graceful: admitted unchanged: the GracefulPolicy cache has not synced yet"]
    );
    let text = metrics.encode().unwrap();
    assert!(
        text.contains("graceful_admission_fail_open_total{reason=\"not_synced\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn an_owner_missing_from_the_cache_admits_unchanged() {
    let mut pod = fixtures::three_container_pod();
    pod["metadata"]["ownerReferences"][0]["name"] = json!("checkout-new");
    let response = answer(app(), fixtures::review("CREATE", false, &pod)).await;
    assert_eq!(patch_of(&response), None);
    assert!(warnings(&response)[0].contains("ReplicaSet/checkout-new is not in the owner cache"));
}

#[tokio::test]
async fn a_policy_that_cannot_be_used_admits_unchanged() {
    let metrics = Arc::new(Metrics::new());
    let caches = Caches::new(None, metrics.clone());
    let broken: LabelSelector = serde_json::from_value(json!({
        "matchExpressions": [{"key": "app", "operator": "In"}]
    }))
    .unwrap();
    caches.policies_listed(&[fixtures::policy("web", Mode::Enforce, Some(broken))]);
    let response = answer(
        app_with(Arc::new(caches), metrics.clone()),
        fixtures::review("CREATE", false, &pod_with_policy("web")),
    )
    .await;
    assert_eq!(patch_of(&response), None);
    assert!(warnings(&response)[0].contains("spec.selector cannot be used"));
    assert!(metrics.encode().unwrap().contains("reason=\"policy\"} 1"));
}

/// A lookup with a bug in it.
struct Panicking;

impl Lookup for Panicking {
    fn policies(&self, _: &str) -> Result<Option<Arc<NamespacePolicies>>, NotSynced> {
        panic!("an index out of bounds, say")
    }

    fn owners<'a>(
        &'a self,
        _: &'a str,
        _: (Kind, &'a str),
    ) -> BoxFuture<'a, Result<Vec<Owner>, OwnersError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn services(&self, _: &str) -> Arc<[Backend]> {
        Arc::from([])
    }
}

#[tokio::test]
async fn a_panic_admits_unchanged_with_a_warning_and_a_metric() {
    let metrics = Arc::new(Metrics::new());
    let app = app_with(Arc::new(Panicking), metrics.clone());
    let response = answer(
        app,
        fixtures::review("CREATE", false, &pod_with_policy("web")),
    )
    .await;
    assert_eq!(patch_of(&response), None);
    let warnings = warnings(&response);
    assert!(
        warnings[0].contains("an index out of bounds, say"),
        "{warnings:?}"
    );
    let text = metrics.encode().unwrap();
    assert!(
        text.contains("graceful_admission_fail_open_total{reason=\"panic\"} 1"),
        "{text}"
    );
    assert!(text.contains("graceful_admissions_total{outcome=\"fail_open\"} 1"));
}

#[tokio::test]
async fn a_namespace_without_policies_is_answered_without_looking_at_owners() {
    let metrics = Arc::new(Metrics::new());
    let caches = Caches::new(None, metrics.clone());
    caches.policies_listed(&[]);
    let pod = fixtures::three_container_pod();
    let response = answer(
        app_with(Arc::new(caches), metrics),
        fixtures::review("CREATE", false, &pod),
    )
    .await;
    assert_eq!(
        response,
        json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true, "status": {}})
    );
}
