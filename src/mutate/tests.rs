use json_patch::PatchOperation;
use json_patch::jsonptr::{Pointer, PointerBuf};
use serde_json::{Value, json};

use super::*;
use crate::api::{
    Budget, Drain, ExistingHooks, GracefulPolicySpec, Mode, PreStopAction, Readiness,
};

fn pod(containers: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "migrate"}],
            "containers": containers,
            "terminationGracePeriodSeconds": 30
        }
    })
}

fn app() -> Value {
    json!({"name": "app", "image": "app", "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}})
}

fn spec() -> GracefulPolicySpec {
    GracefulPolicySpec::default()
}

/// Mutates `document` (the pod at `root`) and returns it patched, with the mutation.
fn apply_at(
    document: &Value,
    root: &str,
    spec: &GracefulPolicySpec,
    caps: Capabilities,
) -> (Value, Mutation) {
    let root = PointerBuf::parse(root).unwrap();
    let view: PodView = serde_json::from_value(root.resolve(document).unwrap().clone()).unwrap();
    let mutation = mutate(
        &view,
        &root,
        Governing {
            name: "web",
            spec,
            services: &[],
            tuning: &[],
        },
        caps,
    );
    let mut patched = document.clone();
    let operations = mutation.patch.operations().expect("the patch reads");
    json_patch::patch(&mut patched, &operations).expect("the patch applies");
    (patched, mutation)
}

fn apply(document: &Value, spec: &GracefulPolicySpec) -> (Value, Mutation) {
    apply_at(document, "", spec, Capabilities::default())
}

fn record_of(pod: &Value) -> ChangeRecord {
    let text = pod["metadata"]["annotations"][APPLIED_ANNOTATION]
        .as_str()
        .expect("the record annotation");
    serde_json::from_str(text).unwrap()
}

#[test]
fn adds_a_native_sleep_to_every_app_container_and_pads_the_grace_period() {
    let sidecar = json!({"name": "proxy", "image": "proxy"});
    let spec = GracefulPolicySpec {
        drain: Drain {
            budget: Budget {
                pre_stop_sleep_seconds: 5,
                shutdown_budget_seconds: 40,
            },
            safety_margin_seconds: 5,
            ..Drain::default()
        },
        ..spec()
    };
    let (patched, mutation) = apply(&pod(json!([app(), sidecar])), &spec);
    for index in 0..2 {
        assert_eq!(
            patched["spec"]["containers"][index]["lifecycle"]["preStop"],
            json!({"sleep": {"seconds": 5}})
        );
    }
    assert_eq!(patched["spec"]["terminationGracePeriodSeconds"], 50);
    assert_eq!(
        patched["spec"]["initContainers"],
        json!([{"name": "migrate", "image": "migrate"}]),
        "init containers are left alone"
    );
    let fields: Vec<&str> = mutation
        .record
        .changes
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.containers[app].lifecycle.preStop",
            "spec.containers[proxy].lifecycle.preStop",
            "spec.terminationGracePeriodSeconds"
        ]
    );
    assert_eq!(mutation.record.changes[2].from, Some(json!(30)));
    assert!(mutation.warnings.is_empty(), "{:?}", mutation.warnings);
}

#[test]
fn exec_sleep_when_the_policy_asks_or_the_server_lacks_the_sleep_action() {
    let exec = json!({"exec": {"command": ["sleep", "5"]}});
    let asked = GracefulPolicySpec {
        drain: Drain {
            pre_stop: PreStopAction::Exec,
            ..Drain::default()
        },
        ..spec()
    };
    let (patched, _) = apply(&pod(json!([app()])), &asked);
    assert_eq!(
        patched["spec"]["containers"][0]["lifecycle"]["preStop"],
        exec
    );

    let old_server = Capabilities::for_server_version(1, 29);
    assert!(!old_server.native_sleep);
    let (patched, _) = apply_at(&pod(json!([app()])), "", &spec(), old_server);
    assert_eq!(
        patched["spec"]["containers"][0]["lifecycle"]["preStop"],
        exec
    );
}

#[test]
fn no_hook_for_pre_stop_none_or_a_zero_sleep() {
    for drain in [
        Drain {
            pre_stop: PreStopAction::None,
            ..Drain::default()
        },
        Drain {
            budget: Budget {
                pre_stop_sleep_seconds: 0,
                ..Budget::default()
            },
            ..Drain::default()
        },
    ] {
        let spec = GracefulPolicySpec { drain, ..spec() };
        let (patched, _) = apply(&pod(json!([app()])), &spec);
        assert!(patched["spec"]["containers"][0].get("lifecycle").is_none());
    }
}

