//! Properties of the mutation engine over generated pods and policies.

use graceful::api::{
    Budget, BudgetEnv, BudgetVariable, Drain, EnvFormat, ExistingHooks, GracefulPolicySpec, Mode,
    PreStopAction, Readiness, Sidecars, StopSignal,
};
use graceful::mutate::{
    Capabilities, DEFAULT_GRACE_PERIOD_SECONDS, Governing, PodView, grace_period_needed, mutate,
};
use json_patch::jsonptr::Pointer;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NAMES: [&str; 6] = [
    "app",
    "proxy",
    "worker",
    "log-shipper",
    "cache",
    "istio-proxy",
];

fn hook() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..90).prop_map(|s| json!({"sleep": {"seconds": s}})),
        (0i64..90).prop_map(|s| json!({"exec": {"command": ["sleep", s.to_string()]}})),
        Just(json!({"httpGet": {"path": "/drain", "port": 8080}})),
    ]
}

fn lifecycle() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!({}))),
        Just(Some(json!({"postStart": {"exec": {"command": ["warm"]}}}))),
        hook().prop_map(|h| Some(json!({ "preStop": h }))),
        Just(Some(Value::Null)),
    ]
}

fn probe() -> impl Strategy<Value = Option<Value>> {
    let timing = proptest::option::of(1i32..20);
    prop_oneof![
        Just(None),
        (timing.clone(), timing.clone(), timing).prop_map(|(period, failure, timeout)| {
            let mut probe = Map::new();
            probe.insert("tcpSocket".into(), json!({"port": 8080}));
            for (name, value) in [
                ("periodSeconds", period),
                ("failureThreshold", failure),
                ("timeoutSeconds", timeout),
            ] {
                if let Some(value) = value {
                    probe.insert(name.into(), json!(value));
                }
            }
            Some(Value::Object(probe))
        }),
    ]
}

fn env() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!([]))),
        Just(Some(
            json!([{"name": "GRACEFUL_SHUTDOWN_BUDGET_SECONDS", "value": "99"}])
        )),
        Just(Some(
            json!([{"name": "LANG", "value": "C"}, {"name": "DRAIN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
        )),
    ]
}

fn container(name: &'static str) -> impl Strategy<Value = Value> {
    (lifecycle(), probe(), env(), any::<bool>()).prop_map(move |(lifecycle, probe, env, from)| {
        let mut container = Map::new();
        container.insert("name".into(), json!(name));
        container.insert("image".into(), json!(format!("registry.example/{name}:1")));
        if let Some(lifecycle) = lifecycle {
            container.insert("lifecycle".into(), lifecycle);
        }
        if let Some(probe) = probe {
            container.insert("readinessProbe".into(), probe);
        }
        if let Some(env) = env {
            container.insert("env".into(), env);
        }
        if from && name == "worker" {
            container.insert(
                "envFrom".into(),
                json!([{"configMapRef": {"name": "settings"}}]),
            );
        }
        Value::Object(container)
    })
}

fn string_map() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!({}))),
        Just(Some(json!({"app": "web", "graceful.dev/policy": "other"}))),
        Just(Some(json!({"a/b~c": "escaped"}))),
    ]
}

fn pod() -> impl Strategy<Value = Value> {
    let containers = proptest::sample::subsequence(NAMES.to_vec(), 1..=NAMES.len())
        .prop_flat_map(|names| names.into_iter().map(container).collect::<Vec<_>>());
    let metadata = proptest::option::of((string_map(), string_map()));
    (
        metadata,
        containers,
        proptest::option::of(0i64..200),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(metadata, containers, grace, init, sidecar)| {
            let mut spec = Map::new();
            spec.insert("containers".into(), Value::Array(containers));
            if let Some(grace) = grace {
                spec.insert("terminationGracePeriodSeconds".into(), json!(grace));
            }
            let mut init_containers = Vec::new();
            if init {
                init_containers.push(json!({"name": "init"}));
            }
            if sidecar {
                init_containers.push(json!({"name": "linkerd-proxy", "restartPolicy": "Always",
                    "image": "cr.l5d.io/linkerd/proxy:edge-25.1.1"}));
                init_containers.push(
                    json!({"name": "log-shipper-sidecar", "restartPolicy": "Always",
                    "lifecycle": {"preStop": {"exec": {"command": ["flush"]}}}}),
                );
            }
            if !init_containers.is_empty() {
                spec.insert("initContainers".into(), Value::Array(init_containers));
            }
            let mut pod = Map::new();
            if let Some((labels, annotations)) = metadata {
                let mut meta = Map::new();
                meta.insert("name".into(), json!("p"));
                for (key, value) in [("labels", labels), ("annotations", annotations)] {
                    if let Some(value) = value {
                        meta.insert(key.into(), value);
                    }
                }
                pod.insert("metadata".into(), Value::Object(meta));
            }
            pod.insert("spec".into(), Value::Object(spec));
            Value::Object(pod)
        })
}

