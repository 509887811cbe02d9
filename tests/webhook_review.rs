//! The webhook's fast path reads a review into a few fields and a `PodView`; this
//! checks that it decides exactly what the typed path (kube's `AdmissionReview<Pod>`,
//! the whole k8s-openapi Pod) would, and answers byte for byte like kube's types.

#[path = "fixtures/admission.rs"]
mod fixtures;

use base64::Engine;
use graceful::api::Mode;
use graceful::mutate::{Capabilities, PodView};
use graceful::resolve::{Owner, Source};
use graceful::webhook::admit::{Decision, decide};
use graceful::webhook::policies::NamespacePolicies;
use graceful::webhook::review;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::Value;

fn deployment(policy: Option<&str>) -> Vec<Owner> {
    let owner = |kind: &str, name: &str, policy: Option<&str>| Owner {
        source: Source {
            kind: kind.into(),
            name: name.into(),
        },
        policy: policy.map(Into::into),
    };
    vec![
        owner("ReplicaSet", "checkout-7d9f8b6c5", None),
        owner("Deployment", "checkout", policy),
    ]
}

/// The typed path: kube's review, the whole Pod, then the same decision.
fn typed(body: &[u8], policies: &NamespacePolicies, owners: &[Owner]) -> (Decision, Value) {
    let review: AdmissionReview<Pod> = serde_json::from_slice(body).unwrap();
    let request: AdmissionRequest<Pod> = review.try_into().unwrap();
    let pod: PodView =
        serde_json::from_value(serde_json::to_value(request.object.as_ref().unwrap()).unwrap())
            .unwrap();
    let decision = decide(
        request.uid.clone(),
        &pod,
        policies,
        owners,
        &[],
        Capabilities::default(),
    );
    let mut response = AdmissionResponse::from(&request);
    if !decision.answer.patch.is_empty() {
        let operations = decision.answer.patch.operations().unwrap();
        response = response.with_patch(operations).unwrap();
    }
    if !decision.answer.warnings.is_empty() {
        response.warnings = Some(decision.answer.warnings.clone());
    }
    let mut json = serde_json::to_value(response.into_review()).unwrap();
    // kube writes the patch bytes as a JSON array of numbers, which the apiserver's
    // decoder happens to accept; the API documents a base64 string, which graceful
    // writes. Everything else must be identical.
    if let Some(bytes) = json["response"].get("patch").cloned() {
        let bytes: Vec<u8> = serde_json::from_value(bytes).unwrap();
        json["response"]["patch"] = base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into();
    }
    (decision, json)
}

fn fast(body: &[u8], policies: &NamespacePolicies, owners: &[Owner]) -> (Decision, Value) {
    let request = review::parse(body).unwrap();
    let pod = request.pod.unwrap();
    let decision = decide(
        request.uid,
        &pod,
        policies,
        owners,
        &[],
        Capabilities::default(),
    );
    let json = serde_json::from_slice(&decision.answer.to_json().unwrap()).unwrap();
    (decision, json)
}

#[test]
fn the_fast_path_decides_and_answers_exactly_like_the_typed_path() {
    let policy_sets = [
        vec![
            fixtures::policy("web", Mode::Enforce, None),
            fixtures::policy("observe", Mode::Audit, None),
        ],
        vec![fixtures::policy(
            "web",
            Mode::Audit,
            Some(LabelSelector::default()),
        )],
        vec![
            fixtures::policy("web", Mode::Enforce, Some(LabelSelector::default())),
            fixtures::policy("all", Mode::Enforce, Some(LabelSelector::default())),
        ],
        vec![],
    ];
    let owner_sets = [
        vec![],
        deployment(None),
        deployment(Some("web")),
        deployment(Some("false")),
    ];
    let mut compared = 0;
    let mut patched = 0;
    for pod in fixtures::pods() {
        for dry_run in [false, true] {
            let body = fixtures::review("CREATE", dry_run, &pod);
            for policies in &policy_sets {
                let policies = NamespacePolicies::new(policies);
                for owners in &owner_sets {
                    let (typed_decision, typed_json) = typed(&body, &policies, owners);
                    let (fast_decision, fast_json) = fast(&body, &policies, owners);
                    assert_eq!(fast_decision, typed_decision, "pod {pod}");
                    assert_eq!(fast_json, typed_json, "pod {pod}");
                    compared += 1;
                    patched += usize::from(!fast_decision.answer.patch.is_empty());
                }
            }
        }
    }
    assert_eq!(compared, fixtures::pods().len() * 2 * 4 * 4);
    assert!(
        patched >= compared / 5,
        "only {patched} of {compared} were patched"
    );
}