#[test]
fn a_lifecycle_without_pre_stop_keeps_its_post_start() {
    let container =
        json!({"name": "app", "lifecycle": {"postStart": {"exec": {"command": ["warm"]}}}});
    let (patched, _) = apply(&pod(json!([container])), &spec());
    assert_eq!(
        patched["spec"]["containers"][0]["lifecycle"],
        json!({"postStart": {"exec": {"command": ["warm"]}}, "preStop": {"sleep": {"seconds": 5}}})
    );
}

#[test]
fn an_existing_hook_is_kept_or_replaced_as_the_policy_says() {
    let own = json!({"httpGet": {"path": "/drain", "port": 8080}});
    let container = json!({"name": "app", "lifecycle": {"preStop": own}});

    let (patched, mutation) = apply(&pod(json!([container])), &spec());
    assert_eq!(
        patched["spec"]["containers"][0]["lifecycle"]["preStop"],
        own
    );
    assert!(mutation.warnings[0].contains("keeps its own preStop hook"));

    let replace = GracefulPolicySpec {
        drain: Drain {
            existing_hooks: ExistingHooks::Replace,
            ..Drain::default()
        },
        ..spec()
    };
    let (patched, mutation) = apply(&pod(json!([container])), &replace);
    assert_eq!(
        patched["spec"]["containers"][0]["lifecycle"]["preStop"],
        json!({"sleep": {"seconds": 5}})
    );
    assert_eq!(mutation.record.changes[0].from, Some(own));
}

#[test]
fn a_longer_grace_period_is_never_shortened() {
    let mut document = pod(json!([app()]));
    document["spec"]["terminationGracePeriodSeconds"] = json!(120);
    let (patched, mutation) = apply(&document, &spec());
    assert_eq!(patched["spec"]["terminationGracePeriodSeconds"], 120);
    assert!(
        mutation
            .warnings
            .iter()
            .any(|w| w.contains("kept terminationGracePeriodSeconds 120")),
        "{:?}",
        mutation.warnings
    );
}

#[test]
fn the_default_grace_period_is_kept_without_a_warning_when_it_is_long_enough() {
    let short = GracefulPolicySpec {
        drain: Drain {
            budget: Budget {
                pre_stop_sleep_seconds: 2,
                shutdown_budget_seconds: 5,
            },
            safety_margin_seconds: 1,
            ..Drain::default()
        },
        ..spec()
    };
    let (patched, mutation) = apply(&pod(json!([app()])), &short);
    assert_eq!(patched["spec"]["terminationGracePeriodSeconds"], 30);
    assert!(mutation.warnings.is_empty(), "{:?}", mutation.warnings);
}

#[test]
fn an_absent_grace_period_counts_as_the_kubernetes_default() {
    let mut document = pod(json!([app()]));
    document["spec"]
        .as_object_mut()
        .unwrap()
        .remove("terminationGracePeriodSeconds");
    let (patched, _) = apply(&document, &spec());
    assert!(
        patched["spec"]
            .get("terminationGracePeriodSeconds")
            .is_none()
    );

    let long = GracefulPolicySpec {
        drain: Drain {
            budget: Budget {
                shutdown_budget_seconds: 60,
                ..Budget::default()
            },
            ..Drain::default()
        },
        ..spec()
    };
    let (patched, mutation) = apply(&document, &long);
    assert_eq!(patched["spec"]["terminationGracePeriodSeconds"], 70);
    let grace = mutation.record.changes.last().unwrap();
    assert_eq!(grace.from, None);
}

#[test]
fn the_sleep_is_always_shorter_than_the_grace_period() {
    let drain = Drain {
        budget: Budget {
            pre_stop_sleep_seconds: 40,
            shutdown_budget_seconds: 0,
        },
        safety_margin_seconds: 0,
        ..Drain::default()
    };
    assert_eq!(drain.grace_period_seconds(), 41);
    let spec = GracefulPolicySpec { drain, ..spec() };
    let (patched, _) = apply(&pod(json!([app()])), &spec);
    assert_eq!(patched["spec"]["terminationGracePeriodSeconds"], 41);
}

