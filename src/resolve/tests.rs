use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, Time,
};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{GracefulPolicy, GracefulPolicySpec};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn candidate(name: &str, created_second: i64, selector: Option<LabelSelector>) -> Candidate {
    let mut policy = GracefulPolicy::new(
        name,
        GracefulPolicySpec {
            selector,
            ..GracefulPolicySpec::default()
        },
    );
    policy.metadata.creation_timestamp =
        Some(Time(Timestamp::from_second(created_second).unwrap()));
    Candidate::from_policy(&policy).unwrap()
}

fn match_labels(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(labels(pairs)),
        match_expressions: None,
    })
}

fn source(kind: &str, name: &str) -> Source {
    Source {
        kind: kind.into(),
        name: name.into(),
    }
}

fn owner(kind: &str, name: &str, policy: Option<&str>) -> Owner {
    Owner {
        source: source(kind, name),
        policy: policy.map(str::to_owned),
    }
}

fn governed_by(resolution: &Resolution) -> Option<String> {
    match resolution {
        Resolution::Governed { policy, .. } => Some(policy.name.clone()),
        Resolution::NotGoverned(_) => None,
    }
}

struct Pod {
    source: Source,
    labels: BTreeMap<String, String>,
    annotation: Option<&'static str>,
    owners: Vec<Owner>,
}

impl Pod {
    fn new(labels_: &[(&str, &str)]) -> Self {
        Self {
            source: source("Pod", "web-abc"),
            labels: labels(labels_),
            annotation: None,
            owners: Vec::new(),
        }
    }

    fn resolve<'a>(&self, policies: &'a [Candidate]) -> Resolution<'a> {
        resolve(
            Subject {
                source: &self.source,
                labels: Some(&self.labels),
                annotation: self.annotation,
                owners: &self.owners,
            },
            policies,
        )
    }
}

#[test]
fn a_selector_governs_matching_pods_only() {
    let policies = [candidate("web", 1, match_labels(&[("app", "web")]))];
    assert_eq!(
        governed_by(&Pod::new(&[("app", "web")]).resolve(&policies)),
        Some("web".into())
    );
    assert_eq!(
        Pod::new(&[("app", "db")]).resolve(&policies),
        Resolution::NotGoverned(Ungoverned::NoPolicy)
    );
}

#[test]
fn match_expressions_are_honoured() {
    let selector = LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: Some(vec!["frontend".into(), "edge".into()]),
        }]),
    };
    let policies = [candidate("front", 1, Some(selector))];
    assert!(governed_by(&Pod::new(&[("tier", "edge")]).resolve(&policies)).is_some());
    assert!(governed_by(&Pod::new(&[("tier", "backend")]).resolve(&policies)).is_none());
}

#[test]
fn an_empty_selector_governs_every_pod_and_an_absent_one_none() {
    let everything = [candidate("all", 1, Some(LabelSelector::default()))];
    assert_eq!(
        governed_by(&Pod::new(&[]).resolve(&everything)),
        Some("all".into())
    );
    let by_name_only = [candidate("named", 1, None)];
    assert!(governed_by(&Pod::new(&[("app", "web")]).resolve(&by_name_only)).is_none());
}

#[test]
fn an_annotation_beats_a_selector() {
    let policies = [
        candidate("web", 1, match_labels(&[("app", "web")])),
        candidate("named", 2, None),
    ];
    let mut pod = Pod::new(&[("app", "web")]);
    pod.owners = vec![
        owner("ReplicaSet", "web-abc", None),
        owner("Deployment", "web", Some("named")),
    ];
    let resolution = pod.resolve(&policies);
    assert_eq!(governed_by(&resolution), Some("named".into()));
    assert!(matches!(
        resolution,
        Resolution::Governed { reason: Reason::Annotation(ref on), .. } if *on == source("Deployment", "web")
    ));
}

#[test]
fn the_nearest_annotation_wins() {
    let policies = [candidate("a", 1, None), candidate("b", 1, None)];
    let mut pod = Pod::new(&[]);
    pod.annotation = Some("a");
    pod.owners = vec![owner("Deployment", "web", Some("b"))];
    assert_eq!(governed_by(&pod.resolve(&policies)), Some("a".into()));

    pod.annotation = None;
    pod.owners = vec![
        owner("ReplicaSet", "web-1", Some("a")),
        owner("Deployment", "web", Some("b")),
    ];
    assert_eq!(governed_by(&pod.resolve(&policies)), Some("a".into()));
}

#[test]
fn opting_out_beats_selectors_and_farther_annotations() {
    let policies = [candidate("web", 1, Some(LabelSelector::default()))];
    let mut pod = Pod::new(&[]);
    pod.annotation = Some("false");
    pod.owners = vec![owner("Deployment", "web", Some("web"))];
    assert_eq!(
        pod.resolve(&policies),
        Resolution::NotGoverned(Ungoverned::OptedOut(source("Pod", "web-abc")))
    );
}

#[test]
fn a_nearer_name_overrides_a_farther_opt_out() {
    let policies = [candidate("web", 1, None)];
    let mut pod = Pod::new(&[]);
    pod.annotation = Some("web");
    pod.owners = vec![owner("Deployment", "web", Some("false"))];
    assert_eq!(governed_by(&pod.resolve(&policies)), Some("web".into()));
}

#[test]
fn an_unknown_name_governs_nothing_and_says_so() {
    let policies = [candidate("web", 1, Some(LabelSelector::default()))];
    let mut pod = Pod::new(&[]);
    pod.owners = vec![owner("Deployment", "web", Some("typo"))];
    let resolution = pod.resolve(&policies);
    let Resolution::NotGoverned(why) = &resolution else {
        panic!("{resolution:?}")
    };
    assert_eq!(
        why.to_string(),
        "Deployment/web names GracefulPolicy \"typo\" in graceful.dev/policy, but its namespace has no such policy"
    );
}

#[test]
fn of_several_matching_selectors_the_oldest_wins_and_the_rest_are_reported() {
    let all = || Some(LabelSelector::default());
    let policies = [
        candidate("zeta", 5, all()),
        candidate("beta", 1, all()),
        candidate("alpha", 1, all()),
    ];
    let resolution = Pod::new(&[]).resolve(&policies);
    assert_eq!(governed_by(&resolution), Some("alpha".into()));
    assert_eq!(
        resolution,
        Resolution::Governed {
            policy: &policies[2],
            reason: Reason::Selector {
                others: vec!["beta".into(), "zeta".into()]
            },
        }
    );
    let warning = resolution.conflict().unwrap();
    assert!(warning.contains("beta, zeta also select this pod; alpha governs it"));

    let mut reversed = policies.clone();
    reversed.reverse();
    assert_eq!(
        governed_by(&Pod::new(&[]).resolve(&reversed)),
        Some("alpha".into()),
        "the order policies arrive in does not matter"
    );
}

#[test]
fn a_single_match_has_no_conflict() {
    let policies = [candidate("web", 1, Some(LabelSelector::default()))];
    assert_eq!(Pod::new(&[]).resolve(&policies).conflict(), None);
}

#[test]
fn a_selector_that_cannot_be_parsed_is_an_error() {
    let mut policy = GracefulPolicy::new("bad", GracefulPolicySpec::default());
    policy.spec.selector = Some(LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "Near".into(),
            values: None,
        }]),
    });
    assert!(Candidate::from_policy(&policy).is_err());
}
