//! manifests/monitoring/ with the real tools: `promtool check rules` and `promtool test
//! rules` (each alert fires and stays quiet where it should), `kubectl kustomize`, and
//! every metric name the rules and the dashboard use exists in a running graceful's
//! `/metrics`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;

use support::graceful::{Graceful, Launch, first_mutated, labelled_namespace};
use support::repo;

fn monitoring(file: &str) -> PathBuf {
    repo().join("manifests/monitoring").join(file)
}

fn rule_spec() -> Value {
    let text = std::fs::read_to_string(monitoring("prometheus-rule.yaml")).expect("the rule file");
    let rule: Value = serde_yaml_ng::from_str(&text).expect("the PrometheusRule is YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    rule["spec"].clone()
}

/// A directory with the rule file's `spec` as `rules.yaml` (the Prometheus rule file
/// format promtool reads) and the unit tests beside it.
fn promtool_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graceful-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let rules = serde_yaml_ng::to_string(&rule_spec()).expect("the rules serialize");
    std::fs::write(dir.join("rules.yaml"), rules).expect("rules.yaml is written");
    std::fs::copy(
        repo().join("tests/monitoring/alerts.test.yaml"),
        dir.join("alerts.test.yaml"),
    )
    .expect("the tests are copied");
    dir
}

fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(repo().join("e2e/bin/promtool"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("e2e/bin/promtool runs (e2e/cluster build makes it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {}:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn the_rules_pass_promtool_and_every_alert_fires_only_when_it_should() {
    let dir = promtool_dir();
    let checked = promtool(&dir, &["check", "rules", "rules.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert of the rule file is exercised by the tests, firing at least once.
    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).expect("the tests");
    for alert in alerts() {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - "
            )),
            "no test makes {alert} fire"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts: []")),
            "no test keeps {alert} quiet"
        );
    }
}

fn alerts() -> BTreeSet<String> {
    rules()
        .iter()
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect()
}

fn rules() -> Vec<Value> {
    let spec = rule_spec();
    let groups = spec["groups"].as_array().expect("rule groups").clone();
    groups
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn kustomize_builds_the_pod_monitor_the_rules_and_the_dashboard() {
    let output = Command::new(repo().join("e2e/bin/kubectl"))
        .args(["kustomize"])
        .arg(repo().join("manifests/monitoring"))
        .output()
        .expect("kubectl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for kind in [
        "kind: PodMonitor",
        "kind: PrometheusRule",
        "kind: ConfigMap",
        "grafana_dashboard: \"1\"",
    ] {
        assert!(text.contains(kind), "{kind} missing:\n{text}");
    }
}

/// The PromQL expressions of the rules and of the dashboard's panels.
fn expressions() -> Vec<String> {
    let mut found: Vec<String> = rules()
        .iter()
        .filter_map(|rule| rule["expr"].as_str().map(str::to_owned))
        .collect();
    let text = std::fs::read_to_string(monitoring("dashboard.json")).expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            found.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    found.extend(
        variables
            .iter()
            .filter_map(|v| v["definition"].as_str().map(str::to_owned)),
    );
    found
}

/// The identifiers of `expr` that name series: graceful's metrics (`graceful_...`) and
/// recorded series (with a colon). Label values in quotes are skipped.
fn series_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            current.push(c);
            continue;
        }
        if current.starts_with("graceful_") || current.contains(':') && !current.starts_with(':') {
            names.push(current.clone());
        }
        current.clear();
    }
    names
}

/// The sample names `/metrics` has, from its `# TYPE` lines (a counter `x` is
/// sampled as `x_total`, a histogram as `x_bucket`, `x_sum` and `x_count`).
fn exposed(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let mut words = line.split_whitespace();
        if (words.next(), words.next()) != (Some("#"), Some("TYPE")) {
            continue;
        }
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

/// What graceful's reconciler restores from a policy's status: measured shutdowns,
/// hence a recommendation.
const MEASURED: &str = r#"{"status": {"shutdown": {"observed": 5, "p50Seconds": 20.0,
  "p95Seconds": 31.0, "maxSeconds": 33.0, "recommendedBudgetSeconds": 40}}}"#;

/// An admission request for a bare pod.
const REVIEW: &str = r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
  "uid": "00000000-0000-0000-0000-000000000001", "operation": "CREATE", "namespace": "shop",
  "kind": {"group": "", "version": "v1", "kind": "Pod"},
  "resource": {"group": "", "version": "v1", "resource": "pods"}, "userInfo": {},
  "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
             "spec": {"containers": [{"name": "app", "image": "app"}]}}}}"#;