fn policy() -> impl Strategy<Value = GracefulPolicySpec> {
    let drain = (
        0i64..120,
        0i64..300,
        0i64..30,
        prop_oneof![
            Just(PreStopAction::Auto),
            Just(PreStopAction::Exec),
            Just(PreStopAction::None)
        ],
        prop_oneof![Just(ExistingHooks::Keep), Just(ExistingHooks::Replace)],
    )
        .prop_map(|(sleep, budget, margin, pre_stop, existing_hooks)| Drain {
            budget: Budget {
                pre_stop_sleep_seconds: sleep,
                // The CRD rejects a zero budget plus margin.
                shutdown_budget_seconds: if budget + margin == 0 { 1 } else { budget },
            },
            safety_margin_seconds: margin,
            pre_stop,
            existing_hooks,
            ..Drain::default()
        });
    let timing = proptest::option::of(1i32..10);
    let readiness = proptest::option::of((timing.clone(), timing.clone(), timing, any::<bool>()))
        .prop_map(|r| {
            r.map(|(period, failure, timeout, with_probe)| Readiness {
                period_seconds: period,
                failure_threshold: failure,
                timeout_seconds: timeout,
                probe: with_probe.then(|| {
                    serde_json::from_value(json!({"httpGet": {"path": "/ready", "port": 80}}))
                        .expect("a probe")
                }),
            })
        });
    let containers = proptest::sample::subsequence(
        NAMES.iter().copied().chain(["ghost"]).collect::<Vec<_>>(),
        0..3,
    );
    let env = proptest::option::of(any::<bool>()).prop_map(|env| {
        env.map(|standard| BudgetEnv {
            standard,
            budget: vec![BudgetVariable {
                name: "SPRING_LIFECYCLE_TIMEOUT_PER_SHUTDOWN_PHASE".into(),
                format: EnvFormat::Duration,
            }],
        })
    });
    let signal = proptest::option::of(Just(StopSignal::SIGQUIT));
    (
        drain,
        readiness,
        containers,
        prop_oneof![Just(Mode::Enforce), Just(Mode::Audit)],
        (env, signal, 0i64..60),
    )
        .prop_map(
            |(mut drain, readiness, containers, mode, (env, signal, sidecar_seconds))| {
                drain.stop_signal = signal;
                GracefulPolicySpec {
                    drain,
                    readiness,
                    containers: containers.into_iter().map(str::to_owned).collect(),
                    mode,
                    env,
                    sidecars: Sidecars {
                        shutdown_seconds: sidecar_seconds,
                        ..Sidecars::default()
                    },
                    ..GracefulPolicySpec::default()
                }
            },
        )
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    prop_oneof![
        Just(Capabilities::default()),
        Just(Capabilities::for_server_version(1, 29))
    ]
}

/// Each container of `pod` beside itself in `patched`.
fn containers<'a>(
    pod: &'a Value,
    patched: &'a Value,
) -> impl Iterator<Item = (&'a Value, &'a Value)> {
    let list = |pod: &'a Value| pod["spec"]["containers"].as_array().into_iter().flatten();
    list(pod).zip(list(patched))
}

fn run(pod: &Value, spec: &GracefulPolicySpec, caps: Capabilities) -> (Value, usize) {
    let view: PodView = serde_json::from_value(pod.clone()).expect("a pod view");
    let governing = Governing {
        name: "web",
        spec,
        services: &[],
        tuning: &[],
    };
    let mutation = mutate(&view, Pointer::root(), governing, caps);
    let mut patched = pod.clone();
    let operations = mutation.patch.operations().expect("the patch reads");
    json_patch::patch(&mut patched, &operations).expect("the patch applies");
    // Applying the same patch once more changes nothing either.
    let mut again = patched.clone();
    json_patch::patch(&mut again, &operations).expect("the patch applies twice");
    assert_eq!(again, patched);
    (patched, operations.len())
}

