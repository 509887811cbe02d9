//! The cost of deciding a pod's patch: reading the pod's view from JSON, and the
//! mutation itself, for a typical 3-container Deployment pod.

#[path = "../tests/fixtures/admission.rs"]
mod fixtures;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use graceful::api::Mode;
use graceful::mutate::{Capabilities, Governing, PodView, mutate};
use json_patch::jsonptr::Pointer;

fn mutation(c: &mut Criterion) {
    let bytes = serde_json::to_vec(&fixtures::three_container_pod()).expect("a pod");
    let policy = fixtures::policy("web", Mode::Enforce, None);
    let governing = Governing {
        name: "web",
        spec: &policy.spec,
        services: &[],
        tuning: &[],
    };
    let caps = Capabilities::default();
    let view: PodView = serde_json::from_slice(&bytes).expect("a pod view");

    c.bench_function("mutate 3-container pod", |b| {
        b.iter(|| mutate(black_box(&view), Pointer::root(), governing, caps))
    });
    c.bench_function("read view + mutate 3-container pod", |b| {
        b.iter(|| {
            let view: PodView = serde_json::from_slice(black_box(&bytes)).expect("a pod view");
            mutate(&view, Pointer::root(), governing, caps)
        })
    });
}

criterion_group!(benches, mutation);
criterion_main!(benches);
