//! Reading a large manifest (500 documents of a realistic Deployment and ConfigMap) as
//! kubectl does, against reading it with serde_yaml_ng (YAML 1.2), the reader graceful
//! used before.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde::Deserialize;
use serde_json::Value;

const DOCUMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web, tier: frontend}
  annotations:
    graceful.dev/policy: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      volumes:
        - name: tls
          secret: {secretName: web-tls, defaultMode: 0400}
      containers:
        - name: web
          image: registry.example/web:1.25
          args: ["--port", "8080", "--verbose"]
          env:
            - {name: MODE, value: "production"}
            - {name: FEATURE, value: "on"}
          ports: [{containerPort: 8080, name: http}]
          readinessProbe:
            httpGet: {path: /ready, port: http}
            periodSeconds: 5
          resources:
            limits: {cpu: 500m, memory: 512Mi}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data:
  mode: "0400"
  flag: "yes"
  config.yaml: |
    server:
      port: 8080
      tls: true
---
"#;

fn manifest(c: &mut Criterion) {
    let text = DOCUMENT.repeat(250);
    c.bench_function("read 500-document manifest (graceful, YAML 1.1)", |b| {
        b.iter(|| graceful::manifest::read(black_box(&text)).expect("valid"))
    });
    c.bench_function(
        "read 500-document manifest (serde_yaml_ng, YAML 1.2)",
        |b| {
            b.iter(|| {
                serde_yaml_ng::Deserializer::from_str(black_box(&text))
                    .map(|document| Value::deserialize(document).expect("valid"))
                    .collect::<Vec<Value>>()
            })
        },
    );
}

criterion_group!(benches, manifest);
criterion_main!(benches);