fn grace(pod: &Value) -> i64 {
    pod["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS)
}

fn sleep_seconds(hook: &Value) -> Option<i64> {
    if let Some(seconds) = hook["sleep"]["seconds"].as_i64() {
        return Some(seconds);
    }
    match hook["exec"]["command"].as_array()?.as_slice() {
        [sleep, seconds] if sleep == "sleep" => seconds.as_str()?.parse().ok(),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_patch_applies_and_a_second_pass_has_nothing_to_do(
        pod in pod(), spec in policy(), caps in capabilities()
    ) {
        let (patched, _) = run(&pod, &spec, caps);
        let (repatched, operations) = run(&patched, &spec, caps);
        prop_assert_eq!(operations, 0);
        prop_assert_eq!(repatched, patched);
    }

    #[test]
    fn the_policy_sleep_is_always_shorter_than_the_grace_period(
        pod in pod(), spec in policy(), caps in capabilities()
    ) {
        let (patched, _) = run(&pod, &spec, caps);
        for (before, container) in containers(&pod, &patched) {
            let hook = &container["lifecycle"]["preStop"];
            if hook != &before["lifecycle"]["preStop"] {
                let seconds = sleep_seconds(hook).expect("graceful writes sleep hooks only");
                prop_assert_eq!(seconds, spec.drain.budget.pre_stop_sleep_seconds);
                prop_assert!(seconds < grace(&patched), "sleep {} grace {}", seconds, grace(&patched));
            }
        }
    }

    #[test]
    fn a_grace_period_is_never_shortened_and_covers_the_drain(
        pod in pod(), spec in policy(), caps in capabilities()
    ) {
        let (patched, _) = run(&pod, &spec, caps);
        prop_assert!(grace(&patched) >= grace(&pod));
        if spec.mode == Mode::Enforce {
            prop_assert!(grace(&patched) >= spec.drain.grace_period_seconds());
        }
    }

    #[test]
    fn the_grace_period_covers_the_app_and_the_native_sidecars_after_it(
        pod in pod(), spec in policy(), caps in capabilities()
    ) {
        let (patched, _) = run(&pod, &spec, caps);
        if spec.mode == Mode::Enforce {
            let view: PodView = serde_json::from_value(pod.clone()).expect("a pod view");
            let needed = grace_period_needed(&spec, &view);
            prop_assert!(grace(&patched) >= needed);
            let budget = spec.drain.budget;
            let app = budget.pre_stop_sleep_seconds + budget.shutdown_budget_seconds;
            let sidecars = pod["spec"]["initContainers"].as_array().into_iter().flatten()
                .any(|c| c["restartPolicy"] == "Always");
            let after_app = if sidecars { spec.sidecars.shutdown_seconds } else { 0 };
            prop_assert!(grace(&patched) >= app + after_app + spec.drain.safety_margin_seconds);
        }
    }

    #[test]
    fn sidecars_proxies_and_opted_out_containers_get_nothing(
        pod in pod(), spec in policy(), caps in capabilities()
    ) {
        let (patched, _) = run(&pod, &spec, caps);
        for (before, container) in containers(&pod, &patched) {
            let opted_out = before["lifecycle"]["preStop"]["sleep"]["seconds"] == 0;
            if container["name"] == "istio-proxy" || opted_out {
                prop_assert_eq!(container, before);
            }
        }
    }

    #[test]
    fn a_variable_the_container_sets_is_never_overwritten(
        pod in pod(), spec in policy(), caps in capabilities()
    ) {
        let (patched, _) = run(&pod, &spec, caps);
        for (before, container) in containers(&pod, &patched) {
            let had = before["env"].as_array().cloned().unwrap_or_default();
            let has = container["env"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(&has[..had.len()], &had[..]);
            if before.get("envFrom").is_some() {
                prop_assert_eq!(has.len(), had.len());
            }
        }
    }

    #[test]
    fn containers_outside_the_policy_and_init_containers_are_untouched(
        pod in pod(), spec in policy(), caps in capabilities()
    ) {
        let (patched, _) = run(&pod, &spec, caps);
        prop_assert_eq!(&patched["spec"]["initContainers"], &pod["spec"]["initContainers"]);
        for (before, container) in containers(&pod, &patched) {
            let name = container["name"].as_str().unwrap();
            let governed = spec.containers.is_empty() || spec.containers.iter().any(|c| c == name);
            let governed = governed && name != "istio-proxy";
            if !governed || spec.mode == Mode::Audit {
                prop_assert_eq!(container, before);
            }
        }
    }

    #[test]
    fn enforced_pods_carry_the_label(pod in pod(), spec in policy(), caps in capabilities()) {
        let (patched, _) = run(&pod, &spec, caps);
        let label = &patched["metadata"]["labels"]["graceful.dev/policy"];
        if spec.mode == Mode::Enforce {
            prop_assert_eq!(label, "web");
            prop_assert!(patched["metadata"]["annotations"]["graceful.dev/applied"].is_string());
        } else {
            prop_assert_eq!(patched, pod);
        }
    }
}