/// `/metrics` of a graceful whose apiserver never answers, after one admission: its
/// caches never sync, so it admits the pod unchanged (fail-open).
fn failing_open_metrics(cluster: &support::Cluster) -> String {
    let dir = std::env::temp_dir().join(format!("graceful-unreachable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let kubeconfig = dir.join("kubeconfig");
    let text = std::fs::read_to_string(&cluster.kubeconfig).expect("the kubeconfig");
    let unreachable: String = text
        .lines()
        .map(|line| match line.trim_start().strip_prefix("server: ") {
            Some(_) => "    server: https://127.0.0.1:9".to_owned(),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&kubeconfig, unreachable).expect("the kubeconfig is written");
    let graceful = Graceful::launch(
        cluster,
        &Launch {
            name: "unreachable",
            cert_files: true,
            kubeconfig: Some(&kubeconfig),
            ..Launch::default()
        },
    );
    let url = format!("https://127.0.0.1:{}/mutate", graceful.webhook_port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answered = Command::new("curl")
            .args([
                "-sfk",
                "-H",
                "Content-Type: application/json",
                "--data",
                REVIEW,
                &url,
            ])
            .output()
            .expect("curl runs");
        if answered.status.success() {
            let answer = String::from_utf8_lossy(&answered.stdout);
            assert!(answer.contains(r#""allowed":true"#), "{answer}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer:\n{}",
            graceful.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    graceful.metrics()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_use_exists() {
    let cluster = support::cluster();
    let client = cluster.client().await;
    // A policy with measured shutdowns before graceful starts, and a pod it admits.
    let graceful = Graceful::start(cluster, "monitoring", &[]);
    let label = graceful.register_for(cluster, "monitoring");
    let ns = labelled_namespace(cluster, &client, "monitoring", "monitoring").await;
    cluster.apply_ok(&ns, support::POLICY);
    cluster.patch_policy_status(&ns, "web", MEASURED);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    first_mutated(&pods, "web").await;
    let metrics = support::eventually(
        "the policy's recommendation in /metrics",
        std::time::Duration::from_secs(60),
        || async {
            let metrics = graceful.metrics();
            metrics
                .contains("graceful_policy_recommended_seconds{")
                .then_some(metrics)
        },
    )
    .await;
    let mut exposed = exposed(&metrics);
    exposed.extend(self::exposed(&failing_open_metrics(cluster)));

    let recorded: BTreeSet<String> = rules()
        .iter()
        .filter_map(|rule| rule["record"].as_str().map(str::to_owned))
        .collect();
    let mut used = BTreeSet::new();
    for expr in expressions() {
        used.extend(series_names(&expr));
    }
    assert!(used.contains("graceful_violations_total"), "{used:?}");
    assert!(
        used.contains("graceful_certificate_expiry_timestamp_seconds"),
        "{used:?}"
    );
    for name in &used {
        if name.contains(':') {
            assert!(
                recorded.contains(name),
                "{name} is used but no rule records it"
            );
        } else {
            assert!(
                exposed.contains(name),
                "{name} is not in graceful's /metrics:\n{metrics}"
            );
        }
    }
    // The certificate graceful serves is in its metric: the alert watches a real value.
    let expiry = graceful
        .metric("graceful_certificate_expiry_timestamp_seconds")
        .expect("the certificate's expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    assert!(
        expiry > now,
        "expiry {expiry} is not in the future (now {now})"
    );
    assert_eq!(graceful.metric("graceful_leader"), Some(1.0));
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &label]);
    cluster.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn series_names_are_read_from_promql() {
    assert_eq!(
        series_names(
            r#"max by (namespace) (increase(graceful_violations_total{kind="graceful_x"}[15m])) - a:b:c"#
        ),
        ["graceful_violations_total", "a:b:c"]
    );
    let text = "# TYPE graceful_violations counter\n# TYPE graceful_leader gauge\n# TYPE graceful_shutdown_duration_seconds histogram\n";
    let names = exposed(text);
    assert!(names.contains("graceful_violations_total"));
    assert!(names.contains("graceful_leader"));
    assert!(names.contains("graceful_shutdown_duration_seconds_bucket"));
    assert!(!names.contains("graceful_violations"));
}
