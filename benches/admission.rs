//! One admission through the webhook's router, from the request body to the
//! AdmissionReview answer: a 3-container Deployment pod at CREATE, governed through its
//! Deployment's annotation (owner cache hit), patched in Enforce mode.

#[path = "../tests/fixtures/admission.rs"]
mod fixtures;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use graceful::webhook::review;

fn admission(c: &mut Criterion) {
    let admission = fixtures::Admission::new();
    c.bench_function("parse the review envelope and PodView", |b| {
        b.iter(|| review::parse(black_box(&admission.body)).expect("a review"));
    });
    c.bench_function("admission: body to AdmissionReview answer (router)", |b| {
        b.iter(|| black_box(admission.answer()));
    });
}

criterion_group!(benches, admission);
criterion_main!(benches);
