//! The benchmarks' admission (benches/admission.rs) by part, for counting instructions
//! with callgrind, which only counts inside `measure`:
//!
//!   valgrind --tool=callgrind --toggle-collect='admission_instructions::measure' \
//!       target/release/examples/admission_instructions PART COUNT
//!
//! The total divided by COUNT is one review's. PART is one of
//! - `parse`: the body to the request and its `PodView`;
//! - `decide`: resolution and mutation (`admit::decide`), owners given;
//! - `answer`: the decision's answer to the AdmissionReview's bytes;
//! - `router`: all of it through the webhook's router, the owner cache included;
//! - `skip` and `skip-serde_json`: the body only checked and skipped, by graceful's
//!   reader and by serde_json: the floor of parsing.

#[path = "../tests/fixtures/admission.rs"]
mod fixtures;

use std::hint::black_box;

use serde::de::IgnoredAny;

use anyhow::{Context, bail};
use graceful::api::Mode;
use graceful::json::read::Reader;
use graceful::mutate::Capabilities;
use graceful::resolve::{Owner, Source};
use graceful::webhook::admit::decide;
use graceful::webhook::policies::NamespacePolicies;
use graceful::webhook::review;

#[inline(never)]
fn measure(count: usize, one: &mut dyn FnMut()) {
    for _ in 0..count {
        one();
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [part, count] = args.as_slice() else {
        bail!(
            "usage: admission_instructions parse|decide|answer|router|skip|skip-serde_json COUNT"
        );
    };
    let count: usize = count.parse().context("COUNT is a number")?;
    let admission = fixtures::Admission::new();
    let request = review::parse(&admission.body)?;
    let pod = request.pod.context("a pod")?;
    let policies = NamespacePolicies::new(&[fixtures::policy("web", Mode::Enforce, None)]);
    let owner = |kind: &str, name: &str, policy: Option<&str>| Owner {
        source: Source {
            kind: kind.into(),
            name: name.into(),
        },
        policy: policy.map(Into::into),
    };
    let owners = [
        owner("ReplicaSet", "checkout-7d9f8b6c5", None),
        owner("Deployment", "checkout", Some("web")),
    ];
    let decision = || {
        let uid = request.uid.clone();
        decide(uid, &pod, &policies, &owners, &[], Capabilities::default())
    };
    let answer = decision().answer;
    match part.as_str() {
        "parse" => measure(count, &mut || {
            black_box(review::parse(black_box(&admission.body)).ok());
        }),
        "decide" => measure(count, &mut || {
            black_box(decision());
        }),
        "answer" => measure(count, &mut || {
            black_box(black_box(&answer).to_json().ok());
        }),
        "router" => measure(count, &mut || {
            black_box(admission.answer());
        }),
        // The floors of reading: the whole body checked and skipped, nothing built.
        "skip" => {
            let body = std::str::from_utf8(&admission.body)?;
            measure(count, &mut || {
                black_box(Reader::read_all::<IgnoredAny>(black_box(body)).ok());
            })
        }
        "skip-serde_json" => {
            let body = std::str::from_utf8(&admission.body)?;
            measure(count, &mut || {
                black_box(serde_json::from_str::<IgnoredAny>(black_box(body)).ok());
            })
        }
        other => bail!("no part {other}"),
    }
    Ok(())
}