#[test]
fn readiness_timings_go_to_containers_with_a_probe_only() {
    let mut probed = app();
    probed["readinessProbe"]["periodSeconds"] = json!(2);
    let plain = json!({"name": "worker"});
    let spec = GracefulPolicySpec {
        readiness: Some(Readiness {
            period_seconds: Some(2),
            failure_threshold: Some(1),
            timeout_seconds: None,
            probe: None,
        }),
        ..spec()
    };
    let (patched, mutation) = apply(&pod(json!([probed, plain])), &spec);
    assert_eq!(
        patched["spec"]["containers"][0]["readinessProbe"],
        json!({"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 2, "failureThreshold": 1})
    );
    assert!(
        patched["spec"]["containers"][1]
            .get("readinessProbe")
            .is_none()
    );
    let fields: Vec<&str> = mutation
        .record
        .changes
        .iter()
        .map(|c| c.field.as_str())
        .filter(|f| f.contains("readiness"))
        .collect();
    assert_eq!(
        fields,
        ["spec.containers[app].readinessProbe.failureThreshold"],
        "a timing that already matches is not changed"
    );
}

#[test]
fn a_policy_probe_is_added_to_containers_without_one() {
    let probe: k8s_openapi::api::core::v1::Probe =
        serde_json::from_value(json!({"tcpSocket": {"port": 8080}, "periodSeconds": 10})).unwrap();
    let spec = GracefulPolicySpec {
        readiness: Some(Readiness {
            period_seconds: Some(2),
            probe: Some(probe),
            ..Readiness::default()
        }),
        ..spec()
    };
    let (patched, _) = apply(&pod(json!([app(), {"name": "worker"}])), &spec);
    assert_eq!(
        patched["spec"]["containers"][1]["readinessProbe"],
        json!({"tcpSocket": {"port": 8080}, "periodSeconds": 2})
    );
    assert_eq!(
        patched["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"], "/ready",
        "an existing probe keeps its handler"
    );
}

#[test]
fn only_the_named_containers_change_and_missing_names_are_reported() {
    let spec = GracefulPolicySpec {
        containers: vec!["app".into(), "ghost".into()],
        ..spec()
    };
    let (patched, mutation) = apply(&pod(json!([app(), {"name": "proxy"}])), &spec);
    assert!(patched["spec"]["containers"][0].get("lifecycle").is_some());
    assert_eq!(patched["spec"]["containers"][1], json!({"name": "proxy"}));
    assert!(mutation.warnings.iter().any(|w| w.contains("\"ghost\"")));
}

#[test]
fn a_pod_without_metadata_gets_the_label_and_the_record() {
    let mut document = pod(json!([app()]));
    document.as_object_mut().unwrap().remove("metadata");
    let (patched, mutation) = apply(&document, &spec());
    assert_eq!(patched["metadata"]["labels"], json!({POLICY_KEY: "web"}));
    assert_eq!(record_of(&patched), mutation.record);
}

#[test]
fn label_and_record_keys_are_escaped_and_missing_maps_are_created() {
    let mut document = pod(json!([app()]));
    document["metadata"] = json!({"name": "bare"});
    let (patched, mutation) = apply(&document, &spec());
    assert_eq!(patched["metadata"]["labels"][POLICY_KEY], "web");
    assert_eq!(record_of(&patched), mutation.record);

    let (patched, mutation) = apply(&pod(json!([app()])), &spec());
    assert_eq!(patched["metadata"]["labels"]["app"], "web");
    assert_eq!(patched["metadata"]["labels"][POLICY_KEY], "web");
    let paths: Vec<String> = mutation
        .patch
        .operations()
        .unwrap()
        .iter()
        .map(|op| match op {
            PatchOperation::Add(add) => add.path.to_string(),
            other => panic!("only add operations, got {other:?}"),
        })
        .collect();
    assert!(paths.contains(&"/metadata/labels/graceful.dev~1policy".to_owned()));
    assert!(paths.contains(&"/metadata/annotations".to_owned()));
}

#[test]
fn a_template_without_metadata_gets_label_and_record() {
    let deployment = json!({
        "kind": "Deployment",
        "spec": {"template": {"spec": {"containers": [app()]}}}
    });
    let (patched, mutation) = apply_at(
        &deployment,
        "/spec/template",
        &spec(),
        Capabilities::default(),
    );
    let template = &patched["spec"]["template"];
    assert_eq!(template["metadata"]["labels"][POLICY_KEY], "web");
    assert_eq!(record_of(template), mutation.record);
    assert_eq!(
        template["spec"]["containers"][0]["lifecycle"]["preStop"],
        json!({"sleep": {"seconds": 5}})
    );
}

#[test]
fn patching_a_patched_pod_yields_no_operations() {
    let spec = GracefulPolicySpec {
        readiness: Some(Readiness {
            period_seconds: Some(2),
            ..Readiness::default()
        }),
        ..spec()
    };
    let (once, first) = apply(&pod(json!([app()])), &spec);
    assert!(!first.patch.is_empty());
    let (twice, second) = apply(&once, &spec);
    assert!(second.patch.is_empty(), "{:?}", second.patch);
    assert_eq!(once, twice);
}

#[test]
fn a_compliant_pod_is_labelled_and_recorded_once() {
    let container = json!({"name": "app", "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}});
    let (once, first) = apply(&pod(json!([container])), &spec());
    assert!(first.record.changes.is_empty());
    assert_eq!(once["metadata"]["labels"][POLICY_KEY], "web");
    let (_, second) = apply(&once, &spec());
    assert!(second.patch.is_empty());
}

#[test]
fn a_second_pass_covers_a_container_added_in_between_and_keeps_the_first_record() {
    let (mut once, _) = apply(&pod(json!([app()])), &spec());
    once["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "injected"}));
    let (twice, second) = apply(&once, &spec());
    assert_eq!(
        twice["spec"]["containers"][1]["lifecycle"]["preStop"],
        json!({"sleep": {"seconds": 5}})
    );
    let fields: Vec<String> = record_of(&twice)
        .changes
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.containers[app].lifecycle.preStop",
            "spec.containers[injected].lifecycle.preStop"
        ]
    );
    assert_eq!(second.record.changes.len(), 2);
}

#[test]
fn audit_mode_records_the_would_be_change_and_patches_nothing() {
    let spec = GracefulPolicySpec {
        mode: Mode::Audit,
        ..spec()
    };
    let document = pod(json!([app()]));
    let (patched, mutation) = apply(&document, &spec);
    assert!(mutation.patch.is_empty());
    assert_eq!(patched, document);
    assert_eq!(mutation.record.mode, Mode::Audit);
    assert_eq!(
        mutation.record.changes[0].field,
        "spec.containers[app].lifecycle.preStop"
    );
    assert!(mutation.warnings.iter().any(|w| w.contains("Audit mode")));
}

#[test]
fn null_maps_are_replaced_not_descended_into() {
    let document = json!({
        "metadata": {"name": "p", "labels": null, "annotations": null},
        "spec": {"containers": [{"name": "app", "lifecycle": null}]}
    });
    let (patched, _) = apply(&document, &spec());
    assert_eq!(patched["metadata"]["labels"][POLICY_KEY], "web");
    assert_eq!(
        patched["spec"]["containers"][0]["lifecycle"]["preStop"],
        json!({"sleep": {"seconds": 5}})
    );
}

#[test]
fn the_root_pointer_prefixes_every_operation() {
    let root = PointerBuf::parse("/spec/template").unwrap();
    let view: PodView = serde_json::from_value(json!({"spec": {"containers": [app()]}})).unwrap();
    let mutation = mutate(
        &view,
        &root,
        Governing {
            name: "web",
            spec: &spec(),
            services: &[],
            tuning: &[],
        },
        Capabilities::default(),
    );
    let operations = mutation.patch.operations().unwrap();
    assert!(operations.iter().all(|op| match op {
        PatchOperation::Add(add) => add.path.starts_with(Pointer::from_static("/spec/template")),
        _ => false,
    }));
}

#[test]
fn a_zero_sleep_opts_a_container_out_even_when_hooks_are_replaced() {
    let mut out = app();
    out["name"] = json!("batch");
    out["lifecycle"] = json!({"preStop": {"sleep": {"seconds": 0}}});
    let drain = Drain {
        existing_hooks: ExistingHooks::Replace,
        ..Drain::default()
    };
    let spec = GracefulPolicySpec {
        drain,
        readiness: Some(Readiness {
            period_seconds: Some(2),
            ..Readiness::default()
        }),
        ..spec()
    };
    let document = pod(json!([app(), out.clone()]));
    let (patched, _) = apply(&document, &spec);
    assert_eq!(patched["spec"]["containers"][1], out);
    assert_eq!(
        patched["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"],
        5
    );
}

#[test]
fn native_sidecars_get_nothing_and_their_shutdown_joins_the_grace_period() {
    let mut document = pod(json!([app()]));
    document["spec"]["initContainers"] = json!([
        {"name": "migrate", "image": "migrate"},
        {"name": "shipper", "image": "shipper", "restartPolicy": "Always"}
    ]);
    let before = document["spec"]["initContainers"].clone();
    let (patched, _) = apply(&document, &spec());
    assert_eq!(patched["spec"]["initContainers"], before);
    assert_eq!(patched["spec"]["terminationGracePeriodSeconds"], 35);
    let (without, _) = apply(&pod(json!([app()])), &spec());
    assert_eq!(without["spec"]["terminationGracePeriodSeconds"], 30);
}

#[test]
fn a_stop_signal_needs_a_server_that_has_it_and_a_linux_pod() {
    let spec = GracefulPolicySpec {
        drain: Drain {
            stop_signal: Some(StopSignal::SIGQUIT),
            ..Drain::default()
        },
        ..spec()
    };
    let document = pod(json!([app()]));
    let (patched, _) = apply(&document, &spec);
    assert_eq!(patched["spec"]["os"], json!({"name": "linux"}));
    let lifecycle = &patched["spec"]["containers"][0]["lifecycle"];
    assert_eq!(lifecycle["stopSignal"], "SIGQUIT");
    assert_eq!(lifecycle["preStop"]["sleep"]["seconds"], 5);

    let old = Capabilities::for_server_version(1, 32);
    let (patched, mutation) = apply_at(&document, "", &spec, old);
    assert!(patched["spec"].get("os").is_none());
    assert!(
        mutation.warnings[0].contains("ContainerStopSignals"),
        "{:?}",
        mutation.warnings
    );

    let mut windows = document.clone();
    windows["spec"]["os"] = json!({"name": "windows"});
    let (patched, mutation) = apply(&windows, &spec);
    assert!(
        patched["spec"]["containers"][0]["lifecycle"]
            .get("stopSignal")
            .is_none()
    );
    assert!(
        mutation.warnings[0].contains("windows"),
        "{:?}",
        mutation.warnings
    );
}

#[test]
fn budget_variables_follow_a_grace_period_that_grew_since_the_first_pass() {
    let spec = GracefulPolicySpec {
        env: Some(crate::api::BudgetEnv {
            standard: true,
            budget: Vec::new(),
        }),
        ..spec()
    };
    let (first, _) = apply(&pod(json!([app()])), &spec);
    let grace = |pod: &Value| {
        let env = pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .clone();
        env.into_iter()
            .find(|v| v["name"] == env::GRACE)
            .map(|v| v["value"].clone())
    };
    assert_eq!(grace(&first), Some(json!("30")));
    // A native sidecar injected after the first pass.
    let mut injected = first.clone();
    injected["spec"]["initContainers"][0]["restartPolicy"] = json!("Always");
    let (second, mutation) = apply(&injected, &spec);
    assert_eq!(grace(&second), Some(json!("35")));
    assert!(mutation.warnings.is_empty(), "{:?}", mutation.warnings);
    let (_, third) = apply(&second, &spec);
    assert!(third.patch.is_empty());
}

#[test]
fn serving_targets_only_containers_a_service_reaches() {
    let spec = GracefulPolicySpec {
        targets: crate::api::Targets::Serving,
        ..spec()
    };
    let mut web = app();
    web["ports"] = json!([{"containerPort": 8080}]);
    let mut worker = app();
    worker["name"] = json!("worker");
    worker["ports"] = json!([{"containerPort": 9000, "name": "jobs"}]);
    let view: PodView = serde_json::from_value(pod(json!([web, worker]))).unwrap();
    let service = |selector: Value, target: Value| -> Backend {
        let service = serde_json::from_value(json!({"spec": {"selector": selector,
            "ports": [{"port": 80, "targetPort": target}]}}))
        .unwrap();
        Backend::of(&service).unwrap()
    };
    let changed = |services: &[Backend]| -> Vec<String> {
        let governing = Governing {
            name: "web",
            spec: &spec,
            services,
            tuning: &[],
        };
        let mutation = mutate(&view, Pointer::root(), governing, Capabilities::default());
        mutation
            .record
            .changes
            .iter()
            .filter(|c| c.field.ends_with("preStop"))
            .map(|c| c.field.clone())
            .collect()
    };
    assert!(changed(&[]).is_empty(), "no Service: nothing serves");
    let web_only = service(json!({"app": "web"}), json!(8080));
    assert_eq!(
        changed(&[web_only]),
        ["spec.containers[app].lifecycle.preStop"]
    );
    let by_name = service(json!({"app": "web"}), json!("jobs"));
    assert_eq!(
        changed(&[by_name]),
        ["spec.containers[worker].lifecycle.preStop"]
    );
    let elsewhere = service(json!({"app": "other"}), json!(8080));
    assert!(changed(&[elsewhere]).is_empty());
}

#[test]
fn the_record_names_each_container_left_alone_and_why() {
    let mut spec = spec();
    spec.containers = vec!["app".into(), "proxy".into(), "quiet".into()];
    spec.sidecars.names = vec!["proxy".into()];
    let opted_out = json!({"name": "quiet", "lifecycle": {"preStop": {"sleep": {"seconds": 0}}}});
    let pod = pod(json!([app(), {"name": "proxy"}, opted_out, {"name": "batch"}]));
    let (patched, mutation) = apply(&pod, &spec);
    let left_alone: Vec<(&str, Role)> = mutation
        .record
        .left_alone
        .iter()
        .map(|(name, role)| (name.as_str(), *role))
        .collect();
    assert_eq!(
        left_alone,
        [
            ("batch", Role::NotNamed),
            ("proxy", Role::Sidecar),
            ("quiet", Role::OptedOut)
        ]
    );
    let written = &patched["metadata"]["annotations"][APPLIED_ANNOTATION];
    assert!(
        written
            .as_str()
            .unwrap()
            .contains(r#""leftAlone":{"batch":"notNamed","proxy":"sidecar","quiet":"optedOut"}"#),
        "{written}"
    );
    assert_eq!(record_of(&patched), mutation.record, "read back as written");
}

#[test]
fn a_second_pass_records_an_injected_proxy_left_alone_even_with_nothing_to_change() {
    let (mut once, _) = apply(&pod(json!([app()])), &spec());
    once["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"}));
    let (twice, second) = apply(&once, &spec());
    assert!(!second.patch.is_empty(), "the record is rewritten");
    assert_eq!(
        record_of(&twice).changes,
        record_of(&once).changes,
        "and keeps what the first pass changed"
    );
    assert_eq!(
        record_of(&twice).left_alone,
        BTreeMap::from([("istio-proxy".to_owned(), Role::Sidecar)])
    );
    let (_, third) = apply(&twice, &spec());
    assert!(
        third.patch.is_empty(),
        "then nothing more: {:?}",
        third.patch
    );
}

#[test]
fn a_list_where_the_pod_api_has_an_object_is_refused_not_patched() {
    // Found by tests/fuzz.rs: serde read `readinessProbe: []` as a probe without
    // timings, and the patch then pointed into the list.
    for field in ["readinessProbe", "lifecycle"] {
        let pod = json!({"spec": {"containers": [{"name": "app", field: []}]}});
        let error = serde_json::from_value::<PodView>(pod).expect_err("refused");
        assert!(error.to_string().contains("expected an object"), "{error}");
    }
    // serde reads a struct from a list of its fields in order; no Pod API object is one.
    let pod_as_list = json!([{}, {"containers": [{"name": "app"}]}]);
    let error = serde_json::from_value::<PodView>(pod_as_list).expect_err("refused");
    assert!(error.to_string().contains("expected an object"), "{error}");
    let spec_as_list = json!({"spec": [[{"name": "app"}]]});
    assert!(serde_json::from_value::<PodView>(spec_as_list).is_err());
    let metadata_as_list = json!({"metadata": [], "spec": {"containers": [{"name": "app"}]}});
    assert!(serde_json::from_value::<PodView>(metadata_as_list).is_err());

    let nulls = json!({"metadata": null, "spec": {"containers": [
        {"name": "app", "readinessProbe": null, "lifecycle": null}]}});
    let view: PodView = serde_json::from_value(nulls).expect("null is absent");
    assert_eq!(view.spec.containers[0].readiness_probe, None);
    assert_eq!(view.spec.containers[0].lifecycle, None);
    let from_bytes: PodView = serde_json::from_str(
        r#"{"spec": {"containers": [{"name": "app", "readinessProbe": {"periodSeconds": 3}}]}}"#,
    )
    .expect("an object is read");
    let probe = from_bytes.spec.containers[0].readiness_probe.clone();
    assert_eq!(probe.and_then(|p| p.period_seconds), Some(3));
}
