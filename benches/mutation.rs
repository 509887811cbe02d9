//! The cost of deciding a pod's patch: reading the pod's view from JSON, and the
//! mutation itself, for a typical 3-container Deployment pod.

use criterion::{Criterion, criterion_group, criterion_main};
use graceful::api::{GracefulPolicySpec, Readiness};
use graceful::mutate::{Capabilities, Governing, PodView, mutate};
use json_patch::jsonptr::Pointer;
use serde_json::json;
use std::hint::black_box;

fn pod_json() -> Vec<u8> {
    let container = |name: &str| {
        json!({
            "name": name,
            "image": format!("registry.example/{name}:1.0"),
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": "MODE", "value": "production"}, {"name": "LOG", "value": "info"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 10},
            "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            "terminationMessagePath": "/dev/termination-log",
            "imagePullPolicy": "IfNotPresent"
        })
    };
    serde_json::to_vec(&json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "checkout-7d9f8b6c5-",
            "namespace": "shop",
            "labels": {"app": "checkout", "pod-template-hash": "7d9f8b6c5"},
            "annotations": {"graceful.dev/policy": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8b6c5",
                                 "uid": "0b0c6f4e-7f3e-4a55-9d5a-3c1f1f7c2b11", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [container("app"), container("envoy"), container("log-shipper")],
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]
        }
    }))
    .expect("a pod")
}

fn mutation(c: &mut Criterion) {
    let bytes = pod_json();
    let spec = GracefulPolicySpec {
        readiness: Some(Readiness {
            period_seconds: Some(2),
            failure_threshold: Some(1),
            timeout_seconds: Some(1),
            probe: None,
        }),
        ..GracefulPolicySpec::default()
    };
    let governing = Governing {
        name: "web",
        spec: &spec,
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
